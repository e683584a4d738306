//! A container's output: `log.json`, one JSON object per line as Docker's
//! json-file driver writes it (`{"log":"...\n","stream":"stdout","time":"..."}`),
//! read back whole, from the tail, since a time, or followed while the
//! container runs.

use std::io::{BufRead, Seek};

use serde::{Deserialize, Serialize};

use super::{Container, ContainerError, Status, io};

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The line, with its newline (the last one of a stream may lack it).
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the monitor read it (RFC 3339, nanoseconds).
    pub time: String,
}

/// What `logs` shows.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep reading while the container runs (`-f`).
    pub follow: bool,
    /// Only the last N lines (`--tail`).
    pub tail: Option<usize>,
    /// Only lines at or after this time (RFC 3339; `--since`).
    pub since: Option<String>,
}

impl Container {
    /// Passes each line of the log, as `opts` selects, to `each`; with
    /// `follow`, until the container is no longer running.
    pub fn logs(&self, opts: &LogOptions, mut each: impl FnMut(&LogLine)) -> Result<(), ContainerError> {
        let path = self.dir.join("log.json");
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !opts.follow => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Not started yet: wait for the file.
                loop {
                    if let Ok(f) = std::fs::File::open(&path) {
                        break f;
                    }
                    if self.state()?.status != Status::Running && self.state()?.status != Status::Created {
                        return Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            Err(e) => return Err(io("open", &path)(e)),
        };
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let wanted = |l: &LogLine| opts.since.as_ref().is_none_or(|s| l.time.as_str() >= s.as_str());
        let parse = |line: &str| -> Result<LogLine, ContainerError> {
            serde_json::from_str(line)
                .map_err(|e| ContainerError::Corrupt { path: path.clone(), message: format!("log line: {e}") })
        };
        let mut line = String::new();
        if let Some(n) = opts.tail {
            let mut last: std::collections::VecDeque<LogLine> = std::collections::VecDeque::with_capacity(n + 1);
            while reader.read_line(&mut line).map_err(io("read", &path))? > 0 {
                if line.ends_with('\n') {
                    let l = parse(&line)?;
                    if wanted(&l) {
                        last.push_back(l);
                        if last.len() > n {
                            last.pop_front();
                        }
                    }
                    line.clear();
                }
            }
            last.iter().for_each(&mut each);
        }
        loop {
            let n = reader.read_line(&mut line).map_err(io("read", &path))?;
            if n > 0 && line.ends_with('\n') {
                let l = parse(&line)?;
                if wanted(&l) {
                    each(&l);
                }
                line.clear();
                continue;
            }
            // At the end (or in the middle of a line the monitor is writing).
            if !opts.follow {
                return Ok(());
            }
            let running = self.state()?.status == Status::Running;
            if !running {
                // Whatever the monitor wrote before it recorded the exit.
                let pos = reader.stream_position().map_err(io("read", &path))?;
                let len = std::fs::metadata(&path).map_err(io("read", &path))?.len();
                if pos >= len {
                    return Ok(());
                }
                continue;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
