//! The `debug` exporter: batches to stderr, for looking at what flows through a pipeline.
//!
//! Batches come from every pipeline that names the exporter and are written at once, in the
//! caller's task (no queue, no retries): with `verbosity: basic` one line per batch with its
//! signal and counts (resource groups, items), with `verbosity: detailed` that line followed
//! by the batch as one line of OTLP/JSON. Written items count as sent.

mod config;
mod exporter;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{
    BuildError, CreateContext, ExporterFactory, FieldError, Signal, parse_checked,
};
use serde_json::Value;

pub use config::{DebugConfig, Verbosity};

/// Builds `debug` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

fn parse(config: &Value) -> Result<DebugConfig, FieldError> {
    parse_checked(config, DebugConfig::validate)
}

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "debug"
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
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let config = parse(config)?;
        Ok(Arc::new(exporter::DebugExporter::new(
            ctx.id.to_string(),
            &config,
            ctx.telemetry,
            Arc::new(Mutex::new(std::io::stderr())),
        )))
    }
}
