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
        match authorization {
            None => self.anonymous_pull && matches!(access, Access::Pull | Access::Ping),
            Some(value) => self.user(value).is_some(),
        }
    }

    /// The user a Basic `Authorization` header value names, when its
    /// password is right.
    pub fn user(&self, authorization: &str) -> Option<String> {
        let encoded = authorization.strip_prefix("Basic ").or_else(|| authorization.strip_prefix("basic "))?;
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        let hash = self.users.get(user)?;
        let key: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        if self.verified.lock().expect("not poisoned").get(&key) == Some(hash) {
            return Some(user.to_owned());
        }
        if !bcrypt_verify(password.as_bytes(), hash) {
            return None;
        }
        let mut cache = self.verified.lock().expect("not poisoned");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, hash.clone());
        Some(user.to_owned())
    }
}

/// bcrypt's base64: `./A-Za-z0-9`, no padding.
fn bcrypt_b64() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(&base64::alphabet::BCRYPT, base64::engine::general_purpose::NO_PAD)
}

/// The bcrypt hash of `password` with `cost` and `salt` (16 bytes): the
/// 31-character tail of a `$2y$` string (OpenBSD's algorithm on EksBlowfish).
fn bcrypt_tail(password: &[u8], cost: u32, salt: &[u8; 16]) -> String {
    use base64::Engine as _;
    // The key is the password and its NUL, at most 72 bytes.
    let mut key: Vec<u8> = password.iter().copied().chain(std::iter::once(0)).take(72).collect();
    let mut state = blowfish::Blowfish::bc_init_state();
    state.salted_expand_key(salt, &key);
    for _ in 0..(1u64 << cost) {
        state.bc_expand_key(&key);
        state.bc_expand_key(salt);
    }
    let mut words: Vec<u32> =
        b"OrpheanBeholderScryDoubt".chunks(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
    for _ in 0..64 {
        for pair in words.chunks_mut(2) {
            let out = state.bc_encrypt([pair[0], pair[1]]);
            pair[0] = out[0];
            pair[1] = out[1];
        }
    }
    key.iter_mut().for_each(|b| *b = 0);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).take(23).collect();
    bcrypt_b64().encode(bytes)
}

/// Whether `password` matches a `$2a$`/`$2b$`/`$2y$` hash.
fn bcrypt_verify(password: &[u8], hash: &str) -> bool {
    use base64::Engine as _;
    let parts: Vec<&str> = hash.split('$').collect();
    let [_, _, cost, rest] = parts.as_slice() else { return false };
    let Ok(cost) = cost.parse::<u32>() else { return false };
    if !(4..=31).contains(&cost) || rest.len() != 53 {
        return false;
    }
    let (salt, tail) = rest.split_at(22);
    let Ok(salt) = bcrypt_b64().decode(salt) else { return false };
    let Ok(salt) = <[u8; 16]>::try_from(salt.as_slice()) else { return false };
    let mine = bcrypt_tail(password, cost, &salt);
    // Constant time over the tail.
    mine.len() == tail.len() && mine.bytes().zip(tail.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_matches_htpasswd_and_openbsd_vectors() {
        // OpenBSD's test vector and one made by `htpasswd -bnBC 5 u secret`.
        assert!(bcrypt_verify(b"U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
        assert!(!bcrypt_verify(b"U*V", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
        assert!(bcrypt_verify(b"", "$2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s."));
        assert!(!bcrypt_verify(b"x", "$2a$06$short"));
    }
}
