//! Test support shared by cargohold's crates (not published): the Debian
//! `docker-registry` started on 127.0.0.1 with a free port and temp storage
//! (open, htpasswd, or token auth with [`TokenServer`]), a fault-injecting
//! proxy, and the peer tools (skopeo, umoci) every interop test uses.
#![allow(missing_docs, clippy::print_stderr, reason = "test support")]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
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

enum Auth<'a> {
    None,
    Htpasswd(String),
    Token(&'a TokenServer),
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
        Self::start_with(Auth::None)
    }

    /// With htpasswd Basic auth for `user`/`password`.
    pub fn start_basic(user: &str, password: &str) -> Self {
        require("htpasswd");
        Self::start_with(Auth::Htpasswd(run(Command::new("htpasswd").args(["-Bbn", user, password]))))
    }

    /// Behind token auth: a [`TokenServer`] for `user`/`password` whose tokens
    /// live `lifetime` seconds.
    pub fn start_token(user: &str, password: &str, lifetime: u64) -> (Self, TokenServer) {
        let keys = tempfile::tempdir().unwrap();
        let tokens = TokenServer::start(keys.path(), user, password, lifetime);
        let reg = Self::start_with(Auth::Token(&tokens));
        // The registry read the certificate at start; the key dir may go,
        // but the token server still signs with the key: keep it.
        std::mem::forget(keys);
        (reg, tokens)
    }

    /// Behind token auth from a token service described by `tokens` (its
    /// realm, service, issuer and certificate: one of ours, say).
    pub fn start_trusting(tokens: &TokenServer) -> Self {
        Self::start_with(Auth::Token(tokens))
    }

    fn start_with(auth: Auth<'_>) -> Self {
        require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let auth = match auth {
            Auth::Htpasswd(line) => {
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, line).unwrap();
                format!("auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n", file.display())
            }
            Auth::Token(t) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.cert.display()
            ),
            Auth::None => String::new(),
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

/// What a fault does to a matching request.
#[derive(Clone, Copy)]
pub enum Action {
    /// Answer with this status (and `Retry-After` when given) instead of forwarding.
    Status(u16, Option<u64>),
    /// Forward, but pass on only this many bytes of the response body, then
    /// close the connection (counts only when the body was longer).
    Cut(usize),
    /// Wait this long before forwarding.
    Delay(Duration),
    /// Forward, dropping the `Link` header from the answer.
    StripLink,
}

/// A fault to inject: requests whose request line contains `path`
/// ("GET /v2/x/blobs/sha256:..."), `times` times.
pub struct Fault {
    pub path: String,
    pub action: Action,
    pub times: usize,
}

impl Fault {
    pub fn status(path: &str, status: u16, retry_after: Option<u64>, times: usize) -> Self {
        Fault { path: path.into(), action: Action::Status(status, retry_after), times }
    }
    pub fn cut(path: &str, after: usize, times: usize) -> Self {
        Fault { path: path.into(), action: Action::Cut(after), times }
    }
    pub fn delay(path: &str, delay: Duration, times: usize) -> Self {
        Fault { path: path.into(), action: Action::Delay(delay), times }
    }
    pub fn strip_link(path: &str, times: usize) -> Self {
        Fault { path: path.into(), action: Action::StripLink, times }
    }
}

