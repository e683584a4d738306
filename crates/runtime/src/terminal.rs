//! A terminal for a container (`run -t`): a new pseudo-terminal whose
//! other end becomes the container's standard streams and controlling
//! terminal, relayed to and from this process' own streams. When this
//! process' standard input is a terminal, it is put in raw mode for the
//! run (the container's terminal does the line editing) and restored after;
//! the container's terminal starts with the caller's window size.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize};

use crate::ProcessIo;

/// Restores the caller's terminal settings on drop.
struct Raw {
    saved: Option<Termios>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, t);
        }
    }
}

/// A new pseudo-terminal: its master and its other end.
pub(crate) fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok((master, slave))
}

/// Runs `f` with a new terminal as the container's streams (pass the
/// [`RunSpec`](super::RunSpec) `tty: true`), relaying this process' stdin
/// to it and its output to this process' stdout.
pub fn with_terminal<R>(f: impl FnOnce(ProcessIo) -> R) -> std::io::Result<R> {
    let (master, slave) = open_pty()?;
    let stdin = std::io::stdin();
    if let Ok(size) = tcgetwinsize(std::io::stdout()).or_else(|_| tcgetwinsize(&stdin)) {
        let _ = tcsetwinsize(&master, size);
    }
    let raw = Raw {
        saved: tcgetattr(&stdin).ok().inspect(|t| {
            let mut r = t.clone();
            r.make_raw();
            let _ = tcsetattr(&stdin, OptionalActions::Now, &r);
        }),
    };
    let mut to_container = std::fs::File::from(master.try_clone()?);
    // Input: until our stdin ends (the thread is left behind if the
    // container ends first; it holds only a descriptor).
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut input = std::io::stdin().lock();
        while let Ok(n) = input.read(&mut buf) {
            if n == 0 || to_container.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut from_container = std::fs::File::from(master);
    let output = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut out = std::io::stdout();
        // Ends with EIO once every copy of the other end is closed.
        while let Ok(n) = from_container.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    let io = ProcessIo {
        stdin: slave.as_fd().try_clone_to_owned()?.into(),
        stdout: slave.as_fd().try_clone_to_owned()?.into(),
        stderr: slave.as_fd().try_clone_to_owned()?.into(),
    };
    drop(slave);
    let result = f(io);
    let _ = output.join();
    drop(raw);
    Ok(result)
}
