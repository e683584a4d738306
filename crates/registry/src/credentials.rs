//! Where credentials come from and where `login` puts them: Docker's
//! `config.json` and podman's `auth.json`, with `auths`, `credHelpers`,
//! `credsStore` and the `docker-credential-*` helper protocol.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::error::{Error, Result};

/// A username and password. A username of `<token>` marks an identity
/// (OAuth2 refresh) token, as Docker's credential helpers do.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl Credentials {
    /// A username and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials { username: username.into(), password: password.into() }
    }

    /// The identity token these credentials carry, if they are one.
    pub fn identity_token(&self) -> Option<&str> {
        (self.username == "<token>").then_some(self.password.as_str())
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// The process environment as the caller gives it (`|k| std::env::var_os(k)`
/// in a program; the library never reads it itself).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<std::ffi::OsString>;

/// The files searched for credentials, in order, as containers-auth.json(5)
/// has them: the primary file (`REGISTRY_AUTH_FILE`, else podman's
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else
/// `/run/containers/UID/auth.json`), then `$XDG_CONFIG_HOME/containers/auth.json`
/// (else `~/.config/containers/auth.json`), then Docker's
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
/// `env` gives the variables.
pub fn auth_files(env: Env<'_>) -> Vec<PathBuf> {
    auth_files_with(None, env)
}

/// [`auth_files`] with `primary` in place of the primary file (podman's and
/// skopeo's `--authfile`, which `REGISTRY_AUTH_FILE` sets by default).
pub fn auth_files_with(primary: Option<&Path>, env: Env<'_>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    match (
        primary,
        env("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()),
        env("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()),
    ) {
        (Some(f), _, _) => files.push(f.to_owned()),
        (None, Some(f), _) => files.push(f.into()),
        (None, None, Some(d)) => files.push(PathBuf::from(d).join("containers/auth.json")),
        (None, None, None) => {
            // This process' user: the owner of its /proc entry.
            use std::os::unix::fs::MetadataExt;
            if let Ok(me) = std::fs::metadata("/proc/self") {
                files.push(PathBuf::from(format!("/run/containers/{}/auth.json", me.uid())));
            }
        }
    }
    match env("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => files.push(PathBuf::from(d).join("containers/auth.json")),
        None => {
            let home = PathBuf::from(env("HOME").unwrap_or_else(|| "/".into()));
            files.push(home.join(".config/containers/auth.json"));
        }
    }
    files.push(docker_config(env));
    files
}

/// Docker's own file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config(env: Env<'_>) -> PathBuf {
    match env("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(env("HOME").unwrap_or_else(|| "/".into())).join(".docker/config.json"),
    }
}

/// The file `login` writes: `REGISTRY_AUTH_FILE` when set, else Docker's.
pub fn login_file(env: Env<'_>) -> PathBuf {
    env("REGISTRY_AUTH_FILE").map_or_else(|| docker_config(env), PathBuf::from)
}

/// The key Docker uses for a registry in `auths` and with helpers.
fn server_key(registry: &str) -> String {
    if registry == "docker.io" { "https://index.docker.io/v1/".into() } else { registry.into() }
}

/// Whether an `auths`/`credHelpers` key names `registry` (with or without
/// scheme and path; Docker Hub under its several names).
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or_default();
    if registry == "docker.io" {
        matches!(host, "docker.io" | "index.docker.io" | "registry-1.docker.io")
    } else {
        host == registry
    }
}

