//! `ADD https://...`: the file is downloaded (streamed to disk and hashed
//! in one pass, at most [`MAX_DOWNLOAD`] bytes), named after the URL's last
//! path segment, and given the `Last-Modified` time, as Docker does.

use std::path::{Path, PathBuf};

use cargohold_image_core::Digest;

/// The largest file `ADD URL` takes.
#[cfg_attr(not(feature = "fetch"), allow(dead_code))]
pub(crate) const MAX_DOWNLOAD: u64 = 8 << 30;

/// A downloaded file.
#[derive(Debug, Clone)]
pub(crate) struct Download {
    /// Where it is on the host.
    pub path: PathBuf,
    /// Its name in the image (when the destination is a directory).
    pub name: String,
    /// Its sha256.
    pub digest: Digest,
    /// `Last-Modified`, in seconds since the epoch.
    pub mtime: Option<i64>,
}

/// `url` with the password of its credentials (`user:pass@`) replaced by
/// `xxxxx`, as Docker shows such URLs: for logs, errors and history.
/// Every `scheme://user:pass@host` in `text` is redacted.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                out.push_str(&format!("{user}:xxxxx@{host}"));
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The file name an URL gives.
#[cfg_attr(not(feature = "fetch"), allow(dead_code))]
fn name_of(url: &str) -> String {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once('/').map_or("", |(_, p)| p);
    path.rsplit('/').find(|s| !s.is_empty() && *s != "." && *s != "..").unwrap_or("download").to_owned()
}

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
#[cfg_attr(not(feature = "fetch"), allow(dead_code))]
fn http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = months.iter().position(|x| x == month)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [h, mi, sec] = hms.as_slice() else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Without the `fetch` feature there is no HTTP client.
#[cfg(not(feature = "fetch"))]
pub(crate) fn download(url: &str, _dir: &Path, _index: usize) -> Result<Download, String> {
    Err(format!("{url}: this build of cargohold-builder cannot download (built without the `fetch` feature)"))
}

/// Downloads `url` into the directory `dir`: connect within 30 s, and no
/// 60 s without a byte; errors name the URL with its password redacted.
#[cfg(feature = "fetch")]
pub(crate) fn download(url: &str, dir: &Path, index: usize) -> Result<Download, String> {
    let shown = redact_urls(url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{shown}: only http:// and https:// URLs can be added"));
    }
    let path = dir.join(format!("download-{index}"));
    let fetch = async {
        use std::io::Write as _;
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("{shown}: {}", e.without_url()))?;
        let mut resp = client.get(url).send().await.map_err(|e| format!("{shown}: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("{shown}: the server answered {}", resp.status()));
        }
        let mtime =
            resp.headers().get(reqwest::header::LAST_MODIFIED).and_then(|v| v.to_str().ok()).and_then(http_date);
        let file = std::fs::File::create(&path).map_err(|e| format!("could not create {}: {e}", path.display()))?;
        let mut out = cargohold_image_core::HashingWriter::new(
            std::io::BufWriter::new(file),
            cargohold_image_core::Algorithm::Sha256,
        );
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{shown}: {}", e.without_url()))? {
            total += chunk.len() as u64;
            if total > MAX_DOWNLOAD {
                return Err(format!("{shown}: larger than {MAX_DOWNLOAD} bytes"));
            }
            out.write_all(&chunk).map_err(|e| format!("could not write {}: {e}", path.display()))?;
        }
        out.flush().map_err(|e| format!("could not write {}: {e}", path.display()))?;
        let (file, digest, _) = out.finish();
        file.into_inner().map_err(|e| format!("could not write {}: {e}", path.display()))?.sync_all().ok();
        Ok(Download { path: path.clone(), name: name_of(url), digest, mtime })
    };
    // A runtime of its own, on a thread of its own (the caller may be in one).
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("{shown}: {e}"))?
                .block_on(fetch)
        })
        .join()
        .unwrap_or_else(|_| Err(format!("{shown}: the download panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(name_of("https://example.com/a/b/tool.tar.gz?x=1"), "tool.tar.gz");
        assert_eq!(name_of("https://example.com/a/dir/"), "dir");
        assert_eq!(name_of("http://example.com"), "download");
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(http_date("yesterday"), None);
        assert_eq!(redact_urls("ADD https://al:s3cr@t@h.example/x /y"), "ADD https://al:xxxxx@h.example/x /y");
        assert_eq!(redact_urls("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_urls("no url"), "no url");
    }
}
