//! Containers as records, without a daemon: each one a directory (its run
//! spec in `config.json`, its state in `state.json`, its output in
//! `log.json`, its upper directory), and while it runs, a monitor process of
//! its own (as conmon is for podman) that started it, keeps its output and
//! records how it ended. A dead monitor is seen as such, never reported as a
//! running container.

mod copy;
mod logs;
mod monitor;
mod names;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ExecError, RunSpec};

pub use copy::CopyReport;
pub(crate) use copy::copy_children;
pub use logs::{LogLine, LogOptions};

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// No container has this ID, ID prefix or name.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An ID prefix matches several containers.
    #[error("container ID prefix {prefix} is ambiguous ({count} containers match)")]
    Ambiguous {
        /// The prefix.
        prefix: String,
        /// How many match.
        count: usize,
    },
    /// The name is taken.
    #[error("the container name {name:?} is already in use by container {id}")]
    NameInUse {
        /// The name.
        name: String,
        /// The container that has it.
        id: String,
    },
    /// A name Docker would not accept.
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    BadName(String),
    /// The operation needs a stopped container.
    #[error("container {id} is running: stop it first, or force the removal (-f)")]
    Running {
        /// The container.
        id: String,
    },
    /// The operation needs a running container.
    #[error("container {id} is not running")]
    NotRunning {
        /// The container.
        id: String,
    },
    /// A file of the container could not be read or written.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `cp` failed on a path (`CONTAINER:/path` for the container's side).
    #[error("could not copy {path}")]
    Copy {
        /// The path, on its side.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A record is not what this version writes.
    #[error("container record {} is corrupt: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Running it failed.
    #[error("container {id}")]
    Exec {
        /// The container.
        id: String,
        /// Why.
        #[source]
        source: ExecError,
    },
}

impl ContainerError {
    /// Whether the container does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ContainerError::NotFound(_))
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ContainerError + use<> {
    let path = path.to_path_buf();
    move |source| ContainerError::Io { action, path, source }
}

/// What a container is: fixed when it is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// 64 hexadecimal digits.
    pub id: String,
    /// Its name (given, or generated as Docker does).
    pub name: String,
    /// The image as named, and its manifest digest.
    pub image: String,
    /// The image's manifest digest.
    pub image_digest: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// What runs (its root is the container's upper directory over the
    /// image's layers).
    pub spec: RunSpec,
    /// The signal `stop` sends first (default SIGTERM).
    pub stop_signal: i32,
    /// Seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: u64,
    /// Removed when it exits (`--rm`).
    pub auto_remove: bool,
    /// `crun`, `runc`, or `None` for the built-in executor.
    pub runtime: Option<String>,
    /// When its monitor starts it again (`--restart`).
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The volumes it mounts, and which of them are anonymous (`rm -v`
    /// removes those).
    #[serde(default)]
    pub volumes: Vec<(String, bool)>,
    /// Its standard input stays open (`-d -i`): a pipe nobody writes to,
    /// rather than `/dev/null`.
    #[serde(default)]
    pub interactive: bool,
    /// Where its volumes live, for removing its anonymous ones with it
    /// under `--rm`.
    #[serde(default)]
    pub volumes_dir: Option<PathBuf>,
}

/// Docker's restart policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// After a non-zero exit, at most this many times (`None`: always).
    OnFailure(Option<u32>),
    /// After every exit, unless stopped with `stop` or `kill`.
    Always,
    /// As `Always` (there is no daemon restart to tell them apart).
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.split_once(':') {
            None if s == "no" => RestartPolicy::No,
            None if s == "always" => RestartPolicy::Always,
            None if s == "unless-stopped" => RestartPolicy::UnlessStopped,
            None if s == "on-failure" => RestartPolicy::OnFailure(None),
            Some(("on-failure", n)) => RestartPolicy::OnFailure(Some(
                n.parse().map_err(|_| format!("--restart {s}: the retry count must be a number"))?,
            )),
            _ => return Err(format!("--restart {s}: no, on-failure[:N], always or unless-stopped")),
        })
    }
}

impl RestartPolicy {
    /// Whether a container that exited with `code` after `restarts`
    /// restarts is started again.
    pub fn again(&self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    Created,
    /// Its monitor runs it.
    Running,
    /// It ended (see the exit code).
    Exited,
    /// Its monitor died while it ran: how it ended is unknown.
    Dead,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Dead => "dead",
        })
    }
}

