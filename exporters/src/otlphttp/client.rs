//! Sending over OTLP/HTTP with hyper, and what HTTP answers mean for retries.

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use pipeline_core::{Batch, ComponentError, FieldError, PerSignal, Signal};

use super::config::{Encoding, OtlpHttpConfig};
use crate::helper::codec::{decode_response_json, decode_response_proto, encode_json};
pub(crate) use crate::helper::http::parse_retry_after;
use crate::helper::http::{HttpPoster, prefix_post, short_detail};
use crate::helper::{Delivered, SendError, Sender};
use pipeline_core::rpc::RpcStatus;

/// Posts export requests to the per-signal URLs.
pub(crate) struct HttpSender {
    urls: PerSignal<Option<Uri>>,
    encoding: Encoding,
    compression: crate::helper::Compression,
    poster: HttpPoster,
}

impl HttpSender {
    pub(crate) fn new(config: &OtlpHttpConfig) -> Result<HttpSender, FieldError> {
        let mut headers = config.headers.to_header_map("headers")?;
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(config.encoding.content_type()),
        );
        if let Some(encoding) = config.compression.encoding_name() {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        Ok(HttpSender {
            urls: config.signal_urls()?,
            encoding: config.encoding,
            compression: config.compression,
            poster: HttpPoster::new(headers, config.tls.clone()),
        })
    }

    fn encode(&self, batch: &Batch) -> Result<Bytes, SendError> {
        let body = match self.encoding {
            Encoding::Proto => batch.to_request(),
            Encoding::Json => encode_json(&batch.payload_view())
                .map_err(|e| SendError::permanent(e.to_string()))?,
        };
        self.compression.compress_body(body)
    }
}

#[async_trait]
impl Sender for HttpSender {
    async fn start(&self) -> Result<(), ComponentError> {
        self.poster.start().await
    }

    /// OTLP/HTTP protobuf carries the batch's bytes as they are; OTLP/JSON needs it decoded.
    fn reads_data(&self) -> bool {
        self.encoding == Encoding::Json
    }

    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        let signal = batch.signal();
        let Some(url) = self.urls.get(signal) else {
            return Err(SendError::permanent_health(format!(
                "no endpoint for {signal}: set endpoint or {signal}_endpoint"
            )));
        };
        let body = self.encode(batch)?;
        let answer = self.poster.post(url, body).await?;
        interpret(
            signal,
            self.encoding,
            answer.status,
            &answer.headers,
            &answer.body,
        )
        .map_err(|e| prefix_post(e, url))
    }
}

/// What an HTTP answer means, as the OpenTelemetry Collector decides it: 2xx is delivered
/// (with a partial success if the body holds one); 429, 502, 503 and 504 are retryable,
/// honouring `Retry-After`; 401, 403 and 404 are permanent and make the exporter unhealthy
/// (wrong credentials or URL); every other status is permanent for this batch.
pub(crate) fn interpret(
    signal: Signal,
    encoding: Encoding,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Delivered, SendError> {
    if status.is_success() {
        if body.is_empty() {
            return Ok(Delivered::all());
        }
        let decoded = if body_is_json(headers, encoding) {
            decode_response_json(signal, body)
        } else {
            decode_response_proto(signal, body)
        };
        // The data was accepted either way; an unreadable body only loses the details.
        return Ok(decoded.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "could not read the partial success of a 2xx response");
            Delivered::all()
        }));
    }
    let mut reason = format!("HTTP {status}");
    if let Some(detail) = error_detail(headers, body) {
        reason.push_str(": ");
        reason.push_str(&detail);
    }
    Err(match status.as_u16() {
        429 | 502 | 503 | 504 => SendError::Retryable {
            reason,
            retry_after: headers.get(RETRY_AFTER).and_then(parse_retry_after),
        },
        401 | 403 | 404 => SendError::permanent_health(reason),
        _ => SendError::permanent(reason),
    })
}

fn body_is_json(headers: &HeaderMap, encoding: Encoding) -> bool {
    match headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(ct) if ct.contains("json") => true,
        Some(ct) if ct.contains("protobuf") => false,
        _ => encoding == Encoding::Json,
    }
}

/// The message of an error response: a `google.rpc.Status` in protobuf or JSON, or the
/// text itself, cut short.
fn error_detail(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let message = if content_type.contains("protobuf") {
        RpcStatus::decode_bytes(body).map(|s| s.message)
    } else if content_type.contains("json") {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
    } else {
        None
    };
    let text = message.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    short_detail(&text)
}
