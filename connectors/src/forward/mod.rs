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
use pipeline_core::{
    BuildError, ConnectorFactory, CreateContext, FieldError, Signal, SignalConsumers, parse_config,
};
use serde_json::Value;

pub use config::ForwardConfig;
pub use connector::ForwardConnector;

/// Builds `forward` connectors.
pub struct Factory;

impl ConnectorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "forward"
    }

    fn signal_pairs(&self) -> &'static [(Signal, Signal)] {
        &[
            (Signal::Traces, Signal::Traces),
            (Signal::Metrics, Signal::Metrics),
            (Signal::Logs, Signal::Logs),
        ]
    }

    fn validate(&self, config: &Value) -> Result<(), FieldError> {
        parse_config::<ForwardConfig>(config).map(|_| ())
    }

    fn create(
        &self,
        _ctx: CreateContext,
        config: &Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        parse_config::<ForwardConfig>(config)?;
        Ok(Arc::new(ForwardConnector { next }))
    }
}
