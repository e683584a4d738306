//! Synchronising many images at once (as `skopeo sync`): each image is
//! copied only when its destination does not already hold it, and then only
//! the blobs the destination lacks move; several images move in parallel.

use cargohold_image_core::{
    CopyOptions, CopyReport, Digest, ImageLocation, NoProgress, Reference, Store, copied_digest, copy_async,
};
use futures_util::StreamExt;

use crate::adapter::Registry;
use crate::open::{open_dest_async, open_source_async};

/// One image to synchronise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncImage {
    /// Where it is read from.
    pub source: ImageLocation,
    /// Where it goes.
    pub destination: ImageLocation,
}

/// What happened to one image.
#[derive(Debug)]
pub enum SyncResult {
    /// The destination already held this manifest: nothing moved.
    UpToDate(Digest),
    /// Copied (only the blobs the destination lacked).
    Copied(Box<CopyReport>),
}

/// The outcome of one image of a sync.
#[derive(Debug)]
pub struct SyncOutcome {
    /// The image.
    pub image: SyncImage,
    /// What happened, or why it failed.
    pub result: cargohold_image_core::Result<SyncResult>,
}

/// The digest `dest` holds now, if any (an unreadable destination holds
/// nothing).
async fn held_digest(dest: &ImageLocation, store: &Store, reg: &Registry) -> Option<Digest> {
    match dest {
        ImageLocation::Docker(r) => {
            let r = reg.resolve(&Reference::parse(r).ok()?).ok()?;
            let tag = r.digest().map(|d| d.to_string()).or_else(|| r.tag().map(str::to_owned))?;
            reg.client().head_manifest(r.registry(), r.repository(), &tag).await.ok().flatten().map(|d| d.digest)
        }
        ImageLocation::Oci { path, .. } if !path.join("index.json").exists() => None,
        other => open_source_async(other, store, reg).await.ok()?.top_manifest().await.ok().map(|m| m.digest),
    }
}

async fn sync_one(
    reg: &Registry,
    store: &Store,
    image: &SyncImage,
    opts: &CopyOptions,
) -> cargohold_image_core::Result<SyncResult> {
    let src = open_source_async(&image.source, store, reg).await?;
    let wanted = copied_digest(src.as_ref(), opts).await?;
    if held_digest(&image.destination, store, reg).await.as_ref() == Some(&wanted) {
        return Ok(SyncResult::UpToDate(wanted));
    }
    let dst = open_dest_async(&image.destination, store, reg, src.name_hint().as_ref()).await?;
    let report = copy_async(src.as_ref(), dst.as_ref(), opts, LAYER_JOBS, &NoProgress).await?;
    Ok(SyncResult::Copied(Box::new(report)))
}

/// Layers in flight per image of a sync.
const LAYER_JOBS: usize = 4;

/// Synchronises `images`, `jobs` at a time (each moving its layers in
/// parallel too), calling `done` as each finishes. One image failing does
/// not stop the others; every outcome is returned, in the order given.
pub fn sync(
    reg: &Registry,
    store: &Store,
    images: &[SyncImage],
    opts: &CopyOptions,
    jobs: usize,
    done: &(dyn Fn(&SyncOutcome) + Sync),
) -> Vec<SyncOutcome> {
    reg.block_on(reg.sync_images(store, images, opts, jobs, done))
}

impl Registry {
    /// [`sync`] for async code, inside the caller's runtime.
    pub async fn sync_images(
        &self,
        store: &Store,
        images: &[SyncImage],
        opts: &CopyOptions,
        jobs: usize,
        done: &(dyn Fn(&SyncOutcome) + Sync),
    ) -> Vec<SyncOutcome> {
        let limit = tokio::sync::Semaphore::new(jobs.max(1));
        images
            .iter()
            .map(|image| self.sync_limited(&limit, store, image, opts, done))
            .collect::<futures_util::stream::FuturesOrdered<_>>()
            .collect()
            .await
    }

    async fn sync_limited(
        &self,
        limit: &tokio::sync::Semaphore,
        store: &Store,
        image: &SyncImage,
        opts: &CopyOptions,
        done: &(dyn Fn(&SyncOutcome) + Sync),
    ) -> SyncOutcome {
        let _turn = limit.acquire().await.expect("the semaphore is never closed");
        let outcome = SyncOutcome { image: image.clone(), result: sync_one(self, store, image, opts).await };
        done(&outcome);
        outcome
    }
}

/// Which tags of a repository to synchronise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagSelection {
    /// Every tag.
    All,
    /// These tags (or digests).
    List(Vec<String>),
    /// Tags matching a regular expression (`images-by-tag-regex`).
    Regex(String),
    /// Tags matching any of these globs (`*`, `?`).
    Globs(Vec<String>),
}

impl TagSelection {
    /// The tags of `available` it selects, in their order; a `List` as given.
    pub fn select(&self, available: &[String]) -> Result<Vec<String>, String> {
        Ok(match self {
            TagSelection::All => available.to_vec(),
            TagSelection::List(tags) => tags.clone(),
            TagSelection::Regex(re) => {
                let re = regex::Regex::new(re).map_err(|e| format!("bad tag regex {re:?}: {e}"))?;
                available.iter().filter(|t| re.is_match(t)).cloned().collect()
            }
            TagSelection::Globs(globs) => {
                available.iter().filter(|t| globs.iter().any(|g| glob_match(g, t))).cloned().collect()
            }
        })
    }
}

