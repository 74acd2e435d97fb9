//! Translating a batch into remote-write requests and sending them.
//!
//! [`build_requests`] (`encode.rs`) turns the (cumulative) points of a batch into request
//! bodies per shard; [`RemoteWriteSender`] compresses them (snappy block format) and sends
//! the shards in parallel and each shard's requests one after the other, with the
//! remote-write 1.0 headers, and reads what the answers mean.

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use pipeline_core::{Batch, ComponentError, FieldError, Payload};
use prost::Message;
use tokio::task::JoinSet;

use super::config::RemoteWriteConfig;
use super::encode::{RequestLayout, build_requests};
use super::proto::WriteRequest;
use crate::helper::http::{HttpPoster, prefix_post, short_detail};
use crate::helper::{Delivered, SendError, Sender};

/// The remote-write protocol version header.
pub const VERSION_HEADER: &str = "x-prometheus-remote-write-version";

/// A request built with prost, protobuf and snappy block format: the plain way, kept as the
/// benchmark's baseline for [`build_requests`].
pub fn encode_request(request: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
}

/// Sends batches to a remote-write endpoint.
pub(crate) struct RemoteWriteSender {
    url: Uri,
    client: std::sync::Arc<HttpPoster>,
    layout: RequestLayout,
}

impl RemoteWriteSender {
    pub(crate) fn new(config: &RemoteWriteConfig) -> Result<RemoteWriteSender, FieldError> {
        let mut headers = config.headers.to_header_map("headers")?;
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            HeaderName::from_static(VERSION_HEADER),
            HeaderValue::from_static("0.1.0"),
        );
        Ok(RemoteWriteSender {
            url: config.url()?,
            client: std::sync::Arc::new(HttpPoster::new(headers, config.tls.clone())),
            layout: RequestLayout {
                translation: config.translation(),
                target_info: config.target_info.enabled,
                num_shards: config.num_shards,
                max_request_bytes: config.max_batch_size_bytes,
            },
        })
    }
}

#[async_trait]
impl Sender for RemoteWriteSender {
    async fn start(&self) -> Result<(), ComponentError> {
        self.client.start().await
    }

    async fn send(&self, batch: &Batch) -> Result<Delivered, SendError> {
        let payload = batch.payload_view();
        let Payload::Metrics(resource_metrics) = &*payload else {
            return Err(SendError::permanent(format!(
                "remote write takes metrics, not {}",
                batch.signal()
            )));
        };
        let requests = build_requests(resource_metrics, &self.layout);
        let mut bodies: Vec<Vec<Bytes>> = Vec::with_capacity(requests.shards.len());
        let mut encoder = snap::raw::Encoder::new();
        for shard in &requests.shards {
            let mut encoded = Vec::with_capacity(shard.len());
            for body in shard {
                let body = encoder
                    .compress_vec(body)
                    .map_err(|e| SendError::permanent(format!("snappy: {e}")))?;
                encoded.push(Bytes::from(body));
            }
            bodies.push(encoded);
        }
        // Shards in parallel; dropping this future (timeout, shutdown) aborts them all.
        let mut tasks = JoinSet::new();
        for shard in bodies.into_iter().filter(|s| !s.is_empty()) {
            let client = std::sync::Arc::clone(&self.client);
            let url = self.url.clone();
            tasks.spawn(async move {
                for body in shard {
                    post_one(&client, &url, body).await?;
                }
                Ok::<(), SendError>(())
            });
        }
        let mut failure: Option<SendError> = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined
                .unwrap_or_else(|e| Err(SendError::retryable(format!("shard task failed: {e}"))));
            if let Err(e) = result {
                failure = Some(worse(failure, e));
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mut delivered = Delivered::all();
        if requests.skipped > 0 {
            delivered.rejected_items = requests.skipped as u64;
            delivered.message = format!(
                "data points that cannot be written to Prometheus: {:?}",
                requests.skipped_reasons
            );
        }
        Ok(delivered)
    }
}

/// Of two failures, the one that decides: retryable beats permanent (the batch is sent
/// again), the longer server hint wins.
fn worse(a: Option<SendError>, b: SendError) -> SendError {
    match (a, b) {
        (None, b) => b,
        (
            Some(SendError::Retryable {
                reason,
                retry_after: ra,
            }),
            SendError::Retryable {
                retry_after: rb, ..
            },
        ) => SendError::Retryable {
            reason,
            retry_after: ra.max(rb),
        },
        (Some(a @ SendError::Retryable { .. }), _) => a,
        (Some(_), b @ SendError::Retryable { .. }) => b,
        (Some(a), _) => a,
    }
}

async fn post_one(client: &HttpPoster, url: &Uri, body: Bytes) -> Result<(), SendError> {
    let answer = client.post(url, body).await?;
    interpret(answer.status, &answer.headers, &answer.body).map_err(|e| prefix_post(e, url))
}

/// What a remote-write answer means: 2xx delivered; 5xx and 429 retryable, honouring
/// `Retry-After`; 401, 403 and 404 permanent and the exporter unhealthy; other 4xx
/// permanent for this batch (the server's message is in the reason).
pub(crate) fn interpret(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let mut reason = format!("HTTP {status}");
    if let Some(detail) = short_detail(&String::from_utf8_lossy(body)) {
        reason.push_str(": ");
        reason.push_str(&detail);
    }
    Err(match status.as_u16() {
        429 | 500..=599 => SendError::Retryable {
            reason,
            retry_after: headers
                .get(RETRY_AFTER)
                .and_then(crate::helper::http::parse_retry_after),
        },
        401 | 403 | 404 => SendError::permanent_health(reason),
        _ => SendError::permanent(reason),
    })
}
