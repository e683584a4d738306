//! Test support: generated images and peer tools.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargohold_image_core::{Digest, media_type as mt};
use serde_json::json;

/// Fails loudly when a peer tool is missing: a test that needs one never
/// passes without it.
pub fn require(tool: &str) -> PathBuf {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().expect("sh runs");
    assert!(out.status.success(), "{tool} is required for this test and is not installed (apt-get install -y {tool})");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs a command, panicking with its stderr on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `skopeo` with a private policy that accepts anything (tests only).
pub fn skopeo(dir: &Path) -> Command {
    require("skopeo");
    let policy = dir.join("policy.json");
    if !policy.exists() {
        std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).expect("write policy");
    }
    let mut c = Command::new("skopeo");
    c.arg("--policy").arg(policy);
    c
}

/// An uncompressed layer tar holding `files` (path, contents).
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).expect("append");
    }
    b.into_inner().expect("finish tar")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// What [`make_layout`] built.
pub struct Built {
    pub manifest: Digest,
    pub config: Digest,
    pub diff_ids: Vec<Digest>,
    pub layers: Vec<Digest>,
}

fn put(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::sha256_of(bytes);
    let p = dir.join("blobs/sha256").join(d.hex());
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, bytes).expect("write blob");
    d
}

/// Writes an OCI layout at `dir` with one image tagged `tag`, whose layers
/// are the given uncompressed tars (stored gzip-compressed).
pub fn make_layout(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> Built {
    make_layout_for(dir, tag, layers, Some("amd64"))
}

/// [`make_layout`] with the config naming `architecture` (none: no such key,
/// as some old images have).
pub fn make_layout_for(dir: &Path, tag: &str, layers: &[Vec<u8>], architecture: Option<&str>) -> Built {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    let mut layer_digests = Vec::new();
    for l in layers {
        diff_ids.push(Digest::sha256_of(l));
        let gz = gzip(l);
        let d = put(dir, &gz);
        descs.push(json!({"mediaType": mt::OCI_LAYER_GZIP, "digest": d.as_str(), "size": gz.len()}));
        layer_digests.push(d);
    }
    let mut config = json!({
        "created": "2024-01-01T00:00:00Z",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>()},
        "history": [{"created_by": "test"}]
    });
    if let Some(arch) = architecture {
        config["architecture"] = json!(arch);
    }
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = put(dir, &config_bytes);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
        "config": {"mediaType": mt::OCI_CONFIG, "digest": config_digest.as_str(), "size": config_bytes.len()},
        "layers": descs
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let manifest_digest = put(dir, &manifest_bytes);
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"schemaVersion": 2, "manifests": []}));
    index["manifests"].as_array_mut().expect("array").push(json!({
        "mediaType": mt::OCI_MANIFEST, "digest": manifest_digest.as_str(), "size": manifest_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag}
    }));
    std::fs::write(index_path, serde_json::to_vec(&index).expect("json")).expect("write");
    Built { manifest: manifest_digest, config: config_digest, diff_ids, layers: layer_digests }
}

/// Two small layers with distinctive contents.
pub fn sample_layers(seed: u8) -> Vec<Vec<u8>> {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed).collect();
    vec![
        layer_tar(&[("etc/hello", format!("hello {seed}\n").as_bytes()), ("bin/data", &big)]),
        layer_tar(&[("etc/motd", format!("layer two of {seed}\n").as_bytes())]),
    ]
}

/// A snapshot of everything under a store directory: (relative path, size, content hash).
pub fn snapshot(dir: &Path) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("under base").display().to_string();
            if rel.starts_with(".cargohold") {
                continue; // locks and (empty after cleanup) ingest dir
            }
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                out.push((rel, bytes.len() as u64, Digest::sha256_of(&bytes).to_string()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// An error and all its sources, joined like anyhow's `{:#}`.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// Files left in the store's ingest directory (must be none after any operation).
pub fn ingest_leftovers(store: &Path) -> usize {
    std::fs::read_dir(store.join(".cargohold/ingest")).map(|d| d.count()).unwrap_or(0)
}
