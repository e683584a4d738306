//! containers-registries.conf(5), version 2: which registry a name is
//! pulled from (`location` rewrites, mirrors tried in order with the
//! registry itself last), which registries are insecure or blocked, and
//! short-name aliases.
//!
//! The caller decides which files count (podman's: the user's
//! `~/.config/containers/registries.conf` if it exists, else
//! `/etc/containers/registries.conf`, then the `.conf` drop-ins of
//! `registries.conf.d` in both places, in name order) and passes their
//! paths to [`RegistriesConf::load`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cargohold_image_core::Reference;

use crate::error::{Error, Result};

/// Which pulls a mirror serves (`pull-from-mirror`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullFromMirror {
    /// Every pull.
    #[default]
    All,
    /// Pulls by digest only (a tag on a mirror may lag behind).
    DigestOnly,
    /// Pulls by tag only.
    TagOnly,
}

/// A `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port][/namespace]` the mirror serves the names under.
    pub location: String,
    /// Unverified TLS, and plain HTTP when it speaks no TLS.
    pub insecure: bool,
    /// Which pulls it serves.
    pub pull_from_mirror: PullFromMirror,
}

/// A `[[registry]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// The names it covers: `host[:port][/namespace...]` or `*.domain`.
    pub prefix: String,
    /// Where those names are really fetched from (the prefix rewritten).
    pub location: String,
    /// Unverified TLS, and plain HTTP when it speaks no TLS.
    pub insecure: bool,
    /// Never pulled from or pushed to.
    pub blocked: bool,
    /// Tried in order before the registry itself, for pulls.
    pub mirrors: Vec<Mirror>,
    /// The file that said so (for messages).
    pub file: String,
}

/// Where a pull may come from, in order: mirrors, then the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSource {
    /// The reference as fetched from this source.
    pub reference: Reference,
    /// Whether this is a mirror (a failure moves on to the next source).
    pub mirror: bool,
}

