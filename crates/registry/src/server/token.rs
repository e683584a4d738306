//! distribution's token auth: requests carry a JWT (`Authorization: Bearer`)
//! from a token service, whose `access` claim lists what the bearer may do
//! to which repository; a request without one is answered with a challenge
//! naming the service and the scope it needs (as distribution does).
//!
//! [`TokenAuth`] checks tokens: from an external issuer (its certificates,
//! distribution's `auth.token.rootcertbundle`), or from [`TokenIssuer`], a
//! token service of our own: users from an htpasswd file, what each may do
//! from an [`Acl`] of per-repository rules, tokens signed with an RSA or
//! P-256 key (ES256) whose key id is the one distribution computes, so
//! distribution registries accept them too.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::auth::Htpasswd;

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    /// `repository` (or `registry` for the catalog).
    #[serde(rename = "type")]
    pub kind: String,
    /// The repository name (or `catalog`).
    pub name: String,
    /// `pull`, `push`, `delete`, or `*`.
    pub actions: Vec<String>,
}

impl Grant {
    fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind && self.name == name && self.actions.iter().any(|a| a == action || a == "*")
    }
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Claims {
    /// The user it was issued to (`sub`; empty for anonymous).
    pub subject: String,
    /// What it allows.
    pub access: Vec<Grant>,
}

impl Claims {
    /// Whether the token allows `action` on `name` (of `kind`).
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|g| g.allows(kind, name, action))
    }
}

/// A key tokens may be signed with.
#[derive(Debug)]
enum TrustedKey {
    /// A certificate of an external issuer.
    Cert(CertificateDer<'static>),
    /// Our own issuer's public key.
    Own { jws: &'static str, alg: &'static dyn ring::signature::VerificationAlgorithm, public: Vec<u8> },
}

/// distribution's key id: the SHA-256 of the DER public key (SPKI), its
/// first 240 bits in base32, in groups of four joined by `:` (libtrust).
pub fn key_id(spki_der: &[u8]) -> String {
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(spki_der);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut n = 0;
    let mut out = String::new();
    for &b in &sum[..30] {
        bits = (bits << 8) | u64::from(b);
        n += 8;
        while n >= 5 {
            n -= 5;
            out.push(alphabet[((bits >> n) & 31) as usize] as char);
        }
    }
    let groups: Vec<String> =
        out.as_bytes().chunks(4).map(|c| String::from_utf8(c.to_vec()).expect("base32 is ASCII")).collect();
    groups.join(":")
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A DER length.
fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().iter().copied().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER of unsigned big-endian `bytes`.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut v = if trimmed.is_empty() { vec![0] } else { trimmed };
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    der(0x02, &v)
}

/// An ES256 signature (`r || s`) as the DER ECDSA-Sig-Value webpki reads.
fn es256_to_der(sig: &[u8]) -> Option<Vec<u8>> {
    if sig.len() != 64 {
        return None;
    }
    let mut seq = der_uint(&sig[..32]);
    seq.extend(der_uint(&sig[32..]));
    Some(der(0x30, &seq))
}

/// The SPKI of an RSA public key (PKCS#1 `RSAPublicKey` DER).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // rsaEncryption, NULL parameters.
    let alg =
        der(0x30, &[&der(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01])[..], &[0x05, 0x00]].concat());
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    der(0x30, &[alg, der(0x03, &bits)].concat())
}

