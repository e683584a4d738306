//! Publish on push: registry webhooks (distribution's envelope, which
//! `cargohold serve` sends too, and Harbor's) become jobs in a durable
//! queue (a directory; a job is written, fsynced and renamed into it before
//! the webhook is answered, so a killed listener loses nothing the registry
//! was told was taken), and a worker converts pushed images and unpublishes
//! deleted ones, retrying failures with back-off.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cargohold_image_core::ImageUrl;

use crate::convert::{Publisher, Status, error_chain};
use crate::error::{Result, io_err};
use crate::tree::write_atomic;
use crate::wishlist::Wishlist;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobAction {
    /// Convert the image (it was pushed).
    Publish,
    /// Unpublish it (it was deleted).
    Unpublish,
}

/// One queued job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// Publish or unpublish.
    pub action: JobAction,
    /// The image, as a wish list names it (`https://registry/repo:tag`).
    pub image: String,
    /// Tries so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not before this (seconds since the epoch).
    #[serde(default)]
    pub not_before: u64,
    /// The last failure.
    #[serde(default)]
    pub last_error: Option<String>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A directory of jobs, one file each, named so that they sort in arrival
/// order.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    seq: AtomicU64,
}

impl Queue {
    /// The queue in `dir` (created when missing).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        Ok(Queue { dir: dir.to_path_buf(), seq: AtomicU64::new(0) })
    }

    /// Adds jobs, durably (each file fsynced, then the directory).
    pub fn push(&self, jobs: &[Job]) -> Result<()> {
        for job in jobs {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let path = self.dir.join(format!("{t:024}-{}-{n:06}.json", std::process::id()));
            write_atomic(&path, &serde_json::to_vec(job).expect("jobs serialize"))?;
        }
        Ok(())
    }

    /// Every job, in arrival order (with its file); unreadable files are
    /// reported as errors in place of jobs.
    pub fn jobs(&self) -> Result<Vec<(PathBuf, std::result::Result<Job, String>)>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io_err("read", &self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|p| {
                let job = std::fs::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
                (p, job)
            })
            .collect())
    }

    /// Removes a finished job.
    pub fn done(&self, path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", path)(e)),
        }
    }

    /// Keeps a failed job for later: back-off doubling from 2 s up to 5 min.
    pub fn retry_later(&self, path: &Path, mut job: Job, error: String) -> Result<Job> {
        job.attempts += 1;
        job.not_before = now() + (2u64 << job.attempts.min(8)).min(300);
        job.last_error = Some(error);
        write_atomic(path, &serde_json::to_vec(&job).expect("jobs serialize"))?;
        Ok(job)
    }
}

/// How webhooks are read.
#[derive(Debug, Clone, Default)]
pub struct HookOptions {
    /// Requests must carry `Authorization: Bearer <secret>` (or the bare secret).
    pub secret: Option<String>,
    /// The registry's address as this publisher reaches it
    /// (`https://registry.example`), instead of the one the events name.
    pub registry_url: Option<String>,
    /// Only images an input of this wish list covers.
    pub filter: Option<Wishlist>,
}

fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type.contains("image.index")
}

