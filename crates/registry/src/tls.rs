//! TLS per registry: the roots a registry's certificate must chain to (the
//! system store plus the registry's `certs.d` CAs), the client certificate
//! shown to it, and whether its certificate is verified at all.
//!
//! `certs.d` is Docker's and containers/image's layout: a directory per
//! registry (`HOST` or `HOST:PORT`) holding `*.crt` CA certificates and
//! `NAME.cert` + `NAME.key` client certificate pairs (PEM).
//!
//! The system store is read when a certificate first needs checking, not
//! before: a command that only speaks plain HTTP (a registry on loopback)
//! never reads it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

/// What a registry's TLS connections use, read from its `certs.d` directories.
#[derive(Default)]
pub(crate) struct RegistryTls {
    /// CA certificates trusted besides the system's.
    pub roots: Vec<CertificateDer<'static>>,
    /// The client certificate chain and key to present.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// The system's trust store, loaded once per process (the platform's
/// bundle; `SSL_CERT_FILE`/`SSL_CERT_DIR` as OpenSSL reads them). Empty
/// when it holds nothing (the bundled web roots are then used).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// The rustls client configuration for a registry: its `certs.d` roots on
/// top of the system's (read at the first certificate to check), its
/// client certificate, or no verification at all (`verify` false); HTTP/2
/// and HTTP/1.1 offered. `spoken`, when given, is set once a peer is seen
/// speaking TLS (its handshake got as far as agreeing on keys): such a
/// registry is never retried in plain HTTP, however its connection fails.
pub(crate) fn client_config(
    tls: RegistryTls,
    verify: bool,
    spoken: Option<Arc<AtomicBool>>,
) -> std::result::Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier { roots: verify.then(|| (tls.roots, OnceLock::new())), provider: Arc::clone(&provider) };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match tls.identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(flag) = spoken {
        config.key_log = Arc::new(TlsSpoken(flag));
    }
    Ok(config)
}

/// Told of each secret a handshake derives (rustls' key-log hook; nothing
/// is logged): a peer that got that far speaks TLS.
#[derive(Debug)]
struct TlsSpoken(Arc<AtomicBool>);

impl rustls::KeyLog for TlsSpoken {
    fn log(&self, _label: &str, _client_random: &[u8], _secret: &[u8]) {
        self.0.store(true, Ordering::Relaxed);
    }
}

type Webpki = std::result::Result<Arc<WebPkiServerVerifier>, rustls::Error>;

/// Checks certificates against the system's roots and a registry's own
/// (the system's read when first needed), or takes any (`roots` `None`:
/// `--tls-verify=false`, insecure registries). The handshake's signatures
/// are checked against the certificate shown either way.
#[derive(Debug)]
struct Verifier {
    roots: Option<(Vec<CertificateDer<'static>>, OnceLock<Webpki>)>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn webpki(extra: &[CertificateDer<'static>], provider: &Arc<CryptoProvider>) -> Webpki {
        let mut store = RootCertStore::empty();
        let system = system_roots();
        if system.is_empty() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            // A system store holds some certificates webpki cannot use
            // (ancient ones): those are skipped.
            store.add_parsable_certificates(system.iter().cloned());
        }
        for cert in extra {
            store.add(cert.clone())?;
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(provider))
            .build()
            .map_err(|e| rustls::Error::General(format!("no usable trust roots: {e}")))
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some((extra, webpki)) = &self.roots else { return Ok(ServerCertVerified::assertion()) };
        let webpki = webpki.get_or_init(|| Self::webpki(extra, &self.provider)).as_ref().map_err(Clone::clone)?;
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
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
        read_cert_dir(&dir.join(registry), &mut out, false)?;
    }
    Ok(out)
}

/// Reads one directory of certificates given for a registry (skopeo's and
/// podman's `--cert-dir`): its `*.crt` as CAs, a `NAME.cert` with its
/// `NAME.key` as the client identity. Named explicitly, it must exist.
pub(crate) fn dir_tls(dir: &Path) -> Result<RegistryTls> {
    let mut out = RegistryTls::default();
    read_cert_dir(dir, &mut out, true)?;
    Ok(out)
}

/// Adds what `dir` holds to `out` (nothing when it does not exist, unless
/// `required`).
fn read_cert_dir(dir: &Path, out: &mut RegistryTls, required: bool) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(()),
        Err(e) => return Err(tls_error(dir, format!("cannot read the directory: {e}"))),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| tls_error(dir, format!("cannot read the directory: {e}")))?;
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
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| tls_error(&path, format!("not a PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(tls_error(&path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
            }
            for cert in &certs {
                RootCertStore::empty()
                    .add(cert.clone())
                    .map_err(|e| tls_error(&path, format!("not a usable CA certificate: {e}")))?;
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
            let pem = read(name)?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| tls_error(&path, format!("not a PEM certificate: {e}")))?;
            if chain.is_empty() {
                return Err(tls_error(&path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
            }
            let key_pem = read(&key)?;
            let private = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| tls_error(&dir.join(&key), format!("holds no PEM private key: {e}")))?;
            // The pair must make a client configuration (a key rustls
            // can use, matching the certificate).
            let pair = (chain, private);
            client_config(
                RegistryTls { roots: Vec::new(), identity: Some((pair.0.clone(), pair.1.clone_key())) },
                true,
                None,
            )
            .map_err(|e| tls_error(&path, format!("this certificate and {key} are no usable pair: {e}")))?;
            out.identity = Some(pair);
        } else if let Some(stem) = name.strip_suffix(".key")
            && !names.iter().any(|n| n == &format!("{stem}.cert"))
        {
            return Err(tls_error(&path, format!("a client key without its certificate {stem}.cert")));
        }
    }
    Ok(())
}
