//! A [`Driver`] on S3-compatible object storage, through the `object_store`
//! crate (its HTTP requests go through this crate's reqwest client).
//!
//! Every piece of state is in the bucket, so several servers over one
//! bucket serve one registry. Objects are written with single PUTs, or
//! multipart uploads above the part size. An upload is a series of chunk
//! objects, `<key>/<offset>`, one per append (a PATCH), each written as it
//! streams in; committing one chunk is a server-side copy, committing
//! several streams them into one multipart upload of the blob.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _};

use super::storage::{ByteStream, Driver, Listing, ObjectMeta};

/// Where a bucket is and how to reach it (distribution's `storage.s3`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// The region (`us-east-1` when empty).
    pub region: String,
    /// An endpoint instead of AWS's (`regionendpoint`), e.g.
    /// `http://127.0.0.1:8080` for a local Swift or MinIO.
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of
    /// virtual-hosted ones (`bucket.endpoint/key`).
    pub path_style: bool,
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
    /// Every key below this prefix (`rootdirectory`).
    pub root: String,
    /// Part size of multipart uploads (`chunksize`; at least 5 MiB).
    pub part_size: usize,
    /// Accept any certificate (`skipverify`).
    pub skip_verify: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key)
            .field("root", &self.root)
            .field("part_size", &self.part_size)
            .field("skip_verify", &self.skip_verify)
            .finish_non_exhaustive()
    }
}

/// The smallest part S3 accepts (but for the last).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Storage in an S3 bucket.
#[derive(Debug)]
pub struct S3Driver {
    store: Arc<dyn ObjectStore>,
    root: String,
    part_size: usize,
}

fn s3_error(e: object_store::Error) -> io::Error {
    io::Error::from(e)
}

impl S3Driver {
    /// A driver for the bucket `opts` names (nothing is asked of it yet).
    pub fn new(opts: &S3Options) -> io::Result<Self> {
        if opts.bucket.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "S3 storage needs a bucket"));
        }
        if opts.part_size != 0 && opts.part_size < MIN_PART_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an S3 part size of {} bytes is below S3's minimum of {MIN_PART_SIZE}", opts.part_size),
            ));
        }
        let region = if opts.region.is_empty() { "us-east-1" } else { &opts.region };
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(120))
            .danger_accept_invalid_certs(opts.skip_verify)
            .build()
            .map_err(io::Error::other)?;
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&opts.bucket)
            .with_region(region)
            .with_access_key_id(&opts.access_key)
            .with_secret_access_key(&opts.secret_key)
            .with_virtual_hosted_style_request(!opts.path_style)
            // Conditional PUTs are not used (and not every S3 speaks them).
            .with_conditional_put(object_store::aws::S3ConditionalPut::Disabled)
            .with_http_connector(Connector { client });
        if let Some(e) = &opts.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(t) = &opts.session_token {
            b = b.with_token(t);
        }
        let store = b.build().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(S3Driver {
            store: Arc::new(store),
            root: opts.root.trim_matches('/').to_owned(),
            part_size: if opts.part_size == 0 { 10 << 20 } else { opts.part_size },
        })
    }

    fn path(&self, key: &str) -> Path {
        let key = key.trim_end_matches('/');
        if self.root.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.root)) }
    }

    /// The chunks of an upload, in order, checked to follow each other.
    async fn chunks(&self, key: &str) -> io::Result<Vec<(Path, u64, Option<std::time::SystemTime>)>> {
        let listing = self.store.list_with_delimiter(Some(&self.path(key))).await.map_err(s3_error)?;
        let mut chunks: Vec<(u64, Path, u64, Option<std::time::SystemTime>)> = Vec::new();
        for o in listing.objects {
            let Some(offset) = o.location.filename().and_then(|n| n.parse::<u64>().ok()) else { continue };
            chunks.push((offset, o.location.clone(), o.size, Some(o.last_modified.into())));
        }
        chunks.sort_by_key(|c| c.0);
        let mut next = 0;
        for (offset, path, size, _) in &chunks {
            if *offset != next {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("upload {key}: chunk {path} starts at {offset}, not {next}"),
                ));
            }
            next += size;
        }
        Ok(chunks.into_iter().map(|(_, p, s, t)| (p, s, t)).collect())
    }

    /// Streams `data` into `path` (one PUT, or a multipart upload when it
    /// is large): how many bytes. On error nothing is stored.
    async fn write(&self, path: &Path, mut data: ByteStream) -> io::Result<u64> {
        let mut w =
            object_store::buffered::BufWriter::with_capacity(Arc::clone(&self.store), path.clone(), self.part_size);
        let mut n = 0u64;
        let result = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                n += chunk.len() as u64;
                w.put(chunk).await.map_err(s3_error)?;
            }
            tokio::io::AsyncWriteExt::shutdown(&mut w).await
        }
        .await;
        if let Err(e) = result {
            let _ = w.abort().await;
            return Err(e);
        }
        Ok(n)
    }
}

