//! Platforms (`linux/amd64`, `linux/arm64/v8`) and selection from an index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OCI platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// OS version (Windows images).
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// CPU features (reserved by the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

/// A platform string that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64")]
pub struct PlatformError {
    /// The rejected input.
    pub input: String,
}

impl Platform {
    /// A platform from parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
            ..Platform::default()
        }
    }

    /// The platform of the running process, in OCI terms.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        let variant = match arch {
            "arm64" => Some("v8"),
            "arm" => Some("v7"),
            _ => None,
        };
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// Architecture and variant normalized the way containerd does:
    /// `x86_64`/`x86-64` -> `amd64`, `aarch64` -> `arm64`, `arm64` without variant
    /// is `v8`, `arm` without variant is `v7`, `armhf` is `arm/v7`, `armel` `arm/v6`.
    pub fn normalized(&self) -> (String, String, Option<String>) {
        let os = self.os.to_ascii_lowercase();
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.as_deref().map(str::to_ascii_lowercase).filter(|v| !v.is_empty());
        let (arch, variant) = match arch.as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64".to_string(), variant.filter(|v| v != "v1")),
            "i386" | "386" => ("386".to_string(), variant),
            "aarch64" | "arm64" => (
                "arm64".to_string(),
                Some(match variant.as_deref() {
                    None | Some("8") | Some("v8") => "v8".to_string(),
                    Some(v) => v.to_string(),
                }),
            ),
            "armhf" => ("arm".to_string(), Some("v7".to_string())),
            "armel" => ("arm".to_string(), Some("v6".to_string())),
            "arm" => (
                "arm".to_string(),
                Some(match variant.as_deref() {
                    None | Some("7") | Some("v7") => "v7".to_string(),
                    Some(v) if !v.starts_with('v') => format!("v{v}"),
                    Some(v) => v.to_string(),
                }),
            ),
            other => (other.to_string(), variant),
        };
        (os, arch, variant)
    }

    /// Whether an index entry with platform `candidate` satisfies this wanted platform.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.normalized() == candidate.normalized()
    }

    /// Picks the best manifest for `wanted` among `(index, platform)` candidates:
    /// an exact (normalized) match first; failing that, for amd64, an entry with
    /// no variant is taken for a wanted microarchitecture level.
    pub fn select<'a, I>(wanted: &Platform, candidates: I) -> Option<usize>
    where
        I: IntoIterator<Item = (usize, Option<&'a Platform>)>,
    {
        let candidates: Vec<_> = candidates.into_iter().collect();
        candidates
            .iter()
            .find(|(_, p)| p.is_some_and(|p| wanted.matches(p)))
            .or_else(|| {
                let (os, arch, _) = wanted.normalized();
                candidates.iter().find(|(_, p)| {
                    p.is_some_and(|p| {
                        let (pos, parch, pvar) = p.normalized();
                        pos == os && parch == arch && pvar.is_none() && arch == "amd64"
                    })
                })
            })
            .map(|(i, _)| *i)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || PlatformError { input: s.into() };
        if parts.iter().any(|p| p.is_empty() || p.contains(char::is_whitespace)) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_and_matching() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        assert!(p("linux/amd64").matches(&p("linux/x86_64")));
        assert!(p("linux/arm64").matches(&p("linux/aarch64/v8")));
        assert!(p("linux/arm64/v8").matches(&p("linux/arm64")));
        assert!(!p("linux/arm64").matches(&p("linux/arm/v7")));
        assert!(p("linux/arm").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
    }

    #[test]
    fn selection_prefers_exact_match() {
        let list = [
            Platform::new("linux", "arm", Some("v7")),
            Platform::new("linux", "arm64", Some("v8")),
            Platform::new("linux", "amd64", None),
        ];
        let pick = |w: &str| Platform::select(&w.parse().unwrap(), list.iter().enumerate().map(|(i, p)| (i, Some(p))));
        assert_eq!(pick("linux/aarch64"), Some(1));
        assert_eq!(pick("linux/x86_64"), Some(2));
        assert_eq!(pick("linux/amd64/v3"), Some(2));
        assert_eq!(pick("linux/s390x"), None);
    }
}
