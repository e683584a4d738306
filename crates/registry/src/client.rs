//! The async client: requests with auth, manifests, blobs, uploads, tags.

use std::collections::HashMap;
use std::sync::Mutex;

use cargohold_image_core::media_type::MANIFEST_ACCEPT;
use cargohold_image_core::{Descriptor, Digest, MAX_MANIFEST_SIZE, RawManifest, Reference};
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};

use crate::auth::{Credentials, parse_www_authenticate, stored_credentials};
use crate::error::{Error, Result};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries that may be spoken to over plain HTTP (loopback always may).
    pub insecure: Vec<String>,
    /// Credentials to use instead of the stored ones.
    pub credentials: Option<Credentials>,
    /// Upload chunk size for large blobs (default 4 MiB, what registries that
    /// cap request bodies accept).
    pub chunk_size: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions { insecure: Vec::new(), credentials: None, chunk_size: 4 << 20 }
    }
}

/// An OCI distribution client for any number of registries.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    opts: ClientOptions,
    /// (registry, scope) -> Authorization header value.
    auth: Mutex<HashMap<(String, String), String>>,
}

/// Whether `registry` is on this machine (plain HTTP is then the default).
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(h, p)| !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

impl RegistryClient {
    /// A client with `opts`.
    pub fn new(opts: ClientOptions) -> Result<Self> {
        // Redirects (to blob storage) are followed; reqwest drops the
        // Authorization header when a redirect changes host.
        let http = reqwest::Client::builder()
            .user_agent(concat!("cargohold/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| Error::Http { url: "(client setup)".into(), source })?;
        Ok(RegistryClient { http, opts, auth: Mutex::new(HashMap::new()) })
    }

    /// The base URL of a registry: https unless loopback or listed insecure;
    /// Docker Hub's API host for `docker.io`.
    pub fn base_url(&self, registry: &str) -> String {
        let host = if registry == "docker.io" { "registry-1.docker.io" } else { registry };
        let plain = is_loopback(registry) || self.opts.insecure.iter().any(|r| r == registry);
        format!("{}://{host}", if plain { "http" } else { "https" })
    }

    /// The upload chunk size.
    pub fn chunk_size(&self) -> usize {
        self.opts.chunk_size
    }

    fn credentials(&self, registry: &str) -> Option<Credentials> {
        self.opts.credentials.clone().or_else(|| stored_credentials(registry))
    }

    /// Sends a request built by `build`, authenticating on a 401 challenge
    /// (Basic, or a Bearer token for `scope`). Idempotent requests (GET, HEAD,
    /// and the POST that opens an upload) are retried on connection errors,
    /// 5xx and 429, with exponential backoff or the registry's `Retry-After`
    /// (capped at 30 s), up to [`MAX_ATTEMPTS`] times.
    pub(crate) async fn send(
        &self,
        registry: &str,
        scope: &str,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let retryable = method == Method::GET || method == Method::HEAD || method == Method::POST;
        let mut attempt = 1;
        loop {
            let result = self.send_once(registry, scope, method.clone(), url, &build).await;
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
                    Some(after.map_or_else(|| backoff(attempt), |s| std::time::Duration::from_secs(s.min(30))))
                }
                Err(Error::Http { source, .. })
                    if retryable && (source.is_connect() || source.is_timeout() || source.is_request()) =>
                {
                    Some(backoff(attempt))
                }
                _ => None,
            };
            match delay {
                Some(d) if attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }

    async fn send_once(
        &self,
        registry: &str,
        scope: &str,
        method: Method,
        url: &str,
        build: &impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let key = (registry.to_owned(), scope.to_owned());
        let cached = self.auth.lock().expect("not poisoned").get(&key).cloned();
        let mut req = build(self.http.request(method.clone(), url));
        if let Some(a) = &cached {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = req.send().await.map_err(|source| Error::Http { url: url.into(), source })?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge =
            resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let value = self.authorize(registry, scope, &challenge).await?;
        self.auth.lock().expect("not poisoned").insert(key, value.clone());
        build(self.http.request(method, url))
            .header(header::AUTHORIZATION, value)
            .send()
            .await
            .map_err(|source| Error::Http { url: url.into(), source })
    }

    async fn authorize(&self, registry: &str, scope: &str, challenge: &str) -> Result<String> {
        let fail = |reason: String| Error::Auth { registry: registry.into(), reason };
        let challenges = parse_www_authenticate(challenge);
        let creds = self.credentials(registry);
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer.params.get("realm").ok_or_else(|| fail("the Bearer challenge has no realm".into()))?;
            let mut req = self.http.get(realm);
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(s) = bearer.params.get("service") {
                query.push(("service", s));
            }
            if !scope.is_empty() {
                query.push(("scope", scope));
            }
            req = req.query(&query);
            if let Some(c) = &creds {
                req = req.basic_auth(&c.username, Some(&c.password));
            }
            let resp = req.send().await.map_err(|source| Error::Http { url: realm.clone(), source })?;
            if !resp.status().is_success() {
                return Err(fail(format!("the token server {realm} answered {}", resp.status().as_u16())));
            }
            let body: serde_json::Value =
                resp.json().await.map_err(|source| Error::Http { url: realm.clone(), source })?;
            let token = body
                .get("token")
                .or_else(|| body.get("access_token"))
                .and_then(|t| t.as_str())
                .ok_or_else(|| fail(format!("the token server {realm} returned no token")))?;
            return Ok(format!("Bearer {token}"));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let c = creds.ok_or_else(|| {
                fail("the registry wants a user name and password; use `cargohold login` or REGISTRY_AUTH_FILE".into())
            })?;
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
            return Ok(format!("Basic {raw}"));
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
        let body = resp.text().await.unwrap_or_default();
        Err(Error::Status { method, url, status, body: body.chars().take(300).collect() })
    }

    /// Fetches a manifest by tag or digest and verifies it: against the digest
    /// asked for, else against `Docker-Content-Digest`.
    pub async fn get_manifest(&self, r: &Reference) -> Result<RawManifest> {
        let reference =
            r.digest().map(|d| d.to_string()).or_else(|| r.tag().map(str::to_owned)).unwrap_or_else(|| "latest".into());
        self.get_manifest_ref(r.registry(), r.repository(), &reference, r.digest()).await
    }

    pub(crate) async fn get_manifest_ref(
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
        if resp.content_length().is_some_and(|n| n > MAX_MANIFEST_SIZE) {
            return Err(Error::TooLarge { url, limit: MAX_MANIFEST_SIZE });
        }
        let mut resp = resp;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|source| Error::Http { url: url.clone(), source })? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(Error::TooLarge { url, limit: MAX_MANIFEST_SIZE });
            }
        }
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
    pub async fn get_blob(&self, registry: &str, repo: &str, desc: &Descriptor) -> Result<Response> {
        let url = format!("{}/v2/{repo}/blobs/{}", self.base_url(registry), desc.digest);
        let resp = self.send(registry, &format!("repository:{repo}:pull"), Method::GET, &url, |b| b).await?;
        Self::expect(resp, "GET", &[200]).await
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
        let location = location(&base, &resp, &start)?;
        Ok(Upload { registry: registry.into(), scope, base, location, offset: 0 })
    }

    /// Sends one chunk with `PATCH` and `Content-Range` (chunked upload).
    pub async fn upload_chunk(&self, up: &mut Upload, chunk: Vec<u8>) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        // Bytes: the request closure may run twice (auth retry); cloning is O(1).
        let chunk = bytes::Bytes::from(chunk);
        let end = up.offset + chunk.len() as u64 - 1;
        let range = format!("{}-{end}", up.offset);
        let resp = self
            .send(&up.registry, &up.scope, Method::PATCH, &up.location, |b| {
                b.header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_RANGE, range.clone())
                    .header(header::CONTENT_LENGTH, chunk.len())
                    .body(chunk.clone())
            })
            .await?;
        let resp = Self::expect(resp, "PATCH", &[202]).await?;
        up.offset = end + 1;
        up.location = location_or(&up.base, &resp, &up.location);
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

