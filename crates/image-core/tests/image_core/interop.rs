//! skopeo reads what we write and we read what skopeo writes, for
//! docker-archive, oci-archive and oci layouts.

use std::fs;

use cargohold_image_core::{
    ArchiveFormat, BlobStore, CopyOptions, ImageLocation, Manifest, NoProgress, RawManifest, Reference, Store, copy,
    open_dest, open_source,
};

use crate::support::*;

fn layer_bytes(store: &Store, name: &str) -> Vec<Vec<u8>> {
    let img = store.resolve(name).expect("resolve");
    let d = store.details(&img.descriptor, None).expect("details");
    d.image
        .layers
        .iter()
        .map(|l| {
            let mut r = store.layout().open_blob(&l.digest).expect("open");
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut raw).expect("read");
            if raw.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out).expect("gunzip");
                out
            } else {
                raw
            }
        })
        .collect()
}

#[test]
fn skopeo_docker_archive_loads_into_the_store() {
    let t = tempfile::tempdir().unwrap();
    let layers = sample_layers(1);
    let built = make_layout(&t.path().join("src"), "v1", &layers);
    let archive = t.path().join("sk.tar");
    run(skopeo(t.path())
        .arg("copy")
        .arg("-q")
        .arg(format!("oci:{}:v1", t.path().join("src").display()))
        .arg(format!("docker-archive:{}:example.com/team/app:1", archive.display())));

    let store = Store::open(t.path().join("store")).unwrap();
    let loaded = store.load_archive(&archive, None, &NoProgress).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].names, vec!["example.com/team/app:1".to_string()]);
    assert_eq!(loaded[0].id, built.config, "config bytes are kept exactly");
    // Layers are stored as skopeo wrote them (uncompressed); their content is ours.
    assert_eq!(layer_bytes(&store, "example.com/team/app:1"), layers);
    let details = store.details(&loaded[0].manifest, None).unwrap();
    assert_eq!(details.image.layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(), built.diff_ids);
    assert_eq!(ingest_leftovers(&t.path().join("store")), 0);
}

#[test]
fn skopeo_reads_our_docker_archive() {
    let t = tempfile::tempdir().unwrap();
    let layers = sample_layers(2);
    let built = make_layout(&t.path().join("src"), "v1", &layers);
    let store = Store::open(t.path().join("store")).unwrap();
    let mut src =
        open_source(&ImageLocation::parse(&format!("oci:{}:v1", t.path().join("src").display())).unwrap(), &store)
            .unwrap();
    let mut dst = open_dest(&ImageLocation::Store("localhost:5000/a/b:2".into()), &store, None).unwrap();
    copy(src.as_mut(), dst.as_mut(), &CopyOptions::default(), &NoProgress).unwrap();
    drop(dst);

    let archive = t.path().join("ours.tar");
    store.save("localhost:5000/a/b:2", &archive, ArchiveFormat::Docker, &NoProgress).unwrap();
    let out = t.path().join("out");
    run(skopeo(t.path())
        .arg("copy")
        .arg("-q")
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("oci:{}:x", out.display())));
    let inspect: serde_json::Value = serde_json::from_str(&run(skopeo(t.path())
        .arg("inspect")
        .arg("--config")
        .arg(format!("oci:{}:x", out.display()))))
    .unwrap();
    let diff_ids: Vec<String> =
        inspect["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(diff_ids, built.diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>());
    assert_eq!(inspect["config"]["Cmd"][0], "/bin/sh");
    // And the archive loads back into a fresh store with its name.
    let store2 = Store::open(t.path().join("store2")).unwrap();
    let loaded = store2.load_archive(&archive, None, &NoProgress).unwrap();
    assert_eq!(loaded[0].names, vec!["localhost:5000/a/b:2".to_string()]);
    assert_eq!(loaded[0].id, built.config);
}

#[test]
fn oci_archives_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let layers = sample_layers(3);
    let built = make_layout(&t.path().join("src"), "v1", &layers);
    // skopeo writes, we load (a bare tag needs a repository: --name).
    let sk = t.path().join("sk-oci.tar");
    run(skopeo(t.path())
        .arg("copy")
        .arg("-q")
        .arg(format!("oci:{}:v1", t.path().join("src").display()))
        .arg(format!("oci-archive:{}:v1", sk.display())));
    let store = Store::open(t.path().join("store")).unwrap();
    let name = Reference::parse("registry.example/x/y").unwrap();
    let loaded = store.load_archive(&sk, Some(&name), &NoProgress).unwrap();
    assert_eq!(loaded[0].names, vec!["registry.example/x/y:v1".to_string()]);
    assert_eq!(loaded[0].manifest.digest, built.manifest, "gzip layers and manifest are stored bit-identically");

    // We write, skopeo reads.
    let ours = t.path().join("ours-oci.tar");
    store.save("registry.example/x/y:v1", &ours, ArchiveFormat::Oci, &NoProgress).unwrap();
    let inspect: serde_json::Value =
        serde_json::from_str(&run(skopeo(t.path()).arg("inspect").arg(format!("oci-archive:{}:v1", ours.display()))))
            .unwrap();
    assert_eq!(inspect["Digest"], built.manifest.to_string());
    let sk_layers: Vec<String> =
        inspect["Layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(sk_layers, built.layers.iter().map(ToString::to_string).collect::<Vec<_>>());
}

#[test]
fn oci_layouts_both_ways() {
    let t = tempfile::tempdir().unwrap();
    let built = make_layout(&t.path().join("src"), "v1", &sample_layers(4));
    let store = Store::open(t.path().join("store")).unwrap();
    // skopeo writes a layout, we read it.
    let sk = t.path().join("sk-layout");
    run(skopeo(t.path())
        .arg("copy")
        .arg("-q")
        .arg(format!("oci:{}:v1", t.path().join("src").display()))
        .arg(format!("oci:{}:t", sk.display())));
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{}:t", sk.display())).unwrap(), &store).unwrap();
    let top = src.top_manifest().unwrap();
    assert_eq!(top.digest, built.manifest);
    // We write a layout (two tags), skopeo reads both.
    let ours = t.path().join("our-layout");
    for tag in ["a", "b"] {
        let mut src = open_source(&ImageLocation::parse(&format!("oci:{}:t", sk.display())).unwrap(), &store).unwrap();
        let mut dst =
            open_dest(&ImageLocation::parse(&format!("oci:{}:{tag}", ours.display())).unwrap(), &store, None).unwrap();
        copy(src.as_mut(), dst.as_mut(), &CopyOptions::default(), &NoProgress).unwrap();
    }
    for tag in ["a", "b"] {
        let inspect: serde_json::Value =
            serde_json::from_str(&run(skopeo(t.path()).arg("inspect").arg(format!("oci:{}:{tag}", ours.display()))))
                .unwrap();
        assert_eq!(inspect["Digest"], built.manifest.to_string());
    }
    // index.json lists both tags.
    let raw = fs::read(ours.join("index.json")).unwrap();
    let idx = RawManifest::new(raw, None).unwrap().parse().unwrap();
    let Manifest::Index(i) = idx else { panic!("index.json is an index") };
    assert_eq!(i.manifests.len(), 2);
}
