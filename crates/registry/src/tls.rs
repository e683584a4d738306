//! TLS per registry: the roots a registry's certificate must chain to (the
//! system store plus the registry's `certs.d` CAs), the client certificate
//! shown to it, and whether its certificate is verified at all.
//!
//! `certs.d` is Docker's and containers/image's layout: a directory per
//! registry (`HOST` or `HOST:PORT`) holding `*.crt` CA certificates and
//! `NAME.cert` + `NAME.key` client certificate pairs (PEM).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use reqwest::{Certificate, Identity};

use crate::error::{Error, Result};

/// What a registry's TLS connections use, read from its `certs.d` directories.
#[derive(Default)]
pub(crate) struct RegistryTls {
    /// CA certificates trusted besides the system's.
    pub roots: Vec<Certificate>,
    /// The client certificate and key to present.
    pub identity: Option<Identity>,
}

/// The system's trust store, loaded once per process (the platform's
/// bundle; `SSL_CERT_FILE`/`SSL_CERT_DIR` as OpenSSL reads them). `None`
/// when it holds nothing usable (the client then uses its bundled web roots).
pub(crate) fn system_roots() -> Option<&'static [Certificate]> {
    static ROOTS: OnceLock<Vec<Certificate>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .filter_map(|der| Certificate::from_der(der.as_ref()).ok())
            .collect()
    });
    (!roots.is_empty()).then_some(roots.as_slice())
}

fn tls_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Tls { path: path.display().to_string(), reason: reason.into() }
}

/// Reads `DIR/REGISTRY/` of each of `dirs` that has one: every `*.crt`
/// as CAs, a `NAME.cert` with its `NAME.key` as the client identity. A
/// file that cannot be read or parsed, or a key without its certificate
/// (or the reverse), is an error naming the file.
pub(crate) fn registry_tls(dirs: &[PathBuf], registry: &str) -> Result<RegistryTls> {
    let mut out = RegistryTls::default();
    // A registry name is `host[:port]`; anything that could leave the
    // directory is not one.
    if registry.is_empty() || registry.contains('/') || registry.starts_with('.') {
        return Ok(out);
    }
    for dir in dirs {
        let dir = dir.join(registry);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(tls_error(&dir, format!("cannot read the directory: {e}"))),
        };
        let mut names: Vec<String> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| tls_error(&dir, format!("cannot read the directory: {e}")))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| tls_error(&path, format!("cannot read it: {e}")))
        };
        for name in &names {
            let path = dir.join(name);
            if name.ends_with(".crt") {
                let pem = read(name)?;
                let certs = Certificate::from_pem_bundle(&pem)
                    .map_err(|e| tls_error(&path, format!("not a PEM certificate: {e}")))?;
                if certs.is_empty() || !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(tls_error(&path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
                }
                out.roots.extend(certs);
            } else if let Some(stem) = name.strip_suffix(".cert") {
                let key = format!("{stem}.key");
                if !names.contains(&key) {
                    return Err(tls_error(&path, format!("a client certificate without its key {key}")));
                }
                if out.identity.is_some() {
                    continue;
                }
                let mut pem = read(name)?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(tls_error(&path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
                }
                pem.push(b'\n');
                let key_pem = read(&key)?;
                if !String::from_utf8_lossy(&key_pem).contains("PRIVATE KEY-----") {
                    return Err(tls_error(&dir.join(&key), "holds no PEM private key"));
                }
                pem.extend_from_slice(&key_pem);
                let identity = Identity::from_pem(&pem)
                    .map_err(|e| tls_error(&path, format!("this certificate and {key} are no usable pair: {e}")))?;
                out.identity = Some(identity);
            } else if let Some(stem) = name.strip_suffix(".key")
                && !names.iter().any(|n| n == &format!("{stem}.cert"))
            {
                return Err(tls_error(&path, format!("a client key without its certificate {stem}.cert")));
            }
        }
    }
    Ok(out)
}
