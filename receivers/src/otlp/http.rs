//! OTLP/HTTP: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with `application/x-protobuf` or
//! `application/json` (OTLP/JSON), optionally `Content-Encoding: gzip`.
//!
//! The body is read up to the configured limit, decompressed up to the same limit (a gzip
//! bomb stops there), decoded, and handed to [`Ingest`]. Answers follow the OTLP/HTTP spec:
//! 200 with the export response (partial success included), 400 with a `google.rpc.Status`
//! for malformed data, 413 for oversized bodies, 415 for unsupported types or encodings,
//! 503 with `Retry-After` when the pipeline is full, 405 for other methods.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use pipeline_core::proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use pipeline_core::proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use pipeline_core::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

use super::auth::BearerAuth;
use super::ingest::{CONSUME_TIMEOUT, Ingest, IngestError};
use super::request::OtlpRequest;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

struct HttpState {
    ingest: Arc<Ingest>,
    max_body: usize,
    auth: Option<Arc<BearerAuth>>,
    /// Refused bodies being read and thrown away at once (each connection reading holds a
    /// read buffer of up to 400 KiB).
    discarding: Arc<tokio::sync::Semaphore>,
}

/// How many refused bodies are read and thrown away at once.
const DISCARDING_AT_ONCE: usize = 16;

/// The OTLP/HTTP routes.
pub(crate) fn router(
    ingest: Arc<Ingest>,
    max_body: usize,
    auth: Option<Arc<BearerAuth>>,
) -> Router {
    let state = Arc::new(HttpState {
        ingest,
        max_body,
        auth,
        discarding: Arc::new(tokio::sync::Semaphore::new(DISCARDING_AT_ONCE)),
    });
    Router::new()
        .route("/v1/traces", post(export::<ExportTraceServiceRequest>))
        .route("/v1/metrics", post(export::<ExportMetricsServiceRequest>))
        .route("/v1/logs", post(export::<ExportLogsServiceRequest>))
        .with_state(state)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

/// An error answer, in the request's encoding when it is known.
struct Failure {
    status: StatusCode,
    message: String,
    retry_after: Option<std::time::Duration>,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn into_response(self, encoding: Encoding) -> Response {
        let grpc_code = match self.status {
            StatusCode::SERVICE_UNAVAILABLE => 14,
            StatusCode::PAYLOAD_TOO_LARGE => 8,
            StatusCode::NOT_FOUND => 12,
            StatusCode::UNAUTHORIZED => 16,
            _ => 3,
        };
        let status = pipeline_core::rpc::RpcStatus::new(grpc_code, self.message.clone(), None);
        let body = match encoding {
            Encoding::Protobuf => status.encode_to_vec(),
            Encoding::Json => serde_json::json!({ "code": grpc_code, "message": self.message })
                .to_string()
                .into_bytes(),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, encoding.content_type())],
            body,
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

async fn export<R: OtlpRequest>(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(auth) = &state.auth
        && let Err(failure) = auth.check(&headers)
    {
        state.ingest.rejected_request("http", "unauthenticated");
        let encoding = content_type(&headers).unwrap_or(Encoding::Json);
        return Failure::new(StatusCode::UNAUTHORIZED, failure.message()).into_response(encoding);
    }
    let encoding = match content_type(&headers) {
        Ok(e) => e,
        Err(f) => {
            state
                .ingest
                .rejected_request("http", "unsupported_media_type");
            return f.into_response(Encoding::Json);
        }
    };
    match handle::<R>(&state, &headers, body, encoding).await {
        Ok(response) => {
            let bytes = match encoding {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => json_without_nulls(&response),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, encoding.content_type())],
                bytes,
            )
                .into_response()
        }
        Err(f) => f.into_response(encoding),
    }
}

/// Where the buffer of a body without `Content-Length` starts (it grows as needed).
const INITIAL_UNANNOUNCED_BODY: usize = 64 * 1024;

