//! Our streaming hasher vs `openssl dgst -sha256` on the same 1 GiB file.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use cargohold_benches::{gbps, median};
use cargohold_image_core::{Algorithm, HashingReader};

fn main() {
    let path = match std::env::args().nth(1) {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let p = std::env::temp_dir().join("cargohold-sha256-bench.bin");
            let mut f = File::create(&p).expect("create bench file");
            let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
            for _ in 0..1024 {
                f.write_all(&chunk).expect("write bench file");
            }
            p
        }
    };
    let size = std::fs::metadata(&path).expect("stat").len();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut digests = (String::new(), String::new());
    for _ in 0..5 {
        let t = Instant::now();
        let out = Command::new("openssl").arg("dgst").arg("-sha256").arg(&path).output().expect("openssl runs");
        theirs.push(t.elapsed());
        digests.1 = String::from_utf8_lossy(&out.stdout).rsplit(' ').next().unwrap_or_default().trim().to_owned();

        let t = Instant::now();
        let mut r =
            HashingReader::new(BufReader::with_capacity(1 << 20, File::open(&path).expect("open")), Algorithm::Sha256);
        let mut buf = vec![0u8; 1 << 20];
        while r.read(&mut buf).expect("read") > 0 {}
        ours.push(t.elapsed());
        digests.0 = r.finish().0.hex().to_owned();
    }
    assert_eq!(digests.0, digests.1, "both tools computed the same digest");
    let (o, s): (Duration, Duration) = (median(ours), median(theirs));
    println!("file: {} ({size} bytes)", path.display());
    println!("cargohold HashingReader: {:.3} s  {:.2} GB/s", o.as_secs_f64(), gbps(size, o));
    println!("openssl dgst -sha256:    {:.3} s  {:.2} GB/s", s.as_secs_f64(), gbps(size, s));
    println!("ratio (openssl time / ours): {:.2}x", s.as_secs_f64() / o.as_secs_f64());
}
