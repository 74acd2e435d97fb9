//! Translating a batch into remote-write requests and sending them.
//!
//! [`build_requests`] turns the (cumulative) points of a batch into time series: labels
//! sorted by name with `__name__` among them, samples sorted by timestamp (one per
//! timestamp), each series in the shard its label hash picks, and each shard's series cut
//! into requests of at most `max_batch_size_bytes`. [`RemoteWriteSender`] sends the shards
//! in parallel and each shard's requests one after the other, protobuf and snappy-compressed
//! with the remote-write 1.0 headers.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use pipeline_core::proto::tonic::metrics::v1::ResourceMetrics;
use pipeline_core::{Batch, ComponentError, FieldError, Payload};
use prost::Message;
use tokio::task::JoinSet;

use super::config::RemoteWriteConfig;
use super::proto::{Label, Sample, TimeSeries, WriteRequest};
use crate::helper::http::{LazyClient, cut_detail, parse_retry_after};
use crate::helper::prometheus::{Family, Labels, Point, Sink, TranslationConfig, translate};
use crate::helper::{Delivered, SendError, Sender};

/// The remote-write protocol version header.
pub const VERSION_HEADER: &str = "x-prometheus-remote-write-version";

/// What [`build_requests`] needs to know.
#[derive(Debug, Clone)]
pub struct RequestLayout {
    /// Names and labels.
    pub translation: TranslationConfig,
    /// Send `target_info`.
    pub target_info: bool,
    /// Shards (at least 1).
    pub num_shards: usize,
    /// Largest uncompressed request.
    pub max_request_bytes: usize,
}

/// The requests of one batch.
#[derive(Debug, Default)]
pub struct Requests {
    /// Per shard, the requests to send in order.
    pub shards: Vec<Vec<WriteRequest>>,
    /// Data points that could not be translated.
    pub skipped: usize,
    /// Why, per reason.
    pub skipped_reasons: BTreeMap<&'static str, usize>,
    /// Samples in all requests.
    pub samples: usize,
}

/// Collects the samples of each series.
struct SeriesBuilder {
    series: HashMap<Vec<Label>, Vec<Sample>>,
    target_info: bool,
    skipped: BTreeMap<&'static str, usize>,
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_string(),
        value: value.to_string(),
    }
}

impl SeriesBuilder {
    fn add(&mut self, labels: &Labels, name: String, extra: Option<(&str, f64)>, sample: Sample) {
        let mut out = Vec::with_capacity(labels.len() + 2);
        out.push(Label {
            name: "__name__".into(),
            value: name,
        });
        out.extend(labels.iter().map(|(n, v)| label(n, v)));
        if let Some((n, v)) = extra {
            out.push(Label {
                name: n.to_string(),
                value: crate::helper::prometheus::naming::float_label(v),
            });
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        self.series.entry(out).or_default().push(sample);
    }
}

impl Sink for SeriesBuilder {
    fn target_info(&mut self, labels: Labels, timestamp_ms: i64) {
        if self.target_info {
            let sample = Sample {
                value: 1.0,
                timestamp: timestamp_ms,
            };
            self.add(&labels, "target_info".into(), None, sample);
        }
    }

    fn point(&mut self, family: &Family, point: Point) {
        let timestamp = if point.timestamp_ms > 0 {
            point.timestamp_ms
        } else {
            now_ms()
        };
        point.for_each_sample(|s| {
            let name = format!("{}{}", family.name, s.suffix);
            let sample = Sample {
                value: s.value,
                timestamp,
            };
            self.add(&point.labels, name, s.extra, sample);
        });
    }

