//! Serving HTTP (and gRPC, which is HTTP/2) from components and the service: bind, optional
//! TLS from PEM files with rustls, an axum router, and a graceful stop with a deadline.
//!
//! Receivers (OTLP gRPC and HTTP), scrape endpoints and the service's probes all serve
//! through [`HttpServer`], so TLS and shutdown behave the same everywhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::component::ComponentError;

/// TLS settings of a server: certificate chain and private key, both PEM files.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

impl TlsServerConfig {
    /// Loads the files into a rustls acceptor that offers HTTP/2 and HTTP/1.1.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, ComponentError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(|it| it.collect())
            .map_err(|e| {
                ComponentError::Other(format!(
                    "cannot read TLS certificate {}: {e}",
                    self.cert_file.display()
                ))
            })?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| {
            ComponentError::Other(format!(
                "cannot read TLS key {}: {e}",
                self.key_file.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| ComponentError::Other(format!("invalid TLS certificate or key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// A running server.
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl HttpServer {
    /// Binds `endpoint` (`host:port`) and serves `router`; with `tls`, over TLS.
    pub async fn start(
        endpoint: &str,
        tls: Option<&TlsServerConfig>,
        router: axum::Router,
    ) -> Result<HttpServer, ComponentError> {
        let acceptor = tls.map(TlsServerConfig::acceptor).transpose()?;
        let listener =
            TcpListener::bind(endpoint)
                .await
                .map_err(|source| ComponentError::Bind {
                    address: endpoint.to_string(),
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ComponentError::Bind {
                address: endpoint.to_string(),
                source,
            })?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, acceptor, router, stopped));
        Ok(HttpServer {
            local_addr,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish until `deadline`, then closes.
    pub async fn shutdown(&self, deadline: Instant) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        crate::component::join_until(task, deadline).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        match &tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(tls_stream) => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service)
                                .into_owned();
                            let _ = watcher.watch(conn).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Text made safe inside HTML and SVG elements and attribute values: for server-rendered
/// pages (the live pipeline page, the `slo` status page).
///
/// ```
/// assert_eq!(pipeline_core::net::escape_html("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
/// ```
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