#[async_trait::async_trait]
impl Driver for S3Driver {
    async fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        match self.store.get(&self.path(key)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(s3_error)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn put(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        self.store.put(&self.path(key), bytes.into()).await.map(|_| ()).map_err(s3_error)
    }

    async fn stat(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        match self.store.head(&self.path(key)).await {
            Ok(m) => Ok(Some(ObjectMeta { size: m.size, modified: Some(m.last_modified.into()) })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn read(&self, key: &str, start: u64, len: u64) -> io::Result<ByteStream> {
        if len == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let opts =
            GetOptions { range: Some(GetRange::Bounded(start..start.saturating_add(len))), ..GetOptions::default() };
        let r = self.store.get_opts(&self.path(key), opts).await.map_err(s3_error)?;
        Ok(r.into_stream().map_err(s3_error).boxed())
    }

    async fn delete(&self, key: &str) -> io::Result<bool> {
        let path = self.path(key);
        if self.stat(key).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&path).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn list(&self, prefix: &str) -> io::Result<Listing> {
        let path = self.path(prefix);
        let prefix = (!path.as_ref().is_empty()).then_some(&path);
        let r = self.store.list_with_delimiter(prefix).await.map_err(s3_error)?;
        let mut out = Listing::default();
        for p in r.common_prefixes {
            if let Some(name) = p.filename() {
                out.dirs.push(name.to_owned());
            }
        }
        for o in r.objects {
            if let Some(name) = o.location.filename() {
                out.objects
                    .push((name.to_owned(), ObjectMeta { size: o.size, modified: Some(o.last_modified.into()) }));
            }
        }
        Ok(out)
    }

    async fn append(&self, key: &str, at: u64, data: ByteStream) -> io::Result<u64> {
        let path = self.path(&format!("{key}/{at:020}"));
        let n = self.write(&path, data).await?;
        if n == 0 {
            // Nothing appended: no empty chunk.
            let _ = self.store.delete(&path).await;
        }
        Ok(at + n)
    }

    async fn appended(&self, key: &str) -> io::Result<ObjectMeta> {
        let chunks = self.chunks(key).await?;
        Ok(ObjectMeta { size: chunks.iter().map(|c| c.1).sum(), modified: chunks.iter().filter_map(|c| c.2).max() })
    }

    async fn read_appended(&self, key: &str) -> io::Result<ByteStream> {
        let chunks = self.chunks(key).await?;
        let store = Arc::clone(&self.store);
        let stream = futures_util::stream::iter(chunks)
            .then(move |(path, _, _)| {
                let store = Arc::clone(&store);
                async move {
                    let r = store.get(&path).await.map_err(s3_error)?;
                    Ok::<_, io::Error>(r.into_stream().map_err(s3_error))
                }
            })
            .try_flatten();
        Ok(stream.boxed())
    }

    async fn commit_appended(&self, key: &str, dest: &str) -> io::Result<()> {
        let chunks = self.chunks(key).await?;
        let dest_path = self.path(dest);
        match chunks.as_slice() {
            [] => self.store.put(&dest_path, Bytes::new().into()).await.map(|_| ()).map_err(s3_error)?,
            [(only, _, _)] => self.store.copy(only, &dest_path).await.map_err(s3_error)?,
            _ => {
                let data = self.read_appended(key).await?;
                self.write(&dest_path, data).await?;
            }
        }
        for (p, _, _) in &chunks {
            let _ = self.store.delete(p).await;
        }
        Ok(())
    }

    async fn delete_appended(&self, key: &str) -> io::Result<()> {
        for (p, _, _) in self.chunks(key).await? {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error(e)),
            }
        }
        Ok(())
    }
}

/// `object_store`'s HTTP requests, sent with this crate's reqwest client.
#[derive(Debug)]
struct Connector {
    client: reqwest::Client,
}

impl object_store::client::HttpConnector for Connector {
    fn connect(&self, _: &object_store::ClientOptions) -> object_store::Result<object_store::client::HttpClient> {
        Ok(object_store::client::HttpClient::new(Service { client: self.client.clone() }))
    }
}

#[derive(Debug)]
struct Service {
    client: reqwest::Client,
}

fn http_error(e: reqwest::Error) -> object_store::client::HttpError {
    use object_store::client::{HttpError, HttpErrorKind};
    let kind = if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_body() {
        HttpErrorKind::Interrupted
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else if e.is_request() {
        HttpErrorKind::Request
    } else {
        HttpErrorKind::Unknown
    };
    HttpError::new(kind, e)
}

#[async_trait::async_trait]
impl object_store::client::HttpService for Service {
    async fn call(
        &self,
        req: object_store::client::HttpRequest,
    ) -> Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        use http_body_util::BodyExt as _;
        let (parts, body) = req.into_parts();
        let url = parts.uri.to_string();
        let mut headers = parts.headers;
        if !headers.contains_key(reqwest::header::CONTENT_LENGTH) && !body.is_empty() {
            headers.insert(reqwest::header::CONTENT_LENGTH, body.content_length().into());
        }
        let body = match body.as_bytes() {
            Some(b) => reqwest::Body::from(b.clone()),
            None => reqwest::Body::wrap(body),
        };
        let resp =
            self.client.request(parts.method, url).headers(headers).body(body).send().await.map_err(http_error)?;
        let resp: http::Response<reqwest::Body> = resp.into();
        let (parts, body) = resp.into_parts();
        let body = object_store::client::HttpResponseBody::new(body.map_err(http_error));
        Ok(http::Response::from_parts(parts, body))
    }
}
