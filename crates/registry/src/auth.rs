//! `WWW-Authenticate` challenges and where credentials come from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lowercased).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`...), keys lowercased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value (RFC 7235): several challenges, each a
/// scheme then `key=value` or `key="quoted, with \"escapes\""` parameters.
/// Scopes like `repository:host:5000/a/b:pull,push` survive intact.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return out;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'=' | b',') {
            i += 1;
        }
        let token = &header[start..i];
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && !out.is_empty() {
            // A parameter of the current challenge.
            i = j + 1;
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = header[i..].chars().next().expect("in bounds");
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
                v
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' {
                    i += 1;
                }
                header[s..i].to_owned()
            };
            out.last_mut().expect("checked").params.insert(token.to_ascii_lowercase(), value);
        } else if !token.is_empty() {
            out.push(Challenge { scheme: token.to_ascii_lowercase(), params: BTreeMap::new() });
        } else {
            i += 1;
        }
    }
}

/// A username and password (or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// Looks up stored credentials for `registry` (`host[:port]`) in Docker's order:
/// `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` (podman),
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. Entries are
/// matched on the host with or without scheme and path (`https://host/v1/`);
/// Docker Hub also under `https://index.docker.io/v1/`.
pub fn stored_credentials(registry: &str) -> Option<Credentials> {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(f.into());
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(d).join("containers/auth.json"));
    }
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => files.push(PathBuf::from(d).join("config.json")),
        None => {
            if let Some(h) = std::env::var_os("HOME") {
                files.push(PathBuf::from(h).join(".docker/config.json"));
            }
        }
    }
    files.iter().find_map(|f| from_file(f, registry))
}

fn from_file(path: &std::path::Path, registry: &str) -> Option<Credentials> {
    let bytes = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let wanted: Vec<String> = if registry == "docker.io" {
        vec!["docker.io".into(), "index.docker.io".into(), "registry-1.docker.io".into()]
    } else {
        vec![registry.into()]
    };
    for (key, entry) in auths {
        let host = key.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or_default();
        if !wanted.iter().any(|w| w == host) {
            continue;
        }
        let auth = entry.get("auth").and_then(|a| a.as_str())?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Credentials { username: username.into(), password: password.into() });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_port_scopes_and_multiple_challenges() {
        let h = r#"Bearer realm="https://auth.example.com:8443/token",service="registry.example.com:5000",scope="repository:registry.example.com:5000/team/app:pull,push", Basic realm="x\"y""#;
        let c = parse_www_authenticate(h);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.example.com:8443/token");
        assert_eq!(c[0].params["scope"], "repository:registry.example.com:5000/team/app:pull,push");
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].params["realm"], "x\"y");
        let c = parse_www_authenticate("Basic realm=registry");
        assert_eq!(c[0].params["realm"], "registry");
        assert!(parse_www_authenticate("").is_empty());
    }

    #[test]
    fn reads_docker_config_auths() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("auth.json");
        let token = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(&f, format!(r#"{{"auths":{{"https://127.0.0.1:5000/v1/":{{"auth":"{token}"}}}}}}"#)).unwrap();
        let c = from_file(&f, "127.0.0.1:5000").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "s3cret"));
        assert!(from_file(&f, "other:5000").is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
