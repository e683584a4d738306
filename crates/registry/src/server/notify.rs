//! Webhooks in distribution's envelope format
//! (`application/vnd.docker.distribution.events.v1+json`): an event for each
//! manifest and blob pushed, pulled or deleted, posted to every endpoint by
//! a worker of its own that retries with back-off until the endpoint takes
//! it, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// The envelope's media type.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A name for logs.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// Headers sent with each POST.
    pub headers: Vec<(String, String)>,
    /// How long one POST may take.
    pub timeout: Duration,
    /// The first wait after a failure (doubling, up to a minute).
    pub backoff: Duration,
    /// Media types whose events are not sent.
    pub ignored_media_types: Vec<String>,
    /// Actions (`push`, `pull`, `delete`) whose events are not sent.
    pub ignored_actions: Vec<String>,
}

/// What an event is about.
#[derive(Debug, Clone)]
pub struct Target {
    /// `push`, `pull`, `delete`, `mount`.
    pub action: &'static str,
    /// The repository.
    pub repository: String,
    /// The manifest's or blob's media type (empty when unknown).
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// The tag, for manifests addressed by one.
    pub tag: Option<String>,
    /// The request's method.
    pub method: String,
    /// The user, when authenticated.
    pub user: Option<String>,
}

/// Sends events to every endpoint; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    queues: Arc<Vec<(Endpoint, tokio::sync::mpsc::Sender<Value>)>>,
    host: String,
    instance: String,
    next_id: Arc<AtomicU64>,
    /// Events dropped because an endpoint's queue was full.
    pub dropped: Arc<AtomicU64>,
}

/// Events an endpoint may have waiting before new ones are dropped.
const QUEUE: usize = 10_000;

fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let base = cargohold_image_core::format_rfc3339(d.as_secs());
    // Go's RFC 3339 with nanoseconds.
    base.trim_end_matches('Z').to_owned() + &format!(".{:09}Z", d.subsec_nanos())
}

impl Notifier {
    /// Starts a worker per endpoint on the current tokio runtime; `host` is
    /// the registry's address as clients reach it (for the events' URLs).
    pub fn start(endpoints: Vec<Endpoint>, host: &str) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("cargohold/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a plain HTTP client builds");
        let mut queues = Vec::new();
        for e in endpoints {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Value>(QUEUE);
            let endpoint = e.clone();
            let client = client.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    let body = json!({ "events": [event] }).to_string();
                    let mut wait = endpoint.backoff.max(Duration::from_millis(50));
                    loop {
                        let mut req = client
                            .post(&endpoint.url)
                            .timeout(endpoint.timeout)
                            .header(reqwest::header::CONTENT_TYPE, EVENTS_MEDIA_TYPE)
                            .body(body.clone());
                        for (k, v) in &endpoint.headers {
                            req = req.header(k.as_str(), v.as_str());
                        }
                        match req.send().await {
                            Ok(r) if r.status().is_success() || r.status().is_redirection() => break,
                            _ => {
                                tokio::time::sleep(wait).await;
                                wait = (wait * 2).min(Duration::from_secs(60));
                            }
                        }
                    }
                }
            });
            queues.push((e, tx));
        }
        let mut raw = [0u8; 16];
        let _ = std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").expect("urandom"), &mut raw);
        Notifier {
            queues: Arc::new(queues),
            host: host.to_owned(),
            instance: uuid_of(&raw),
            next_id: Arc::new(AtomicU64::new(1)),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an event for every endpoint that wants it (never waits).
    pub fn send(&self, t: &Target) {
        let kind =
            if t.media_type.contains("manifest") || t.media_type.contains("index") { "manifests" } else { "blobs" };
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n:012x}", &self.instance[..23]);
        let mut target = json!({
            "mediaType": t.media_type,
            "size": t.size,
            "digest": t.digest,
            "length": t.size,
            "repository": t.repository,
            "url": format!("http://{}/v2/{}/{kind}/{}", self.host, t.repository, t.digest),
        });
        if let Some(tag) = &t.tag {
            target["tag"] = json!(tag);
        }
        let event = json!({
            "id": id,
            "timestamp": now_rfc3339(),
            "action": t.action,
            "target": target,
            "request": { "id": id, "host": self.host, "method": t.method, "useragent": "" },
            "actor": { "name": t.user.clone().unwrap_or_default() },
            "source": { "addr": self.host, "instanceID": self.instance },
        });
        for (e, tx) in self.queues.iter() {
            if e.ignored_actions.iter().any(|a| a == t.action) || e.ignored_media_types.contains(&t.media_type) {
                continue;
            }
            if tx.try_send(event.clone()).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn uuid_of(raw: &[u8; 16]) -> String {
    let h: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
