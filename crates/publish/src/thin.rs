//! Thin images: a one-layer image whose layer holds `thin.json`, the list of
//! the source image's layers as `cvmfs://` URLs into the publish tree, and
//! whose config carries `CVMFS_IMAGE=true` with the source's env and cmd.
//! Built in memory (it is a few hundred bytes) and pushed directly.

use std::io::Write as _;

use cargohold_image_core::{Descriptor, Digest, ImageConfig, ImageManifest, RawManifest, Reference, media_type as mt};
use cargohold_registry::Registry;

use crate::error::Result;

/// Where and how thin images are pushed.
#[derive(Debug, Clone)]
pub struct ThinOptions {
    /// The output reference template (see `expand_output`).
    pub output_format: String,
    /// The CernVM-FS repository name the layer URLs point into.
    pub cvmfs_repo: String,
}

/// The `thin.json` document of an image.
pub fn thin_json(cvmfs_repo: &str, origin: &str, m: &ImageManifest) -> serde_json::Value {
    let layers: Vec<serde_json::Value> = m
        .layers
        .iter()
        .map(|l| {
            let hex = l.digest.hex();
            serde_json::json!({
                "digest": hex,
                "url": format!("cvmfs://{cvmfs_repo}/.layers/{}/{hex}/layerfs", &hex[..2]),
            })
        })
        .collect();
    serde_json::json!({ "version": "1.0", "origin": origin, "layers": layers })
}

/// Builds the thin image of `m` and pushes it to `target` with `reg`;
/// returns the digest of the pushed manifest.
pub fn push_thin(
    reg: &Registry,
    target: &Reference,
    cvmfs_repo: &str,
    origin: &str,
    m: &ImageManifest,
    source: &ImageConfig,
) -> Result<Digest> {
    let doc = serde_json::to_vec_pretty(&thin_json(cvmfs_repo, origin, m)).expect("JSON");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(doc.len() as u64);
    h.set_mtime(0);
    tar.append_data(&mut h, "thin.json", &doc[..]).map_err(crate::error::io_err("build", "thin.json"))?;
    let layer = tar.into_inner().map_err(crate::error::io_err("build", "thin.json"))?;
    let diff_id = Digest::sha256_of(&layer);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&layer).map_err(crate::error::io_err("compress", "thin.json"))?;
    let gz = gz.finish().map_err(crate::error::io_err("compress", "thin.json"))?;
    let c = source.config.as_ref();
    let mut env = vec!["CVMFS_IMAGE=true".to_owned()];
    env.extend(c.and_then(|c| c.env.clone()).unwrap_or_default());
    let mut inner = serde_json::json!({ "Env": env });
    if let Some(cmd) = c.and_then(|c| c.cmd.clone()) {
        inner["Cmd"] = serde_json::json!(cmd);
    }
    if let Some(ep) = c.and_then(|c| c.entrypoint.clone()) {
        inner["Entrypoint"] = serde_json::json!(ep);
    }
    let config = serde_json::json!({
        "architecture": source.architecture,
        "os": source.os,
        "config": inner,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": format!("cargohold publish: thin image of {origin}") }],
    });
    let config = serde_json::to_vec(&config).expect("JSON");
    let client = reg.client();
    let (registry, repo) = (target.registry(), target.repository());
    let put = |data: Vec<u8>| -> Result<Digest> {
        let d = Digest::sha256_of(&data);
        if !reg.block_on(client.has_blob(registry, repo, &d))? {
            let up = reg.block_on(client.start_upload(registry, repo))?;
            reg.block_on(client.finish_upload(up, &d, data))?;
        }
        Ok(d)
    };
    let (gz_len, config_len) = (gz.len() as u64, config.len() as u64);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(mt::DOCKER_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(mt::DOCKER_CONFIG, put(config)?, config_len),
        layers: vec![Descriptor::new(mt::DOCKER_LAYER_GZIP, put(gz)?, gz_len)],
        subject: None,
        annotations: None,
    };
    let raw = RawManifest::from_value(&manifest, mt::DOCKER_MANIFEST);
    let tag = target.tag().unwrap_or("latest");
    reg.block_on(client.put_manifest(registry, repo, tag, &raw))?;
    Ok(raw.digest)
}
