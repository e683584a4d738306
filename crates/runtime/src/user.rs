//! `USER name[:group]` resolved against the image's `/etc/passwd` and
//! `/etc/group`, as Docker does: names must exist, numbers need not.

use std::io::Read;
use std::path::{Path, PathBuf};

use cargohold_layerfs::Root;
use rustix::fs::OFlags;

use crate::ExecError;

/// Numeric identity of a container process.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserIds {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary group IDs.
    pub groups: Vec<u32>,
}

/// One `name:x:id:...` line's fields.
struct Entry {
    name: String,
    id: u32,
    gid: u32,
    members: Vec<String>,
}

fn parse(text: &str, group: bool) -> Vec<Entry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let id = f.get(2)?.parse().ok()?;
            Some(if group {
                let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).map(String::from).collect());
                Entry { name: f[0].to_owned(), id, gid: id, members: members.unwrap_or_default() }
            } else {
                Entry { name: f[0].to_owned(), id, gid: f.get(3)?.parse().ok()?, members: Vec::new() }
            })
        })
        .collect()
}

/// Reads `rel` from the topmost of `roots` (base first) that has it; empty
/// when none does. Paths resolve inside each root, so an image's symlinks
/// cannot point the lookup at host files.
fn read_top(roots: &[PathBuf], rel: &str) -> String {
    for r in roots.iter().rev() {
        let Ok(root) = Root::open(r) else { continue };
        let Ok(fd) = root.open_in(Path::new(rel), OFlags::RDONLY) else { continue };
        let mut text = String::new();
        let mut f = std::fs::File::from(fd);
        if f.metadata().is_ok_and(|m| m.is_file()) && f.by_ref().take(4 << 20).read_to_string(&mut text).is_ok() {
            return text;
        }
    }
    String::new()
}

/// Resolves `spec` (`""`, `user`, `uid`, `user:group`, `uid:gid`) in the root
/// made of `roots` (layer directories, base first, or one directory).
pub fn lookup_user(roots: &[PathBuf], spec: &str) -> Result<UserIds, ExecError> {
    let spec = if spec.is_empty() { "0" } else { spec };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = parse(&read_top(roots, "etc/passwd"), false);
    let groups = parse(&read_top(roots, "etc/group"), true);
    let (uid, mut gid, name) = match user.parse::<u32>() {
        Ok(uid) => match passwd.iter().find(|e| e.id == uid) {
            Some(e) => (uid, e.gid, Some(e.name.clone())),
            None => (uid, 0, None),
        },
        Err(_) => match passwd.iter().find(|e| e.name == user) {
            Some(e) => (e.id, e.gid, Some(e.name.clone())),
            None => {
                return Err(ExecError::Invalid(format!(
                    "unable to find user {user}: no matching entries in the image's /etc/passwd"
                )));
            }
        },
    };
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups.iter().find(|e| e.name == g).map(|e| e.id).ok_or_else(|| {
                ExecError::Invalid(format!("unable to find group {g}: no matching entries in the image's /etc/group"))
            })?,
        };
    }
    let mut extra: Vec<u32> = match (&name, group) {
        (Some(n), None) => groups.iter().filter(|e| e.members.iter().any(|m| m == n)).map(|e| e.id).collect(),
        _ => Vec::new(),
    };
    extra.retain(|g| *g != gid);
    extra.sort_unstable();
    extra.dedup();
    Ok(UserIds { uid, gid, groups: extra })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n")
            .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nwww:x:33:\nstaff:x:50:web,other\n").unwrap();
        let roots = [dir.path().to_path_buf()];
        assert_eq!(lookup_user(&roots, "").unwrap(), UserIds { uid: 0, gid: 0, groups: vec![] });
        assert_eq!(lookup_user(&roots, "web").unwrap(), UserIds { uid: 33, gid: 33, groups: vec![50] });
        assert_eq!(lookup_user(&roots, "33:staff").unwrap(), UserIds { uid: 33, gid: 50, groups: vec![] });
        assert_eq!(lookup_user(&roots, "1234").unwrap(), UserIds { uid: 1234, gid: 0, groups: vec![] });
        let e = lookup_user(&roots, "nobody").unwrap_err().to_string();
        assert!(e.contains("unable to find user nobody"), "{e}");
        assert!(lookup_user(&roots, "web:nogroup").unwrap_err().to_string().contains("group nogroup"));
    }
}
