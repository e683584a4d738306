//! Request metrics in Prometheus' text format, under distribution's names
//! (`registry_http_requests_total`, `registry_http_request_duration_seconds`,
//! `registry_http_in_flight_requests`, `registry_http_request_size_bytes`,
//! `registry_http_response_size_bytes`, by `handler` as distribution names
//! its routes), plus the process' own (`process_*`); and the debug
//! listener that serves them with `/debug/health` (distribution's
//! `http.debug`), so dashboards and alerts made for `registry:2` keep
//! working.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The routes, named as distribution names them.
const HANDLERS: [&str; 8] =
    ["base", "blob", "blob_upload", "blob_upload_chunk", "catalog", "manifest", "referrers", "tags"];

/// Latency buckets (seconds), as distribution's.
const SECONDS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0];

/// Size buckets (bytes): powers of two from 1 KiB to 2 GiB, as distribution's.
const BYTES: [f64; 22] = {
    let mut b = [0.0; 22];
    let mut i = 0;
    while i < 22 {
        b[i] = (1u64 << (10 + i)) as f64;
        i += 1;
    }
    b
};

/// The handler (distribution's name) a request to `path` with `method`
/// goes to; `None` for what is no API route (`/token`, unknown paths).
pub(crate) fn handler_of(method: &Method, path: &str) -> Option<usize> {
    let rest = path.strip_prefix("/v2/").or_else(|| (path == "/v2").then_some(""))?;
    let name = if rest.is_empty() {
        "base"
    } else if rest == "_catalog" {
        "catalog"
    } else if rest.ends_with("/tags/list") {
        "tags"
    } else if let Some((_, id)) = rest.rsplit_once("/blobs/uploads/") {
        if id.is_empty() && method == Method::POST { "blob_upload" } else { "blob_upload_chunk" }
    } else if rest.ends_with("/blobs/uploads") {
        "blob_upload"
    } else if rest.contains("/blobs/") {
        "blob"
    } else if rest.contains("/manifests/") {
        "manifest"
    } else if rest.contains("/referrers/") {
        "referrers"
    } else {
        return None;
    };
    HANDLERS.iter().position(|h| *h == name)
}

#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram { counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, bounds: &[f64], v: f64) {
        // Cumulative, as the format has it: every bucket at or above `v`.
        for (c, b) in self.counts.iter_mut().zip(bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        for (c, b) in self.counts.iter().zip(bounds) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Families {
    /// (handler, method, status) -> requests.
    requests: BTreeMap<(usize, String, u16), u64>,
    /// (handler, method) -> latency.
    seconds: BTreeMap<(usize, String), Histogram>,
    /// handler -> request body size.
    request_bytes: BTreeMap<usize, Histogram>,
    /// handler -> response body size.
    response_bytes: BTreeMap<usize, Histogram>,
}

/// The request metrics of a server (shared by every connection).
pub struct Metrics {
    families: Mutex<Families>,
    in_flight: [AtomicI64; HANDLERS.len()],
    started: SystemTime,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            families: Mutex::default(),
            in_flight: std::array::from_fn(|_| AtomicI64::new(0)),
            started: SystemTime::now(),
        }
    }
}

/// A request being answered, from its start until its response body has
/// gone out (or was given up): counted in flight meanwhile, and recorded at
/// its end with the time it took and the body bytes sent, as distribution
/// counts its handlers' (a blob's transfer included).
pub(crate) struct Metered {
    metrics: Arc<Metrics>,
    handler: usize,
    method: Method,
    started: Instant,
    request_bytes: u64,
    status: u16,
    sent: u64,
    done: bool,
}