/// An HTTP proxy in front of a registry that injects faults. One request
/// per connection (`Connection: close`).
pub struct FaultProxy {
    pub addr: String,
    /// Request heads seen (request line and headers).
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
                let Some(text) = read_head(&mut client) else { return };
                let request_line = text.lines().next().unwrap_or_default().to_owned();
                seen.lock().unwrap().push(text.clone());
                let len: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if client.read_exact(&mut body).is_err() {
                    return;
                }
                let matching = |f: &Fault| f.times > 0 && request_line.contains(&f.path);
                let action = faults.lock().unwrap().iter().find(|f| matching(f)).map(|f| f.action);
                let mut cut = None;
                match action {
                    Some(Action::Status(status, after)) => {
                        let mut f = faults.lock().unwrap();
                        if let Some(f) = f.iter_mut().find(|f| matching(f)) {
                            f.times -= 1;
                        }
                        let after = after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                        let _ = write!(
                            client,
                            "HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\n{after}Connection: close\r\n\r\n"
                        );
                        return;
                    }
                    Some(Action::Delay(d)) => {
                        let mut f = faults.lock().unwrap();
                        if let Some(f) = f.iter_mut().find(|f| matching(f)) {
                            f.times -= 1;
                        }
                        drop(f);
                        std::thread::sleep(d);
                    }
                    Some(Action::Cut(n)) => cut = Some(n),
                    Some(Action::StripLink) => cut = Some(usize::MAX),
                    None => {}
                }
                let Ok(mut up) = std::net::TcpStream::connect(&upstream) else { return };
                let forwarded: String = text
                    .split("\r\n")
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .take_while(|l| !l.is_empty())
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                up.write_all(format!("{forwarded}Connection: close\r\n\r\n").as_bytes()).unwrap();
                up.write_all(&body).unwrap();
                match cut {
                    None => {
                        let _ = std::io::copy(&mut up, &mut client);
                    }
                    Some(usize::MAX) => {
                        let mut all = Vec::new();
                        let _ = up.read_to_end(&mut all);
                        let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").map_or(all.len(), |p| p + 4);
                        let head = String::from_utf8_lossy(&all[..body_at]).into_owned();
                        let kept: String = head
                            .split_inclusive("\r\n")
                            .filter(|l| !l.to_ascii_lowercase().starts_with("link:"))
                            .collect();
                        let _ = client.write_all(kept.as_bytes());
                        let _ = client.write_all(&all[body_at..]);
                    }
                    Some(n) => {
                        let mut all = Vec::new();
                        let _ = up.read_to_end(&mut all);
                        let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").map_or(all.len(), |p| p + 4);
                        if all.len() > body_at + n {
                            let mut f = faults.lock().unwrap();
                            if let Some(f) = f.iter_mut().find(|f| matching(f)) {
                                f.times -= 1;
                            }
                            drop(f);
                            let _ = client.write_all(&all[..body_at + n]);
                            let _ = client.shutdown(std::net::Shutdown::Both);
                        } else {
                            let _ = client.write_all(&all);
                        }
                    }
                }
            });
        }
    });
    FaultProxy { addr, seen }
}

/// Reads an HTTP request head (up to the blank line), byte by byte so the
/// body stays in the stream; `None` when the peer closed first, or opened
/// with a TLS handshake (a client trying HTTPS first: the caller hangs up,
/// as a plain-HTTP server's garbage answer would end it).
pub fn read_head(stream: &mut impl std::io::Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return None;
        }
        if head.is_empty() && byte[0] == 0x16 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// Serves one canned answer per connection (`answer` gets the request head),
/// recording every head: a stand-in for servers the tests need to misbehave.
pub fn canned_server(
    answer: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let Some(text) = read_head(&mut c) else { continue };
            log.lock().unwrap().push(text.clone());
            let _ = c.write_all(&answer(&text));
        }
    });
    (addr, seen)
}

