//! The distribution API's routes over a [`Storage`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use cargohold_image_core::media_type as mt;
use cargohold_image_core::{Digest, Manifest, RawManifest, Reference};
use futures_util::StreamExt as _;

use super::auth::{Access, Htpasswd};
use super::listen::Plain;
use super::notify::{Notifier, Target};
use super::pacing::{self, paced};
use super::proxy::{Proxy, ProxyMiss};
use super::sendfile::{MIN_SENDFILE, SendQueue};
use super::storage::{Storage, StoredManifest};
use super::token::{Claims, Refusal, TokenAuth, TokenIssuer};

/// One request, as the server saw it (for request logs).
#[derive(Debug, Clone)]
pub struct RequestLog {
    /// The method.
    pub method: String,
    /// The path (without the query).
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// How long answering took (the body of a download streams on after).
    pub elapsed: std::time::Duration,
}

/// Called once per request.
pub type RequestLogger = Arc<dyn Fn(&RequestLog) + Send + Sync>;

/// How the server behaves.
#[derive(Clone)]
pub struct ServerOptions {
    /// Whether manifests, tags and blobs may be deleted.
    pub delete_enabled: bool,
    /// The largest manifest accepted.
    pub max_manifest: usize,
    /// Entries per page of tags and catalog when the client asks for none
    /// (and the most it may ask for).
    pub page_size: usize,
    /// Basic auth from an htpasswd file (`None`: open to everyone, unless
    /// `token` is set).
    pub htpasswd: Option<Arc<Htpasswd>>,
    /// Bearer-token auth (distribution's `auth.token`): every request needs
    /// a token allowing it (htpasswd is then not asked).
    pub token: Option<Arc<TokenAuth>>,
    /// A token service of our own, answering at `/token`.
    pub issuer: Option<Arc<TokenIssuer>>,
    /// Whether clients reach this server over HTTPS (for the realm of
    /// `/token` when `token` names none).
    pub https: bool,
    /// Request logs.
    pub logger: Option<RequestLogger>,
    /// Headers added to every response (`http.headers` of config.yml).
    pub headers: Vec<(String, String)>,
    /// Webhooks for pushes, pulls and deletes.
    pub notifier: Option<Notifier>,
    /// A pull-through cache of this upstream (pushes and deletes refused).
    pub proxy: Option<Proxy>,
    /// Read-only (distribution's `storage.maintenance.readonly`): pulls are
    /// served, pushes and deletes refused (405, `UNSUPPORTED`), nothing in
    /// the storage is written.
    pub read_only: bool,
    /// Request metrics to count into (served by [`super::debug_router`]).
    pub metrics: Option<Arc<super::Metrics>>,
    /// The URLs a pushed manifest's layers may name (foreign layers).
    pub layer_urls: LayerUrls,
}

/// Which URLs the layers of a pushed manifest may name, as distribution's
/// `validation.manifests.urls`: a layer with URLs (a foreign,
/// non-distributable layer, fetched from there rather than from the
/// registry) is taken only when every URL is http(s) without a fragment,
/// matches an `allow` pattern and no `deny` pattern. With no `allow`
/// pattern, no layer URL is taken. A layer without URLs, and the config,
/// must be in the repository.
#[derive(Clone, Debug, Default)]
pub struct LayerUrls {
    /// Patterns a URL must match (one of them).
    pub allow: Vec<regex::Regex>,
    /// Patterns no URL may match.
    pub deny: Vec<regex::Regex>,
}

impl LayerUrls {
    /// Rules from patterns (regular expressions, unanchored as
    /// distribution's); the error names a pattern that does not compile.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let compile = |list: &[String]| {
            list.iter().map(|p| regex::Regex::new(p).map_err(|e| format!("{p:?}: {e}"))).collect::<Result<Vec<_>, _>>()
        };
        Ok(LayerUrls { allow: compile(allow)?, deny: compile(deny)? })
    }

    /// Why `url` may not be named, if it may not.
    fn refusal(&self, url: &str) -> Option<&'static str> {
        let Ok(parsed) = reqwest::Url::parse(url) else { return Some("not a URL") };
        if !matches!(parsed.scheme(), "http" | "https") {
            Some("not http(s)")
        } else if parsed.fragment().is_some() {
            Some("it has a fragment")
        } else if !self.allow.iter().any(|r| r.is_match(url)) {
            Some(if self.allow.is_empty() {
                "this registry takes no layer URLs (validation.manifests.urls.allow)"
            } else {
                "it matches no validation.manifests.urls.allow pattern"
            })
        } else if self.deny.iter().any(|r| r.is_match(url)) {
            Some("it matches a validation.manifests.urls.deny pattern")
        } else {
            None
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("delete_enabled", &self.delete_enabled)
            .field("max_manifest", &self.max_manifest)
            .field("page_size", &self.page_size)
            .field("htpasswd", &self.htpasswd.is_some())
            .field("token", &self.token)
            .field("issuer", &self.issuer)
            .field("logger", &self.logger.is_some())
            .field("headers", &self.headers)
            .field("notifier", &self.notifier.is_some())
            .field("proxy", &self.proxy.as_ref().map(|p| &p.registry))
            .field("read_only", &self.read_only)
            .field("metrics", &self.metrics.is_some())
            .field("layer_urls", &self.layer_urls)
            .finish()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            delete_enabled: true,
            max_manifest: 4 << 20,
            page_size: 1000,
            htpasswd: None,
            token: None,
            issuer: None,
            https: false,
            logger: None,
            headers: Vec::new(),
            notifier: None,
            proxy: None,
            read_only: false,
            metrics: None,
            layer_urls: LayerUrls::default(),
        }
    }
}