/// What a container is doing, as its monitor records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The status.
    pub status: Status,
    /// The monitor's process ID and its start time (clock ticks since boot,
    /// to tell it from a later process with the same ID).
    pub monitor: Option<(i32, u64)>,
    /// The container's first process, as the host sees it.
    pub pid: Option<i32>,
    /// Exit code (128 + N for signal N).
    pub exit_code: Option<i32>,
    /// When it started (RFC 3339).
    pub started: Option<String>,
    /// When it ended (RFC 3339).
    pub finished: Option<String>,
    /// Why it could not start, if it could not.
    pub error: Option<String>,
    /// How often its monitor started it again.
    #[serde(default)]
    pub restarts: u32,
}

impl State {
    fn created() -> Self {
        State {
            status: Status::Created,
            monitor: None,
            pid: None,
            exit_code: None,
            started: None,
            finished: None,
            error: None,
            restarts: 0,
        }
    }
}

/// The containers of a store: one directory each under `dir`.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
}

/// One container.
#[derive(Debug, Clone)]
pub struct Container {
    /// Its directory.
    pub dir: PathBuf,
    /// What it is.
    pub config: ContainerConfig,
}

/// A new container's ID: 32 random bytes in hex.
fn new_id() -> Result<String, ContainerError> {
    let mut bytes = [0u8; 32];
    let path = Path::new("/dev/urandom");
    std::io::Read::read_exact(&mut std::fs::File::open(path).map_err(io("open", path))?, &mut bytes)
        .map_err(io("read", path))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Writes `value` as JSON to `path` atomically (temp file, fsync, rename).
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ContainerError> {
    let dir = path.parent().expect("records live in a directory");
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io("create a file in", dir))?;
    serde_json::to_writer_pretty(&mut tmp, value).map_err(|e| io("write", path)(e.into()))?;
    tmp.as_file().sync_all().map_err(io("fsync", path))?;
    tmp.persist(path).map_err(|e| io("rename into", path)(e.error))?;
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ContainerError> {
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| ContainerError::Corrupt { path: path.into(), message: e.to_string() })
}

impl Containers {
    /// The containers under `dir` (made when the first container is).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Containers { dir: dir.into() }
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<Container>, ContainerError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("list", &self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", &self.dir))?;
            let dir = entry.path();
            let config = dir.join("config.json");
            // A directory without a config is one being made (or removed).
            if !config.exists() {
                continue;
            }
            out.push(Container { config: read_json(&config)?, dir });
        }
        out.sort_by(|a, b| a.config.created.cmp(&b.config.created));
        Ok(out)
    }

    /// The container with this ID, unique ID prefix or name.
    pub fn find(&self, what: &str) -> Result<Container, ContainerError> {
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.config.id == what || c.config.name == what) {
            return Ok(c.clone());
        }
        let hex = !what.is_empty() && what.chars().all(|c| c.is_ascii_hexdigit());
        let matching: Vec<&Container> = all.iter().filter(|c| hex && c.config.id.starts_with(what)).collect();
        match matching.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ContainerError::NotFound(what.into())),
            many => Err(ContainerError::Ambiguous { prefix: what.into(), count: many.len() }),
        }
    }

    /// Makes a container named `name` (or a generated name): its directory
    /// with `upper` and `work`, then `make` gives its spec for those, and
    /// the record is written last, so a failure leaves nothing behind.
    pub fn create(
        &self,
        name: Option<&str>,
        make: impl FnOnce(&Path) -> Result<ContainerConfig, ContainerError>,
    ) -> Result<Container, ContainerError> {
        let taken: Vec<(String, String)> = self.list()?.into_iter().map(|c| (c.config.name, c.config.id)).collect();
        let name = match name {
            Some(n) if !valid_name(n) => return Err(ContainerError::BadName(n.into())),
            Some(n) => match taken.iter().find(|(t, _)| t == n) {
                Some((_, id)) => return Err(ContainerError::NameInUse { name: n.into(), id: id.clone() }),
                None => n.to_owned(),
            },
            None => names::generate(|n| taken.iter().any(|(t, _)| t == n)),
        };
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let id = new_id()?;
        let dir = self.dir.join(&id);
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        let made = (|| {
            for sub in ["upper", "work"] {
                std::fs::create_dir(dir.join(sub)).map_err(io("create", &dir.join(sub)))?;
            }
            let mut config = make(&dir)?;
            config.id = id.clone();
            config.name = name.clone();
            write_json(&dir.join("state.json"), &State::created())?;
            write_json(&dir.join("config.json"), &config)?;
            Ok(Container { dir: dir.clone(), config })
        })();
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        made
    }
}

