//! Mounts made on a thread of their own in a private mount namespace (a
//! build's COPY/ADD roots, a runtime's bundle, namespaces bound to files for
//! pasta, crun and runc), so nothing stays mounted on the host.

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

/// Binds the namespace (or any file) open as `fd` onto `file`, made empty
/// first, in the calling thread's mount namespace: how a namespace is
/// given by path to a program that cannot open another process' `/proc`
/// entries (pasta) or wants a path (crun, runc).
pub(crate) fn bind_fd(fd: std::os::fd::BorrowedFd<'_>, file: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    std::fs::write(file, b"")?;
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::mount::mount(Some(source.as_str()), file, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)?;
    Ok(())
}
