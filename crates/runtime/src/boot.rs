//! A systemd container booted for a while: systemd starts as pid 1 (in
//! systemd mode, see [`RunSpec::with_systemd`]), commands run in the booted
//! system as `exec` runs them, then systemd halts (`SIGRTMIN+3`) and the
//! container ends. `stage` runs its scripts this way with `systemd = true`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::seccomp::ProgramCache;
use crate::{ExecError, ExecProcess, Executor, ProcessIo, RunSpec};

/// The booted system, for [`with_booted_system`]'s closure.
pub struct Booted<'a> {
    pid: i32,
    spec: &'a RunSpec,
    programs: ProgramCache,
}

impl Booted<'_> {
    /// Runs `process` in the booted system, confined as its pid 1 is;
    /// returns its exit code.
    pub fn exec(&self, process: &ExecProcess, io: ProcessIo) -> Result<i32, ExecError> {
        crate::ns::exec_in(self.pid, self.spec, process, io, &self.programs)
    }

    /// systemd's PID as this host sees it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What `systemctl is-system-running --wait` says once systemd answers
    /// (`running`, `degraded`, ...); `None` while its manager cannot be
    /// reached yet.
    fn system_state(&self) -> Option<String> {
        let (r, w) = std::io::pipe().ok()?;
        let process = ExecProcess {
            argv: ["systemctl", "is-system-running", "--wait"].map(String::from).to_vec(),
            env: vec![crate::DEFAULT_PATH.into()],
            cwd: "/".into(),
            user: crate::UserIds { uid: 0, gid: 0, groups: Vec::new() },
            tty: false,
        };
        let io =
            ProcessIo { stdin: std::process::Stdio::null(), stdout: w.into(), stderr: std::process::Stdio::null() };
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::Read::take(r, 4096), &mut out);
            out
        });
        let _ = self.exec(&process, io);
        let out = reader.join().unwrap_or_default();
        let state = out.trim();
        // `offline`: systemd has not marked the system booted yet.
        (!state.is_empty() && state != "offline" && state != "unknown").then(|| state.to_owned())
    }
}

/// The host PID of the pid 1 of a container whose environment holds
/// `marker` (its `container_uuid=...`).
fn find_pid1(marker: &[u8]) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let nested_init = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|ids| ids.split_whitespace().count() > 1 && ids.split_whitespace().last() == Some("1"));
        if nested_init
            && std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == marker))
        {
            return Some(pid);
        }
    }
    None
}

/// Halts systemd (`pid`, when it was found), SIGKILL after `timeout`,
/// and returns the container's exit code.
fn halt(
    run: std::thread::ScopedJoinHandle<'_, Result<i32, ExecError>>,
    pid: Option<i32>,
    timeout: Duration,
) -> Result<i32, ExecError> {
    if let Some(pid) = pid {
        // Asked again every second: a systemd still starting up may not
        // handle the signal yet.
        let asked = Instant::now();
        let mut last: Option<Instant> = None;
        while !run.is_finished() && asked.elapsed() < timeout {
            if last.is_none_or(|l| l.elapsed() >= Duration::from_secs(1)) {
                let _ = crate::ns::send_signal(pid, libc::SIGRTMIN() + 3);
                last = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !run.is_finished() {
            let _ = crate::ns::send_signal(pid, libc::SIGKILL);
        }
    }
    run.join().unwrap_or_else(|_| Err(ExecError::Invalid("the container's thread panicked".into())))
}

/// Boots `spec` (a systemd-mode spec whose command is systemd) with
/// `executor`, waits up to `boot_timeout` for systemd to finish starting
/// up (`running` or `degraded`), runs `f` with the booted system, then
/// halts it (SIGKILL after `halt_timeout`). Returns what `f` returned and
/// the container's exit code. Compiled seccomp filters of `exec` are kept
/// in `cache_dir` when given.
pub fn with_booted_system<T: Send>(
    executor: &dyn Executor,
    spec: &RunSpec,
    io: ProcessIo,
    cache_dir: Option<&Path>,
    (boot_timeout, halt_timeout): (Duration, Duration),
    f: impl FnOnce(&Booted<'_>) -> T + Send,
) -> Result<(T, i32), ExecError> {
    let marker = spec
        .env
        .iter()
        .find(|e| e.starts_with("container_uuid="))
        .filter(|_| spec.systemd)
        .ok_or_else(|| ExecError::Invalid("booting needs a spec in systemd mode (RunSpec::with_systemd)".into()))?
        .clone();
    let programs = ProgramCache::new(cache_dir.map(Path::to_path_buf));
    std::thread::scope(|s| {
        let run = s.spawn(|| executor.run(spec, io));
        let started = Instant::now();
        let pid = loop {
            if let Some(pid) = find_pid1(marker.as_bytes()) {
                break pid;
            }
            if run.is_finished() || started.elapsed() > boot_timeout {
                let code = halt(run, None, halt_timeout)?;
                return Err(ExecError::Invalid(format!("systemd did not start (the container ended with {code})")));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let booted = Booted { pid, spec, programs };
        let state = loop {
            if let Some(state) = booted.system_state() {
                break state;
            }
            if run.is_finished() || started.elapsed() > boot_timeout {
                let code = halt(run, Some(pid), halt_timeout)?;
                return Err(ExecError::Invalid(format!(
                    "systemd did not come up within {}s (the container ended with {code})",
                    boot_timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if state != "running" && state != "degraded" {
            let code = halt(run, Some(pid), halt_timeout)?;
            return Err(ExecError::Invalid(format!("systemd booted to {state:?} (ended with {code})")));
        }
        let result = f(&booted);
        let code = halt(run, Some(pid), halt_timeout)?;
        Ok((result, code))
    })
}
