//! OTLP/gRPC: the three `Export` methods on one HTTP/2 service.
//!
//! Requests arrive through the shared [`pipeline_core::net::HttpServer`]; tonic's
//! [`Grpc`] handles framing, gzip and the size limit (which it also applies after
//! decompression); our codec hands over the message bytes (in an allocation of their own),
//! and [`Ingest`] checks them (as bytes, or decoded) and turns a malformed message into
//! `INVALID_ARGUMENT` (tonic's own codec says `INTERNAL`, which clients would retry).

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use pipeline_core::proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use pipeline_core::proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use pipeline_core::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::server::{Grpc, UnaryService};
use tonic::{Code, Status};

use super::auth::BearerAuth;
use super::ingest::{CONSUME_TIMEOUT, Ingest, IngestError};
use super::request::OtlpRequest;

const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The OTLP gRPC service, as a tower service for the router.
#[derive(Clone)]
pub(crate) struct GrpcService {
    ingest: Arc<Ingest>,
    max_message_size: usize,
    auth: Option<Arc<BearerAuth>>,
}

impl GrpcService {
    pub(crate) fn new(
        ingest: Arc<Ingest>,
        max_message_size: usize,
        auth: Option<Arc<BearerAuth>>,
    ) -> GrpcService {
        GrpcService {
            ingest,
            max_message_size,
            auth,
        }
    }

    fn unary<R: OtlpRequest, B>(&self, req: http::Request<B>) -> ResponseFuture
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    {
        let mut accept = EnabledCompressionEncodings::default();
        accept.enable(CompressionEncoding::Gzip);
        let codec = OtlpCodec::<R>(PhantomData);
        let mut grpc = Grpc::new(codec)
            .apply_compression_config(accept, EnabledCompressionEncodings::default())
            .apply_max_message_size_config(Some(self.max_message_size), None);
        let method = Export::<R> {
            ingest: self.ingest.clone(),
            _types: PhantomData,
        };
        let ingest = self.ingest.clone();
        let max_message_size = self.max_message_size;
        Box::pin(async move {
            // Room for a whole message before tonic reads it (gRPC bodies carry no length
            // header that tells less).
            let _permit = match ingest.admit(max_message_size, "grpc").await {
                Ok(p) => p,
                Err(e) => return Ok(status_of(e).into_http()),
            };
            let response = grpc.unary(method, req).await;
            // Refusals by tonic's framing, before the message reached `Export`: over the size
            // limit as sent (OUT_OF_RANGE) or decompressed (RESOURCE_EXHAUSTED), or bad framing.
            let refused = match response.headers().get("grpc-status").map(|v| v.as_bytes()) {
                Some(b"11") | Some(b"8") => Some("too_large"),
                Some(b"13") => Some("malformed"),
                _ => None,
            };
            if let Some(reason) = refused {
                ingest.rejected_request("grpc", reason);
            }
            Ok(response)
        })
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl<B> tower::Service<http::Request<B>> for GrpcService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(auth) = &self.auth
            && let Err(failure) = auth.check(req.headers())
        {
            self.ingest.rejected_request("grpc", "unauthenticated");
            let status = Status::unauthenticated(failure.message());
            return Box::pin(async move { Ok(status.into_http()) });
        }
        match req.uri().path() {
            TRACES_PATH => self.unary::<ExportTraceServiceRequest, B>(req),
            METRICS_PATH => self.unary::<ExportMetricsServiceRequest, B>(req),
            LOGS_PATH => self.unary::<ExportLogsServiceRequest, B>(req),
            path => {
                let status = Status::unimplemented(format!("unknown method {path}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// One `Export` method.
struct Export<R> {
    ingest: Arc<Ingest>,
    _types: PhantomData<fn() -> R>,
}

impl<R: OtlpRequest> UnaryService<Bytes> for Export<R> {
    type Response = R::Response;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<R::Response>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let budget = client_deadline(request.metadata())
                .map_or(CONSUME_TIMEOUT, |d| d.min(CONSUME_TIMEOUT));
            match ingest
                .ingest_protobuf::<R>(request.into_inner(), budget, "grpc")
                .await
            {
                Ok(accepted) => Ok(tonic::Response::new(R::response(accepted))),
                Err(e) => Err(status_of(e)),
            }
        })
    }
}

fn status_of(e: IngestError) -> Status {
    match e {
        IngestError::Unavailable {
            message,
            retry_after,
        } => {
            let details = pipeline_core::rpc::RpcStatus::new(
                Code::Unavailable as i32,
                message.clone(),
                Some(retry_after),
            );
            Status::with_details(Code::Unavailable, message, details.encode_to_vec().into())
        }
        IngestError::Invalid(m) => Status::invalid_argument(m),
        IngestError::SignalNotEnabled(signal) => {
            Status::unimplemented(format!("no pipeline takes {signal} from this receiver"))
        }
    }
}

/// The `grpc-timeout` header: digits then a unit (H, M, S, m, u, n).
fn client_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Responses encoded with prost; requests handed over as the message bytes (tonic's buffer,
/// split off without a copy) for [`Ingest`] to check.
struct OtlpCodec<R>(PhantomData<fn() -> R>);

impl<R: OtlpRequest> Codec for OtlpCodec<R> {
    type Encode = R::Response;
    type Decode = Bytes;
    type Encoder = ProstEncoder<R::Response>;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

struct ProstEncoder<T>(PhantomData<fn(T)>);

impl<T: Message> Encoder for ProstEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(())
    }
}

struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    /// Copies the message into an allocation of its own size: the bytes may stay in the
    /// pipeline for a while (batched, queued), and a slice of tonic's read buffer would keep
    /// the whole buffer (up to twice the message) alive with it.
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let mut message = Vec::with_capacity(buf.remaining());
        while buf.has_remaining() {
            let chunk = buf.chunk();
            message.extend_from_slice(chunk);
            let n = chunk.len();
            buf.advance(n);
        }
        Ok(Some(Bytes::from(message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeout() {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(client_deadline(&m), Some(Duration::from_millis(250)));
        m.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(client_deadline(&m), Some(Duration::from_secs(3)));
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(client_deadline(&m), None);
    }
}
