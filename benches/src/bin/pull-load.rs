//! A load generator for registry pulls that costs the server's CPU, not its
//! own: `pull-load HOST:PORT CLIENTS ACCEPT PATH...`.
//!
//! CLIENTS threads, each with one kept-alive HTTP/1.1 connection, GET every
//! PATH in turn (the manifest, then every blob, as a registry client does)
//! and discard each body in the kernel: `recv(MSG_TRUNC)` on a TCP socket
//! frees what arrived without copying it out. The clients then take little
//! CPU and the server's own cost sets the pace, as with wrk or h2load (which
//! copy into a buffer they throw away). Every response must be a 200 with a
//! `Content-Length`, and its body exactly that long. Prints the bytes
//! received and the seconds it took, from the first connection to the last
//! byte.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on stdout, and says on stderr what went wrong"
)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use rustix::net::{RecvFlags, recv};

/// The most one `recv` discards.
const CHUNK: usize = 4 << 20;
/// The most a response's status line and headers (and the start of its
/// body read with them) may take.
const MAX_HEAD: usize = 64 << 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: pull-load HOST:PORT CLIENTS ACCEPT PATH...");
        std::process::exit(2);
    }
    let (addr, accept, paths) = (args[0].clone(), args[2].clone(), args[3..].to_vec());
    let clients: usize = args[1].parse().unwrap_or_else(|_| {
        eprintln!("pull-load: CLIENTS: {:?} is not a number", args[1]);
        std::process::exit(2)
    });
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, accept, paths) = (addr.clone(), accept.clone(), paths.clone());
            std::thread::spawn(move || pull(&addr, &accept, &paths))
        })
        .collect();
    let mut total = 0u64;
    let mut failed = false;
    for (i, w) in workers.into_iter().enumerate() {
        match w.join().expect("a client panicked") {
            Ok(n) => total += n,
            Err(e) => {
                eprintln!("pull-load: client {i}: {e}");
                failed = true;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if failed {
        std::process::exit(1);
    }
    println!("{total} {seconds:.6}");
}

/// One client: every path over one connection; the body bytes received.
fn pull(addr: &str, accept: &str, paths: &[String]) -> io::Result<u64> {
    let mut sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    let mut head = vec![0u8; MAX_HEAD];
    let mut scratch = vec![0u8; CHUNK];
    let mut total = 0u64;
    for path in paths {
        write!(sock, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n")?;
        // The head, and whatever of the body came with it.
        let mut got = 0;
        let end = loop {
            if got == MAX_HEAD {
                return Err(io::Error::other(format!("{path}: headers over {MAX_HEAD} bytes")));
            }
            let n = sock.read(&mut head[got..])?;
            if n == 0 {
                return Err(io::Error::other(format!("{path}: the connection closed in the headers")));
            }
            got += n;
            if let Some(i) = head[..got].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let length = content_length(path, &head[..end])?;
        let early = (got - end) as u64;
        if early > length {
            return Err(io::Error::other(format!("{path}: more bytes than its Content-Length")));
        }
        let mut left = length - early;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let (_, n) = recv(&sock, &mut scratch[..want], RecvFlags::TRUNC)?;
            if n == 0 {
                return Err(io::Error::other(format!("{path}: the connection closed with {left} bytes to come")));
            }
            left -= n as u64;
        }
        total += length;
    }
    Ok(total)
}

/// The `Content-Length` of a 200 response's head, or why there is none.
fn content_length(path: &str, head: &[u8]) -> io::Result<u64> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(io::Error::other(format!("{path}: {status}")));
    }
    lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("{path}: no Content-Length")))
}
