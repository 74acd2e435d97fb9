//! TLS shared by servers (receivers, scrape endpoints) and clients (exporters): reading PEM
//! files, `min_version`, and certificates that are reloaded when their files change.
//!
//! Reloading works per handshake: every new handshake asks [`Reloading::get`], which compares
//! the files' modification time, size and inode with those of the last load and reads them
//! again when any changed. Connections already open keep the keys they were made with, so
//! replacing a certificate drops nothing. A half-written or mismatched pair (certificate
//! replaced, key not yet) fails to load: the previous certificate stays in use, a warning is
//! logged once per change, and the next change is tried again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

/// `min_version`: the oldest TLS version accepted (`"1.2"`, the default, or `"1.3"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

impl TlsVersion {
    /// The rustls protocol versions from this one up.
    pub fn and_newer(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            TlsVersion::V1_2 => rustls::ALL_VERSIONS,
            TlsVersion::V1_3 => TLS13_ONLY,
        }
    }
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The crypto provider everywhere: ring, nothing installed globally.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFileError {
    /// The file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// `cert_file`, `key_file`, ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds nothing usable.
    #[error("{what} {} {detail}", path.display())]
    Invalid {
        /// `cert_file`, `key_file`, ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the combination (a key that does not match its certificate, ...).
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(what: &'static str, path: &Path, detail: impl Into<String>) -> TlsFileError {
    TlsFileError::Invalid {
        what,
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// The PEM certificates in `path`, at least one.
pub fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(what, path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(invalid(what, path, "holds no PEM certificate")),
        Err(e) => Err(invalid(
            what,
            path,
            format!("holds no PEM certificate: {e}"),
        )),
    }
}

/// The trust anchors in a PEM file of CA certificates.
pub fn read_roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(read_certificates(what, path)?);
    if roots.is_empty() {
        return Err(invalid(
            what,
            path,
            format!("holds no usable CA certificate ({ignored} could not be parsed)"),
        ));
    }
    Ok(roots)
}

/// A certificate chain and its private key, checked to belong together.
pub fn read_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsFileError> {
    let certs = read_certificates("cert_file", cert_file)?;
    let pem = read("key_file", key_file)?;
    // The key's text is never quoted: the parser's error names only the problem.
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        invalid(
            "key_file",
            key_file,
            format!("holds no PEM private key: {e}"),
        )
    })?;
    Ok(CertifiedKey::from_der(certs, key, &provider())?)
}

/// What identifies a file's version: modification time, size, inode.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

type Loader<T> = Box<dyn Fn() -> Result<T, TlsFileError> + Send + Sync>;

/// A value built from files, built again when the files change (checked on each
/// [`Reloading::get`]).
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    current: ArcSwap<T>,
    /// The files' stamps at the last attempt (successful or not).
    seen: Mutex<Vec<Stamp>>,
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync> Reloading<T> {
    /// Loads once now (an error fails the caller's start) and again whenever one of `paths`
    /// changes. `what` names the value in log lines.
    pub fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: impl Fn() -> Result<T, TlsFileError> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, TlsFileError> {
        let seen = paths.iter().map(|p| stamp(p)).collect();
        let first = load()?;
        Ok(Reloading {
            what,
            paths,
            load: Box::new(load),
            current: ArcSwap::from_pointee(first),
            seen: Mutex::new(seen),
        })
    }

    /// The current value, reloaded first if a file changed since the last attempt.
    pub fn get(&self) -> Arc<T> {
        self.refresh();
        self.current.load_full()
    }

    fn refresh(&self) {
        let now: Vec<Stamp> = self.paths.iter().map(|p| stamp(p)).collect();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now {
            return;
        }
        *seen = now;
        match (self.load)() {
            Ok(value) => {
                self.current.store(Arc::new(value));
                tracing::info!(what = self.what, files = ?self.paths, "TLS files changed: reloaded");
            }
            Err(e) => tracing::warn!(
                what = self.what,
                error = %e,
                "TLS files changed but cannot be loaded; still using the previous ones"
            ),
        }
    }
}

/// A certificate and key, reloaded when their files change: the server's certificate for
/// every new handshake ([`ResolvesServerCert`]) or a client certificate
/// ([`ResolvesClientCert`]).
#[derive(Debug)]
pub struct CertReloader(Reloading<CertifiedKey>);

impl CertReloader {
    /// Reads `cert_file` and `key_file` now and whenever they change.
    pub fn new(cert_file: &Path, key_file: &Path) -> Result<CertReloader, TlsFileError> {
        let (cert, key) = (cert_file.to_path_buf(), key_file.to_path_buf());
        let paths = vec![cert.clone(), key.clone()];
        Reloading::new("certificate", paths, move || {
            read_certified_key(&cert, &key)
        })
        .map(CertReloader)
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

impl ResolvesClientCert for CertReloader {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Requires a client certificate signed by an authority in `client_ca_file`, reloaded when
/// the file changes.
#[derive(Debug)]
pub struct ClientCaVerifier(Reloading<Arc<dyn ClientCertVerifier>>);

impl ClientCaVerifier {
    /// Reads `client_ca_file` now and whenever it changes.
    pub fn new(client_ca_file: &Path) -> Result<ClientCaVerifier, TlsFileError> {
        let path = client_ca_file.to_path_buf();
        let paths = vec![path.clone()];
        Reloading::new("client_ca_file", paths, move || {
            let roots = read_roots("client_ca_file", &path)?;
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| invalid("client_ca_file", &path, e.to_string()))
        })
        .map(ClientCaVerifier)
    }
}

impl ClientCertVerifier for ClientCaVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: the authorities may change under an open acceptor, and clients with one
    /// certificate send it anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_otelcol_spells_them() {
        let v: TlsVersion = serde_json::from_value(serde_json::json!("1.3")).unwrap();
        assert_eq!(v, TlsVersion::V1_3);
        assert_eq!(v.and_newer().len(), 1);
        assert!(serde_json::from_value::<TlsVersion>(serde_json::json!("1.1")).is_err());
    }

    #[test]
    fn a_failed_reload_keeps_the_old_value_and_retries_on_the_next_change() {
        let dir = std::env::temp_dir().join(format!("sightline-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("value");
        std::fs::write(&file, "1").unwrap();
        let path = file.clone();
        let r = Reloading::new("test", vec![file.clone()], move || {
            let text = std::fs::read_to_string(&path).unwrap();
            text.trim()
                .parse::<u32>()
                .map_err(|e| invalid("value", &path, e.to_string()))
        })
        .unwrap();
        assert_eq!(*r.get(), 1);
        std::fs::write(&file, "22").unwrap();
        assert_eq!(*r.get(), 22);
        std::fs::write(&file, "not a number").unwrap();
        assert_eq!(*r.get(), 22);
        std::fs::write(&file, "333").unwrap();
        assert_eq!(*r.get(), 333);
        let _ = std::fs::remove_dir_all(dir);
    }
}