    /// Stores a manifest under a tag or digest.
    pub async fn put_manifest(&self, registry: &str, repo: &str, reference: &str, m: &RawManifest) -> Result<()> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url(registry));
        let bytes = bytes::Bytes::from(m.bytes.clone());
        let resp = self
            .send(registry, &format!("repository:{repo}:pull,push"), Method::PUT, &url, |b| {
                b.header(header::CONTENT_TYPE, &m.media_type).body(bytes.clone())
            })
            .await?;
        Self::expect(resp, "PUT", &[201, 200]).await?;
        Ok(())
    }

    /// Every tag of a repository, following `Link` pagination.
    pub async fn tags(&self, registry: &str, repo: &str) -> Result<Vec<String>> {
        let base = self.base_url(registry);
        let mut url = format!("{base}/v2/{repo}/tags/list?n=100");
        let mut tags = Vec::new();
        loop {
            let resp = self.send(registry, &format!("repository:{repo}:pull"), Method::GET, &url, |b| b).await?;
            let resp = Self::expect(resp, "GET", &[200]).await?;
            let next = resp.headers().get(header::LINK).and_then(|v| v.to_str().ok()).and_then(parse_link_next);
            let body: serde_json::Value =
                resp.json().await.map_err(|source| Error::Http { url: url.clone(), source })?;
            if let Some(list) = body.get("tags").and_then(|t| t.as_array()) {
                tags.extend(list.iter().filter_map(|t| t.as_str().map(str::to_owned)));
            }
            match next {
                Some(n) if n.starts_with('/') => url = format!("{base}{n}"),
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
    }
}

/// Attempts per idempotent request before giving up.
pub const MAX_ATTEMPTS: u32 = 5;

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
        ] {
            assert_eq!(is_loopback(r), l, "{r}");
        }
    }
}
