//! The async client: requests with auth, manifests, blobs, uploads, tags.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cargohold_image_core::media_type::{self as mt, MANIFEST_ACCEPT};
use cargohold_image_core::{Descriptor, Digest, ImageIndex, MAX_MANIFEST_SIZE, Manifest, RawManifest, Reference};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};

use crate::auth::parse_www_authenticate;
use crate::credentials::{CredentialSource, Credentials};
use crate::error::{Error, Result};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Insecure registries (`host[:port]`): their certificates are not
    /// verified, and when they do not speak TLS at all plain HTTP is used
    /// (HTTPS first, then HTTP, as Docker and containers/image do).
    /// Loopback registries get the HTTP fallback too, but keep verification.
    pub insecure: Vec<String>,
    /// `registries.conf`: locations, mirrors, insecure and blocked
    /// registries, aliases (empty: none).
    pub registries: crate::RegistriesConf,
    /// `false`: every registry as if listed in `insecure` (podman's
    /// `--tls-verify=false`).
    pub tls_verify: bool,
    /// `certs.d` directories: `DIR/HOST[:PORT]/*.crt` CAs trusted for that
    /// registry besides the system store, `NAME.cert` + `NAME.key` a client
    /// certificate. Default: `/etc/containers/certs.d`, `/etc/docker/certs.d`.
    pub cert_dirs: Vec<std::path::PathBuf>,
    /// One directory of certificates (`*.crt` CAs, `NAME.cert` + `NAME.key`)
    /// for every registry, in place of the `cert_dirs` ones (skopeo's and
    /// podman's `--cert-dir`).
    pub cert_dir: Option<std::path::PathBuf>,
    /// A directory of certificates for these registries only (`host[:port]`
    /// as references name them), in place of `cert_dir` and `cert_dirs`
    /// (skopeo's `--src-cert-dir` and `--dest-cert-dir`).
    pub registry_cert_dirs: Vec<(String, std::path::PathBuf)>,
    /// Registries whose certificates are verified whatever `tls_verify`,
    /// `insecure` and `registries.conf` say (skopeo's
    /// `--src-tls-verify=true`).
    pub verified: Vec<String>,
    /// Credentials for every registry, instead of the stored ones (a client
    /// made for one registry).
    pub credentials: Option<Credentials>,
    /// Credentials for these registries only (`host[:port]` as references
    /// name them), before anything else; no other registry ever sees them.
    pub registry_credentials: Vec<(String, Credentials)>,
    /// Registries spoken to anonymously: no credentials, given or stored,
    /// are sent to them (skopeo's `--src-no-creds`).
    pub anonymous: Vec<String>,
    /// Bearer tokens for these registries (skopeo's `--src-registry-token`):
    /// sent as they are, in place of credentials and token requests.
    pub registry_tokens: Vec<(String, String)>,
    /// Where credentials come from when neither of the above names them
    /// (default: none; `AuthFiles::standard(env)` for Docker's and podman's
    /// auth files as a program's environment names them).
    pub credential_source: std::sync::Arc<dyn CredentialSource>,
    /// Attempts per idempotent request (default [`MAX_ATTEMPTS`]; a
    /// pull-through cache wants few, to fall back to its copy quickly).
    pub max_attempts: u32,
    /// A fixed pause between attempts, in place of the growing ones
    /// (skopeo's `--retry-delay`); a registry's `Retry-After` still wins.
    pub retry_delay: Option<Duration>,
    /// How large blobs go up: `0` (the default), each in one streamed
    /// `PATCH` as Docker and skopeo send them; else in `PATCH`es of this many
    /// bytes (4 MiB suits registries that cap request bodies). Blobs up to
    /// 4 MiB go in one `PUT` either way.
    pub chunk_size: usize,
    /// How long to wait for the registry to send anything (connecting, headers,
    /// each piece of a body) before the attempt counts as failed and is retried.
    pub timeout: Duration,
    /// The Docker engine `docker-daemon:` images are read from, in
    /// `DOCKER_HOST`'s syntax (default [`DEFAULT_DOCKER_HOST`](crate::DEFAULT_DOCKER_HOST);
    /// skopeo's `DOCKER_HOST` and `--src-daemon-host`); checked by
    /// [`DockerHost::parse`](crate::DockerHost::parse) when an engine is used.
    pub daemon_host: String,
    /// The one they are written to, when not `daemon_host` (skopeo's
    /// `--dest-daemon-host`).
    pub dest_daemon_host: Option<String>,
    /// Where images moving to or from a Docker engine wait as archives
    /// (default `/var/tmp`, as containers/image's big temp files; skopeo's
    /// `--tmpdir`).
    pub tmpdir: std::path::PathBuf,
    /// Blobs of this size and up, pulled into a destination that writes
    /// blobs on threads of its own (a store), are read on a connection of
    /// their own, driven by the thread that hashes and writes them (default
    /// 4 MiB; smaller blobs share the pooled connections).
    pub own_connection_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: Vec::new(),
            tls_verify: true,
            registries: crate::RegistriesConf::default(),
            cert_dirs: vec!["/etc/containers/certs.d".into(), "/etc/docker/certs.d".into()],
            cert_dir: None,
            registry_cert_dirs: Vec::new(),
            verified: Vec::new(),
            credentials: None,
            registry_credentials: Vec::new(),
            anonymous: Vec::new(),
            registry_tokens: Vec::new(),
            // No stored credentials unless the caller names a source (a
            // program passes `AuthFiles::standard` of its environment).
            credential_source: std::sync::Arc::new(crate::NoCredentials),
            max_attempts: MAX_ATTEMPTS,
            retry_delay: None,
            chunk_size: 0,
            timeout: Duration::from_secs(60),
            daemon_host: crate::DEFAULT_DOCKER_HOST.into(),
            dest_daemon_host: None,
            tmpdir: "/var/tmp".into(),
            own_connection_size: 4 << 20,
        }
    }
}

/// An `Authorization` value and when it stops being good.
#[derive(Debug, Clone)]
struct CachedAuth {
    value: String,
    expires: Option<Instant>,
}