impl Metered {
    /// Records the request, once.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.metrics.in_flight[self.handler].fetch_sub(1, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        self.metrics.record(self.handler, &self.method, self.status, elapsed, self.request_bytes, self.sent);
    }

    /// `response`, its body counted as it goes out; the request is
    /// recorded when the body ends or is dropped.
    pub(crate) fn wrap(mut self, response: Response) -> Response {
        self.status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, Body::new(MeteredBody { inner: body, meter: self }))
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A response body passed through as it is (the same frames: a `sendfile`
/// marker stays one), its data bytes counted.
struct MeteredBody {
    inner: Body,
    meter: Metered,
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => self.meter.sent += frame.data_ref().map_or(0, |d| d.len() as u64),
            Poll::Ready(None) => self.meter.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Metrics {
    /// Metrics with nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a request to `handler` in flight from `started` until what
    /// this returns is done with (see [`Metered::wrap`]); `request_bytes`:
    /// the body it came with.
    pub(crate) fn begin(
        self: &Arc<Self>,
        handler: usize,
        method: &Method,
        started: Instant,
        request_bytes: u64,
    ) -> Metered {
        self.in_flight[handler].fetch_add(1, Ordering::Relaxed);
        Metered {
            metrics: Arc::clone(self),
            handler,
            method: method.clone(),
            started,
            request_bytes,
            // Until a response is made: the request was given up.
            status: 499,
            sent: 0,
            done: false,
        }
    }

    /// Records an answered request: its status, how long answering took,
    /// the body sizes it came with and went out with.
    pub(crate) fn record(
        &self,
        handler: usize,
        method: &Method,
        status: u16,
        elapsed: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let method = method.as_str().to_ascii_lowercase();
        let mut f = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        *f.requests.entry((handler, method.clone(), status)).or_default() += 1;
        f.seconds
            .entry((handler, method))
            .or_insert_with(|| Histogram::new(&SECONDS))
            .observe(&SECONDS, elapsed.as_secs_f64());
        f.request_bytes.entry(handler).or_insert_with(|| Histogram::new(&BYTES)).observe(&BYTES, request_bytes as f64);
        f.response_bytes
            .entry(handler)
            .or_insert_with(|| Histogram::new(&BYTES))
            .observe(&BYTES, response_bytes as f64);
    }

    /// Everything, in Prometheus' text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let f = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        out.push_str("# HELP registry_http_in_flight_requests The in-flight HTTP requests\n");
        out.push_str("# TYPE registry_http_in_flight_requests gauge\n");
        for (h, n) in HANDLERS.iter().zip(&self.in_flight) {
            let _ = writeln!(out, "registry_http_in_flight_requests{{handler=\"{h}\"}} {}", n.load(Ordering::Relaxed));
        }
        out.push_str("# HELP registry_http_request_duration_seconds The HTTP request latencies in seconds.\n");
        out.push_str("# TYPE registry_http_request_duration_seconds histogram\n");
        for ((h, m), hist) in &f.seconds {
            let labels = format!("handler=\"{}\",method=\"{m}\"", HANDLERS[*h]);
            hist.render(&mut out, "registry_http_request_duration_seconds", &labels, &SECONDS);
        }
        for (name, help, family) in [
            ("registry_http_request_size_bytes", "The HTTP request sizes in bytes.", &f.request_bytes),
            ("registry_http_response_size_bytes", "The HTTP response sizes in bytes.", &f.response_bytes),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (h, hist) in family {
                hist.render(&mut out, name, &format!("handler=\"{}\"", HANDLERS[*h]), &BYTES);
            }
        }
        out.push_str("# HELP registry_http_requests_total Total number of HTTP requests made.\n");
        out.push_str("# TYPE registry_http_requests_total counter\n");
        for ((h, m, code), n) in &f.requests {
            let _ = writeln!(
                out,
                "registry_http_requests_total{{code=\"{code}\",handler=\"{}\",method=\"{m}\"}} {n}",
                HANDLERS[*h]
            );
        }
        drop(f);
        self.render_process(&mut out);
        out
    }

    /// The process' CPU time, memory, open files and start time, as every
    /// Prometheus client reports them.
    fn render_process(&self, out: &mut String) {
        let stat = ProcStat::read();
        if let Some(cpu) = stat.as_ref().map(|s| s.cpu_seconds) {
            out.push_str("# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n");
            out.push_str("# TYPE process_cpu_seconds_total counter\n");
            let _ = writeln!(out, "process_cpu_seconds_total {cpu}");
        }
        // Resident pages (statm's second field).
        let page = rustix::param::page_size() as u64;
        if let Some(pages) = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        {
            out.push_str("# HELP process_resident_memory_bytes Resident memory size in bytes.\n");
            out.push_str("# TYPE process_resident_memory_bytes gauge\n");
            let _ = writeln!(out, "process_resident_memory_bytes {}", pages * page);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            out.push_str("# HELP process_open_fds Number of open file descriptors.\n");
            out.push_str("# TYPE process_open_fds gauge\n");
            let _ = writeln!(out, "process_open_fds {}", fds.count());
        }
        let start = stat
            .and_then(|s| s.start_seconds)
            .unwrap_or_else(|| self.started.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64());
        out.push_str("# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n");
        out.push_str("# TYPE process_start_time_seconds gauge\n");
        let _ = writeln!(out, "process_start_time_seconds {start}");
    }
}

/// What `/proc/self/stat` says of this process.
struct ProcStat {
    /// User and system CPU time.
    cpu_seconds: f64,
    /// When it started (seconds since the epoch): its start after boot
    /// plus the boot time (`/proc/stat`).
    start_seconds: Option<f64>,
}

impl ProcStat {
    fn read() -> Option<ProcStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command's closing parenthesis, from the 3rd.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
        let hz = rustix::param::clock_ticks_per_second() as f64;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()));
        Some(ProcStat {
            cpu_seconds: (field(14)? + field(15)?) / hz,
            start_seconds: boot.zip(field(22)).map(|(b, t)| b + t / hz),
        })
    }
}