/// `scheme://host` of a URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// The jobs a webhook body asks for (distribution's envelope or Harbor's
/// payload); events that are not about a tagged manifest are left out.
pub fn jobs_of_webhook(body: &[u8], opts: &HookOptions) -> std::result::Result<Vec<Job>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = Vec::new();
    let mut add = |action: JobAction, origin_of: Option<String>, repository: &str, tag: &str| {
        let Some(origin) = opts.registry_url.clone().map(|u| u.trim_end_matches('/').to_owned()).or(origin_of) else {
            return;
        };
        // `tag` is a tag, or `@digest`.
        let image = if tag.starts_with('@') {
            format!("{origin}/{repository}{tag}")
        } else {
            format!("{origin}/{repository}:{tag}")
        };
        let Ok(url) = ImageUrl::parse(&image) else { return };
        if let Some(w) = &opts.filter {
            let covered = w.inputs.iter().any(|i| {
                i.url.registry == url.registry
                    && i.url.repository == url.repository
                    && (tag.starts_with('@') || i.url.tag_matches(tag) || i.url.tag.as_deref() == Some(tag))
            });
            if !covered {
                return;
            }
        }
        out.push(Job { action, image, attempts: 0, not_before: 0, last_error: None });
    };
    if let Some(events) = v.get("events").and_then(|e| e.as_array()) {
        // distribution.
        for e in events {
            let action = match e["action"].as_str() {
                Some("push") => JobAction::Publish,
                Some("delete") => JobAction::Unpublish,
                _ => continue,
            };
            let t = &e["target"];
            let Some(repo) = t["repository"].as_str() else { continue };
            // A manifest deleted by digest unpublishes the tags that were it.
            let digest = t["digest"].as_str().filter(|d| d.contains(':'));
            let reference = match (t["tag"].as_str(), action, digest) {
                (Some(tag), _, _) => tag.to_owned(),
                (None, JobAction::Unpublish, Some(d)) if is_manifest(t["mediaType"].as_str().unwrap_or("manifest")) => {
                    format!("@{d}")
                }
                _ => continue,
            };
            if action == JobAction::Publish && !is_manifest(t["mediaType"].as_str().unwrap_or_default()) {
                continue;
            }
            let tag = reference.as_str();
            let from_url = t["url"].as_str().and_then(origin);
            let from_host = e["request"]["host"].as_str().filter(|h| !h.is_empty()).map(|h| format!("https://{h}"));
            add(action, from_url.or(from_host), repo, tag);
        }
    } else if let Some(kind) = v.get("type").and_then(|t| t.as_str()) {
        // Harbor: PUSH_ARTIFACT / DELETE_ARTIFACT.
        let action = match kind {
            "PUSH_ARTIFACT" => JobAction::Publish,
            "DELETE_ARTIFACT" => JobAction::Unpublish,
            _ => return Ok(out),
        };
        let repo = v["event_data"]["repository"]["repo_full_name"].as_str().unwrap_or_default().to_owned();
        for r in v["event_data"]["resources"].as_array().into_iter().flatten() {
            let Some(tag) = r["tag"].as_str().filter(|t| !t.is_empty()) else { continue };
            // resource_url: host/project/repo:tag
            let host = r["resource_url"].as_str().and_then(|u| u.split('/').next()).map(|h| format!("https://{h}"));
            add(action, host, &repo, tag);
        }
    } else {
        return Err("neither distribution's envelope (events) nor Harbor's payload (type)".into());
    }
    Ok(out)
}

/// Reads one HTTP request (head, and a `Content-Length` body of at most
/// 1 MiB) and answers it: 200 once the jobs are queued.
fn handle(mut conn: TcpStream, queue: &Queue, opts: &HookOptions, log: &(dyn Fn(&str) + Sync)) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let answer = |conn: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 || conn.read(&mut byte).map_or(true, |n| n == 0) {
            return answer(&mut conn, "400 Bad Request", "a malformed request\n");
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    if !request_line.starts_with("POST ") {
        return answer(&mut conn, "405 Method Not Allowed", "POST events here\n");
    }
    if let Some(secret) = &opts.secret {
        let given = header("authorization").unwrap_or_default();
        let given = given.strip_prefix("Bearer ").unwrap_or(&given);
        if given.len() != secret.len() || given.bytes().zip(secret.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
            return answer(&mut conn, "401 Unauthorized", "a wrong or missing secret\n");
        }
    }
    let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) else {
        return answer(&mut conn, "411 Length Required", "send a Content-Length\n");
    };
    if len > 1 << 20 {
        return answer(&mut conn, "413 Payload Too Large", "events of at most 1 MiB\n");
    }
    let mut body = vec![0u8; len];
    if conn.read_exact(&mut body).is_err() {
        return answer(&mut conn, "400 Bad Request", "the body broke off\n");
    }
    match jobs_of_webhook(&body, opts) {
        Err(why) => {
            log(&format!("refused a webhook: {why}"));
            answer(&mut conn, "400 Bad Request", &format!("{why}\n"));
        }
        Ok(jobs) => match queue.push(&jobs) {
            Ok(()) => {
                for j in &jobs {
                    log(&format!("queued: {:?} {}", j.action, j.image));
                }
                answer(&mut conn, "200 OK", "queued\n");
            }
            // Not queued: the registry sends it again.
            Err(e) => {
                log(&format!("could not queue a webhook: {}", error_chain(&e)));
                answer(&mut conn, "503 Service Unavailable", "could not queue\n");
            }
        },
    }
}