/// The merged registries configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    /// The `[[registry]]` tables, later files replacing earlier ones' with
    /// the same prefix.
    pub registries: Vec<RegistryEntry>,
    /// Short-name aliases (`"fedora" = "registry.fedoraproject.org/fedora"`).
    pub aliases: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileV2 {
    #[serde(default)]
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    short_name_mode: Option<String>,
    #[serde(default)]
    credential_helpers: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<RegistryV2>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    /// Version 1's tables: refused with a message.
    #[serde(default)]
    registries: Option<toml::Value>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RegistryV2 {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorV2>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct MirrorV2 {
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: Option<String>,
}

fn conf_error(file: &str, line: Option<usize>, reason: impl Into<String>) -> Error {
    let at = line.map_or_else(String::new, |l| format!(", line {l}"));
    Error::Config { path: format!("{file}{at}"), reason: reason.into() }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Whether `s` is `host[:port][/path...]` as a prefix or location may be.
fn valid_location(s: &str) -> bool {
    let host = s.split('/').next().unwrap_or("");
    !s.is_empty()
        && !s.ends_with('/')
        && cargohold_image_core::is_valid_registry(host)
        && s.split('/').skip(1).all(|c| !c.is_empty() && c != "." && c != "..")
        && !s.contains(['@', ' ', '\t'])
}

impl RegistriesConf {
    /// Parses one file's text (`file` names it in errors, with the line).
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let parsed: FileV2 = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            conf_error(file, line, e.message().to_owned())
        })?;
        if parsed.registries.is_some() {
            return Err(conf_error(
                file,
                None,
                "version 1 tables ([registries.search], [registries.insecure], [registries.block]) are not supported: \
                 write [[registry]] tables (containers-registries.conf(5), version 2)",
            ));
        }
        if let Some(key) = parsed.other.keys().next() {
            return Err(conf_error(file, None, format!("unknown key {key:?}")));
        }
        // Read and understood; cargohold resolves short names as Docker
        // does (docker.io) and runs credential helpers from auth files.
        let _ = (parsed.unqualified_search_registries, parsed.short_name_mode, parsed.credential_helpers);
        let mut conf = RegistriesConf::default();
        for r in parsed.registry {
            let prefix = r
                .prefix
                .clone()
                .or_else(|| r.location.clone())
                .ok_or_else(|| conf_error(file, None, "a [[registry]] table needs a prefix or a location"))?;
            let wildcard = prefix.strip_prefix("*.");
            match wildcard {
                Some(domain) => {
                    if domain.is_empty() || domain.contains(['/', ':', '*']) {
                        return Err(conf_error(file, None, format!("bad wildcard prefix {prefix:?} (want *.domain)")));
                    }
                    if r.location.is_some() {
                        return Err(conf_error(
                            file,
                            None,
                            format!("the wildcard prefix {prefix:?} cannot have a location"),
                        ));
                    }
                }
                None if !valid_location(&prefix) => {
                    return Err(conf_error(
                        file,
                        None,
                        format!("bad prefix {prefix:?} (want host[:port][/namespace])"),
                    ));
                }
                None => {}
            }
            let location = r.location.clone().unwrap_or_else(|| prefix.clone());
            if wildcard.is_none() && !valid_location(&location) {
                return Err(conf_error(
                    file,
                    None,
                    format!("bad location {location:?} (want host[:port][/namespace])"),
                ));
            }
            let mut mirrors = Vec::new();
            for m in r.mirror {
                if !valid_location(&m.location) {
                    return Err(conf_error(file, None, format!("bad mirror location {:?}", m.location)));
                }
                let pull_from_mirror = match m.pull_from_mirror.as_deref() {
                    None | Some("") | Some("all") if r.mirror_by_digest_only => PullFromMirror::DigestOnly,
                    None | Some("") | Some("all") => PullFromMirror::All,
                    Some("digest-only") => PullFromMirror::DigestOnly,
                    Some("tag-only") => PullFromMirror::TagOnly,
                    Some(other) => {
                        return Err(conf_error(
                            file,
                            None,
                            format!(
                                "pull-from-mirror {other:?} of mirror {}: want all, digest-only or tag-only",
                                m.location
                            ),
                        ));
                    }
                };
                mirrors.push(Mirror { location: m.location, insecure: m.insecure, pull_from_mirror });
            }
            let entry = RegistryEntry {
                prefix,
                location,
                insecure: r.insecure,
                blocked: r.blocked,
                mirrors,
                file: file.into(),
            };
            conf.registries.retain(|e| e.prefix != entry.prefix);
            conf.registries.push(entry);
        }
        for (name, target) in parsed.aliases {
            Reference::parse(&target)
                .ok()
                .filter(|t| t.tag().is_none() && t.digest().is_none())
                .ok_or_else(|| conf_error(file, None, format!("alias {name:?}: {target:?} is no image name")))?;
            conf.aliases.insert(name, target);
        }
        Ok(conf)
    }

    /// Adds `later` on top: its registries replace ours with the same
    /// prefix, its aliases ours with the same name.
    pub fn merge(&mut self, later: RegistriesConf) {
        for e in later.registries {
            self.registries.retain(|r| r.prefix != e.prefix);
            self.registries.push(e);
        }
        self.aliases.extend(later.aliases);
    }

    /// Reads and merges `paths` in order; those that do not exist are skipped.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut conf = RegistriesConf::default();
        for p in paths {
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(conf_error(&p.display().to_string(), None, format!("cannot read it: {e}"))),
            };
            conf.merge(Self::parse(&text, &p.display().to_string())?);
        }
        Ok(conf)
    }

    /// The files podman reads, in order: `user` (`~/.config/containers/
    /// registries.conf`) if it exists, else `system`; then the drop-ins of
    /// `system.d` and `user.d` in name order.
    pub fn default_paths(system: &Path, user: Option<&Path>) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        match user.filter(|u| u.exists()) {
            Some(u) => paths.push(u.to_owned()),
            None => paths.push(system.to_owned()),
        }
        for main in std::iter::once(system).chain(user) {
            let mut dir = main.as_os_str().to_owned();
            dir.push(".d");
            if let Ok(entries) = std::fs::read_dir(PathBuf::from(dir)) {
                let mut confs: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                    .collect();
                confs.sort();
                paths.extend(confs);
            }
        }
        paths
    }

    /// The entry whose prefix matches `r` best (the longest; a wildcard
    /// only when no plain prefix matches).
    pub fn find(&self, r: &Reference) -> Option<&RegistryEntry> {
        let name = format!("{}/{}", r.registry(), r.repository());
        let host = r.registry().split(':').next().unwrap_or("");
        let plain = self
            .registries
            .iter()
            .filter(|e| !e.prefix.starts_with("*."))
            .filter(|e| name == e.prefix || name.starts_with(&format!("{}/", e.prefix)))
            .max_by_key(|e| e.prefix.len());
        plain.or_else(|| {
            self.registries
                .iter()
                .filter_map(|e| e.prefix.strip_prefix("*.").map(|d| (e, d)))
                .filter(|(_, d)| host.ends_with(&format!(".{d}")))
                .max_by_key(|(_, d)| d.len())
                .map(|(e, _)| e)
        })
    }

    /// `r` with its matching prefix replaced by `location`.
    fn rewrite(r: &Reference, prefix: &str, location: &str) -> Result<Reference> {
        let name = format!("{}/{}", r.registry(), r.repository());
        let rest = name.strip_prefix(prefix).unwrap_or("");
        let new = format!("{location}{rest}");
        let (registry, repository) = new.split_once('/').ok_or_else(|| {
            conf_error("registries.conf", None, format!("{r} rewritten by {prefix} -> {location} has no repository"))
        })?;
        Reference::from_parts(registry, repository, r.tag(), r.digest())
            .map_err(|e| conf_error("registries.conf", None, format!("{r} rewritten by {prefix} -> {location}: {e}")))
    }

    /// Where to pull `r` from, in order: its mirrors that serve this kind of
    /// pull, then its registry (at its `location`). A blocked registry is an
    /// error that says so.
    pub fn pull_sources(&self, r: &Reference) -> Result<Vec<PullSource>> {
        let Some(e) = self.find(r) else {
            return Ok(vec![PullSource { reference: r.clone(), mirror: false }]);
        };
        if e.blocked {
            return Err(Error::Blocked { registry: e.prefix.clone(), source_file: e.file.clone() });
        }
        let wildcard = e.prefix.starts_with("*.");
        let prefix = if wildcard { r.registry() } else { e.prefix.as_str() };
        let mut out = Vec::new();
        for m in &e.mirrors {
            let serves = match m.pull_from_mirror {
                PullFromMirror::All => true,
                PullFromMirror::DigestOnly => r.digest().is_some(),
                PullFromMirror::TagOnly => r.digest().is_none(),
            };
            if serves {
                out.push(PullSource { reference: Self::rewrite(r, prefix, &m.location)?, mirror: true });
            }
        }
        let primary = if wildcard { r.clone() } else { Self::rewrite(r, &e.prefix, &e.location)? };
        out.push(PullSource { reference: primary, mirror: false });
        Ok(out)
    }

    /// Where a push of `r` goes (its `location`); a blocked registry is an
    /// error that says so.
    pub fn push_target(&self, r: &Reference) -> Result<Reference> {
        match self.find(r) {
            None => Ok(r.clone()),
            Some(e) if e.blocked => Err(Error::Blocked { registry: e.prefix.clone(), source_file: e.file.clone() }),
            Some(e) if e.prefix.starts_with("*.") => Ok(r.clone()),
            Some(e) => Self::rewrite(r, &e.prefix, &e.location),
        }
    }

    /// The registries (`host[:port]`) configured insecure, mirrors included.
    pub fn insecure_registries(&self) -> Vec<String> {
        let host = |l: &str| l.split('/').next().unwrap_or("").to_owned();
        let mut out = Vec::new();
        for e in &self.registries {
            if e.insecure && !e.prefix.starts_with("*.") {
                out.push(host(&e.location));
            }
            out.extend(e.mirrors.iter().filter(|m| m.insecure).map(|m| host(&m.location)));
        }
        out.sort();
        out.dedup();
        out
    }

    /// The image an alias names, for a short name as typed (`fedora:39`:
    /// the alias of `fedora`, tag kept). `None` when `input` names a
    /// registry or no alias matches.
    pub fn expand_alias(&self, input: &str) -> Option<String> {
        let (name, suffix) = match input.find(['@']) {
            Some(i) => input.split_at(i),
            None => match input.rfind(':') {
                Some(i) if !input[i..].contains('/') => input.split_at(i),
                _ => (input, ""),
            },
        };
        let first = name.split('/').next().unwrap_or("");
        let has_domain = name.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        if has_domain {
            return None;
        }
        self.aliases.get(name).map(|target| format!("{target}{suffix}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn prefixes_locations_mirrors_blocks_and_aliases() {
        let conf = RegistriesConf::parse(
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "example.com/team"
location = "internal.example:5000/mirror/team"
[[registry.mirror]]
location = "mirror-a.example/team"
[[registry.mirror]]
location = "mirror-b.example:5001/team"
insecure = true
pull-from-mirror = "digest-only"

[[registry]]
location = "example.com"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"#,
            "test.conf",
        )
        .unwrap();
        let sources = conf.pull_sources(&r("example.com/team/app:1")).unwrap();
        let names: Vec<String> = sources.iter().map(|s| s.reference.to_string()).collect();
        assert_eq!(names, ["mirror-a.example/team/app:1", "internal.example:5000/mirror/team/app:1"]);
        let d = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa";
        let sources = conf.pull_sources(&r(&format!("example.com/team/app@{d}"))).unwrap();
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[1].reference.to_string(), format!("mirror-b.example:5001/team/app@{d}"));
        // `example.com/teamx` is not under `example.com/team`: the blocked entry.
        let err = conf.pull_sources(&r("example.com/teamx/app")).unwrap_err().to_string();
        assert!(err.contains("blocked") && err.contains("test.conf"), "{err}");
        assert!(conf.push_target(&r("example.com/other:1")).is_err());
        assert_eq!(conf.push_target(&r("example.com/team/app:1")).unwrap().registry(), "internal.example:5000");
        assert_eq!(conf.find(&r("git.corp.example/x")).unwrap().prefix, "*.corp.example");
        assert!(conf.find(&r("corp.example/x")).is_none());
        assert_eq!(conf.insecure_registries(), ["mirror-b.example:5001"]);
        assert_eq!(conf.expand_alias("fedora:39").as_deref(), Some("registry.fedoraproject.org/fedora:39"));
        assert_eq!(conf.expand_alias("fedora").as_deref(), Some("registry.fedoraproject.org/fedora"));
        assert_eq!(conf.expand_alias("quay.io/fedora"), None);
        assert_eq!(conf.expand_alias("ubuntu"), None);
    }

    #[test]
    fn bad_files_are_named_with_their_line() {
        let err = RegistriesConf::parse("[[registry]]\nprefix = \"a.example\"\ninsecure = maybe\n", "/etc/r.conf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/r.conf, line 3"), "{err}");
        let err = RegistriesConf::parse("[registries.search]\nregistries = []\n", "/x.conf").unwrap_err().to_string();
        assert!(err.contains("version 1"), "{err}");
        let err =
            RegistriesConf::parse("[[registry]]\nprefix = \"a.example\"\nfrobnicate = 1\n", "/x.conf").unwrap_err();
        assert!(err.to_string().contains("frobnicate"), "{err}");
        let err = RegistriesConf::parse("[[registry]]\nprefix = \"a/../b\"\n", "/x.conf").unwrap_err();
        assert!(err.to_string().contains("bad prefix"), "{err}");
    }
}
