//! Starting `docker-registry` on 127.0.0.1 with a free port and temp storage.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn require(tool: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap().status.success();
    assert!(ok, "{tool} is required for this test and is not installed (see scripts/test.sh)");
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running registry; killed on drop. Its temp dir holds config, storage
/// and the htpasswd file, and lives as long as it does.
pub struct TestRegistry {
    child: Child,
    pub addr: String,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Open registry.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With htpasswd Basic auth for `user`/`password`.
    pub fn start_basic(user: &str, password: &str) -> Self {
        require("htpasswd");
        Self::start_with(Some(run(Command::new("htpasswd").args(["-Bbn", user, password]))))
    }

    fn start_with(htpasswd: Option<String>) -> Self {
        require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let auth = match htpasswd {
            Some(line) => {
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, line).unwrap();
                format!("auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n", file.display())
            }
            None => String::new(),
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        TestRegistry { child, addr, dir }
    }
}

impl TestRegistry {
    /// The registry's storage directory (to corrupt blobs in tests).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo` with a permissive private policy.
pub fn skopeo(dir: &Path) -> Command {
    require("skopeo");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    let mut c = Command::new("skopeo");
    c.arg("--policy").arg(policy);
    c
}

/// An OCI layout made by umoci with a few MiB of content in two layers.
pub fn umoci_image(dir: &Path) -> PathBuf {
    require("umoci");
    let layout = dir.join("layout");
    let image = format!("{}:v1", layout.display());
    let bundle = dir.join("bundle");
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci").args(["unpack", "--rootless", "--image", &image]).arg(&bundle));
    std::fs::create_dir_all(bundle.join("rootfs/data")).unwrap();
    let big: Vec<u8> = (0..9_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(bundle.join("rootfs/data/big.bin"), big).unwrap();
    // --refresh-bundle: the next repack then diffs against this layer.
    run(Command::new("umoci").args(["repack", "--refresh-bundle", "--image", &image]).arg(&bundle));
    std::fs::write(bundle.join("rootfs/data/small.txt"), "second layer").unwrap();
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
    layout
}

/// A fault to inject: requests whose path contains `path` get `status`
/// (with `Retry-After` when given), `times` times, before being forwarded.
pub struct Fault {
    pub path: &'static str,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub times: usize,
}

/// An HTTP proxy in front of a registry that answers some requests with
/// canned errors first. One request per connection (`Connection: close`).
pub struct FaultProxy {
    pub addr: String,
    /// Request lines seen ("GET /v2/...").
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn fault_proxy(upstream: &str, faults: Vec<Fault>) -> FaultProxy {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let faults = Arc::new(Mutex::new(faults));
    let (upstream, seen2) = (upstream.to_owned(), Arc::clone(&seen));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { return };
            let (upstream, seen, faults) = (upstream.clone(), Arc::clone(&seen2), Arc::clone(&faults));
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let request_line = text.lines().next().unwrap_or_default().to_owned();
                seen.lock().unwrap().push(request_line.clone());
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                client.read_exact(&mut body).unwrap();
                let injected = {
                    let mut f = faults.lock().unwrap();
                    f.iter_mut().find(|f| f.times > 0 && request_line.contains(f.path)).map(|f| {
                        f.times -= 1;
                        (f.status, f.retry_after)
                    })
                };
                if let Some((status, after)) = injected {
                    let after = after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                    let _ = write!(
                        client,
                        "HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\n{after}Connection: close\r\n\r\n"
                    );
                    return;
                }
                let mut up = std::net::TcpStream::connect(&upstream).unwrap();
                let forwarded: String = text
                    .split("\r\n")
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .take_while(|l| !l.is_empty())
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                up.write_all(format!("{forwarded}Connection: close\r\n\r\n").as_bytes()).unwrap();
                up.write_all(&body).unwrap();
                let _ = std::io::copy(&mut up, &mut client);
            });
        }
    });
    FaultProxy { addr, seen }
}
