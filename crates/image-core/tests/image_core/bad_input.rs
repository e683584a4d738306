//! Bad input: a clear error that names the item, and the store unchanged.

use std::fs;
use std::path::Path;

use cargohold_image_core::{
    CopyOptions, Digest, Error, ImageLocation, NoProgress, Store, copy, open_dest, open_source,
};

use crate::support::*;

/// Writes a classic-layout docker archive from (path, bytes) entries.
fn write_tar(path: &Path, entries: &[(&[u8], Vec<u8>)]) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Raw header path bytes: lets a test write non-UTF-8 names.
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    fs::write(path, b.into_inner().unwrap()).unwrap();
}

/// Tar entries (name, bytes).
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn classic_image(name: &str, layer: &[u8], claimed_diff_id: &Digest, dir: &str) -> (Entries, String) {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [claimed_diff_id.as_str()]}
    });
    let cfg_name = format!("{dir}.json");
    let entry = serde_json::json!({"Config": cfg_name, "RepoTags": [name], "Layers": [format!("{dir}/layer.tar")]});
    (
        vec![
            (cfg_name.clone().into_bytes(), serde_json::to_vec(&config).unwrap()),
            (format!("{dir}/layer.tar").into_bytes(), layer.to_vec()),
        ],
        entry.to_string(),
    )
}

fn store_with_one_image(dir: &Path) -> Store {
    let store = Store::open(dir.join("store")).unwrap();
    make_layout(&dir.join("seed"), "v1", &sample_layers(9));
    let mut src =
        open_source(&ImageLocation::parse(&format!("oci:{}:v1", dir.join("seed").display())).unwrap(), &store).unwrap();
    let mut dst = store.dest(Some(&"seed:1".parse().unwrap())).unwrap();
    copy(src.as_mut(), &mut dst, &CopyOptions::default(), &NoProgress).unwrap();
    store
}

#[test]
fn layer_digest_mismatch_names_the_entry_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_one_image(t.path());
    let before = snapshot(store.layout().root());

    let good = layer_tar(&[("a", b"good")]);
    let bad = layer_tar(&[("a", b"evil")]);
    let (mut entries, first) = classic_image("good:1", &good, &Digest::sha256_of(&good), "aaa");
    let claimed = Digest::sha256_of(b"what the config claims");
    let (bad_entries, second) = classic_image("bad:1", &bad, &claimed, "bbb");
    entries.extend(bad_entries);
    entries.push((b"manifest.json".to_vec(), format!("[{first},{second}]").into_bytes()));
    let archive = t.path().join("mismatch.tar");
    write_tar(&archive, &entries.iter().map(|(n, d)| (n.as_slice(), d.clone())).collect::<Vec<_>>());

    let err = store.load_archive(&archive, None, &NoProgress).unwrap_err();
    let msg = chain(&err);
    assert!(matches!(err, Error::Verify { .. }), "{err:?}");
    assert!(msg.contains(claimed.as_str()) && msg.contains("digest mismatch"), "{msg}");
    assert!(msg.contains("bbb/layer.tar"), "names the entry: {msg}");
    // All or nothing: the good first image was not tagged either.
    assert_eq!(snapshot(store.layout().root()), before);
    assert_eq!(ingest_leftovers(store.layout().root()), 0);
}

#[test]
fn truncated_archive_is_refused_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_one_image(t.path());
    let archive = t.path().join("full.tar");
    store.save("seed:1", &archive, cargohold_image_core::ArchiveFormat::Docker, &NoProgress).unwrap();
    let bytes = fs::read(&archive).unwrap();
    let other = Store::open(t.path().join("other")).unwrap();
    let before = snapshot(other.layout().root());
    for cut in [bytes.len() * 3 / 5, bytes.len() - 2000, 700] {
        let truncated = t.path().join(format!("cut-{cut}.tar"));
        fs::write(&truncated, &bytes[..cut]).unwrap();
        let err = other.load_archive(&truncated, None, &NoProgress).unwrap_err();
        let msg = chain(&err);
        assert!(msg.contains(&truncated.display().to_string()) || msg.contains("sha256:"), "cut {cut}: {msg}");
        assert_eq!(snapshot(other.layout().root()), before, "cut {cut}");
    }
}

#[test]
fn manifest_referencing_a_missing_blob() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_one_image(t.path());
    let before = snapshot(store.layout().root());
    let built = make_layout(&t.path().join("holey"), "v1", &sample_layers(5));
    fs::remove_file(t.path().join("holey/blobs/sha256").join(built.layers[1].hex())).unwrap();
    let mut src =
        open_source(&ImageLocation::parse(&format!("oci:{}:v1", t.path().join("holey").display())).unwrap(), &store)
            .unwrap();
    let mut dst = open_dest(&ImageLocation::Store("holey:1".into()), &store, None).unwrap();
    let err = copy(src.as_mut(), dst.as_mut(), &CopyOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(&err, Error::BlobNotFound { digest, .. } if *digest == built.layers[1]), "{err:?}");
    drop(dst);
    assert_eq!(snapshot(store.layout().root()), before);
}

