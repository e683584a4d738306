//! Disk hygiene for a store: what its images, containers, volumes,
//! unpacked layers and build cache take (`system df`), and removing what
//! nothing uses (`system prune`, `image prune`, `rmi` of an image a
//! container still uses).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use cargohold_image_core::{BlobStore, Digest, GcReport, Store};

use crate::build::BuildError;
use crate::exec::{Container, ContainerStatus};
use crate::run::{containers, remove_container, volumes, volumes_in_use};

/// One line of `system df`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// How many there are.
    pub total: usize,
    /// How many are in use (images and layers a container uses, running
    /// containers, volumes a container mounts).
    pub active: usize,
    /// Bytes on disk.
    pub size: u64,
    /// Bytes a prune would free (`system prune -a --volumes`).
    pub reclaimable: u64,
}

/// `system df`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// Stored images (their blobs, each counted once).
    pub images: Usage,
    /// Containers (their upper directories and logs).
    pub containers: Usage,
    /// Volumes.
    pub volumes: Usage,
    /// Unpacked layers (what runs and builds mount).
    pub layers: Usage,
    /// Build cache entries (the layer blobs they name count with images).
    pub build_cache: Usage,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BuildError + 'a {
    move |source| BuildError::Io { action, path: path.to_path_buf(), source }
}

/// Bytes a tree takes on disk (allocated blocks, each inode once), never
/// following a symlink. A path that vanishes meanwhile counts nothing.
fn disk_size(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !seen.insert((meta.dev(), meta.ino())) {
        return 0;
    }
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for e in entries.flatten() {
            total += disk_size(&e.path(), seen);
        }
    }
    total
}

fn size_of(path: &Path) -> u64 {
    disk_size(path, &mut HashSet::new())
}

/// The blobs an image needs: its manifest (or index and the manifests of
/// its platforms), configs and layers.
fn image_blobs(store: &Store, desc: &cargohold_image_core::Descriptor) -> HashSet<Digest> {
    let mut out = HashSet::from([desc.digest.clone()]);
    if let Ok(d) = store.details(desc, None) {
        out.insert(d.image.config.digest.clone());
        out.extend(d.image.layers.iter().map(|l| l.digest.clone()));
        out.insert(d.manifest.digest.clone());
    }
    out
}

/// Every blob of the store with its size.
fn blobs(store: &Store) -> Result<HashMap<Digest, u64>, BuildError> {
    let mut out = HashMap::new();
    let dir = store.layout().root().join("blobs");
    for alg in std::fs::read_dir(&dir).map_err(io("list", &dir))?.flatten() {
        let Ok(entries) = std::fs::read_dir(alg.path()) else { continue };
        for e in entries.flatten() {
            let name = format!("{}:{}", alg.file_name().to_string_lossy(), e.file_name().to_string_lossy());
            if let (Ok(d), Ok(m)) = (Digest::parse(&name), e.metadata()) {
                out.insert(d, m.len());
            }
        }
    }
    Ok(out)
}

/// What the containers of the store hold on to: image manifest digests
/// and layer directories.
struct InUse {
    images: HashSet<String>,
    layer_dirs: HashSet<PathBuf>,
}

fn in_use(all: &[Container]) -> InUse {
    let mut images = HashSet::new();
    let mut layer_dirs = HashSet::new();
    for c in all {
        images.insert(c.config.image_digest.clone());
        if let crate::exec::RootFs::Overlay { lower, .. } = &c.config.spec.root {
            layer_dirs.extend(lower.iter().cloned());
        }
    }
    InUse { images, layer_dirs }
}

