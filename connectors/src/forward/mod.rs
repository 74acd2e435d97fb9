//! # `forward` connector
//!
//! Exporter side: any pipeline of a signal; receiver side: pipelines of the same signal. Data
//! passes unchanged, so one pipeline's processing can feed several others (as otelcol's
//! `forward` connector does).
//!
//! Files: `config.rs` (no keys), `connector.rs`, `tests.rs`.

mod config;
mod connector;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, ConnectorFactory, CreateContext, Signal, SignalConsumers};

pub use config::ForwardConfig;
pub use connector::ForwardConnector;

/// Builds `forward` connectors.
pub struct Factory;

impl ConnectorFactory for Factory {
    type Config = ForwardConfig;
    const TYPE_NAME: &'static str = "forward";
    const SIGNAL_PAIRS: &'static [(Signal, Signal)] = &[
        (Signal::Traces, Signal::Traces),
        (Signal::Metrics, Signal::Metrics),
        (Signal::Logs, Signal::Logs),
    ];

    fn build(
        &self,
        _ctx: CreateContext,
        _config: ForwardConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(ForwardConnector { next }))
    }
}
