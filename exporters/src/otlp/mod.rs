//! The `otlp` exporter: OTLP over gRPC.
//!
//! Batches come from every pipeline that names the exporter; they wait in the
//! `sending_queue` and are sent by the queue workers as `Export` calls of the OTLP
//! `TraceService`, `MetricsService` or `LogsService` to `endpoint`, with the configured
//! metadata and gzip compression. The channel connects lazily and reconnects by itself, so
//! the exporter starts while the backend is down. gRPC status codes decide between retrying
//! and dropping as in the OpenTelemetry Collector: `UNAVAILABLE`, `DEADLINE_EXCEEDED` and
//! friends are retried, `INVALID_ARGUMENT` and the like are not, and `UNAUTHENTICATED`,
//! `PERMISSION_DENIED` or `UNIMPLEMENTED` also mark the exporter permanently unhealthy. A
//! `google.rpc.RetryInfo` detail sets the retry delay; a `partial_success` in the response
//! counts the rejected items as dropped.

mod config;
mod grpc;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub use config::OtlpConfig;
pub(crate) use grpc::GrpcSender;

use crate::helper::QueuedExporter;

/// Builds `otlp` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = OtlpConfig;
    const TYPE_NAME: &'static str = "otlp";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: OtlpConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let sender = grpc::GrpcSender::new(&config)?;
        Ok(Arc::new(QueuedExporter::new(
            &ctx,
            config.settings(),
            sender,
        )))
    }
}
