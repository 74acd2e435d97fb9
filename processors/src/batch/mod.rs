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
use pipeline_core::{BuildError, CreateContext, ProcessorFactory, Signal};

pub use config::BatchConfig;
pub use processor::BatchProcessor;

/// Builds `batch` processors.
pub struct Factory;

impl ProcessorFactory for Factory {
    type Config = BatchConfig;
    const TYPE_NAME: &'static str = "batch";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: BatchConfig,
        signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(BatchProcessor::new(
            config,
            signal,
            next,
            ctx.telemetry,
        )))
    }
}
