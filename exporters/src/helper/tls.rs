//! `tls`: which certificate authorities an exporter trusts for `https://` endpoints, the
//! client certificate it shows (mutual TLS) and the oldest TLS version it speaks.

use std::path::PathBuf;
use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt;
use pipeline_core::FieldError;
use pipeline_core::tls::{CertReloader, TlsVersion};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// `tls`: trust settings for `https://` endpoints (ignored for `http://`).
///
/// Without `ca_file` the Mozilla root set (webpki-roots) is trusted; with it, only the
/// authorities in that file, as the OpenTelemetry Collector does. With `cert_file` and
/// `key_file` the exporter presents that client certificate to servers that ask for one;
/// both files are read again for new connections when they change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// A PEM file of CA certificates to trust instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate chain (mutual TLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The oldest TLS version spoken: `"1.2"` (default) or `"1.3"`.
    pub min_version: TlsVersion,
}

/// The contents of a `ca_file`.
#[derive(Debug, Clone)]
pub struct CaCertificates {
    /// The file as read (PEM).
    pub pem: Vec<u8>,
    /// The certificates in it, at least one.
    pub certs: Vec<CertificateDer<'static>>,
}

/// Why the TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("cannot read tls.ca_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("tls.ca_file {path} holds no PEM certificate{detail}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said, if anything.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate or key could not be used.
    #[error("tls: {0}")]
    ClientCertificate(#[from] pipeline_core::tls::TlsFileError),
}

impl TlsConfig {
    /// Checks the values; `path` is where this section sits in the component's config.
    pub fn validate(&self, path: &str) -> Result<(), FieldError> {
        if self
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(FieldError::new(
                format!("{path}.ca_file"),
                "must not be empty; leave it out to trust the public roots",
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(FieldError::new(
                format!("{path}.key_file"),
                "is needed with cert_file",
            )),
            (None, Some(_)) => Err(FieldError::new(
                format!("{path}.cert_file"),
                "is needed with key_file",
            )),
            _ => Ok(()),
        }
    }

    /// Reads `ca_file` (if set), checking it holds at least one certificate.
    pub fn read_ca(&self) -> Result<Option<CaCertificates>, TlsError> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })?;
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match certs {
            Ok(certs) if !certs.is_empty() => Ok(Some(CaCertificates { pem, certs })),
            Ok(_) => Err(TlsError::NoCertificate {
                path: path.clone(),
                detail: String::new(),
            }),
            Err(e) => Err(TlsError::NoCertificate {
                path: path.clone(),
                detail: format!(": {e}"),
            }),
        }
    }

    /// A rustls client configuration with the ring provider (nothing installed globally)
    /// trusting `ca_file` or the public roots, from `min_version` up, presenting the client
    /// certificate if one is set; ALPN left empty for the caller to set.
    pub fn rustls_client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(pipeline_core::tls::provider())
            .with_protocol_versions(self.min_version.and_newer())?;
        let builder = match self.read_ca()? {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                let (_, ignored) = roots.add_parsable_certificates(ca.certs);
                if roots.is_empty() {
                    return Err(TlsError::NoCertificate {
                        path: self.ca_file.clone().unwrap_or_default(),
                        detail: format!(": {ignored} certificate(s) could not be parsed"),
                    });
                }
                builder.with_root_certificates(roots)
            }
            None => builder.with_webpki_roots(),
        };
        Ok(match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                builder.with_client_cert_resolver(Arc::new(CertReloader::new(cert, key)?))
            }
            _ => builder.with_no_client_auth(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_ca_file_is_a_clear_error() {
        let none = TlsConfig::default();
        assert!(none.read_ca().unwrap().is_none());
        none.rustls_client_config().unwrap();

        let missing = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let e = missing.rustls_client_config().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");

        let dir = std::env::temp_dir().join(format!("sightline-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("empty.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let empty = TlsConfig {
            ca_file: Some(file),
            ..TlsConfig::default()
        };
        let e = empty.read_ca().unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(dir);

        assert!(
            TlsConfig {
                ca_file: Some(PathBuf::new()),
                ..TlsConfig::default()
            }
            .validate("tls")
            .is_err()
        );
        let half = TlsConfig {
            cert_file: Some("c.pem".into()),
            ..TlsConfig::default()
        };
        assert_eq!(half.validate("tls").unwrap_err().path, "tls.key_file");
        let missing_cert = TlsConfig {
            cert_file: Some("/nonexistent/c.pem".into()),
            key_file: Some("/nonexistent/k.pem".into()),
            ..TlsConfig::default()
        };
        let e = missing_cert.rustls_client_config().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
    }
}
