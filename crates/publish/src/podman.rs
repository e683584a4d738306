//! A podman (containers/storage) additional image store over published
//! flats, as DUCC makes them: each image is one synthetic overlay layer
//! whose `diff` is a symlink to the image's flat, so podman runs a
//! published image (`--storage-opt additionalimagestore=DIR`) without
//! pulling or unpacking anything.
//!
//! ```text
//! <store>/overlay/<layer>/diff   -> the flat            (symlink)
//! <store>/overlay/<layer>/link      a 26-character id
//! <store>/overlay/l/<id>         -> ../<layer>/diff
//! <store>/overlay-layers/layers.json, layers.lock
//! <store>/overlay-images/images.json, images.lock
//! <store>/overlay-images/<image>/manifest, manifest-<digest>, =<base64 of the config digest>
//! ```

use std::path::Path;

use base64::Engine as _;
use cargohold_image_core::Digest;
use serde_json::{Value, json};

use crate::error::{Result, io_err};
use crate::tree::Beneath;

/// One image to add to a store.
#[derive(Debug, Clone)]
pub struct PodmanImage<'a> {
    /// Its name as podman looks it up (`registry/repository:tag`; Docker
    /// Hub's as `docker.io/...`).
    pub name: String,
    /// The manifest's bytes and digest.
    pub manifest: (&'a [u8], &'a Digest),
    /// The config's bytes and digest (its hex is the image id).
    pub config: (&'a [u8], &'a Digest),
}

/// The name podman gives an image of `registry/repository:tag`.
pub fn podman_name(public: &str) -> String {
    for hub in ["registry.hub.docker.com/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = public.strip_prefix(hub) {
            return format!("docker.io/{rest}");
        }
    }
    public.to_owned()
}

/// containers/storage's file name of a big-data key: itself when plain,
/// else `=` and its base64.
fn big_data_file(key: &str) -> String {
    if key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) && !key.starts_with('.') {
        key.to_owned()
    } else {
        format!("={}", base64::engine::general_purpose::STANDARD.encode(key))
    }
}

/// The synthetic layer of a config: a stable id, and its 26-character link id.
fn layer_ids(config: &Digest) -> (String, String) {
    let layer = Digest::sha256_of(format!("cargohold-flat-layer:{config}").as_bytes()).hex().to_owned();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let link: String = Digest::sha256_of(layer.as_bytes())
        .hex()
        .as_bytes()
        .chunks(2)
        .take(26)
        .map(|c| {
            let b = u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0);
            ALPHABET[usize::from(b) % ALPHABET.len()] as char
        })
        .collect();
    (layer, link)
}

fn now_rfc3339() -> String {
    cargohold_image_core::format_rfc3339(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    )
}

/// Reads a JSON array of records (an empty list when the file is absent).
fn read_records(d: &Beneath, path: &Path) -> Result<Vec<Value>> {
    match d.read(path)? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| io_err("read", path)(std::io::Error::other(e))),
        None => Ok(Vec::new()),
    }
}

fn write_records(d: &Beneath, path: &Path, records: &[Value]) -> Result<()> {
    d.write_file(path, &serde_json::to_vec_pretty(records).expect("records serialize"))
}

