//! Managing what a tree publishes: listing it, unpublishing images
//! (`delete-image`), pruning what registries no longer have, expanding tag
//! patterns.

use cargohold_image_core::{Digest, ImageUrl};
use cargohold_registry::Registry;
use serde::Serialize;

use super::{PODMAN_STORE, Publisher, error_chain, public_name};
use crate::error::{Error, Result, io_err};
use crate::notify::Event;
use crate::wishlist::Wishlist;

/// The concrete images `url` names: itself, or for a `*` pattern every
/// matching tag of its repository (the full, paginated list), sorted.
pub fn expand(reg: &Registry, url: &ImageUrl) -> Result<Vec<ImageUrl>> {
    if !url.is_tag_pattern() {
        return Ok(vec![url.clone()]);
    }
    let mut probe = url.clone();
    probe.tag = Some("latest".into());
    let reference = probe.to_reference().map_err(cargohold_image_core::Error::from)?;
    let mut tags = reg.tags(&reference)?;
    tags.sort();
    Ok(tags
        .into_iter()
        .filter(|t| url.tag_matches(t))
        .map(|t| ImageUrl { tag: Some(t), digest: None, ..url.clone() })
        .collect())
}

/// An image `prune-images` deleted (or would delete), or why it could not.
#[derive(Debug, Clone, Serialize)]
pub struct PruneOutcome {
    /// The published name (or the wish list input, on an error).
    pub image: String,
    /// Whether it was (or, in a dry run, would be) deleted.
    pub deleted: bool,
    /// What went wrong.
    pub error: Option<String>,
}

impl Publisher<'_> {
    /// The images the tree publishes (`registry/repository:tag` names, and
    /// `.multiarch/<platform>/...` ones), sorted.
    pub fn published(&self) -> Result<Vec<String>> {
        let base = self.tree.root().join(".metadata");
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read", &dir)(e)),
            };
            for e in entries {
                let e = e.map_err(io_err("read", &dir))?;
                let ft = e.file_type().map_err(io_err("read", &e.path()))?;
                if ft.is_dir() {
                    stack.push(e.path());
                } else if e.file_name() == "manifest.json"
                    && let Ok(rel) = dir.strip_prefix(&base)
                {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a published image's public path and metadata (and those of
    /// its platforms under `.multiarch`), leaving its flat and layers for
    /// gc; `false` when the tree does not publish it. With `dry_run`, only
    /// says.
    pub fn delete_image(&self, url: &ImageUrl, dry_run: bool) -> Result<bool> {
        if url.tag.is_none()
            && let Some(d) = &url.digest
        {
            return self.delete_digest(url, d, dry_run);
        }
        self.delete_named(&public_name(url), dry_run)
    }

    /// Unpublishes every tag of `url`'s repository whose published manifest
    /// is `digest` (a registry deleted it by digest).
    fn delete_digest(&self, url: &ImageUrl, digest: &Digest, dry_run: bool) -> Result<bool> {
        let prefix = format!("{}/{}:", url.registry, url.repository);
        let mut any = false;
        for name in self.published()?.into_iter().filter(|n| n.starts_with(&prefix)) {
            let file = self.tree.metadata_dir(&name).join("manifest.json");
            let Ok(bytes) = std::fs::read(&file) else { continue };
            if digest.same_algorithm_of(&bytes) == *digest {
                any |= self.delete_named(&name, dry_run)?;
            }
        }
        Ok(any)
    }

    fn delete_named(&self, name: &str, dry_run: bool) -> Result<bool> {
        let name = name.to_owned();
        let names: Vec<String> = self
            .published()?
            .into_iter()
            .filter(|n| {
                *n == name
                    || (n.starts_with(".multiarch/")
                        && n.split_once('/')
                            .is_some_and(|(_, rest)| rest.split_once('/').is_some_and(|(_, r)| r == name)))
            })
            .collect();
        if names.is_empty() || dry_run {
            return Ok(!names.is_empty());
        }
        self.transaction(|in_txn| -> Result<()> {
            let _lock = self.section_lock(in_txn)?;
            for n in &names {
                // The public path first: nobody finds a half-deleted image.
                let d = self.tree.dir();
                d.remove(&self.tree.public_path(n))?;
                let meta = self.tree.metadata_dir(n);
                if d.exists(&meta)? {
                    let trash = self.tree.staging("delete")?;
                    d.rename(&meta, &trash.join("old"))?;
                    let _ = d.remove(&trash);
                }
                let store = self.tree.root().join(PODMAN_STORE);
                if d.exists(&store)? {
                    crate::podman::remove_name(&d, &store, &crate::podman::podman_name(n))?;
                }
                self.notifier.emit(&Event {
                    action: "delete_image",
                    image: Some(n),
                    status: Some("ok"),
                    ..Event::default()
                })?;
            }
            Ok(())
        })?;
        Ok(true)
    }

    /// DUCC's `prune-images`: every published image a wish list input covers
    /// (the same repository, a tag the input names or its pattern matches)
    /// whose tag its registry no longer lists is deleted ([`Publisher::delete_image`]).
    /// A repository whose tags cannot be listed is left alone (its error
    /// reported); digest-pinned inputs are never pruned.
    pub fn prune(&self, w: &Wishlist, dry_run: bool) -> Vec<PruneOutcome> {
        let published = match self.published() {
            Ok(p) => p,
            Err(e) => {
                return vec![PruneOutcome {
                    image: self.tree.root().display().to_string(),
                    deleted: false,
                    error: Some(error_chain(&e)),
                }];
            }
        };
        let mut out = Vec::new();
        for input in &w.inputs {
            let url = &input.url;
            if url.digest.is_some() && url.tag.is_none() {
                continue;
            }
            let prefix = format!("{}/{}:", url.registry, url.repository);
            let candidates: Vec<(String, String)> = published
                .iter()
                .filter_map(|n| n.strip_prefix(&prefix).map(|tag| (n.clone(), tag.to_owned())))
                .filter(|(_, tag)| !tag.contains('/') && !tag.contains('@'))
                .filter(|(_, tag)| {
                    if url.is_tag_pattern() { url.tag_matches(tag) } else { url.tag.as_deref() == Some(tag.as_str()) }
                })
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let mut probe = url.clone();
            probe.tag = Some("latest".into());
            probe.digest = None;
            let tags = probe
                .to_reference()
                .map_err(cargohold_image_core::Error::from)
                .map_err(Error::from)
                .and_then(|r| Ok(self.reg.tags(&r)?));
            let tags = match tags {
                Ok(t) => t,
                Err(e) => {
                    out.push(PruneOutcome {
                        image: input.text.clone(),
                        deleted: false,
                        error: Some(format!("line {}: the registry's tags: {}", input.line, error_chain(&e))),
                    });
                    continue;
                }
            };
            for (name, tag) in candidates {
                if tags.contains(&tag) {
                    continue;
                }
                let gone = ImageUrl { tag: Some(tag), digest: None, ..url.clone() };
                match self.delete_image(&gone, dry_run) {
                    Ok(deleted) => out.push(PruneOutcome { image: name, deleted, error: None }),
                    Err(e) => out.push(PruneOutcome { image: name, deleted: false, error: Some(error_chain(&e)) }),
                }
            }
        }
        out
    }
}
