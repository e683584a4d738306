//! Damage: a flat's fingerprint (what `convert` checks before it reports an
//! image skipped), and `scrub`, which checks every published layer and flat
//! against its registry's digests and repairs what differs.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use cargohold_image_core::{Digest, Manifest, RawManifest};
use serde::Serialize;

use super::{Publisher, error_chain, move_into_place, read_config, remove_quietly};
use crate::error::{Result, io_err};
use crate::tree::Tree;

/// Where the fingerprint of a config's flat is kept (one per flat: images
/// with one config share it).
pub(super) fn flat_check_file(tree: &Tree, config: &Digest) -> PathBuf {
    tree.root().join(".metadata/.flat-checks").join(config.hex())
}

/// What a flat is: its entries' count, total size, latest modification time
/// and the sum of their inode numbers. Hard links from other flats leave
/// it as it is; writing a file in place, or replacing one, changes it.
/// Directories are read by two threads at once (it is all `statx` calls:
/// the kernel's time), each entry stated relative to its open directory.
pub(super) fn fingerprint(flat: &Path) -> Option<String> {
    use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
    let root = rustix::fs::open(flat, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    #[derive(Default)]
    struct Acc {
        count: u64,
        size: u64,
        latest: (i64, u32),
        inodes: u64,
    }
    /// Directories still to read (relative to the flat), how many are
    /// being read, and whether one could not be.
    struct Queue {
        todo: Vec<PathBuf>,
        reading: usize,
        failed: bool,
    }
    let queue = std::sync::Mutex::new(Queue { todo: vec![PathBuf::from(".")], reading: 0, failed: false });
    let more = std::sync::Condvar::new();
    // Reads directories until none is left (or one fails); what it saw.
    let worker = || -> Acc {
        let mut acc = Acc::default();
        loop {
            let rel = {
                let mut q = queue.lock().expect("not poisoned");
                loop {
                    if q.failed {
                        return acc;
                    }
                    if let Some(d) = q.todo.pop() {
                        q.reading += 1;
                        break d;
                    }
                    if q.reading == 0 {
                        return acc;
                    }
                    q = more.wait(q).expect("not poisoned");
                }
            };
            let read = (|| -> Option<Vec<PathBuf>> {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let dir = rustix::fs::openat(&root, &rel, flags, Mode::empty()).ok()?;
                let want = StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MTIME | StatxFlags::SIZE;
                let mut subdirs = Vec::new();
                let mut entries = rustix::fs::Dir::read_from(&dir).ok()?;
                while let Some(e) = entries.read() {
                    let e = e.ok()?;
                    let name = e.file_name();
                    if name.to_bytes() == b"." || name.to_bytes() == b".." {
                        continue;
                    }
                    let st = rustix::fs::statx(&dir, name, AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC, want)
                        .ok()?;
                    acc.count += 1;
                    acc.inodes = acc.inodes.wrapping_add(st.stx_ino);
                    acc.latest = acc.latest.max((st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec));
                    if rustix::fs::FileType::from_raw_mode(st.stx_mode.into()) == rustix::fs::FileType::Directory {
                        subdirs.push(rel.join(std::ffi::OsStr::from_bytes(name.to_bytes())));
                    } else {
                        acc.size += st.stx_size;
                    }
                }
                Some(subdirs)
            })();
            let mut q = queue.lock().expect("not poisoned");
            q.reading -= 1;
            match read {
                Some(subdirs) => q.todo.extend(subdirs),
                None => q.failed = true,
            }
            more.notify_all();
        }
    };
    let (mine, helper) = std::thread::scope(|s| {
        let helper = s.spawn(worker);
        (worker(), helper.join().expect("fingerprint worker"))
    });
    if queue.into_inner().expect("not poisoned").failed {
        return None;
    }
    let latest = mine.latest.max(helper.latest);
    Some(format!(
        "v1 {} {} {}.{:09} {}",
        mine.count + helper.count,
        mine.size + helper.size,
        latest.0,
        latest.1,
        mine.inodes.wrapping_add(helper.inodes)
    ))
}

/// What `scrub` found (and, with repair, replaced).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrubReport {
    /// Images whose layers and flat are as their digests say.
    pub images_ok: Vec<String>,
    /// Images with a damaged layer or flat.
    pub images_damaged: Vec<String>,
    /// Layers that differed from their blob (`digest: first difference`).
    pub damaged_layers: Vec<String>,
    /// Flats that differed from their layers (`image: first difference`).
    pub damaged_flats: Vec<String>,
    /// Layers and flats compared.
    pub layers_checked: usize,
    /// Flats compared.
    pub flats_checked: usize,
    /// Images that could not be checked (their registry gone, say).
    pub errors: Vec<String>,
    /// Whether what differed was replaced.
    pub repaired: bool,
}

