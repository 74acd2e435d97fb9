//! The `jaeger` exporter's config.

use http::Uri;
use pipeline_core::config::HumanDuration;
use pipeline_core::{ComponentConfig, FieldError};
use serde::{Deserialize, Serialize};

use crate::helper::{
    Compression, ExporterSettings, Headers, QueueConfig, RetryConfig, TlsConfig, default_timeout,
};
use crate::otlp::OtlpConfig;
use crate::otlphttp::{Encoding, OtlpHttpConfig};

/// `protocol`: how spans reach Jaeger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JaegerProtocol {
    /// OTLP over gRPC (Jaeger 1.35 and later, port 4317); the default.
    #[default]
    OtlpGrpc,
    /// OTLP over HTTP (port 4318; `/v1/traces` is appended to the endpoint).
    OtlpHttp,
    /// Jaeger's own `jaeger.api_v2.CollectorService/PostSpans` (port 14250), for
    /// deployments older than OTLP support.
    Grpc,
}

/// Config of the `jaeger` exporter.
///
/// ```yaml
/// exporters:
///   jaeger:
///     protocol: otlp_grpc        # otlp_http, or grpc for Jaeger's api_v2 on 14250
///     endpoint: jaeger-collector:4317
///     headers: { x-tenant: a }
///     compression: gzip
///     tls: { ca_file: /etc/ssl/internal-ca.pem }
///     timeout: 5s
///     retry_on_failure: { enabled: true }
///     sending_queue: { enabled: true, queue_size: 10000 }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JaegerConfig {
    /// The protocol (default `otlp_grpc`).
    #[serde(default)]
    pub protocol: JaegerProtocol,
    /// Where Jaeger listens: `host:port` or `http(s)://host:port` for the gRPC protocols,
    /// a base URL for `otlp_http`. Required.
    pub endpoint: String,
    /// Headers (HTTP) or metadata (gRPC) added to every request.
    #[serde(default)]
    pub headers: Headers,
    /// Request compression (default `gzip` for the OTLP protocols, `none` for `grpc`:
    /// Jaeger collectors before 1.26 cannot read gzip on 14250).
    #[serde(default)]
    pub compression: Option<Compression>,
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

impl ComponentConfig for JaegerConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "endpoint": "localhost:4317" })
    }

    /// Checks everything that can be checked without touching the network or disk.
    fn validate(&self) -> Result<(), FieldError> {
        match self.protocol {
            JaegerProtocol::OtlpGrpc | JaegerProtocol::Grpc => self.as_otlp().validate(),
            JaegerProtocol::OtlpHttp => self.as_otlphttp().validate(),
        }
    }
}

impl JaegerConfig {
    /// The compression in effect (see `compression`).
    pub fn compression(&self) -> Compression {
        self.compression.unwrap_or(match self.protocol {
            JaegerProtocol::Grpc => Compression::None,
            JaegerProtocol::OtlpGrpc | JaegerProtocol::OtlpHttp => Compression::Gzip,
        })
    }

    /// The gRPC endpoint (`otlp_grpc`, `grpc`).
    pub fn grpc_uri(&self) -> Result<Uri, FieldError> {
        self.as_otlp().endpoint_uri()
    }

    /// The settings as the `otlp` exporter's, for `otlp_grpc` (and the checks of `grpc`).
    pub fn as_otlp(&self) -> OtlpConfig {
        OtlpConfig {
            endpoint: self.endpoint.clone(),
            headers: self.headers.clone(),
            compression: self.compression(),
            tls: self.tls.clone(),
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
    }

    /// The settings as the `otlphttp` exporter's, for `otlp_http`.
    pub fn as_otlphttp(&self) -> OtlpHttpConfig {
        OtlpHttpConfig {
            endpoint: Some(self.endpoint.clone()),
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            encoding: Encoding::Proto,
            headers: self.headers.clone(),
            compression: self.compression(),
            tls: self.tls.clone(),
            timeout: self.timeout,
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
        }
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
