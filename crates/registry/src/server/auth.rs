//! Who may do what on the server: htpasswd (bcrypt) Basic auth, with
//! optional anonymous pulls.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use sha2::Digest as _;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `/v2/` itself.
    Ping,
    /// Reading manifests, blobs, tags, referrers.
    Pull,
    /// Uploading, putting manifests.
    Push,
    /// Deleting.
    Delete,
    /// Listing every repository.
    Catalog,
}

/// htpasswd users (bcrypt hashes only: `htpasswd -B`).
#[derive(Debug)]
pub struct Htpasswd {
    realm: String,
    users: HashMap<String, String>,
    anonymous_pull: bool,
    /// sha256 of `user:password` pairs already verified (bcrypt is slow on purpose).
    verified: Mutex<HashMap<[u8; 32], String>>,
}

impl Htpasswd {
    /// Reads an htpasswd file. A line that is not `user:$2y$...` is an
    /// error naming the file and line.
    pub fn load(path: &Path, realm: &str, anonymous_pull: bool) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string(), realm, anonymous_pull)
    }

    /// Parses htpasswd text (`file` names it in errors).
    pub fn parse(text: &str, file: &str, realm: &str, anonymous_pull: bool) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or_else(|| format!("{file}, line {}: not user:hash", i + 1))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(format!(
                    "{file}, line {}: the hash of {user:?} is not bcrypt (make it with htpasswd -B)",
                    i + 1
                ));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd { realm: realm.to_owned(), users, anonymous_pull, verified: Mutex::new(HashMap::new()) })
    }

    /// The challenge a refused request gets.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\"", self.realm.replace('"', ""))
    }

    /// Whether `authorization` (the header, if any) allows `access`: any
    /// known user may do anything; without credentials, only pulls when
    /// anonymous pulls are on.
    pub fn allows(&self, authorization: Option<&str>, access: Access) -> bool {
        let Some(value) = authorization else {
            return self.anonymous_pull && matches!(access, Access::Pull | Access::Ping);
        };
        let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
            return false;
        };
        use base64::Engine as _;
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Ok(text) = String::from_utf8(raw) else { return false };
        let Some((user, password)) = text.split_once(':') else { return false };
        let Some(hash) = self.users.get(user) else { return false };
        let key: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        if self.verified.lock().expect("not poisoned").get(&key) == Some(hash) {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().expect("not poisoned");
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, hash.clone());
        }
        ok
    }
}