/// Looks up credentials for `repository` of `registry` in `files`, in
/// order. In each file a `credHelpers` entry for the registry wins (when
/// `helpers` may run), then `credsStore`, then `auths`, where the most
/// specific key wins: `host/ns/repo`, then `host/ns`, then `host` (podman's
/// per-repository keys; `auth` as base64 `user:password`, or an
/// `identitytoken`). A helper that fails is an error; one that has nothing
/// for the registry is not.
pub fn stored_credentials_for(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
    helpers: bool,
) -> Result<Option<Credentials>> {
    for f in files {
        if let Some(c) = from_file(f, registry, repository, helpers)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Where a client gets the credentials for a repository: the seam through
/// which an embedding program decides what is read and whether credential
/// helper programs run.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// Credentials for `repository` (empty: the registry as a whole) of
    /// `registry` (`host[:port]`); `None` to go anonymous.
    fn credentials(&self, registry: &str, repository: &str) -> Result<Option<Credentials>>;
}

/// Credentials from Docker's and podman's auth files.
#[derive(Debug, Clone)]
pub struct AuthFiles {
    /// The files, searched in order.
    pub files: Vec<PathBuf>,
    /// Whether `credHelpers`/`credsStore` helper programs may run.
    pub run_helpers: bool,
}

impl AuthFiles {
    /// The standard files ([`auth_files`] of `env`), helpers allowed.
    pub fn standard(env: Env<'_>) -> Self {
        AuthFiles { files: auth_files(env), run_helpers: true }
    }

    /// The standard files with `primary` as the primary one
    /// ([`auth_files_with`]), helpers allowed.
    pub fn with_primary(primary: &Path, env: Env<'_>) -> Self {
        AuthFiles { files: auth_files_with(Some(primary), env), run_helpers: true }
    }
}

/// Each named registry's credentials from its own source (a copy's
/// `--src-authfile` and `--dest-authfile`); every other registry's from
/// `rest`.
#[derive(Debug)]
pub struct PerRegistrySources {
    /// `(host[:port], source)`, the first for a registry wins.
    pub sources: Vec<(String, std::sync::Arc<dyn CredentialSource>)>,
    /// The source of the registries not named.
    pub rest: std::sync::Arc<dyn CredentialSource>,
}

impl CredentialSource for PerRegistrySources {
    fn credentials(&self, registry: &str, repository: &str) -> Result<Option<Credentials>> {
        match self.sources.iter().find(|(r, _)| r == registry) {
            Some((_, source)) => source.credentials(registry, repository),
            None => self.rest.credentials(registry, repository),
        }
    }
}

impl CredentialSource for AuthFiles {
    fn credentials(&self, registry: &str, repository: &str) -> Result<Option<Credentials>> {
        stored_credentials_for(&self.files, registry, repository, self.run_helpers)
    }
}

/// No credentials at all: every request anonymous.
#[derive(Debug, Clone, Copy)]
pub struct NoCredentials;

impl CredentialSource for NoCredentials {
    fn credentials(&self, _: &str, _: &str) -> Result<Option<Credentials>> {
        Ok(None)
    }
}

/// What an `auths` key covers, normalised: `host[/path]` (a URL key such as
/// `https://index.docker.io/v1/` covers its host only; Docker Hub's names
/// are `docker.io`).
fn key_scope(key: &str) -> String {
    let url = key.starts_with("https://") || key.starts_with("http://");
    let rest = key.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = if matches!(host, "index.docker.io" | "registry-1.docker.io") { "docker.io" } else { host };
    if url || path.is_empty() { host.to_owned() } else { format!("{host}/{path}") }
}

fn read_config(path: &Path) -> Result<Option<serde_json::Value>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Credentials { path: path.display().to_string(), reason: e.to_string() }),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Credentials { path: path.display().to_string(), reason: format!("not valid JSON: {e}") })
}

fn from_file(path: &Path, registry: &str, repository: &str, helpers: bool) -> Result<Option<Credentials>> {
    let Some(v) = read_config(path)? else { return Ok(None) };
    if helpers
        && let Some(helpers) = v.get("credHelpers").and_then(|h| h.as_object())
        && let Some(name) = helpers.iter().find(|(k, _)| key_matches(k, registry)).and_then(|(_, n)| n.as_str())
    {
        return helper_get(name, registry);
    }
    if helpers
        && let Some(name) = v.get("credsStore").and_then(|s| s.as_str()).filter(|s| !s.is_empty())
        && let Some(c) = helper_get(name, registry)?
    {
        return Ok(Some(c));
    }
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else { return Ok(None) };
    let bad = |reason: &str| Error::Credentials { path: path.display().to_string(), reason: reason.into() };
    // Most specific first: host/ns/repo, host/ns, host.
    let mut scopes = Vec::new();
    let mut scope = if repository.is_empty() { registry.to_owned() } else { format!("{registry}/{repository}") };
    loop {
        scopes.push(scope.clone());
        match scope.rfind('/') {
            Some(i) => scope.truncate(i),
            None => break,
        }
    }
    let ordered = scopes.iter().flat_map(|want| auths.iter().filter(move |(key, _)| key_scope(key) == *want));
    for (key, entry) in ordered {
        let (mut username, mut password) = (String::new(), String::new());
        if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad(&format!("the auth of {key} is not base64")))?;
            let text = String::from_utf8(decoded).map_err(|_| bad(&format!("the auth of {key} is not UTF-8")))?;
            let (u, p) = text.split_once(':').ok_or_else(|| bad(&format!("the auth of {key} is not user:password")))?;
            (username, password) = (u.into(), p.into());
        }
        if let Some(t) = entry.get("identitytoken").and_then(|t| t.as_str()).filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::new("<token>", t)));
        }
        if !username.is_empty() || !password.is_empty() {
            return Ok(Some(Credentials { username, password }));
        }
    }
    Ok(None)
}

