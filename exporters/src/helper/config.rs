//! Config sections shared by the network exporters, with the OpenTelemetry Collector's names
//! and defaults.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use pipeline_core::FieldError;
use pipeline_core::config::{ByteSize, HumanDuration};
pub use pipeline_core::queue::{FsyncPolicy, Sizer};
use serde::{Deserialize, Serialize};

/// The default per-attempt `timeout`: 5s.
pub fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// `retry_on_failure`: how passing failures are retried.
///
/// The delay before retry *n* is `initial_interval * multiplier^(n-1)`, capped at
/// `max_interval`, then spread by ±`randomization_factor` (so with the defaults it is drawn
/// from 2.5s–7.5s, then 3.75s–11.25s, ..., up to 15s–45s). A server's retry hint (gRPC
/// `RetryInfo`, HTTP `Retry-After`) replaces the computed delay. Retrying stops, and the
/// batch is dropped, when the next attempt would start later than `max_elapsed_time` after
/// the first one (`0` retries forever).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Whether to retry at all (default `true`); when `false` a passing failure drops the
    /// batch at once (or, without a queue, is returned to the caller).
    pub enabled: bool,
    /// The first delay (default `5s`).
    pub initial_interval: HumanDuration,
    /// How far each delay is spread around its nominal value, 0 to 1 (default `0.5`).
    pub randomization_factor: f64,
    /// Growth of the delay per retry (default `1.5`).
    pub multiplier: f64,
    /// The largest nominal delay (default `30s`).
    pub max_interval: HumanDuration,
    /// How long to keep retrying one batch (default `300s`; `0` means forever).
    pub max_elapsed_time: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: HumanDuration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: HumanDuration::from_secs(30),
            max_elapsed_time: HumanDuration::from_secs(300),
        }
    }
}

impl RetryConfig {
    /// Checks the values; `path` is where this section sits in the component's config.
    pub fn validate(&self, path: &str) -> Result<(), FieldError> {
        if !self.enabled {
            return Ok(());
        }
        if self.initial_interval.get().is_zero() {
            return Err(FieldError::new(
                join(path, "initial_interval"),
                "must be more than 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err(FieldError::new(
                join(path, "randomization_factor"),
                format!("must be between 0 and 1, not {}", self.randomization_factor),
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(FieldError::new(
                join(path, "multiplier"),
                format!("must be at least 1, not {}", self.multiplier),
            ));
        }
        if self.max_interval < self.initial_interval {
            return Err(FieldError::new(
                join(path, "max_interval"),
                format!(
                    "{} is shorter than initial_interval {}",
                    self.max_interval, self.initial_interval
                ),
            ));
        }
        Ok(())
    }
}

/// `sending_queue`: the bounded queue between `consume` and the workers.
///
/// `queue_size` counts in the unit `sizer` names: items (spans, data points, log records;
/// the default) or bytes (of the batches' protobuf). It bounds what waits *and* what the
/// `num_consumers` workers are sending: a batch keeps its room until the backend answered
/// for it. The default of 10 000 items holds one full batch of the `batch` processor's
/// default 8192 items plus change, so an exporter holds at most about one batch whatever its
/// workers; `sizer: bytes` bounds it in memory terms (with 2 KiB spans, 10 000 items are
/// 20 MiB). A batch larger than the whole queue is still accepted when the queue is empty.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Whether to queue at all (default `true`). Without a queue `consume` sends (and
    /// retries) in the caller's task and returns the outcome to the caller.
    pub enabled: bool,
    /// Workers sending concurrently (default `10`).
    pub num_consumers: usize,
    /// Capacity in `sizer`'s unit (default `10000`).
    pub queue_size: usize,
    /// What `queue_size` counts: `items` (default) or `bytes`.
    pub sizer: Sizer,
    /// When the queue is full: `true` (default) makes `consume` wait for room, `false`
    /// refuses the batch at once (the receiver answers 503 / `UNAVAILABLE`).
    pub block_on_overflow: bool,
    /// A directory for a persistent queue (relative paths under `service.data_dir`): batches
    /// are written to segment files there and survive restarts and kill -9. Without it the
    /// queue is in memory.
    pub storage: Option<std::path::PathBuf>,
    /// With `storage`: the most disk the queue uses (default `1GiB`); full means the same
    /// back-pressure as a full memory queue.
    pub max_size: ByteSize,
    /// With `storage`: when records are synced: `always`, `interval` (default) or `never`.
    pub fsync: FsyncPolicy,
    /// With `fsync: interval`: how often (default `1s`).
    pub fsync_interval: HumanDuration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: 10_000,
            sizer: Sizer::Items,
            block_on_overflow: true,
            storage: None,
            max_size: ByteSize(1 << 30),
            fsync: FsyncPolicy::Interval,
            fsync_interval: HumanDuration::from_secs(1),
        }
    }
}