/// Connections of their own, for requests driven by a runtime of their own
/// (a blob read on the thread that writes it, see
/// [`RegistryClient::get_blob_in`]): a connection lives on the runtime that
/// opened it, so these are never pooled with the client's shared ones.
#[derive(Debug, Default)]
pub struct Lane {
    http: Mutex<HashMap<String, reqwest::Client>>,
}

impl Lane {
    /// A lane with no connections yet.
    pub fn new() -> Self {
        Lane::default()
    }
}

/// An OCI distribution client for any number of registries.
#[derive(Debug)]
pub struct RegistryClient {
    /// registry -> its HTTP client (each has the registry's own TLS setup).
    http: Mutex<HashMap<String, reqwest::Client>>,
    /// registry -> its TLS setup (files read once, for every client made).
    tls: Mutex<HashMap<String, rustls::ClientConfig>>,
    /// registry -> whether it speaks plain HTTP (`false`: seen on HTTPS).
    plain: Mutex<HashMap<String, bool>>,
    /// registry -> set once a TLS handshake with it agreed on keys.
    spoke_tls: Mutex<HashMap<String, Arc<AtomicBool>>>,
    opts: ClientOptions,
    /// (registry, scope) -> Authorization header value.
    auth: Mutex<HashMap<(String, String), CachedAuth>>,
    /// (realm, service) -> OAuth2 refresh token handed out by the token server.
    refresh: Mutex<HashMap<(String, String), String>>,
    /// registry/repository -> credentials looked up (helpers run once each).
    creds: Mutex<HashMap<String, Option<Credentials>>>,
}

