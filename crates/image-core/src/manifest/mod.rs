//! Manifests, indexes and image configs (OCI and Docker schema 2).
//!
//! A manifest's digest is over its exact bytes, so [`RawManifest`] keeps them and
//! parsing is a view: re-serializing a parsed manifest is never used to address it.

mod change;
mod config;
mod convert;
mod platform;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type as mt;

pub use change::{ChangeError, creation_time, format_rfc3339};
pub use config::{ContainerConfig, History, ImageConfig, RootFs};
pub use convert::{ManifestFormat, convert};
pub use platform::{Platform, PlatformError};

/// Largest manifest we accept (the limit distribution enforces).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config we accept.
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// The `org.opencontainers.image.ref.name` annotation.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The `org.opencontainers.image.created` annotation.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
/// containerd's annotation carrying the full image name in archives.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Alternative download locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Embedded data (base64), rarely used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    /// A descriptor with just media type, digest and size.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            data: None,
        }
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }

    /// Sets (or with `None` removes) an annotation.
    pub fn set_annotation(&mut self, key: &str, value: Option<String>) {
        let map = self.annotations.get_or_insert_with(BTreeMap::new);
        match value {
            Some(v) => {
                map.insert(key.into(), v);
            }
            None => {
                map.remove(key);
            }
        }
        if map.is_empty() {
            self.annotations = None;
        }
    }
}

/// A single-image manifest (OCI image manifest or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (required by Docker, optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A multi-platform index (OCI image index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Subject (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ImageIndex {
    /// An empty OCI index.
    pub fn new_oci() -> Self {
        ImageIndex {
            schema_version: 2,
            media_type: Some(mt::OCI_INDEX.into()),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: None,
        }
    }

    /// The entry for `platform`, chosen with [`Platform::select`].
    pub fn select_platform(&self, platform: &Platform) -> Option<&Descriptor> {
        let candidates = self
            .manifests
            .iter()
            .enumerate()
            .filter(|(_, d)| mt::is_image_manifest(&d.media_type))
            .map(|(i, d)| (i, d.platform.as_ref()));
        Platform::select(platform, candidates).map(|i| &self.manifests[i])
    }
}

/// Either kind of manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant, reason = "made once per manifest read and moved out at once; a box buys nothing")]
pub enum Manifest {
    /// A single image.
    Image(ImageManifest),
    /// An index of images.
    Index(ImageIndex),
}

/// Why manifest or config bytes cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Not valid JSON of the expected shape.
    #[error("could not parse {what}")]
    Json {
        /// What was being parsed (`manifest sha256:...`).
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A media type we cannot handle.
    #[error("{what} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// What was being parsed.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// Docker schema 1, which has been deprecated since 2017.
    #[error(
        "{what} is a Docker schema 1 manifest, which is not supported (convert it with a current registry or `docker push`)"
    )]
    SchemaV1 {
        /// What was being parsed.
        what: String,
    },
    /// Valid JSON that breaks the spec.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being parsed.
        what: String,
        /// What rule is broken.
        reason: String,
    },
}

/// Just enough of any manifest to learn its type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// A manifest's exact bytes, its media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawManifest {
    /// The exact bytes (the digest is computed over these).
    pub bytes: Vec<u8>,
    /// Media type (from the descriptor, `Content-Type` or the body itself).
    pub media_type: String,
    /// sha256 (or the descriptor's algorithm) of `bytes`.
    pub digest: Digest,
}

impl RawManifest {
    /// Wraps bytes; the media type is taken from `declared` or, failing that,
    /// from the body (`mediaType` field, or the shape of the JSON).
    pub fn new(bytes: Vec<u8>, declared: Option<&str>) -> Result<Self, ManifestError> {
        let digest = Digest::sha256_of(&bytes);
        let what = || format!("manifest {digest}");
        let probe: Probe =
            serde_json::from_slice(&bytes).map_err(|source| ManifestError::Json { what: what(), source })?;
        let body_type = probe.media_type.clone();
        let media_type = match (declared.filter(|d| !d.is_empty()), body_type) {
            (Some(d), Some(b)) if d != b && !(d == "application/json" || d == "text/plain") => {
                return Err(ManifestError::Invalid {
                    what: what(),
                    reason: format!("declared media type {d:?} but the body says {b:?}"),
                });
            }
            (Some(d), _) if d != "application/json" && d != "text/plain" => d.to_owned(),
            (_, Some(b)) => b,
            (_, None) => {
                if probe.schema_version == Some(1) {
                    return Err(ManifestError::SchemaV1 { what: what() });
                }
                if probe.manifests.is_some() {
                    mt::OCI_INDEX.to_owned()
                } else if probe.config.is_some() {
                    mt::OCI_MANIFEST.to_owned()
                } else {
                    return Err(ManifestError::Invalid {
                        what: what(),
                        reason: "no mediaType, and neither config nor manifests".into(),
                    });
                }
            }
        };
        Ok(RawManifest { bytes, media_type, digest })
    }

    /// Wraps bytes and checks them against the descriptor that pointed at them.
    pub fn from_descriptor(bytes: Vec<u8>, desc: &Descriptor) -> Result<Self, ManifestError> {
        let mut m = RawManifest::new(bytes, Some(&desc.media_type))?;
        if desc.digest.algorithm() != m.digest.algorithm() {
            m.digest = desc.digest.same_algorithm_of(&m.bytes);
        }
        Ok(m)
    }

    /// Serializes a manifest or index and wraps the result.
    pub fn from_value<T: Serialize>(value: &T, media_type: &str) -> Self {
        let bytes = serde_json::to_vec(value).expect("manifest types always serialize");
        let digest = Digest::sha256_of(&bytes);
        RawManifest { bytes, media_type: media_type.into(), digest }
    }

    /// Parses the bytes according to the media type.
    pub fn parse(&self) -> Result<Manifest, ManifestError> {
        let what = || format!("manifest {}", self.digest);
        let mt_ = self.media_type.as_str();
        if mt_ == mt::DOCKER_MANIFEST_V1 || mt_ == mt::DOCKER_MANIFEST_V1_SIGNED {
            return Err(ManifestError::SchemaV1 { what: what() });
        }
        let json = |source| ManifestError::Json { what: what(), source };
        let manifest = if mt::is_index(mt_) {
            Manifest::Index(serde_json::from_slice(&self.bytes).map_err(json)?)
        } else if mt::is_image_manifest(mt_) || mt_ == "application/vnd.oci.artifact.manifest.v1+json" {
            Manifest::Image(serde_json::from_slice(&self.bytes).map_err(json)?)
        } else {
            return Err(ManifestError::UnsupportedMediaType { what: what(), media_type: mt_.into() });
        };
        let schema = match &manifest {
            Manifest::Image(m) => m.schema_version,
            Manifest::Index(i) => i.schema_version,
        };
        if schema != 2 {
            return Err(ManifestError::Invalid {
                what: what(),
                reason: format!("schemaVersion is {schema}, expected 2"),
            });
        }
        Ok(manifest)
    }

    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.digest.clone(), self.bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests;
