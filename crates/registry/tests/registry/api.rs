//! Catalog, digest, delete and referrers (with the tag-schema fallback that
//! distribution 2.8, which has no referrers API, needs).

use cargohold_image_core::{
    Descriptor, Digest, ImageLocation, ImageManifest, RawManifest, Reference, Store, media_type as mt, open_source,
};
use cargohold_registry::{ClientOptions, Registry};

use cargohold_testkit::*;

use crate::flows::push_layout;

#[test]
fn catalog_digest_and_delete() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let client = reg.client();
    let mut expected = Vec::new();
    let mut pushed = None;
    for name in ["a/one", "b/two", "c/three"] {
        let target: Reference = format!("{}/{name}:1", r.addr).parse().unwrap();
        pushed = Some(push_layout(&reg, &layout, &store, &target));
        expected.push(name.to_owned());
    }
    let pushed = pushed.unwrap();
    let mut repos = reg.block_on(client.catalog(&r.addr)).unwrap();
    repos.sort();
    assert_eq!(repos, expected);

    // More than a page (100) of repositories: mounted blobs and the manifest
    // make each one; the catalog follows distribution's Link headers.
    let image = reg.block_on(client.get_manifest_ref(&r.addr, "a/one", "1", None)).unwrap();
    let blobs: Vec<Digest> = {
        let m = match image.parse().unwrap() {
            cargohold_image_core::Manifest::Image(m) => m,
            _ => unreachable!("an image"),
        };
        std::iter::once(m.config.digest).chain(m.layers.into_iter().map(|l| l.digest)).collect()
    };
    for i in 0..105 {
        let repo = format!("many/r{i:03}");
        for b in &blobs {
            assert!(reg.block_on(client.mount_blob(&r.addr, &repo, b, "a/one")).unwrap().is_none());
        }
        reg.block_on(client.put_manifest(&r.addr, &repo, "1", &image)).unwrap();
    }
    let watch = fault_proxy(&r.addr, Vec::new());
    let all = reg.block_on(client.catalog(&watch.addr)).unwrap();
    assert_eq!(all.len(), 108, "{all:?}");
    assert!(all.contains(&"many/r104".to_owned()));
    let seen = watch.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|h| h.starts_with("GET /v2/_catalog?") && h.contains("last=")), "two pages: {seen:?}");

    // digest: HEAD, verified against what the registry announces.
    let head = reg.block_on(client.head_manifest(&r.addr, "b/two", "1")).unwrap().unwrap();
    assert_eq!(head.digest, pushed.manifest.digest);
    assert_eq!(head.size, pushed.manifest.size);
    assert!(reg.block_on(client.head_manifest(&r.addr, "b/two", "nope")).unwrap().is_none());

    // delete the manifest: the tag goes too; then a blob.
    reg.block_on(client.delete_manifest(&r.addr, "b/two", pushed.manifest.digest.as_str())).unwrap();
    assert!(reg.block_on(client.head_manifest(&r.addr, "b/two", "1")).unwrap().is_none());
    let layer = {
        let mut src =
            open_source(&ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap(), &store).unwrap();
        cargohold_image_core::resolve_image(src.as_mut(), None).unwrap().image.layers[0].clone()
    };
    assert!(reg.block_on(client.has_blob(&r.addr, "c/three", &layer.digest)).unwrap());
    reg.block_on(client.delete_blob(&r.addr, "c/three", &layer.digest)).unwrap();
    assert!(!reg.block_on(client.has_blob(&r.addr, "c/three", &layer.digest)).unwrap());
    // Deleting what is not there: an error naming it.
    let err = reg.block_on(client.delete_manifest(&r.addr, "b/two", pushed.manifest.digest.as_str())).unwrap_err();
    assert!(err.to_string().contains(pushed.manifest.digest.as_str()) && err.to_string().contains("404"), "{err}");
}

#[test]
fn referrers_through_the_tag_schema_fallback() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let layout = umoci_image(t.path());
    let store = Store::open(t.path().join("store")).unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let client = reg.client();
    let target: Reference = format!("{}/sig/app:1", r.addr).parse().unwrap();
    let image = push_layout(&reg, &layout, &store, &target).manifest;
    assert!(reg.block_on(client.referrers(&r.addr, "sig/app", &image.digest, None)).unwrap().is_empty());

    // Two artifacts about the image: an SBOM and a signature.
    let empty = b"{}".to_vec();
    let empty_desc = Descriptor::new(mt::OCI_EMPTY, Digest::sha256_of(&empty), 2);
    let up = reg.block_on(client.start_upload(&r.addr, "sig/app")).unwrap();
    reg.block_on(client.finish_upload(up, &empty_desc.digest, empty.clone())).unwrap();
    let mut digests = Vec::new();
    for (kind, payload) in [("application/spdx+json", "sbom"), ("application/vnd.example.sig", "sig")] {
        let blob = payload.as_bytes().to_vec();
        let blob_desc = Descriptor::new(kind, Digest::sha256_of(&blob), blob.len() as u64);
        let up = reg.block_on(client.start_upload(&r.addr, "sig/app")).unwrap();
        reg.block_on(client.finish_upload(up, &blob_desc.digest, blob)).unwrap();
        let artifact = ImageManifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.into()),
            artifact_type: Some(kind.into()),
            config: empty_desc.clone(),
            layers: vec![blob_desc],
            subject: Some(image.clone()),
            annotations: None,
        };
        let raw = RawManifest::from_value(&artifact, mt::OCI_MANIFEST);
        let by_digest: Reference = format!("{}/sig/app@{}", r.addr, raw.digest).parse().unwrap();
        cargohold_image_core::ImageDest::commit(&mut reg.dest(&by_digest), &raw).unwrap();
        digests.push(raw.digest);
    }
    let all = reg.block_on(client.referrers(&r.addr, "sig/app", &image.digest, None)).unwrap();
    assert_eq!(all.iter().map(|d| d.digest.clone()).collect::<Vec<_>>(), digests);
    let sboms =
        reg.block_on(client.referrers(&r.addr, "sig/app", &image.digest, Some("application/spdx+json"))).unwrap();
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].digest, digests[0]);
    assert_eq!(sboms[0].artifact_type.as_deref(), Some("application/spdx+json"));
    // The fallback index is an ordinary tag other tools can read.
    let tag = cargohold_registry::referrers_tag(&image.digest);
    let out = run(skopeo(t.path())
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/sig/app:{tag}", r.addr)));
    assert!(out.contains(digests[1].as_str()), "{out}");
}
