//! Rendering: one JSON document for `--json`, aligned tables for people.

use std::io::{self, Write};

use anyhow::Result;
use serde::Serialize;

/// Prints exactly one JSON document (pretty, newline-terminated) on stdout.
pub fn json<T: Serialize>(value: &T) -> Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => stdout_failed(io::Error::from(kind)),
        None => anyhow::Error::new(e).context("could not write JSON to stdout"),
    })?;
    writeln!(out).map_err(stdout_failed)
}

/// Prints `doc` (what `--json` prints) through the `--format` template: a
/// list's records one per line, anything else once.
pub fn templated<T: Serialize>(template: &str, doc: &T) -> Result<()> {
    let t = crate::template::Template::parse(template).map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let doc = serde_json::to_value(doc)?;
    let records = match &doc {
        serde_json::Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    for r in records {
        line(t.render(r).map_err(|e| anyhow::anyhow!("--format: {e}"))?)?;
    }
    Ok(())
}

/// Prints text lines on stdout.
pub fn line(text: impl AsRef<str>) -> Result<()> {
    writeln!(io::stdout().lock(), "{}", text.as_ref()).map_err(stdout_failed)
}

/// Writes `bytes` as they are on stdout.
pub fn raw(bytes: &[u8]) -> Result<()> {
    io::stdout().lock().write_all(bytes).map_err(stdout_failed)
}

/// A failed write to stdout: its reader gone (`| head`) is
/// [`OutputClosed`](crate::cmd::OutputClosed), which ends the command
/// quietly with status 141, as a program killed by `SIGPIPE`.
fn stdout_failed(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        anyhow::Error::new(crate::cmd::OutputClosed)
    } else {
        anyhow::Error::new(e).context("could not write to stdout")
    }
}

/// Prints a left-aligned table with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    let mut print = |cells: Vec<&str>| -> io::Result<()> {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                writeln!(out, "{cell}")?;
            } else {
                write!(out, "{cell:<w$}   ")?;
            }
        }
        Ok(())
    };
    print(header.to_vec()).map_err(stdout_failed)?;
    for row in rows {
        print(row.iter().map(String::as_str).collect()).map_err(stdout_failed)?;
    }
    Ok(())
}

/// `1.2 MB`-style sizes, as Docker prints them (decimal units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_owned() + UNITS[unit]
    }
}

/// Prints a status line on stderr (progress that is not the result).
pub fn status(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// An error and its causes, joined with `: ` as the CLI prints errors.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