/// The SPKI of a P-256 public key (an uncompressed point).
fn p256_spki(point: &[u8]) -> Vec<u8> {
    // id-ecPublicKey, prime256v1.
    let alg = der(
        0x30,
        &[
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        ]
        .concat(),
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    der(0x30, &[alg, der(0x03, &bits)].concat())
}

/// Checks bearer tokens.
#[derive(Debug)]
pub struct TokenAuth {
    /// Where clients get tokens (`None`: this server's `/token`, by the
    /// request's `Host`).
    pub realm: Option<String>,
    /// The service tokens must be for (`aud`).
    pub service: String,
    /// The issuer tokens must come from (`iss`).
    pub issuer: String,
    keys: Vec<(String, TrustedKey)>,
}

impl TokenAuth {
    /// Tokens of an external issuer whose signing certificates are in
    /// `rootcertbundle` (PEM), as distribution's `auth.token` configures.
    pub fn external(realm: &str, service: &str, issuer: &str, rootcertbundle: &Path) -> Result<Self, String> {
        let file = rootcertbundle.display();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(rootcertbundle)
            .map_err(|e| format!("{file}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{file}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{file}: no certificates"));
        }
        let mut keys = Vec::new();
        for c in certs {
            let ee = webpki::EndEntityCert::try_from(&c).map_err(|e| format!("{file}: a certificate: {e}"))?;
            let kid = key_id(ee.subject_public_key_info().as_ref());
            keys.push((kid, TrustedKey::Cert(c)));
        }
        if realm.is_empty() || service.is_empty() || issuer.is_empty() {
            return Err("token auth needs a realm, a service and an issuer".into());
        }
        Ok(TokenAuth { realm: Some(realm.into()), service: service.into(), issuer: issuer.into(), keys })
    }

    /// Tokens of our own issuer (realm `None`: this server's `/token`).
    pub fn own(issuer: &TokenIssuer, realm: Option<String>) -> Self {
        TokenAuth {
            realm,
            service: issuer.service.clone(),
            issuer: issuer.issuer.clone(),
            keys: vec![(issuer.kid.clone(), issuer.trusted())],
        }
    }

    /// The `WWW-Authenticate` value for a request that needs `scope`.
    pub fn challenge(&self, realm: &str, scope: Option<&str>, insufficient: bool) -> String {
        let mut c = format!("Bearer realm=\"{realm}\",service=\"{}\"", self.service);
        if let Some(s) = scope {
            c.push_str(&format!(",scope=\"{s}\""));
        }
        if insufficient {
            c.push_str(",error=\"insufficient_scope\"");
        }
        c
    }

    /// Verifies a token: signature by a trusted key, issuer, audience and
    /// times (a minute of leeway, as distribution).
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("not a JWT".into());
        };
        let header: serde_json::Value =
            unb64url(h).and_then(|b| serde_json::from_slice(&b).ok()).ok_or("a malformed JWT header")?;
        let claims: serde_json::Value =
            unb64url(c).and_then(|b| serde_json::from_slice(&b).ok()).ok_or("malformed JWT claims")?;
        let sig = unb64url(s).ok_or("a malformed JWT signature")?;
        let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
        let alg = header["alg"].as_str().unwrap_or_default();
        let kid = header["kid"].as_str();
        // The key the token names first, then the others.
        let mut keys: Vec<&(String, TrustedKey)> = self.keys.iter().filter(|k| Some(k.0.as_str()) == kid).collect();
        keys.extend(self.keys.iter().filter(|k| Some(k.0.as_str()) != kid));
        let verified = keys.iter().any(|(_, key)| match key {
            TrustedKey::Cert(der) => {
                let Ok(ee) = webpki::EndEntityCert::try_from(der) else { return false };
                match alg {
                    "RS256" => ee.verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA256, signed, &sig).is_ok(),
                    "RS384" => ee.verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA384, signed, &sig).is_ok(),
                    "RS512" => ee.verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA512, signed, &sig).is_ok(),
                    "ES256" => es256_to_der(&sig)
                        .is_some_and(|d| ee.verify_signature(webpki::ring::ECDSA_P256_SHA256, signed, &d).is_ok()),
                    _ => false,
                }
            }
            TrustedKey::Own { jws, alg: a, public } => {
                alg == *jws && ring::signature::UnparsedPublicKey::new(*a, public).verify(signed, &sig).is_ok()
            }
        });
        if !verified {
            return Err("the token's signature is not from a trusted key".into());
        }
        if claims["iss"].as_str() != Some(self.issuer.as_str()) {
            return Err(format!("the token is not from issuer {:?}", self.issuer));
        }
        let aud_ok = match &claims["aud"] {
            serde_json::Value::String(a) => *a == self.service,
            serde_json::Value::Array(v) => v.iter().any(|a| a.as_str() == Some(self.service.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(format!("the token is not for service {:?}", self.service));
        }
        let t = now();
        let exp = claims["exp"].as_u64().ok_or("the token has no expiry")?;
        if t > exp + 60 {
            return Err("the token has expired".into());
        }
        if claims["nbf"].as_u64().is_some_and(|nbf| t + 60 < nbf) {
            return Err("the token is not valid yet".into());
        }
        let access: Vec<Grant> = serde_json::from_value(claims["access"].clone()).unwrap_or_default();
        Ok(Claims { subject: claims["sub"].as_str().unwrap_or_default().to_owned(), access })
    }
}

