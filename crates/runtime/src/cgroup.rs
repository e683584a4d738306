//! Memory and CPU limits for a container: a cgroup of its own, made next
//! to the caller's, in the unified (v2) hierarchy when it has the
//! controller, else in the controller's v1 hierarchy (hybrid hosts). The
//! container's first process joins it before it creates anything else, so
//! every process of the container is limited. Without a usable controller
//! the run fails and says so; limits are never dropped silently.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::ExecError;

/// Resource limits of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap included where the kernel can tell).
    pub memory: Option<u64>,
    /// CPU time as a number of CPUs (`1.5`: 150 ms of CPU every 100 ms).
    pub cpus: Option<f64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none()
    }
}

/// Parses a size such as `512m`, `1g`, `1.5G`, `65536` or `64MiB` into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 512m, 2g)"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (b, k, m, g, t)")),
    };
    let bytes = n * mult as f64;
    if !(1.0..1.8e19).contains(&bytes) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// The cgroups made for one run, removed on drop (with any cgroup made
/// below them, as systemd does), each as its parent directory and name.
#[derive(Debug, Default)]
pub(crate) struct Cgroups {
    dirs: Vec<(OwnedFd, String)>,
}

fn open_dir(path: &Path) -> Result<OwnedFd, ExecError> {
    use rustix::fs::{Mode, OFlags, open};
    open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| ExecError::Io {
        action: "open the cgroup",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Removes the cgroup `name` of `parent` and every cgroup below it,
/// deepest first; processes still leaving get a moment.
fn remove_cgroup(parent: &OwnedFd, name: &str) {
    use rustix::fs::{AtFlags, Mode, OFlags, openat, unlinkat};
    if let Ok(dir) = openat(parent, name, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        && let Ok(entries) = rustix::fs::Dir::read_from(&dir)
    {
        let children: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type() == rustix::fs::FileType::Directory)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        for child in children {
            remove_cgroup(&dir, &child);
        }
    }
    for _ in 0..100 {
        match unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Err(rustix::io::Errno::BUSY) => std::thread::sleep(std::time::Duration::from_millis(10)),
            _ => break,
        }
    }
}

/// A mounted hierarchy: its mount point and the caller's cgroup in it.
struct Hierarchy {
    own: PathBuf,
}

fn mountinfo() -> Vec<(String, String, String, String)> {
    // (mount root, mount point, fs type, super options)
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some((f.get(3)?.to_string(), f.get(4)?.to_string(), r.first()?.to_string(), r.get(2)?.to_string()))
        })
        .collect()
}

/// The caller's cgroup in the hierarchy with `controller` (`None`: v2).
fn hierarchy(controller: Option<&str>) -> Option<Hierarchy> {
    let own_cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own_cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_owned())
    })?;
    let mount = mountinfo().into_iter().find(|(_, _, fs, opts)| match controller {
        None => fs == "cgroup2",
        Some(c) => fs == "cgroup" && opts.split(',').any(|o| o == c),
    })?;
    let (root, point) = (mount.0, mount.1);
    let rel = path.strip_prefix(root.as_str()).unwrap_or(&path).trim_start_matches('/');
    Some(Hierarchy { own: Path::new(&point).join(rel) })
}

fn v2_has(h: &Hierarchy, controller: &str) -> bool {
    std::fs::read_to_string(h.own.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|x| x == controller))
}

fn write(path: &Path, value: &str) -> Result<(), ExecError> {
    std::fs::write(path, value).map_err(|e| ExecError::Io { action: "write", path: path.to_path_buf(), source: e })
}

