//! The `otlphttp` exporter: OTLP over HTTP, protobuf or JSON.
//!
//! Batches come from every pipeline that names the exporter; they wait in the
//! `sending_queue` and the queue workers `POST` each as one export request to
//! `<endpoint>/v1/traces`, `/v1/metrics` or `/v1/logs` (or the signal's own
//! `*_endpoint`), encoded as `application/x-protobuf` or OTLP/JSON and gzip-compressed by
//! default. `http://` uses plain TCP, `https://` rustls with the ring provider. HTTP answers
//! decide between retrying and dropping as in the OpenTelemetry Collector: 429, 502, 503 and
//! 504 are retried (after `Retry-After` seconds when given), 400 and other statuses are not,
//! and 401, 403 or 404 also mark the exporter permanently unhealthy. A `partial_success` in
//! a 2xx body counts the rejected items as dropped.

mod client;
mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{
    BuildError, CreateContext, ExporterFactory, FieldError, Signal, parse_checked,
};
use serde_json::Value;

pub(crate) use client::HttpSender;
pub use config::{Encoding, OtlpHttpConfig};

use crate::helper::QueuedExporter;

/// Builds `otlphttp` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

fn parse(config: &Value) -> Result<OtlpHttpConfig, FieldError> {
    parse_checked(config, OtlpHttpConfig::validate)
}

impl ExporterFactory for Factory {
    fn type_name(&self) -> &'static str {
        "otlphttp"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn default_config(&self) -> Value {
        serde_json::json!({ "endpoint": "http://localhost:4318" })
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
        let sender = client::HttpSender::new(&config)?;
        Ok(Arc::new(QueuedExporter::new(
            &ctx,
            config.settings(),
            sender,
        )))
    }
}
