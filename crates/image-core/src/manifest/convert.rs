//! Writing an image's manifest in the other format: OCI <-> Docker schema 2
//! (`copy --format`, as skopeo's and podman's `--format oci|v2s2`).
//!
//! The blobs stay as they are (a Docker config is a valid OCI config and
//! the reverse; layers are the same tars): only media types change. Docker
//! schema 2 has no annotations (dropped, as skopeo drops them), no
//! `subject` or `artifactType` (refused: the manifest would lose what it
//! refers to), and no zstd or uncompressed non-distributable layers
//! (refused).

use serde::Serialize;

use super::{Descriptor, ImageIndex, ImageManifest, Manifest, ManifestError, Platform, RawManifest};
use crate::digest::Digest;
use crate::media_type as mt;

/// The manifest format a copy writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestFormat {
    /// OCI image manifests and indexes.
    Oci,
    /// Docker schema 2 manifests and manifest lists (`v2s2`).
    DockerV2S2,
}

impl ManifestFormat {
    /// The image manifest media type of this format.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => mt::OCI_MANIFEST,
            ManifestFormat::DockerV2S2 => mt::DOCKER_MANIFEST,
        }
    }

    /// The index media type of this format.
    pub fn index_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => mt::OCI_INDEX,
            ManifestFormat::DockerV2S2 => mt::DOCKER_MANIFEST_LIST,
        }
    }
}

impl std::str::FromStr for ManifestFormat {
    type Err = String;

    /// `oci`, or `v2s2` (also `docker`), as skopeo and podman spell them.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "oci" => Ok(ManifestFormat::Oci),
            "v2s2" | "docker" => Ok(ManifestFormat::DockerV2S2),
            other => Err(format!("unknown manifest format {other:?} (oci or v2s2)")),
        }
    }
}

impl std::fmt::Display for ManifestFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ManifestFormat::Oci => "oci",
            ManifestFormat::DockerV2S2 => "v2s2",
        })
    }
}

/// `raw` written in format `to`: itself when it is in that format already.
pub fn convert(raw: RawManifest, to: ManifestFormat) -> Result<RawManifest, ManifestError> {
    let target = match raw.parse()? {
        Manifest::Image(_) => to.manifest_media_type(),
        Manifest::Index(_) => to.index_media_type(),
    };
    if raw.media_type == target {
        return Ok(raw);
    }
    let refuse = |reason: String| ManifestError::Invalid {
        what: format!("manifest {}", raw.digest),
        reason: format!("cannot be written as Docker schema 2: {reason}"),
    };
    match (raw.parse()?, to) {
        (Manifest::Image(m), ManifestFormat::Oci) => {
            let mut config = m.config.clone();
            if config.media_type == mt::DOCKER_CONFIG {
                config.media_type = mt::OCI_CONFIG.into();
            }
            let layers =
                m.layers.iter().map(|l| Descriptor { media_type: oci_layer(&l.media_type), ..l.clone() }).collect();
            let out = ImageManifest { media_type: Some(mt::OCI_MANIFEST.into()), config, layers, ..m };
            Ok(RawManifest::from_value(&out, mt::OCI_MANIFEST))
        }
        (Manifest::Image(m), ManifestFormat::DockerV2S2) => {
            if m.subject.is_some() || m.artifact_type.is_some() {
                return Err(refuse("it has a subject or an artifactType, which Docker schema 2 cannot carry".into()));
            }
            let config_type = match m.config.media_type.as_str() {
                mt::OCI_CONFIG | mt::DOCKER_CONFIG => mt::DOCKER_CONFIG,
                other => return Err(refuse(format!("its config is {other}, not an image config"))),
            };
            let layers = m
                .layers
                .iter()
                .map(|l| {
                    let media_type = docker_layer(&l.media_type).ok_or_else(|| {
                        refuse(format!("layer {} is {}, which Docker schema 2 has no type for", l.digest, l.media_type))
                    })?;
                    Ok(DockerDescriptor {
                        media_type,
                        size: l.size,
                        digest: &l.digest,
                        urls: l.urls.as_deref(),
                        platform: None,
                    })
                })
                .collect::<Result<Vec<_>, ManifestError>>()?;
            let out = DockerManifest {
                schema_version: 2,
                media_type: mt::DOCKER_MANIFEST,
                config: DockerDescriptor {
                    media_type: config_type,
                    size: m.config.size,
                    digest: &m.config.digest,
                    urls: None,
                    platform: None,
                },
                layers,
            };
            Ok(RawManifest::from_value(&out, mt::DOCKER_MANIFEST))
        }
        (Manifest::Index(i), ManifestFormat::Oci) => {
            let out = ImageIndex { media_type: Some(mt::OCI_INDEX.into()), ..i };
            Ok(RawManifest::from_value(&out, mt::OCI_INDEX))
        }
        (Manifest::Index(i), ManifestFormat::DockerV2S2) => {
            if i.subject.is_some() || i.artifact_type.is_some() {
                return Err(refuse("it has a subject or an artifactType, which Docker schema 2 cannot carry".into()));
            }
            let manifests = i
                .manifests
                .iter()
                .map(|c| {
                    if c.media_type != mt::DOCKER_MANIFEST {
                        return Err(refuse(format!(
                            "its entry {} is {}, not a Docker schema 2 manifest",
                            c.digest, c.media_type
                        )));
                    }
                    Ok(DockerDescriptor {
                        media_type: mt::DOCKER_MANIFEST,
                        size: c.size,
                        digest: &c.digest,
                        urls: None,
                        platform: c.platform.as_ref(),
                    })
                })
                .collect::<Result<Vec<_>, ManifestError>>()?;
            let out = DockerList { schema_version: 2, media_type: mt::DOCKER_MANIFEST_LIST, manifests };
            Ok(RawManifest::from_value(&out, mt::DOCKER_MANIFEST_LIST))
        }
    }
}