/// Whether `registry` is on this machine (plain HTTP is then the default).
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(h, p)| !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // An address, parsed: `127.attacker.example` is a name, not loopback.
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl RegistryClient {
    /// A client with `opts`. TLS files are read when a registry is first
    /// spoken to.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        Ok(RegistryClient {
            http: Mutex::new(HashMap::new()),
            tls: Mutex::new(HashMap::new()),
            plain: Mutex::new(HashMap::new()),
            spoke_tls: Mutex::new(HashMap::new()),
            opts,
            auth: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            creds: Mutex::new(HashMap::new()),
        })
    }

    /// The HTTP client for `registry`: the system's roots plus its
    /// `certs.d` CAs, its client certificate, no verification when insecure.
    /// Redirects (to blob storage) are followed; reqwest drops the
    /// Authorization header when a redirect changes host.
    fn http(&self, registry: &str) -> Result<reqwest::Client> {
        self.http_in(None, registry)
    }

    /// [`RegistryClient::http`], or the lane's own client for `registry`.
    fn http_in(&self, lane: Option<&Lane>, registry: &str) -> Result<reqwest::Client> {
        let clients = lane.map_or(&self.http, |l| &l.http);
        if let Some(c) = clients.lock().expect("not poisoned").get(registry) {
            return Ok(c.clone());
        }
        let config = self.tls_config(registry)?;
        let b = reqwest::Client::builder()
            .user_agent(concat!("cargohold/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.opts.timeout)
            .read_timeout(self.opts.timeout)
            .use_preconfigured_tls(config);
        let client = b.build().map_err(|source| Error::Http { url: format!("(TLS setup for {registry})"), source })?;
        clients.lock().expect("not poisoned").insert(registry.to_owned(), client.clone());
        Ok(client)
    }

    /// The TLS setup for `registry`: the system's roots plus its `certs.d`
    /// CAs, its client certificate, no verification when insecure.
    fn tls_config(&self, registry: &str) -> Result<rustls::ClientConfig> {
        if let Some(c) = self.tls.lock().expect("not poisoned").get(registry) {
            return Ok(c.clone());
        }
        let own = self.opts.registry_cert_dirs.iter().find(|(r, _)| r == registry).map(|(_, d)| d);
        let tls = match own.or(self.opts.cert_dir.as_ref()) {
            Some(dir) => crate::tls::dir_tls(dir)?,
            None => crate::tls::registry_tls(&self.opts.cert_dirs, registry)?,
        };
        let spoken = Arc::clone(self.spoke_tls.lock().expect("not poisoned").entry(registry.to_owned()).or_default());
        let config = crate::tls::client_config(tls, !self.skips_verification(registry), Some(spoken))
            .map_err(|e| Error::Tls { path: registry.to_owned(), reason: e.to_string() })?;
        self.tls.lock().expect("not poisoned").insert(registry.to_owned(), config.clone());
        Ok(config)
    }

    /// Whether `registry`'s certificate goes unverified.
    fn skips_verification(&self, registry: &str) -> bool {
        if self.opts.verified.iter().any(|r| r == registry) {
            return false;
        }
        !self.opts.tls_verify
            || self.opts.insecure.iter().any(|r| r == registry)
            || self.opts.registries.insecure_registries().iter().any(|r| r == registry)
    }

    /// How long to wait before attempt `attempt + 1`.
    fn pause(&self, attempt: u32) -> Duration {
        self.opts.retry_delay.unwrap_or_else(|| backoff(attempt))
    }

    /// The settings this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// Whether `registry` may be spoken to in plain HTTP when it does not
    /// speak TLS.
    fn may_use_plain(&self, registry: &str) -> bool {
        is_loopback(registry) || self.skips_verification(registry)
    }

    /// The base URL of a registry: https, unless it may use plain HTTP and
    /// was found not to speak TLS; Docker Hub's API host for `docker.io`.
    pub fn base_url(&self, registry: &str) -> String {
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let plain = self.plain.lock().expect("not poisoned").get(registry).copied().unwrap_or(false);
        format!("{}://{host}", if plain { "http" } else { "https" })
    }

    /// After a request to `url` over HTTPS: records that `registry` speaks
    /// TLS, or, when the connection failed in a way plain HTTP may cure (not
    /// a certificate that failed verification), that it does not, returning
    /// the URL to try instead.
    fn settle_scheme(&self, registry: &str, url: &str, result: &Result<Response>) -> Option<String> {
        let rest = url.strip_prefix("https://")?;
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        if !same_origin(url, &format!("https://{host}")) {
            return None;
        }
        let spoke_tls = self
            .spoke_tls
            .lock()
            .expect("not poisoned")
            .get(registry)
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed));
        let mut plain = self.plain.lock().expect("not poisoned");
        match result {
            // A handshake got as far as keys: it speaks TLS, whatever
            // became of this connection (a registry that wants a client
            // certificate may reset it before its alert is read).
            Err(_) if spoke_tls => {
                plain.insert(registry.to_owned(), false);
                None
            }
            Ok(_) => {
                plain.insert(registry.to_owned(), false);
                None
            }
            Err(Error::Http { source, .. })
                if source.is_connect()
                    && self.may_use_plain(registry)
                    // Not seen speaking TLS (another request may have
                    // found it plain meanwhile).
                    && plain.get(registry) != Some(&false)
                    && !is_certificate_error(source) =>
            {
                plain.insert(registry.to_owned(), true);
                Some(format!("http://{rest}"))
            }
            _ => None,
        }
    }

    /// The upload chunk size (`0`: one streamed request per blob).
    pub fn chunk_size(&self) -> usize {
        self.opts.chunk_size
    }

    /// The cached `Authorization` for `registry` and `scope`, if still good.
    fn cached_auth(&self, registry: &str, scope: &str) -> Option<String> {
        let cache = self.auth.lock().expect("not poisoned");
        cache
            .get(&(registry.to_owned(), scope.to_owned()))
            .filter(|c| c.expires.is_none_or(|e| Instant::now() < e))
            .map(|c| c.value.clone())
            .or_else(|| self.given_token(registry))
    }

    /// The `Authorization` of a bearer token given for `registry`.
    fn given_token(&self, registry: &str) -> Option<String> {
        self.opts.registry_tokens.iter().find(|(r, _)| r == registry).map(|(_, t)| format!("Bearer {t}"))
    }

    /// Sends `size` bytes of `body` in one `PATCH` to the upload (with the
    /// credentials its session was opened with). A stream cannot be sent
    /// twice: a failure is final for this upload.
    pub async fn upload_streamed(&self, mut up: Upload, body: reqwest::Body, size: u64) -> Result<Upload> {
        let http = self.http(&up.registry)?;
        let mut req = http
            .patch(&up.location)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(body);
        if same_origin(&up.location, &self.base_url(&up.registry))
            && let Some(auth) = self.cached_auth(&up.registry, &up.scope)
        {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let resp = req.send().await.map_err(|source| Error::Http { url: up.location.clone(), source })?;
        let resp = Self::expect(resp, "PATCH", &[202]).await?;
        up.location = location_or(&up.base, &resp, &up.location);
        up.offset = size;
        Ok(up)
    }

    /// The credentials for `repository` (empty: the registry as a whole)
    /// of `registry`: none when it is spoken to anonymously, else given for
    /// it, given for all, else from the credential source (asked once per
    /// repository).
    fn credentials(&self, registry: &str, repository: &str) -> Result<Option<Credentials>> {
        if self.opts.anonymous.iter().any(|r| r == registry) {
            return Ok(None);
        }
        if let Some((_, c)) = self.opts.registry_credentials.iter().find(|(r, _)| r == registry) {
            return Ok(Some(c.clone()));
        }
        if let Some(c) = &self.opts.credentials {
            return Ok(Some(c.clone()));
        }
        let key = format!("{registry}/{repository}");
        if let Some(c) = self.creds.lock().expect("not poisoned").get(&key) {
            return Ok(c.clone());
        }
        let found = self.opts.credential_source.credentials(registry, repository)?;
        self.creds.lock().expect("not poisoned").insert(key, found.clone());
        Ok(found)
    }

    /// Sends a request built by `build`, authenticating on a 401 challenge
    /// (Basic, or a Bearer token for `scope`). Idempotent requests (GET, HEAD,
    /// DELETE, and the POST that opens an upload) are retried on connection errors,
    /// 5xx and 429, with exponential backoff or the registry's `Retry-After`
    /// (capped at 30 s), up to `max_attempts` times ([`MAX_ATTEMPTS`] by default).
    pub(crate) async fn send(
        &self,
        registry: &str,
        scope: &str,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        self.send_in(None, registry, scope, method, url, build).await
    }

    /// [`RegistryClient::send`] on the lane's connections, when given one.
    pub(crate) async fn send_in(
        &self,
        lane: Option<&Lane>,
        registry: &str,
        scope: &str,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let retryable = matches!(method, Method::GET | Method::HEAD | Method::POST | Method::DELETE);
        let mut attempt = 1;
        let mut url = url.to_owned();
        loop {
            let result = self.send_once(lane, registry, scope, method.clone(), &url, &build).await;
            if let Some(plain) = self.settle_scheme(registry, &url, &result) {
                url = plain;
                continue;
            }
            let delay = match &result {
                Ok(resp)
                    if retryable
                        && (resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS) =>
                {
                    let after = resp
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    Some(after.map_or_else(|| self.pause(attempt), |s| std::time::Duration::from_secs(s.min(30))))
                }
                Err(Error::Http { source, .. })
                    if retryable
                        && (source.is_connect() || source.is_timeout() || source.is_request())
                        && !is_certificate_error(source) =>
                {
                    Some(self.pause(attempt))
                }
                _ => None,
            };
            match delay {
                Some(d) if attempt < self.opts.max_attempts.max(1) => {
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }

    async fn send_once(
        &self,
        lane: Option<&Lane>,
        registry: &str,
        scope: &str,
        method: Method,
        url: &str,
        build: &impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        // Credentials go only to the registry's own origin (an upload
        // Location may point elsewhere); reqwest drops them on redirects
        // that change host.
        let ours = same_origin(url, &self.base_url(registry));
        let key = (registry.to_owned(), scope.to_owned());
        let cached = if ours {
            let mut cache = self.auth.lock().expect("not poisoned");
            match cache.get(&key) {
                Some(c) if c.expires.is_none_or(|e| Instant::now() < e) => Some(c.value.clone()),
                Some(_) => {
                    cache.remove(&key);
                    None
                }
                None => self.given_token(registry),
            }
        } else {
            None
        };
        let http = self.http_in(lane, registry)?;
        let mut req = build(http.request(method.clone(), url));
        if let Some(a) = &cached {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = req.send().await.map_err(|source| Error::Http { url: url.into(), source })?;
        if resp.status() != StatusCode::UNAUTHORIZED || !ours {
            return Ok(resp);
        }
        let challenge =
            resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if challenge.is_empty() {
            return Ok(resp);
        }
        let auth = self.authorize(lane, registry, scope, &challenge).await?;
        self.auth.lock().expect("not poisoned").insert(key, auth.clone());
        build(http.request(method, url))
            .header(header::AUTHORIZATION, auth.value)
            .send()
            .await
            .map_err(|source| Error::Http { url: url.into(), source })
    }

    /// Answers a challenge: Basic from the credentials, or a Bearer token from
    /// the challenge's realm for `scope` (several scopes separated by spaces).
    /// With an identity token, or a refresh token an earlier answer carried,
    /// the token is fetched with an OAuth2 `refresh_token` grant (POST); else
    /// with a GET carrying Basic credentials (asking for a refresh token).
    async fn authorize(&self, lane: Option<&Lane>, registry: &str, scope: &str, challenge: &str) -> Result<CachedAuth> {
        let fail = |reason: String| Error::Auth { registry: registry.into(), reason };
        if let Some(value) = self.given_token(registry) {
            return Ok(CachedAuth { value, expires: None });
        }
        let challenges = parse_www_authenticate(challenge);
        // The repository the request is for: the first of the scope
        // (`repository:NAME:actions`; a mount's target comes first).
        let repository = scope
            .split_whitespace()
            .find_map(|s| s.strip_prefix("repository:"))
            .and_then(|s| s.rsplit_once(':').map(|(name, _)| name))
            .unwrap_or("");
        let creds = self.credentials(registry, repository)?;
        let http = self.http_in(lane, registry)?;
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer.params.get("realm").ok_or_else(|| fail("the Bearer challenge has no realm".into()))?;
            let service = bearer.params.get("service").cloned().unwrap_or_default();
            let scope =
                if scope.is_empty() { bearer.params.get("scope").cloned().unwrap_or_default() } else { scope.into() };
            let scopes: Vec<&str> = scope.split_whitespace().collect();
            let rkey = (realm.clone(), service.clone());
            let refresh = creds
                .as_ref()
                .and_then(|c| c.identity_token().map(str::to_owned))
                .or_else(|| self.refresh.lock().expect("not poisoned").get(&rkey).cloned());
            let mut resp = None;
            if let Some(token) = &refresh {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "cargohold"),
                    ("service", service.as_str()),
                ];
                let joined = scopes.join(" ");
                if !joined.is_empty() {
                    form.push(("scope", &joined));
                }
                let r = http
                    .post(realm)
                    .form(&form)
                    .send()
                    .await
                    .map_err(|source| Error::Http { url: realm.clone(), source })?;
                // A token server without OAuth2 support: fall back to GET.
                if !matches!(r.status().as_u16(), 404 | 405) {
                    resp = Some(r);
                }
            }
            let resp = match resp {
                Some(r) => r,
                None => {
                    let mut query: Vec<(&str, &str)> = Vec::new();
                    if !service.is_empty() {
                        query.push(("service", &service));
                    }
                    query.extend(scopes.iter().map(|s| ("scope", *s)));
                    let mut req = http.get(realm);
                    if let Some(c) = creds.as_ref().filter(|c| c.identity_token().is_none()) {
                        query.push(("offline_token", "true"));
                        query.push(("client_id", "cargohold"));
                        req = req.basic_auth(&c.username, Some(&c.password));
                    }
                    req.query(&query).send().await.map_err(|source| Error::Http { url: realm.clone(), source })?
                }
            };
            if !resp.status().is_success() {
                return Err(fail(format!("the token server {realm} answered {}", resp.status().as_u16())));
            }
            let body = read_capped(resp, MAX_TOKEN_BODY, realm, false).await?;
            let body: TokenResponse = serde_json::from_slice(&body)
                .map_err(|e| fail(format!("the token server {realm} sent no token JSON: {e}")))?;
            let token = body
                .token
                .or(body.access_token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| fail(format!("the token server {realm} returned no token")))?;
            if let Some(rt) = body.refresh_token.filter(|t| !t.is_empty()) {
                self.refresh.lock().expect("not poisoned").insert(rkey, rt);
            }
            // The spec's default lifetime is 60 s; renew a little early.
            let lifetime = body.expires_in.unwrap_or(60).max(1);
            let expires = Instant::now() + Duration::from_secs(lifetime).saturating_sub(Duration::from_secs(5));
            return Ok(CachedAuth { value: format!("Bearer {token}"), expires: Some(expires) });
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let c = creds.filter(|c| c.identity_token().is_none()).ok_or_else(|| {
                fail("the registry wants a user name and password; use `cargohold login` or REGISTRY_AUTH_FILE".into())
            })?;
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
            return Ok(CachedAuth { value: format!("Basic {raw}"), expires: None });
        }
        Err(fail(format!("unsupported challenge {challenge:?}")))
    }

    /// Checks a response's status, turning others into [`Error::Status`].
    pub(crate) async fn expect(resp: Response, method: &'static str, ok: &[u16]) -> Result<Response> {
        if ok.contains(&resp.status().as_u16()) {
            return Ok(resp);
        }
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let url = resp.url().to_string();
            return Err(Error::Auth { registry: url, reason: format!("access denied ({})", resp.status().as_u16()) });
        }
        let status = resp.status().as_u16();
        let url = resp.url().to_string();
        let body = read_capped(resp, MAX_ERROR_BODY, &url, true).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        Err(Error::Status { method, url, status, body: body.chars().take(300).collect() })
    }

    /// Fetches a manifest by tag or digest and verifies it: against the digest
    /// asked for, else against `Docker-Content-Digest`.
    pub async fn get_manifest(&self, r: &Reference) -> Result<RawManifest> {
        let reference =
            r.digest().map(|d| d.to_string()).or_else(|| r.tag().map(str::to_owned)).unwrap_or_else(|| "latest".into());
        self.get_manifest_ref(r.registry(), r.repository(), &reference, r.digest()).await
    }

    /// Fetches a manifest by tag or digest string, verified against `digest`
    /// when given, else against `Docker-Content-Digest`.
    pub async fn get_manifest_ref(
        &self,
        registry: &str,
        repo: &str,
        reference: &str,
        digest: Option<&Digest>,
    ) -> Result<RawManifest> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url(registry));
        let scope = format!("repository:{repo}:pull");
        let resp = self
            .send(registry, &scope, Method::GET, &url, |b| b.header(header::ACCEPT, MANIFEST_ACCEPT.join(", ")))
            .await?;
        let resp = Self::expect(resp, "GET", &[200]).await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| Digest::parse(s).ok());
        let bytes = read_capped(resp, MAX_MANIFEST_SIZE, &url, false).await?;
        let raw = RawManifest::new(bytes, content_type.as_deref())
            .map_err(|e| Error::from(cargohold_image_core::Error::from(e)))?;
        if let Some(expected) = digest.or(announced.as_ref()) {
            let actual = expected.same_algorithm_of(&raw.bytes);
            if &actual != expected {
                return Err(Error::DigestMismatch { url, expected: expected.to_string(), actual: actual.to_string() });
            }
        }
        Ok(raw)
    }

    /// Starts downloading a blob (redirects to blob storage are followed).
    /// Read it with [`BlobStream::chunk`], which resumes with `Range` when the
    /// connection breaks.
    pub async fn get_blob(&self, registry: &str, repo: &str, desc: &Descriptor) -> Result<BlobStream> {
        self.get_blob_in(None, registry, repo, desc).await
    }

    /// [`RegistryClient::get_blob`] on a lane's own connections (resumes
    /// too): for a blob read by a runtime of its own, which drives its
    /// connection on the thread that consumes the bytes.
    pub async fn get_blob_in(
        &self,
        lane: Option<Arc<Lane>>,
        registry: &str,
        repo: &str,
        desc: &Descriptor,
    ) -> Result<BlobStream> {
        let url = format!("{}/v2/{repo}/blobs/{}", self.base_url(registry), desc.digest);
        let scope = format!("repository:{repo}:pull");
        let resp = self.send_in(lane.as_deref(), registry, &scope, Method::GET, &url, |b| b).await?;
        let resp = Self::expect(resp, "GET", &[200]).await?;
        Ok(BlobStream {
            lane,
            registry: registry.into(),
            scope,
            url,
            resp,
            received: 0,
            skip: 0,
            resumes: 0,
            stalled: 0,
            received_at_failure: 0,
        })
    }

    /// `GET` of any `http(s)://` URL (an archive to load or import), with
    /// the TLS setup of its host and no credentials; a status other than 200
    /// is an error naming the URL.
    pub async fn get_url(&self, url: &str) -> Result<Response> {
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(|| {
            Error::Status { method: "GET", url: url.into(), status: 0, body: "not an http(s) URL".into() }
        })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let http = self.http(host)?;
        let resp = http.get(url).send().await.map_err(|source| Error::Http { url: url.into(), source })?;
        Self::expect(resp, "GET", &[200]).await
    }

    /// Checks that the registry answers and that the credentials (if any)
    /// are accepted: `GET /v2/`, authenticating as a challenge asks.
    pub async fn ping(&self, registry: &str) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(registry));
        let resp = self.send(registry, "", Method::GET, &url, |b| b).await?;
        Self::expect(resp, "GET", &[200]).await.map(|_| ())
    }

    /// `HEAD` of a manifest: its descriptor (digest, size, media type) without
    /// fetching it. Falls back to a verified `GET` when the registry sends no
    /// `Docker-Content-Digest`. `None` when there is no such manifest.
    pub async fn head_manifest(&self, registry: &str, repo: &str, reference: &str) -> Result<Option<Descriptor>> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url(registry));
        let scope = format!("repository:{repo}:pull");
        let resp = self
            .send(registry, &scope, Method::HEAD, &url, |b| b.header(header::ACCEPT, MANIFEST_ACCEPT.join(", ")))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::expect(resp, "HEAD", &[200]).await?;
        let digest = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(Digest::parse);
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let size = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match (digest, media_type, size) {
            (Some(Ok(d)), Some(m), Some(n)) => Ok(Some(Descriptor::new(m, d, n))),
            _ => {
                let d = Digest::parse(reference).ok();
                Ok(Some(self.get_manifest_ref(registry, repo, reference, d.as_ref()).await?.descriptor()))
            }
        }
    }

    /// Whether the repository has the blob.
    pub async fn has_blob(&self, registry: &str, repo: &str, digest: &Digest) -> Result<bool> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base_url(registry));
        let resp = self.send(registry, &format!("repository:{repo}:pull,push"), Method::HEAD, &url, |b| b).await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Self::expect(resp, "HEAD", &[200]).await.map(|_| true),
        }
    }

    /// Opens an upload session for a blob in `repo`.
    pub async fn start_upload(&self, registry: &str, repo: &str) -> Result<Upload> {
        let scope = format!("repository:{repo}:pull,push");
        let base = self.base_url(registry);
        let start = format!("{base}/v2/{repo}/blobs/uploads/");
        let resp = self.send(registry, &scope, Method::POST, &start, |b| b.header(header::CONTENT_LENGTH, 0)).await?;
        let resp = Self::expect(resp, "POST", &[202]).await?;
        let base = self.base_url(registry);
        let location = location(&base, &resp, &start)?;
        Ok(Upload { registry: registry.into(), scope, base, location, offset: 0 })
    }

    /// Asks the registry to mount `digest` from `from_repo` into `repo`
    /// (same registry), with a token scoped to push to `repo` and pull from
    /// `from_repo`. `Ok(None)` when mounted; `Ok(Some(upload))` when the registry
    /// opened an ordinary upload instead (202), which the caller should use.
    pub async fn mount_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        from_repo: &str,
    ) -> Result<Option<Upload>> {
        let scope = format!("repository:{repo}:pull,push repository:{from_repo}:pull");
        let base = self.base_url(registry);
        let start = format!("{base}/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}");
        let resp = self.send(registry, &scope, Method::POST, &start, |b| b.header(header::CONTENT_LENGTH, 0)).await?;
        let resp = Self::expect(resp, "POST", &[201, 202]).await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(None);
        }
        let base = self.base_url(registry);
        let location = location(&base, &resp, &start)?;
        Ok(Some(Upload { registry: registry.into(), scope, base, location, offset: 0 }))
    }

    /// Asks how many bytes of an upload the registry holds (`GET` on the
    /// session; the `Range: 0-N` answer) and moves the session there.
    pub async fn upload_status(&self, up: &mut Upload) -> Result<u64> {
        let resp = self.send(&up.registry, &up.scope, Method::GET, &up.location, |b| b).await?;
        let resp = Self::expect(resp, "GET", &[204]).await?;
        let offset = resp
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().trim_start_matches("bytes=").split_once('-').map(|(_, e)| e.to_owned()))
            .and_then(|e| e.parse::<u64>().ok())
            // distribution answers "0-0" for an empty upload too: read it as
            // empty (were it one byte, the next PATCH gets 416 again).
            .map_or(0, |end| if end == 0 { 0 } else { end + 1 });
        up.location = location_or(&up.base, &resp, &up.location);
        up.offset = offset;
        Ok(offset)
    }

    /// Sends one chunk with `PATCH` and `Content-Range` (chunked upload). On
    /// 416 (the registry holds a different amount than we thought) it asks
    /// for the upload's status and sends what is missing from there.
    pub async fn upload_chunk(&self, up: &mut Upload, chunk: Vec<u8>) -> Result<()> {
        // Bytes: the request closure may run twice (auth retry); cloning is O(1).
        let all = bytes::Bytes::from(chunk);
        let start = up.offset;
        let end = start + all.len() as u64;
        let mut resyncs = 0;
        while up.offset < end {
            let part = all.slice((up.offset - start) as usize..);
            let range = format!("{}-{}", up.offset, end - 1);
            let resp = self
                .send(&up.registry, &up.scope, Method::PATCH, &up.location, |b| {
                    b.header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_RANGE, range.clone())
                        .header(header::CONTENT_LENGTH, part.len())
                        .body(part.clone())
                })
                .await?;
            if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE && resyncs < MAX_ATTEMPTS {
                resyncs += 1;
                let held = self.upload_status(up).await?;
                if held < start || held > end {
                    return Err(Error::Status {
                        method: "PATCH",
                        url: up.location.clone(),
                        status: 416,
                        body: format!("the registry holds {held} bytes of the upload; this chunk covers {start}-{end}"),
                    });
                }
                continue;
            }
            let resp = Self::expect(resp, "PATCH", &[202]).await?;
            up.offset = end;
            up.location = location_or(&up.base, &resp, &up.location);
        }
        Ok(())
    }

    /// Closes the session with `PUT ?digest=`, sending `last` as the final
    /// bytes (the whole blob for a monolithic upload). The registry verifies
    /// the digest.
    pub async fn finish_upload(&self, up: Upload, digest: &Digest, last: Vec<u8>) -> Result<()> {
        let url = with_query(&up.location, &format!("digest={digest}"));
        let last = bytes::Bytes::from(last);
        let resp = self
            .send(&up.registry, &up.scope, Method::PUT, &url, |b| {
                b.header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, last.len())
                    .body(last.clone())
            })
            .await?;
        Self::expect(resp, "PUT", &[201]).await?;
        Ok(())
    }

    /// Stores a manifest under a tag or digest. Returns whether the registry
    /// processed its `subject` (the `OCI-Subject` header of OCI 1.1).
    pub async fn put_manifest(&self, registry: &str, repo: &str, reference: &str, m: &RawManifest) -> Result<bool> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url(registry));
        let bytes = bytes::Bytes::from(m.bytes.clone());
        let resp = self
            .send(registry, &format!("repository:{repo}:pull,push"), Method::PUT, &url, |b| {
                b.header(header::CONTENT_TYPE, &m.media_type).body(bytes.clone())
            })
            .await?;
        let resp = Self::expect(resp, "PUT", &[201, 200]).await?;
        Ok(resp.headers().contains_key("oci-subject"))
    }

    /// Deletes a manifest by digest (the tags pointing at it go with it), or
    /// by tag only the tag (OCI 1.1; registries may refuse).
    pub async fn delete_manifest(&self, registry: &str, repo: &str, reference: &str) -> Result<()> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url(registry));
        let resp = self.send(registry, &format!("repository:{repo}:delete"), Method::DELETE, &url, |b| b).await?;
        Self::expect(resp, "DELETE", &[202, 200]).await.map(|_| ())
    }

    /// Deletes a blob.
    pub async fn delete_blob(&self, registry: &str, repo: &str, digest: &Digest) -> Result<()> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base_url(registry));
        let resp = self.send(registry, &format!("repository:{repo}:delete"), Method::DELETE, &url, |b| b).await?;
        Self::expect(resp, "DELETE", &[202, 200]).await.map(|_| ())
    }

    /// The manifests whose `subject` is `digest`, optionally only those of
    /// `artifact_type`: the referrers API, or where the registry lacks it (404),
    /// the `sha256-<hex>` tag schema of OCI 1.1.
    pub async fn referrers(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut url = format!("{}/v2/{repo}/referrers/{digest}", self.base_url(registry));
        if let Some(t) = artifact_type {
            url = with_query(&url, &format!("artifactType={}", query_escape(t)));
        }
        let scope = format!("repository:{repo}:pull");
        let resp = self.send(registry, &scope, Method::GET, &url, |b| b.header(header::ACCEPT, mt::OCI_INDEX)).await?;
        let is_index = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(mt::OCI_INDEX));
        let list = if resp.status() == StatusCode::OK && is_index {
            let body = read_capped(resp, MAX_MANIFEST_SIZE, &url, false).await?;
            let idx: ImageIndex = serde_json::from_slice(&body).map_err(|e| Error::Status {
                method: "GET",
                url,
                status: 200,
                body: format!("not an index: {e}"),
            })?;
            idx.manifests
        } else if matches!(resp.status().as_u16(), 404 | 400 | 405) {
            self.referrers_tag_index(registry, repo, digest).await?.map(|i| i.manifests).unwrap_or_default()
        } else {
            Self::expect(resp, "GET", &[200]).await?;
            Vec::new()
        };
        Ok(list.into_iter().filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t))).collect())
    }

    /// The index kept under the fallback tag `<alg>-<hex>` of `digest`.
    async fn referrers_tag_index(&self, registry: &str, repo: &str, digest: &Digest) -> Result<Option<ImageIndex>> {
        let tag = referrers_tag(digest);
        if self.head_manifest(registry, repo, &tag).await?.is_none() {
            return Ok(None);
        }
        let raw = self.get_manifest_ref(registry, repo, &tag, None).await?;
        match raw.parse().map_err(|e| Error::from(cargohold_image_core::Error::from(e)))? {
            Manifest::Index(i) => Ok(Some(i)),
            Manifest::Image(_) => Err(Error::Status {
                method: "GET",
                url: format!("{}/v2/{repo}/manifests/{tag}", self.base_url(registry)),
                status: 200,
                body: "the referrers fallback tag holds an image, not an index".into(),
            }),
        }
    }

    /// Records `referrer` (a manifest with a `subject`) under the fallback tag
    /// of its subject, for registries without the referrers API.
    pub async fn add_referrer_to_fallback(
        &self,
        registry: &str,
        repo: &str,
        subject: &Digest,
        referrer: Descriptor,
    ) -> Result<()> {
        let mut idx = self.referrers_tag_index(registry, repo, subject).await?.unwrap_or_else(ImageIndex::new_oci);
        if idx.manifests.iter().any(|d| d.digest == referrer.digest) {
            return Ok(());
        }
        idx.manifests.push(referrer);
        let raw = RawManifest::from_value(&idx, mt::OCI_INDEX);
        self.put_manifest(registry, repo, &referrers_tag(subject), &raw).await.map(|_| ())
    }

    /// Every repository of a registry (`/v2/_catalog`), following pagination.
    pub async fn catalog(&self, registry: &str) -> Result<Vec<String>> {
        let base = self.base_url(registry);
        self.paginated(registry, "registry:catalog:*", format!("{base}/v2/_catalog?n={PAGE}"), "repositories").await
    }

    /// Every tag of a repository, following `Link` pagination.
    pub async fn tags(&self, registry: &str, repo: &str) -> Result<Vec<String>> {
        let base = self.base_url(registry);
        self.paginated(
            registry,
            &format!("repository:{repo}:pull"),
            format!("{base}/v2/{repo}/tags/list?n={PAGE}"),
            "tags",
        )
        .await
    }

    /// Collects the strings under `field` of every page, following `Link:
    /// rel="next"` (and, for registries that send no `Link`, `last=`).
    async fn paginated(&self, registry: &str, scope: &str, first: String, field: &str) -> Result<Vec<String>> {
        let mut url = first.clone();
        let mut out: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let resp = self.send(registry, scope, Method::GET, &url, |b| b).await?;
            let resp = Self::expect(resp, "GET", &[200]).await?;
            let next = resp.headers().get(header::LINK).and_then(|v| v.to_str().ok()).and_then(parse_link_next);
            let base = self.base_url(registry);
            let body = read_capped(resp, MAX_LIST_PAGE, &url, false).await?;
            let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::Status {
                method: "GET",
                url: url.clone(),
                status: 200,
                body: format!("not a JSON list: {e}"),
            })?;
            let page: Vec<String> = body
                .get(field)
                .and_then(|t| t.as_array())
                .map(|l| l.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let full = page.len() >= PAGE;
            let last = page.last().cloned();
            let before = out.len();
            // Registries that ignore `n`/`last` answer the same page again:
            // only new entries count, and a page with none ends the listing.
            out.extend(page.into_iter().filter(|e| seen.insert(e.clone())));
            if out.len() == before {
                return Ok(out);
            }
            if out.len() > MAX_LIST_NAMES {
                return Err(Error::Status {
                    method: "GET",
                    url,
                    status: 200,
                    body: format!("the list goes on past {MAX_LIST_NAMES} names: refusing more"),
                });
            }
            match (next, last) {
                (Some(n), _) if n.starts_with('/') => url = format!("{base}{n}"),
                (Some(n), _) => url = n,
                // No Link but a full page: ask for what follows the last entry.
                (None, Some(last)) if full => {
                    let path = resp_path(&first);
                    let path = format!("{base}{path}");
                    url = format!("{path}?n={PAGE}&last={last}");
                }
                (None, _) => return Ok(out),
            }
        }
    }
}

