//! # `request_id` processor
//!
//! Joins logs and traces by request ID, so a log line leads to its trace and a trace to its
//! log lines. Placed in a traces pipeline and a logs pipeline under the same ID, both
//! instances share one state (through [`pipeline_core::factory::SharedState`]):
//!
//! - from spans (traces pipeline, from the receivers or earlier processors) it learns which
//!   trace and span a request ID belongs to (the SERVER span wins over its children), and
//!   gives SERVER spans without a request ID the one a log of their trace taught it, then
//!   passes the batch on to the pipeline's next processor or exporters;
//! - from log records (logs pipeline: `filelog`, OTLP) with both a request ID and trace
//!   context it learns the same; a record with a request ID and no trace context gets the
//!   trace and span IDs in its own `trace_id` / `span_id` fields, one with trace context and
//!   no request ID gets the `request_id` attribute.
//!
//! A log record whose request ID is not known yet (its span usually ends after the request's
//! logs were written) is held up to `wait`, then handed to the logs pipeline's next
//! component, enriched if the span came. Records keep their order within a resource; held
//! records are bounded (`max_pending_items`, oldest released first) and all released at
//! shutdown. Entries expire `ttl` after their last use and are bounded (`max_entries`, least
//! recently used evicted).
//!
//! Files: `config.rs` (keys), `table.rs` (the compact LRU/TTL table), `index.rs` (its
//! cache-friendly hash indexes), `correlate.rs` (what
//! a span or record teaches and gets), `pending.rs` (held records, order, release),
//! `processor.rs` (instances, shared state, background task), `tests.rs`.

mod config;
mod correlate;
mod index;
mod pending;
mod processor;
mod table;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::consumer::SharedConsumer;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ProcessorFactory, Signal};

pub use config::{DEFAULT_REQUEST_ID_ATTRIBUTES, RequestIdConfig};
pub use processor::RequestIdProcessor;

use processor::{Metrics, Shared};

/// Log records and spans enriched, by `signal`.
pub const MATCHED_METRIC: &str = "sightline_request_id_matched_total";
/// Log records with a request ID released without trace context, by `reason`.
pub const UNMATCHED_METRIC: &str = "sightline_request_id_unmatched_total";
/// Entries removed, by `reason` (`max_entries`, `ttl`).
pub const EVICTED_METRIC: &str = "sightline_request_id_evicted_total";
/// Log records held.
pub const PENDING_METRIC: &str = "sightline_request_id_pending";
/// Entries in the table.
pub const ENTRIES_METRIC: &str = "sightline_request_id_entries";

/// Builds `request_id` processors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

fn metrics(ctx: &CreateContext) -> Result<Metrics, prometheus::Error> {
    let t = &ctx.telemetry;
    let id = ctx.id.as_str();
    let matched = t.counter_family(
        MATCHED_METRIC,
        "Log records given trace context or a request ID, and spans given a request ID, by a request_id processor.",
        &["signal"],
    )?;
    let unmatched = t.counter_family(
        UNMATCHED_METRIC,
        "Log records with a request ID and no trace context that a request_id processor passed on without a match, by reason.",
        &["reason"],
    )?;
    let evicted = t.counter_family(
        EVICTED_METRIC,
        "Request IDs a request_id processor forgot, by reason (max_entries: least recently used; ttl: unused too long).",
        &["reason"],
    )?;
    let pending = t.gauge_family(
        PENDING_METRIC,
        "Log records a request_id processor holds while their request ID is unknown.",
        &[],
    )?;
    let entries = t.gauge_family(
        ENTRIES_METRIC,
        "Request IDs a request_id processor remembers.",
        &[],
    )?;
    Ok(Metrics {
        matched_logs: matched.with_label_values(&[id, "logs"]),
        matched_spans: matched.with_label_values(&[id, "traces"]),
        unmatched_wait_expired: unmatched.with_label_values(&[id, "wait_expired"]),
        unmatched_pending_full: unmatched.with_label_values(&[id, "pending_full"]),
        unmatched_shutdown: unmatched.with_label_values(&[id, "shutdown"]),
        unmatched_not_held: unmatched.with_label_values(&[id, "not_held"]),
        evicted_max_entries: evicted.with_label_values(&[id, "max_entries"]),
        evicted_ttl: evicted.with_label_values(&[id, "ttl"]),
        pending: pending.with_label_values(&[id]),
        entries: entries.with_label_values(&[id]),
    })
}

impl ProcessorFactory for Factory {
    type Config = RequestIdConfig;
    const TYPE_NAME: &'static str = "request_id";
    const SIGNALS: &'static [Signal] = &[Signal::Traces, Signal::Logs];

    fn build(
        &self,
        ctx: CreateContext,
        config: RequestIdConfig,
        signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let metrics = metrics(&ctx).map_err(|e| BuildError::Other(e.to_string()))?;
        let telemetry = ctx.telemetry.clone();
        let shared = ctx
            .shared
            .get_or_init(&ctx.id, || Shared::new(&config, metrics, telemetry));
        Ok(Arc::new(RequestIdProcessor::new(shared, signal, next)))
    }
}
