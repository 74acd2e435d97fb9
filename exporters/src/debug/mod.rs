//! The `debug` exporter: batches to stderr, for looking at what flows through a pipeline.
//!
//! Batches come from every pipeline that names the exporter and are rendered in the
//! caller's task, then written in order by a writer thread of the exporter's own (no
//! retries; up to 4 MiB of text waits for it, after which `consume` waits for room): with
//! `verbosity: basic` one line per batch with its signal and counts (resource groups,
//! items), with `verbosity: detailed` that line followed by the batch as one line of
//! OTLP/JSON. Written items count as sent and their acknowledgement tokens resolve as
//! delivered; a failed write counts them as dropped (`write_failed`).

mod config;
mod exporter;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub use config::{DebugConfig, Verbosity};

/// Builds `debug` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = DebugConfig;
    const TYPE_NAME: &'static str = "debug";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: DebugConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(exporter::DebugExporter::new(
            ctx.id.to_string(),
            &config,
            ctx.telemetry,
            Box::new(std::io::stderr()),
        )?))
    }
}
