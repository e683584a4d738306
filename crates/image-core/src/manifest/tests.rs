use proptest::prelude::*;

use super::*;

const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn docker_manifest() -> String {
    format!(
        r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023, "digest": "sha256:{H}"}},
   "layers": [{{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654, "digest": "sha256:{H}"}}]
}}"#
    )
}

#[test]
fn raw_bytes_are_kept_and_digested_exactly() {
    let body = docker_manifest();
    let raw = RawManifest::new(body.clone().into_bytes(), None).unwrap();
    assert_eq!(raw.media_type, mt::DOCKER_MANIFEST);
    assert_eq!(raw.digest, Digest::sha256_of(body.as_bytes()));
    let Manifest::Image(m) = raw.parse().unwrap() else { panic!("not an image") };
    assert_eq!(m.layers.len(), 1);
    assert_eq!(m.layers[0].size, 32654);
}

#[test]
fn media_type_is_inferred_from_shape() {
    let idx = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"sha256:{H}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
        mt::OCI_MANIFEST
    );
    let raw = RawManifest::new(idx.into_bytes(), None).unwrap();
    assert_eq!(raw.media_type, mt::OCI_INDEX);
    let Manifest::Index(i) = raw.parse().unwrap() else { panic!("not an index") };
    assert!(i.select_platform(&"linux/aarch64".parse().unwrap()).is_some());
    assert!(i.select_platform(&"linux/amd64".parse().unwrap()).is_none());
}

#[test]
fn rejects_bad_manifests_with_named_errors() {
    let v1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.to_vec();
    assert!(matches!(RawManifest::new(v1, None), Err(ManifestError::SchemaV1 { .. })));
    let e = RawManifest::new(b"{not json".to_vec(), None).unwrap_err();
    assert!(e.to_string().starts_with("could not parse manifest sha256:"), "{e}");
    let mismatch = RawManifest::new(docker_manifest().into_bytes(), Some(mt::OCI_INDEX));
    assert!(matches!(mismatch, Err(ManifestError::Invalid { .. })));
    let bad_digest = docker_manifest().replace(H, "abc");
    let raw = RawManifest::new(bad_digest.into_bytes(), None).unwrap();
    assert!(matches!(raw.parse(), Err(ManifestError::Json { .. })));
    let v3 = docker_manifest().replace("\"schemaVersion\": 2", "\"schemaVersion\": 3");
    assert!(matches!(RawManifest::new(v3.into_bytes(), None).unwrap().parse(), Err(ManifestError::Invalid { .. })));
}

#[test]
fn config_keeps_unknown_fields() {
    let cfg = br#"{"architecture":"amd64","os":"linux","docker_version":"24.0","config":{"Env":["A=1"],"Cmd":["sh"],"ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let c = ImageConfig::from_slice(cfg, "config").unwrap();
    assert_eq!(c.config.as_ref().unwrap().cmd.as_deref(), Some(&["sh".to_string()][..]));
    let again = ImageConfig::from_slice(&c.to_vec(), "config").unwrap();
    assert_eq!(again, c);
    assert!(String::from_utf8(c.to_vec()).unwrap().contains("docker_version"));
    assert!(String::from_utf8(c.to_vec()).unwrap().contains("ArgsEscaped"));
}

#[test]
fn unknown_float_fields_round_trip_exactly() {
    // The fuzzer found this: a float whose shortest form parses one ULP off
    // unless serde_json parses floats exactly (its `float_roundtrip` feature).
    let cfg = br#"{"architecture":"amd64","os":"linux","x":8.12643382465774922e-232,"y":1.71026499920818507e-29}"#;
    let c = ImageConfig::from_slice(cfg, "config").unwrap();
    let again = ImageConfig::from_slice(&c.to_vec(), "config").unwrap();
    assert_eq!(again, c);
}

fn arb_digest() -> impl Strategy<Value = Digest> {
    "[a-f0-9]{64}".prop_map(|h| Digest::parse(&format!("sha256:{h}")).unwrap())
}

fn arb_descriptor() -> impl Strategy<Value = Descriptor> {
    (
        prop_oneof![Just(mt::OCI_LAYER_GZIP), Just(mt::OCI_LAYER_ZSTD), Just(mt::DOCKER_LAYER_GZIP)],
        arb_digest(),
        any::<u64>().prop_map(|n| n >> 12),
        proptest::option::of(proptest::collection::btree_map("[a-z.]{1,12}", "\\PC{0,12}", 0..3)),
    )
        .prop_map(|(m, d, s, a)| {
            let mut desc = Descriptor::new(m, d, s);
            desc.annotations = a.filter(|a| !a.is_empty());
            desc
        })
}

proptest! {
    #[test]
    fn manifest_round_trip(config in arb_descriptor(), layers in proptest::collection::vec(arb_descriptor(), 0..6)) {
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.into()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: None,
        };
        let raw = RawManifest::from_value(&m, mt::OCI_MANIFEST);
        let again = RawManifest::new(raw.bytes.clone(), None).unwrap();
        prop_assert_eq!(&again.digest, &raw.digest);
        prop_assert_eq!(again.parse().unwrap(), Manifest::Image(m));
    }

    #[test]
    fn index_round_trip(entries in proptest::collection::vec((arb_descriptor(), "[a-z0-9]{1,8}", proptest::option::of("v[0-9]")), 0..5)) {
        let mut idx = ImageIndex::new_oci();
        for (mut d, arch, variant) in entries {
            d.media_type = mt::OCI_MANIFEST.into();
            d.platform = Some(Platform::new("linux", &arch, variant.as_deref()));
            idx.manifests.push(d);
        }
        let raw = RawManifest::from_value(&idx, mt::OCI_INDEX);
        prop_assert_eq!(RawManifest::new(raw.bytes.clone(), None).unwrap().parse().unwrap(), Manifest::Index(idx));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(raw) = RawManifest::new(bytes, None) {
            let _ = raw.parse();
        }
    }
}
