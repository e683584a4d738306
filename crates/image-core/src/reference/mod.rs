//! Image references with Docker's exact grammar and normalization.
//!
//! [`Reference::parse`] has the semantics of `ParseNormalizedNamed` from
//! `github.com/distribution/reference`: `ubuntu` becomes
//! `docker.io/library/ubuntu`, `index.docker.io` becomes `docker.io`, the first
//! path component is a registry when it is `localhost` or contains `.`, `:` or
//! an uppercase letter, and every other rule (tag and digest grammar, the
//! 255-character path limit, lowercase names) is checked with Docker's error.

mod grammar;
mod url;

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

pub use url::{ImageUrl, ImageUrlError};

/// Docker Hub's canonical registry name.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
/// The tag a pull uses when neither tag nor digest is given.
pub const DEFAULT_TAG: &str = "latest";
/// Maximum length of the repository path (without the registry).
pub const MAX_PATH_LEN: usize = 255;

/// Why a string is not a valid image reference. The messages are Docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The input is empty (or has no name at all).
    #[error("invalid reference {input:?}: repository name must have at least one component")]
    Empty {
        /// The rejected input.
        input: String,
    },
    /// The input would be valid in lowercase.
    #[error("invalid reference format: repository name ({name}) must be lowercase")]
    Uppercase {
        /// The offending repository name (or the whole input).
        name: String,
    },
    /// The input matches no form of the grammar.
    #[error("invalid reference format: {input:?}")]
    InvalidFormat {
        /// The rejected input.
        input: String,
    },
    /// The repository path exceeds 255 characters.
    #[error("invalid reference {input:?}: repository name must not be more than {MAX_PATH_LEN} characters")]
    NameTooLong {
        /// The rejected input.
        input: String,
    },
    /// A 64-hex string, which would be ambiguous with an image ID.
    #[error("invalid repository name ({input}), cannot specify 64-byte hexadecimal strings")]
    Identifier {
        /// The rejected input.
        input: String,
    },
    /// The digest part is malformed or uses an unknown algorithm.
    #[error("invalid reference {input:?}: {source}")]
    Digest {
        /// The rejected input.
        input: String,
        /// What is wrong with the digest.
        #[source]
        source: DigestError,
    },
    /// A tag given separately (e.g. to [`Reference::with_tag`]) is malformed.
    #[error("invalid tag format: {tag:?}")]
    InvalidTag {
        /// The rejected tag.
        tag: String,
    },
}

/// A normalized image reference: `registry/repository[:tag][@digest]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses with `ParseNormalizedNamed` semantics.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        // Docker reports "" as a malformed reference; a distinct error is clearer.
        if input.is_empty() {
            return Err(ReferenceError::Empty { input: String::new() });
        }
        if grammar::is_identifier(input) {
            return Err(ReferenceError::Identifier { input: input.into() });
        }
        let (domain, remainder) = split_docker_domain(input);
        let remote = remainder.split_once(':').map_or(remainder.as_str(), |(r, _)| r);
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase { name: remote.into() });
        }
        parse_strict(&format!("{domain}/{remainder}"), input)
    }

    /// Parses a reference that must already be canonical (`ParseNamed`).
    pub fn parse_canonical(input: &str) -> Result<Self, ReferenceError> {
        let r = Self::parse(input)?;
        if r.canonical() != input {
            return Err(ReferenceError::InvalidFormat { input: input.into() });
        }
        Ok(r)
    }

    /// Builds a reference from parts, validating each.
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Self, ReferenceError> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        let r = parse_strict(&s, &s)?;
        if r.registry != registry {
            return Err(ReferenceError::InvalidFormat { input: s });
        }
        Ok(r)
    }

    /// The registry (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/ubuntu`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if one was given.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        if self.registry.is_empty() {
            self.repository.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The normalized reference with exactly the tag and digest given.
    pub fn canonical(&self) -> String {
        self.render(self.name(), self.tag.as_deref(), self.digest.as_ref())
    }

    /// Docker's short form: `docker.io/` and `library/` dropped (`ubuntu:22.04`).
    pub fn familiar(&self) -> String {
        self.render(self.familiar_name(), self.tag.as_deref(), self.digest.as_ref())
    }

    /// The familiar name without tag or digest.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            if let Some(rest) = self.repository.strip_prefix(OFFICIAL_PREFIX)
                && !rest.contains('/')
            {
                return rest.to_owned();
            }
            return self.repository.clone();
        }
        self.name()
    }

    /// What a pull resolves to: the digest when there is one (it wins over a tag),
    /// else the tag, else `latest`.
    pub fn pull_reference(&self) -> Reference {
        let mut r = self.clone();
        if r.digest.is_some() {
            r.tag = None;
        } else if r.tag.is_none() {
            r.tag = Some(DEFAULT_TAG.into());
        }
        r
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !grammar::ANCHORED_TAG.is_match(tag) {
            return Err(ReferenceError::InvalidTag { tag: tag.into() });
        }
        Ok(Reference { tag: Some(tag.into()), digest: None, ..self.clone() })
    }

    /// The same repository with a digest (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { tag: None, digest: Some(digest), ..self.clone() }
    }

    /// Whether neither tag nor digest was given.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    fn render(&self, name: String, tag: Option<&str>, digest: Option<&Digest>) -> String {
        let mut s = name;
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