/// The tag the OCI 1.1 fallback keeps referrers under: `sha256-<hex>`.
pub fn referrers_tag(digest: &Digest) -> String {
    digest.as_str().replacen(':', "-", 1)
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

/// The path of a URL (`/v2/...`), without its query.
fn resp_path(url: &str) -> &str {
    let no_query = url.split('?').next().unwrap_or(url);
    let after_scheme = no_query.split_once("://").map_or(no_query, |(_, r)| r);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

/// Whether a connection failed because the peer's certificate was refused
/// (as opposed to a peer that does not speak TLS).
fn is_certificate_error(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::AlertReceived(_)
            );
        }
        // io::Error's `source` skips the error it wraps: go into it.
        source = match s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => s.source(),
        };
    }
    false
}

/// Whether `url` has the scheme, host and port of `base`.
fn same_origin(url: &str, base: &str) -> bool {
    url.strip_prefix(base).is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// A blob download that resumes after a broken connection: it asks again
/// with `Range: bytes=N-` (skipping N bytes itself if the registry answers
/// with the whole blob), until [`MAX_ATTEMPTS`] attempts in a row bring
/// nothing new.
#[derive(Debug)]
pub struct BlobStream {
    lane: Option<Arc<Lane>>,
    registry: String,
    scope: String,
    url: String,
    resp: Response,
    received: u64,
    skip: u64,
    resumes: u32,
    stalled: u32,
    received_at_failure: u64,
}

impl BlobStream {
    /// The next bytes of the blob; `None` at the end.
    pub async fn chunk(&mut self, client: &RegistryClient) -> Result<Option<bytes::Bytes>> {
        loop {
            match self.resp.chunk().await {
                Ok(Some(mut b)) => {
                    if self.skip > 0 {
                        let n = (self.skip as usize).min(b.len());
                        b = b.slice(n..);
                        self.skip -= n as u64;
                        if b.is_empty() {
                            continue;
                        }
                    }
                    self.received += b.len() as u64;
                    return Ok(Some(b));
                }
                Ok(None) => return Ok(None),
                Err(source) => {
                    // Give up after `max_attempts` failures in a row without
                    // a byte of progress; progress starts the count again.
                    if self.received > self.received_at_failure {
                        self.stalled = 0;
                    }
                    self.received_at_failure = self.received;
                    self.stalled += 1;
                    if self.stalled >= client.opts.max_attempts.max(1) {
                        return Err(Error::Http { url: self.url.clone(), source });
                    }
                    self.resumes += 1;
                    tokio::time::sleep(client.pause(self.stalled)).await;
                    let range = format!("bytes={}-", self.received);
                    let resp = client
                        .send_in(self.lane.as_deref(), &self.registry, &self.scope, Method::GET, &self.url, |b| {
                            b.header(header::RANGE, range.clone())
                        })
                        .await?;
                    let resp = RegistryClient::expect(resp, "GET", &[200, 206]).await?;
                    if resp.status() == StatusCode::PARTIAL_CONTENT {
                        let start = resp
                            .headers()
                            .get(header::CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().strip_prefix("bytes "))
                            .and_then(|v| v.split('-').next())
                            .and_then(|v| v.parse::<u64>().ok());
                        if start != Some(self.received) {
                            return Err(Error::Status {
                                method: "GET",
                                url: self.url.clone(),
                                status: 206,
                                body: format!("asked to resume at byte {}, got {start:?}", self.received),
                            });
                        }
                        self.skip = 0;
                    } else {
                        self.skip = self.received;
                    }
                    self.resp = resp;
                }
            }
        }
    }

    /// Bytes delivered so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// How many times the download was resumed.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }
}

/// Entries asked for per page of tags or catalog.
const PAGE: usize = 100;

/// Attempts per idempotent request before giving up.
pub const MAX_ATTEMPTS: u32 = 5;

/// The most a token response, an error body's start, or one page of a tag
/// or catalog list may take: a registry is hostile input.
const MAX_TOKEN_BODY: u64 = 1 << 20;
const MAX_ERROR_BODY: u64 = 4 << 10;
const MAX_LIST_PAGE: u64 = 16 << 20;
/// The most names a paginated list may add up to.
const MAX_LIST_NAMES: usize = 1_000_000;

/// Reads `resp`'s body, at most `limit` bytes: more is an error naming
/// the URL (`truncate`: the first `limit` bytes, and no error).
async fn read_capped(mut resp: Response, limit: u64, url: &str, truncate: bool) -> Result<Vec<u8>> {
    let too_large = || Error::TooLarge { url: url.to_owned(), limit };
    if !truncate && resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| Error::Http { url: url.to_owned(), source })? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > limit {
            if truncate {
                bytes.truncate(limit as usize);
                return Ok(bytes);
            }
            return Err(too_large());
        }
    }
    Ok(bytes)
}

