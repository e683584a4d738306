//! The monitor: the process that runs one container (as conmon does for
//! podman), outliving the command that started it. It records the start,
//! the container's first process, every line of output with its time, and
//! the exit; then, with `--rm`, removes the container.

use std::io::{BufRead, Read, Write};
use std::sync::Mutex;

use super::{Container, ContainerError, State, Status, io, remove_dir, start_time, write_json};
use crate::{Executor, ProcessIo, RunSpec};

/// Lines longer than this are split, as Docker's json-file driver does.
const MAX_LINE: usize = 16 * 1024;

/// Now as RFC 3339 with nanoseconds, UTC.
pub(crate) fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The host PID of this process' first descendant in another pid
/// namespace: the container's first process. pasta, which this process
/// also starts and which sandboxes itself in namespaces of its own, is
/// passed over.
fn container_pid() -> Option<i32> {
    let ours = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let mut queue = vec![std::process::id() as i32];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
                if comm.starts_with("pasta") || comm.starts_with("passt") {
                    continue;
                }
                match std::fs::read_link(format!("/proc/{child}/ns/pid")) {
                    Ok(ns) if ns != ours => return Some(child),
                    _ => queue.push(child),
                }
            }
        }
    }
    None
}

/// Once started, a monitor only waits: what starting needed is given back
/// a moment later (when this thread and the executor have settled), by a
/// thread that then sleeps for good, so that no thread's exit touches
/// memory afterwards. Once per monitor process.
fn settle_memory() {
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let _ = std::thread::Builder::new().stack_size(64 << 10).spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        crate::ns::release_startup_memory();
        loop {
            std::thread::park();
        }
    });
}

fn file(pipe: std::io::PipeReader) -> std::fs::File {
    std::fs::File::from(std::os::fd::OwnedFd::from(pipe))
}

