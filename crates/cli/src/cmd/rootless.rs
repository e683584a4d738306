//! Rootless `build`, `stage` and `run`: the process moves into a user
//! namespace of its own (and a mount namespace owned by it) where the
//! caller's user and group are root, before any thread starts. Containers,
//! overlay mounts and layer extraction then work as for root, with the
//! differences the user namespace brings: one mapped ID (so only root runs
//! in containers, and other owners are kept in `user.rootlesscontainers`
//! xattrs), overlay metadata in `user.overlay.*` xattrs, host device nodes
//! bind-mounted, and no cgroup limits.

use anyhow::{Context, Result};

/// Unshares the user and mount namespaces and maps the caller to root.
pub fn enter() -> Result<()> {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS)
        .context("unshare (are unprivileged user namespaces allowed on this host?)")?;
    std::fs::write("/proc/self/setgroups", "deny").context("/proc/self/setgroups")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).context("/proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).context("/proc/self/gid_map")?;
    Ok(())
}
