//! Rootless containers (`build`, `stage` and `run` as an unprivileged user): the process moves into a user
//! namespace of its own (and a mount namespace owned by it) where the
//! caller's user and group are root, before any thread starts. Containers,
//! overlay mounts and layer extraction then work as for root.
//!
//! With subordinate IDs (`/etc/subuid` and `/etc/subgid` entries for the
//! user, and `newuidmap`/`newgidmap` from the uidmap package) IDs 1-65536
//! of the namespace map to them, so images keep real owners and containers
//! may run as any user, as with rootless Podman. Without, only root is
//! mapped: other owners are kept in `user.rootlesscontainers` xattrs and
//! containers run as root only. Either way: overlay metadata lives in
//! `user.overlay.*` xattrs, host device nodes are bind-mounted, and there
//! are no cgroup limits.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::ExecError;

fn failed(step: &str) -> impl FnOnce(std::io::Error) -> ExecError + '_ {
    move |source| ExecError::Setup { step: format!("rootless: {step}"), source }
}

/// The first subordinate ID range of `name` (or of the numeric `id`) in
/// `file` (`/etc/subuid` format: `name:start:count`).
fn subids(file: &str, name: Option<&str>, id: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if Some(who) != name && who != id.to_string() {
            return None;
        }
        let (start, count): (u64, u64) = (start.parse().ok()?, count.parse().ok()?);
        (count > 0).then_some((start, count.min(65536)))
    })
}

fn on_path(tool: &str) -> bool {
    crate::find_program(tool).is_some()
}

/// Unshares the user and mount namespaces and maps the caller to root
/// (plus the subordinate IDs when the user has them). Call it before the
/// process starts a thread: a multi-threaded process cannot change its
/// user namespace.
pub fn enter() -> Result<(), ExecError> {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
    // Both files name the user (newgidmap checks the user, not the group).
    let ranges = match (subids("/etc/subuid", user.as_deref(), uid), subids("/etc/subgid", user.as_deref(), uid)) {
        (Some(u), Some(g)) if on_path("newuidmap") && on_path("newgidmap") => Some((u, g)),
        _ => None,
    };
    // newuidmap must write our maps from outside the namespace: a helper
    // started now waits for the word, then maps this process.
    let helper = match ranges {
        Some(((us, uc), (gs, gc))) => {
            let pid = std::process::id();
            let script =
                format!("read go && newuidmap {pid} 0 {uid} 1 1 {us} {uc} && newgidmap {pid} 0 {gid} 1 1 {gs} {gc}");
            let child = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(failed("start the newuidmap helper"))?;
            Some(child)
        }
        None => None,
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| failed("unshare (are unprivileged user namespaces allowed on this host?)")(e.into()))?;
    match helper {
        Some(mut child) => {
            let mut stdin = child.stdin.take().expect("piped");
            stdin.write_all(b"go\n").map_err(failed("signal the newuidmap helper"))?;
            drop(stdin);
            let out = child.wait_with_output().map_err(failed("wait for the newuidmap helper"))?;
            if !out.status.success() {
                return Err(ExecError::Invalid(format!(
                    "rootless: newuidmap/newgidmap failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        None => {
            std::fs::write("/proc/self/setgroups", "deny").map_err(failed("write /proc/self/setgroups"))?;
            std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).map_err(failed("write /proc/self/uid_map"))?;
            std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).map_err(failed("write /proc/self/gid_map"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("subuid");
        std::fs::write(&f, "alice:100000:65536\n1001:200000:1000\nbob:x:1\n").unwrap();
        let f = f.to_str().unwrap();
        assert_eq!(subids(f, Some("alice"), 1000), Some((100000, 65536)));
        assert_eq!(subids(f, None, 1001), Some((200000, 1000)));
        assert_eq!(subids(f, Some("bob"), 1002), None);
        assert_eq!(subids("/nonexistent", Some("alice"), 1), None);
    }
}