/// The running hash of an upload this process has seen every byte of.
struct Progress {
    /// ring's SHA-256 (its SHA-NI code is about twice the speed of sha2's).
    hasher: ring::digest::Context,
    offset: u64,
}

struct Server {
    storage: Storage,
    opts: ServerOptions,
    uploads: Mutex<HashMap<String, Progress>>,
}

/// A spec error: status, code, message.
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", format!("storage: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": [{ "code": self.code, "message": self.message, "detail": null }] });
        (self.status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn name_invalid(name: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", format!("invalid repository name {name:?}"))
}

/// A validated repository name (the reference grammar's path).
fn repository(name: &str) -> Result<String, ApiError> {
    match Reference::from_parts("registry.invalid", name, None, None) {
        Ok(r) if r.repository() == name && name.len() <= 255 => Ok(name.to_owned()),
        _ => Err(name_invalid(name)),
    }
}

fn digest_of(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", format!("{s:?}: {e}")))
}

/// The `name=value` pairs of a query or form body, decoded, in order.
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn query_params(uri: &Uri) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The routes: `/v2/` and everything below it.
pub fn router(storage: Storage, opts: ServerOptions) -> axum::Router {
    let state = Arc::new(Server { storage, opts, uploads: Mutex::new(HashMap::new()) });
    axum::Router::new().fallback(dispatch).with_state(state)
}

/// What a request to `path` with `method` needs.
fn access_of(method: &Method, path: &str) -> Access {
    if path == "/v2/" || path == "/v2" {
        return Access::Ping;
    }
    if path == "/v2/_catalog" {
        return Access::Catalog;
    }
    match *method {
        Method::GET | Method::HEAD => Access::Pull,
        Method::DELETE if !path.contains("/blobs/uploads/") => Access::Delete,
        _ => Access::Push,
    }
}

async fn dispatch(
    State(s): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    version: Version,
    plain: Option<Extension<Plain>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let path = uri.path().to_owned();
    // Request metrics: from here until the response body has gone out.
    let metered = s.opts.metrics.as_ref().and_then(|m| {
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        Some(m.begin(super::metrics::handler_of(&method, &path)?, &method, started, declared.unwrap_or(0)))
    });
    let auth_header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let mut claims: Option<Claims> = None;
    let mut refused: Option<Response> = None;
    let allowed = match (&s.opts.token, &s.opts.htpasswd) {
        _ if path == "/token" && s.opts.issuer.is_some() => true,
        (Some(t), _) => match bearer_check(t, &method, &path, auth_header) {
            Ok(c) => {
                claims = Some(c);
                true
            }
            Err((scope, insufficient)) => {
                let realm = realm(&s.opts, t, &headers);
                let mut r = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    if insufficient { "insufficient scope" } else { "authentication required" },
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&t.challenge(&realm, scope.as_deref(), insufficient)) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                refused = Some(r);
                false
            }
        },
        (None, None) => true,
        (None, Some(h)) => h.allows(auth_header, access_of(&method, &path)),
    };
    // A registry that takes no pushes or deletes says why, and what it takes.
    let no_writes = if s.opts.read_only {
        Some("this registry is read-only: no pushes or deletes")
    } else if s.opts.proxy.is_some() {
        Some("this registry is a pull-through cache: no pushes or deletes")
    } else {
        None
    };
    let writes = matches!(access_of(&method, &path), Access::Push | Access::Delete);
    let mut resp = if path == "/token"
        && let Some(issuer) = &s.opts.issuer
    {
        token_endpoint(issuer, &method, &uri, auth_header, body).await
    } else if let Some(r) = refused {
        r
    } else if let Some(why) = no_writes.filter(|_| writes && allowed) {
        let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", why).into_response();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    } else if allowed {
        let user = match &claims {
            Some(c) => Some(c.subject.clone()).filter(|u| !u.is_empty()),
            None => basic_user(&headers),
        };
        // An HTTP/1 connection of our own writes its frames in order.
        let http1 = matches!(version, Version::HTTP_10 | Version::HTTP_11);
        let plain = plain.map(|Extension(p)| p).filter(|_| http1);
        let sendfile = plain.as_ref().map(|p| &p.sends);
        // A body of known length on such a connection is read in large
        // pieces.
        let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let body = match (&plain, length) {
            (Some(p), Some(length)) if pacing::worth(length) => {
                Body::from_stream(paced(body.into_data_stream(), length, p.pace.clone()))
            }
            _ => body,
        };
        let ctx = Req { method: &method, user: user.as_deref(), claims: claims.as_ref(), sendfile };
        route(&s, &ctx, &uri, &path, &headers, body).await.unwrap_or_else(IntoResponse::into_response)
    } else {
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required").into_response();
        if let Some(h) = &s.opts.htpasswd
            && let Ok(v) = HeaderValue::from_str(&h.challenge())
        {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    };
    resp.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    for (k, v) in &s.opts.headers {
        if let (Ok(k), Ok(v)) = (header::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            resp.headers_mut().append(k, v);
        }
    }
    if let Some(log) = &s.opts.logger {
        log(&RequestLog {
            method: method.to_string(),
            path,
            status: resp.status().as_u16(),
            elapsed: started.elapsed(),
        });
    }
    match metered {
        Some(m) => m.wrap(resp),
        None => resp,
    }
}

/// Who asked, and how (for events).
struct Req<'a> {
    method: &'a Method,
    user: Option<&'a str>,
    /// The bearer token's claims, under token auth.
    claims: Option<&'a Claims>,
    /// Where a blob read from a local file is sent with `sendfile`.
    sendfile: Option<&'a SendQueue>,
}