/// Accepts webhooks on `listener` until `stop` is set.
pub fn accept_hooks(
    listener: &TcpListener,
    queue: &Queue,
    opts: &HookOptions,
    stop: &AtomicBool,
    log: &(dyn Fn(&str) + Sync),
) {
    let _ = listener.set_nonblocking(true);
    std::thread::scope(|s| {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    s.spawn(move || handle(conn, queue, opts, log));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
}

/// Works through the queue until `stop` is set: each due job converts or
/// unpublishes its image; a failure is kept and retried later.
pub fn work_queue(
    queue: &Queue,
    publisher: &Publisher<'_>,
    stop: &AtomicBool,
    log: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let mut did = false;
        for (path, job) in queue.jobs()? {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let job = match job {
                Ok(j) => j,
                Err(why) => {
                    log(&format!("dropping the unreadable job {}: {why}", path.display()));
                    queue.done(&path)?;
                    continue;
                }
            };
            if job.not_before > now() {
                continue;
            }
            did = true;
            let outcome: std::result::Result<(), String> = (|| {
                let url = ImageUrl::parse(&job.image).map_err(|e| format!("{}: {e}", job.image))?;
                match job.action {
                    JobAction::Publish => {
                        let reports = publisher.run(|p| p.convert_image_all(&url));
                        match reports.iter().find(|r| r.status == Status::Failed) {
                            Some(r) => Err(r.error.clone().unwrap_or_else(|| "failed".into())),
                            None => Ok(()),
                        }
                    }
                    JobAction::Unpublish => {
                        publisher.delete_image(&url, false).map(|_| ()).map_err(|e| error_chain(&e))
                    }
                }
            })();
            match outcome {
                Ok(()) => {
                    log(&format!("done: {:?} {}", job.action, job.image));
                    queue.done(&path)?;
                }
                Err(why) => {
                    let image = job.image.clone();
                    let j = queue.retry_later(&path, job, why.clone())?;
                    log(&format!(
                        "failed (try {}, again in {} s): {image}: {why}",
                        j.attempts,
                        j.not_before.saturating_sub(now())
                    ));
                }
            }
        }
        if !did {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// Listens for webhooks and works the queue, both until `stop` is set.
pub fn listen(
    listener: &TcpListener,
    queue: &Queue,
    publisher: &Publisher<'_>,
    opts: &HookOptions,
    stop: &AtomicBool,
    log: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| accept_hooks(listener, queue, opts, stop, log));
        let r = work_queue(queue, publisher, stop, log);
        if r.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_of_distribution_and_harbor() {
        let dist = br#"{"events":[
          {"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"team/app","tag":"1","url":"http://127.0.0.1:5000/v2/team/app/manifests/sha256:ab"},"request":{"host":"127.0.0.1:5000"}},
          {"action":"push","target":{"mediaType":"application/octet-stream","repository":"team/app","url":"http://127.0.0.1:5000/v2/team/app/blobs/sha256:cd"}},
          {"action":"delete","target":{"repository":"team/app","tag":"0"},"request":{"host":"r.example"}},
          {"action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"team/app","tag":"1"}}]}"#;
        let jobs = jobs_of_webhook(dist, &HookOptions::default()).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!((jobs[0].action, jobs[0].image.as_str()), (JobAction::Publish, "http://127.0.0.1:5000/team/app:1"));
        assert_eq!((jobs[1].action, jobs[1].image.as_str()), (JobAction::Unpublish, "https://r.example/team/app:0"));
        let harbor = br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"2","resource_url":"harbor.example/lib/app:2"}],"repository":{"repo_full_name":"lib/app"}}}"#;
        let jobs = jobs_of_webhook(harbor, &HookOptions::default()).unwrap();
        assert_eq!(jobs[0].image, "https://harbor.example/lib/app:2");
        let opts = HookOptions { registry_url: Some("http://10.0.0.1:5000".into()), ..HookOptions::default() };
        assert_eq!(jobs_of_webhook(dist, &opts).unwrap()[0].image, "http://10.0.0.1:5000/team/app:1");
        assert!(jobs_of_webhook(b"{}", &opts).is_err());
        assert!(jobs_of_webhook(b"nope", &opts).is_err());
    }
}
