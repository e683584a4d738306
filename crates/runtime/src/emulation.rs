//! Whether programs of another CPU architecture can run here: natively, or
//! through a binfmt_misc handler such as Debian's `qemu-user-static`
//! registers (`/usr/lib/binfmt.d/qemu-*.conf`).
//!
//! A container's programs run inside its own root, so a handler is only of
//! use when the kernel opened its interpreter at registration (the `F`,
//! fix-binary, flag): otherwise the kernel would look for the interpreter
//! inside the container. [`emulation`] finds the handler the kernel would
//! pick for the architecture's ELF executables, as the kernel matches them
//! (offset, magic and mask), and says why when there is none.

use std::path::{Path, PathBuf};

/// Where the kernel's binfmt_misc handlers are listed.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// How programs of an architecture run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The CPU runs them.
    Native,
    /// A binfmt_misc handler runs them.
    Handler {
        /// The handler's name (`qemu-aarch64`).
        name: String,
        /// Its interpreter, as registered.
        interpreter: PathBuf,
    },
}

/// Why programs of an architecture cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// Not an architecture whose executables are known.
    #[error("no emulation is known for the architecture {0:?}")]
    UnknownArchitecture(String),
    /// No enabled handler matches the architecture's executables.
    #[error(
        "running {arch} programs on this {host} machine needs an emulator: no binfmt_misc handler for {arch} executables is registered in {dir} (install Debian's qemu-user-static and register its /usr/lib/binfmt.d/qemu-{qemu}.conf)"
    )]
    NoHandler {
        /// The architecture asked for (OCI name).
        arch: String,
        /// This machine's architecture (OCI name).
        host: String,
        /// qemu's name for the architecture.
        qemu: String,
        /// The binfmt_misc directory read.
        dir: PathBuf,
    },
    /// A handler matches, but would be looked up inside the container.
    #[error(
        "the binfmt_misc handler {name} for {arch} executables lacks the F (fix-binary) flag: its interpreter {} would be looked for inside the container; register it with F as Debian's qemu-user-static does",
        interpreter.display()
    )]
    NotFixed {
        /// The architecture asked for.
        arch: String,
        /// The handler.
        name: String,
        /// Its interpreter.
        interpreter: PathBuf,
    },
}

/// The ELF identity of an architecture's executables: class (1: 32-bit,
/// 2: 64-bit), data (1: little-endian, 2: big-endian), `e_machine`, and
/// qemu's name for it.
fn elf_identity(arch: &str) -> Option<(u8, u8, u16, &'static str)> {
    Some(match arch {
        "amd64" => (2, 1, 62, "x86_64"),
        "386" => (1, 1, 3, "i386"),
        "arm64" => (2, 1, 183, "aarch64"),
        "arm" => (1, 1, 40, "arm"),
        "ppc64le" => (2, 1, 21, "ppc64le"),
        "ppc64" => (2, 2, 21, "ppc64"),
        "s390x" => (2, 2, 22, "s390x"),
        "riscv64" => (2, 1, 243, "riscv64"),
        "mips64le" => (2, 1, 8, "mips64el"),
        "mips64" => (2, 2, 8, "mips64"),
        "mipsle" => (1, 1, 8, "mipsel"),
        "mips" => (1, 2, 8, "mips"),
        "loong64" => (2, 1, 258, "loongarch64"),
        _ => return None,
    })
}

/// The first 20 bytes of an executable (`ET_EXEC`) of `arch`, which
/// binfmt_misc handlers match.
fn elf_header(class: u8, data: u8, machine: u16) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = data;
    h[6] = 1;
    let (ty, m) = if data == 2 {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    } else {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    };
    h[16..18].copy_from_slice(&ty);
    h[18..20].copy_from_slice(&m);
    h
}

/// This machine's architecture, by OCI's names.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Whether this machine's CPU runs `arch`'s programs itself.
fn runs_natively(arch: &str) -> bool {
    let host = host_arch();
    arch == host || (host == "amd64" && arch == "386")
}

/// One registered handler, as its binfmt_misc file describes it.
#[derive(Debug, Default)]
struct Handler {
    enabled: bool,
    interpreter: PathBuf,
    flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn parse_handler(text: &str) -> Option<Handler> {
    let mut h = Handler::default();
    let mut has_magic = false;
    for line in text.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "enabled" => h.enabled = true,
            "disabled" => h.enabled = false,
            "interpreter" => h.interpreter = PathBuf::from(value),
            "flags:" => h.flags = value.trim().to_owned(),
            "offset" => h.offset = value.trim().parse().ok()?,
            "magic" => {
                h.magic = unhex(value.trim())?;
                has_magic = true;
            }
            "mask" => h.mask = unhex(value.trim())?,
            // `extension .exe`: matched by file name, not content.
            "extension" => return None,
            _ => {}
        }
    }
    has_magic.then_some(h)
}

impl Handler {
    fn matches(&self, header: &[u8]) -> bool {
        self.magic.iter().enumerate().all(|(i, m)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header.get(self.offset + i).is_some_and(|b| b & mask == m & mask)
        })
    }
}