impl Cgroups {
    /// Makes the cgroups for `limits` (none when there are none), and
    /// with `devices` a v1 devices cgroup holding the spec's device rules
    /// (for crun, which cannot apply them itself on hybrid hosts).
    pub(crate) fn create(limits: &Limits, devices: bool, systemd: bool) -> Result<Cgroups, ExecError> {
        let mut made = Cgroups::default();
        if devices {
            made.devices()?;
        }
        if systemd {
            made.unified_subtree().map_err(|e| {
                let detail = match e {
                    ExecError::Io { action, path, source } => {
                        format!("could not {action} {}: {source}", path.display())
                    }
                    other => other.to_string(),
                };
                ExecError::Invalid(format!(
                    "systemd mode needs a cgroup v2 subtree of its own, which this process cannot make ({detail}); \
                     rootless systemd containers need a delegated cgroup v2 hierarchy"
                ))
            })?;
        }
        if limits.is_empty() {
            return Ok(made);
        }
        let name = crate::exec::unique_name();
        let v2 = hierarchy(None);
        let mut wanted: Vec<Setting> = Vec::new();
        if let Some(bytes) = limits.memory {
            wanted.push(Setting::Memory(bytes));
        }
        if let Some(cpus) = limits.cpus {
            if !(cpus > 0.0 && cpus <= 1024.0) {
                return Err(ExecError::Invalid(format!("--cpus {cpus}: must be more than 0")));
            }
            wanted.push(Setting::Cpu(((cpus * 100_000.0) as u64).max(1000)));
        }
        for setting in wanted {
            let controller = setting.controller();
            let (dir, unified) = match &v2 {
                Some(h) if v2_has(h, controller) => {
                    // Offer the controller to our new child (best effort:
                    // setting the limit says whether it worked).
                    let _ = std::fs::write(h.own.join("cgroup.subtree_control"), format!("+{controller}"));
                    (h.own.join(&name), true)
                }
                _ => match hierarchy(Some(controller)) {
                    Some(h) => (h.own.join(&name), false),
                    None => {
                        return Err(ExecError::Invalid(format!(
                            "this host has no usable cgroup {controller} controller (neither in cgroup v2 nor v1), \
                             so the {controller} limit cannot be applied"
                        )));
                    }
                },
            };
            if !dir.is_dir() {
                std::fs::create_dir(&dir).map_err(|e| ExecError::Io {
                    action: "create the cgroup",
                    path: dir.clone(),
                    source: e,
                })?;
                made.record(&dir)?;
            }
            setting.apply(&dir, unified).map_err(|e| match e {
                ExecError::Io { path, source, .. } => ExecError::Io {
                    action: "set a limit in (is the controller enabled for this cgroup?)",
                    path,
                    source,
                },
                other => other,
            })?;
        }
        Ok(made)
    }
}

/// One limit.
enum Setting {
    /// Bytes.
    Memory(u64),
    /// Microseconds of CPU per 100 ms.
    Cpu(u64),
}

impl Setting {
    fn controller(&self) -> &'static str {
        match self {
            Setting::Memory(_) => "memory",
            Setting::Cpu(_) => "cpu",
        }
    }

    fn apply(&self, dir: &Path, unified: bool) -> Result<(), ExecError> {
        match (self, unified) {
            (Setting::Memory(bytes), true) => {
                write(&dir.join("memory.max"), &bytes.to_string())?;
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                Ok(())
            }
            (Setting::Memory(bytes), false) => {
                write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                Ok(())
            }
            (Setting::Cpu(quota), true) => write(&dir.join("cpu.max"), &format!("{quota} 100000")),
            (Setting::Cpu(quota), false) => {
                write(&dir.join("cpu.cfs_period_us"), "100000")?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())
            }
        }
    }
}

/// Whether this host has the cgroup v1 devices controller mounted.
pub(crate) fn has_v1_devices() -> bool {
    hierarchy(Some("devices")).is_some()
}

impl Cgroups {
    /// A devices cgroup (v1) with Docker's rules: every process of the
    /// container may make any node but open only the standard ones.
    fn devices(&mut self) -> Result<(), ExecError> {
        let h = hierarchy(Some("devices")).ok_or_else(|| {
            ExecError::Invalid("this host has no cgroup v1 devices controller to hold the device rules".into())
        })?;
        let dir = h.own.join(crate::exec::unique_name());
        std::fs::create_dir(&dir).map_err(|e| ExecError::Io {
            action: "create the cgroup",
            path: dir.clone(),
            source: e,
        })?;
        self.record(&dir)?;
        for rule in crate::spec::device_rules(false)? {
            let kind = match rule.typ() {
                Some(oci_spec::runtime::LinuxDeviceType::B) => "b",
                Some(oci_spec::runtime::LinuxDeviceType::C) => "c",
                _ => "a",
            };
            let num = |n: Option<i64>| n.map_or("*".to_owned(), |n| n.to_string());
            let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
            let line = if kind == "a" {
                "a".to_owned()
            } else {
                format!("{kind} {}:{} {access}", num(rule.major()), num(rule.minor()))
            };
            let file = if rule.allow() { "devices.allow" } else { "devices.deny" };
            write(&dir.join(file), &line)?;
        }
        Ok(())
    }

    /// Records the cgroup just made at `dir`, to be removed on drop.
    fn record(&mut self, dir: &Path) -> Result<(), ExecError> {
        let parent = dir.parent().unwrap_or(Path::new("/"));
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.dirs.push((open_dir(parent)?, name));
        Ok(())
    }

