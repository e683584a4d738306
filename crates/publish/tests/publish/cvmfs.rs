//! The CernVM-FS backend against a fake `cvmfs_server` that checks the call
//! protocol (no real one can be installed here): one transaction per image,
//! `publish` on success with no staging left in the repository, `abort` on
//! failure, a nested catalog in every layer and flat.

use std::os::unix::fs::PermissionsExt as _;

use cargohold_publish::{CvmfsServer, PublishOptions, Publisher, Status};
use cargohold_registry::{ClientOptions, Registry};
use cargohold_testkit::*;

use crate::images::{E, layer, push};

const FAKE: &str = r#"#!/bin/sh
# A stand-in for cvmfs_server: logs its calls and enforces the protocol.
state="$FAKE_DIR/open"
echo "$*" >> "$FAKE_DIR/calls"
case "$1" in
  transaction)
    [ -e "$state" ] && { echo "a transaction is already open" >&2; exit 1; }
    touch "$state" ;;
  publish)
    [ -e "$state" ] || { echo "no open transaction" >&2; exit 1; }
    [ -e "$FAKE_ROOT/.cargohold" ] && { echo "staging would be published" >&2; exit 1; }
    rm "$state" ;;
  abort)
    [ "$2" = "-f" ] || { echo "abort without -f would ask" >&2; exit 1; }
    [ -e "$state" ] || { echo "no open transaction" >&2; exit 1; }
    rm "$state" ;;
  ingest)
    # ingest --catalog -t - -b PATH REPO: a tar on stdin, never inside a transaction.
    [ -e "$state" ] && { echo "ingest while a transaction is open" >&2; exit 1; }
    [ "$2 $3 $4 $5" = "--catalog -t - -b" ] || { echo "unexpected ingest flags" >&2; exit 1; }
    case "$6" in /*|*..*|"") echo "bad base path $6" >&2; exit 1 ;; esac
    mkdir -p "$FAKE_ROOT/$6" && tar -x -C "$FAKE_ROOT/$6" -f - && touch "$FAKE_ROOT/$6/.cvmfscatalog" ;;
  *) echo "unexpected call $*" >&2; exit 1 ;;
esac
"#;

/// The repository's mount point, the fake's directory (its call log), and
/// the fake `cvmfs_server` itself, under `dir`.
fn fake_server(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    fake_server_with(dir, FAKE)
}

/// [`fake_server`] running `script` (`$FAKE_DIR` and `$FAKE_ROOT` in it
/// replaced by the fake's directory and the mount point).
pub fn fake_server_with(
    dir: &std::path::Path,
    script: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let root = dir.join("cvmfs/unpacked.example.org");
    std::fs::create_dir_all(&root).unwrap();
    let fake_dir = dir.join("fake");
    std::fs::create_dir_all(&fake_dir).unwrap();
    let program = fake_dir.join("cvmfs_server");
    let script =
        script.replace("$FAKE_DIR", &fake_dir.display().to_string()).replace("$FAKE_ROOT", &root.display().to_string());
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (root, fake_dir, program)
}

#[test]
fn each_image_is_one_transaction_published_or_aborted() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let good = layer(&[E::Dir("etc"), E::File("etc/motd", b"hello"), E::Dir("a"), E::File("a/.wh.x", b"")]);
    let bad = layer(&[E::File("b/.wh..", b"")]);
    push(&reg, &r.addr, "cv/good", "1", std::slice::from_ref(&good));
    push(&reg, &r.addr, "cv/bad", "1", &[good, bad]);

    let (root, fake_dir, program) = fake_server(t.path());
    let backend = CvmfsServer::with_paths(
        "unpacked.example.org",
        &root,
        &program,
        &t.path().join("spool/cargohold-publish.lock"),
    );
    let calls = || std::fs::read_to_string(fake_dir.join("calls")).unwrap_or_default();
    let backend = backend.layers_by_ingest(false);
    let publisher = Publisher::with_backend(Box::new(backend), &reg, PublishOptions::default(), None).unwrap();

    let url = |repo: &str| cargohold_image_core::ImageUrl::parse(&format!("http://{}/{repo}:1", r.addr)).unwrap();
    let ok = publisher.convert_image(&url("cv/good"));
    assert_eq!(ok.status, Status::Converted, "{ok:?}");
    assert_eq!(calls(), "transaction unpacked.example.org\npublish unpacked.example.org\n");
    let link = publisher.tree().public_path(&format!("{}/cv/good:1", r.addr));
    assert_eq!(std::fs::read(link.join("etc/motd")).unwrap(), b"hello");
    assert!(link.join(".cvmfscatalog").is_file(), "a nested catalog in the flat");
    let m: cargohold_image_core::ImageManifest = serde_json::from_slice(
        &std::fs::read(publisher.tree().metadata_dir(&format!("{}/cv/good:1", r.addr)).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(publisher.tree().layer_dir(&m.layers[0].digest).join(".cvmfscatalog").is_file());

    let failed = publisher.convert_image(&url("cv/bad"));
    assert_eq!(failed.status, Status::Failed);
    assert!(failed.error.as_deref().unwrap_or_default().contains("whiteout"), "{failed:?}");
    assert!(calls().ends_with("transaction unpacked.example.org\nabort -f unpacked.example.org\n"), "{}", calls());

    // Nothing changed: no transaction at all.
    let before = calls();
    assert_eq!(publisher.convert_image(&url("cv/good")).status, Status::Skipped);
    assert_eq!(calls(), before);

    // GC: nothing unused, no transaction; after the tag moves, one transaction.
    let backend = CvmfsServer::with_paths(
        "unpacked.example.org",
        &root,
        &program,
        &t.path().join("spool/cargohold-publish.lock"),
    );
    let notifier = cargohold_publish::Notifier::new(None);
    let none = cargohold_publish::collect_in(&backend, false, std::time::Duration::ZERO, None, &notifier).unwrap();
    assert!(none.collected.is_empty());
    assert_eq!(calls(), before);
    push(&reg, &r.addr, "cv/good", "1", &[layer(&[E::File("other", b"x")])]);
    assert_eq!(publisher.convert_image(&url("cv/good")).status, Status::Converted);
    let after_convert = calls();
    let gc = cargohold_publish::collect_in(&backend, false, std::time::Duration::ZERO, None, &notifier).unwrap();
    assert_eq!(gc.collected.len(), 2, "{gc:?}");
    assert_eq!(calls(), format!("{after_convert}transaction unpacked.example.org\npublish unpacked.example.org\n"));
}

/// Layers by `cvmfs_server ingest` as today's DUCC: each new layer streamed
/// as a tar into `.layers/XX/HEX/layerfs`, outside any transaction, before the
/// image's transaction links the flat; the tree is the one a local publish
/// makes.
#[test]
fn layers_are_ingested_outside_the_transaction_as_duccs() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let base = layer(&[E::Dir("etc"), E::File("etc/motd", b"hello"), E::Dir("a"), E::File("a/x", b"x")]);
    let top = layer(&[E::Dir("a"), E::File("a/.wh.x", b""), E::File("top", b"top")]);
    let raw = push(&reg, &r.addr, "cv/app", "1", &[base, top]);
    let (root, fake_dir, program) = fake_server(t.path());
    let spool = t.path().join("spool");
    let backend =
        CvmfsServer::with_paths("unpacked.example.org", &root, &program, &spool.join("cargohold-publish.lock"));
    let publisher = Publisher::with_backend(Box::new(backend), &reg, PublishOptions::default(), None).unwrap();
    let url = cargohold_image_core::ImageUrl::parse(&format!("http://{}/cv/app:1", r.addr)).unwrap();
    let report = publisher.convert_image(&url);
    assert_eq!(report.status, Status::Converted, "{report:?}");
    assert_eq!(report.layers_new, 2);
    let m: cargohold_image_core::ImageManifest = serde_json::from_slice(&raw.bytes).unwrap();
    let calls = std::fs::read_to_string(fake_dir.join("calls")).unwrap();
    let want: String = m
        .layers
        .iter()
        .map(|l| {
            format!(
                "ingest --catalog -t - -b .layers/{}/{}/layerfs unpacked.example.org\n",
                &l.digest.hex()[..2],
                l.digest.hex()
            )
        })
        .chain(["transaction unpacked.example.org\n".into(), "publish unpacked.example.org\n".into()])
        .collect();
    assert_eq!(calls, want);
    // The layers as ingested (whiteouts kept, as DUCC's), their metadata,
    // and the flat built from them.
    let top_dir = publisher.tree().layer_dir(&m.layers[1].digest);
    assert!(top_dir.join("layerfs/a/.wh.x").exists() && top_dir.join("layerfs/.cvmfscatalog").is_file());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(top_dir.join(".metadata/layers.json")).unwrap()).unwrap();
    assert_eq!(meta["digest"], m.layers[1].digest.to_string());
    let link = publisher.tree().public_path(&format!("{}/cv/app:1", r.addr));
    assert_eq!(std::fs::read(link.join("etc/motd")).unwrap(), b"hello");
    assert_eq!(std::fs::read(link.join("top")).unwrap(), b"top");
    assert!(!link.join("a/x").exists(), "the whiteout applies in the flat");
    // Nothing staged is left in the spool or the repository.
    assert_eq!(std::fs::read_dir(spool.join("cargohold-staging")).unwrap().count(), 0);
    assert!(!root.join(".cargohold").exists());
    // A layer that cannot be ingested: the image fails, DUCC's clean-up runs.
    std::fs::write(fake_dir.join("calls"), "").unwrap();
    let bad = layer(&[E::File("new", b"n")]);
    push(&reg, &r.addr, "cv/app", "2", &[bad]);
    std::fs::create_dir_all(fake_dir.join("open")).unwrap();
    let url2 = cargohold_image_core::ImageUrl::parse(&format!("http://{}/cv/app:2", r.addr)).unwrap();
    let failed = publisher.convert_image(&url2);
    std::fs::remove_dir_all(fake_dir.join("open")).unwrap();
    assert_eq!(failed.status, Status::Failed, "{failed:?}");
    assert!(failed.error.as_deref().unwrap_or_default().contains("ingest while a transaction is open"), "{failed:?}");
    let calls = std::fs::read_to_string(fake_dir.join("calls")).unwrap();
    assert!(calls.contains("abort -f unpacked.example.org\ningest --delete .layers/"), "{calls}");
}
