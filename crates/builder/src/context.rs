//! The build context: resolving COPY/ADD sources inside it (globs,
//! directories, `.dockerignore`), never leaving it (names are cleaned and
//! `..` cannot climb out; symlinks are listed as links, never followed), and
//! the content digest of what a step copies (its cache key part).

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use cargohold_image_core::{Algorithm, Digest, Hasher};

use crate::dockerignore::Dockerignore;

/// One file (or directory, symlink) a step takes from the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Path relative to the context root (its names as they are on disk,
    /// UTF-8 or not).
    pub rel: PathBuf,
    /// `file`, `dir` or `symlink`.
    pub kind: &'static str,
    /// Permission bits.
    pub mode: u32,
    /// The symlink's target.
    pub link: Option<PathBuf>,
    /// Bytes (regular files).
    pub size: u64,
    /// Which source pattern brought it in (index into the sources).
    pub source: usize,
    /// The path the pattern matched that brought this entry in (the entry
    /// itself, or the directory it is under); empty for the context root.
    pub matched: PathBuf,
}

/// A source that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The source names nothing in the context.
    #[error("{source_name} is not in the build context {} (or .dockerignore excludes it)", context.display())]
    NotFound {
        /// The source as written.
        source_name: String,
        /// The context directory.
        context: PathBuf,
    },
    /// The source climbs out of the context.
    #[error("{0} is outside the build context")]
    Outside(String),
    /// Reading the context failed.
    #[error("could not read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A build context directory and its `.dockerignore`.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: Dockerignore,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io { path: path.to_path_buf(), source }
}

impl Context {
    /// The context at `root`, reading its `.dockerignore` when there is one.
    pub fn open(root: &Path) -> Result<Self, ContextError> {
        let ignore = match std::fs::read_to_string(root.join(".dockerignore")) {
            Ok(t) => Dockerignore::parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Dockerignore::default(),
            Err(e) => return Err(ContextError::Io { path: root.join(".dockerignore"), source: e }),
        };
        Ok(Context { root: root.to_path_buf(), ignore })
    }

    /// A directory used as a source without a `.dockerignore` (another
    /// stage's or image's root for `COPY --from`).
    pub fn open_plain(root: &Path) -> Self {
        Context { root: root.to_path_buf(), ignore: Dockerignore::default() }
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every entry the sources name, sorted and without duplicates; a
    /// directory brings its whole (not ignored) tree. A glob may match
    /// several top-level names; a source matching nothing is an error.
    pub fn resolve(&self, sources: &[String]) -> Result<Vec<ContextEntry>, ContextError> {
        let mut out: Vec<ContextEntry> = Vec::new();
        for (n, src) in sources.iter().enumerate() {
            let parts = clean(src).ok_or_else(|| ContextError::Outside(src.clone()))?;
            let mut matched = Vec::new();
            self.expand(&parts, PathBuf::new(), &mut matched)?;
            let before = out.len();
            for rel in matched {
                if rel.as_os_str().is_empty() || !self.ignore.excluded_path(&rel) {
                    self.walk(&rel, n, &rel, &mut out)?;
                }
            }
            if out.len() == before {
                return Err(ContextError::NotFound { source_name: src.clone(), context: self.root.clone() });
            }
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        out.dedup_by(|a, b| a.rel == b.rel);
        Ok(out)
    }

    /// The paths matching the pattern components (globs per component).
    fn expand(&self, parts: &[String], prefix: PathBuf, out: &mut Vec<PathBuf>) -> Result<(), ContextError> {
        let Some((first, rest)) = parts.split_first() else {
            out.push(prefix);
            return Ok(());
        };
        let dir = self.root.join(&prefix);
        let join = |name: &std::ffi::OsStr| prefix.join(name);
        if !first.contains(['*', '?', '[']) {
            let candidate = join(std::ffi::OsStr::new(first));
            let meta = std::fs::symlink_metadata(self.root.join(&candidate));
            // Only real directories are descended into: a symlink never leads out.
            if meta.as_ref().is_ok_and(|m| rest.is_empty() || m.is_dir()) {
                self.expand(rest, candidate, out)?;
            }
            return Ok(());
        }
        let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(()) };
        let mut names: Vec<std::ffi::OsString> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            if crate::dockerignore::glob_component_bytes(first, name.as_bytes()) {
                let candidate = join(&name);
                let is_dir = std::fs::symlink_metadata(self.root.join(&candidate)).is_ok_and(|m| m.is_dir());
                if rest.is_empty() || is_dir {
                    self.expand(rest, candidate, out)?;
                }
            }
        }
        Ok(())
    }

