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
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub(crate) use client::HttpSender;
pub use config::{Encoding, OtlpHttpConfig};

use crate::helper::QueuedExporter;

/// Builds `otlphttp` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = OtlpHttpConfig;
    const TYPE_NAME: &'static str = "otlphttp";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: OtlpHttpConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        let sender = client::HttpSender::new(&config)?;
        Ok(Arc::new(QueuedExporter::new(
            &ctx,
            config.settings(),
            sender,
        )))
    }
}
