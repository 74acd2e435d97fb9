//! The `otlp` exporter's config.

use http::Uri;
use pipeline_core::config::HumanDuration;
use pipeline_core::{ComponentConfig, FieldError};
use serde::{Deserialize, Serialize};

use crate::helper::{
    Compression, ExporterSettings, Headers, QueueConfig, RetryConfig, TlsConfig, default_timeout,
    parse_endpoint, redact_url,
};

/// Config of the `otlp` (gRPC) exporter.
///
/// ```yaml
/// exporters:
///   otlp:
///     endpoint: https://collector.example:4317
///     headers: { x-api-key: "${env:API_KEY}" }
///     compression: gzip          # or none
///     tls: { ca_file: /etc/ssl/internal-ca.pem }
///     timeout: 5s
///     retry_on_failure: { enabled: true, initial_interval: 5s, max_interval: 30s, max_elapsed_time: 300s }
///     sending_queue: { enabled: true, num_consumers: 10, queue_size: 10000, block_on_overflow: true }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Where to send: `http://host:port` (plaintext), `https://host:port` (TLS) or bare
    /// `host:port` (plaintext). Required.
    pub endpoint: String,
    /// gRPC metadata added to every request.
    #[serde(default)]
    pub headers: Headers,
    /// Request compression (default `gzip`).
    #[serde(default)]
    pub compression: Compression,
    /// Trust settings for `https://`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per-attempt timeout (default `5s`; `0` for none).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Retries of passing failures.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The queue in front of the senders.
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

impl ComponentConfig for OtlpConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "endpoint": "localhost:4317" })
    }

    /// Checks everything that can be checked without touching the network or disk.
    fn validate(&self) -> Result<(), FieldError> {
        self.endpoint_uri()?;
        self.headers.validate("headers")?;
        self.tls.validate("tls")?;
        self.settings().validate()
    }
}

impl OtlpConfig {
    /// The endpoint as a URI, bare `host:port` made `http://host:port`.
    pub fn endpoint_uri(&self) -> Result<Uri, FieldError> {
        let uri = parse_endpoint(&self.endpoint, "endpoint", true)?;
        if !matches!(uri.path(), "" | "/") {
            return Err(FieldError::new(
                "endpoint",
                format!(
                    "{:?}: a gRPC endpoint has no path; write scheme://host:port",
                    redact_url(&self.endpoint)
                ),
            ));
        }
        Ok(uri)
    }

    /// The exporter-helper sections.
    pub fn settings(&self) -> ExporterSettings {
        ExporterSettings {
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }
}
