//! Store semantics: names, resolution, untag, prune.

use cargohold_image_core::{BlobStore, CopyOptions, ImageLocation, NoProgress, Reference, Store, copy, open_source};

use crate::support::*;

fn add(store: &Store, dir: &std::path::Path, seed: u8, name: &str) -> Built {
    let src_dir = dir.join(format!("src{seed}"));
    let built = make_layout(&src_dir, "v", &sample_layers(seed));
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{}:v", src_dir.display())).unwrap(), store).unwrap();
    let mut dst = store.dest(Some(&name.parse().unwrap())).unwrap();
    copy(src.as_mut(), &mut dst, &CopyOptions::default(), &NoProgress).unwrap();
    built
}

#[test]
fn names_resolution_and_prune() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let a = add(&store, t.path(), 1, "alpha");
    let b = add(&store, t.path(), 2, "localhost:5000/team/beta:2");

    // Stored under the full canonical reference, with :latest added.
    let names: Vec<String> =
        store.list().unwrap().iter().filter_map(|i| i.name.as_ref().map(Reference::canonical)).collect();
    assert!(names.contains(&"docker.io/library/alpha:latest".into()), "{names:?}");
    assert!(names.contains(&"localhost:5000/team/beta:2".into()), "{names:?}");

    // Resolution by familiar name, canonical name, digest and ID prefix.
    for n in ["alpha", "alpha:latest", "docker.io/library/alpha", &a.manifest.hex()[..10], &a.config.hex()[..8]] {
        assert_eq!(store.resolve(n).unwrap().descriptor.digest, a.manifest, "{n}");
    }
    assert_eq!(store.resolve(&format!("alpha@{}", a.manifest)).unwrap().descriptor.digest, a.manifest);
    assert!(store.resolve("alpha:nope").is_err());

    store.tag(&"alpha:v2".parse().unwrap(), store.resolve("alpha").unwrap().descriptor).unwrap();
    assert_eq!(store.resolve("alpha:v2").unwrap().descriptor.digest, a.manifest);
    // By ID with two names: ambiguous, nothing removed.
    assert!(store.untag(&a.config.hex()[..12]).is_err());
    assert_eq!(store.untag("alpha").unwrap(), vec!["docker.io/library/alpha:latest".to_string()]);
    assert!(store.layout().blob_size(&a.layers[0]).unwrap().is_some());
    let report = store.prune(false).unwrap();
    assert!(report.blobs_removed.is_empty(), "alpha:v2 still holds them: {report:?}");

    store.untag("alpha:v2").unwrap();
    let dry = store.prune(true).unwrap();
    assert!(dry.blobs_removed.contains(&a.layers[0]) && dry.blobs_removed.contains(&a.manifest));
    assert!(store.layout().blob_size(&a.layers[0]).unwrap().is_some(), "dry run deletes nothing");
    let expected: u64 = dry.blobs_removed.iter().map(|d| store.layout().blob_size(d).unwrap().unwrap()).sum();
    let report = store.prune(false).unwrap();
    assert_eq!(report.blobs_removed, dry.blobs_removed);
    assert_eq!(report.bytes_freed, expected);
    for d in a.layers.iter().chain([&a.config, &a.manifest]) {
        assert!(store.layout().blob_size(d).unwrap().is_none(), "{d} removed");
    }
    for d in b.layers.iter().chain([&b.config, &b.manifest]) {
        assert!(store.layout().blob_size(d).unwrap().is_some(), "{d} kept");
    }
}

#[test]
fn retagging_replaces_and_copy_skips_present_blobs() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let a = add(&store, t.path(), 1, "app:1");
    let b = add(&store, t.path(), 2, "app:1");
    assert_eq!(store.resolve("app:1").unwrap().descriptor.digest, b.manifest);
    assert_ne!(a.manifest, b.manifest);
    assert_eq!(store.list().unwrap().len(), 1);
    // A second copy of the same image transfers no layer.
    let src_dir = t.path().join("src2");
    let mut src = open_source(&ImageLocation::parse(&format!("oci:{}:v", src_dir.display())).unwrap(), &store).unwrap();
    let mut dst = store.dest(Some(&"app:2".parse().unwrap())).unwrap();
    let report = copy(src.as_mut(), &mut dst, &CopyOptions::default(), &NoProgress).unwrap();
    assert_eq!((report.blobs_copied, report.blobs_skipped), (0, 2));
}

/// A stored image whose config names no architecture (some old images)
/// is taken for any platform, as the builder takes it: nothing pulls a
/// platform "missing" from it.
#[test]
fn an_image_naming_no_architecture_offers_every_platform() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    for (tag, arch) in [("noarch", None), ("amd", Some("amd64"))] {
        let layout = t.path().join(tag);
        make_layout_for(&layout, "v1", &sample_layers(1), arch);
        let mut src =
            open_source(&ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap(), &store).unwrap();
        let mut dst = store.dest(Some(&Reference::parse(&format!("{tag}:1")).unwrap())).unwrap();
        copy(src.as_mut(), &mut dst, &CopyOptions::default(), &NoProgress).unwrap();
    }
    let arm = cargohold_image_core::Platform::new("linux", "arm64", None);
    let amd = cargohold_image_core::Platform::new("linux", "amd64", None);
    let noarch = store.resolve("noarch:1").unwrap();
    assert!(store.has_platform(&noarch.descriptor, &arm) && store.has_platform(&noarch.descriptor, &amd));
    let amd_img = store.resolve("amd:1").unwrap();
    assert!(store.has_platform(&amd_img.descriptor, &amd));
    assert!(!store.has_platform(&amd_img.descriptor, &arm));
}