/// Whether `tag` matches the tag grammar `[\w][\w.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    grammar::ANCHORED_TAG.is_match(tag)
}

/// Whether `s` is a syntactically valid registry host with optional port.
pub fn is_valid_registry(s: &str) -> bool {
    grammar::is_domain(s)
}

/// `splitDockerDomain` from normalize.go.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        return (DEFAULT_REGISTRY.into(), format!("{OFFICIAL_PREFIX}{name}"));
    };
    let (domain, mut remote) = if maybe_domain == "localhost" {
        (maybe_domain.to_owned(), maybe_remote.to_owned())
    } else if maybe_domain == LEGACY_DEFAULT_REGISTRY {
        (DEFAULT_REGISTRY.to_owned(), maybe_remote.to_owned())
    } else if maybe_domain.contains(['.', ':']) || maybe_domain.to_lowercase() != maybe_domain {
        (maybe_domain.to_owned(), maybe_remote.to_owned())
    } else {
        (DEFAULT_REGISTRY.to_owned(), name.to_owned())
    };
    if domain == DEFAULT_REGISTRY && !remote.contains('/') {
        remote = format!("{OFFICIAL_PREFIX}{remote}");
    }
    (domain, remote)
}

/// `Parse` from reference.go, requiring a name. `input` is what the user typed,
/// for error messages.
fn parse_strict(s: &str, input: &str) -> Result<Reference, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::Empty { input: input.into() });
    }
    let Some(caps) = grammar::REFERENCE.captures(s) else {
        let lower = s.to_lowercase();
        if lower != s && grammar::REFERENCE.is_match(&lower) {
            return Err(ReferenceError::Uppercase { name: input.into() });
        }
        return Err(ReferenceError::InvalidFormat { input: input.into() });
    };
    let name = caps.get(1).map_or("", |m| m.as_str());
    let (registry, repository) = match grammar::ANCHORED_NAME.captures(name) {
        Some(n) => (n.get(1).map_or("", |m| m.as_str()).to_owned(), n.get(2).map_or("", |m| m.as_str()).to_owned()),
        None => (String::new(), name.to_owned()),
    };
    if repository.len() > MAX_PATH_LEN {
        return Err(ReferenceError::NameTooLong { input: input.into() });
    }
    let tag = caps.get(2).map(|m| m.as_str().to_owned());
    let digest = match caps.get(3) {
        Some(m) => {
            Some(Digest::parse(m.as_str()).map_err(|source| ReferenceError::Digest { input: input.into(), source })?)
        }
        None => None,
    };
    if name.is_empty() {
        return Err(ReferenceError::Empty { input: input.into() });
    }
    Ok(Reference { registry, repository, tag, digest })
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.canonical())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical())
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
