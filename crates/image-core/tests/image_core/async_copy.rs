//! `copy_async` through the async seam inside a tokio runtime: layers in
//! parallel (and in order for archives), every blob verified, nothing
//! stored from a copy that failed, archives through `Blocking`, skopeo
//! reading what it wrote.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cargohold_image_core::{
    AsyncImageSource, BlobStream, CopyOptions, Descriptor, Error, ImageLocation, NoProgress, RawManifest, Reference,
    Store, copy_async, open_dest_async, open_source, open_source_async,
};
use futures_util::StreamExt;

use crate::support::*;

/// A source that slows every chunk down, counts how many blobs are being
/// read at once, and may corrupt one blob.
struct Watched {
    inner: Box<dyn AsyncImageSource>,
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    /// Every blob asked for, in order.
    asked: Arc<std::sync::Mutex<Vec<cargohold_image_core::Digest>>>,
    corrupt: Option<cargohold_image_core::Digest>,
}

/// Decrements the in-flight count when the stream it lives in is dropped.
struct Leaving(Arc<AtomicUsize>);
impl Drop for Leaving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl AsyncImageSource for Watched {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn top_manifest(&self) -> cargohold_image_core::Result<RawManifest> {
        self.inner.top_manifest().await
    }
    async fn manifest(&self, desc: &Descriptor) -> cargohold_image_core::Result<RawManifest> {
        self.inner.manifest(desc).await
    }
    async fn blob(&self, desc: &Descriptor) -> cargohold_image_core::Result<BlobStream> {
        let body = self.inner.blob(desc).await?;
        self.asked.lock().unwrap().push(desc.digest.clone());
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        let leaving = Arc::new(Leaving(Arc::clone(&self.now)));
        let corrupt = self.corrupt.as_ref() == Some(&desc.digest);
        Ok(Box::pin(body.then(move |chunk| {
            let _alive = Arc::clone(&leaving);
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                chunk.map(|b| {
                    if corrupt {
                        let mut v = b.to_vec();
                        v[0] ^= 0xff;
                        Bytes::from(v)
                    } else {
                        b
                    }
                })
            }
        })))
    }
    fn blob_location(&self, desc: &Descriptor) -> String {
        self.inner.blob_location(desc)
    }
}

fn four_layers() -> Vec<Vec<u8>> {
    (0..4u8)
        .map(|i| {
            let data: Vec<u8> = (0..200_000u32).map(|j| (j.wrapping_mul(2654435761) >> 11) as u8 ^ i).collect();
            layer_tar(&[(&format!("layer{i}/data"), &data)])
        })
        .collect()
}

