//! The `prometheusremotewrite` exporter: Prometheus remote-write 1.0.
//!
//! Metrics batches come from every metrics pipeline that names the exporter. Delta sums and
//! histograms are turned into running totals first (`exporter.rs`), then the batch waits in
//! the exporter helper's queue ([`crate::helper::QueuedExporter`]: timeout, retries with
//! back-off honouring `Retry-After`, counting, health). One worker takes batches in order;
//! `encode.rs` translates each with the shared OpenTelemetry-to-Prometheus rules
//! ([`crate::helper::prometheus`]) into time series (labels sorted, samples in timestamp
//! order), spreads them over `num_shards` by label hash so no shard reorders a series, and
//! POSTs each shard's `WriteRequest`s (`proto.rs`, at most `max_batch_size_bytes` each)
//! snappy-compressed with the remote-write headers. 5xx and 429 are retried; other 4xx drop
//! the batch, counted, with the server's message logged.
//!
//! Files: `config.rs` (keys), `proto.rs` (the messages, for decoding and the benchmark's
//! baseline), `encode.rs` (series, shards, request bodies as protobuf bytes), `sender.rs`
//! (compression, parallel shards, answers), `exporter.rs` (delta totals, lifecycle),
//! `tests.rs`.

mod config;
mod encode;
mod exporter;
mod proto;
mod sender;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub use config::{RemoteWriteConfig, RemoteWriteQueueConfig, TargetInfo};
pub use encode::{RequestLayout, Requests, build_requests};
pub use exporter::{DELTA_EXPIRY, MAX_DELTA_SERIES, RemoteWriteExporter};
pub use proto::{Label, Sample, TimeSeries, WriteRequest};
pub use sender::{VERSION_HEADER, encode_request};

/// Builds `prometheusremotewrite` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = RemoteWriteConfig;
    const TYPE_NAME: &'static str = "prometheusremotewrite";
    const SIGNALS: &'static [Signal] = &[Signal::Metrics];

    fn build(
        &self,
        ctx: CreateContext,
        config: RemoteWriteConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(RemoteWriteExporter::new(&ctx, &config)?))
    }
}
