//! # `otlp` receiver
//!
//! Receives OTLP over gRPC (`protocols.grpc`, default 127.0.0.1:4317) and HTTP
//! (`protocols.http`, default 127.0.0.1:4318) for traces, metrics and logs, and hands each
//! decoded request to the head of every pipeline of that signal that names this receiver.
//! `Ok` from the pipeline is what makes the receiver answer success; a full pipeline makes
//! it answer gRPC `UNAVAILABLE` / HTTP 503 with a retry delay, so clients keep the data.
//!
//! With `auth.bearer_tokens` both front ends refuse requests without one of the tokens
//! (HTTP 401 / gRPC `UNAUTHENTICATED`). Connection limits, header and TLS handshake timeouts
//! and (mutual) TLS come from the shared [`HttpServer`]; every refused request or connection
//! is counted in `sightline_receiver_requests_rejected_total{reason}`.
//!
//! Files: `config.rs` (keys), `request.rs` (the three request types as one trait),
//! `ingest.rs` (shared checks and the hand-off), `auth.rs` (bearer tokens), `grpc.rs`,
//! `http.rs` (front ends).

mod auth;
mod config;
#[cfg(any(test, feature = "fuzzing"))]
// A failed check must panic: that is what a fuzzer and the seed tests look for.
#[allow(clippy::expect_used, clippy::unwrap_used)]
pub(crate) mod fuzzing;
mod grpc;
mod http;
mod ingest;
mod request;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline_core::net::{HttpServer, Refusal, ServerOptions};
use pipeline_core::{
    BuildError, Component, ComponentError, CreateContext, Host, ReceiverFactory, Signal,
    SignalConsumers,
};
use tokio::time::Instant;

pub use config::{AuthConfig, GrpcConfig, HttpConfig, OtlpReceiverConfig, Protocols};

/// Builds `otlp` receivers.
pub struct Factory;

impl ReceiverFactory for Factory {
    type Config = OtlpReceiverConfig;
    const TYPE_NAME: &'static str = "otlp";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: OtlpReceiverConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Component>, BuildError> {
        let ingest = Arc::new(
            ingest::Ingest::new(next, ctx.telemetry.clone())
                .with_request_budget(config.max_request_bytes_in_flight.as_usize()),
        );
        let auth = config
            .auth
            .as_ref()
            .map(|a| Arc::new(auth::BearerAuth::new(a)));
        Ok(Arc::new(OtlpReceiver {
            config,
            ingest,
            auth,
            servers: Mutex::new(Vec::new()),
        }))
    }
}

/// A running (or not yet started) OTLP receiver.
pub struct OtlpReceiver {
    config: OtlpReceiverConfig,
    ingest: Arc<ingest::Ingest>,
    auth: Option<Arc<auth::BearerAuth>>,
    servers: Mutex<Vec<Arc<HttpServer>>>,
}

impl OtlpReceiver {
    /// The addresses actually bound, gRPC first (useful with port 0).
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.local_addr())
            .collect()
    }

    /// `options` with refused connections counted under `protocol`.
    fn counted(&self, options: ServerOptions, protocol: &'static str) -> ServerOptions {
        let ingest = self.ingest.clone();
        ServerOptions {
            on_refused: Some(Arc::new(move |why: Refusal| {
                ingest.rejected_request(protocol, why.reason());
            })),
            ..options
        }
    }
}

#[async_trait]
impl Component for OtlpReceiver {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut started = Vec::new();
        if let Some(g) = &self.config.protocols.grpc {
            let service = grpc::GrpcService::new(
                self.ingest.clone(),
                (g.max_recv_msg_size_mib as usize) << 20,
                self.auth.clone(),
            );
            let router = axum::Router::new().fallback_service(service);
            let options = self.counted(g.server_options(), "grpc");
            let server =
                HttpServer::start_with(&g.endpoint, g.tls.as_ref(), router, options).await?;
            tracing::info!(endpoint = %server.local_addr(), "OTLP/gRPC receiver listening");
            started.push(Arc::new(server));
        }
        if let Some(h) = &self.config.protocols.http {
            let router = http::router(
                self.ingest.clone(),
                h.max_request_body_size as usize,
                self.auth.clone(),
            );
            let options = self.counted(h.server_options(), "http");
            match HttpServer::start_with(&h.endpoint, h.tls.as_ref(), router, options).await {
                Ok(server) => {
                    tracing::info!(endpoint = %server.local_addr(), "OTLP/HTTP receiver listening");
                    started.push(Arc::new(server));
                }
                Err(e) => {
                    for s in &started {
                        s.shutdown(Instant::now()).await;
                    }
                    return Err(e);
                }
            }
        }
        *self.servers.lock().unwrap_or_else(|p| p.into_inner()) = started;
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let servers = std::mem::take(&mut *self.servers.lock().unwrap_or_else(|p| p.into_inner()));
        for server in servers {
            server.shutdown(deadline).await;
        }
        Ok(())
    }
}