impl Req<'_> {
    /// Whether the request may also pull from `repo` (a mount's source).
    fn may_pull(&self, repo: &str) -> bool {
        self.claims.is_none_or(|c| c.allows("repository", repo, "pull"))
    }
}

/// The repository a `/v2/...` path is about.
fn repository_in(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    if let Some(name) = rest.strip_suffix("/tags/list").or_else(|| rest.strip_suffix("/blobs/uploads")) {
        return Some(name);
    }
    ["/blobs/uploads/", "/blobs/", "/manifests/", "/referrers/"]
        .iter()
        .find_map(|sep| rest.rsplit_once(sep).map(|(name, _)| name))
}

/// Checks a request's bearer token; on refusal, the scope to ask for and
/// whether the token was good but not enough.
fn bearer_check(
    t: &TokenAuth,
    method: &Method,
    path: &str,
    auth: Option<&str>,
) -> Result<Claims, (Option<String>, bool)> {
    let need: Vec<(&str, String, &str)> = match access_of(method, path) {
        Access::Ping => Vec::new(),
        Access::Catalog => vec![("registry", "catalog".into(), "*")],
        access => {
            let Some(name) = repository_in(path) else { return Err((None, false)) };
            let actions: &[&str] = match access {
                Access::Pull => &["pull"],
                Access::Push => &["pull", "push"],
                _ => &["delete"],
            };
            actions.iter().map(|a| ("repository", name.to_owned(), *a)).collect()
        }
    };
    let scope = need.first().map(|(kind, name, _)| {
        format!("{kind}:{name}:{}", need.iter().map(|(_, _, a)| *a).collect::<Vec<_>>().join(","))
    });
    let token = auth.and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")));
    let Some(claims) = token.and_then(|tok| t.verify(tok.trim()).ok()) else { return Err((scope, false)) };
    if need.iter().all(|(kind, name, action)| claims.allows(kind, name, action)) {
        Ok(claims)
    } else {
        Err((scope, true))
    }
}

/// Where clients get tokens: the configured realm, or this server's
/// `/token` as the client addressed it.
fn realm(opts: &ServerOptions, t: &TokenAuth, headers: &HeaderMap) -> String {
    if let Some(r) = &t.realm {
        return r.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("localhost");
    format!("{}://{host}/token", if opts.https { "https" } else { "http" })
}

/// `GET /token` (Basic credentials, `scope` and `service` in the query) or
/// `POST /token` (the OAuth2 password grant in a form).
async fn token_endpoint(issuer: &TokenIssuer, method: &Method, uri: &Uri, auth: Option<&str>, body: Body) -> Response {
    let params = match *method {
        Method::GET => form_pairs(uri.query().unwrap_or("")),
        Method::POST => match read_capped(body, 64 << 10).await {
            Ok(b) => form_pairs(&String::from_utf8_lossy(&b)),
            Err(e) => return e.into_response(),
        },
        _ => return unsupported(method).into_response(),
    };
    match issuer.issue(auth, &params) {
        Ok(json) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(Refusal::Unauthorized) => {
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "bad credentials").into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"token\""));
            r
        }
        Err(Refusal::BadRequest(why)) => ApiError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", why).into_response(),
    }
}