/// The unpacked layer directories of the store's layer cache.
fn layer_dirs(store: &Store) -> Vec<(PathBuf, Option<Digest>)> {
    let root = crate::build::state_dir(store).join("layers");
    let mut out = Vec::new();
    for base in [root.clone(), root.join("one-id")] {
        let Ok(algs) = std::fs::read_dir(&base) else { continue };
        for alg in algs.flatten() {
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            if alg_name == "staging" || alg_name == "one-id" || !alg.path().is_dir() {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(alg.path()) else { continue };
            for e in entries.flatten() {
                let digest = Digest::parse(&format!("{alg_name}:{}", e.file_name().to_string_lossy())).ok();
                out.push((e.path(), digest));
            }
        }
    }
    out
}

/// The diff IDs of every stored image's layers (the host's platform of an
/// index).
fn stored_diff_ids(store: &Store) -> Result<HashSet<Digest>, BuildError> {
    let mut out = HashSet::new();
    for img in store.list()? {
        if let Ok(d) = store.details(&img.descriptor, None) {
            out.extend(d.config.rootfs.diff_ids.iter().cloned());
        }
    }
    Ok(out)
}

fn volume_err(source: crate::exec::ExecError) -> BuildError {
    BuildError::Run { image: "volumes".into(), source }
}

/// `system df`: sizes on disk and what a full prune would free.
pub fn disk_usage(store: &Store) -> Result<DiskUsage, BuildError> {
    let all = containers(store).list()?;
    let used = in_use(&all);
    let mut usage = DiskUsage::default();

    // Images: blobs counted once; reclaimable unless an image a container
    // uses needs them.
    let sizes = blobs(store)?;
    let images = store.list()?;
    let mut kept: HashSet<Digest> = HashSet::new();
    let mut distinct: HashSet<Digest> = HashSet::new();
    for img in &images {
        if !distinct.insert(img.descriptor.digest.clone()) {
            continue;
        }
        usage.images.total += 1;
        if used.images.contains(&img.descriptor.digest.to_string()) {
            usage.images.active += 1;
            kept.extend(image_blobs(store, &img.descriptor));
        }
    }
    usage.images.size = sizes.values().sum();
    usage.images.reclaimable = sizes.iter().filter(|(d, _)| !kept.contains(*d)).map(|(_, s)| s).sum();

    for c in &all {
        let size = size_of(&c.dir);
        usage.containers.total += 1;
        usage.containers.size += size;
        if c.state()?.status == ContainerStatus::Running {
            usage.containers.active += 1;
        } else {
            usage.containers.reclaimable += size;
        }
    }

    let mounted = volumes_in_use(store)?;
    for v in volumes(store).list().map_err(volume_err)? {
        let size = size_of(&v.mountpoint);
        usage.volumes.total += 1;
        usage.volumes.size += size;
        if mounted.contains(&v.name) {
            usage.volumes.active += 1;
        } else {
            usage.volumes.reclaimable += size;
        }
    }

    // Unpacked layers: shared by images and containers, so one walk with
    // one set of seen inodes; reclaimable unless a container mounts them.
    let mut seen = HashSet::new();
    for (dir, _) in layer_dirs(store) {
        let size = disk_size(&dir, &mut seen);
        usage.layers.total += 1;
        usage.layers.size += size;
        if used.layer_dirs.contains(&dir) {
            usage.layers.active += 1;
        } else {
            usage.layers.reclaimable += size;
        }
    }

    let cache = crate::build::build_cache(store).dir;
    if let Ok(entries) = std::fs::read_dir(&cache) {
        for e in entries.flatten() {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            usage.build_cache.total += 1;
            usage.build_cache.size += size;
            usage.build_cache.reclaimable += size;
        }
    }
    Ok(usage)
}

/// What to prune.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Stopped containers.
    pub containers: bool,
    /// Images: dangling ones (no name) no container uses.
    pub images: bool,
    /// With `images`: every image no container uses, named or not (`-a`).
    pub all_images: bool,
    /// Anonymous volumes no container mounts.
    pub volumes: bool,
    /// With `volumes`: named ones too (`volume prune -a`).
    pub all_volumes: bool,
    /// Unpacked layers of no stored image and no container, and build
    /// cache entries whose layer is gone (every entry with `all_images`).
    pub caches: bool,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    /// Container IDs.
    pub containers: Vec<String>,
    /// Image names untagged, and `sha256:...` of unnamed images removed.
    pub images: Vec<String>,
    /// Volume names.
    pub volumes: Vec<String>,
    /// Unpacked layers removed.
    pub layers: usize,
    /// Build cache entries removed.
    pub build_cache: usize,
    /// `RUN --mount=type=cache` directories removed.
    pub cache_mounts: usize,
    /// Blobs deleted.
    pub blobs: usize,
    /// Bytes freed in all.
    pub bytes_freed: u64,
}

