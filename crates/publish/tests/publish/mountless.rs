//! DUCC's mountless publishing against a fake `cvmfs_server` that has no
//! transactions at all (a gateway publisher without a union mount): every
//! change is an `ingest` of a tar or an `ingest --fast-delete`, and the
//! repository ends up as a local publish makes it.

use std::path::{Path, PathBuf};

use cargohold_publish::{CvmfsServer, LocalDir, PublishOptions, Publisher, Status};
use cargohold_registry::{ClientOptions, Registry};
use cargohold_testkit::*;

use crate::images::{E, layer, push};

const FAKE: &str = r#"#!/bin/sh
# A stand-in for a mountless cvmfs_server: only ingests. The repository's
# content goes to $FAKE_ROOT (its read-only view), or with $FAKE_DIR/hidden
# to $FAKE_DIR/store (a publisher that cannot see the repository).
echo "$*" >> "$FAKE_DIR/calls"
repo="$FAKE_ROOT"
[ -e "$FAKE_DIR/hidden" ] && repo="$FAKE_DIR/store"
bad() { case "$1" in /*|*..*|"") echo "bad path $1" >&2; exit 1 ;; esac; }
case "$1" in
  ingest)
    [ "$#" -ge 3 ] || { echo "ingest needs a repository" >&2; exit 1; }
    eval "name=\${$#}"
    [ "$name" = "unpacked.example.org" ] || { echo "unknown repository $name" >&2; exit 1; }
    case "$2" in
      --fast-delete)
        [ "$#" = 4 ] || { echo "unexpected fast-delete call" >&2; exit 1; }
        bad "$3"; rm -rf "$repo/$3" ;;
      --catalog)
        [ -e "$FAKE_DIR/fail" ] && { cat >/dev/null; echo "the gateway refused the lease" >&2; exit 1; }
        [ "$3 $4 $5 $#" = "-t - -b 7" ] || { echo "unexpected ingest flags" >&2; exit 1; }
        bad "$6"
        mkdir -p "$repo/$6" && tar -x -C "$repo/$6" -f - && touch "$repo/$6/.cvmfscatalog" ;;
      -t)
        [ "$3 $4 $#" = "- -b 6" ] || { echo "unexpected ingest flags" >&2; exit 1; }
        bad "$5"
        mkdir -p "$repo/$5" && tar -x -C "$repo/$5" -f - ;;
      *) echo "unexpected ingest flags $2" >&2; exit 1 ;;
    esac ;;
  *) echo "a mountless publisher has no $1" >&2; exit 1 ;;
esac
"#;

fn fake_server(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    crate::cvmfs::fake_server_with(dir, FAKE)
}

/// Every path below `root` with its kind and contents (a symlink's target),
/// except the publisher's own bookkeeping.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == ".cargohold" || rel == ".metadata/.flat-checks" || rel.ends_with(".lock") {
                continue;
            }
            let m = p.symlink_metadata().unwrap();
            if m.is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else if m.is_symlink() {
                out.push(format!("{rel} -> {}", std::fs::read_link(&p).unwrap().display()));
            } else if rel.contains("podmanStore/overlay-") && rel.ends_with(".json") {
                // Records carry the time they were made.
                out.push(rel);
            } else {
                out.push(format!("{rel}: {}", String::from_utf8_lossy(&std::fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

fn backend(t: &Path, root: &Path, program: &Path) -> CvmfsServer {
    CvmfsServer::with_paths("unpacked.example.org", root, program, &t.join("spool/cargohold-publish.lock"))
        .mountless(true)
}

#[test]
fn mountless_publishing_is_ingests_only_and_makes_the_same_tree() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    let base = layer(&[E::Dir("etc"), E::File("etc/motd", b"hello"), E::Dir("a"), E::File("a/x", b"x")]);
    let top = layer(&[E::Dir("a"), E::File("a/.wh.x", b""), E::File("top", b"top"), E::Link("l", "etc/motd")]);
    push(&reg, &r.addr, "cv/app", "1", &[base, top]);
    let (root, fake_dir, program) = fake_server(t.path());
    let calls = || std::fs::read_to_string(fake_dir.join("calls")).unwrap_or_default();
    let publisher =
        Publisher::with_backend(Box::new(backend(t.path(), &root, &program)), &reg, PublishOptions::default(), None)
            .unwrap();
    let url = cargohold_image_core::ImageUrl::parse(&format!("http://{}/cv/app:1", r.addr)).unwrap();
    let name = format!("{}/cv/app:1", r.addr);

    let report = publisher.convert_image(&url);
    assert_eq!(report.status, Status::Converted, "{report:?}");
    assert_eq!(report.layers_new, 2);
    let m: cargohold_image_core::ImageManifest =
        serde_json::from_slice(&std::fs::read(publisher.tree().metadata_dir(&name).join("manifest.json")).unwrap())
            .unwrap();
    let layer_ingest = |d: &cargohold_image_core::Digest| {
        format!("ingest --catalog -t - -b .layers/{}/{}/layerfs unpacked.example.org\n", &d.hex()[..2], d.hex())
    };
    let mut want = String::new();
    for l in &m.layers {
        want += &layer_ingest(&l.digest);
    }
    for top in [".layers", ".flat", "podmanStore", ".metadata", r.addr.as_str()] {
        want += &format!("ingest -t - -b {top} unpacked.example.org\n");
    }
    assert_eq!(calls(), want, "layers, then the rest: data before the names that point at it");
    let link = publisher.tree().public_path(&name);
    assert_eq!(std::fs::read(link.join("etc/motd")).unwrap(), b"hello");
    assert_eq!(std::fs::read(link.join("l")).unwrap(), b"hello");
    assert!(!link.join("a/x").exists(), "the whiteout applies in the flat");
    assert!(link.join(".cvmfscatalog").is_file(), "a nested catalog in the flat");
    // Nothing is left in the spool.
    let spool = t.path().join("spool");
    assert!(!spool.join("cargohold-shadow").exists());
    assert_eq!(std::fs::read_dir(spool.join("cargohold-staging")).unwrap().count(), 0);

    // The same tree a local publish makes (less the catalogs).
    let local = t.path().join("local");
    let lp = Publisher::with_backend(Box::new(LocalDir::new(&local).unwrap()), &reg, PublishOptions::default(), None)
        .unwrap();
    assert_eq!(lp.convert_image(&url).status, Status::Converted);
    let ours: Vec<String> = listing(&root).into_iter().filter(|l| !l.contains(".cvmfscatalog")).collect();
    assert_eq!(ours, listing(&local));

    // Unchanged: nothing at all.
    std::fs::write(fake_dir.join("calls"), "").unwrap();
    assert_eq!(publisher.convert_image(&url).status, Status::Skipped);
    assert_eq!(calls(), "");

    // The tag moves: one new layer, a new flat, the link and records replaced.
    push(&reg, &r.addr, "cv/app", "1", &[layer(&[E::File("other", b"o")])]);
    assert_eq!(publisher.convert_image(&url).status, Status::Converted);
    assert_eq!(std::fs::read(link.join("other")).unwrap(), b"o");
    assert!(!link.join("etc/motd").exists());

    // GC: the old flat and its two layers go by fast deletes.
    std::fs::write(fake_dir.join("calls"), "").unwrap();
    let notifier = cargohold_publish::Notifier::new(None);
    let gc = cargohold_publish::collect_in(
        &backend(t.path(), &root, &program),
        false,
        std::time::Duration::ZERO,
        None,
        &notifier,
    )
    .unwrap();
    assert_eq!(gc.collected.len(), 3, "{gc:?}");
    let c = calls();
    assert_eq!(c.lines().count(), 3, "{c}");
    assert!(c.lines().all(|l| l.starts_with("ingest --fast-delete .")), "{c}");
    for l in &m.layers {
        assert!(!publisher.tree().layer_dir(&l.digest).exists());
    }
    assert!(!publisher.tree().flat_dir(&m.config.digest).exists());
    assert_eq!(std::fs::read(link.join("other")).unwrap(), b"o", "what is used stays");

    // delete-image: the name and metadata by fast deletes, the store's records by ingest.
    std::fs::write(fake_dir.join("calls"), "").unwrap();
    assert!(publisher.delete_image(&url, false).unwrap());
    let c = calls();
    assert!(c.contains(&format!("ingest --fast-delete {name} unpacked.example.org\n")), "{c}");
    assert!(c.contains(&format!("ingest --fast-delete .metadata/{name} unpacked.example.org\n")), "{c}");
    assert!(c.ends_with("ingest -t - -b podmanStore unpacked.example.org\n"), "{c}");
    assert!(std::fs::symlink_metadata(&link).is_err());
    let images = std::fs::read_to_string(root.join("podmanStore/overlay-images/images.json")).unwrap();
    assert!(!images.contains("cv/app"), "{images}");
}

#[test]
fn mountless_without_a_view_of_the_repository_and_failed_ingests() {
    let r = TestRegistry::start();
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::new(ClientOptions::default()).unwrap();
    push(&reg, &r.addr, "cv/blind", "1", &[layer(&[E::File("f", b"1")]), layer(&[E::File("g", b"2")])]);
    let (root, fake_dir, program) = fake_server(t.path());
    let calls = || std::fs::read_to_string(fake_dir.join("calls")).unwrap_or_default();
    let publisher =
        Publisher::with_backend(Box::new(backend(t.path(), &root, &program)), &reg, PublishOptions::default(), None)
            .unwrap();
    let url = cargohold_image_core::ImageUrl::parse(&format!("http://{}/cv/blind:1", r.addr)).unwrap();

    // The publisher sees nothing of the repository: the flat comes from the
    // layers it staged, and everything goes in.
    std::fs::write(fake_dir.join("hidden"), "").unwrap();
    let report = publisher.convert_image(&url);
    assert_eq!(report.status, Status::Converted, "{report:?}");
    let store = fake_dir.join("store");
    let flats: Vec<_> = std::fs::read_dir(store.join(".flat")).unwrap().flatten().collect();
    assert_eq!(flats.len(), 1);
    let flat = std::fs::read_dir(flats[0].path()).unwrap().next().unwrap().unwrap().path();
    assert_eq!(std::fs::read(flat.join("f")).unwrap(), b"1");
    assert_eq!(std::fs::read(flat.join("g")).unwrap(), b"2");
    let link = store.join(format!("{}/cv/blind:1", r.addr));
    assert_eq!(std::fs::read(link.join("g")).unwrap(), b"2", "the public link resolves");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "nothing written but by ingest");

    // A layer the gateway refuses: the image fails, the half-ingested
    // layer is fast-deleted (there is no transaction to abort), nothing else
    // goes in.
    std::fs::remove_file(fake_dir.join("hidden")).unwrap();
    std::fs::write(fake_dir.join("calls"), "").unwrap();
    std::fs::write(fake_dir.join("fail"), "").unwrap();
    let failed = publisher.convert_image(&url);
    assert_eq!(failed.status, Status::Failed, "{failed:?}");
    assert!(failed.error.as_deref().unwrap_or_default().contains("the gateway refused the lease"), "{failed:?}");
    let c = calls();
    let lines: Vec<&str> = c.lines().collect();
    assert_eq!(lines.len(), 2, "{c}");
    assert!(lines[0].starts_with("ingest --catalog -t - -b .layers/"), "{c}");
    let layer_path = lines[0].split(' ').nth(5).unwrap();
    assert_eq!(lines[1], format!("ingest --fast-delete {layer_path} unpacked.example.org"));
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    assert!(!t.path().join("spool/cargohold-shadow").exists());
}
