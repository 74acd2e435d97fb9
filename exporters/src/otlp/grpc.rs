//! Sending over OTLP/gRPC with tonic, and what gRPC status codes mean for retries.

use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes};
use http::Uri;
use http::uri::PathAndQuery;
use pipeline_core::{Batch, ComponentError, FieldError, Signal};
use tokio::sync::OnceCell;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use super::config::OtlpConfig;
use crate::helper::codec::{decode_response_proto, encode_proto};
use crate::helper::{
    Compression, Delivered, SendError, Sender, TlsConfig, USER_AGENT, describe_error, redact_url,
    rpc,
};

/// Sends export requests to one gRPC endpoint over a lazily connected channel.
pub(crate) struct GrpcSender {
    uri: Uri,
    /// `uri` as messages show it (see [`redact_url`]).
    shown: String,
    tls: TlsConfig,
    metadata: MetadataMap,
    compression: Compression,
    timeout: Duration,
    channel: OnceCell<Channel>,
}

impl GrpcSender {
    pub(crate) fn new(config: &OtlpConfig) -> Result<GrpcSender, FieldError> {
        let uri = config.endpoint_uri()?;
        Ok(GrpcSender {
            shown: redact_url(&uri.to_string()),
            uri,
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
                .map_err(|e| format!("TLS setup for {}: {}", self.shown, describe_error(&e)))?;
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

/// The gRPC method of each signal's `Export`.
fn export_path(signal: Signal) -> PathAndQuery {
    PathAndQuery::from_static(match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    })
}

#[async_trait]
impl Sender for GrpcSender {
    async fn start(&self) -> Result<(), ComponentError> {
        self.channel()
            .await
            .map(|_| ())
            .map_err(ComponentError::Other)
    }

    /// Encodes straight from the batch (no copy of the data into a request message) and
    /// sends the bytes; a retry encodes again instead of keeping a clone around.
    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        let channel = self.channel().await.map_err(SendError::permanent_health)?;
        let signal = batch.signal();
        let body = Bytes::from(
            encode_proto(&batch.payload).map_err(|e| SendError::permanent(e.to_string()))?,
        );
        let mut grpc = tonic::client::Grpc::new(channel);
        if self.compression == Compression::Gzip {
            grpc = grpc
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        grpc.ready().await.map_err(|e| {
            SendError::retryable(format!(
                "connecting to {}: {}",
                self.shown,
                describe_error(&e)
            ))
        })?;
        let response = grpc
            .unary(self.request(body), export_path(signal), RawCodec)
            .await
            .map_err(|status| classify(&status))?;
        decode_response_proto(signal, &response.into_inner())
            .map_err(|e| SendError::permanent(e.to_string()))
    }
}

/// Passes already-encoded messages through tonic's framing and compression.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
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
