//! # `sli` connector
//!
//! Exporter side: traces and logs pipelines. Receiver side: metrics pipelines. It derives the
//! seed guide's RED metrics from requests, so Prometheus and the SLO evaluator can read
//! service-level indicators that the applications never exported themselves:
//!
//! - **from spans** of the kinds in `span_kinds` (default SERVER and CONSUMER): service from
//!   the resource's `service.name`, method from `http.request.method` (or `http.method`),
//!   endpoint from `http.route` (else the span name, never the raw path), status code from
//!   `http.response.status_code` (or `http.status_code`), duration from start to end;
//! - **from request-completion log records** selected by `logs.match` (default: the body is
//!   `Request completed`, as the seed's Flask `after_request` logs it), with the fields
//!   found where `logs.fields` says (default `status_code`, `duration_seconds`, `method`,
//!   `path`, the path turned into a route).
//!
//! Every `flush_interval` it emits, into the metrics pipelines that receive from it,
//! `http.requests` and `http.errors` (monotonic sums) and `http.request.duration` (a
//! histogram in seconds with exemplars), optionally `http.request.duration.quantiles`, with
//! the attributes `service`, `method`, `endpoint`, `status_code` / `error_type`, so a
//! Prometheus exporter writes exactly `http_requests_total`, `http_errors_total` and
//! `http_request_duration_seconds`. Series are bounded by `max_series` per metric (an
//! overflow series takes the rest) and forgotten after `series_expiry` without data.
//!
//! Files: `config.rs` (keys), `extract.rs` (spans and log records to requests),
//! `aggregate.rs` (series, overflow, expiry, OTLP output), `quantiles.rs` (sliding-window
//! percentiles), `connector.rs` (consume, flush task, lifecycle), `tests.rs`.

mod aggregate;
mod config;
mod connector;
mod extract;
mod quantiles;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{
    BuildError, ConnectorFactory, CreateContext, Signal, SignalConsumers, connector_output,
};

pub use aggregate::{DURATION, ERRORS, OVERFLOW_ATTRIBUTE, QUANTILES, REQUESTS, SCOPE_NAME};
pub use config::{
    DEFAULT_BUCKETS, Dimension, DurationUnit, ErrorsConfig, ExemplarsConfig, FieldRef,
    HistogramConfig, LogFields, LogMatch, LogsConfig, MAX_WINDOW_SLOTS, QuantilesConfig,
    RESERVED_NAMES, SliConfig, SpanKindName, Temporality,
};
pub use connector::SliConnector;

/// Builds `sli` connectors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ConnectorFactory for Factory {
    type Config = SliConfig;
    const TYPE_NAME: &'static str = "sli";
    const SIGNAL_PAIRS: &'static [(Signal, Signal)] = &[
        (Signal::Traces, Signal::Metrics),
        (Signal::Logs, Signal::Metrics),
    ];

    fn build(
        &self,
        ctx: CreateContext,
        config: SliConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let next = connector_output(&next, Signal::Metrics, Self::TYPE_NAME)?;
        let metrics = connector::SliMetrics::new(&ctx.telemetry)
            .map_err(|e| BuildError::Other(format!("sli self-metrics: {e}")))?;
        Ok(Arc::new(SliConnector::new(
            config,
            next,
            ctx.telemetry,
            metrics,
        )))
    }
}
