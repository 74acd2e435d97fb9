//! # `batch` processor
//!
//! Sits in a pipeline between receivers (or earlier processors) and the exporters' fan-out,
//! turning many small requests into fewer large ones: exporters then pay per-request costs
//! (compression, connections, backend writes) once per batch. Back-pressure passes through:
//! pending data is bounded, and a full downstream makes `consume` wait.
//!
//! Files: `config.rs` (keys), `processor.rs` (the state machine), `tests.rs`.

mod config;
mod processor;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::consumer::SharedConsumer;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{
    BuildError, CreateContext, FieldError, ProcessorFactory, Signal, parse_checked,
};
use serde_json::Value;

pub use config::BatchConfig;
pub use processor::BatchProcessor;

/// Builds `batch` processors.
pub struct Factory;

fn parse(config: &Value) -> Result<BatchConfig, FieldError> {
    parse_checked(config, BatchConfig::validate)
}

impl ProcessorFactory for Factory {
    fn type_name(&self) -> &'static str {
        "batch"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn validate(&self, config: &Value) -> Result<(), FieldError> {
        parse(config).map(|_| ())
    }

    fn create(
        &self,
        ctx: CreateContext,
        config: &Value,
        signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(BatchProcessor::new(
            parse(config)?,
            signal,
            next,
            ctx.telemetry,
        )))
    }
}
