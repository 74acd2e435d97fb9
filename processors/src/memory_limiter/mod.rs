//! # `memory_limiter` processor
//!
//! Keeps Sightline's resident memory under a limit by refusing data before it comes in,
//! the way the OpenTelemetry Collector's memory limiter does. Put it first in every
//! pipeline. Data comes from the receivers (or earlier processors) and goes on unchanged to
//! `next`; when the process's resident memory is above the soft limit (`limit` minus
//! `spike_limit`) a batch is refused with a retryable error instead, so the `otlp` receiver
//! answers gRPC `UNAVAILABLE` / HTTP 503 with a retry delay (clients keep the data) and the
//! `filelog` receiver pauses and reads the same lines again later. Below the soft limit,
//! data flows again.
//!
//! Files: `config.rs` (keys and limits), `processor.rs` (the check and the gate), `tests.rs`.

mod config;
mod processor;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::consumer::SharedConsumer;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ProcessorFactory, Signal};

pub use config::MemoryLimiterConfig;
pub use processor::MemoryLimiter;

/// Builds `memory_limiter` processors.
pub struct Factory;

impl ProcessorFactory for Factory {
    type Config = MemoryLimiterConfig;
    const TYPE_NAME: &'static str = "memory_limiter";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: MemoryLimiterConfig,
        _signal: Signal,
        next: SharedConsumer,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let limits = config.limits(config::total_memory_bytes())?;
        Ok(Arc::new(MemoryLimiter::new(
            limits,
            Arc::new(processor::resident_bytes),
            next,
            ctx.telemetry,
        )))
    }
}
