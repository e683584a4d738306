//! Volumes: directories kept beside the store for containers to mount
//! (`-v NAME:/path`, `-v /path` for an anonymous one, `--mount
//! type=volume`), made on first use, surviving their containers unless
//! removed (`rm -v` takes a container's anonymous ones), plus the parsing
//! of Docker's `-v`, `--mount` and `--tmpfs` options.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ExecError;

/// A tmpfs mounted in the container (`--tmpfs`, `--mount type=tmpfs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Absolute path in the container.
    pub target: PathBuf,
    /// tmpfs options (`size=64m,mode=1777`); always `nosuid,nodev`.
    pub options: String,
}

/// What `-v`, `--mount` or `--tmpfs` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// A host path (made when missing, as Docker does).
    Bind {
        /// Host path.
        source: PathBuf,
        /// Container path.
        target: PathBuf,
        /// Read-only.
        readonly: bool,
    },
    /// A volume, named or (`None`) anonymous.
    Volume {
        /// Its name.
        name: Option<String>,
        /// Container path.
        target: PathBuf,
        /// Read-only.
        readonly: bool,
    },
    /// A tmpfs.
    Tmpfs(TmpfsMount),
}

fn bad(option: &str, value: &str, message: &str) -> ExecError {
    ExecError::Option { option: format!("{option} {value}"), message: message.into() }
}

fn target(option: &str, value: &str, t: &str) -> Result<PathBuf, ExecError> {
    if !t.starts_with('/') {
        return Err(bad(option, value, &format!("the container path {t:?} is not absolute")));
    }
    Ok(PathBuf::from(t))
}

/// Whether `name` is a volume name as Docker takes them.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl MountRequest {
    /// Docker's `-v`: `/path` (anonymous volume), `NAME:/path[:ro|rw]`,
    /// `HOST:/path[:ro|rw]` (a host path starts with `/`, `.` or `~`).
    pub fn parse_volume(v: &str) -> Result<MountRequest, ExecError> {
        let parts: Vec<&str> = v.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [d] => return Ok(MountRequest::Volume { name: None, target: target("-v", v, d)?, readonly: false }),
            [s, d] => (*s, *d, "rw"),
            [s, d, m] => (*s, *d, *m),
            _ => return Err(bad("-v", v, "expected /PATH, NAME:/PATH[:ro] or HOST:/PATH[:ro]")),
        };
        let readonly = match mode {
            "ro" => true,
            "rw" => false,
            other => return Err(bad("-v", v, &format!("unknown mode {other:?} (ro or rw)"))),
        };
        let target = target("-v", v, dst)?;
        if src.starts_with('/') || src.starts_with('.') {
            return Ok(MountRequest::Bind { source: src.into(), target, readonly });
        }
        if !valid_volume_name(src) {
            return Err(bad("-v", v, &format!("{src:?} is neither a host path nor a volume name")));
        }
        Ok(MountRequest::Volume { name: Some(src.into()), target, readonly })
    }

    /// Docker's `--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,tmpfs-size=..][,tmpfs-mode=..]`.
    pub fn parse_mount(m: &str) -> Result<MountRequest, ExecError> {
        let (mut kind, mut source, mut dest, mut readonly) = ("volume", None, None, false);
        let mut tmpfs = Vec::new();
        for field in m.split(',') {
            let (k, v) = field.split_once('=').unwrap_or((field, ""));
            match k {
                "type" => kind = v,
                "source" | "src" => source = Some(v),
                "target" | "destination" | "dst" => dest = Some(v),
                "readonly" | "ro" => readonly = v.is_empty() || v == "true" || v == "1",
                "tmpfs-size" => tmpfs.push(format!("size={v}")),
                "tmpfs-mode" => tmpfs.push(format!("mode={v}")),
                _ => return Err(bad("--mount", m, &format!("unsupported field {k:?}"))),
            }
        }
        let dest = target("--mount", m, dest.ok_or_else(|| bad("--mount", m, "no target"))?)?;
        match (kind, source) {
            ("bind", Some(s)) => Ok(MountRequest::Bind { source: s.into(), target: dest, readonly }),
            ("bind", None) => Err(bad("--mount", m, "a bind mount needs a source")),
            ("volume", Some(s)) if !valid_volume_name(s) => Err(bad("--mount", m, "not a volume name")),
            ("volume", s) => Ok(MountRequest::Volume { name: s.map(str::to_owned), target: dest, readonly }),
            ("tmpfs", None) => Ok(MountRequest::Tmpfs(TmpfsMount { target: dest, options: tmpfs.join(",") })),
            ("tmpfs", Some(_)) => Err(bad("--mount", m, "a tmpfs has no source")),
            (other, _) => Err(bad("--mount", m, &format!("unknown type {other:?} (bind, volume or tmpfs)"))),
        }
    }

    /// Docker's `--tmpfs /path[:options]`.
    pub fn parse_tmpfs(t: &str) -> Result<MountRequest, ExecError> {
        let (path, options) = t.split_once(':').unwrap_or((t, ""));
        Ok(MountRequest::Tmpfs(TmpfsMount { target: target("--tmpfs", t, path)?, options: options.into() }))
    }
}