/// A token server for distribution's `token` auth: RS256 JWTs signed with a
/// key whose self-signed certificate the registry trusts, `kid` in libtrust's
/// format. Grants what is asked to `user`/`password` (Basic on GET, or an
/// OAuth2 `password`/`refresh_token` grant on POST) and nothing to anyone else.
pub struct TokenServer {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub cert: PathBuf,
    /// Requests seen: `GET <query>` or `POST <form>`.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn base64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buf, mut bits) = (String::new(), 0u32, 0);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

impl TokenServer {
    /// Starts the server; tokens live `lifetime` seconds.
    pub fn start(dir: &Path, user: &str, password: &str, lifetime: u64) -> Self {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        require("openssl");
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cargohold-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null()));
        let der = Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .output()
            .unwrap()
            .stdout;
        let sum = cargohold_image_core::Digest::sha256_of(&der);
        let raw: Vec<u8> = (0..30).map(|i| u8::from_str_radix(&sum.hex()[2 * i..2 * i + 2], 16).unwrap()).collect();
        let encoded = base32(&raw);
        let kid: Vec<String> = encoded.as_bytes().chunks(4).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        let kid = kid.join(":");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let (service, issuer) = ("cargohold-test-registry".to_owned(), "cargohold-test-issuer".to_owned());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (reqs, user, password, svc, iss) =
            (Arc::clone(&requests), user.to_owned(), password.to_owned(), service.clone(), issuer.clone());
        let refresh_tokens: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        std::thread::spawn(move || {
            let counter = std::sync::atomic::AtomicU64::new(0);
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { return };
                let text = read_head(&mut c).unwrap_or_default();
                let line = text.lines().next().unwrap_or_default().to_owned();
                let header = |name: &str| {
                    text.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = c.read_exact(&mut body);
                let mut parts = line.split(' ');
                let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
                let params =
                    if method == "POST" { form_pairs(&String::from_utf8_lossy(&body)) } else { form_pairs(query) };
                reqs.lock().unwrap().push(format!(
                    "{method} {}",
                    params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
                ));
                let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
                let basic_ok = header("authorization")
                    .and_then(|v| v.strip_prefix("Basic ").map(str::to_owned))
                    .and_then(|v| {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.decode(v).ok()
                    })
                    .is_some_and(|v| v == format!("{user}:{password}").as_bytes());
                let authenticated = match (method, get("grant_type").as_deref()) {
                    ("POST", Some("refresh_token")) => {
                        get("refresh_token").is_some_and(|t| refresh_tokens.lock().unwrap().contains(&t))
                    }
                    ("POST", Some("password")) => {
                        get("username").as_deref() == Some(user.as_str())
                            && get("password").as_deref() == Some(password.as_str())
                    }
                    ("POST", _) => false,
                    _ => basic_ok,
                };
                let has_auth = header("authorization").is_some() || method == "POST";
                if has_auth && !authenticated {
                    let _ = write!(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let scopes: Vec<String> = if method == "POST" {
                    get("scope").map(|s| s.split(' ').map(str::to_owned).collect()).unwrap_or_default()
                } else {
                    params.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect()
                };
                let access: Vec<serde_json::Value> = if authenticated {
                    scopes
                        .iter()
                        .filter_map(|s| {
                            let (kind, rest) = s.split_once(':')?;
                            let (name, actions) = rest.rsplit_once(':')?;
                            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let header_json = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": kid});
                let claims = serde_json::json!({
                    "iss": iss, "sub": if authenticated { user.as_str() } else { "" }, "aud": svc,
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{n}"), "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    base64url(header_json.to_string().as_bytes()),
                    base64url(claims.to_string().as_bytes())
                );
                let mut child = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
                let sig = child.wait_with_output().unwrap().stdout;
                let jwt = format!("{signing_input}.{}", base64url(&sig));
                let mut answer = serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": lifetime});
                let wants_refresh = get("offline_token").as_deref() == Some("true") || method == "POST";
                if authenticated && wants_refresh {
                    let rt = format!("refresh-{n}");
                    refresh_tokens.lock().unwrap().push(rt.clone());
                    answer["refresh_token"] = serde_json::Value::String(rt);
                }
                let body = answer.to_string();
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { realm, service, issuer, cert, requests }
    }
}

/// The reference benchmark images (`../shared/images/make-images.sh`: a
/// debootstrap minbase layer, then additions, then deletions, whiteouts, a
/// replaced directory, chmod/chown, links), built once into `cache` (pass
/// `env!("CARGO_TARGET_TMPDIR")`, shared by the workspace's tests) and reused.
pub fn reference_images(cache: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images/make-images.sh");
    assert!(script.exists(), "{} is missing: the reference images cannot be built", script.display());
    require("debootstrap");
    let out = cache.join("reference-images");
    let layout = out.join("oci");
    if !layout.join("index.json").exists() || !layout.join("blobs").exists() {
        run(Command::new("bash").arg(&script).arg(&out));
    }
    layout
}

/// A Debian bookworm minbase root with `include` packages (debootstrap),
/// made once into `cache` (pass `env!("CARGO_TARGET_TMPDIR")`) and reused;
/// returned as a tar of the root. The image's `/etc/machine-id` is left
/// empty, as Debian's container images ship it.
pub fn debian_tar(cache: &Path, include: &[&str]) -> PathBuf {
    require("debootstrap");
    let name = if include.is_empty() { "minbase".to_owned() } else { include.join("+") };
    let dir = cache.join(format!("debian-bookworm-{name}"));
    let tar = dir.join("root.tar");
    if !dir.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        let mut cmd = Command::new("debootstrap");
        cmd.arg("--variant=minbase");
        if !include.is_empty() {
            cmd.arg(format!("--include={}", include.join(",")));
        }
        run(cmd.arg("bookworm").arg(&root));
        std::fs::write(root.join("etc/machine-id"), "").unwrap();
        run(Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&root).arg("."));
        std::fs::write(dir.join(".complete"), "").unwrap();
    }
    tar
}

/// One node of a tree, everything two unpackers must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Option<Vec<u8>>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The other paths sharing this inode (a hardlink group), sorted.
    pub links: Vec<PathBuf>,
}

/// Every path under `dir` (the root itself as ""), never following symlinks.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Node>, inodes: &mut BTreeMap<u64, Vec<PathBuf>>) {
        let m = std::fs::symlink_metadata(p).expect("lstat");
        let rel = p.strip_prefix(base).expect("under base").to_path_buf();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "other"
        };
        let mut xattrs = BTreeMap::new();
        let mut list = vec![0u8; 1 << 16];
        if let Ok(len) = rustix::fs::llistxattr(p, &mut list[..]) {
            for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
                let n = String::from_utf8_lossy(name).into_owned();
                let mut value = vec![0u8; 1 << 16];
                if let Ok(vlen) = rustix::fs::lgetxattr(p, n.as_str(), &mut value[..]) {
                    value.truncate(vlen);
                    xattrs.insert(n, value);
                }
            }
        }
        if ft.is_file() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        out.insert(
            rel.clone(),
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if ft.is_file() { m.len() } else { 0 },
                content: ft.is_file().then(|| std::fs::read(p).expect("read")),
                link: ft.is_symlink().then(|| std::fs::read_link(p).expect("readlink")),
                rdev: if ft.is_char_device() || ft.is_block_device() { m.rdev() } else { 0 },
                xattrs,
                links: Vec::new(),
            },
        );
        if ft.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p).expect("readdir").map(|e| e.expect("entry").path()).collect();
            names.sort();
            for n in names {
                walk(base, &n, out, inodes);
            }
        }
    }
    walk(dir, dir, &mut out, &mut inodes);
    // A group is the visible paths sharing an inode: a lone path is no group
    // (overlayfs reports a lower inode's link count even when the other
    // names are whited out above).
    for group in inodes.into_values().filter(|g| g.len() > 1) {
        for p in &group {
            let mut others = group.clone();
            others.sort();
            out.get_mut(p).expect("present").links = others;
        }
    }
    out
}