/// The OCI media type of a layer (others as they are).
fn oci_layer(media_type: &str) -> String {
    match media_type {
        mt::DOCKER_LAYER_GZIP => mt::OCI_LAYER_GZIP,
        mt::DOCKER_LAYER_TAR => mt::OCI_LAYER_TAR,
        mt::DOCKER_LAYER_FOREIGN => mt::OCI_LAYER_NONDIST_GZIP,
        other => other,
    }
    .to_owned()
}

/// The Docker media type of a layer, if it has one.
fn docker_layer(media_type: &str) -> Option<&'static str> {
    match media_type {
        mt::OCI_LAYER_GZIP | mt::DOCKER_LAYER_GZIP => Some(mt::DOCKER_LAYER_GZIP),
        mt::OCI_LAYER_TAR | mt::DOCKER_LAYER_TAR => Some(mt::DOCKER_LAYER_TAR),
        mt::OCI_LAYER_NONDIST_GZIP | mt::DOCKER_LAYER_FOREIGN => Some(mt::DOCKER_LAYER_FOREIGN),
        _ => None,
    }
}

/// A Docker schema 2 descriptor, its fields in Docker's order (as the
/// Docker tools write them, so a conversion gives their bytes).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DockerDescriptor<'a> {
    media_type: &'static str,
    size: u64,
    digest: &'a Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    urls: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a Platform>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DockerManifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: DockerDescriptor<'a>,
    layers: Vec<DockerDescriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DockerList<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<DockerDescriptor<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(media_type: &str, data: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::sha256_of(data), data.len() as u64)
    }

    fn image(layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.into()),
            artifact_type: None,
            config: d(mt::OCI_CONFIG, b"config"),
            layers,
            subject: None,
            annotations: None,
        }
    }

    #[test]
    fn an_image_goes_both_ways_with_its_blobs() {
        let mut m = image(vec![d(mt::OCI_LAYER_GZIP, b"a"), d(mt::OCI_LAYER_TAR, b"b")]);
        m.annotations = Some([("k".to_owned(), "v".to_owned())].into());
        let oci = RawManifest::from_value(&m, mt::OCI_MANIFEST);
        let docker = convert(oci.clone(), ManifestFormat::DockerV2S2).unwrap();
        assert_eq!(docker.media_type, mt::DOCKER_MANIFEST);
        // Docker's field order, as the Docker tools (and skopeo) write it;
        // annotations dropped.
        let text = String::from_utf8(docker.bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":6,"digest":"sha256:"#), "{text}");
        assert!(!text.contains("annotations"), "{text}");
        let Manifest::Image(back) = docker.parse().unwrap() else { panic!("an image") };
        let types: Vec<_> = back.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(types, [mt::DOCKER_LAYER_GZIP, mt::DOCKER_LAYER_TAR]);
        assert_eq!(back.config.digest, m.config.digest);
        // And back to OCI: the same blobs, OCI types.
        let again = convert(docker.clone(), ManifestFormat::Oci).unwrap();
        let Manifest::Image(o) = again.parse().unwrap() else { panic!("an image") };
        assert_eq!(o.config.media_type, mt::OCI_CONFIG);
        assert_eq!(
            o.layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
            m.layers.iter().map(|l| &l.digest).collect::<Vec<_>>()
        );
        assert_eq!(o.layers[0].media_type, mt::OCI_LAYER_GZIP);
        // Already in the format: the same bytes, the same digest.
        assert_eq!(convert(docker.clone(), ManifestFormat::DockerV2S2).unwrap(), docker);
        assert_eq!(convert(oci.clone(), ManifestFormat::Oci).unwrap(), oci);
    }

    #[test]
    fn what_docker_cannot_say_is_refused() {
        let zstd = RawManifest::from_value(&image(vec![d(mt::OCI_LAYER_ZSTD, b"z")]), mt::OCI_MANIFEST);
        let e = convert(zstd, ManifestFormat::DockerV2S2).unwrap_err().to_string();
        assert!(e.contains("tar+zstd") && e.contains("Docker schema 2"), "{e}");
        let mut with_subject = image(vec![]);
        with_subject.subject = Some(d(mt::OCI_MANIFEST, b"m"));
        let e = convert(RawManifest::from_value(&with_subject, mt::OCI_MANIFEST), ManifestFormat::DockerV2S2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("subject"), "{e}");
        let mut artifact = image(vec![]);
        artifact.config = d("application/vnd.example.sbom", b"x");
        let e = convert(RawManifest::from_value(&artifact, mt::OCI_MANIFEST), ManifestFormat::DockerV2S2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("application/vnd.example.sbom"), "{e}");
    }

    #[test]
    fn an_index_becomes_a_manifest_list_with_its_platforms() {
        let mut child = d(mt::DOCKER_MANIFEST, b"arm");
        child.platform = Some(Platform::new("linux", "arm64", Some("v8")));
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(mt::OCI_INDEX.into()),
            artifact_type: None,
            manifests: vec![child],
            subject: None,
            annotations: Some([("k".to_owned(), "v".to_owned())].into()),
        };
        let list = convert(RawManifest::from_value(&index, mt::OCI_INDEX), ManifestFormat::DockerV2S2).unwrap();
        let text = String::from_utf8(list.bytes.clone()).unwrap();
        assert!(text.contains(r#""platform":{"architecture":"arm64","os":"linux","variant":"v8"}"#), "{text}");
        assert_eq!(list.media_type, mt::DOCKER_MANIFEST_LIST);
        let Manifest::Index(back) = list.parse().unwrap() else { panic!("an index") };
        assert_eq!(back.manifests[0].platform, index.manifests[0].platform);
        // An OCI child cannot be listed in a Docker list.
        let mut oci_child = index.clone();
        oci_child.manifests[0].media_type = mt::OCI_MANIFEST.into();
        let e = convert(RawManifest::from_value(&oci_child, mt::OCI_INDEX), ManifestFormat::DockerV2S2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a Docker schema 2 manifest"), "{e}");
    }
}
