//! What a container may do: its capabilities, its seccomp filter and
//! `no_new_privs`, with Docker's and podman's defaults and their options
//! (`--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`).

use std::path::PathBuf;

use crate::ExecError;

/// Every capability the kernel knows (`capabilities(7)`), by number.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's (and podman's, containers.conf) default capabilities: what a
/// container's root keeps unless told otherwise.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
    "CAP_AUDIT_WRITE",
];

/// The seccomp filter of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    /// podman's default profile: containers-common's
    /// `/usr/share/containers/seccomp.json` when it is installed, else the
    /// built-in profile with the same rules (see [`crate::seccomp`]).
    #[default]
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile file in Docker's format (`--security-opt seccomp=FILE`).
    Profile(PathBuf),
}

/// The confinement of a container. The default is podman's: Docker's 14
/// capabilities, the default seccomp profile, masked and read-only kernel
/// paths, the default devices only.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Security {
    /// Capabilities added to the default set (`CAP_` optional, any case;
    /// `ALL` for every one).
    pub cap_add: Vec<String>,
    /// Capabilities removed from it (`ALL` for every one); applied after
    /// `cap_add` unless `cap_add` names the capability, as Docker does.
    pub cap_drop: Vec<String>,
    /// Every capability, no seccomp filter, no masked or read-only paths,
    /// `/sys` writable, every host device: the explicit opt-out of
    /// `--privileged`.
    pub privileged: bool,
    /// The seccomp filter.
    pub seccomp: Seccomp,
    /// Set `no_new_privs`: setuid binaries and file capabilities grant
    /// nothing (`--security-opt no-new-privileges`).
    pub no_new_privileges: bool,
}

impl Security {
    /// Parses one `--security-opt` value (`seccomp=unconfined|FILE`,
    /// `no-new-privileges[=true|false]`) into `self`.
    pub fn apply_opt(&mut self, opt: &str) -> Result<(), ExecError> {
        let bad =
            |message: &str| ExecError::Option { option: format!("--security-opt {opt}"), message: message.into() };
        let (key, value) = opt.split_once(['=', ':']).map_or((opt, None), |(k, v)| (k, Some(v)));
        match (key, value) {
            ("seccomp", Some("unconfined")) => self.seccomp = Seccomp::Unconfined,
            ("seccomp", Some(file)) if !file.is_empty() => self.seccomp = Seccomp::Profile(file.into()),
            ("no-new-privileges", None | Some("true")) => self.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => self.no_new_privileges = false,
            ("label" | "apparmor", _) => {
                return Err(bad("SELinux labels and AppArmor profiles are not supported (this host uses neither)"));
            }
            _ => return Err(bad("unknown option (seccomp=unconfined|FILE, no-new-privileges)")),
        }
        Ok(())
    }

    /// The capability set of the container's processes, by name, sorted by
    /// number.
    pub fn capabilities(&self) -> Result<Vec<&'static str>, ExecError> {
        if self.privileged {
            return Ok(ALL_CAPABILITIES.to_vec());
        }
        let add = names(&self.cap_add, "--cap-add")?;
        let drop = names(&self.cap_drop, "--cap-drop")?;
        let set: Vec<&'static str> = ALL_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| (DEFAULT_CAPABILITIES.contains(c) && !drop.contains(c)) || add.contains(c))
            .collect();
        Ok(set)
    }

    /// The capability set as a bit mask (bit N: capability number N).
    pub fn capability_mask(&self) -> Result<u64, ExecError> {
        Ok(self.capabilities()?.iter().fold(0, |m, c| m | 1 << capability_number(c).expect("a known name")))
    }
}

/// The number of the capability `name` (`CAP_CHOWN` is 0).
pub fn capability_number(name: &str) -> Option<u32> {
    ALL_CAPABILITIES.iter().position(|c| *c == name).map(|n| n as u32)
}

/// Normalizes capability names (`net_admin`, `CAP_NET_ADMIN`, `ALL`).
fn names(list: &[String], option: &str) -> Result<Vec<&'static str>, ExecError> {
    let mut out = Vec::new();
    for raw in list.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
        let upper = raw.to_ascii_uppercase();
        if upper == "ALL" {
            out.extend_from_slice(ALL_CAPABILITIES);
            continue;
        }
        let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
        match ALL_CAPABILITIES.iter().find(|c| **c == full) {
            Some(c) => out.push(*c),
            None => {
                return Err(ExecError::Option {
                    option: format!("{option} {raw}"),
                    message: "unknown capability (see capabilities(7); e.g. NET_ADMIN, SYS_PTRACE, ALL)".into(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_and_options() {
        let s = Security::default();
        assert_eq!(s.capabilities().unwrap().len(), 14);
        let s = Security { cap_add: vec!["net_admin".into()], cap_drop: vec!["CAP_CHOWN,mknod".into()], ..s };
        let caps = s.capabilities().unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN") && !caps.contains(&"CAP_CHOWN") && !caps.contains(&"CAP_MKNOD"));
        assert_eq!(caps.len(), 13);
        let s = Security { cap_drop: vec!["all".into()], cap_add: vec!["kill".into()], ..Security::default() };
        assert_eq!(s.capabilities().unwrap(), vec!["CAP_KILL"]);
        let s = Security { privileged: true, ..Security::default() };
        assert_eq!(s.capabilities().unwrap().len(), ALL_CAPABILITIES.len());
        assert_eq!(Security::default().capability_mask().unwrap() & (1 << 21), 0, "no CAP_SYS_ADMIN");
    }

    #[test]
    fn bad_names_are_named() {
        let s = Security { cap_add: vec!["NET_ADMN".into()], ..Security::default() };
        let e = s.capabilities().unwrap_err().to_string();
        assert!(e.contains("--cap-add NET_ADMN") && e.contains("unknown capability"), "{e}");
        let mut s = Security::default();
        assert!(s.apply_opt("seccomp=unconfined").is_ok());
        assert_eq!(s.seccomp, Seccomp::Unconfined);
        assert!(s.apply_opt("no-new-privileges").is_ok() && s.no_new_privileges);
        let e = s.apply_opt("seccom=x").unwrap_err().to_string();
        assert!(e.contains("--security-opt seccom=x"), "{e}");
    }
}