/// The first way the tree at `b` differs from the one at `a` (names, types,
/// modes, owners, sizes, link targets, contents), or `None`.
fn first_difference(a: &Path, b: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::MetadataExt as _;
    let list = |d: &Path| -> Result<Vec<std::ffi::OsString>> {
        let mut v: Vec<_> = match std::fs::read_dir(d) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
            Err(e) => return Err(io_err("read", d)(e)),
        };
        v.sort();
        Ok(v)
    };
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (da, db) = (a.join(&rel), b.join(&rel));
        let (na, nb) = (
            list(&da)?,
            match std::fs::symlink_metadata(&db) {
                Ok(m) if m.is_dir() => list(&db)?,
                _ => return Ok(Some(format!("{} is missing or not a directory", rel.display()))),
            },
        );
        if na != nb {
            let extra: Vec<_> = nb.iter().filter(|n| !na.contains(n)).collect();
            let missing: Vec<_> = na.iter().filter(|n| !nb.contains(n)).collect();
            return Ok(Some(format!("{}: entries differ (missing {missing:?}, extra {extra:?})", rel.display())));
        }
        for n in na {
            let r = rel.join(&n);
            let (pa, pb) = (a.join(&r), b.join(&r));
            let ma = std::fs::symlink_metadata(&pa).map_err(io_err("read", &pa))?;
            let mb = std::fs::symlink_metadata(&pb).map_err(io_err("read", &pb))?;
            let what = |w: &str| Ok(Some(format!("{}: {w} differs", r.display())));
            if ma.file_type() != mb.file_type() {
                return what("the type");
            }
            if ma.mode() != mb.mode() || ma.uid() != mb.uid() || ma.gid() != mb.gid() {
                return what("the mode or owner");
            }
            if ma.is_dir() {
                stack.push(r);
            } else if ma.file_type().is_symlink() {
                if std::fs::read_link(&pa).ok() != std::fs::read_link(&pb).ok() {
                    return what("the link target");
                }
            } else if ma.is_file() {
                if ma.len() != mb.len() {
                    return what("the size");
                }
                // The same inode (a flat's link to its layer) is the same content.
                if (ma.dev(), ma.ino()) != (mb.dev(), mb.ino()) && !same_content(&pa, &pb)? {
                    return what("the content");
                }
            } else if ma.rdev() != mb.rdev() {
                return what("the device");
            }
        }
    }
    Ok(None)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read as _;
    let mut fa = std::fs::File::open(a).map_err(io_err("open", a))?;
    let mut fb = std::fs::File::open(b).map_err(io_err("open", b))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).map_err(io_err("read", a))?;
        if n == 0 {
            return Ok(fb.read(&mut bb).map_err(io_err("read", b))? == 0);
        }
        fb.read_exact(&mut bb[..n]).map_err(io_err("read", b))?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