/// How programs of `arch` (OCI's name: `arm64`, `ppc64le`...) run here,
/// reading the handlers registered in `binfmt_misc` (normally
/// [`BINFMT_MISC`]). A handler of the architecture counts before native
/// execution of a compatible one (`386` on `amd64`).
pub fn emulation(arch: &str, binfmt_misc: &Path) -> Result<Emulation, EmulationError> {
    if arch == host_arch() {
        return Ok(Emulation::Native);
    }
    let Some((class, data, machine, qemu)) = elf_identity(arch) else {
        return Err(EmulationError::UnknownArchitecture(arch.into()));
    };
    let header = elf_header(class, data, machine);
    let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(binfmt_misc)
        .map(|d| d.flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect())
        .unwrap_or_default();
    names.sort();
    // The kernel tries the most recently registered first; the names give
    // no order, so a fixed one (by name) keeps the answer stable.
    let mut unfixed = None;
    for (name, path) in names {
        if name == "register" || name == "status" {
            continue;
        }
        let Some(h) = std::fs::read_to_string(&path).ok().and_then(|t| parse_handler(&t)) else { continue };
        if !h.enabled || !h.matches(&header) {
            continue;
        }
        if h.flags.contains('F') {
            return Ok(Emulation::Handler { name, interpreter: h.interpreter });
        }
        unfixed.get_or_insert((name, h.interpreter));
    }
    if runs_natively(arch) {
        return Ok(Emulation::Native);
    }
    if let Some((name, interpreter)) = unfixed {
        return Err(EmulationError::NotFixed { arch: arch.into(), name, interpreter });
    }
    Err(EmulationError::NoHandler {
        arch: arch.into(),
        host: host_arch().into(),
        qemu: qemu.into(),
        dir: binfmt_misc.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("register"), "").unwrap();
        std::fs::write(d.path().join("status"), "enabled\n").unwrap();
        for (n, t) in files {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        d
    }

    fn foreign() -> &'static str {
        if host_arch() == "arm64" { "amd64" } else { "arm64" }
    }

    #[test]
    fn the_hosts_architecture_is_native() {
        let d = dir_with(&[]);
        assert_eq!(emulation(host_arch(), d.path()), Ok(Emulation::Native));
    }

    #[test]
    fn debians_aarch64_handler_runs_arm64() {
        if host_arch() == "arm64" {
            return;
        }
        let d = dir_with(&[("qemu-aarch64", AARCH64)]);
        assert_eq!(
            emulation("arm64", d.path()),
            Ok(Emulation::Handler {
                name: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into()
            })
        );
        // It does not match other architectures' executables.
        let e = emulation("riscv64", d.path()).unwrap_err();
        assert!(matches!(e, EmulationError::NoHandler { ref qemu, .. } if qemu == "riscv64"), "{e}");
        assert!(e.to_string().contains("qemu-user-static"), "{e}");
    }

    #[test]
    fn disabled_unfixed_and_missing_handlers_are_errors_that_say_so() {
        let arch = foreign();
        let (class, data, machine, _) = elf_identity(arch).unwrap();
        let magic: String = elf_header(class, data, machine).iter().map(|b| format!("{b:02x}")).collect();
        let handler = |state: &str, flags: &str| {
            format!("{state}\ninterpreter /usr/bin/qemu-x\nflags: {flags}\noffset 0\nmagic {magic}\n")
        };
        let d = dir_with(&[("qemu-x", &handler("disabled", "F"))]);
        assert!(matches!(emulation(arch, d.path()), Err(EmulationError::NoHandler { .. })));
        let d = dir_with(&[("qemu-x", &handler("enabled", "OC"))]);
        let e = emulation(arch, d.path()).unwrap_err();
        assert!(matches!(e, EmulationError::NotFixed { ref name, .. } if name == "qemu-x"), "{e}");
        assert!(e.to_string().contains("F (fix-binary)"), "{e}");
        let d = dir_with(&[("qemu-x", &handler("enabled", "OCF"))]);
        assert!(matches!(emulation(arch, d.path()), Ok(Emulation::Handler { .. })));
        // No binfmt_misc at all.
        let e = emulation(arch, &d.path().join("absent")).unwrap_err();
        assert!(matches!(e, EmulationError::NoHandler { .. }), "{e}");
        assert!(matches!(emulation("wasm", d.path()), Err(EmulationError::UnknownArchitecture(_))));
    }

    #[test]
    fn extension_handlers_and_garbage_are_passed_over() {
        let d = dir_with(&[
            ("python", "enabled\ninterpreter /usr/bin/python3\nflags: \nextension .pyc\n"),
            ("junk", "enabled\nmagic zz\n"),
        ]);
        assert!(matches!(emulation(foreign(), d.path()), Err(EmulationError::NoHandler { .. })));
    }

    #[test]
    fn big_endian_headers() {
        let h = elf_header(2, 2, 22);
        assert_eq!(&h[16..20], &[0, 2, 0, 22]);
    }
}
