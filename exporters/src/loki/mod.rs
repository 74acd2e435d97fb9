//! The `loki` exporter: logs to Loki's push API.
//!
//! Batches of log records come from the logs pipelines that name the exporter; they wait in
//! the `sending_queue`, and the queue workers turn each into Loki streams and `POST` them to
//! `endpoint` (`/loki/api/v1/push`): as a snappy-compressed `logproto.PushRequest`
//! (`encoding: protobuf`, the default) or Loki's JSON push format.
//!
//! * **Labels.** A record's stream is chosen by a small set of labels: the attributes in
//!   `label_attributes` (the record's own, else its resource's; by default `service.name` as
//!   `service_name` and the severity as `level`) plus the static `labels`. Names are
//!   sanitised to Loki's rule (`[a-zA-Z_][a-zA-Z0-9_]*`); keys known to take a value per
//!   request (`trace_id`, `request_id`, `user_id`, ...) get a warning at start, as each value
//!   makes a stream.
//! * **Structured metadata and the line.** Everything else (the other attributes of the
//!   record and resource, `trace_id`, `span_id`) goes to the entry's structured metadata
//!   unless `structured_metadata: false`; `line_format` makes the line the body, or a JSON or
//!   logfmt rendering of body, severity, IDs and attributes.
//! * **Order and size.** Entries are grouped per stream and sorted by timestamp within each
//!   request; a batch larger than `max_request_bytes` is split into several requests, sent
//!   in order. A retry resumes after the requests Loki already answered, and the batch is
//!   acknowledged as delivered only when Loki took every part.
//! * **Answers.** 429 and 5xx are retried with backoff, honouring `Retry-After`. Other 4xx
//!   (out of order, too old, line too long, bad labels) are not retried: the refused entries
//!   (Loki's `total ignored` count, else the whole request) are counted as dropped with
//!   reason `rejected` and Loki's message is logged, and the next requests go on. 401, 403
//!   and 404 also mark the exporter permanently unhealthy.

mod config;
mod encode;
pub mod proto;
mod push;
pub mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub use config::{
    HIGH_CARDINALITY_KEYS, LineFormat, LokiConfig, LokiEncoding, PUSH_PATH, SEVERITY_KEY,
    default_label_attributes, sanitize_label_name,
};

use crate::helper::{QueuedExporter, SendError};

/// The request bodies the exporter would `POST` for `batch` under `config`, compressed as
/// sent (for benchmarks and tools; the exporter itself builds them per attempt).
pub fn encode_requests(
    config: &LokiConfig,
    batch: &pipeline_core::Batch,
) -> Result<Vec<bytes::Bytes>, SendError> {
    let sender = push::LokiSender::new(config).map_err(|e| SendError::permanent(e.to_string()))?;
    let now = crate::helper::SendProgress::starting_now().first_attempt_unix_nanos;
    sender
        .parts(batch, now)?
        .into_iter()
        .map(|part| sender.compress(part))
        .collect()
}

/// Builds `loki` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = LokiConfig;
    const TYPE_NAME: &'static str = "loki";
    const SIGNALS: &'static [Signal] = &[Signal::Logs];

    fn build(
        &self,
        ctx: CreateContext,
        config: LokiConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        for key in config.high_cardinality_labels() {
            tracing::warn!(
                exporter = %ctx.id, attribute = %key,
                "label_attributes.{key} is usually unique per request: every value makes a \
                 Loki stream; keep it in structured metadata instead"
            );
        }
        let sender = push::LokiSender::new(&config)?;
        Ok(Arc::new(QueuedExporter::new(
            &ctx,
            config.settings(),
            sender,
        )))
    }
}
