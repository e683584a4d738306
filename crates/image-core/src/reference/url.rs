//! The URL form of image names used by CernVM-FS (DUCC) wish lists:
//! `https://registry.example:5000/repo/name:tag@sha256:...`.

use std::fmt;

use super::{Reference, grammar};
use crate::digest::{Digest, DigestError};

/// Why a wish-list image URL is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageUrlError {
    /// The scheme is neither `http` nor `https`.
    #[error("invalid image url {input:?}: unsupported scheme {scheme:?} (use https or http)")]
    Scheme {
        /// The rejected input.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// No registry host before the first `/`.
    #[error("invalid image url {input:?}: impossible to identify the registry")]
    NoRegistry {
        /// The rejected input.
        input: String,
    },
    /// The host part is not a valid `host[:port]`.
    #[error("invalid image url {input:?}: {registry:?} is not a valid registry host")]
    BadRegistry {
        /// The rejected input.
        input: String,
        /// The host part.
        registry: String,
    },
    /// No repository after the host.
    #[error("invalid image url {input:?}: impossible to identify the repository")]
    NoRepository {
        /// The rejected input.
        input: String,
    },
    /// The repository path breaks the name grammar.
    #[error(
        "invalid image url {input:?}: repository {repository:?} is not a valid name (lowercase letters, digits, and . _ - separators)"
    )]
    BadRepository {
        /// The rejected input.
        input: String,
        /// The repository part.
        repository: String,
    },
    /// The tag (or tag pattern) is malformed.
    #[error("invalid image url {input:?}: invalid tag {tag:?}")]
    BadTag {
        /// The rejected input.
        input: String,
        /// The tag part.
        tag: String,
    },
    /// The digest is malformed.
    #[error("invalid image url {input:?}: {source}")]
    Digest {
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        #[source]
        source: DigestError,
    },
}

/// A parsed wish-list image URL. The tag may be a glob pattern containing `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageUrl {
    /// `https` (default) or `http`.
    pub scheme: String,
    /// Host and optional port, as written.
    pub registry: String,
    /// Repository path, as written (no `library/` added).
    pub repository: String,
    /// Tag or tag pattern, if given.
    pub tag: Option<String>,
    /// Digest, if given.
    pub digest: Option<Digest>,
}

impl ImageUrl {
    /// Parses `[scheme://]registry[:port]/repository[:tag][@digest]`.
    pub fn parse(input: &str) -> Result<Self, ImageUrlError> {
        let err_input = || input.to_owned();
        let (scheme, rest) = match input.split_once("://") {
            Some((s, rest)) => (s.to_ascii_lowercase(), rest),
            None => ("https".to_owned(), input),
        };
        if scheme != "https" && scheme != "http" {
            return Err(ImageUrlError::Scheme { input: err_input(), scheme });
        }
        let (registry, path) = rest.split_once('/').unwrap_or((rest, ""));
        if registry.is_empty() {
            return Err(ImageUrlError::NoRegistry { input: err_input() });
        }
        if !grammar::is_domain(registry) {
            return Err(ImageUrlError::BadRegistry { input: err_input(), registry: registry.into() });
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => {
                (p, Some(Digest::parse(d).map_err(|source| ImageUrlError::Digest { input: err_input(), source })?))
            }
            None => (path, None),
        };
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (&path[..last_slash + i], Some(&path[last_slash + i + 1..])),
            None => (path, None),
        };
        if repository.is_empty() {
            return Err(ImageUrlError::NoRepository { input: err_input() });
        }
        if repository.len() > super::MAX_PATH_LEN || !grammar::ANCHORED_REMOTE_NAME.is_match(repository) {
            return Err(ImageUrlError::BadRepository { input: err_input(), repository: repository.into() });
        }
        if let Some(t) = tag
            && !is_tag_pattern(t)
        {
            return Err(ImageUrlError::BadTag { input: err_input(), tag: t.into() });
        }
        Ok(ImageUrl {
            scheme,
            registry: registry.into(),
            repository: repository.into(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// Whether the tag contains a `*` glob.
    pub fn is_tag_pattern(&self) -> bool {
        self.tag.as_deref().is_some_and(|t| t.contains('*'))
    }

    /// The equivalent image reference (not for tag patterns: the `*` makes the
    /// tag invalid).
    pub fn to_reference(&self) -> Result<Reference, super::ReferenceError> {
        Reference::from_parts(&self.registry, &self.repository, self.tag.as_deref(), self.digest.as_ref())
    }

    /// Whether `tag` matches this URL's tag pattern (`*` matches any run of
    /// characters, everything else is literal).
    pub fn tag_matches(&self, tag: &str) -> bool {
        match &self.tag {
            Some(p) => glob_match(p.as_bytes(), tag.as_bytes()),
            None => tag == super::DEFAULT_TAG,
        }
    }
}

fn is_tag_pattern(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-*".contains(&b))
        && (t.starts_with('*') || grammar::ANCHORED_TAG.is_match(&t.replace('*', "x")))
}

/// Iterative `*`-only glob with backtracking to the last star: linear in practice.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

impl fmt::Display for ImageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/{}", self.scheme, self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wish_list_forms() {
        let u = ImageUrl::parse("https://registry.hub.docker.com/library/fedora:latest").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.registry.as_str(), u.repository.as_str(), u.tag.as_deref()),
            ("https", "registry.hub.docker.com", "library/fedora", Some("latest"))
        );
        let u = ImageUrl::parse("https://127.0.0.1:5000/team/app:*").unwrap();
        assert_eq!(u.registry, "127.0.0.1:5000");
        assert!(u.is_tag_pattern());
        assert!(u.tag_matches("1.0") && u.tag_matches(""));
        let u = ImageUrl::parse("registry.example/a/b:v1-*-rc").unwrap();
        assert_eq!(u.scheme, "https");
        assert!(u.tag_matches("v1-2-rc") && u.tag_matches("v1--rc") && !u.tag_matches("v1-2-rc1"));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let u = ImageUrl::parse(&format!("http://[::1]:5000/x/y:t@{d}")).unwrap();
        assert_eq!(u.digest.as_ref().unwrap().as_str(), d);
        assert_eq!(u.to_string(), format!("http://[::1]:5000/x/y:t@{d}"));
        assert_eq!(u.to_reference().unwrap().canonical(), format!("[::1]:5000/x/y:t@{d}"));
        let u = ImageUrl::parse("https://localhost:5000/app").unwrap();
        assert_eq!(u.tag, None);
        assert!(u.tag_matches("latest"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "ftp://r.example/a:b",
            "https:///a:b",
            "https://r.example",
            "https://r.example/",
            "https://r.example/A:b",
            "https://r.example/a:",
            "https://r.example/a:b c",
            "https://r.example/a@sha256:zz",
            "https://bad_host/a:b",
        ] {
            assert!(ImageUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn glob_is_literal_except_star() {
        assert!(glob_match(b"a.b*", b"a.b"));
        assert!(!glob_match(b"a.b*", b"axb"));
        assert!(glob_match(b"*x*y*", b"aaxbby"));
        assert!(!glob_match(b"*x*y", b"aaxbbyz"));
    }
}
