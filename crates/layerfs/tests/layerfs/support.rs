//! Crafted tars and tree snapshots.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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

/// One node of a tree, everything two unpackers must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Option<Vec<u8>>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The other paths sharing this inode (a hardlink group), sorted.
    pub links: Vec<PathBuf>,
}

/// Every path under `dir` (the root itself as ""), never following symlinks.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Node>, inodes: &mut BTreeMap<u64, Vec<PathBuf>>) {
        let m = std::fs::symlink_metadata(p).expect("lstat");
        let rel = p.strip_prefix(base).expect("under base").to_path_buf();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "other"
        };
        let mut xattrs = BTreeMap::new();
        let mut list = vec![0u8; 1 << 16];
        if let Ok(len) = rustix::fs::llistxattr(p, &mut list[..]) {
            for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
                let n = String::from_utf8_lossy(name).into_owned();
                let mut value = vec![0u8; 1 << 16];
                if let Ok(vlen) = rustix::fs::lgetxattr(p, n.as_str(), &mut value[..]) {
                    value.truncate(vlen);
                    xattrs.insert(n, value);
                }
            }
        }
        if ft.is_file() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        out.insert(
            rel.clone(),
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if ft.is_file() { m.len() } else { 0 },
                content: ft.is_file().then(|| std::fs::read(p).expect("read")),
                link: ft.is_symlink().then(|| std::fs::read_link(p).expect("readlink")),
                rdev: if ft.is_char_device() || ft.is_block_device() { m.rdev() } else { 0 },
                xattrs,
                links: Vec::new(),
            },
        );
        if ft.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p).expect("readdir").map(|e| e.expect("entry").path()).collect();
            names.sort();
            for n in names {
                walk(base, &n, out, inodes);
            }
        }
    }
    walk(dir, dir, &mut out, &mut inodes);
    // A group is the visible paths sharing an inode: a lone path is no group
    // (overlayfs reports a lower inode's link count even when the other
    // names are whited out above).
    for group in inodes.into_values().filter(|g| g.len() > 1) {
        for p in &group {
            let mut others = group.clone();
            others.sort();
            out.get_mut(p).expect("present").links = others;
        }
    }
    out
}

/// Differences between two trees, as readable lines.
pub fn tree_diff(a: &BTreeMap<PathBuf, Node>, b: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    let mut diffs = Vec::new();
    for (p, na) in a {
        match b.get(p) {
            None => diffs.push(format!("only in ours: {}", p.display())),
            Some(nb) if na != nb => diffs.push(format!("{}: ours {na:?} vs theirs {nb:?}", p.display())),
            _ => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("only in theirs: {}", p.display()));
    }
    diffs
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
