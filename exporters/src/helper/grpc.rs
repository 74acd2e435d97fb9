//! A gRPC client for exporters: a lazily connected tonic channel with the exporter's TLS,
//! metadata, compression and timeout, unary calls of already-encoded protobuf messages (no
//! generated client, no protoc), and what gRPC status codes mean for retries.

use std::error::Error as _;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::Uri;
use http::uri::PathAndQuery;
use pipeline_core::{ComponentError, FieldError};
use std::sync::Arc;
use tokio::sync::OnceCell;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::sender::push_causes;
use super::{Compression, Headers, SendError, TlsConfig, USER_AGENT, describe_error, rpc};

/// Makes unary calls to one gRPC endpoint over a channel made on first use.
pub struct GrpcClient {
    uri: Uri,
    /// `uri` as messages show it (see [`redact_url`](super::redact_url)).
    shown: String,
    tls: TlsConfig,
    metadata: MetadataMap,
    compression: Compression,
    timeout: Duration,
    channel: OnceCell<Channel>,
}

impl GrpcClient {
    /// A client of `uri` sending `headers` as metadata, compressing per `compression`, with
    /// `timeout` per call (zero: none) and `tls` for `https://`. Nothing is read or
    /// connected until [`GrpcClient::start`] or the first call.
    pub fn new(
        uri: Uri,
        headers: &Headers,
        compression: Compression,
        tls: TlsConfig,
        timeout: Duration,
    ) -> Result<GrpcClient, FieldError> {
        Ok(GrpcClient {
            shown: super::redact_url(&uri.to_string()),
            uri,
            tls,
            metadata: MetadataMap::from_headers(headers.to_header_map("headers")?),
            compression,
            timeout,
            channel: OnceCell::new(),
        })
    }

    /// The endpoint.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The channel, made on first use. It connects lazily (and reconnects) by itself, so a
    /// backend that is down fails calls, not the start.
    async fn channel(&self) -> Result<Channel, String> {
        self.channel
            .get_or_try_init(|| async { self.build_channel() })
            .await
            .cloned()
    }

    fn build_channel(&self) -> Result<Channel, String> {
        if self.uri.scheme_str() == Some("https") {
            return self.tls_channel();
        }
        Ok(self.endpoint(self.uri.clone())?.connect_lazy())
    }

    /// An endpoint for `uri` with the user agent and connect timeout.
    fn endpoint(&self, uri: Uri) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from(uri)
            .user_agent(USER_AGENT)
            .map_err(|e| describe_error(&e))?;
        Ok(if self.timeout.is_zero() {
            endpoint
        } else {
            endpoint.connect_timeout(self.timeout)
        })
    }

    /// A channel over rustls with the exporter's [`TlsConfig`] (CA, client certificate,
    /// `min_version`). tonic's own TLS knows neither a minimum version nor reloading, so the
    /// endpoint is given as `http://` to tonic, the connector does the TLS, and requests keep
    /// the `https` origin.
    fn tls_channel(&self) -> Result<Channel, String> {
        let mut config = self.tls.rustls_client_config().map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let host = self.uri.host().unwrap_or_default();
        let server_name = rustls_pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| format!("TLS setup for {}: {e}", self.shown))?;
        let address = format!("{host}:{}", self.uri.port_u16().unwrap_or(443));
        let plain: Uri = format!("http://{address}")
            .parse()
            .map_err(|e| format!("{}: {e}", self.shown))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let connect = tower::service_fn(move |_: Uri| {
            let (connector, server_name, address) =
                (connector.clone(), server_name.clone(), address.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&address).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        let endpoint = self.endpoint(plain)?.origin(self.uri.clone());
        Ok(endpoint.connect_with_connector_lazy(connect))
    }

    /// Builds the channel (reads `tls.ca_file`); fails the exporter's start when it cannot.
    pub async fn start(&self) -> Result<(), ComponentError> {
        self.channel()
            .await
            .map(|_| ())
            .map_err(ComponentError::Other)
    }

    /// One unary call of `path` with the encoded request `body` (one buffer, or pieces
    /// written one after the other); returns the encoded response. Failures are classified
    /// with [`classify`].
    pub async fn unary(
        &self,
        path: PathAndQuery,
        body: impl Into<RequestBody>,
    ) -> Result<Bytes, SendError> {
        let body = body.into();
        let channel = self.channel().await.map_err(SendError::permanent_health)?;
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
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        if !self.timeout.is_zero() {
            // Tells the server too (grpc-timeout), so it can give up when we do.
            request.set_timeout(self.timeout);
        }
        let response = grpc
            .unary(request, path, RawCodec)
            .await
            .map_err(|status| classify(&status))?;
        Ok(response.into_inner())
    }
}

/// An already-encoded request message, in pieces written one after the other.
#[derive(Debug, Clone, Default)]
pub struct RequestBody(pub Vec<Bytes>);

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> RequestBody {
        RequestBody(vec![b])
    }
}

impl From<Vec<Bytes>> for RequestBody {
    fn from(pieces: Vec<Bytes>) -> RequestBody {
        RequestBody(pieces)
    }
}

/// Passes already-encoded messages through tonic's framing and compression.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = RequestBody;
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
    type Item = RequestBody;
    type Error = Status;

    fn encode(&mut self, item: RequestBody, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.0.iter().map(Bytes::len).sum());
        for piece in item.0 {
            dst.put(piece);
        }
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
pub fn classify(status: &Status) -> SendError {
    let code = status.code();
    let retry_after = rpc::retry_delay(status.details());
    let mut reason = format!("gRPC status {code:?}");
    if !status.message().is_empty() {
        reason.push_str(": ");
        reason.push_str(status.message());
    }
    // Transport errors hide the useful part (connection refused, DNS) in the source chain.
    push_causes(&mut reason, status.source());
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