/// Differences between two trees, as readable lines.
pub fn tree_diff(a: &BTreeMap<PathBuf, Node>, b: &BTreeMap<PathBuf, Node>) -> Vec<String> {
    let mut diffs = Vec::new();
    for (p, na) in a {
        match b.get(p) {
            None => diffs.push(format!("only in ours: {}", p.display())),
            Some(nb) if na != nb => diffs.push(format!("{}: ours {na:?} vs theirs {nb:?}", p.display())),
            _ => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("only in theirs: {}", p.display()));
    }
    diffs
}

/// Bytes that do not repeat (a blob of zeros would hide zeros sent in its
/// place), the same for the same `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The names of process `pid`'s threads that start with `prefix`, sorted.
pub fn thread_names(pid: u32, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A minimal root filesystem at `dir`: the static busybox with a link per
/// applet in /bin, /etc/passwd and /etc/group (root, and `app` 1000:1000 in
/// `staff` 50 as a supplementary group), /tmp. Needs `busybox-static`.
pub fn busybox_rootfs(dir: &Path) {
    require("busybox");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox = Command::new("sh").args(["-c", "command -v busybox"]).output().unwrap();
    let busybox = String::from_utf8(busybox.stdout).unwrap();
    // A hard link where possible: a copy is a file open for writing, and a
    // fork elsewhere in the test process may hold that descriptor while the
    // container execs it (ETXTBSY).
    if std::fs::hard_link(busybox.trim(), bin.join("busybox")).is_err() {
        std::fs::copy(busybox.trim(), bin.join("busybox")).unwrap();
    }
    let list = run(Command::new(busybox.trim()).arg("--list"));
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    for d in ["etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::set_permissions(dir.join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
        .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nstaff:x:50:app\napp:x:1000:\n").unwrap();
}

/// The hostile probe (`probe/probe.c`), built static with gcc once per test
/// process into a temporary directory: what it prints is one `NAME=VALUE`
/// line per attack (see [`Probe`]).
pub fn probe_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            require("gcc");
            let dir = std::env::temp_dir().join(format!("cargohold-probe-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("probe/probe.c");
            let out = dir.join("probe");
            run(Command::new("gcc").args(["-static", "-O1", "-o"]).arg(&out).arg(&src));
            out
        })
        .clone()
}

/// A probe's report: `NAME=VALUE` lines.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// Each line's value, by name.
    pub values: BTreeMap<String, String>,
}