/// Clock ticks since boot at which process `pid` started, if it runs.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Parses a signal as `kill -s` and `--stop-signal` take it: a number,
/// a name with or without `SIG` (any case), or `RTMIN+N`/`RTMAX-N`.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let bad = || format!("unknown signal {s:?}");
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=max).contains(&n) { Ok(n) } else { Err(bad()) };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset = |rest: &str| -> Result<i32, String> {
        if rest.is_empty() { Ok(0) } else { rest.parse::<i32>().map_err(|_| bad()) }
    };
    let rt = if let Some(rest) = name.strip_prefix("RTMIN") {
        Some(min + offset(rest.strip_prefix('+').unwrap_or(rest))?)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        Some(max - offset(rest.strip_prefix('-').unwrap_or(rest))?)
    } else {
        None
    };
    if let Some(n) = rt {
        return if (min..=max).contains(&n) { Ok(n) } else { Err(bad()) };
    }
    format!("SIG{name}").parse::<nix::sys::signal::Signal>().map(|s| s as i32).map_err(|_| bad())
}

impl Container {
    /// Its ID.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Its state; `Running` only while its monitor is alive (a killed
    /// monitor makes it `Dead`).
    pub fn state(&self) -> Result<State, ContainerError> {
        let mut state: State = read_json(&self.dir.join("state.json"))?;
        if state.status == Status::Running {
            let alive = state.monitor.is_some_and(|(pid, started)| start_time(pid) == Some(started));
            if !alive {
                state.status = Status::Dead;
            }
        }
        Ok(state)
    }

    /// Marks the container as stopped by its user: its restart policy does
    /// not start it again (`stop`, `kill`, `rm -f`).
    pub fn mark_stopped(&self) -> Result<(), ContainerError> {
        let path = self.dir.join("stopped");
        std::fs::write(&path, b"").map_err(io("write", &path))
    }

    /// Whether [`Container::mark_stopped`] was called since it last started.
    pub fn stopped_by_user(&self) -> bool {
        self.dir.join("stopped").exists()
    }