fn helper(name: &str, action: &str, input: &[u8]) -> Result<(bool, Vec<u8>)> {
    let program = format!("docker-credential-{name}");
    let fail = |reason: String| Error::Credentials { path: program.clone(), reason };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run the credential helper: {e}")))?;
    child.stdin.take().expect("piped").write_all(input).map_err(|e| fail(format!("cannot talk to it: {e}")))?;
    let out = child.wait_with_output().map_err(|e| fail(format!("cannot run it: {e}")))?;
    Ok((out.status.success(), out.stdout))
}

fn helper_get(name: &str, registry: &str) -> Result<Option<Credentials>> {
    let (ok, out) = helper(name, "get", server_key(registry).as_bytes())?;
    let text = String::from_utf8_lossy(&out);
    if !ok {
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::Credentials {
            path: format!("docker-credential-{name}"),
            reason: format!("`get` failed: {}", text.trim()),
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| Error::Credentials {
        path: format!("docker-credential-{name}"),
        reason: format!("`get` printed no JSON: {e}"),
    })?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
    let (username, password) = (field("Username"), field("Secret"));
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { username, password }))
}

/// Which helper (if any) `login` should store through for `registry`.
fn store_helper(v: &serde_json::Value, registry: &str) -> Option<String> {
    let named = v
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| key_matches(k, registry)).and_then(|(_, n)| n.as_str()));
    named.or_else(|| v.get("credsStore").and_then(|s| s.as_str()).filter(|s| !s.is_empty())).map(str::to_owned)
}

/// Saves credentials for `registry` in `file` (see [`login_file`]): through
/// the configured helper when there is one (leaving an empty `auths` entry,
/// as Docker does), else base64 in `auths`. Other keys are kept; the file is
/// replaced atomically with mode 0600.
pub fn save_credentials(file: &Path, registry: &str, creds: &Credentials) -> Result<()> {
    let mut v = read_config(file)?.unwrap_or_else(|| serde_json::json!({}));
    if !v.is_object() {
        return Err(Error::Credentials { path: file.display().to_string(), reason: "not a JSON object".into() });
    }
    let key = server_key(registry);
    let entry = match store_helper(&v, registry) {
        Some(name) => {
            let input = serde_json::json!({"ServerURL": key, "Username": creds.username, "Secret": creds.password});
            let (ok, out) = helper(&name, "store", input.to_string().as_bytes())?;
            if !ok {
                return Err(Error::Credentials {
                    path: format!("docker-credential-{name}"),
                    reason: format!("`store` failed: {}", String::from_utf8_lossy(&out).trim()),
                });
            }
            serde_json::json!({})
        }
        None => {
            let raw = format!("{}:{}", creds.username, creds.password);
            serde_json::json!({ "auth": base64::engine::general_purpose::STANDARD.encode(raw) })
        }
    };
    let obj = v.as_object_mut().expect("checked");
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    let auths = auths.as_object_mut().ok_or_else(|| Error::Credentials {
        path: file.display().to_string(),
        reason: "`auths` is not an object".into(),
    })?;
    auths.retain(|k, _| !key_matches(k, registry));
    auths.insert(key, entry);
    write_config(file, &v)
}

/// Removes the credentials of `registry` from `file` (and from its helper).
/// Whether there were any.
pub fn remove_credentials(file: &Path, registry: &str) -> Result<bool> {
    let Some(mut v) = read_config(file)? else { return Ok(false) };
    let mut found = false;
    if let Some(name) = store_helper(&v, registry) {
        let (ok, out) = helper(&name, "erase", server_key(registry).as_bytes())?;
        let text = String::from_utf8_lossy(&out);
        if ok {
            found = true;
        } else if !text.contains("not found") {
            return Err(Error::Credentials {
                path: format!("docker-credential-{name}"),
                reason: format!("`erase` failed: {}", text.trim()),
            });
        }
    }
    if let Some(auths) = v.get_mut("auths").and_then(|a| a.as_object_mut()) {
        let before = auths.len();
        auths.retain(|k, _| !key_matches(k, registry));
        found |= auths.len() != before;
    }
    write_config(file, &v)?;
    Ok(found)
}