/// The volumes of a store: `DIR/NAME/_data` each (Docker's layout).
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

/// One volume.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    /// Its name (64 hexadecimal digits for an anonymous one).
    pub name: String,
    /// Where its data is.
    pub mountpoint: PathBuf,
    /// Made for one container (`-v /path`), not by name: removed with it
    /// under `--rm` and `rm -v`, and by `volume prune` without `-a`.
    pub anonymous: bool,
}

/// The file that marks a volume anonymous (beside its `_data`).
const ANONYMOUS: &str = "anonymous";

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ExecError + use<> {
    let path = path.to_path_buf();
    move |source| ExecError::Io { action, path, source }
}

impl Volumes {
    /// The volumes under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Volumes { dir: dir.into() }
    }

    fn volume(&self, name: &str) -> Volume {
        let dir = self.dir.join(name);
        Volume { name: name.into(), mountpoint: dir.join("_data"), anonymous: dir.join(ANONYMOUS).exists() }
    }

    /// The volume `name`, made when missing (`None`: a new anonymous one).
    pub fn ensure(&self, name: Option<&str>) -> Result<Volume, ExecError> {
        let anonymous = name.is_none();
        let name = match name {
            Some(n) if !valid_volume_name(n) => {
                return Err(ExecError::Option { option: format!("volume {n}"), message: "not a volume name".into() });
            }
            Some(n) => n.to_owned(),
            None => {
                let mut bytes = [0u8; 32];
                let f = Path::new("/dev/urandom");
                std::io::Read::read_exact(&mut std::fs::File::open(f).map_err(io("open", f))?, &mut bytes)
                    .map_err(io("read", f))?;
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            }
        };
        let mut v = self.volume(&name);
        std::fs::create_dir_all(&v.mountpoint).map_err(io("create", &v.mountpoint))?;
        if anonymous {
            let marker = self.dir.join(&name).join(ANONYMOUS);
            std::fs::write(&marker, b"").map_err(io("create", &marker))?;
            v.anonymous = true;
        }
        Ok(v)
    }

    /// Fills an empty volume from the image, as Docker and podman do when a
    /// new volume is mounted where the image has content: the merged view
    /// of `layers` (base first) is mounted read-only in a private mount
    /// namespace, `target` resolved inside it (never outside), and when it
    /// is a directory its contents are copied into the volume with their
    /// owners, modes and times, and the volume's top directory takes its
    /// owner and mode. A volume with anything in it is left alone. Returns
    /// whether anything was copied.
    pub fn populate(&self, v: &Volume, layers: &[PathBuf], target: &Path) -> Result<bool, ExecError> {
        let empty = std::fs::read_dir(&v.mountpoint).map_err(io("list", &v.mountpoint))?.next().is_none();
        if !empty || layers.is_empty() {
            return Ok(false);
        }
        let rel: PathBuf = target.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
        if rel.as_os_str().is_empty() {
            return Ok(false);
        }
        let view =
            tempfile::Builder::new().prefix("cargohold-volume-").tempdir().map_err(io("create", Path::new("/tmp")))?;
        let at = view.path().to_path_buf();
        let (layers, dest) = (layers.to_vec(), v.mountpoint.clone());
        crate::mounts::in_private_mounts(move || -> Result<bool, ExecError> {
            crate::mounts::mount_overlay(&layers, None, &at).map_err(|m| ExecError::Io {
                action: "mount the image at",
                path: at.clone(),
                source: std::io::Error::other(m),
            })?;
            let root = cargohold_layerfs::Root::open(&at).map_err(|e| io("open", &at)(e.into()))?;
            let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY;
            let src = match root.open_in(&rel, flags) {
                Ok(fd) => fd,
                // Nothing there, or not a directory: nothing to copy.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(false),
                Err(e) => return Err(io("open the image's", &rel)(e.into())),
            };
            let dst = rustix::fs::open(&dest, flags | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| io("open", &dest)(e.into()))?;
            let mut report = crate::container::CopyReport::default();
            crate::container::copy_children(&src, &dst, true, &mut report)
                .map_err(|(p, e)| io("copy the image's content into the volume", &rel.join(p))(e))?;
            let st = rustix::fs::fstat(&src).map_err(|e| io("read", &rel)(e.into()))?;
            let (uid, gid) = (rustix::fs::Uid::from_raw(st.st_uid), rustix::fs::Gid::from_raw(st.st_gid));
            rustix::fs::fchown(&dst, Some(uid), Some(gid)).map_err(|e| io("chown", &dest)(e.into()))?;
            rustix::fs::fchmod(&dst, rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777))
                .map_err(|e| io("chmod", &dest)(e.into()))?;
            Ok(report.files + report.dirs + report.symlinks > 0)
        })
        .map_err(|m| ExecError::Io {
            action: "populate the volume",
            path: v.mountpoint.clone(),
            source: std::io::Error::other(m),
        })?
    }

    /// The volume `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Volume> {
        let v = self.volume(name);
        (valid_volume_name(name) && v.mountpoint.is_dir()).then_some(v)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, ExecError> {
        let mut out = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(io("list", &self.dir))?;
                    if let Some(v) = e.file_name().to_str().and_then(|n| self.get(n)) {
                        out.push(v);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("list", &self.dir)(e)),
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the volume `name` and its data, unless `in_use` names it.
    pub fn remove(&self, name: &str, in_use: &[String]) -> Result<(), ExecError> {
        let v = self
            .get(name)
            .ok_or_else(|| ExecError::Option { option: format!("volume {name}"), message: "no such volume".into() })?;
        if in_use.iter().any(|u| u == name) {
            return Err(ExecError::Option {
                option: format!("volume {name}"),
                message: "it is in use by a container (remove the container first)".into(),
            });
        }
        let dir = self.dir.join(&v.name);
        std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax() {
        let v = |s: &str| MountRequest::parse_volume(s);
        assert_eq!(v("/data").unwrap(), MountRequest::Volume { name: None, target: "/data".into(), readonly: false });
        assert_eq!(
            v("cache:/var/cache:ro").unwrap(),
            MountRequest::Volume { name: Some("cache".into()), target: "/var/cache".into(), readonly: true }
        );
        assert!(matches!(v("./here:/x").unwrap(), MountRequest::Bind { .. }));
        assert!(v("data").unwrap_err().to_string().contains("not absolute"));
        assert!(v("a:/b:rx").unwrap_err().to_string().contains("-v a:/b:rx"));
        let m = MountRequest::parse_mount("type=tmpfs,target=/run,tmpfs-size=1m").unwrap();
        assert_eq!(m, MountRequest::Tmpfs(TmpfsMount { target: "/run".into(), options: "size=1m".into() }));
        assert!(MountRequest::parse_mount("type=nfs,target=/x").unwrap_err().to_string().contains("unknown type"));
        assert!(MountRequest::parse_tmpfs("/t:size=2m").is_ok());
    }

    #[test]
    fn volumes_are_made_listed_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let vs = Volumes::new(t.path());
        let a = vs.ensure(Some("data")).unwrap();
        let b = vs.ensure(None).unwrap();
        assert_eq!(b.name.len(), 64);
        assert_eq!(vs.list().unwrap().len(), 2);
        assert!(vs.remove("data", &["data".into()]).unwrap_err().to_string().contains("in use"));
        vs.remove("data", &[]).unwrap();
        assert!(!a.mountpoint.exists());
        assert!(vs.remove("nope", &[]).is_err());
    }
}
