//! The `otlphttp` exporter's config.

use http::Uri;
use pipeline_core::ComponentConfig;
use pipeline_core::config::HumanDuration;
use pipeline_core::{FieldError, PerSignal, Signal};
use serde::{Deserialize, Serialize};

use crate::helper::{
    Compression, ExporterSettings, Headers, QueueConfig, RetryConfig, TlsConfig, default_timeout,
    parse_endpoint, redact_url,
};

/// `encoding`: the body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Binary protobuf, `application/x-protobuf` (the default).
    #[default]
    Proto,
    /// OTLP/JSON, `application/json`.
    Json,
}

impl Encoding {
    /// The `Content-Type` of request bodies.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Config of the `otlphttp` exporter.
///
/// ```yaml
/// exporters:
///   otlphttp:
///     endpoint: https://otlp.example:4318      # POSTs to /v1/traces, /v1/metrics, /v1/logs
///     logs_endpoint: https://logs.example/otlp/v1/logs   # used as is
///     encoding: proto            # or json
///     headers: { authorization: "Bearer ${env:TOKEN}" }
///     compression: gzip          # or none
///     timeout: 5s
///     retry_on_failure: { enabled: true }
///     sending_queue: { enabled: true, queue_size: 10000 }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    /// Base URL; each signal is sent to it with `/v1/traces`, `/v1/metrics` or `/v1/logs`
    /// appended, unless that signal has its own endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Full URL for traces, used as is.
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// Full URL for metrics, used as is.
    #[serde(default)]
    pub metrics_endpoint: Option<String>,
    /// Full URL for logs, used as is.
    #[serde(default)]
    pub logs_endpoint: Option<String>,
    /// Body format (default `proto`).
    #[serde(default)]
    pub encoding: Encoding,
    /// HTTP headers added to every request.
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

impl ComponentConfig for OtlpHttpConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "endpoint": "http://localhost:4318" })
    }

    /// Checks everything that can be checked without touching the network or disk.
    fn validate(&self) -> Result<(), FieldError> {
        let urls = self.signal_urls()?;
        if urls.iter().all(|(_, u)| u.is_none()) {
            return Err(FieldError::new(
                "endpoint",
                "required (or traces_endpoint / metrics_endpoint / logs_endpoint)",
            ));
        }
        self.headers.validate("headers")?;
        self.tls.validate("tls")?;
        self.settings().validate()
    }
}

impl OtlpHttpConfig {
    /// The URL each signal is posted to; `None` for a signal with neither its own endpoint
    /// nor a base `endpoint`.
    pub fn signal_urls(&self) -> Result<PerSignal<Option<Uri>>, FieldError> {
        let base = self
            .endpoint
            .as_deref()
            .map(|e| parse_endpoint(e, "endpoint", false))
            .transpose()?;
        let mut urls = PerSignal::from_fn(|_| None);
        for signal in Signal::ALL {
            let (key, own) = match signal {
                Signal::Traces => ("traces_endpoint", &self.traces_endpoint),
                Signal::Metrics => ("metrics_endpoint", &self.metrics_endpoint),
                Signal::Logs => ("logs_endpoint", &self.logs_endpoint),
            };
            *urls.get_mut(signal) = match (own, &base) {
                (Some(own), _) => Some(parse_endpoint(own, key, false)?),
                (None, Some(base)) => Some(append_signal_path(base, signal)?),
                (None, None) => None,
            };
        }
        Ok(urls)
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

/// `base` + `/v1/<signal>`, keeping a base path (`http://h/otlp` -> `http://h/otlp/v1/logs`).
fn append_signal_path(base: &Uri, signal: Signal) -> Result<Uri, FieldError> {
    let text = base.to_string();
    let (head, query) = match text.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (text.as_str(), None),
    };
    let mut url = format!("{}/v1/{}", head.trim_end_matches('/'), signal.as_str());
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url.parse()
        .map_err(|e| FieldError::new("endpoint", format!("{:?}: {e}", redact_url(&url))))
}
