//! Serving HTTP (and gRPC, which is HTTP/2) from components and the service: bind, optional
//! TLS from PEM files with rustls, an axum router, and a graceful stop with a deadline.
//!
//! Receivers (OTLP gRPC and HTTP), scrape endpoints and the service's probes all serve
//! through [`HttpServer`], so TLS and shutdown behave the same everywhere.
//!
//! [`ServerOptions`] bound what clients can hold: connections at once (one more is closed
//! at once), the time to finish a TLS handshake and to send the first request's headers or
//! the HTTP/2 preface (a slowloris client is cut off), and HTTP/2 streams per connection.
//! Every refused connection is reported to the owner ([`Refusal`]) for its self-metrics.
//! TLS is rustls with certificates reloaded per handshake and optional client
//! certificates ([`crate::tls`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::component::ComponentError;
use crate::tls::{CertReloader, ClientCaVerifier, TlsVersion};

/// TLS settings of a server (`tls:`), with the OpenTelemetry Collector's key names.
///
/// The certificate, key and client CA files are read at start and again, for new
/// handshakes, whenever they change ([`crate::tls`]); open connections are not dropped.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA certificates: when set, clients must present a certificate signed by one of
    /// them (mutual TLS); a client without one is refused in the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// The oldest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
}

impl TlsServerConfig {
    /// Loads the files into a rustls acceptor that offers HTTP/2 and HTTP/1.1.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, ComponentError> {
        let tls_error = |e: crate::tls::TlsFileError| ComponentError::Other(e.to_string());
        let certs =
            Arc::new(CertReloader::new(&self.cert_file, &self.key_file).map_err(tls_error)?);
        let builder = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(self.min_version.and_newer())
            .map_err(|e| ComponentError::Other(format!("TLS setup: {e}")))?;
        let builder = match &self.client_ca_file {
            Some(ca) => builder
                .with_client_cert_verifier(Arc::new(ClientCaVerifier::new(ca).map_err(tls_error)?)),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(certs);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

/// Why a connection was refused; counted by the owner of the server through
/// [`ServerOptions::on_refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` were already open: closed at once.
    TooManyConnections,
    /// The first request's headers (or the HTTP/2 preface) did not arrive within
    /// `read_header_timeout`.
    HeaderTimeout,
    /// The TLS handshake did not finish within `tls_handshake_timeout`.
    TlsHandshakeTimeout,
    /// The TLS handshake failed (no or untrusted client certificate, old version, not TLS).
    TlsHandshakeFailed,
}

impl Refusal {
    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::TlsHandshakeTimeout => "tls_handshake_timeout",
            Refusal::TlsHandshakeFailed => "tls_handshake_failed",
        }
    }
}

/// Called once per refused connection.
pub type RefusalHook = Arc<dyn Fn(Refusal) + Send + Sync>;

/// Connection limits of a server.
#[derive(Clone)]
pub struct ServerOptions {
    /// Connections served at once; one more is accepted and closed at once (0: no limit).
    pub max_connections: usize,
    /// How long a new connection may take to deliver its first request's headers (HTTP/1)
    /// or the HTTP/2 connection preface; also hyper's per-request header timeout on
    /// HTTP/1 keep-alive connections. `None`: no limit.
    pub read_header_timeout: Option<Duration>,
    /// How long a TLS handshake may take. `None`: no limit.
    pub tls_handshake_timeout: Option<Duration>,
    /// HTTP/2 streams (gRPC calls) one connection may have open at once, advertised to the
    /// client in its SETTINGS. `None`: hyper's default (200).
    pub max_concurrent_streams: Option<u32>,
    /// Told about every refused connection.
    pub on_refused: Option<RefusalHook>,
}

impl Default for ServerOptions {
    /// No connection limit and no header timeout; TLS handshakes within 10s.
    fn default() -> Self {
        ServerOptions {
            max_connections: 0,
            read_header_timeout: None,
            tls_handshake_timeout: Some(Duration::from_secs(10)),
            max_concurrent_streams: None,
            on_refused: None,
        }
    }
}

impl ServerOptions {
    fn refused(&self, why: Refusal) {
        tracing::debug!(reason = why.reason(), "connection refused");
        if let Some(hook) = &self.on_refused {
            hook(why);
        }
    }
}