/// Why a body could not be read.
enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads `body` into one buffer of `expected` bytes to start with (the announced length),
/// refusing more than `limit`. Each frame is copied in and dropped at once, so a body is held
/// once, not as its frames plus a contiguous copy.
async fn read_body(mut body: Body, expected: usize, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = bytes::BytesMut::with_capacity(expected.min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// How long a refused request's body is read and thrown away at most.
const DISCARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and drops what is left of `body`, at most `limit` bytes and [`DISCARD_TIMEOUT`]
/// (waiting for a turn included); one frame is held at a time, and at most
/// [`DISCARDING_AT_ONCE`] bodies are read at once.
async fn discard_body(mut body: Body, limit: usize, discarding: &tokio::sync::Semaphore) {
    let drain = async {
        let Ok(_turn) = discarding.acquire().await else {
            return;
        };
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIMEOUT, drain).await;
}

/// What the headers of a request decided, before its body is read.
struct Admitted {
    gzip: bool,
    /// `Content-Length`, the body's size as sent.
    announced: Option<usize>,
    _admission: super::ingest::Admission,
}

/// Checks a request's headers and takes room for its body; a refusal here is answered
/// before the body is read.
async fn admit_headers(state: &HttpState, headers: &HeaderMap) -> Result<Admitted, Failure> {
    let ingest = &state.ingest;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" || e == "none" => false,
        Some(e) if e == "gzip" => true,
        Some(e) => {
            ingest.rejected_request("http", "unsupported_encoding");
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {e:?}; use gzip or none"),
            ));
        }
    };
    // Room for the body (as announced, or the most it may be) before reading it.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let room = match (gzip, announced) {
        (false, Some(n)) => n.min(state.max_body),
        _ => state.max_body,
    };
    match ingest.admit(room, "http").await {
        Ok(admission) => Ok(Admitted {
            gzip,
            announced,
            _admission: admission,
        }),
        Err(e) => Err(e.into()),
    }
}

async fn handle<R: OtlpRequest>(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<R::Response, Failure> {
    let ingest = &state.ingest;
    let Admitted {
        gzip,
        announced,
        _admission,
    } = match admit_headers(state, headers).await {
        Ok(admitted) => admitted,
        Err(refused) => {
            // Refused before reading: what the client is still sending is read and thrown
            // away, so it reads the answer instead of a connection reset mid-request.
            discard_body(body, state.max_body, &state.discarding).await;
            return Err(refused);
        }
    };
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds {} bytes", state.max_body),
        )
    };
    // The buffer starts at the announced length (of the body as sent, gzip or not), or small
    // when none was announced: a small chunked request does not pin a large buffer.
    let initial = announced.unwrap_or(INITIAL_UNANNOUNCED_BODY);
    let raw = match read_body(body, initial, state.max_body).await {
        Ok(raw) => raw,
        Err(BodyError::TooLarge) => {
            ingest.rejected_request("http", "too_large");
            return Err(too_large());
        }
        Err(BodyError::Read(e)) => {
            ingest.rejected_request("http", "read_error");
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            ));
        }
    };
    let data = if gzip {
        match gunzip(&raw, state.max_body) {
            Ok(Some(d)) => d,
            Ok(None) => {
                ingest.rejected_request("http", "too_large");
                return Err(too_large());
            }
            Err(e) => {
                ingest.rejected_request("http", "malformed");
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid gzip body: {e}"),
                ));
            }
        }
    } else {
        raw
    };
    let outcome = match encoding {
        Encoding::Protobuf => {
            ingest
                .ingest_protobuf::<R>(data, CONSUME_TIMEOUT, "http")
                .await
        }
        Encoding::Json => {
            let request = serde_json::from_slice::<R>(&data).map_err(|e| {
                ingest.rejected_request("http", "malformed");
                Failure::new(StatusCode::BAD_REQUEST, format!("malformed OTLP/JSON: {e}"))
            })?;
            ingest.ingest(request.into_payload(), CONSUME_TIMEOUT).await
        }
    };
    outcome.map(R::response).map_err(Failure::from)
}

impl From<IngestError> for Failure {
    fn from(e: IngestError) -> Failure {
        match e {
            IngestError::Unavailable {
                message,
                retry_after,
            } => Failure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
                retry_after: Some(retry_after),
            },
            IngestError::Invalid(m) => Failure::new(StatusCode::BAD_REQUEST, m),
            IngestError::SignalNotEnabled(s) => Failure::new(
                StatusCode::NOT_FOUND,
                format!("no pipeline takes {s} from this receiver"),
            ),
        }
    }
}

/// OTLP/JSON omits unset fields; the proto crate's serde writes `"partialSuccess": null`.
fn json_without_nulls(response: &impl serde::Serialize) -> Vec<u8> {
    let mut value = serde_json::to_value(response).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value.to_string().into_bytes()
}

fn content_type(headers: &HeaderMap) -> Result<Encoding, Failure> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        PROTOBUF => Ok(Encoding::Protobuf),
        JSON => Ok(Encoding::Json),
        _ => Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {raw:?}; use {PROTOBUF} or {JSON}"),
        )),
    }
}

/// Decompresses at most `limit` bytes; `Ok(None)` when the output would be larger.
fn gunzip(data: &[u8], limit: usize) -> std::io::Result<Option<Bytes>> {
    let mut out = Vec::with_capacity((data.len() * 4).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    decoder.read_to_end(&mut out)?;
    if out.len() > limit {
        return Ok(None);
    }
    Ok(Some(Bytes::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        let bomb = gz(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20_000);
        assert_eq!(gunzip(&bomb, 1024 * 1024).unwrap(), None);
        assert_eq!(
            gunzip(&gz(b"hello"), 10).unwrap().unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(gunzip(b"not gzip", 10).is_err());
    }
}