/// Adds (or updates) `image` in the store at `store`, its layer's `diff`
/// a symlink to `flat_target` (absolute, or relative to the layer's
/// directory). Every path below the store is reached through `d` (a
/// directory at or above the store: [`Beneath::new`] of the store, or the
/// tree's). The caller holds the tree's lock: the record files are
/// rewritten whole (temp name, fsync, rename).
pub fn add_image(d: &Beneath, store: &Path, image: &PodmanImage<'_>, flat_target: &Path, flat_size: u64) -> Result<()> {
    let d = d.clone();
    let (layer, link) = layer_ids(image.config.1);
    let overlay = store.join("overlay");
    let layer_dir = overlay.join(&layer);
    for dir in [&layer_dir, &overlay.join("l"), &store.join("overlay-images"), &store.join("overlay-layers")] {
        d.create_dir_all(dir)?;
    }
    d.set_symlink(&layer_dir.join("diff"), flat_target)?;
    d.write_file(&layer_dir.join("link"), link.as_bytes())?;
    d.set_symlink(&overlay.join("l").join(&link), &Path::new("..").join(&layer).join("diff"))?;

    let layers_file = store.join("overlay-layers/layers.json");
    let mut layers = read_records(&d, &layers_file)?;
    layers.retain(|l| l["id"] != layer.as_str());
    layers.push(json!({
        "id": layer,
        "created": now_rfc3339(),
        // There is no tar of a flat: a stable stand-in keeps podman from
        // asking for one.
        "diff-digest": format!("sha256:{layer}"),
        "diff-size": flat_size,
    }));
    write_records(&d, &layers_file, &layers)?;
    d.touch(&store.join("overlay-layers/layers.lock"))?;

    let id = image.config.1.hex().to_owned();
    let image_dir = store.join("overlay-images").join(&id);
    d.create_dir_all(&image_dir)?;
    let manifest_key = format!("manifest-{}", image.manifest.1);
    let config_key = image.config.1.to_string();
    for (key, bytes) in [
        ("manifest", image.manifest.0),
        (manifest_key.as_str(), image.manifest.0),
        (config_key.as_str(), image.config.0),
    ] {
        d.write_file(&image_dir.join(big_data_file(key)), bytes)?;
    }
    let images_file = store.join("overlay-images/images.json");
    let mut images = read_records(&d, &images_file)?;
    // A name belongs to one image: taken from any other (which goes when
    // it has none left: a store never holds on to an old flat).
    for other in images.iter_mut().filter(|i| i["id"] != id.as_str()) {
        if let Some(names) = other["names"].as_array_mut() {
            names.retain(|n| n != image.name.as_str());
        }
    }
    drop_unnamed(&d, store, &mut images)?;
    let mut names: Vec<Value> =
        images.iter().find(|i| i["id"] == id.as_str()).and_then(|i| i["names"].as_array().cloned()).unwrap_or_default();
    names.push(json!(image.name));
    images.retain(|i| i["id"] != id.as_str());
    images.push(json!({
        "id": id,
        "digest": image.manifest.1.to_string(),
        "names": names,
        "layer": layer,
        "metadata": "",
        "big-data-names": ["manifest", manifest_key, config_key],
        "big-data-sizes": {
            "manifest": image.manifest.0.len(), manifest_key.clone(): image.manifest.0.len(), config_key.clone(): image.config.0.len(),
        },
        "big-data-digests": {
            "manifest": image.manifest.1.to_string(), manifest_key: image.manifest.1.to_string(), config_key: image.config.1.to_string(),
        },
        "created": now_rfc3339(),
    }));
    write_records(&d, &images_file, &images)?;
    d.touch(&store.join("overlay-images/images.lock"))?;
    Ok(())
}

/// Removes `name` from the store's images (an image left with no name goes,
/// with its layer); paths reached through `d` as [`add_image`].
pub fn remove_name(d: &Beneath, store: &Path, name: &str) -> Result<()> {
    let d = d.clone();
    let images_file = store.join("overlay-images/images.json");
    let mut images = read_records(&d, &images_file)?;
    if images.is_empty() {
        return Ok(());
    }
    for i in images.iter_mut() {
        if let Some(names) = i["names"].as_array_mut() {
            names.retain(|n| n != name);
        }
    }
    drop_unnamed(&d, store, &mut images)?;
    write_records(&d, &images_file, &images)
}

/// Drops images with no name left, with their layers (records, directories
/// and links).
fn drop_unnamed(d: &Beneath, store: &Path, images: &mut Vec<Value>) -> Result<()> {
    let mut gone_layers = Vec::new();
    images.retain(|i| {
        let keep = i["names"].as_array().is_some_and(|n| !n.is_empty());
        if !keep && let Some(l) = i["layer"].as_str() {
            gone_layers.push(l.to_owned());
        }
        keep
    });
    if gone_layers.is_empty() {
        return Ok(());
    }
    let layers_file = store.join("overlay-layers/layers.json");
    let mut layers = read_records(d, &layers_file)?;
    layers.retain(|l| !gone_layers.iter().any(|g| l["id"] == g.as_str()));
    write_records(d, &layers_file, &layers)?;
    for layer in &gone_layers {
        // Only layers this module named (hex ids): nothing else is removed.
        if layer.len() != 64 || !layer.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let dir = store.join("overlay").join(layer);
        if let Ok(Some(link)) = d.read(&dir.join("link")).map(|b| b.and_then(|b| String::from_utf8(b).ok()))
            && link.len() == 26
            && link.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            let _ = d.remove(&store.join("overlay/l").join(link));
        }
        let _ = d.remove(&dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_files_as_containers_storage() {
        assert_eq!(podman_name("registry.hub.docker.com/library/ubuntu:22.04"), "docker.io/library/ubuntu:22.04");
        assert_eq!(podman_name("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000/a/b:1");
        assert_eq!(big_data_file("manifest"), "manifest");
        assert_eq!(
            big_data_file("sha256:ab"),
            format!("={}", base64::engine::general_purpose::STANDARD.encode("sha256:ab"))
        );
        let (layer, link) = layer_ids(&Digest::sha256_of(b"x"));
        assert_eq!((layer.len(), link.len()), (64, 26));
        assert!(link.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    }
}
