//! Mounts for COPY/ADD steps, made on a thread of their own in a private
//! mount namespace.

use std::path::{Path, PathBuf};

use cargohold_layerfs::overlay_options;

/// Runs `f` on a thread with a private mount namespace: what it mounts is
/// gone when it returns, even if this process is killed.
pub fn in_private_mounts<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            use nix::mount::{MsFlags, mount};
            use nix::sched::{CloneFlags, unshare};
            unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
                .map_err(|e| format!("could not create a mount namespace: {e}"))?;
            let none: Option<&str> = None;
            mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
                .map_err(|e| format!("could not make mounts private: {e}"))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err("the copy thread panicked".into()))
    })
}

/// Mounts `lower` (base first) with an optional writable `(upper, work)` at `target`.
pub fn mount_overlay(lower: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> Result<(), String> {
    use nix::mount::{MsFlags, mount};
    let none: Option<&str> = None;
    if upper.is_none() && lower.len() == 1 {
        mount(Some(&lower[0]), target, none, MsFlags::MS_BIND, none)
            .map_err(|e| format!("could not bind-mount {}: {e}", lower[0].display()))?;
        return Ok(());
    }
    let flags = if upper.is_none() { MsFlags::MS_RDONLY } else { MsFlags::empty() };
    let data = overlay_options(lower, upper);
    mount(Some("overlay"), target, Some("overlay"), flags, Some(data.as_str()))
        .map_err(|e| format!("could not mount an overlay at {}: {e}", target.display()))
}