/// The user of a Basic `Authorization` header.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(v.strip_prefix("Basic ")?.trim()).ok()?;
    String::from_utf8(raw).ok()?.split_once(':').map(|(u, _)| u.to_owned())
}

/// What an event says.
struct Event<'a> {
    action: &'static str,
    repo: &'a str,
    media_type: &'a str,
    digest: &'a Digest,
    size: u64,
    tag: Option<&'a str>,
}

/// Sends an event when webhooks are configured.
fn notify(s: &Server, r: &Req<'_>, e: Event<'_>) {
    if let Some(n) = &s.opts.notifier {
        n.send(&Target {
            action: e.action,
            repository: e.repo.to_owned(),
            media_type: e.media_type.to_owned(),
            digest: e.digest.to_string(),
            size: e.size,
            tag: e.tag.map(str::to_owned),
            method: r.method.to_string(),
            user: r.user.map(str::to_owned),
        });
    }
}

const BLOB: &str = "application/octet-stream";

async fn route(s: &Arc<Server>, r: &Req<'_>, uri: &Uri, path: &str, headers: &HeaderMap, body: Body) -> ApiResult {
    let method = r.method;
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no route {path}")));
    };
    let q = query_params(uri);
    if rest.is_empty() {
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response());
    }
    if rest == "_catalog" {
        only(method, &[Method::GET])?;
        return catalog(s, &q).await;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let name = repository(name)?;
        only(method, &[Method::GET])?;
        return tags(s, &name, &q).await;
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        let name = repository(name)?;
        if id.is_empty() {
            only(method, &[Method::POST])?;
            return start_upload(s, r, &name, &q, headers, body).await;
        }
        return match *method {
            Method::GET => upload_status(s, &name, id).await,
            Method::PATCH => patch_upload(s, &name, id, headers, body).await,
            Method::PUT => finish_upload(s, r, &name, id, &q, body).await,
            Method::DELETE => cancel_upload(s, &name, id).await,
            _ => Err(unsupported(method)),
        };
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        let name = repository(name)?;
        only(method, &[Method::POST])?;
        return start_upload(s, r, &name, &q, headers, body).await;
    }
    if let Some((name, d)) = rest.rsplit_once("/blobs/") {
        let name = repository(name)?;
        let d = digest_of(d)?;
        return match *method {
            Method::GET | Method::HEAD => get_blob(s, r, &name, &d, headers, method == Method::HEAD).await,
            Method::DELETE => delete_blob(s, r, &name, &d).await,
            _ => Err(unsupported(method)),
        };
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let name = repository(name)?;
        return match *method {
            Method::GET | Method::HEAD => get_manifest(s, r, &name, reference, method == Method::HEAD).await,
            Method::PUT => put_manifest(s, r, &name, reference, headers, body).await,
            Method::DELETE => delete_manifest(s, r, &name, reference).await,
            _ => Err(unsupported(method)),
        };
    }
    if let Some((name, d)) = rest.rsplit_once("/referrers/") {
        let name = repository(name)?;
        only(method, &[Method::GET])?;
        return referrers(s, &name, &digest_of(d)?, &q).await;
    }
    Err(ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no route {path}")))
}

fn unsupported(method: &Method) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", format!("{method} is not supported here"))
}

fn only(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) { Ok(()) } else { Err(unsupported(method)) }
}

fn deletes(s: &Server) -> Result<(), ApiError> {
    if s.opts.delete_enabled {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "deletes are disabled on this registry"))
    }
}

/// `n` and `last` of a paginated list, and the page with its `Link`.
fn paginate(
    s: &Server,
    all: Vec<String>,
    q: &HashMap<String, String>,
    path: &str,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let n = match q.get("n") {
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", format!("n={v:?} is not a number"))
        })?,
        None => s.opts.page_size,
    };
    let n = n.min(s.opts.page_size);
    let after: Vec<String> = match q.get("last") {
        Some(last) => all.into_iter().filter(|t| t.as_str() > last.as_str()).collect(),
        None => all,
    };
    if n == 0 {
        return Ok((Vec::new(), None));
    }
    let more = after.len() > n;
    let page: Vec<String> = after.into_iter().take(n).collect();
    let link = (more && !page.is_empty())
        .then(|| format!("<{path}?last={}&n={n}>; rel=\"next\"", page.last().expect("not empty")));
    Ok((page, link))
}