fn write_config(file: &Path, v: &serde_json::Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |e: std::io::Error| Error::Credentials { path: file.display().to_string(), reason: e.to_string() };
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let mut text = serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?;
        text.push(b'\n');
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containers-auth.json(5)'s order: one primary file (the given one,
    /// else REGISTRY_AUTH_FILE, else the runtime directory's), then the
    /// user's and Docker's.
    #[test]
    fn the_primary_file_is_the_one_given() {
        let vars = |k: &str| -> Option<std::ffi::OsString> {
            match k {
                "REGISTRY_AUTH_FILE" => Some("/env/auth.json".into()),
                "XDG_RUNTIME_DIR" => Some("/run/user/1".into()),
                "HOME" => Some("/home/u".into()),
                _ => None,
            }
        };
        let names = |files: Vec<PathBuf>| files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>();
        let docker_and_user = ["/home/u/.config/containers/auth.json", "/home/u/.docker/config.json"];
        let given = names(auth_files_with(Some(Path::new("/given.json")), &vars));
        assert_eq!(given, [&["/given.json"][..], &docker_and_user].concat());
        assert_eq!(names(auth_files(&vars)), [&["/env/auth.json"][..], &docker_and_user].concat());
        let no_env = |k: &str| if k == "REGISTRY_AUTH_FILE" { None } else { vars(k) };
        assert_eq!(names(auth_files(&no_env)), [&["/run/user/1/containers/auth.json"][..], &docker_and_user].concat());
    }

    #[test]
    fn per_registry_sources_answer_for_their_registry_only() {
        #[derive(Debug)]
        struct Fixed(&'static str);
        impl CredentialSource for Fixed {
            fn credentials(&self, _: &str, _: &str) -> Result<Option<Credentials>> {
                Ok(Some(Credentials::new(self.0, "p")))
            }
        }
        let s = PerRegistrySources {
            sources: vec![("a:5000".into(), std::sync::Arc::new(Fixed("alice")))],
            rest: std::sync::Arc::new(NoCredentials),
        };
        assert_eq!(s.credentials("a:5000", "x/y").unwrap().unwrap().username, "alice");
        assert!(s.credentials("b:5000", "x/y").unwrap().is_none());
    }

    #[test]
    fn reads_auths_and_identity_tokens() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("auth.json");
        let token = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &f,
            format!(
                r#"{{"auths":{{"https://127.0.0.1:5000/v1/":{{"auth":"{token}"}},"r.example":{{"identitytoken":"xyz"}}}}}}"#
            ),
        )
        .unwrap();
        let c = from_file(&f, "127.0.0.1:5000", "", true).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "s3cret"));
        assert!(from_file(&f, "other:5000", "", true).unwrap().is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(from_file(&f, "r.example", "", true).unwrap().unwrap().identity_token(), Some("xyz"));
        std::fs::write(&f, "{not json").unwrap();
        assert!(from_file(&f, "r.example", "", true).unwrap_err().to_string().contains("auth.json"));
    }

    #[test]
    fn the_most_specific_auths_key_wins() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("auth.json");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::write(
            &f,
            serde_json::json!({"auths": {
                "r.example": {"auth": b64("host:1")},
                "r.example/team": {"auth": b64("team:2")},
                "r.example/team/app": {"auth": b64("app:3")},
                "https://index.docker.io/v1/": {"auth": b64("hub:4")},
                "docker.io/library/busybox": {"auth": b64("bb:5")},
            }})
            .to_string(),
        )
        .unwrap();
        let user = |reg: &str, repo: &str| {
            stored_credentials_for(std::slice::from_ref(&f), reg, repo, false).unwrap().map(|c| c.username)
        };
        assert_eq!(user("r.example", "team/app").as_deref(), Some("app"));
        assert_eq!(user("r.example", "team/other").as_deref(), Some("team"));
        assert_eq!(user("r.example", "team").as_deref(), Some("team"));
        assert_eq!(user("r.example", "solo/x").as_deref(), Some("host"));
        assert_eq!(user("r.example", "").as_deref(), Some("host"));
        assert_eq!(user("docker.io", "library/busybox").as_deref(), Some("bb"));
        assert_eq!(user("docker.io", "library/debian").as_deref(), Some("hub"));
        assert_eq!(user("other.example", "team/app"), None);
    }

    #[test]
    fn save_and_remove_keep_other_keys() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("d/config.json");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, r#"{"auths":{"keep.example":{"auth":"YTpi"}},"psFormat":"x"}"#).unwrap();
        save_credentials(&f, "docker.io", &Credentials::new("bob", "pw")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "x");
        assert!(v["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
        assert_eq!(from_file(&f, "docker.io", "", true).unwrap().unwrap().username, "bob");
        assert_eq!(from_file(&f, "keep.example", "", true).unwrap().unwrap().username, "a");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(remove_credentials(&f, "docker.io").unwrap());
        assert!(from_file(&f, "docker.io", "", true).unwrap().is_none());
        assert!(!remove_credentials(&f, "docker.io").unwrap());
        assert_eq!(from_file(&f, "keep.example", "", true).unwrap().unwrap().username, "a");
    }
}
