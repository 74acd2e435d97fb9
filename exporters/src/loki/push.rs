//! Pushing to Loki: one or more `POST /loki/api/v1/push` per batch, and what Loki's answers
//! mean.

use std::sync::LazyLock;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Uri};
use pipeline_core::{Batch, ComponentError, FieldError};

use super::config::{LokiConfig, LokiEncoding};
use super::encode::{Mapping, Part, build_streams, encode_parts};
use crate::helper::http::{HttpAnswer, HttpPoster, prefix_post, short_detail};
use crate::helper::{
    Compression, Delivered, PartAnswer, SendError, SendProgress, Sender, send_in_parts,
};

/// The tenant header of multi-tenant Loki.
static X_SCOPE_ORGID: LazyLock<HeaderName> =
    LazyLock::new(|| HeaderName::from_static("x-scope-orgid"));

/// Pushes batches of logs to one Loki.
pub(crate) struct LokiSender {
    url: Uri,
    mapping: Mapping,
    encoding: LokiEncoding,
    compression: Compression,
    max_request_bytes: usize,
    poster: HttpPoster,
}

impl LokiSender {
    pub(crate) fn new(config: &LokiConfig) -> Result<LokiSender, FieldError> {
        let mut headers = config.headers.to_header_map("headers")?;
        let content_type = match config.encoding {
            LokiEncoding::Protobuf => "application/x-protobuf",
            LokiEncoding::Json => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if config.encoding == LokiEncoding::Json
            && let Some(encoding) = config.compression.encoding_name()
        {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        if let Some(tenant) = &config.tenant_id {
            let value = HeaderValue::from_str(tenant)
                .map_err(|_| FieldError::new("tenant_id", "is not a valid header value"))?;
            headers.insert(X_SCOPE_ORGID.clone(), value);
        }
        Ok(LokiSender {
            url: config.push_url()?,
            mapping: Mapping::new(config),
            encoding: config.encoding,
            compression: config.compression,
            max_request_bytes: config.max_request_bytes,
            poster: HttpPoster::new(headers, config.tls.clone()),
        })
    }

    /// The batch as push request bodies (before compression); the same batch and `now`
    /// always give the same parts, so a retry can skip those already answered.
    pub(crate) fn parts(&self, batch: &Batch, now_unix_nanos: u64) -> Result<Vec<Part>, SendError> {
        let payload = batch.payload_view();
        let streams = build_streams(&payload, &self.mapping, now_unix_nanos)
            .map_err(|e| SendError::permanent(e.to_string()))?;
        Ok(encode_parts(
            &streams,
            &self.mapping,
            self.encoding,
            self.max_request_bytes,
        ))
    }

    /// A part's body compressed as sent.
    pub(crate) fn compress(&self, part: Part) -> Result<Bytes, SendError> {
        match self.encoding {
            LokiEncoding::Protobuf => snap::raw::Encoder::new()
                .compress_vec(&part.body)
                .map(Bytes::from)
                .map_err(|e| SendError::permanent(format!("snappy: {e}"))),
            LokiEncoding::Json => self.compression.compress_body(part.body),
        }
    }
}

#[async_trait]
impl Sender for LokiSender {
    async fn start(&self) -> Result<(), ComponentError> {
        self.poster.start().await
    }

    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        self.send_resuming(batch, &mut SendProgress::starting_now())
            .await
    }

    async fn send_resuming(
        &self,
        batch: &Batch,
        progress: &mut SendProgress,
    ) -> Result<Delivered, SendError> {
        let now = match progress.first_attempt_unix_nanos {
            0 => SendProgress::starting_now().first_attempt_unix_nanos,
            at => at,
        };
        let parts = self.parts(batch, now)?;
        send_in_parts(
            parts,
            |p| p.items,
            progress,
            |part| async move {
                let items = part.items;
                let body = self.compress(part)?;
                let answer = self.poster.post(&self.url, body).await?;
                interpret(&answer, items).map_err(|e| prefix_post(e, &self.url))
            },
        )
        .await
    }
}

/// What Loki's answer to a part of `items` entries means: accepted; or some entries refused
/// for good (400 and other 4xx: out of order, too old, too long, invalid
/// labels; Loki then still took the rest of the request, and says how many it ignored);
/// 429 and 5xx retryable, honouring `Retry-After`; 401, 403 and 404 permanent and the
/// exporter unhealthy (credentials or URL are wrong, nothing will get through).
pub(crate) fn interpret(answer: &HttpAnswer, items: usize) -> Result<PartAnswer, SendError> {
    let status = answer.status;
    if status.is_success() {
        return Ok(PartAnswer::Accepted);
    }
    let reason = || rejection_message(answer);
    match status.as_u16() {
        429 | 500..=599 => Err(SendError::Retryable {
            reason: reason(),
            retry_after: answer.retry_after(),
        }),
        401 | 403 | 404 => Err(SendError::permanent_health(reason())),
        _ => {
            let all = u64::try_from(items).unwrap_or(u64::MAX);
            Ok(PartAnswer::Rejected {
                items: ignored_count(&String::from_utf8_lossy(&answer.body))
                    .map_or(all, |n| n.min(all)),
                message: reason(),
            })
        }
    }
}

fn rejection_message(answer: &HttpAnswer) -> String {
    let text = String::from_utf8_lossy(&answer.body);
    format!(
        "HTTP {}: {}",
        answer.status,
        short_detail(&text).unwrap_or_else(|| "(no message)".into())
    )
}

/// The count in Loki's `total ignored: N out of M`, when its message has one.
fn ignored_count(message: &str) -> Option<u64> {
    let at = message.find("total ignored:")?;
    let rest = message[at + "total ignored:".len()..].trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