impl QueueConfig {
    /// Checks the values; `path` is where this section sits in the component's config.
    pub fn validate(&self, path: &str) -> Result<(), FieldError> {
        if !self.enabled {
            return Ok(());
        }
        if self.num_consumers == 0 {
            return Err(FieldError::new(
                join(path, "num_consumers"),
                "must be at least 1",
            ));
        }
        if self.queue_size == 0 {
            return Err(FieldError::new(
                join(path, "queue_size"),
                "must be at least 1",
            ));
        }
        if self.storage.is_some() && self.max_size.get() == 0 {
            return Err(FieldError::new(
                join(path, "max_size"),
                "must be more than 0",
            ));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval.get().is_zero() {
            return Err(FieldError::new(
                join(path, "fsync_interval"),
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

/// The exporter-helper part of a network exporter's config, gathered for
/// [`QueuedExporter::new`](super::QueuedExporter::new).
#[derive(Debug, Clone, PartialEq)]
pub struct ExporterSettings {
    /// Per-attempt timeout (`timeout`); zero means none.
    pub timeout: HumanDuration,
    /// `retry_on_failure`.
    pub retry_on_failure: RetryConfig,
    /// `sending_queue`.
    pub sending_queue: QueueConfig,
}

impl Default for ExporterSettings {
    fn default() -> Self {
        ExporterSettings {
            timeout: default_timeout(),
            retry_on_failure: RetryConfig::default(),
            sending_queue: QueueConfig::default(),
        }
    }
}

impl ExporterSettings {
    /// Checks every section, reporting paths as the config spells them.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.retry_on_failure.validate("retry_on_failure")?;
        self.sending_queue.validate("sending_queue")
    }
}

/// `compression`: how request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (the default, as in the OpenTelemetry Collector).
    #[default]
    Gzip,
    /// No compression.
    None,
}

impl Compression {
    /// The `Content-Encoding` / `grpc-encoding` value, if any.
    pub fn encoding_name(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::None => None,
        }
    }

    /// Compresses `data` (returns it unchanged for [`Compression::None`]).
    pub fn compress(self, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data),
            Compression::Gzip => {
                let mut enc =
                    GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), GzLevel::fast());
                enc.write_all(&data)?;
                enc.finish()
            }
        }
    }
}

impl Compression {
    /// A request body compressed for sending; a failure is a permanent error of the batch.
    pub fn compress_body(self, data: Vec<u8>) -> Result<bytes::Bytes, super::SendError> {
        self.compress(data)
            .map(bytes::Bytes::from)
            .map_err(|e| super::SendError::permanent(format!("compressing the request: {e}")))
    }
}

/// `headers`: extra request headers (HTTP headers or gRPC metadata), name to value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, String>);

impl Headers {
    /// Checks every name and value is a valid header; `path` is where the map sits.
    pub fn validate(&self, path: &str) -> Result<(), FieldError> {
        self.to_header_map(path).map(|_| ())
    }

    /// The headers as an [`http::HeaderMap`] (names lower-cased); `path` is used in errors.
    pub fn to_header_map(&self, path: &str) -> Result<HeaderMap, FieldError> {
        let mut map = HeaderMap::with_capacity(self.0.len());
        for (name, value) in &self.0 {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| FieldError::new(join(path, name), "is not a valid header name"))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                FieldError::new(
                    join(path, name),
                    "is not a valid header value (printable ASCII only)",
                )
            })?;
            map.insert(header, value);
        }
        Ok(map)
    }
}

/// Parses an exporter endpoint: `http://host:port[/path]` or `https://...`; with
/// `bare_host_port`, also `host:port`, which means plaintext `http://host:port` (the
/// OpenTelemetry Collector's gRPC form). `field` names the key in errors.
pub fn parse_endpoint(text: &str, field: &str, bare_host_port: bool) -> Result<Uri, FieldError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    let full = if !text.contains("://") && bare_host_port {
        format!("http://{text}")
    } else {
        text.to_string()
    };
    // Messages show the URL without query string and user info, where credentials travel.
    let shown = super::redact_url(text);
    let uri: Uri = full
        .parse()
        .map_err(|e| FieldError::new(field, format!("{shown:?} is not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(FieldError::new(
                field,
                format!("{shown:?}: scheme {other:?} is not supported; use http:// or https://"),
            ));
        }
        None => {
            return Err(FieldError::new(
                field,
                format!("{shown:?} has no scheme; write http://{shown} or https://{shown}"),
            ));
        }
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() => {}
        _ => return Err(FieldError::new(field, format!("{shown:?} has no host"))),
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(FieldError::new(
            field,
            "credentials in the URL are not supported; use headers",
        ));
    }
    Ok(uri)
}
