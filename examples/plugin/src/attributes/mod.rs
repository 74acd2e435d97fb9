//! # `attributes` processor
//!
//! Sits in a pipeline of any signal and edits the attributes of every record passing through
//! (each span, log record and metric data point; resource and scope attributes stay as they
//! are), applying its `actions` in order, as the OpenTelemetry Collector's `attributes`
//! processor does:
//!
//! ```yaml
//! processors:
//!   attributes:
//!     actions:
//!       - { key: deployment.environment, value: prod, action: insert }
//!       - { key: region, value: "${env:REGION}", action: upsert }
//!       - { key: user.id, action: hash }
//!       - { key: http.request.header.cookie, action: delete }
//! ```
//!
//! Then passes the batch on to `next`. It declares `Capabilities::MUTATES_DATA`
//! (`pipeline_core::Capabilities`), so the graph hands it a batch of its own.
//!
//! Files: `config.rs` (keys and checks), `processor.rs` (the actions), `tests.rs`.

mod config;
mod processor;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::consumer::SharedConsumer;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ProcessorFactory, Signal};

pub use config::{Action, ActionConfig, AttributesConfig};
pub use processor::AttributesProcessor;

/// Builds `attributes` processors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ProcessorFactory for Factory {
    type Config = AttributesConfig;
    const TYPE_NAME: &'static str = "attributes";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        _ctx: CreateContext,
        config: AttributesConfig,
        _signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(AttributesProcessor::new(&config, next)?))
    }
}