fn json_response(status: StatusCode, value: &serde_json::Value, link: Option<String>) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response();
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LINK, l);
    }
    resp
}

async fn catalog(s: &Server, q: &HashMap<String, String>) -> ApiResult {
    let (page, link) = paginate(s, s.storage.repositories().await?, q, "/v2/_catalog")?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "repositories": page }), link))
}

async fn tags(s: &Server, name: &str, q: &HashMap<String, String>) -> ApiResult {
    let all = s.storage.tags(name).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("repository {name} is not known"))
    })?;
    let (page, link) = paginate(s, all, q, &format!("/v2/{name}/tags/list"))?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "name": name, "tags": page }), link))
}

fn blob_unknown(d: &Digest) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", format!("blob {d} is not known to this repository"))
}

fn upload_unknown(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", format!("upload {id:?} is not known"))
}

/// `bytes=START-[END]` of a `Range` header, clamped to `size`.
fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = if b.trim().is_empty() { size.checked_sub(1)? } else { b.trim().parse::<u64>().ok()?.min(size - 1) };
    (start <= end && start < size).then_some((start, end))
}

async fn get_blob(s: &Server, r: &Req<'_>, name: &str, d: &Digest, headers: &HeaderMap, head: bool) -> ApiResult {
    let mut found = s.storage.blob_size(name, d).await?;
    if found.is_none()
        && let Some(p) = &s.opts.proxy
    {
        match p.cache_blob(&s.storage, name, d).await {
            Ok(()) => found = s.storage.blob_size(name, d).await?,
            Err(ProxyMiss::Unknown) => {}
            Err(ProxyMiss::Failed(why)) => return Err(upstream_failed(&format!("blob {d} of {name}"), why)),
        }
    }
    let Some(size) = found else { return Err(blob_unknown(d)) };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len, content_range) = match range {
        Some(r) => match parse_range(r, size) {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1, Some(format!("bytes {a}-{b}/{size}"))),
            None => {
                let mut resp = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UNKNOWN",
                    format!("range {r:?} of {size} bytes"),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"));
                return Ok(resp);
            }
        },
        None => (StatusCode::OK, 0, size, None),
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("docker-content-digest", d.as_str())
        .header(header::ETAG, format!("\"{d}\""));
    if let Some(cr) = content_range {
        builder = builder.header(header::CONTENT_RANGE, cr);
    }
    let body = if head {
        Body::empty()
    } else {
        notify(s, r, Event { action: "pull", repo: name, media_type: BLOB, digest: d, size, tag: None });
        let file = match r.sendfile {
            Some(q) if len >= MIN_SENDFILE => s.storage.blob_file(d).await?.map(|f| (q, f)),
            _ => None,
        };
        match file {
            Some((q, f)) => Body::from_stream(q.body(&format!("blob {d}"), f, start, len)),
            None => Body::from_stream(s.storage.read_blob(d, start, len).await?),
        }
    };
    Ok(builder.body(body).expect("valid response"))
}

async fn delete_blob(s: &Server, r: &Req<'_>, name: &str, d: &Digest) -> ApiResult {
    deletes(s)?;
    if !s.storage.unlink_blob(name, d).await? {
        return Err(blob_unknown(d));
    }
    notify(s, r, Event { action: "delete", repo: name, media_type: BLOB, digest: d, size: 0, tag: None });
    Ok(StatusCode::ACCEPTED.into_response())
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// 202 for an upload at `offset` bytes.
fn upload_accepted(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    let range = format!("0-{}", offset.saturating_sub(1));
    Response::builder()
        .status(status)
        .header(header::LOCATION, upload_location(name, id))
        .header(header::RANGE, range)
        .header(header::CONTENT_LENGTH, 0)
        .header("docker-upload-uuid", id)
        .body(Body::empty())
        .expect("valid response")
}

fn blob_created(name: &str, d: &Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/blobs/{d}"))
        .header(header::CONTENT_LENGTH, 0)
        .header("docker-content-digest", d.as_str())
        .body(Body::empty())
        .expect("valid response")
}

async fn start_upload(
    s: &Arc<Server>,
    r: &Req<'_>,
    name: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
        let d = digest_of(mount)?;
        let from = repository(from)?;
        if r.may_pull(&from) && s.storage.repo_has_blob(&from, &d).await? && s.storage.link_blob(name, &d).await? {
            let size = s.storage.blob_size(name, &d).await?.unwrap_or(0);
            notify(s, r, Event { action: "mount", repo: name, media_type: BLOB, digest: &d, size, tag: None });
            return Ok(blob_created(name, &d));
        }
        // Not mountable: an ordinary upload, as the spec says.
    }
    let id = s.storage.start_upload(name).await?;
    s.uploads
        .lock()
        .expect("not poisoned")
        .insert(id.clone(), Progress { hasher: ring::digest::Context::new(&ring::digest::SHA256), offset: 0 });
    if let Some(d) = q.get("digest") {
        // Monolithic: the whole blob in this POST.
        let d = digest_of(d)?;
        append(s, name, &id, body, None).await?;
        let _ = headers;
        return finish(s, r, name, &id, &d).await;
    }
    Ok(upload_accepted(StatusCode::ACCEPTED, name, &id, 0))
}