impl Publisher<'_> {
    /// Checks every published image against its registry's layer digests:
    /// each layer is unpacked afresh from its (verified) blob and compared
    /// with the tree's copy, each flat rebuilt from the layers and compared
    /// with the tree's; with `repair`, what differs is replaced. Images
    /// whose registry no longer has them are reported, not touched.
    pub fn scrub(&self, repair: bool) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        let mut checked_layers: std::collections::HashMap<Digest, bool> = std::collections::HashMap::new();
        for name in self.published()? {
            if self.stopped() {
                break;
            }
            let outcome = (|| -> Result<Option<String>> {
                let meta = self.tree.metadata_dir(&name).join("manifest.json");
                let bytes = std::fs::read(&meta).map_err(io_err("read", &meta))?;
                let m = match RawManifest::new(bytes, None).and_then(|r| r.parse()) {
                    Ok(Manifest::Image(m)) => m,
                    _ => return Ok(Some(format!("{} is not an image manifest", meta.display()))),
                };
                // `registry/repo:tag` (or under .multiarch/<platform>/).
                let plain = match name.strip_prefix(".multiarch/") {
                    Some(rest) => rest.split_once('/').map_or(rest, |(_, r)| r),
                    None => name.as_str(),
                };
                let reference: cargohold_image_core::Reference =
                    plain.parse().map_err(cargohold_image_core::Error::from)?;
                let mut src = self.reg.source(&reference);
                let config = read_config(&mut src, &m)?;
                let mut damaged_layer = false;
                for (l, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
                    if let Some(bad) = checked_layers.get(&l.digest) {
                        damaged_layer |= *bad;
                        continue;
                    }
                    let (dir, _) = self.stage_layer(&reference, &name, l, diff_id, false)?;
                    let target = self.tree.layer_dir(&l.digest);
                    let diff = first_difference(&dir.join("layerfs"), &target.join("layerfs"))?;
                    if let Some(why) = &diff {
                        report.damaged_layers.push(format!("{}: {why}", l.digest));
                        if repair {
                            // The origin records stay with the new copy.
                            let origin = target.join(".metadata/origin.json");
                            if let Ok(b) = std::fs::read(&origin) {
                                self.tree.dir().write_file(&dir.join(".metadata/origin.json"), &b)?;
                            }
                            let _lock = self.tree.lock(self.opts.lock_timeout, &*self.waiting)?;
                            move_into_place(&self.tree, &dir, &target)?;
                        } else {
                            remove_quietly(&dir);
                        }
                    } else {
                        remove_quietly(&dir);
                    }
                    report.layers_checked += 1;
                    damaged_layer |= diff.is_some();
                    checked_layers.insert(l.digest.clone(), diff.is_some());
                }
                if self.opts.skip_flat {
                    return Ok(damaged_layer.then(|| "a layer was damaged".to_owned()));
                }
                let flat = self.tree.flat_dir(&m.config.digest);
                let (dir, _, _) = self.stage_flat(&name, &m, &config, &[])?;
                let diff = first_difference(&dir, &flat)?;
                report.flats_checked += 1;
                if let Some(why) = &diff {
                    report.damaged_flats.push(format!("{name}: {why}"));
                    if repair {
                        let _lock = self.tree.lock(self.opts.lock_timeout, &*self.waiting)?;
                        move_into_place(&self.tree, &dir, &flat)?;
                        if let Some(f) = fingerprint(&flat) {
                            self.tree.dir().write_file(&flat_check_file(&self.tree, &m.config.digest), f.as_bytes())?;
                        }
                    } else {
                        remove_quietly(&dir);
                    }
                } else {
                    remove_quietly(&dir);
                }
                Ok((damaged_layer || diff.is_some()).then(|| "damaged".to_owned()))
            })();
            match outcome {
                Ok(None) => report.images_ok.push(name),
                Ok(Some(_)) => report.images_damaged.push(name),
                Err(e) => report.errors.push(format!("{name}: {}", error_chain(&e))),
            }
        }
        report.repaired = repair;
        Ok(report)
    }
}