    fn walk(&self, rel: &Path, source: usize, matched: &Path, out: &mut Vec<ContextEntry>) -> Result<(), ContextError> {
        let mk = || matched.to_path_buf();
        use std::os::unix::fs::PermissionsExt as _;
        let path = if rel.as_os_str().is_empty() { self.root.clone() } else { self.root.join(rel) };
        let m = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            let link = std::fs::read_link(&path).map_err(io(&path))?;
            out.push(ContextEntry {
                rel: rel.to_path_buf(),
                kind: "symlink",
                mode,
                link: Some(link),
                size: 0,
                source,
                matched: mk(),
            });
        } else if m.is_dir() {
            if !rel.as_os_str().is_empty() {
                out.push(ContextEntry {
                    rel: rel.to_path_buf(),
                    kind: "dir",
                    mode,
                    link: None,
                    size: 0,
                    source,
                    matched: mk(),
                });
            }
            let mut names: Vec<std::ffi::OsString> =
                std::fs::read_dir(&path).map_err(io(&path))?.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for name in names {
                let child = rel.join(&name);
                let excluded = self.ignore.excluded_path(&child);
                if excluded && self.ignore.can_skip_dir_path(&child) {
                    continue;
                }
                if !excluded || std::fs::symlink_metadata(self.root.join(&child)).is_ok_and(|m| m.is_dir()) {
                    let keep_dir_only = excluded;
                    let before = out.len();
                    self.walk(&child, source, matched, out)?;
                    // An excluded directory walked for exceptions keeps only what they re-include.
                    if keep_dir_only && out.len() == before + 1 {
                        out.truncate(before);
                    }
                }
            }
        } else if m.is_file() {
            out.push(ContextEntry {
                rel: rel.to_path_buf(),
                kind: "file",
                mode,
                link: None,
                size: m.len(),
                source,
                matched: mk(),
            });
        }
        Ok(())
    }

    /// The content digest of `entries`: paths, kinds, modes, link targets and
    /// file contents, in order. Equal digests mean a COPY would copy the same.
    pub fn digest(&self, entries: &[ContextEntry]) -> Result<Digest, ContextError> {
        let mut h = Hasher::new(Algorithm::Sha256);
        for e in entries {
            h.update(e.rel.as_os_str().as_bytes());
            h.update(format!("\0{}\0{:o}\0", e.kind, e.mode).as_bytes());
            if let Some(l) = &e.link {
                h.update(l.as_os_str().as_bytes());
            }
            if e.kind == "file" {
                let path = self.root.join(&e.rel);
                let mut f = std::fs::File::open(&path).map_err(io(&path))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = std::io::Read::read(&mut f, &mut buf).map_err(io(&path))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            h.update(b"\n");
        }
        Ok(h.finish())
    }
}

/// Cleans a source path; `None` when it climbs out of the context.
fn clean(p: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c.to_owned()),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> (tempfile::TempDir, Context) {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for (p, data) in [
            ("a.txt", "a"),
            ("b.txt", "b"),
            ("c.log", "c"),
            ("src/main.rs", "fn main(){}"),
            ("src/x.log", "x"),
            ("tmp/junk", "j"),
        ] {
            std::fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
            std::fs::write(r.join(p), data).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", r.join("src/escape")).unwrap();
        std::fs::write(r.join(".dockerignore"), "*.log\ntmp\n!src/x.log\n").unwrap();
        let c = Context::open(r).unwrap();
        (t, c)
    }

    fn rels(v: &[ContextEntry]) -> Vec<&str> {
        v.iter().map(|e| e.rel.to_str().expect("UTF-8 in these tests")).collect()
    }

    #[test]
    fn globs_dirs_ignores_and_links() {
        let (_t, c) = ctx();
        assert_eq!(rels(&c.resolve(&["*.txt".into()]).unwrap()), ["a.txt", "b.txt"]);
        let src = c.resolve(&["./src".into()]).unwrap();
        assert_eq!(rels(&src), ["src", "src/escape", "src/main.rs", "src/x.log"]);
        assert_eq!(src[1].kind, "symlink");
        assert_eq!(src[1].link.as_deref(), Some(Path::new("/etc/passwd")));
        let all = c.resolve(&[".".into()]).unwrap();
        assert!(!rels(&all).contains(&"c.log") && !rels(&all).iter().any(|r| r.starts_with("tmp")), "{:?}", rels(&all));
        assert!(rels(&all).contains(&"src/x.log"), "the exception re-includes it");
        // Through the symlink: refused (never followed).
        assert!(matches!(c.resolve(&["src/escape/x".into()]), Err(ContextError::NotFound { .. })));
        assert!(matches!(c.resolve(&["../etc/passwd".into()]), Err(ContextError::Outside(_))));
        let e = c.resolve(&["c.log".into()]).unwrap_err().to_string();
        assert!(e.contains("c.log") && e.contains(".dockerignore"), "{e}");
    }

    #[test]
    fn names_that_are_not_utf8_are_kept_as_they_are() {
        use std::os::unix::ffi::OsStrExt as _;
        let t = tempfile::tempdir().unwrap();
        let raw = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d").join(raw), "x").unwrap();
        std::fs::write(t.path().join(".dockerignore"), "d/*.log\n").unwrap();
        let c = Context::open(t.path()).unwrap();
        for src in ["d", "d/*.txt", "d/caf?.txt"] {
            let got = c.resolve(&[src.into()]).unwrap();
            assert!(got.iter().any(|e| e.rel == Path::new("d").join(raw) && e.kind == "file"), "{src}: {got:?}");
        }
        c.digest(&c.resolve(&["d".into()]).unwrap()).unwrap();
    }

    #[test]
    fn digest_tracks_content_and_names() {
        let (t, c) = ctx();
        let d1 = c.digest(&c.resolve(&["src".into()]).unwrap()).unwrap();
        assert_eq!(d1, c.digest(&c.resolve(&["src".into()]).unwrap()).unwrap());
        std::fs::write(t.path().join("src/main.rs"), "fn main(){ }").unwrap();
        let d2 = c.digest(&c.resolve(&["src".into()]).unwrap()).unwrap();
        assert_ne!(d1, d2);
        std::fs::rename(t.path().join("src/main.rs"), t.path().join("src/lib.rs")).unwrap();
        assert_ne!(d2, c.digest(&c.resolve(&["src".into()]).unwrap()).unwrap());
    }
}
