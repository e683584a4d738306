//! `docker-daemon:REF`, as skopeo's transport: images in a Docker engine,
//! read with its `GET /images/get` and written with its `POST /images/load`.
//! An image moves as a `docker save` archive that waits in a temp directory
//! (the engine hands out and takes in nothing else), is read or written as a
//! `docker-archive:`, and is deleted when the source or destination goes.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cargohold_image_core::{
    BlobKind, Descriptor, DockerArchive, DockerArchiveDest, DockerArchiveSource, Error, ImageDest, ImageSource,
    RawManifest, Reference, Result,
};

use crate::adapter::Registry;

/// Where a Docker engine listens when nothing says otherwise.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The most of an engine's answer to an error or a load that is read.
const MAX_ANSWER: usize = 1 << 20;

/// Where a Docker engine's API is: `DOCKER_HOST`'s syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DockerHost {
    /// `unix:///path/to/docker.sock`.
    Unix(PathBuf),
    /// `tcp://host:port`: plain HTTP, as Docker without TLS.
    Tcp(String),
}

impl DockerHost {
    /// Parses `unix://PATH` or `tcp://HOST:PORT`; anything else (TLS,
    /// `ssh://`, `npipe://`) is an error that says it is not supported.
    pub fn parse(input: &str) -> std::result::Result<Self, String> {
        if let Some(path) = input.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!("{input:?}: a unix:// host needs an absolute socket path"));
            }
            return Ok(DockerHost::Unix(path.into()));
        }
        if let Some(addr) = input.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            match addr.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() && !addr.contains('/') => {
                    return Ok(DockerHost::Tcp(addr.into()));
                }
                _ => return Err(format!("{input:?}: a tcp:// host is HOST:PORT")),
            }
        }
        Err(format!(
            "{input:?}: not a Docker host cargohold can use (unix:///PATH or tcp://HOST:PORT; TLS and ssh:// are not supported)"
        ))
    }

    fn base_url(&self) -> String {
        match self {
            // Any name: the socket is the address.
            DockerHost::Unix(_) => "http://docker".into(),
            DockerHost::Tcp(addr) => format!("http://{addr}"),
        }
    }

    fn client(&self, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        // No read timeout: an engine may work for minutes before it sends
        // an export's first byte or a load's answer (docker's own client
        // and skopeo wait too).
        let b = reqwest::Client::builder().connect_timeout(timeout).no_proxy();
        match self {
            DockerHost::Unix(path) => b.unix_socket(path.as_path()).build(),
            DockerHost::Tcp(_) => b.build(),
        }
    }
}

