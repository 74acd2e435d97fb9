//! The `jaeger` exporter: traces to Jaeger.
//!
//! Batches of spans come from the traces pipelines that name the exporter; they wait in the
//! `sending_queue` and the queue workers send them to `endpoint` per `protocol`:
//!
//! * `otlp_grpc` (default): OTLP over gRPC, which Jaeger 1.35 and later take on 4317, with
//!   the `otlp` exporter's sender;
//! * `otlp_http`: OTLP over HTTP to `<endpoint>/v1/traces` (4318), with the `otlphttp`
//!   exporter's sender;
//! * `grpc`: Jaeger's own `jaeger.api_v2.CollectorService/PostSpans` (14250) for older
//!   deployments, with the spans translated to Jaeger's model as the OpenTelemetry
//!   Collector did: each resource becomes a process (`service.name` as its service name,
//!   the other attributes as tags); the parent becomes a `CHILD_OF` reference and links
//!   `FOLLOWS_FROM`; kind, status and scope become the `span.kind`, `otel.status_code`,
//!   `otel.status_description`, `error` and `otel.scope.name`/`version` tags; events become
//!   logs with an `event` field; attribute types are kept (arrays and maps as JSON).
//!
//! Queue, retries, timeout, health and counting are the shared exporter helper's.

mod config;
mod grpc;
pub mod model;
pub mod testing;
#[cfg(test)]
mod tests;
mod translate;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub use config::{JaegerConfig, JaegerProtocol};
pub use translate::NO_SERVICE_NAME;

use crate::helper::QueuedExporter;

/// Builds `jaeger` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = JaegerConfig;
    const TYPE_NAME: &'static str = "jaeger";
    const SIGNALS: &'static [Signal] = &[Signal::Traces];

    fn build(
        &self,
        ctx: CreateContext,
        config: JaegerConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let settings = config.settings();
        Ok(match config.protocol {
            JaegerProtocol::OtlpGrpc => Arc::new(QueuedExporter::new(
                &ctx,
                settings,
                crate::otlp::GrpcSender::new(&config.as_otlp())?,
            )),
            JaegerProtocol::OtlpHttp => Arc::new(QueuedExporter::new(
                &ctx,
                settings,
                crate::otlphttp::HttpSender::new(&config.as_otlphttp())?,
            )),
            JaegerProtocol::Grpc => Arc::new(QueuedExporter::new(
                &ctx,
                settings,
                grpc::PostSpansSender::new(&config)?,
            )),
        })
    }
}