async fn upload_status(s: &Server, name: &str, id: &str) -> ApiResult {
    let size = s.storage.upload_size(name, id).await?.ok_or_else(|| upload_unknown(id))?;
    Ok(upload_accepted(StatusCode::NO_CONTENT, name, id, size))
}

/// A body that broke off while it streamed in (the client's fault).
#[derive(Debug)]
struct BodyError(String);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

/// Appends `body` to the upload, hashing as it goes; with `expect_start`, the
/// upload must hold exactly that many bytes first (else 416).
async fn append(s: &Arc<Server>, name: &str, id: &str, body: Body, expect_start: Option<u64>) -> Result<u64, ApiError> {
    let size = s.storage.upload_size(name, id).await?.ok_or_else(|| upload_unknown(id))?;
    if let Some(start) = expect_start
        && start != size
    {
        let mut e = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            format!("the chunk starts at {start}, and the upload holds {size} bytes"),
        );
        e.message.push_str(&format!(" (Range: 0-{})", size.saturating_sub(1)));
        return Err(e);
    }
    // The running hash, when this process saw every byte so far.
    let progress = s.uploads.lock().expect("not poisoned").remove(id).filter(|p| p.offset == size);
    let progress = Arc::new(Mutex::new(progress));
    let hashing = Arc::clone(&progress);
    let stream = body
        .into_data_stream()
        .map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(BodyError(e.to_string())))?;
            if let Some(p) = hashing.lock().expect("not poisoned").as_mut() {
                p.hasher.update(&chunk);
                p.offset += chunk.len() as u64;
            }
            Ok(chunk)
        })
        .boxed();
    let written = s.storage.append_upload(id, size, stream).await.map_err(|e| {
        match e.get_ref().and_then(|r| r.downcast_ref::<BodyError>()) {
            Some(b) => ApiError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", b.to_string()),
            None => ApiError::from(e),
        }
    })?;
    if let Some(p) = progress.lock().expect("not poisoned").take() {
        s.uploads.lock().expect("not poisoned").insert(id.to_owned(), p);
    }
    Ok(written)
}

async fn patch_upload(s: &Arc<Server>, name: &str, id: &str, headers: &HeaderMap, body: Body) -> ApiResult {
    let start = match headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => {
            let r = r.trim().trim_start_matches("bytes ").trim_start_matches("bytes=");
            let (a, _) = r.split_once('-').ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", format!("bad Content-Range {r:?}"))
            })?;
            Some(a.trim().parse::<u64>().map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", format!("bad Content-Range {r:?}"))
            })?)
        }
        None => None,
    };
    match append(s, name, id, body, start).await {
        Ok(size) => Ok(upload_accepted(StatusCode::ACCEPTED, name, id, size)),
        Err(e) if e.status == StatusCode::RANGE_NOT_SATISFIABLE => {
            let size = s.storage.upload_size(name, id).await?.unwrap_or(0);
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_str(&upload_location(name, id)).expect("ascii"));
            resp.headers_mut()
                .insert(header::RANGE, HeaderValue::from_str(&format!("0-{}", size.saturating_sub(1))).expect("ascii"));
            Ok(resp)
        }
        Err(e) => Err(e),
    }
}

async fn finish_upload(
    s: &Arc<Server>,
    r: &Req<'_>,
    name: &str,
    id: &str,
    q: &HashMap<String, String>,
    body: Body,
) -> ApiResult {
    let d = q
        .get("digest")
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "closing an upload needs ?digest="))?;
    let d = digest_of(d)?;
    // Most clients close an upload with an empty PUT: nothing to append.
    if axum::body::HttpBody::size_hint(&body).exact() != Some(0) {
        append(s, name, id, body, None).await?;
    }
    finish(s, r, name, id, &d).await
}