/// 200 ms, 400 ms, 800 ms, ... capped at 5 s.
fn backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis((200u64 << attempt.min(5)).min(5000))
}

/// An open blob upload session.
#[derive(Debug)]
pub struct Upload {
    registry: String,
    scope: String,
    base: String,
    location: String,
    offset: u64,
}

/// The `rel="next"` target of a `Link` header (`</v2/x/tags/list?last=a&n=100>; rel="next"`).
pub fn parse_link_next(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            .then(|| target.to_owned())
    })
}

fn location(base: &str, resp: &Response, url: &str) -> Result<String> {
    let loc = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| Error::Status {
        method: "POST",
        url: url.into(),
        status: resp.status().as_u16(),
        body: "no Location header for the upload".into(),
    })?;
    Ok(absolute(base, loc))
}

fn location_or(base: &str, resp: &Response, current: &str) -> String {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| current.to_owned(), |l| absolute(base, l))
}

fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") { loc.to_owned() } else { format!("{base}{loc}") }
}

/// Percent-encodes a query value (a media type's `+` would read as a space).
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn with_query(url: &str, q: &str) -> String {
    format!("{url}{}{q}", if url.contains('?') { "&" } else { "?" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_and_loopback() {
        assert_eq!(
            parse_link_next(r#"</v2/a/tags/list?last=x&n=100>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=100")
        );
        assert_eq!(
            parse_link_next(
                r#"<https://r/v2/_catalog?last=b>; rel="prev", <https://r/v2/_catalog?last=c>; rel="next""#
            )
            .as_deref(),
            Some("https://r/v2/_catalog?last=c")
        );
        assert_eq!(parse_link_next(r#"</x>; rel="prev""#), None);
        for (r, l) in [
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("[::1]:5000", true),
            ("registry.example", false),
            ("10.0.0.1:5000", false),
            ("127.attacker.example", false),
            ("127.attacker.example:5000", false),
            ("127.0.0.1.nip.io", false),
            ("127.1.2.3", true),
        ] {
            assert_eq!(is_loopback(r), l, "{r}");
        }
    }
}