#[test]
fn corrupted_blob_in_a_layout_is_caught() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_one_image(t.path());
    let before = snapshot(store.layout().root());
    let built = make_layout(&t.path().join("liar"), "v1", &sample_layers(6));
    let p = t.path().join("liar/blobs/sha256").join(built.layers[0].hex());
    let mut bytes = fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    fs::write(&p, bytes).unwrap();
    let mut src =
        open_source(&ImageLocation::parse(&format!("oci:{}:v1", t.path().join("liar").display())).unwrap(), &store)
            .unwrap();
    let mut dst = open_dest(&ImageLocation::Store("liar:1".into()), &store, None).unwrap();
    let err = copy(src.as_mut(), dst.as_mut(), &CopyOptions::default(), &NoProgress).unwrap_err();
    let msg = chain(&err);
    assert!(msg.contains(built.layers[0].as_str()) && msg.contains("digest mismatch"), "{msg}");
    assert!(msg.contains(&built.layers[0].hex()[..12]), "names the file: {msg}");
    drop(dst);
    assert_eq!(snapshot(store.layout().root()), before);
    assert_eq!(ingest_leftovers(store.layout().root()), 0);
}

#[test]
fn non_utf8_names() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_one_image(t.path());
    let before = snapshot(store.layout().root());
    let layer = layer_tar(&[("x", b"x")]);
    let (mut entries, entry) = classic_image("ok:1", &layer, &Digest::sha256_of(&layer), "ccc");

    // manifest.json that is not UTF-8: refused, naming the file.
    let mut bad_json = format!("[{entry}]").into_bytes();
    let pos = bad_json.windows(4).position(|w| w == b"ok:1").unwrap();
    bad_json[pos] = 0xff;
    let mut bad = entries.clone();
    bad.push((b"manifest.json".to_vec(), bad_json));
    let archive = t.path().join("bad-utf8.tar");
    write_tar(&archive, &bad.iter().map(|(n, d)| (n.as_slice(), d.clone())).collect::<Vec<_>>());
    let msg = chain(&store.load_archive(&archive, None, &NoProgress).unwrap_err());
    assert!(msg.contains("manifest.json") && msg.contains("bad-utf8.tar"), "{msg}");
    assert_eq!(snapshot(store.layout().root()), before);

    // An unrelated entry with a non-UTF-8 name is ignored; the image loads.
    entries.push((b"junk-\xff\xfe".to_vec(), b"?".to_vec()));
    entries.push((b"manifest.json".to_vec(), format!("[{entry}]").into_bytes()));
    let archive = t.path().join("odd-name.tar");
    write_tar(&archive, &entries.iter().map(|(n, d)| (n.as_slice(), d.clone())).collect::<Vec<_>>());
    let loaded = store.load_archive(&archive, None, &NoProgress).unwrap();
    assert_eq!(loaded[0].names, vec!["docker.io/library/ok:1".to_string()]);
}

#[test]
fn not_an_archive() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let p = t.path().join("notes.txt");
    fs::write(&p, "just text, no tar here").unwrap();
    let msg = chain(&store.load_archive(&p, None, &NoProgress).unwrap_err());
    assert!(msg.contains("notes.txt"), "{msg}");
    let missing = chain(&store.load_archive(&t.path().join("nope.tar"), None, &NoProgress).unwrap_err());
    assert!(missing.contains("nope.tar"), "{missing}");
}

#[test]
fn classic_layout_with_symlinked_duplicate_layers_loads() {
    // Old `docker save` wrote a layer shared by two images once and made the
    // second `<id>/layer.tar` a relative symlink to the first.
    let t = tempfile::tempdir().unwrap();
    let base = layer_tar(&[("etc/base", b"base")]);
    let top = layer_tar(&[("etc/top", b"top")]);
    let config = |diffs: &[&Vec<u8>]| {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diffs.iter().map(|d| Digest::sha256_of(d).to_string()).collect::<Vec<_>>()}
        }))
        .unwrap()
    };
    let manifest = serde_json::json!([
        {"Config": "one.json", "RepoTags": ["one:1"], "Layers": ["l1/layer.tar"]},
        {"Config": "two.json", "RepoTags": ["two:1", "two:latest"], "Layers": ["l2/layer.tar", "l3/layer.tar"]}
    ]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("one.json", &config(&[&base]));
    add("two.json", &config(&[&base, &top]));
    add("l1/layer.tar", &base);
    add("l3/layer.tar", &top);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "l2/layer.tar", "../l1/layer.tar").unwrap();
    let archive = t.path().join("classic.tar");
    fs::write(&archive, b.into_inner().unwrap()).unwrap();

    let store = Store::open(t.path().join("store")).unwrap();
    let loaded = store.load_archive(&archive, None, &NoProgress).unwrap();
    let names: Vec<_> = loaded.iter().flat_map(|l| l.names.clone()).collect();
    assert_eq!(names, ["docker.io/library/one:1", "docker.io/library/two:1", "docker.io/library/two:latest"]);
    let two = store.details(&store.resolve("two").unwrap().descriptor, None).unwrap();
    assert_eq!(two.image.layers[0].digest, Digest::sha256_of(&base));
    assert_eq!(two.image.layers[1].digest, Digest::sha256_of(&top));
}