impl Default for DockerHost {
    fn default() -> Self {
        DockerHost::Unix("/var/run/docker.sock".into())
    }
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerHost::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerHost::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// What an engine failed at, as the transport's error.
#[derive(Debug, thiserror::Error)]
enum DaemonError {
    #[error("the Docker engine at {host}: {error}")]
    Http { host: String, error: String },
    #[error("the Docker engine at {host} answered {status}: {message}")]
    Status { host: String, status: u16, message: String },
    #[error("the Docker engine at {host} refused the image: {message}")]
    Refused { host: String, message: String },
}

impl DaemonError {
    /// A failed exchange, by its first cause (reqwest's own layers repeat
    /// the URL).
    fn http(host: &DockerHost, e: &reqwest::Error) -> Self {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let error = if e.is_connect() {
            format!("cannot connect: {cause}")
        } else if e.is_timeout() {
            "no answer in time".into()
        } else {
            cause.to_string()
        };
        DaemonError::Http { host: host.to_string(), error }
    }
}

fn remote(action: &str, location: &str, e: DaemonError) -> Error {
    Error::Remote { action: action.into(), location: location.into(), source: Box::new(e) }
}

/// Checks what a `docker-daemon:` location names: `NAME:TAG`, `NAME@DIGEST`
/// or an image ID (`sha256:HEX`) for reading; `NAME:TAG` for writing (the
/// engine names what it loads by tag). A bare name says neither, as
/// skopeo's refuses it.
fn checked_reference(input: &str, writing: bool) -> Result<Option<Reference>> {
    let bad = |reason: &str| Error::Location { input: format!("docker-daemon:{input}"), reason: reason.into() };
    let is_id =
        input.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if is_id {
        if writing {
            return Err(bad("an image ID names no image to load; give NAME:TAG"));
        }
        return Ok(None);
    }
    let r = Reference::parse(input)?;
    if r.tag().is_none() && r.digest().is_none() {
        return Err(bad("the reference has neither a tag nor a digest"));
    }
    if writing && r.tag().is_none() {
        return Err(bad("the engine loads images by tag, not by digest; give NAME:TAG"));
    }
    Ok(Some(r))
}

/// An image of a Docker engine, exported into a temp file and read from
/// there as a docker archive.
pub struct DaemonSource {
    inner: DockerArchiveSource,
    location: String,
    /// Deleted with the source.
    _spool: tempfile::NamedTempFile,
}

impl Registry {
    /// Opens `docker-daemon:REF` for reading: the engine at `host` exports
    /// the image into a temp file in `tmpdir`.
    pub async fn daemon_source(&self, reference: &str, host: &DockerHost, tmpdir: &Path) -> Result<DaemonSource> {
        checked_reference(reference, false)?;
        let location = format!("docker-daemon:{reference}");
        let action = "export the image from";
        let fail = |e| remote(action, &location, DaemonError::http(host, &e));
        let client = host.client(self.client().options().timeout).map_err(fail)?;
        let resp = client
            .get(format!("{}/images/get", host.base_url()))
            .query(&[("names", reference)])
            .send()
            .await
            .map_err(fail)?;
        if !resp.status().is_success() {
            return Err(remote(action, &location, status_error(host, resp).await));
        }
        let (handle, loc, h, dir) = (tokio::runtime::Handle::current(), location, host.clone(), tmpdir.to_path_buf());
        let spooled = tokio::task::spawn_blocking(move || -> Result<DaemonSource> {
            let spool = tempfile::Builder::new()
                .prefix("cargohold-daemon-")
                .suffix(".tar")
                .tempfile_in(&dir)
                .map_err(|e| Error::Io { action: "create a temp file in", path: dir.clone(), source: e })?;
            let mut resp = resp;
            let mut file = spool.as_file();
            loop {
                let chunk = handle
                    .block_on(resp.chunk())
                    .map_err(|e| remote("export the image from", &loc, DaemonError::http(&h, &e)))?;
                let Some(chunk) = chunk else { break };
                file.write_all(&chunk).map_err(|e| Error::Io {
                    action: "write",
                    path: spool.path().into(),
                    source: e,
                })?;
            }
            // What the engine sent is read as any archive is, and a fault
            // in it named as the engine's.
            let read = || {
                let archive = DockerArchive::open(spool.path())?;
                archive.source(archive.select(None)?)
            };
            match read() {
                Ok(inner) => Ok(DaemonSource { inner, location: loc, _spool: spool }),
                Err(e) => Err(Error::Remote {
                    action: "read the image exported from".into(),
                    location: loc,
                    source: Box::new(e),
                }),
            }
        });
        spooled.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Opens `docker-daemon:NAME:TAG` for writing: the image is written as
    /// a docker archive in a temp directory in `tmpdir` and loaded into the
    /// engine at `host` when committed, named `NAME:TAG` and each of
    /// `additional_tags`.
    pub fn daemon_dest(
        &self,
        reference: &str,
        host: &DockerHost,
        tmpdir: &Path,
        additional_tags: &[Reference],
    ) -> Result<DaemonDest> {
        let tag = checked_reference(reference, true)?.expect("a tag was checked for");
        let mut tags = vec![tag];
        for t in additional_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let dir = tempfile::Builder::new().prefix("cargohold-daemon-").tempdir_in(tmpdir).map_err(|e| Error::Io {
            action: "create a temp directory in",
            path: tmpdir.into(),
            source: e,
        })?;
        let archive = dir.path().join("image.tar");
        // The engine inflates gzip layers itself: sent as they are.
        let inner = DockerArchiveDest::create(&archive, tags)?.gzip_layers();
        Ok(DaemonDest {
            inner,
            archive,
            _dir: dir,
            host: host.clone(),
            location: format!("docker-daemon:{reference}"),
            reg: self.clone(),
        })
    }
}

/// An engine's error answer: its `message`, else its text, capped.
async fn status_error(host: &DockerHost, resp: reqwest::Response) -> DaemonError {
    let status = resp.status().as_u16();
    let body = capped_body(resp).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
    DaemonError::Status { host: host.to_string(), status, message }
}

/// At most [`MAX_ANSWER`] bytes of a body; more is an error.
async fn capped_body(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("its answer is over {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl ImageSource for DaemonSource {
    fn location(&self) -> String {
        self.location.clone()
    }
    fn top_manifest(&mut self) -> Result<RawManifest> {
        self.inner.top_manifest()
    }
    fn manifest(&mut self, desc: &Descriptor) -> Result<RawManifest> {
        self.inner.manifest(desc)
    }
    fn blob(&mut self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        self.inner.blob(desc)
    }
    fn blob_location(&self, _desc: &Descriptor) -> String {
        self.location.clone()
    }
    fn name_hint(&self) -> Option<Reference> {
        self.inner.name_hint()
    }
}

/// An image on its way into a Docker engine: a docker archive until
/// committed, then loaded.
pub struct DaemonDest {
    inner: DockerArchiveDest,
    archive: PathBuf,
    /// Deleted with the destination.
    _dir: tempfile::TempDir,
    host: DockerHost,
    location: String,
    reg: Registry,
}

impl DaemonDest {
    /// Sends the archive to the engine; its answer is a stream of JSON
    /// messages, any of which may be an error (with status 200).
    async fn load(&self) -> Result<()> {
        let action = "load the image into";
        let host = self.host.to_string();
        let fail = |e| remote(action, &self.location, DaemonError::http(&self.host, &e));
        let client = self.host.client(self.reg.client().options().timeout).map_err(fail)?;
        let file = std::fs::File::open(&self.archive).map_err(|e| Error::Io {
            action: "open",
            path: self.archive.clone(),
            source: e,
        })?;
        let len =
            file.metadata().map_err(|e| Error::Io { action: "stat", path: self.archive.clone(), source: e })?.len();
        let body = cargohold_image_core::stream_blocking(move |pump| {
            let mut file = file;
            pump(&mut file);
            Ok(())
        })
        .await?;
        let resp = client
            .post(format!("{}/images/load", self.host.base_url()))
            .header(reqwest::header::CONTENT_TYPE, "application/x-tar")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(fail)?;
        if !resp.status().is_success() {
            return Err(remote(action, &self.location, status_error(&self.host, resp).await));
        }
        // Progress messages as it loads, then the outcome: read as they
        // come, a line at a time (each capped).
        let (mut resp, mut line) = (resp, Vec::new());
        let refused = |message| remote(action, &self.location, DaemonError::Refused { host: host.clone(), message });
        loop {
            let chunk = resp.chunk().await.map_err(fail)?;
            let end = chunk.is_none();
            for &b in chunk.as_deref().unwrap_or(b"\n") {
                if b != b'\n' {
                    if line.len() == MAX_ANSWER {
                        return Err(refused(format!("a line of its answer is over {MAX_ANSWER} bytes")));
                    }
                    line.push(b);
                    continue;
                }
                if let Some(message) = load_error(&line) {
                    return Err(refused(message));
                }
                line.clear();
            }
            if end {
                return Ok(());
            }
        }
    }
}

/// The error a line of an engine's `images/load` answer reports, if any.
fn load_error(line: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let e = v.get("error")?;
    Some(e.as_str().map_or_else(|| e.to_string(), str::to_owned))
}

impl ImageDest for DaemonDest {
    fn location(&self) -> String {
        self.location.clone()
    }
    fn supports_index(&self) -> bool {
        self.inner.supports_index()
    }
    fn fixed_format(&self) -> Option<cargohold_image_core::ManifestFormat> {
        self.inner.fixed_format()
    }
    fn has_blob(&mut self, desc: &Descriptor) -> Result<bool> {
        self.inner.has_blob(desc)
    }
    fn put_blob(&mut self, desc: &Descriptor, kind: BlobKind, data: &mut dyn Read) -> Result<Descriptor> {
        self.inner.put_blob(desc, kind, data)
    }
    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        self.inner.put_manifest(manifest)
    }
    fn commit(&mut self, top: &RawManifest) -> Result<()> {
        self.inner.commit(top)?;
        let reg = self.reg.clone();
        reg.block_on(self.load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_as_docker_host_does() {
        assert_eq!(DockerHost::parse("unix:///run/d.sock").unwrap(), DockerHost::Unix("/run/d.sock".into()));
        assert_eq!(DockerHost::parse("tcp://127.0.0.1:2375").unwrap(), DockerHost::Tcp("127.0.0.1:2375".into()));
        assert_eq!(DockerHost::default().to_string(), DEFAULT_DOCKER_HOST);
        for bad in ["unix://rel.sock", "tcp://host", "ssh://u@h", "npipe:////./pipe/x", "/var/run/docker.sock"] {
            assert!(DockerHost::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_name_a_tag_digest_or_id() {
        let id = format!("sha256:{}", "a".repeat(64));
        assert!(checked_reference(&id, false).unwrap().is_none());
        assert!(checked_reference(&id, true).is_err(), "an ID cannot be loaded into");
        assert!(checked_reference("busybox:1", true).is_ok());
        let digested = format!("busybox@sha256:{}", "b".repeat(64));
        assert!(checked_reference(&digested, false).is_ok());
        let e = checked_reference(&digested, true).unwrap_err().to_string();
        assert!(e.contains("by tag"), "{e}");
        let e = checked_reference("busybox", false).unwrap_err().to_string();
        assert!(e.contains("neither a tag nor a digest") && e.contains("docker-daemon:busybox"), "{e}");
    }

    /// docker 20.10's answers to a load: progress, success, and a refusal
    /// (with status 200).
    #[test]
    fn load_answers_are_read_for_errors() {
        assert_eq!(load_error(br#"{"stream":"Loaded image: bench:multi\n"}"#), None);
        assert_eq!(load_error(br#"{"status":"Loading layer","progressDetail":{"current":32768,"total":9}}"#), None);
        assert_eq!(load_error(b""), None);
        let refused = br#"{"errorDetail":{"message":"Error processing tar file(exit status 1): unexpected EOF"},"error":"Error processing tar file(exit status 1): unexpected EOF"}"#;
        assert_eq!(load_error(refused).as_deref(), Some("Error processing tar file(exit status 1): unexpected EOF"));
    }
}
