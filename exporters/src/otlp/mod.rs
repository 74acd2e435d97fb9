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
use pipeline_core::{
    BuildError, CreateContext, ExporterFactory, FieldError, Signal, parse_checked,
};
use serde_json::Value;

pub use config::OtlpConfig;
pub(crate) use grpc::GrpcSender;

use crate::helper::QueuedExporter;

/// Builds `otlp` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

fn parse(config: &Value) -> Result<OtlpConfig, FieldError> {
    parse_checked(config, OtlpConfig::validate)
}

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn default_config(&self) -> Value {
        serde_json::json!({ "endpoint": "localhost:4317" })
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
        let sender = grpc::GrpcSender::new(&config)?;
        Ok(Arc::new(QueuedExporter::new(
            &ctx,
            config.settings(),
            sender,
        )))
    }
}