/// Verifies the upload against `d` and stores it; a mismatch cancels it.
async fn finish(s: &Server, r: &Req<'_>, name: &str, id: &str, d: &Digest) -> ApiResult {
    let progress = s.uploads.lock().expect("not poisoned").remove(id);
    let size = s.storage.upload_size(name, id).await?.ok_or_else(|| upload_unknown(id))?;
    let actual = match progress {
        Some(p) if p.offset == size && d.algorithm() == cargohold_image_core::Algorithm::Sha256 => {
            Digest::parse(&format!("sha256:{}", hex(p.hasher.finish().as_ref()))).expect("a sha256 digest")
        }
        // Another process (or a broken-off append) saw part of it: hash
        // what is stored.
        _ => {
            let mut h = cargohold_image_core::Hasher::new(d.algorithm());
            let mut data = s.storage.read_upload(id).await?;
            while let Some(chunk) = data.next().await {
                h.update(&chunk?);
            }
            h.finish()
        }
    };
    if &actual != d {
        s.storage.cancel_upload(name, id).await?;
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("the upload's content has digest {actual}, not {d}"),
        ));
    }
    s.storage.commit_upload(name, id, d).await?;
    notify(s, r, Event { action: "push", repo: name, media_type: BLOB, digest: d, size, tag: None });
    Ok(blob_created(name, d))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn cancel_upload(s: &Server, name: &str, id: &str) -> ApiResult {
    s.uploads.lock().expect("not poisoned").remove(id);
    if !s.storage.cancel_upload(name, id).await? {
        return Err(upload_unknown(id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn manifest_unknown(name: &str, reference: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", format!("manifest {reference} of {name} is not known"))
}

/// The digest a reference names: itself, or what the tag points at.
async fn resolve(s: &Server, name: &str, reference: &str) -> Result<Digest, ApiError> {
    if reference.contains(':') {
        return digest_of(reference);
    }
    if !cargohold_image_core::is_valid_tag(reference) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", format!("invalid tag {reference:?}")));
    }
    s.storage.get_tag(name, reference).await?.ok_or_else(|| manifest_unknown(name, reference))
}

fn upstream_failed(what: &str, why: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "UNKNOWN", format!("the upstream registry failed to give {what}: {why}"))
}

async fn get_manifest(s: &Server, r: &Req<'_>, name: &str, reference: &str, head: bool) -> ApiResult {
    if let Some(p) = &s.opts.proxy {
        let miss = if reference.contains(':') {
            p.cache_manifest(&s.storage, name, &digest_of(reference)?).await.err()
        } else {
            match p.refresh_tag(&s.storage, name, reference).await {
                Some(Err(m)) => Some(m),
                _ => None,
            }
        };
        match miss {
            Some(ProxyMiss::Unknown) => return Err(manifest_unknown(name, reference)),
            // The cached copy (if any) serves while upstream fails.
            Some(ProxyMiss::Failed(why)) if resolve(s, name, reference).await.is_err() => {
                return Err(upstream_failed(&format!("manifest {reference} of {name}"), why));
            }
            _ => {}
        }
    }
    let d = resolve(s, name, reference).await?;
    let m = s.storage.get_manifest(name, &d).await?.ok_or_else(|| manifest_unknown(name, reference))?;
    if !head {
        let tag = (!reference.contains(':')).then_some(reference);
        let size = m.bytes.len() as u64;
        notify(s, r, Event { action: "pull", repo: name, media_type: &m.media_type, digest: &d, size, tag });
    }
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, m.media_type)
        .header(header::CONTENT_LENGTH, m.bytes.len())
        .header("docker-content-digest", d.as_str())
        .header(header::ETAG, format!("\"{d}\""));
    Ok(resp.body(if head { Body::empty() } else { Body::from(m.bytes) }).expect("valid response"))
}

/// Reads a body of at most `limit` bytes. A larger one is an error, after
/// the rest is read and dropped (up to 16 times the limit, so the client
/// gets the answer instead of a reset connection; nothing more is kept).
async fn read_capped(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", format!("reading the body: {e}"))
        })?;
        seen += chunk.len();
        if seen > limit.saturating_mul(16) {
            break;
        }
        if seen <= limit {
            out.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("a manifest may take at most {limit} bytes"),
        ));
    }
    Ok(out)
}

fn manifest_invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
}