    /// Sends `signal` to the container's first process.
    pub fn signal(&self, signal: i32) -> Result<(), ContainerError> {
        let state = self.state()?;
        let pid = match (state.status, state.pid) {
            (Status::Running, Some(pid)) => pid,
            _ => return Err(ContainerError::NotRunning { id: self.config.id.clone() }),
        };
        if !(1..=libc::SIGRTMAX()).contains(&signal) {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no signal {signal}"));
            return Err(io("send a signal to", &self.dir)(e));
        }
        match crate::ns::send_signal(pid, signal) {
            Ok(()) => Ok(()),
            // It ended just now; its monitor is recording that.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                Err(ContainerError::NotRunning { id: self.config.id.clone() })
            }
            Err(e) => Err(io("send a signal to", &self.dir)(e)),
        }
    }

    /// Runs `process` in the running container, confined as its first
    /// process is (`exec`); compiled seccomp filters are kept in
    /// `cache_dir` when given. Returns its exit code.
    pub fn exec(
        &self,
        process: &crate::ExecProcess,
        io: crate::ProcessIo,
        cache_dir: Option<&Path>,
    ) -> Result<i32, ContainerError> {
        let state = self.state()?;
        let pid = match (state.status, state.pid) {
            (Status::Running, Some(pid)) => pid,
            _ => return Err(ContainerError::NotRunning { id: self.config.id.clone() }),
        };
        let programs = crate::seccomp::ProgramCache::new(cache_dir.map(Path::to_path_buf));
        crate::ns::exec_in(pid, &self.config.spec, process, io, &programs)
            .map_err(|source| ContainerError::Exec { id: self.config.id.clone(), source })
    }

    /// The container's root as this host sees it while it runs
    /// (`/proc/PID/root`), to look users up in.
    pub fn root_path(&self) -> Result<PathBuf, ContainerError> {
        match self.state()? {
            State { status: Status::Running, pid: Some(pid), .. } => Ok(PathBuf::from(format!("/proc/{pid}/root"))),
            _ => Err(ContainerError::NotRunning { id: self.config.id.clone() }),
        }
    }

    /// Waits until it is no longer running; its state then.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> Result<State, ContainerError> {
        let start = std::time::Instant::now();
        loop {
            let state = self.state()?;
            if state.status != Status::Running {
                return Ok(state);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Ok(state);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `stop`: the stop signal, then SIGKILL after `timeout` (the
    /// container's own when `None`).
    pub fn stop(&self, timeout: Option<u64>) -> Result<State, ContainerError> {
        if self.state()?.status != Status::Running {
            return self.state();
        }
        self.mark_stopped()?;
        match self.signal(self.config.stop_signal) {
            // Between two runs of its restart policy: the mark ends it.
            Ok(()) | Err(ContainerError::NotRunning { .. }) => {}
            Err(e) => return Err(e),
        }
        let wait = std::time::Duration::from_secs(timeout.unwrap_or(self.config.stop_timeout));
        let state = self.wait(Some(wait))?;
        if state.status == Status::Running {
            match self.signal(libc::SIGKILL) {
                Ok(()) | Err(ContainerError::NotRunning { .. }) => {}
                Err(e) => return Err(e),
            }
            return self.wait(None);
        }
        Ok(state)
    }

    /// Removes the container and its files; a running one only with
    /// `force` (it is killed first).
    pub fn remove(&self, force: bool) -> Result<(), ContainerError> {
        if self.state()?.status == Status::Running {
            if !force {
                return Err(ContainerError::Running { id: self.config.id.clone() });
            }
            self.mark_stopped()?;
            match self.signal(libc::SIGKILL) {
                Ok(()) | Err(ContainerError::NotRunning { .. }) => {}
                Err(e) => return Err(e),
            }
            self.wait(None)?;
        }
        remove_dir(&self.dir)
    }
}

/// Removes a container's directory: the record first, so that a removal cut
/// short leaves no half container that lists.
pub(crate) fn remove_dir(dir: &Path) -> Result<(), ContainerError> {
    match std::fs::remove_file(dir.join("config.json")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove", &dir.join("config.json"))(e)),
    }
    std::fs::remove_dir_all(dir).map_err(io("remove", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert_eq!("on-failure:3".parse::<RestartPolicy>(), Ok(RestartPolicy::OnFailure(Some(3))));
        assert!("sometimes".parse::<RestartPolicy>().unwrap_err().contains("--restart sometimes"));
        assert!(RestartPolicy::OnFailure(Some(2)).again(1, 1) && !RestartPolicy::OnFailure(Some(2)).again(1, 2));
        assert!(!RestartPolicy::OnFailure(None).again(0, 0) && RestartPolicy::Always.again(0, 9));
        assert!(!RestartPolicy::No.again(1, 0));
    }

    #[test]
    fn names_and_prefixes() {
        assert!(valid_name("web_1.a-b") && !valid_name("-x") && !valid_name("a/b") && !valid_name(""));
        let t = tempfile::tempdir().unwrap();
        let cs = Containers::new(t.path().join("containers"));
        let spec: RunSpec = serde_json::from_value(serde_json::json!({
            "root": {"dir": "/"}, "argv": ["true"], "env": [], "cwd": "/", "user": {"uid": 0, "gid": 0, "groups": []},
            "hostname": "h", "network": "none", "binds": [], "limits": {"memory": null, "cpus": null}, "tty": false,
            "security": {"cap_add": [], "cap_drop": [], "privileged": false, "seccomp": "default", "no_new_privileges": false},
            "init": null
        }))
        .unwrap();
        let config = |_: &Path| {
            Ok(ContainerConfig {
                id: String::new(),
                name: String::new(),
                image: "bb:1".into(),
                image_digest: "sha256:00".into(),
                created: "2026-01-01T00:00:00Z".into(),
                spec: spec.clone(),
                stop_signal: libc::SIGTERM,
                stop_timeout: 10,
                auto_remove: false,
                runtime: None,
                restart: RestartPolicy::No,
                volumes: Vec::new(),
                interactive: false,
                volumes_dir: None,
            })
        };
        let a = cs.create(Some("web"), config).unwrap();
        let b = cs.create(None, config).unwrap();
        assert_eq!(a.state().unwrap().status, Status::Created);
        assert!(b.config.name.contains('_'), "{}", b.config.name);
        assert_eq!(cs.find("web").unwrap().id(), a.id());
        assert_eq!(cs.find(&a.id()[..12]).unwrap().id(), a.id());
        assert!(matches!(cs.create(Some("web"), config), Err(ContainerError::NameInUse { .. })));
        assert!(matches!(cs.create(Some("a b"), config), Err(ContainerError::BadName(_))));
        assert!(cs.find("nope").unwrap_err().is_not_found());
        a.remove(false).unwrap();
        assert_eq!(cs.list().unwrap().len(), 1);
        let failed = cs.create(Some("x"), |_| Err(ContainerError::NotFound("image".into())));
        assert!(failed.is_err());
        assert_eq!(std::fs::read_dir(t.path().join("containers")).unwrap().count(), 1, "nothing half-made");
    }
}
