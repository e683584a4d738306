//! JSON-lines notifications in DUCC's format, appended atomically: one
//! `write` of a whole line under an exclusive `flock`, so lines of
//! concurrent processes never interleave.
//!
//! As DUCC writes them, every value is a string: `action`, `time`
//! (`_2 Jan 2006 - 15:04:05.000`, UTC here), `id` (a UUID pairing a start
//! with its end), `image`, `layer` (the digest's hex), `status` (`ok` or
//! `error`), `error`, `elapsed (s)` (`%f`), `size_bytes`; and `pid`.

use serde_json::{Map, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Result, io_err};

/// Where notifications go (nowhere when no file was given).
#[derive(Debug, Default)]
pub struct Notifier {
    file: Option<PathBuf>,
}

/// One event.
#[derive(Debug, Default, Clone)]
pub struct Event<'a> {
    /// DUCC's `start_layer_conversion`, `end_layer_conversion`,
    /// `publish_layer`; and `start_run`, `end_run`, `start_image_conversion`,
    /// `end_image_conversion`, `start_flat_conversion`, `end_flat_conversion`,
    /// `publish_flat_image`, `skip_image`, `delete_image`, `gc`.
    pub action: &'a str,
    /// Pairs a start with its end (a UUID).
    pub id: Option<String>,
    /// The image (`registry/repo:tag`).
    pub image: Option<&'a str>,
    /// The layer digest (its hex, as DUCC).
    pub layer: Option<String>,
    /// Other fields (`layer_digest`, counts of a run).
    pub extra: Vec<(&'a str, String)>,
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
        Notifier { file: file.map(Path::to_path_buf) }
    }

    /// A fresh id for a start/end pair: a random (version 4) UUID.
    pub fn id(&self) -> String {
        let mut b = [0u8; 16];
        if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
            // No randomness: unique enough from the time and the process.
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            b[..8].copy_from_slice(&(t as u64).to_le_bytes());
            b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }

    /// Writes one event line.
    pub fn emit(&self, e: &Event<'_>) -> Result<()> {
        let Some(path) = &self.file else { return Ok(()) };
        let mut m = Map::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_owned(), Value::String(v));
        };
        put("action", e.action.to_owned());
        put("time", ducc_time(std::time::SystemTime::now()));
        let fields: [(&str, Option<String>); 7] = [
            ("id", e.id.clone()),
            ("image", e.image.map(str::to_owned)),
            ("layer", e.layer.as_ref().map(|l| l.split_once(':').map_or(l.as_str(), |(_, h)| h).to_owned())),
            ("status", e.status.map(str::to_owned)),
            ("error", e.error.clone()),
            ("elapsed (s)", e.time_elapsed_s.map(|v| format!("{v:.6}"))),
            ("size_bytes", e.size_bytes.map(|v| v.to_string())),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                put(k, v);
            }
        }
        for (k, v) in &e.extra {
            put(k, v.clone());
        }
        put("pid", std::process::id().to_string());
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

/// Go's `_2 Jan 2006 - 15:04:05.000` (DUCC's notification time), in UTC.
pub fn ducc_time(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // YYYY-MM-DDTHH:MM:SSZ
    let iso = cargohold_image_core::format_rfc3339(d.as_secs());
    let (year, month, day) = (&iso[..4], &iso[5..7], &iso[8..10]);
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS[month.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
    let day: u32 = day.parse().unwrap_or(1);
    format!("{day:>2} {month} {year} - {}.{:03}", &iso[11..19], d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_duccs() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_764_637_205_042);
        assert_eq!(ducc_time(t), " 2 Dec 2025 - 01:00:05.042");
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::new(Some(&dir.path().join("n.jsonl")));
        let id = n.id();
        assert_eq!((id.len(), &id[14..15]), (36, "4"));
        n.emit(&Event {
            action: "end_layer_conversion",
            id: Some(id.clone()),
            image: Some("r/a:1"),
            layer: Some("sha256:abcd".into()),
            status: Some("error"),
            error: Some("boom".into()),
            time_elapsed_s: Some(1.5),
            size_bytes: Some(42),
            extra: Vec::new(),
        })
        .unwrap();
        let line = std::fs::read_to_string(dir.path().join("n.jsonl")).unwrap();
        let v: std::collections::HashMap<String, String> = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["layer"], "abcd");
        assert_eq!(v["elapsed (s)"], "1.500000");
        assert_eq!(v["size_bytes"], "42");
        assert_eq!(v["id"], id);
        assert_eq!(v["status"], "error");
    }
}
