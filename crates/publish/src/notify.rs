//! JSON-lines notifications, appended atomically: one `write` of a whole line
//! under an exclusive `flock`, so lines of concurrent processes never interleave.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use crate::error::{Result, io_err};

/// Where notifications go (nowhere when no file was given).
#[derive(Debug, Default)]
pub struct Notifier {
    file: Option<PathBuf>,
    next: AtomicU64,
}

/// One event.
#[derive(Debug, Default, Clone)]
pub struct Event<'a> {
    /// `start_layer_conversion`, `end_layer_conversion`, `start_flat_conversion`,
    /// `end_flat_conversion`, `publish_flat_image`, `skip_image`, `gc`.
    pub action: &'a str,
    /// Pairs a start with its end.
    pub id: Option<u64>,
    /// The image (`registry/repo:tag`).
    pub image: Option<&'a str>,
    /// The layer digest.
    pub layer: Option<String>,
    /// `ok` or `error` (end events).
    pub status: Option<&'a str>,
    /// The error message when `status` is `error`.
    pub error: Option<String>,
    /// Seconds since the matching start.
    pub time_elapsed_s: Option<f64>,
    /// Bytes concerned.
    pub size_bytes: Option<u64>,
}

impl Notifier {
    /// Appends to `file` (created when missing).
    pub fn new(file: Option<&Path>) -> Self {
        Notifier { file: file.map(Path::to_path_buf), next: AtomicU64::new(1) }
    }

    /// A fresh id for a start/end pair, unique across processes.
    pub fn id(&self) -> u64 {
        (u64::from(std::process::id()) << 32) | self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes one event line.
    pub fn emit(&self, e: &Event<'_>) -> Result<()> {
        let Some(path) = &self.file else { return Ok(()) };
        let mut m = Map::new();
        m.insert("action".into(), json!(e.action));
        m.insert(
            "time".into(),
            json!(cargohold_image_core::format_rfc3339(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
            )),
        );
        let fields: [(&str, Option<Value>); 8] = [
            ("id", e.id.map(|v| json!(v))),
            ("image", e.image.map(|v| json!(v))),
            ("layer", e.layer.as_ref().map(|v| json!(v))),
            ("status", e.status.map(|v| json!(v))),
            ("error", e.error.as_ref().map(|v| json!(v))),
            ("time_elapsed_s", e.time_elapsed_s.map(|v| json!((v * 1000.0).round() / 1000.0))),
            ("size_bytes", e.size_bytes.map(|v| json!(v))),
            ("pid", Some(json!(std::process::id()))),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        }
        let mut line = serde_json::to_vec(&Value::Object(m)).expect("JSON values serialize");
        line.push(b'\n');
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err("open the notification file", path))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err("lock the notification file", path)(e.into()))?;
        (&f).write_all(&line).map_err(io_err("append to the notification file", path))
    }
}