/// `*` (any run) and `?` (one character) matching of a whole tag.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One registry of a `skopeo sync` YAML file.
#[derive(Debug, Clone)]
pub struct SyncRegistry {
    /// `host[:port]`.
    pub registry: String,
    /// Repositories and the tags of each to synchronise.
    pub images: Vec<(String, TagSelection)>,
    /// Credentials for this registry (`credentials: {username, password}`).
    pub credentials: Option<crate::Credentials>,
    /// `tls-verify: false`: the registry as insecure.
    pub tls_verify: bool,
    /// `cert-dir`: the registry's certificates (`*.crt`, `NAME.cert` +
    /// `NAME.key`), in place of its `certs.d` ones.
    pub cert_dir: Option<std::path::PathBuf>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct YamlRegistry {
    #[serde(default)]
    images: std::collections::BTreeMap<String, Option<Vec<String>>>,
    #[serde(default)]
    images_by_tag_regex: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    images_by_semver: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    credentials: Option<YamlCredentials>,
    #[serde(default)]
    tls_verify: Option<bool>,
    #[serde(default)]
    cert_dir: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlCredentials {
    username: String,
    password: String,
}

/// Parses a `skopeo sync --src yaml` file: registries, each with `images`
/// (repository -> tags; none: all), `images-by-tag-regex`, `credentials`,
/// `tls-verify` and `cert-dir`. Errors name `file` (and the line where YAML knows it).
pub fn parse_sync_yaml(text: &str, file: &str) -> crate::Result<Vec<SyncRegistry>> {
    let fail = |reason: String| crate::Error::Config { path: file.to_owned(), reason };
    let parsed: std::collections::BTreeMap<String, YamlRegistry> = serde_yaml_ng::from_str(text).map_err(|e| {
        let at = e.location().map_or_else(String::new, |l| format!(", line {}", l.line()));
        crate::Error::Config { path: format!("{file}{at}"), reason: e.to_string() }
    })?;
    let mut out = Vec::new();
    for (registry, r) in parsed {
        if !cargohold_image_core::is_valid_registry(&registry) {
            return Err(fail(format!("{registry:?} is not a registry host[:port]")));
        }
        if r.images_by_semver.is_some() {
            return Err(fail(format!("{registry}: images-by-semver is not supported (use images-by-tag-regex)")));
        }
        let mut images = Vec::new();
        for (repo, tags) in r.images {
            let sel = match tags {
                None => TagSelection::All,
                Some(t) if t.is_empty() => TagSelection::All,
                Some(t) => TagSelection::List(t),
            };
            images.push((repo, sel));
        }
        for (repo, re) in r.images_by_tag_regex {
            regex::Regex::new(&re).map_err(|e| fail(format!("{registry}/{repo}: bad tag regex {re:?}: {e}")))?;
            images.push((repo, TagSelection::Regex(re)));
        }
        for (repo, _) in &images {
            Reference::from_parts(&registry, repo, None, None)
                .map_err(|e| fail(format!("{registry}/{repo} is not a repository: {e}")))?;
        }
        out.push(SyncRegistry {
            registry,
            images,
            credentials: r.credentials.map(|c| crate::Credentials::new(c.username, c.password)),
            tls_verify: r.tls_verify.unwrap_or(true),
            cert_dir: r.cert_dir.map(std::path::PathBuf::from),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_regexes_and_yaml() {
        assert!(glob_match("1.*", "1.36"));
        assert!(glob_match("*-alpine", "3.1-alpine"));
        assert!(glob_match("v?", "v1"));
        assert!(!glob_match("v?", "v10"));
        assert!(!glob_match("1.*", "2.1"));
        let tags: Vec<String> = ["1.0", "1.1", "2.0", "latest"].iter().map(|s| s.to_string()).collect();
        assert_eq!(TagSelection::Regex(r"^1\.".into()).select(&tags).unwrap(), ["1.0", "1.1"]);
        assert_eq!(TagSelection::Globs(vec!["*.0".into()]).select(&tags).unwrap(), ["1.0", "2.0"]);
        let regs = parse_sync_yaml(
            "localhost:5000:\n  images:\n    team/app: []\n    team/db: ['1', '2']\n  images-by-tag-regex:\n    team/web: ^v\n  tls-verify: false\n  credentials:\n    username: u\n    password: p\n",
            "sync.yaml",
        )
        .unwrap();
        assert_eq!(regs.len(), 1);
        assert_eq!(regs[0].images.len(), 3);
        assert!(!regs[0].tls_verify);
        let err = parse_sync_yaml("r.example:\n  images:\n    a: []\n  frobnicate: 1\n", "s.yaml").unwrap_err();
        assert!(err.to_string().contains("s.yaml") && err.to_string().contains("frobnicate"), "{err}");
        let err = parse_sync_yaml("r.example:\n  images-by-semver:\n    a: '>= 1'\n", "s.yaml").unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}
