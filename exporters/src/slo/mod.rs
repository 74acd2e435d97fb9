//! The `slo` exporter and connector: an SLO evaluator with error budgets, multi-window
//! burn-rate alerts, a status page, and counts kept in memory or, for gateway replicas, in
//! Redis.
//!
//! **Where data comes from:** metrics pipelines, usually fed by the `sli` connector
//! (`http.requests`, `http.errors`, `http.request.duration`), or any counters and histograms
//! the SLO selectors name. `increments.rs` turns matching points into per-SLO (total, bad)
//! event increments (cumulative points per series, see its docs), stamped with the points' own
//! times: the clock is the data's, so a month replays in seconds.
//!
//! **Where it goes:** the increments go into time buckets (`state.rs`: a minute ring over six
//! hours and an hour ring over the window) in the store (`store/`: `memory` with a snapshot
//! file, or `redis` with per-bucket keys every replica adds into). Every
//! `evaluation_interval`, `eval.rs` computes the SLI, the error budget and burn rates and runs
//! the alert rules; `page.rs` renders them at the `endpoint` as `GET /slo` (JSON) and `GET /`
//! (the status page), `figures.rs` as `GET /metrics` (`slo_*` gauges); `webhook.rs` sends
//! alerts to Alertmanager-compatible webhooks; `exporter.rs` ties it together (consume, the
//! background loop, lifecycle).
//!
//! **As a connector** ([`ConnectorFactory`], `connectors: { slo: ... }`) it is the same
//! runtime, and after every evaluation it also emits the `slo_*` gauges (`figures.rs`, the
//! names of `GET /metrics`) as OTLP into the metrics pipelines that receive from it
//! (`emit.rs`, from a task of its own), so a `prometheus` exporter there shows them on its
//! page.

pub mod config;
mod emit;
pub mod eval;
mod exporter;
mod figures;
pub mod increments;
mod page;
pub mod state;
mod store;
#[cfg(test)]
mod tests;
mod webhook;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{
    BuildError, CreateContext, ExporterFactory, Signal, SignalConsumers, connector_output,
};

pub use config::{
    AvailabilityIndicator, BudgetAlertRule, BurnRateRule, DEFAULT_ENDPOINT, Indicator,
    LatencyIndicator, Matchers, MemoryStoreConfig, RatioIndicator, RedisStoreConfig, Selector,
    SloDefinition, SloExporterConfig, StoreConfig, WebhookConfig,
};
pub use eval::{ErrorBudget, FiringAlert, SloReport};

/// Builds `slo` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = SloExporterConfig;
    const TYPE_NAME: &'static str = "slo";
    const SIGNALS: &'static [Signal] = &[Signal::Metrics];

    fn build(
        &self,
        ctx: CreateContext,
        config: SloExporterConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let exporter =
            exporter::SloExporter::new(ctx.id.to_string(), config, ctx.telemetry, ctx.health, None)
                .map_err(BuildError::Other)?;
        Ok(Arc::new(exporter))
    }
}

/// Builds `slo` connectors: the same evaluator as the exporter (every key, the endpoint,
/// webhooks and stores alike), used as the exporter of metrics pipelines carrying the RED
/// metrics and as the receiver of metrics pipelines, into which it emits the `slo_*` gauges
/// after every evaluation (for a `prometheus` exporter's page, remote-write, OTLP...).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectorFactory;

impl pipeline_core::ConnectorFactory for ConnectorFactory {
    type Config = SloExporterConfig;
    const TYPE_NAME: &'static str = "slo";
    const SIGNAL_PAIRS: &'static [(Signal, Signal)] = &[(Signal::Metrics, Signal::Metrics)];

    fn build(
        &self,
        ctx: CreateContext,
        config: SloExporterConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let output = connector_output(&next, Signal::Metrics, Self::TYPE_NAME)?;
        let connector = exporter::SloExporter::new(
            ctx.id.to_string(),
            config,
            ctx.telemetry,
            ctx.health,
            Some(output),
        )
        .map_err(BuildError::Other)?;
        Ok(Arc::new(connector))
    }
}