/// One rule of an [`Acl`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Users it applies to (a glob: `*` is any signed-in user).
    #[serde(default)]
    pub account: Option<String>,
    /// It applies to requests without credentials.
    #[serde(default)]
    pub anonymous: bool,
    /// `repository` (default) or `registry` (name `catalog`).
    #[serde(rename = "type", default = "repository")]
    pub kind: String,
    /// Repositories it applies to (a glob; `${account}` is the user's name).
    pub name: String,
    /// What it allows: `pull`, `push`, `delete`, `*`; empty denies.
    pub actions: Vec<String>,
}

fn repository() -> String {
    "repository".into()
}

/// Per-repository rules: for each scope asked, the first rule that
/// matches the user and the repository decides which of the asked actions
/// are granted; no matching rule grants nothing.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

use crate::sync::glob_match as glob;

impl Acl {
    /// Parses the YAML list of rules (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<Self, String> {
        let rules: Vec<Rule> = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e.location().map_or_else(String::new, |l| format!(", line {}", l.line()));
            format!("{file}{at}: {e}")
        })?;
        for (i, r) in rules.iter().enumerate() {
            if r.account.is_none() && !r.anonymous {
                return Err(format!("{file}: rule {}: names no account (or anonymous: true)", i + 1));
            }
            if let Some(a) = r.actions.iter().find(|a| !["pull", "push", "delete", "*"].contains(&a.as_str())) {
                return Err(format!("{file}: rule {}: unknown action {a:?} (pull, push, delete, *)", i + 1));
            }
            if r.kind != "repository" && r.kind != "registry" {
                return Err(format!("{file}: rule {}: type {:?} is not repository or registry", i + 1, r.kind));
            }
        }
        Ok(Acl { rules })
    }

    /// What `user` (`None`: anonymous) gets of the `asked` actions on `name`.
    pub fn grant(&self, user: Option<&str>, kind: &str, name: &str, asked: &[String]) -> Vec<String> {
        let rule = self.rules.iter().find(|r| {
            let who = match (user, &r.account) {
                (Some(u), Some(pattern)) => glob(pattern, u),
                (None, _) => r.anonymous,
                (Some(_), None) => false,
            };
            who && r.kind == kind && glob(&r.name.replace("${account}", user.unwrap_or("\u{0}")), name)
        });
        let Some(rule) = rule else { return Vec::new() };
        if rule.actions.iter().any(|a| a == "*") {
            return asked.to_vec();
        }
        asked.iter().filter(|a| rule.actions.contains(a)).cloned().collect()
    }
}

enum SigningKey {
    Rsa(ring::rsa::KeyPair),
    P256(ring::signature::EcdsaKeyPair),
}

/// A token service of our own (`/token`): users from htpasswd, grants from
/// an [`Acl`].
pub struct TokenIssuer {
    key: SigningKey,
    kid: String,
    /// `iss` of the tokens.
    pub issuer: String,
    /// `aud` of the tokens (the registry's service name).
    pub service: String,
    /// How long a token lives.
    pub lifetime: Duration,
    acl: Acl,
    users: Option<Arc<Htpasswd>>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .field("rules", &self.acl.rules.len())
            .finish_non_exhaustive()
    }
}

/// Why a token was not issued.
#[derive(Debug)]
pub enum Refusal {
    /// Bad credentials (401).
    Unauthorized,
    /// A malformed request (400), and why.
    BadRequest(String),
}