/// A running server.
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl HttpServer {
    /// Binds `endpoint` (`host:port`) and serves `router`; with `tls`, over TLS; with the
    /// default [`ServerOptions`].
    pub async fn start(
        endpoint: &str,
        tls: Option<&TlsServerConfig>,
        router: axum::Router,
    ) -> Result<HttpServer, ComponentError> {
        HttpServer::start_with(endpoint, tls, router, ServerOptions::default()).await
    }

    /// [`HttpServer::start`] with connection limits.
    pub async fn start_with(
        endpoint: &str,
        tls: Option<&TlsServerConfig>,
        router: axum::Router,
        options: ServerOptions,
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
        let task = tokio::spawn(accept_loop(listener, acceptor, router, options, stopped));
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
    options: ServerOptions,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(64 * 1024)
        .timer(TokioTimer::new())
        .header_read_timeout(options.read_header_timeout);
    if let Some(streams) = options.max_concurrent_streams {
        builder.http2().max_concurrent_streams(streams);
    }
    let slots =
        (options.max_connections > 0).then(|| Arc::new(Semaphore::new(options.max_connections)));
    let options = Arc::new(options);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let permit = match &slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    options.refused(Refusal::TooManyConnections);
                    drop(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            router: router.clone(),
            options: options.clone(),
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    let outcome = match connection.options.tls_handshake_timeout {
                        Some(limit) => tokio::time::timeout(limit, handshake).await,
                        None => Ok(handshake.await),
                    };
                    match outcome {
                        Ok(Ok(tls_stream)) => connection.serve(tls_stream).await,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            connection.options.refused(Refusal::TlsHandshakeFailed);
                        }
                        Err(_) => connection.options.refused(Refusal::TlsHandshakeTimeout),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One accepted connection, to be served.
struct Connection {
    builder: Builder<TokioExecutor>,
    router: axum::Router,
    options: Arc<ServerOptions>,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Connection {
    /// Serves HTTP/1 or HTTP/2 on `io` until the client or a graceful shutdown closes it;
    /// closes it early (counted) when the first request or the HTTP/2 preface is late.
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let progress = Arc::new(Progress::default());
        let seen = progress.clone();
        let router = self.router;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            seen.request.store(true, Ordering::Relaxed);
            tower::ServiceExt::oneshot(router.clone(), request)
        });
        let io = Watched {
            inner: io,
            progress: progress.clone(),
            matched: 0,
        };
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = self.watcher.watch(conn);
        let Some(limit) = self.options.read_header_timeout else {
            let _ = conn.await;
            return;
        };
        tokio::pin!(conn);
        let opened = tokio::time::Instant::now();
        tokio::select! {
            _ = &mut conn => {
                // hyper's own header timer (the same limit) may close a silent HTTP/1
                // connection first: still a header timeout, and counted as one.
                if !progress.started() && opened.elapsed() >= limit {
                    self.options.refused(Refusal::HeaderTimeout);
                }
                return;
            }
            _ = tokio::time::sleep(limit) => {}
        }
        if progress.started() {
            let _ = conn.await;
        } else {
            self.options.refused(Refusal::HeaderTimeout);
        }
    }
}

/// What a connection has shown of itself so far.
#[derive(Default)]
struct Progress {
    /// A request's headers arrived.
    request: AtomicBool,
    /// The HTTP/2 client preface arrived whole.
    http2: AtomicBool,
}

impl Progress {
    fn started(&self) -> bool {
        self.request.load(Ordering::Relaxed) || self.http2.load(Ordering::Relaxed)
    }
}

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's byte stream, watched for the HTTP/2 preface.
struct Watched<IO> {
    inner: IO,
    progress: Arc<Progress>,
    /// Bytes of the preface matched so far; `usize::MAX` once decided.
    matched: usize,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.matched < HTTP2_PREFACE.len() {
            let new = &buf.filled()[before..];
            let want = &HTTP2_PREFACE[self.matched..];
            let n = new.len().min(want.len());
            if new[..n] == want[..n] {
                self.matched += n;
                if self.matched == HTTP2_PREFACE.len() {
                    self.progress.http2.store(true, Ordering::Relaxed);
                }
            } else {
                self.matched = usize::MAX;
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A client on one HTTP/2 connection opening more calls than `max_concurrent_streams`
    /// has the extra ones held back: the handler never sees more at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_streams_per_connection_are_limited() {
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (i, m, r) = (inside.clone(), most.clone(), release.clone());
        let router = axum::Router::new().fallback(move || {
            let (i, m, r) = (i.clone(), m.clone(), r.clone());
            async move {
                let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                r.notified().await;
                i.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        });
        let options = ServerOptions {
            max_concurrent_streams: Some(3),
            ..ServerOptions::default()
        };
        let server = HttpServer::start_with("127.0.0.1:0", None, router, options)
            .await
            .unwrap();
        let tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, String>(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let mut sender = sender.clone();
                tokio::spawn(async move {
                    // A stream opened before the client saw the server's SETTINGS may be
                    // refused (REFUSED_STREAM: not processed, safe to retry), as RFC 9113 says.
                    loop {
                        let request = hyper::Request::post("http://x/")
                            .body(String::new())
                            .unwrap();
                        match sender.send_request(request).await {
                            Err(e) if format!("{e:?}").contains("REFUSED_STREAM") => {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            other => return other.map(|r| r.status()),
                        }
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        while inside.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "the first calls never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Give the held-back calls every chance to get in, then let them all finish.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(inside.load(Ordering::SeqCst), 3);
        let releaser = tokio::spawn(async move {
            loop {
                release.notify_waiters();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), 200);
        }
        releaser.abort();
        assert_eq!(most.load(Ordering::SeqCst), 3);
        server.shutdown(Instant::now()).await;
    }
}