/// The debug listener's routes, as distribution's `http.debug`:
/// `/debug/health` (`{}` while the server serves) and, with `metrics`,
/// Prometheus' scrape at its path (distribution's default `/metrics`).
pub fn debug_router(metrics: Option<(Arc<Metrics>, String)>) -> axum::Router {
    let router = axum::Router::new().route(
        "/debug/health",
        axum::routing::get(|| async { ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], "{}") }),
    );
    let router = match metrics {
        Some((m, path)) => router.route(
            &path,
            axum::routing::get(move || {
                let m = m.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render()) }
            }),
        ),
        None => router,
    };
    router.fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n").into_response() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_named_as_distribution_names_them() {
        let name = |m: Method, p: &str| handler_of(&m, p).map(|h| HANDLERS[h]);
        assert_eq!(name(Method::GET, "/v2/"), Some("base"));
        assert_eq!(name(Method::GET, "/v2/_catalog"), Some("catalog"));
        assert_eq!(name(Method::GET, "/v2/a/b/tags/list"), Some("tags"));
        assert_eq!(name(Method::POST, "/v2/a/blobs/uploads/"), Some("blob_upload"));
        assert_eq!(name(Method::PATCH, "/v2/a/blobs/uploads/x-1"), Some("blob_upload_chunk"));
        assert_eq!(name(Method::HEAD, "/v2/a/blobs/sha256:ab"), Some("blob"));
        assert_eq!(name(Method::PUT, "/v2/a/manifests/1"), Some("manifest"));
        assert_eq!(name(Method::GET, "/v2/a/referrers/sha256:ab"), Some("referrers"));
        assert_eq!(name(Method::GET, "/token"), None);
        assert_eq!(name(Method::GET, "/v2/a/nothing"), None);
    }

    #[test]
    fn histograms_are_cumulative() {
        let m = Metrics::new();
        m.record(0, &Method::GET, 200, Duration::from_millis(30), 0, 2000);
        m.record(0, &Method::GET, 200, Duration::from_secs(100), 0, 0);
        let text = m.render();
        for line in [
            r#"registry_http_request_duration_seconds_bucket{handler="base",method="get",le="0.025"} 0"#,
            r#"registry_http_request_duration_seconds_bucket{handler="base",method="get",le="0.05"} 1"#,
            r#"registry_http_request_duration_seconds_bucket{handler="base",method="get",le="60"} 1"#,
            r#"registry_http_request_duration_seconds_bucket{handler="base",method="get",le="+Inf"} 2"#,
            r#"registry_http_response_size_bytes_bucket{handler="base",le="1024"} 1"#,
            r#"registry_http_response_size_bytes_bucket{handler="base",le="2048"} 2"#,
            r#"registry_http_response_size_bytes_sum{handler="base"} 2000"#,
            r#"registry_http_requests_total{code="200",handler="base",method="get"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