    /// A cgroup of our own in the unified (v2) hierarchy for a systemd
    /// container, which mounts it writable as its `/sys/fs/cgroup` (through
    /// its cgroup namespace) and makes its own cgroups below. On a hybrid
    /// host without cgroup2 mounted, the hierarchy is mounted in a private
    /// mount namespace just to make it; the cgroup is then reached
    /// through descriptors only.
    fn unified_subtree(&mut self) -> Result<(), ExecError> {
        let name = crate::exec::unique_name();
        if let Some(h) = hierarchy(None) {
            let dir = h.own.join(&name);
            std::fs::create_dir(&dir).map_err(|e| ExecError::Io {
                action: "create the cgroup",
                path: dir.clone(),
                source: e,
            })?;
            return self.record(&dir);
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::").map(str::to_owned)))
            .ok_or_else(|| ExecError::Invalid("this kernel has no cgroup v2 hierarchy".into()))?;
        let point = tempfile::Builder::new().prefix("cargohold-cgroup2-").tempdir().map_err(|e| ExecError::Io {
            action: "create a mount point in",
            path: std::env::temp_dir(),
            source: e,
        })?;
        let target = point.path().to_path_buf();
        let made = name.clone();
        let parent = crate::mounts::in_private_mounts(move || -> Result<OwnedFd, ExecError> {
            rustix::mount::mount("none", &target, "cgroup2", rustix::mount::MountFlags::empty(), None)
                .map_err(|e| ExecError::Io { action: "mount cgroup2 at", path: target.clone(), source: e.into() })?;
            let dir = target.join(own.trim_start_matches('/'));
            let parent = open_dir(&dir)?;
            rustix::fs::mkdirat(&parent, name.as_str(), rustix::fs::Mode::from_raw_mode(0o755))
                .map_err(|e| ExecError::Io { action: "create the cgroup", path: dir.join(&name), source: e.into() })?;
            let _ = rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH);
            Ok(parent)
        })
        .map_err(ExecError::Invalid)??;
        self.dirs.push((parent, made));
        drop(point);
        Ok(())
    }

    /// The `cgroup.procs` file of each cgroup, open for writing: a process
    /// that writes `0` to them joins them (done between fork and exec).
    pub(crate) fn open_procs(&self) -> Result<Vec<OwnedFd>, ExecError> {
        use rustix::fs::{Mode, OFlags, openat};
        self.dirs
            .iter()
            .map(|(parent, name)| {
                openat(parent, format!("{name}/cgroup.procs"), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).map_err(
                    |e| ExecError::Io { action: "open", path: Path::new(name).join("cgroup.procs"), source: e.into() },
                )
            })
            .collect()
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for (parent, name) in &self.dirs {
            remove_cgroup(parent, name);
        }
    }
}

/// The `cgroup.procs` files (open for writing) of the cgroups the process
/// `pid` is in and this one is not, in every mounted hierarchy: what a
/// process `exec` adds joins, so that the container's limits hold for it
/// too. A hierarchy not mounted here (cgroup2 on a hybrid host) is passed
/// over: nothing there can be joined, and no limit of ours lives there.
pub(crate) fn procs_of(pid: i32) -> Result<Vec<OwnedFd>, ExecError> {
    let read = |p: String| {
        std::fs::read_to_string(&p).map_err(|e| ExecError::Io { action: "read", path: p.into(), source: e })
    };
    let theirs = read(format!("/proc/{pid}/cgroup"))?;
    let ours = read("/proc/self/cgroup".into())?;
    let mounts = mountinfo();
    let mut out = Vec::new();
    for line in theirs.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if ours.lines().any(|l| l == line) {
            continue;
        }
        let wanted: Vec<&str> = ctrls.split(',').filter(|c| !c.is_empty()).collect();
        let mount = mounts.iter().find(|(_, _, fs, opts)| {
            if wanted.is_empty() {
                fs == "cgroup2"
            } else {
                fs == "cgroup" && wanted.iter().all(|c| opts.split(',').any(|o| o == *c))
            }
        });
        let Some((root, point, _, _)) = mount else { continue };
        let rel = path.strip_prefix(root.as_str()).unwrap_or(path).trim_start_matches('/');
        let procs = Path::new(point).join(rel).join("cgroup.procs");
        let fd = std::fs::OpenOptions::new().write(true).open(&procs).map_err(|e| ExecError::Io {
            action: "open the container's cgroup",
            path: procs.clone(),
            source: e,
        })?;
        out.push(OwnedFd::from(fd));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert!(parse_size("12x").unwrap_err().contains("unknown unit"));
        assert!(parse_size("m").is_err());
        assert!(parse_size("0").is_err());
    }
}