    fn skipped(&mut self, points: usize, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += points;
    }
}

fn now_ms() -> i64 {
    i64::try_from(pipeline_core::time::now_unix_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The requests for `resource_metrics`, whose points must be cumulative.
pub fn build_requests(resource_metrics: &[ResourceMetrics], layout: &RequestLayout) -> Requests {
    let mut builder = SeriesBuilder {
        series: HashMap::new(),
        target_info: layout.target_info,
        skipped: BTreeMap::new(),
    };
    translate(resource_metrics, &layout.translation, &mut builder);
    let shards_n = layout.num_shards.max(1);
    let mut shards: Vec<Vec<TimeSeries>> = (0..shards_n).map(|_| Vec::new()).collect();
    let hasher = FixedState;
    let mut samples_total = 0;
    for (labels, mut samples) in builder.series {
        // Timestamp order, one sample per timestamp (the later one wins).
        samples.sort_by_key(|s| s.timestamp);
        samples.dedup_by(|later, earlier| {
            let same = later.timestamp == earlier.timestamp;
            if same {
                *earlier = *later;
            }
            same
        });
        samples_total += samples.len();
        let shard = (hasher.hash_one(&labels) % shards_n as u64) as usize;
        shards[shard].push(TimeSeries { labels, samples });
    }
    let shards = shards
        .into_iter()
        .map(|series| split(series, layout.max_request_bytes))
        .collect();
    let skipped = builder.skipped.values().sum();
    Requests {
        shards,
        skipped,
        skipped_reasons: builder.skipped,
        samples: samples_total,
    }
}

/// A hasher that is the same in every process, so a series always lands in the same shard.
#[derive(Clone, Copy)]
struct FixedState;

impl BuildHasher for FixedState {
    type Hasher = std::collections::hash_map::DefaultHasher;

    fn build_hasher(&self) -> Self::Hasher {
        std::collections::hash_map::DefaultHasher::new()
    }
}

/// Cuts `series` into requests of at most `max_bytes` encoded (a single larger series goes
/// alone).
fn split(series: Vec<TimeSeries>, max_bytes: usize) -> Vec<WriteRequest> {
    let mut requests = Vec::new();
    let mut current = WriteRequest::default();
    let mut size = 0usize;
    for ts in series {
        let len = prost::encoding::message::encoded_len(1, &ts);
        if size + len > max_bytes && !current.timeseries.is_empty() {
            requests.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.timeseries.push(ts);
    }
    if !current.timeseries.is_empty() {
        requests.push(current);
    }
    requests
}

/// A request body: protobuf, snappy block format.
pub fn encode_request(request: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
}

/// Sends batches to a remote-write endpoint.
pub(crate) struct RemoteWriteSender {
    url: Uri,
    headers: HeaderMap,
    client: std::sync::Arc<LazyClient>,
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
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(crate::helper::USER_AGENT),
            );
        }
        Ok(RemoteWriteSender {
            url: config.url()?,
            headers,
            client: std::sync::Arc::new(LazyClient::new(config.tls.clone())),
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
        let Payload::Metrics(resource_metrics) = &batch.payload else {
            return Err(SendError::permanent(format!(
                "remote write takes metrics, not {}",
                batch.signal()
            )));
        };
        let requests = build_requests(resource_metrics, &self.layout);
        let mut bodies: Vec<Vec<Bytes>> = Vec::with_capacity(requests.shards.len());
        for shard in &requests.shards {
            let mut encoded = Vec::with_capacity(shard.len());
            for request in shard {
                let body = encode_request(request)
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
            let headers = self.headers.clone();
            tasks.spawn(async move {
                for body in shard {
                    post_one(&client, &url, &headers, body).await?;
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

async fn post_one(
    client: &LazyClient,
    url: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(), SendError> {
    let (parts, body) = client.post(url, headers, body).await?;
    interpret(parts.status, &parts.headers, &body)
        .map_err(|e| e.prefixed(format_args!("POST {url}")))
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
    if let Some(detail) = cut_detail(&String::from_utf8_lossy(body)) {
        reason.push_str(": ");
        reason.push_str(&detail);
    }
    Err(match status.as_u16() {
        429 | 500..=599 => SendError::Retryable {
            reason,
            retry_after: headers.get(RETRY_AFTER).and_then(parse_retry_after),
        },
        401 | 403 | 404 => SendError::permanent_health(reason),
        _ => SendError::permanent(reason),
    })
}