async fn watched(layout: &std::path::Path, store: &Store, corrupt: Option<cargohold_image_core::Digest>) -> Watched {
    let loc = ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap();
    Watched {
        inner: open_source_async(&loc, store).await.unwrap(),
        now: Arc::default(),
        most: Arc::default(),
        asked: Arc::default(),
        corrupt,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_move_in_parallel_into_the_store_and_in_order_into_archives() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let built = make_layout(&layout, "v1", &four_layers());
    let store = Store::open(t.path().join("store")).unwrap();

    // Into the store, four at a time: the reads overlap.
    let src = watched(&layout, &store, None).await;
    let dst = open_dest_async(&ImageLocation::parse("app:1").unwrap(), &store, None).await.unwrap();
    let report = copy_async(&src, dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap();
    assert_eq!((report.blobs_copied, report.blobs_skipped), (4, 0), "{report:?}");
    assert_eq!(report.manifest.digest, built.manifest);
    assert!(src.most.load(Ordering::SeqCst) >= 2, "layers were read one at a time");
    assert_eq!(src.now.load(Ordering::SeqCst), 0);
    // The blocking API reads what the async one stored.
    let mut back = open_source(&ImageLocation::parse("app:1").unwrap(), &store).unwrap();
    assert_eq!(back.top_manifest().unwrap().digest, built.manifest);
    assert_eq!(ingest_leftovers(&t.path().join("store")), 0);

    // Again: everything is there, nothing moves.
    let again = copy_async(&src, dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap();
    assert_eq!((again.blobs_copied, again.blobs_skipped), (0, 4));

    // With one job, one blob at a time.
    let one = watched(&layout, &store, None).await;
    let other =
        open_dest_async(&ImageLocation::parse("other:1").unwrap(), &Store::open(t.path().join("s2")).unwrap(), None)
            .await
            .unwrap();
    copy_async(&one, other.as_ref(), &CopyOptions::default(), 1, &NoProgress).await.unwrap();
    assert_eq!(one.most.load(Ordering::SeqCst), 1);

    // A docker archive is written through `Blocking`, one blob at a time,
    // whatever the jobs; skopeo reads it, and it reads back as the same image.
    let archive = t.path().join("app.tar");
    let to_archive = watched(&layout, &store, None).await;
    let loc = ImageLocation::parse(&format!("docker-archive:{}:app:1", archive.display())).unwrap();
    let dst = open_dest_async(&loc, &store, None).await.unwrap();
    assert!(!dst.concurrent_blobs());
    copy_async(&to_archive, dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap();
    drop(dst);
    assert_eq!(to_archive.most.load(Ordering::SeqCst), 1);
    let inspect: serde_json::Value = serde_json::from_str(&run(skopeo(t.path())
        .arg("inspect")
        .arg(format!("docker-archive:{}", archive.display()))))
    .unwrap();
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(4), "{inspect}");
    let from_archive = open_source_async(&loc, &store).await.unwrap();
    let third = Store::open(t.path().join("s3")).unwrap();
    let dst = open_dest_async(&ImageLocation::parse("back:1").unwrap(), &third, None).await.unwrap();
    let report =
        copy_async(from_archive.as_ref(), dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap();
    assert_eq!(report.blobs_copied, 4);
    let img = third.resolve("back:1").unwrap();
    let details = third.details(&img.descriptor, None).unwrap();
    assert_eq!(details.config.rootfs.diff_ids, built.diff_ids);
    assert_eq!(from_archive.name_hint(), Some(Reference::parse("app:1").unwrap().pull_reference()));
}

#[tokio::test(flavor = "current_thread")]
async fn a_corrupt_layer_fails_the_copy_names_the_source_and_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let built = make_layout(&layout, "v1", &four_layers());
    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let before = snapshot(&store_dir);

    let src = watched(&layout, &store, Some(built.layers[2].clone())).await;
    let dst = open_dest_async(&ImageLocation::parse("app:1").unwrap(), &store, None).await.unwrap();
    let err = copy_async(&src, dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap_err();
    assert!(matches!(err, Error::Verify { ref digest, .. } if *digest == built.layers[2]), "{err:?}");
    let text = chain(&err);
    assert!(text.contains(&layout.display().to_string()), "the error does not name the source: {text}");
    drop(dst);
    assert_eq!(snapshot(&store_dir), before, "a failed copy changed the store");
    assert_eq!(ingest_leftovers(&store_dir), 0);
    assert!(store.resolve("app:1").is_err());
}

/// Blobs of 4 MiB and more are hashed on a thread of their own while they
/// are written: verified all the same (a corrupt one fails the copy and
/// leaves nothing), the good ones stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blobs_are_hashed_beside_their_writing_and_verified() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    // Noise (xorshift): it stays as large gzipped.
    let big: Vec<Vec<u8>> = (0..2u64)
        .map(|i| {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ i;
            let data: Vec<u8> = (0..5_000_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            layer_tar(&[(&format!("big{i}/data"), &data)])
        })
        .collect();
    let built = make_layout(&layout, "v1", &big);
    let blob = |d: &cargohold_image_core::Digest| std::fs::read(layout.join("blobs/sha256").join(d.hex())).unwrap();
    assert!(built.layers.iter().all(|d| blob(d).len() > 4 << 20), "large enough to take that path");
    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let before = snapshot(&store_dir);
    let src = watched(&layout, &store, Some(built.layers[1].clone())).await;
    let dst = open_dest_async(&ImageLocation::parse("big:1").unwrap(), &store, None).await.unwrap();
    let err = copy_async(&src, dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap_err();
    assert!(matches!(err, Error::Verify { ref digest, .. } if *digest == built.layers[1]), "{err:?}");
    drop(dst);
    assert_eq!(snapshot(&store_dir), before, "a failed copy changed the store");
    assert_eq!(ingest_leftovers(&store_dir), 0);

    let src = watched(&layout, &store, None).await;
    let dst = open_dest_async(&ImageLocation::parse("big:1").unwrap(), &store, None).await.unwrap();
    copy_async(&src, dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap();
    for digest in &built.layers {
        let stored = std::fs::read(store_dir.join("blobs/sha256").join(digest.hex())).unwrap();
        assert!(stored == blob(digest), "layer {digest} stored whole");
    }
}

/// A destination where each blob lands as it is sent (as in a registry,
/// which also checks what it is sent): records what landed, and with
/// `refuse_layers` refuses every layer as not matching its digest.
#[derive(Default)]
struct Landing {
    refuse_layers: bool,
    landed: std::sync::Mutex<Vec<cargohold_image_core::Digest>>,
}

#[async_trait::async_trait]
impl cargohold_image_core::AsyncImageDest for Landing {
    fn location(&self) -> String {
        "landing".into()
    }
    fn verifies_blobs(&self) -> bool {
        true
    }
    async fn has_blob(&self, _: &Descriptor) -> cargohold_image_core::Result<bool> {
        Ok(false)
    }
    async fn put_blob(
        &self,
        desc: &Descriptor,
        kind: cargohold_image_core::BlobKind,
        mut data: BlobStream,
    ) -> cargohold_image_core::Result<Descriptor> {
        while let Some(chunk) = data.next().await {
            chunk.map_err(|e| Error::blob_read(&desc.digest, "the test's stream", e))?;
        }
        match kind {
            cargohold_image_core::BlobKind::Layer(_) if self.refuse_layers => Err(Error::Verify {
                digest: desc.digest.clone(),
                location: "refusing".into(),
                source: Box::new(cargohold_image_core::VerifyError::Refused {
                    digest: desc.digest.clone(),
                    by: "the test's registry (DIGEST_INVALID)".into(),
                }),
            }),
            _ => {
                self.landed.lock().unwrap().push(desc.digest.clone());
                Ok(desc.clone())
            }
        }
    }
    async fn put_manifest(&self, _: &RawManifest) -> cargohold_image_core::Result<()> {
        Ok(())
    }
    async fn commit(&self, _: &RawManifest) -> cargohold_image_core::Result<()> {
        Ok(())
    }
}

/// A destination that verifies what it is sent is not hashed on the way;
/// when it refuses a blob, the source is read again to say whose fault it
/// is: a source whose blob does not match is named with what it holds, a
/// matching one leaves the refusal to the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_blob_is_blamed_on_whoever_is_wrong() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let built = make_layout(&layout, "v1", &four_layers()[..1]);
    let store = Store::open(t.path().join("store")).unwrap();
    let refusing = Landing { refuse_layers: true, ..Landing::default() };

    let good = watched(&layout, &store, None).await;
    let err = copy_async(&good, &refusing, &CopyOptions::default(), 4, &NoProgress).await.unwrap_err();
    match &err {
        Error::Verify { digest, location, source } => {
            assert_eq!(digest, &built.layers[0]);
            assert_eq!(location, "refusing", "the source matches: the destination is named");
            assert!(matches!(**source, cargohold_image_core::VerifyError::Refused { .. }), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("refusing") && format!("{:?}", err).contains("DIGEST_INVALID"), "{err:?}");

    let bad = watched(&layout, &store, Some(built.layers[0].clone())).await;
    let err = copy_async(&bad, &refusing, &CopyOptions::default(), 4, &NoProgress).await.unwrap_err();
    match &err {
        Error::Verify { digest, location, source } => {
            assert_eq!(digest, &built.layers[0]);
            assert!(
                location.contains("layout/blobs/sha256") && location.contains(built.layers[0].hex()),
                "the source's file is named: {location}"
            );
            assert!(matches!(**source, cargohold_image_core::VerifyError::DigestMismatch { .. }), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// Rewrites the image of `layout` (tag v1) with a config that lists one diff
/// ID fewer than its layers: a broken image whose blobs all verify.
fn drop_a_diff_id(layout: &std::path::Path) -> cargohold_image_core::Digest {
    let blob_path = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let put = |bytes: &[u8]| {
        let d = cargohold_image_core::Digest::sha256_of(bytes);
        std::fs::write(blob_path(d.as_str()), bytes).unwrap();
        d
    };
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let m_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(&m_digest)).unwrap()).unwrap();
    let c_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(blob_path(&c_digest)).unwrap()).unwrap();
    config["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = put(&config_bytes);
    manifest["config"]["digest"] = config_digest.as_str().into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = put(&manifest_bytes);
    index["manifests"][0]["digest"] = manifest_digest.as_str().into();
    index["manifests"][0]["size"] = manifest_bytes.len().into();
    std::fs::write(index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    config_digest
}

/// A config that does not match its manifest fails the copy with an error
/// that says so, and stores nothing. Into a store (which stages blobs until
/// the commit) the layers start beside the config's fetch, so its round
/// trip holds none back; into a destination where blobs land as they are
/// sent, no layer is read before the config has been checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_does_not_match_its_manifest_stores_nothing() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    make_layout(&layout, "v1", &four_layers());
    let config = drop_a_diff_id(&layout);
    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let before = snapshot(&store_dir);

    let src = watched(&layout, &store, None).await;
    let dst = open_dest_async(&ImageLocation::parse("app:1").unwrap(), &store, None).await.unwrap();
    assert!(dst.stages_blobs());
    let err = copy_async(&src, dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("4 layers but the config lists 3 diff IDs"), "{text}");
    assert!(text.contains(&layout.display().to_string()), "the error does not name the source: {text}");
    assert!(src.asked.lock().unwrap().len() > 1, "no layer started beside the config");
    drop(dst);
    assert_eq!(snapshot(&store_dir), before, "a failed copy changed the store");
    assert_eq!(ingest_leftovers(&store_dir), 0);
    assert!(store.resolve("app:1").is_err());

    let src = watched(&layout, &store, None).await;
    let landing = Landing::default();
    let err = copy_async(&src, &landing, &CopyOptions::default(), 4, &NoProgress).await.unwrap_err();
    assert!(chain(&err).contains("the config lists 3 diff IDs"), "{err:?}");
    assert_eq!(*src.asked.lock().unwrap(), vec![config], "a layer was read before the config was checked");
    assert!(landing.landed.lock().unwrap().is_empty(), "a blob landed");
}

/// Both copies write layers in another compression alike (the same
/// manifest), one that does not verify is named and stores nothing, and
/// the recompressed image reads back with the same files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_copies_recompress_alike_and_verify_their_source() {
    use cargohold_image_core::{CompressionFormat, Recompress, copy, open_dest};
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    make_layout(&layout, "v1", &four_layers());
    let store = Store::open(t.path().join("store")).unwrap();
    let zstd = CopyOptions {
        compression: Some(Recompress {
            format: CompressionFormat::Zstd,
            level: Some(5),
            temp_dir: t.path().to_owned(),
        }),
        ..CopyOptions::default()
    };
    let src = watched(&layout, &store, None).await;
    let dst = open_dest_async(&ImageLocation::parse("z:1").unwrap(), &store, None).await.unwrap();
    let by_async = copy_async(&src, dst.as_ref(), &zstd, 4, &NoProgress).await.unwrap();
    assert_eq!(by_async.blobs_copied, 4);
    let (store2, layout2, opts) = (t.path().join("store2"), layout.clone(), zstd.clone());
    let by_blocking = tokio::task::spawn_blocking(move || {
        let store = Store::open(store2).unwrap();
        let loc = ImageLocation::parse(&format!("oci:{}:v1", layout2.display())).unwrap();
        let mut src = open_source(&loc, &store).unwrap();
        let mut dst = open_dest(&ImageLocation::parse("z:1").unwrap(), &store, None).unwrap();
        copy(src.as_mut(), dst.as_mut(), &opts, &NoProgress).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(by_blocking.manifest.digest, by_async.manifest.digest, "the same zstd image");
    let mut back = open_source(&ImageLocation::parse("z:1").unwrap(), &store).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&back.top_manifest().unwrap().bytes).unwrap();
    // Each layer is its tar, zstd-compressed.
    for (l, tar) in m["layers"].as_array().unwrap().iter().zip(four_layers()) {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
        let desc: Descriptor = serde_json::from_value(l.clone()).unwrap();
        let mut blob = Vec::new();
        std::io::Read::read_to_end(&mut back.blob(&desc).unwrap(), &mut blob).unwrap();
        assert_eq!(zstd::decode_all(&blob[..]).unwrap(), tar);
    }

    // A source layer that does not verify: named, nothing stored.
    let corrupt = built_layer(&layout);
    let bad = watched(&layout, &store, Some(corrupt.clone())).await;
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let dst = open_dest_async(&ImageLocation::parse("bad:1").unwrap(), &fresh, None).await.unwrap();
    let err = copy_async(&bad, dst.as_ref(), &zstd, 4, &NoProgress).await.unwrap_err();
    assert!(chain(&err).contains(corrupt.as_str()), "{}", chain(&err));
    drop(dst);
    assert!(open_source(&ImageLocation::parse("bad:1").unwrap(), &fresh).is_err());
    assert_eq!(ingest_leftovers(&t.path().join("fresh")), 0);
}

/// The digest of the first layer of the layout's `v1`.
fn built_layer(layout: &std::path::Path) -> cargohold_image_core::Digest {
    let loc = ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap();
    let store = Store::open(layout.with_extension("probe")).unwrap();
    let mut src = open_source(&loc, &store).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&src.top_manifest().unwrap().bytes).unwrap();
    m["layers"][0]["digest"].as_str().unwrap().parse().unwrap()
}

/// Additional tags (skopeo's `--additional-tag`): a docker archive opened
/// with them records every name; a location of one name is refused before
/// it is made, and a copy to a destination already open refuses them too
/// (they would be lost), storing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn additional_tags_go_to_docker_archives_and_are_refused_elsewhere() {
    use cargohold_image_core::{DockerArchive, open_dest_async_tagged};
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    make_layout(&layout, "v1", &four_layers());
    let store = Store::open(t.path().join("store")).unwrap();
    let src_loc = ImageLocation::parse(&format!("oci:{}:v1", layout.display())).unwrap();
    let extra = [Reference::parse("extra:2").unwrap(), Reference::parse("quay.io/team/more:3").unwrap()];
    let archive = t.path().join("a.tar");
    let loc = ImageLocation::parse(&format!("docker-archive:{}:app:1", archive.display())).unwrap();
    let src = open_source_async(&src_loc, &store).await.unwrap();
    let dst = open_dest_async_tagged(&loc, &store, None, &extra).await.unwrap();
    copy_async(src.as_ref(), dst.as_ref(), &CopyOptions::default(), 4, &NoProgress).await.unwrap();
    let read = DockerArchive::open(&archive).unwrap();
    assert_eq!(read.images()[0].repo_tags, ["app:1", "extra:2", "quay.io/team/more:3"]);

    let other = t.path().join("other");
    let refused = open_dest_async_tagged(
        &ImageLocation::parse(&format!("oci:{}:x", other.display())).unwrap(),
        &store,
        None,
        &extra,
    )
    .await;
    assert!(matches!(refused, Err(Error::BadOption { .. })), "{:?}", refused.err());
    assert!(!other.exists(), "the refused layout was made");

    let opts = CopyOptions { additional_tags: extra.to_vec(), ..CopyOptions::default() };
    let dst = open_dest_async(&ImageLocation::parse("app:1").unwrap(), &store, None).await.unwrap();
    let err = copy_async(src.as_ref(), dst.as_ref(), &opts, 4, &NoProgress).await.unwrap_err();
    assert!(err.to_string().contains("additional tag extra:2"), "{err}");
    assert!(store.resolve("app:1").is_err(), "stored from a refused copy");
}
