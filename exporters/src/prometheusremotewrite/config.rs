//! The `prometheusremotewrite` exporter's config, with the OpenTelemetry Collector's key
//! names where it has them.

use std::collections::BTreeMap;

use http::Uri;
use pipeline_core::config::{ByteSize, HumanDuration};
use pipeline_core::{ComponentConfig, FieldError};
use serde::{Deserialize, Serialize};

use crate::helper::prometheus::{
    ResourceToTelemetry, TranslationConfig, config_labels, validate_config_labels,
};
use crate::helper::{
    ExporterSettings, FsyncPolicy, Headers, QueueConfig, RetryConfig, Sizer, TlsConfig,
    default_timeout, parse_endpoint,
};

/// `sending_queue` of this exporter: like the other exporters' but without `num_consumers`,
/// since batches leave one after the other to keep every series in timestamp order;
/// `num_shards` sends the series of one batch in parallel instead.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteQueueConfig {
    /// Whether to queue at all (default `true`).
    pub enabled: bool,
    /// Capacity in `sizer`'s unit (default `10000`).
    pub queue_size: usize,
    /// What `queue_size` counts: `items` (data points, the default) or `bytes`.
    pub sizer: Sizer,
    /// When full: wait (default `true`) or refuse at once.
    pub block_on_overflow: bool,
    /// A directory for a persistent queue, as the other exporters' `sending_queue.storage`:
    /// batches survive restarts and kill -9, and leave in the order they were written.
    pub storage: Option<std::path::PathBuf>,
    /// With `storage`: the most disk the queue uses (default `1GiB`).
    pub max_size: ByteSize,
    /// With `storage`: `always`, `interval` (default) or `never`.
    pub fsync: FsyncPolicy,
    /// With `fsync: interval`: how often (default `1s`).
    pub fsync_interval: HumanDuration,
}

impl Default for RemoteWriteQueueConfig {
    fn default() -> Self {
        let q = QueueConfig::default();
        RemoteWriteQueueConfig {
            enabled: q.enabled,
            queue_size: q.queue_size,
            sizer: q.sizer,
            block_on_overflow: q.block_on_overflow,
            storage: q.storage,
            max_size: q.max_size,
            fsync: q.fsync,
            fsync_interval: q.fsync_interval,
        }
    }
}

/// `target_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInfo {
    /// Send a `target_info` series per resource (default `true`).
    pub enabled: bool,
}

impl Default for TargetInfo {
    fn default() -> Self {
        TargetInfo { enabled: true }
    }
}

/// Config of the `prometheusremotewrite` exporter.
///
/// ```yaml
/// exporters:
///   prometheusremotewrite:
///     endpoint: http://prometheus:9090/api/v1/write
///     external_labels: { cluster: eu-1 }
///     num_shards: 4
///     retry_on_failure: { max_elapsed_time: 10m }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The remote-write URL (required).
    pub endpoint: String,
    /// Headers added to every request.
    #[serde(default)]
    pub headers: Headers,
    /// Trust settings for `https://`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Prefix of every metric name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels on every series (a series' own label of the same name wins).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Unit suffixes and `_total` (default `true`).
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// Copy resource attributes onto every series.
    #[serde(default)]
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// The `target_info` series.
    #[serde(default)]
    pub target_info: TargetInfo,
    /// Parallel requests per batch, each holding the series whose label hash falls in it
    /// (default `4`).
    #[serde(default = "default_shards")]
    pub num_shards: usize,
    /// Largest uncompressed request body (default 3,000,000 bytes); a shard's series are
    /// split over as many requests as needed, sent in order.
    #[serde(default = "default_max_batch")]
    pub max_batch_size_bytes: usize,
    /// Per-request timeout (default `5s`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Retries of 5xx, 429 and connection failures.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The queue in front of the sender.
    #[serde(default)]
    pub sending_queue: RemoteWriteQueueConfig,
}

fn yes() -> bool {
    true
}

fn default_shards() -> usize {
    4
}

fn default_max_batch() -> usize {
    3_000_000
}

impl ComponentConfig for RemoteWriteConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "endpoint": "http://localhost:9090/api/v1/write" })
    }

    /// Checks everything that can be checked without the network.
    fn validate(&self) -> Result<(), FieldError> {
        self.url()?;
        self.headers.validate("headers")?;
        self.tls.validate("tls")?;
        validate_config_labels("external_labels", &self.external_labels)?;
        if self.num_shards == 0 {
            return Err(FieldError::new("num_shards", "must be at least 1"));
        }
        if self.max_batch_size_bytes < 1024 {
            return Err(FieldError::new(
                "max_batch_size_bytes",
                "must be at least 1024",
            ));
        }
        self.settings().validate()
    }
}

impl RemoteWriteConfig {
    /// The parsed endpoint.
    pub fn url(&self) -> Result<Uri, FieldError> {
        parse_endpoint(&self.endpoint, "endpoint", false)
    }

    /// The translation settings.
    pub fn translation(&self) -> TranslationConfig {
        TranslationConfig {
            namespace: self.namespace.clone(),
            add_metric_suffixes: self.add_metric_suffixes,
            resource_to_telemetry_conversion: self.resource_to_telemetry_conversion.enabled,
            const_labels: config_labels(&self.external_labels),
        }
    }

    /// The exporter-helper sections: one queue worker, so batches leave in order.
    pub fn settings(&self) -> ExporterSettings {
        ExporterSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: QueueConfig {
                enabled: self.sending_queue.enabled,
                num_consumers: 1,
                queue_size: self.sending_queue.queue_size,
                sizer: self.sending_queue.sizer,
                block_on_overflow: self.sending_queue.block_on_overflow,
                storage: self.sending_queue.storage.clone(),
                max_size: self.sending_queue.max_size,
                fsync: self.sending_queue.fsync,
                fsync_interval: self.sending_queue.fsync_interval,
            },
        }
    }
}