async fn put_manifest(
    s: &Arc<Server>,
    r: &Req<'_>,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let bytes = read_capped(body, s.opts.max_manifest).await?;
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
    let raw = RawManifest::new(bytes, declared.as_deref()).map_err(|e| manifest_invalid(e.to_string()))?;
    let (tag, digest) = if reference.contains(':') {
        let want = digest_of(reference)?;
        let actual = want.same_algorithm_of(&raw.bytes);
        if actual != want {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("the manifest's digest is {actual}, not {want}"),
            ));
        }
        (None, want)
    } else {
        if !cargohold_image_core::is_valid_tag(reference) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "TAG_INVALID", format!("invalid tag {reference:?}")));
        }
        (Some(reference), raw.digest.clone())
    };
    let parsed = raw.parse().map_err(|e| manifest_invalid(e.to_string()))?;
    // Everything it points at must be here.
    let (subject, artifact_type, annotations) = match &parsed {
        Manifest::Image(m) => {
            for (i, b) in std::iter::once(&m.config).chain(&m.layers).enumerate() {
                // A layer with URLs (foreign, non-distributable) is fetched
                // from there, if they may be named.
                let urls = b.urls.as_deref().unwrap_or_default();
                if i > 0 && !urls.is_empty() {
                    for u in urls {
                        if let Some(why) = s.opts.layer_urls.refusal(u) {
                            return Err(manifest_invalid(format!("layer {} names the URL {u:?}: {why}", b.digest)));
                        }
                    }
                    continue;
                }
                if !s.storage.repo_has_blob(name, &b.digest).await? {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_BLOB_UNKNOWN",
                        format!("blob {} is not in {name}", b.digest),
                    ));
                }
            }
            let t = m.artifact_type.clone().or_else(|| Some(m.config.media_type.clone()));
            (m.subject.clone(), t, m.annotations.clone())
        }
        Manifest::Index(i) => {
            for c in &i.manifests {
                if s.storage.get_manifest(name, &c.digest).await?.is_none() {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "MANIFEST_BLOB_UNKNOWN",
                        format!("manifest {} is not in {name}", c.digest),
                    ));
                }
            }
            (i.subject.clone(), i.artifact_type.clone(), i.annotations.clone())
        }
    };
    s.storage
        .put_manifest(
            name,
            &StoredManifest { digest: digest.clone(), media_type: raw.media_type.clone(), bytes: raw.bytes.clone() },
        )
        .await?;
    if let Some(subject) = &subject {
        let mut desc = serde_json::json!({
            "mediaType": raw.media_type, "digest": digest.as_str(), "size": raw.bytes.len(),
        });
        if let Some(t) = artifact_type {
            desc["artifactType"] = serde_json::json!(t);
        }
        if let Some(a) = annotations.filter(|a| !a.is_empty()) {
            desc["annotations"] = serde_json::json!(a);
        }
        s.storage.add_referrer(name, &subject.digest, &desc).await?;
    }
    if let Some(tag) = tag {
        s.storage.set_tag(name, tag, &digest).await?;
    }
    let size = raw.bytes.len() as u64;
    notify(s, r, Event { action: "push", repo: name, media_type: &raw.media_type, digest: &digest, size, tag });
    let mut resp = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header(header::CONTENT_LENGTH, 0)
        .header("docker-content-digest", digest.as_str());
    if let Some(subject) = subject {
        resp = resp.header("oci-subject", subject.digest.as_str());
    }
    Ok(resp.body(Body::empty()).expect("valid response"))
}

async fn delete_manifest(s: &Server, r: &Req<'_>, name: &str, reference: &str) -> ApiResult {
    deletes(s)?;
    if reference.contains(':') {
        let d = digest_of(reference)?;
        let media_type = s.storage.get_manifest(name, &d).await?.map(|m| m.media_type).unwrap_or_default();
        if !s.storage.delete_manifest(name, &d).await? {
            return Err(manifest_unknown(name, reference));
        }
        notify(s, r, Event { action: "delete", repo: name, media_type: &media_type, digest: &d, size: 0, tag: None });
    } else {
        let d = s.storage.get_tag(name, reference).await?;
        if !s.storage.delete_tag(name, reference).await? {
            return Err(manifest_unknown(name, reference));
        }
        if let Some(d) = d {
            let tag = Some(reference);
            notify(s, r, Event { action: "delete", repo: name, media_type: "", digest: &d, size: 0, tag });
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn referrers(s: &Server, name: &str, subject: &Digest, q: &HashMap<String, String>) -> ApiResult {
    let mut list = s.storage.referrers(name, subject).await?;
    let filter = q.get("artifactType");
    if let Some(t) = filter {
        list.retain(|d| d.get("artifactType").and_then(|v| v.as_str()) == Some(t.as_str()));
    }
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": mt::OCI_INDEX, "manifests": list });
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, mt::OCI_INDEX)], index.to_string()).into_response();
    if filter.is_some() {
        resp.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
    }
    Ok(resp)
}
