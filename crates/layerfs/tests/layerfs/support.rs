//! Crafted tars and tree snapshots.

use std::path::PathBuf;

use cargohold_layerfs::{ApplyOptions, ApplyReport, Error, Root, apply_layer};

/// A tar written entry by entry with raw names (no validation: hostile on purpose).
#[derive(Default)]
pub struct Tar {
    b: Option<tar::Builder<Vec<u8>>>,
}

pub enum Kind<'a> {
    File(&'a [u8]),
    Dir,
    Symlink(&'a [u8]),
    Hardlink(&'a [u8]),
    Fifo,
    Char(u32, u32),
}

impl Tar {
    pub fn new() -> Self {
        Tar { b: Some(tar::Builder::new(Vec::new())) }
    }

    pub fn add(&mut self, name: &[u8], kind: Kind<'_>, mode: u32) -> &mut Self {
        self.add_full(name, kind, mode, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.add(name.as_bytes(), Kind::File(data), 0o644)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.add(name.as_bytes(), Kind::Dir, 0o755)
    }

    pub fn add_full(
        &mut self,
        name: &[u8],
        kind: Kind<'_>,
        mode: u32,
        owner: (u64, u64),
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        let b = self.b.as_mut().expect("not finished");
        if !xattrs.is_empty() {
            let exts: Vec<(String, &[u8])> = xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
            b.append_pax_extensions(exts.iter().map(|(k, v)| (k.as_str(), *v))).expect("pax");
        }
        let mut h = tar::Header::new_gnu();
        let (ty, data, link): (tar::EntryType, &[u8], &[u8]) = match kind {
            Kind::File(d) => (tar::EntryType::Regular, d, b""),
            Kind::Dir => (tar::EntryType::Directory, b"", b""),
            Kind::Symlink(t) => (tar::EntryType::Symlink, b"", t),
            Kind::Hardlink(t) => (tar::EntryType::Link, b"", t),
            Kind::Fifo => (tar::EntryType::Fifo, b"", b""),
            Kind::Char(maj, min) => {
                h.set_device_major(maj).expect("major");
                h.set_device_minor(min).expect("minor");
                (tar::EntryType::Char, b"", b"")
            }
        };
        h.set_entry_type(ty);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(1_600_000_000);
        assert!(name.len() <= 100 && link.len() <= 100, "test names fit the header");
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        b.append(&h, data).expect("append");
        self
    }

    pub fn bytes(&mut self) -> Vec<u8> {
        self.b.take().expect("once").into_inner().expect("finish")
    }
}

/// A scratch area: `root/` to extract into, `outside/` with sentinel files.
pub struct Scene {
    pub dir: tempfile::TempDir,
}

impl Scene {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("root")).expect("mkdir");
        let out = dir.path().join("outside");
        std::fs::create_dir_all(out.join("etc")).expect("mkdir");
        std::fs::write(out.join("etc/shadow"), "secret").expect("write");
        std::fs::write(out.join("victim"), "keep me").expect("write");
        Scene { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    pub fn apply(&self, tar: Vec<u8>, opts: &ApplyOptions) -> Result<ApplyReport, Error> {
        let root = Root::open(&self.root()).expect("open root");
        apply_layer(&root, &mut &tar[..], "test-layer", opts)
    }
}

pub use cargohold_testkit::{is_root, tree, tree_diff};
