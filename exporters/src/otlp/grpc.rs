//! Sending over OTLP/gRPC with tonic, and what gRPC status codes mean for retries.

use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use http::Uri;
use pipeline_core::proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use pipeline_core::proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use pipeline_core::proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use pipeline_core::{Batch, ComponentError, FieldError};
use tokio::sync::OnceCell;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use super::config::OtlpConfig;
use crate::helper::codec::ExportRequest;
use crate::helper::{
    Compression, Delivered, SendError, Sender, TlsConfig, USER_AGENT, describe_error, rpc,
};

/// Sends export requests to one gRPC endpoint over a lazily connected channel.
pub(crate) struct GrpcSender {
    uri: Uri,
    tls: TlsConfig,
    metadata: MetadataMap,
    compression: Compression,
    timeout: Duration,
    channel: OnceCell<Channel>,
}

impl GrpcSender {
    pub(crate) fn new(config: &OtlpConfig) -> Result<GrpcSender, FieldError> {
        Ok(GrpcSender {
            uri: config.endpoint_uri()?,
            tls: config.tls.clone(),
            metadata: MetadataMap::from_headers(config.headers.to_header_map("headers")?),
            compression: config.compression,
            timeout: config.timeout.get(),
            channel: OnceCell::new(),
        })
    }

    /// The channel, made on first use. It connects lazily (and reconnects) by itself, so a
    /// backend that is down fails sends, not the start.
    async fn channel(&self) -> Result<Channel, String> {
        self.channel
            .get_or_try_init(|| async { self.build_channel() })
            .await
            .cloned()
    }

    fn build_channel(&self) -> Result<Channel, String> {
        let mut endpoint = Endpoint::from(self.uri.clone())
            .user_agent(USER_AGENT)
            .map_err(|e| describe_error(&e))?;
        if !self.timeout.is_zero() {
            endpoint = endpoint.connect_timeout(self.timeout);
        }
        if self.uri.scheme_str() == Some("https") {
            let tls = match self.tls.read_ca().map_err(|e| e.to_string())? {
                Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem)),
                None => ClientTlsConfig::new().with_webpki_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("TLS setup for {}: {}", self.uri, describe_error(&e)))?;
        }
        Ok(endpoint.connect_lazy())
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        if !self.timeout.is_zero() {
            // Tells the server too (grpc-timeout), so it can give up when we do.
            request.set_timeout(self.timeout);
        }
        request
    }
}

/// One export call on a client type; the three generated clients share no trait.
macro_rules! export {
    ($client:ident, $sender:expr, $channel:expr, $message:expr) => {{
        let mut client = $client::new($channel);
        if $sender.compression == Compression::Gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        client
            .export($sender.request($message))
            .await
            .map(|response| Delivered::from(response.into_inner()))
            .map_err(|status| classify(&status))
    }};
}

#[async_trait]
impl Sender for GrpcSender {
    async fn start(&self) -> Result<(), ComponentError> {
        self.channel()
            .await
            .map(|_| ())
            .map_err(ComponentError::Other)
    }

    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        let channel = self.channel().await.map_err(SendError::permanent_health)?;
        let request = ExportRequest::from_payload(&batch.payload)
            .map_err(|e| SendError::permanent(e.to_string()))?;
        match request {
            ExportRequest::Traces(m) => export!(TraceServiceClient, self, channel, m),
            ExportRequest::Metrics(m) => export!(MetricsServiceClient, self, channel, m),
            ExportRequest::Logs(m) => export!(LogsServiceClient, self, channel, m),
        }
    }
}

/// What a gRPC status means for the batch, as the OpenTelemetry Collector decides it:
/// `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE` and `DATA_LOSS`
/// are retryable, `RESOURCE_EXHAUSTED` only when the server sent `RetryInfo` (otherwise the
/// request itself is too big); `UNAUTHENTICATED`, `PERMISSION_DENIED` and `UNIMPLEMENTED`
/// mean the backend will not take anything from us (permanent health error); the rest are
/// permanent for this batch. A `RetryInfo` delay is passed on as the retry hint.
pub(crate) fn classify(status: &Status) -> SendError {
    let code = status.code();
    let retry_after = rpc::retry_delay(status.details());
    let mut reason = format!("gRPC status {code:?}");
    if !status.message().is_empty() {
        reason.push_str(": ");
        reason.push_str(status.message());
    }
    // Transport errors hide the useful part (connection refused, DNS) in the source chain.
    let mut source = status.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::Retryable {
            reason,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => SendError::Retryable {
            reason,
            retry_after,
        },
        Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented => {
            SendError::permanent_health(reason)
        }
        _ => SendError::permanent(reason),
    }
}