impl Container {
    /// Runs the container in this process, its monitor, until it exits and
    /// its restart policy does not start it again, and returns its exit
    /// code. Call it in a process of its own (the CLI starts one per
    /// container, detached from its terminal).
    pub fn run_monitored(&self, executor: &dyn Executor) -> Result<i32, ContainerError> {
        let me = std::process::id() as i32;
        let state_path = self.dir.join("state.json");
        let _ = std::fs::remove_file(self.dir.join("stopped"));
        let state = Mutex::new(State {
            status: Status::Running,
            monitor: start_time(me).map(|t| (me, t)),
            pid: None,
            exit_code: None,
            started: Some(now_rfc3339()),
            finished: None,
            error: None,
            restarts: 0,
        });
        let log_path = self.dir.join("log.json");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io("open", &log_path))?;
        let log = Mutex::new(std::io::BufWriter::with_capacity(64 << 10, log));
        let mut restarts = 0u32;
        let (code, result) = loop {
            {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                st.status = Status::Running;
                st.started = Some(now_rfc3339());
                st.restarts = restarts;
                write_json(&state_path, &*st)?;
            }
            let result = self.run_once(executor, &state, &state_path, &log);
            let code = match &result {
                Ok(code) => *code,
                Err(_) => 125,
            };
            let again = result.is_ok() && self.config.restart.again(code, restarts) && !self.stopped_by_user();
            if !again {
                break (code, result);
            }
            restarts += 1;
            {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                st.exit_code = Some(code);
                st.pid = None;
                write_json(&state_path, &*st)?;
            }
            // Docker's back-off: 100 ms, doubled each time, at most 10 s;
            // a stop meanwhile ends it.
            let delay = std::time::Duration::from_millis((100u64 << restarts.min(7)).min(10_000));
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until && !self.stopped_by_user() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if self.stopped_by_user() {
                break (code, result);
            }
        };
        let _ = log.lock().unwrap_or_else(|e| e.into_inner()).flush();
        let mut st = state.into_inner().unwrap_or_else(|e| e.into_inner());
        st.status = Status::Exited;
        st.finished = Some(now_rfc3339());
        st.pid = None;
        if let Err(e) = &result {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            st.error = Some(text);
        }
        st.exit_code = Some(code);
        write_json(&state_path, &st)?;
        if self.config.auto_remove {
            remove_dir(&self.dir)?;
            // Its anonymous volumes go with it, as with Docker's --rm.
            if let Some(dir) = &self.config.volumes_dir {
                let volumes = crate::Volumes::new(dir);
                for (name, _) in self.config.volumes.iter().filter(|(_, anonymous)| *anonymous) {
                    let _ = volumes.remove(name, &[]);
                }
            }
        }
        result.map_err(|source| ContainerError::Exec { id: self.config.id.clone(), source })
    }

    /// One run: output into `log`, the first process' PID into `state`.
    fn run_once(
        &self,
        executor: &dyn Executor,
        state: &Mutex<State>,
        state_path: &std::path::Path,
        log: &Mutex<std::io::BufWriter<std::fs::File>>,
    ) -> Result<i32, crate::ExecError> {
        let pipe = |e| crate::ExecError::Io { action: "create a pipe for", path: self.dir.clone(), source: e };
        // The write end of an open standard input (`-i`), held until the
        // container ends.
        let mut _input = None;
        let (streams, readers): (ProcessIo, Vec<(std::fs::File, &str)>) = if self.config.spec.tty {
            // `-t`: a terminal of its own, whose output is the log.
            let (master, slave) = crate::terminal::open_pty().map_err(pipe)?;
            let size = rustix::termios::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
            let _ = rustix::termios::tcsetwinsize(&master, size);
            let dup = |fd: &std::os::fd::OwnedFd| fd.try_clone().map_err(pipe);
            let streams = ProcessIo { stdin: dup(&slave)?.into(), stdout: dup(&slave)?.into(), stderr: slave.into() };
            (streams, vec![(std::fs::File::from(master), "stdout")])
        } else {
            let (out_r, out_w) = std::io::pipe().map_err(pipe)?;
            let (err_r, err_w) = std::io::pipe().map_err(pipe)?;
            let stdin = if self.config.interactive {
                let (in_r, in_w) = std::io::pipe().map_err(pipe)?;
                _input = Some(in_w);
                in_r.into()
            } else {
                std::process::Stdio::null()
            };
            let streams = ProcessIo { stdin, stdout: out_w.into(), stderr: err_w.into() };
            (streams, vec![(file(out_r), "stdout"), (file(err_r), "stderr")])
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for (reader, stream) in readers {
                s.spawn(move || {
                    let mut r = std::io::BufReader::with_capacity(64 << 10, reader);
                    let mut buf = Vec::new();
                    loop {
                        buf.clear();
                        let n = (&mut r).take(MAX_LINE as u64).read_until(b'\n', &mut buf).unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        let line = super::LogLine {
                            log: String::from_utf8_lossy(&buf).into_owned(),
                            stream: stream.into(),
                            time: now_rfc3339(),
                        };
                        let mut w = log.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = serde_json::to_writer(&mut *w, &line);
                        let _ = w.write_all(b"\n");
                        // Readers (`logs -f`) see each line as it comes
                        // when the container is quiet.
                        if r.buffer().is_empty() {
                            let _ = w.flush();
                        }
                    }
                });
            }
            // The container's first process, for stop and kill.
            s.spawn(|| {
                let started = std::time::Instant::now();
                while !done.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed().as_secs() < 30 {
                    if let Some(pid) = container_pid() {
                        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                        st.pid = Some(pid);
                        let _ = write_json(state_path, &*st);
                        drop(st);
                        settle_memory();
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            });
            // pasta's files live in the container's directory: removing a
            // container whose monitor was killed stops its pasta too.
            let spec = RunSpec { state_dir: Some(self.dir.clone()), ..self.config.spec.clone() };
            let result = executor.run(&spec, streams);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }
}