impl TokenIssuer {
    /// An issuer signing with the PKCS#8 PEM key in `key` (RSA, or EC
    /// P-256), or with a P-256 key made now (`None`: tokens then verify only
    /// here, and die with the process).
    pub fn new(
        key: Option<&Path>,
        issuer: &str,
        service: &str,
        acl: Acl,
        users: Option<Arc<Htpasswd>>,
    ) -> Result<Self, String> {
        let rng = ring::rand::SystemRandom::new();
        let key = match key {
            Some(path) => {
                let file = path.display();
                let der = PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{file}: {e}"))?;
                match der {
                    PrivateKeyDer::Pkcs8(p) => match ring::rsa::KeyPair::from_pkcs8(p.secret_pkcs8_der()) {
                        Ok(k) => SigningKey::Rsa(k),
                        Err(_) => SigningKey::P256(
                            ring::signature::EcdsaKeyPair::from_pkcs8(
                                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                                p.secret_pkcs8_der(),
                                &rng,
                            )
                            .map_err(|e| format!("{file}: neither an RSA nor a P-256 key: {e}"))?,
                        ),
                    },
                    PrivateKeyDer::Pkcs1(p) => SigningKey::Rsa(
                        ring::rsa::KeyPair::from_der(p.secret_pkcs1_der()).map_err(|e| format!("{file}: {e}"))?,
                    ),
                    _ => {
                        return Err(format!(
                            "{file}: an EC key in SEC1 form; make it PKCS#8 (openssl pkcs8 -topk8 -nocrypt)"
                        ));
                    }
                }
            }
            None => {
                let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &rng,
                )
                .map_err(|e| format!("making a signing key: {e}"))?;
                SigningKey::P256(
                    ring::signature::EcdsaKeyPair::from_pkcs8(
                        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        pkcs8.as_ref(),
                        &rng,
                    )
                    .map_err(|e| format!("making a signing key: {e}"))?,
                )
            }
        };
        use ring::signature::KeyPair as _;
        let spki = match &key {
            SigningKey::Rsa(k) => rsa_spki(k.public().as_ref()),
            SigningKey::P256(k) => p256_spki(k.public_key().as_ref()),
        };
        Ok(TokenIssuer {
            kid: key_id(&spki),
            key,
            issuer: issuer.into(),
            service: service.into(),
            lifetime: Duration::from_secs(300),
            acl,
            users,
        })
    }

    fn trusted(&self) -> TrustedKey {
        use ring::signature::KeyPair as _;
        match &self.key {
            SigningKey::Rsa(k) => TrustedKey::Own {
                jws: "RS256",
                alg: &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                public: k.public().as_ref().to_vec(),
            },
            SigningKey::P256(k) => TrustedKey::Own {
                jws: "ES256",
                alg: &ring::signature::ECDSA_P256_SHA256_FIXED,
                public: k.public_key().as_ref().to_vec(),
            },
        }
    }

    /// The key id tokens carry (distribution's libtrust form).
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// Answers a token request: `authorization` its header, `params` its
    /// query (GET) or form (POST) pairs. The JSON body to send.
    pub fn issue(&self, authorization: Option<&str>, params: &[(String, String)]) -> Result<String, Refusal> {
        let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_str());
        if let Some(s) = get("service")
            && s != self.service
        {
            return Err(Refusal::BadRequest(format!("this issuer serves {:?}, not {s:?}", self.service)));
        }
        // Who: Basic credentials (GET), or the OAuth2 password grant (POST).
        let user = match get("grant_type") {
            Some("password") => {
                let (u, p) = (get("username").unwrap_or_default(), get("password").unwrap_or_default());
                let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
                Some(self.authenticate(&header)?)
            }
            Some(other) => return Err(Refusal::BadRequest(format!("grant_type {other:?} is not supported"))),
            None => match authorization {
                Some(h) => Some(self.authenticate(h)?),
                None => None,
            },
        };
        let mut access: Vec<Grant> = Vec::new();
        let scopes = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>());
        for scope in scopes {
            let Some((kind, rest)) = scope.split_once(':') else {
                return Err(Refusal::BadRequest(format!("malformed scope {scope:?}")));
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                return Err(Refusal::BadRequest(format!("malformed scope {scope:?}")));
            };
            let asked: Vec<String> = actions.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect();
            let granted = self.acl.grant(user.as_deref(), kind, name, &asked);
            access.push(Grant { kind: kind.into(), name: name.into(), actions: granted });
        }
        let t = now();
        let mut jti = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti)
            .map_err(|_| Refusal::BadRequest("no randomness".into()))?;
        let claims = serde_json::json!({
            "iss": self.issuer, "sub": user.clone().unwrap_or_default(), "aud": self.service,
            "exp": t + self.lifetime.as_secs(), "nbf": t.saturating_sub(10), "iat": t,
            "jti": b64url(&jti), "access": access,
        });
        let token = self.sign(&claims);
        let expires = self.lifetime.as_secs();
        Ok(serde_json::json!({ "token": token, "access_token": token, "expires_in": expires }).to_string())
    }

    fn authenticate(&self, header: &str) -> Result<String, Refusal> {
        let users = self.users.as_ref().ok_or(Refusal::Unauthorized)?;
        users.user(header).ok_or(Refusal::Unauthorized)
    }

    /// A signed JWT of `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let alg = match self.key {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::P256(_) => "ES256",
        };
        let header = serde_json::json!({ "typ": "JWT", "alg": alg, "kid": self.kid });
        let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let rng = ring::rand::SystemRandom::new();
        let sig = match &self.key {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).expect("RSA signs");
                sig
            }
            SigningKey::P256(k) => k.sign(&rng, input.as_bytes()).expect("ECDSA signs").as_ref().to_vec(),
        };
        format!("{input}.{}", b64url(&sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tokens_verify_and_others_do_not() {
        let acl = Acl::parse(
            "- account: alice\n  name: team/*\n  actions: [pull, push]\n- anonymous: true\n  name: public/*\n  actions: [pull]\n",
            "acl.yml",
        )
        .unwrap();
        let issuer = TokenIssuer::new(None, "me", "reg", acl.clone(), None).unwrap();
        let auth = TokenAuth::own(&issuer, None);
        let body: serde_json::Value = serde_json::from_str(
            &issuer.issue(None, &[("scope".into(), "repository:public/x:pull,push".into())]).unwrap(),
        )
        .unwrap();
        let claims = auth.verify(body["token"].as_str().unwrap()).unwrap();
        assert!(claims.allows("repository", "public/x", "pull") && !claims.allows("repository", "public/x", "push"));
        // Another key's token, a tampered one, another service's.
        let other = TokenIssuer::new(None, "me", "reg", acl.clone(), None).unwrap();
        assert!(auth.verify(&other.sign(&serde_json::json!({"iss": "me", "aud": "reg", "exp": now() + 60}))).is_err());
        let t = issuer.sign(&serde_json::json!({"iss": "me", "aud": "reg", "exp": now() + 60, "access": []}));
        assert!(auth.verify(&t).is_ok());
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64url(
            br#"{"iss":"me","aud":"reg","exp":9999999999,"access":[{"type":"repository","name":"x","actions":["*"]}]}"#,
        );
        parts[1] = &forged;
        assert!(auth.verify(&parts.join(".")).is_err());
        assert!(
            auth.verify(&issuer.sign(&serde_json::json!({"iss": "me", "aud": "other", "exp": now() + 60}))).is_err()
        );
        assert!(
            auth.verify(&issuer.sign(&serde_json::json!({"iss": "me", "aud": "reg", "exp": now() - 120}))).is_err()
        );
        // Rules: first match decides; ${account}.
        let acl = Acl::parse("- account: '*'\n  name: ${account}/*\n  actions: ['*']\n", "a").unwrap();
        let all = ["pull".to_owned(), "push".to_owned()];
        assert_eq!(acl.grant(Some("bob"), "repository", "bob/app", &all), all);
        assert!(acl.grant(Some("bob"), "repository", "alice/app", &all).is_empty());
        assert!(acl.grant(None, "repository", "bob/app", &all).is_empty());
        assert!(Acl::parse("- account: a\n  name: x\n  actions: [write]\n", "a").is_err());
    }

    #[test]
    fn key_ids_are_libtrusts() {
        // libtrust: base32 of the first 30 bytes of the SHA-256, in fours
        // (this vector from Python's hashlib and base64).
        assert_eq!(
            key_id(&[0x30, 0x03, 0x02, 0x01, 0x00]),
            "WVQI:GPLP:PB5P:IYIT:XFVK:2TOV:WXI2:4AG4:ZRU4:6MGM:SK7N:MUOF"
        );
    }
}
