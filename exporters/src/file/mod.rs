//! The `file` exporter: OTLP/JSON lines appended to a file.
//!
//! Batches come from every pipeline that names the exporter; each becomes one line holding
//! its export request (`{"resourceSpans":[...]}`, `{"resourceMetrics":[...]}` or
//! `{"resourceLogs":[...]}`), the layout the OpenTelemetry Collector's file exporter writes
//! and its `otlpjsonfile` receiver reads. Lines collect in a buffer that is written to `path`
//! every `flush_interval`, whenever 256 KiB are waiting, and at shutdown; items count as
//! sent once written. A batch's acknowledgement tokens wait in the buffer with its line and
//! resolve as delivered only after the write returned (`write(2)` done: the page cache
//! outlives a kill -9; no fsync), or as dropped when it failed (`write_failed`) or shutdown
//! gave up on it (`shutdown_timeout`), so a `filelog` checkpoint never passes a line that is
//! not in the file. The file and its parent directories are created at start, where a path
//! that cannot be opened is a start error.

mod config;
#[cfg(test)]
mod tests;
mod writer;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{
    BuildError, CreateContext, ExporterFactory, FieldError, Signal, parse_checked,
};
use serde_json::Value;

pub use config::FileConfig;

/// Builds `file` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

fn parse(config: &Value) -> Result<FileConfig, FieldError> {
    parse_checked(config, FileConfig::validate)
}

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    /// `path` is required; the default names a file in the working directory.
    fn default_config(&self) -> Value {
        serde_json::json!({ "path": "sightline-export.jsonl" })
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
        Ok(Arc::new(writer::FileExporter::new(
            ctx.id.to_string(),
            &config,
            ctx.telemetry,
        )))
    }
}