impl Probe {
    /// Parses the probe's output.
    pub fn parse(out: &str) -> Self {
        let values = out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Probe { values }
    }

    /// A value (panics, naming it, when the probe did not report it).
    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or_else(|| panic!("the probe reported no {name}: {self:?}"))
    }

    /// Whether the attack `name` was refused (a value starting `refused`),
    /// or came to nothing (`masked`, `hidden`).
    pub fn safe(&self, name: &str) -> bool {
        let v = self.get(name);
        v.starts_with("refused") || v == "masked" || v == "hidden"
    }

    /// A capability set (`cap_eff`, ...) as a mask.
    pub fn caps(&self, name: &str) -> u64 {
        u64::from_str_radix(self.get(name), 16).unwrap_or_else(|_| panic!("{name} is not hex: {self:?}"))
    }
}

/// `MAJOR:MINOR` of the block device holding `/` on the host (the disk a
/// container must never read).
pub fn root_block_device() -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(' ').nth(2))
        .expect("a mount at /")
        .to_owned()
}

/// OpenStack Swift on loopback with its S3 API (`../shared/services/swift-saio.sh`),
/// its data in a temp dir; stopped on drop.
pub struct Swift {
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`, path-style S3.
    pub s3_endpoint: String,
    /// The S3 access key (`test:tester`).
    pub access_key: String,
    /// The S3 secret key.
    pub secret_key: String,
    auth_url: String,
    user: String,
    key: String,
}

impl Swift {
    /// Starts one with its data below `tmp` (pass `env!("CARGO_TARGET_TMPDIR")`:
    /// Swift needs user.* xattrs, which ext4 has and an older tmpfs lacks),
    /// installing Debian's swift packages when missing (root).
    pub fn start(tmp: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/services/swift-saio.sh");
        assert!(script.exists(), "{} is missing: Swift cannot be started", script.display());
        let dir = tempfile::Builder::new().prefix("swift").tempdir_in(tmp).unwrap();
        let out = run(Command::new("bash").arg(&script).arg("start").arg(dir.path()));
        let var = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("swift-saio.sh printed no {name}: {out}"))
                .to_owned()
        };
        Swift {
            s3_endpoint: var("S3_ENDPOINT"),
            access_key: var("S3_ACCESS_KEY"),
            secret_key: var("S3_SECRET_KEY"),
            auth_url: var("SWIFT_AUTH_URL"),
            user: var("SWIFT_USER"),
            key: var("SWIFT_KEY"),
            dir,
        }
    }

    /// Creates a bucket (a Swift container).
    pub fn bucket(&self, name: &str) {
        require("swift");
        run(Command::new("swift").args(["-A", &self.auth_url, "-U", &self.user, "-K", &self.key, "post", name]));
    }

    /// The names of the objects in a bucket.
    pub fn list(&self, bucket: &str) -> Vec<String> {
        run(Command::new("swift").args(["-A", &self.auth_url, "-U", &self.user, "-K", &self.key, "list", bucket]))
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Swift {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/services/swift-saio.sh");
        let _ = Command::new("bash").arg(&script).arg("stop").arg(self.dir.path()).status();
    }
}

/// Debian's docker.io daemon on a private socket, its data on a tmpfs of
/// its own (`dockerd --iptables=false --bridge=none`, as these machines
/// allow); stopped and unmounted on drop. Needs root.
pub struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    /// `unix://...` for `docker -H`.
    pub host: String,
}

impl Dockerd {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        require("dockerd");
        assert!(Path::new("/usr/bin/docker").exists(), "docker.io's /usr/bin/docker is missing");
        let dir = tempfile::tempdir().unwrap();
        run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=2g", "tmpfs"]).arg(dir.path()));
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("pid"))
            .args(["-H", &host, "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none"])
            .args(["--storage-driver=overlay2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dockerd starts");
        let d = Dockerd { child, dir, host };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker().arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success() {
            assert!(Instant::now() < deadline, "dockerd did not answer");
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    /// `docker -H (this daemon)`.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.args(["-H", &self.host]);
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = nix_free_kill(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its containerd's mounts and the tmpfs.
        let _ = Command::new("umount").arg("-R").arg("-l").arg(self.dir.path()).status();
    }
}

/// `kill -SIG pid` through the shell builtin (positive pids only).
fn nix_free_kill(pid: u32, sig: &str) -> std::io::Result<std::process::ExitStatus> {
    Command::new("sh").arg("-c").arg(format!("kill -{sig} {pid}")).status()
}
