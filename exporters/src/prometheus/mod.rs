//! The `prometheus` exporter: a scrape endpoint for Prometheus.
//!
//! Metrics batches come from every metrics pipeline that names the exporter. Each is folded
//! into a series table (`store.rs`): delta sums and histograms become running totals, every
//! data point is named and labelled by the shared OpenTelemetry-to-Prometheus translation
//! ([`crate::helper::prometheus`]) and replaces its series' previous point; the batch counts
//! as delivered once folded in. Prometheus scrapes `endpoint` at `/metrics` and gets the
//! table as Prometheus text 0.0.4, or as OpenMetrics 1.0 text (with `_created`, exemplars and
//! `# EOF`) when its `Accept` header asks for `application/openmetrics-text` (`text.rs`).
//! The endpoint is served by [`pipeline_core::net::HttpServer`] and declared through
//! `listen_addresses`, so the config check catches two listeners on one port.
//!
//! Files: `config.rs` (keys), `store.rs` (series table, conflicts, bounds, expiry),
//! `text.rs` (the two formats), `exporter.rs` (consume, HTTP endpoint, lifecycle), `tests.rs`.

mod config;
mod exporter;
mod store;
#[cfg(test)]
mod tests;
mod text;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub use config::PrometheusConfig;
pub use exporter::PrometheusExporter;
pub use text::{Format, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};

/// Builds `prometheus` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = PrometheusConfig;
    const TYPE_NAME: &'static str = "prometheus";
    const SIGNALS: &'static [Signal] = &[Signal::Metrics];

    fn build(
        &self,
        ctx: CreateContext,
        config: PrometheusConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(PrometheusExporter::new(&ctx, config)))
    }
}