/// `system prune`, `image prune`, `container prune`: removes what
/// `opts` names and nothing uses, then (pruning images or caches) every
/// blob no image needs.
pub fn prune(store: &Store, opts: &PruneOptions) -> Result<PruneReport, BuildError> {
    let mut report = PruneReport::default();
    if opts.containers {
        for c in containers(store).list()? {
            if c.state()?.status != ContainerStatus::Running {
                report.bytes_freed += size_of(&c.dir);
                remove_container(store, &c, true, false)?;
                report.containers.push(c.config.id.clone());
            }
        }
    }
    let remaining = containers(store).list()?;
    let used = in_use(&remaining);
    if opts.volumes {
        let mounted = volumes_in_use(store)?;
        let vs = volumes(store);
        let unused = |v: &crate::exec::Volume| !mounted.contains(&v.name) && (v.anonymous || opts.all_volumes);
        for v in vs.list().map_err(volume_err)?.into_iter().filter(unused) {
            report.bytes_freed += size_of(&v.mountpoint);
            vs.remove(&v.name, &mounted).map_err(|source| BuildError::Run { image: v.name.clone(), source })?;
            report.volumes.push(v.name);
        }
    }
    if opts.images {
        for img in store.list()? {
            let dangling = img.name.is_none();
            if (dangling || opts.all_images) && !used.images.contains(&img.descriptor.digest.to_string()) {
                let name = img.name.as_ref().map_or_else(|| img.descriptor.digest.to_string(), |n| n.canonical());
                // Another prune may have taken it meanwhile.
                match store.untag(&name) {
                    Ok(_) => report.images.push(name),
                    Err(cargohold_image_core::Error::ImageNotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    if opts.images || opts.caches {
        let gc: GcReport = store.prune(false)?;
        report.blobs = gc.blobs_removed.len();
        report.bytes_freed += gc.bytes_freed;
    }
    if opts.caches {
        let keep = stored_diff_ids(store)?;
        for (dir, digest) in layer_dirs(store) {
            let of_an_image = digest.as_ref().is_some_and(|d| keep.contains(d));
            if of_an_image || used.layer_dirs.contains(&dir) {
                continue;
            }
            let size = size_of(&dir);
            remove_tree(&dir)?;
            report.layers += 1;
            report.bytes_freed += size;
        }
        let cache = crate::build::build_cache(store);
        if let Ok(entries) = std::fs::read_dir(&cache.dir) {
            for e in entries.flatten() {
                let stale = match Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())) {
                    Ok(key) => match cache.get(&key) {
                        Some(Some(layer)) => {
                            store.layout().blob_size(&layer.descriptor.digest).ok().flatten().is_none()
                        }
                        Some(None) => false,
                        None => true,
                    },
                    Err(_) => true,
                };
                if stale || opts.all_images {
                    report.bytes_freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                    std::fs::remove_file(e.path()).map_err(io("remove", &e.path()))?;
                    report.build_cache += 1;
                }
            }
        }
        // `RUN --mount=type=cache` directories go too (as BuildKit's prune).
        let mounts = crate::build::state_dir(store).join("cache-mounts");
        if let Ok(entries) = std::fs::read_dir(&mounts) {
            for e in entries.flatten() {
                let p = e.path();
                report.bytes_freed += crate::hygiene::dir_size(&p);
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p).map_err(io("remove", &p))?;
                } else {
                    std::fs::remove_file(&p).map_err(io("remove", &p))?;
                }
                report.cache_mounts += 1;
            }
        }
    }
    Ok(report)
}

/// Bytes of the files below `p`.
fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&d) else { continue };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else {
            total += m.len();
        }
    }
    total
}

/// Removes an unpacked layer: renamed aside first, so a reader never sees
/// it half gone, then deleted (directories the image made unwritable are
/// made writable on the way, as only we see them now).
fn remove_tree(dir: &Path) -> Result<(), BuildError> {
    let Some(parent) = dir.parent() else { return Ok(()) };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let aside = parent.join(format!(".removing-{name}"));
    std::fs::rename(dir, &aside).map_err(io("move aside", dir))?;
    fn writable(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::symlink_metadata(p)
            && meta.is_dir()
        {
            if meta.permissions().mode() & 0o700 != 0o700 {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700));
            }
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    writable(&e.path());
                }
            }
        }
    }
    if std::fs::remove_dir_all(&aside).is_err() {
        writable(&aside);
        std::fs::remove_dir_all(&aside).map_err(io("remove", &aside))?;
    }
    Ok(())
}

/// `rmi [-f] NAME`: removes a name. An image a container uses keeps the
/// container working: its last name is removed only with `force`, and
/// the image then stays in the store unnamed (dangling) until the
/// container is gone, as Docker does; a running container's image cannot
/// lose its last name even then.
pub fn remove_image(store: &Store, name: &str, force: bool) -> Result<Vec<String>, BuildError> {
    let img = store.resolve(name)?;
    let digest = img.descriptor.digest.clone();
    let names = store.list()?.into_iter().filter(|i| i.descriptor.digest == digest).count();
    let last = names <= 1 || img.name.is_none();
    let users: Vec<Container> =
        containers(store).list()?.into_iter().filter(|c| c.config.image_digest == digest.to_string()).collect();
    if last && let Some(c) = users.first() {
        let running = users.iter().find(|c| c.state().is_ok_and(|s| s.status == ContainerStatus::Running));
        let conflict = |message: String| BuildError::Conflict { what: name.to_owned(), message };
        if let Some(r) = running {
            return Err(conflict(format!(
                "image {digest} is in use by the running container {} ({}): stop and remove it first (cannot be forced)",
                &r.config.id[..12],
                r.config.name
            )));
        }
        if !force {
            return Err(conflict(format!(
                "image {digest} is in use by the container {} ({}): remove it first, or -f to remove the name anyway",
                &c.config.id[..12],
                c.config.name
            )));
        }
        return Ok(store.untag_keeping_image(name)?);
    }
    Ok(store.untag(name)?)
}
