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
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub use config::FileConfig;

/// Builds `file` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = FileConfig;
    const TYPE_NAME: &'static str = "file";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: FileConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(writer::FileExporter::new(
            ctx.id.to_string(),
            &config,
            ctx.telemetry,
        )))
    }
}
