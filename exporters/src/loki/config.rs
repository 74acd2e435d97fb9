//! The `loki` exporter's config.

use std::collections::BTreeMap;

use http::Uri;
use pipeline_core::config::HumanDuration;
use pipeline_core::{ComponentConfig, FieldError};
use serde::{Deserialize, Serialize};

use crate::helper::{
    Compression, ExporterSettings, Headers, QueueConfig, RetryConfig, TlsConfig, default_timeout,
    parse_endpoint,
};

/// Loki's push path, appended to an `endpoint` given without a path.
pub const PUSH_PATH: &str = "/loki/api/v1/push";

/// The pseudo attribute naming the record's severity in `label_attributes`.
pub const SEVERITY_KEY: &str = "severity";

/// `encoding`: the body of a push request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LokiEncoding {
    /// `logproto.PushRequest`, snappy block-compressed, `application/x-protobuf` (the
    /// default, as Promtail and Grafana Alloy send).
    #[default]
    Protobuf,
    /// Loki's JSON push format, `application/json` (gzip per `compression`).
    Json,
}

/// `line_format`: what the log line itself holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// The record's body: a string as it is, anything else as JSON (the default).
    #[default]
    Body,
    /// A JSON object: `body`, `severity`, `trace_id`, `span_id` and the record's
    /// attributes (for `| json` in LogQL).
    Json,
    /// The same fields as `key=value` pairs (for `| logfmt`).
    Logfmt,
}

/// Keys that make a new stream for nearly every record when used as labels.
pub const HIGH_CARDINALITY_KEYS: &[&str] = &[
    "trace_id",
    "span_id",
    "traceid",
    "spanid",
    "request_id",
    "x-request-id",
    "http.request.header.x-request-id",
    "user_id",
    "user.id",
    "enduser.id",
    "session_id",
    "session.id",
    "client.address",
    "ip_address",
    "net.peer.ip",
    "url.full",
    "http.url",
    "http.target",
    "url.path",
    "log.file.path",
    "process.pid",
    "timestamp",
    "duration",
    "duration_seconds",
];

/// The default `label_attributes`: `service.name` -> `service_name`, severity -> `level`.
pub fn default_label_attributes() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("service.name".to_string(), "service_name".to_string()),
        (SEVERITY_KEY.to_string(), "level".to_string()),
    ])
}

fn default_max_request_bytes() -> usize {
    4 * 1024 * 1024
}

fn yes() -> bool {
    true
}

/// Config of the `loki` exporter.
///
/// ```yaml
/// exporters:
///   loki:
///     endpoint: http://loki:3100/loki/api/v1/push
///     encoding: protobuf          # or json
///     tenant_id: team-a           # X-Scope-OrgID
///     label_attributes: { service.name: service_name, severity: level, k8s.namespace.name: namespace }
///     labels: { env: prod }       # static labels on every stream
///     line_format: body           # or json, logfmt
///     structured_metadata: true   # false for Loki 2.x without structured metadata
///     max_request_bytes: 4194304
///     timeout: 5s
///     retry_on_failure: { enabled: true }
///     sending_queue: { enabled: true, queue_size: 10000 }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// The push URL; `/loki/api/v1/push` is appended when it has no path. Required.
    pub endpoint: String,
    /// Body format (default `protobuf`).
    #[serde(default)]
    pub encoding: LokiEncoding,
    /// The tenant, sent as `X-Scope-OrgID` (multi-tenant Loki).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Attributes that become stream labels: attribute key (of the record, else its
    /// resource; `severity` is the record's severity) to label name. Replaces the default
    /// `{service.name: service_name, severity: level}` when given.
    #[serde(default = "default_label_attributes")]
    pub label_attributes: BTreeMap<String, String>,
    /// Static labels added to every stream.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What the log line holds (default `body`).
    #[serde(default)]
    pub line_format: LineFormat,
    /// Whether to send everything that is not a label as structured metadata (default
    /// `true`; Loki 3, or 2.9+ with `allow_structured_metadata`).
    #[serde(default = "yes")]
    pub structured_metadata: bool,
    /// The largest push request body before compression; larger batches are split into
    /// several requests (default 4 MiB).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// HTTP headers added to every request.
    #[serde(default)]
    pub headers: Headers,
    /// Compression of `json` bodies (default `gzip`); `protobuf` bodies are always snappy.
    #[serde(default)]
    pub compression: Compression,
    /// Trust settings for `https://`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per-attempt timeout (default `5s`; `0` for none). One attempt may be several
    /// requests when the batch is split.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Retries of passing failures (429, 5xx, connection errors).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// The queue in front of the senders.
    #[serde(default)]
    pub sending_queue: QueueConfig,
}

impl ComponentConfig for LokiConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "endpoint": "http://localhost:3100/loki/api/v1/push" })
    }

    /// Checks everything that can be checked without touching the network or disk.
    fn validate(&self) -> Result<(), FieldError> {
        self.push_url()?;
        if let Some(tenant) = &self.tenant_id
            && (tenant.trim().is_empty() || http::HeaderValue::from_str(tenant).is_err())
        {
            return Err(FieldError::new(
                "tenant_id",
                "must be non-empty printable ASCII (it is sent as X-Scope-OrgID)",
            ));
        }
        for (key, label) in &self.label_attributes {
            if key.is_empty() {
                return Err(FieldError::new(
                    "label_attributes",
                    "an attribute key is empty",
                ));
            }
            check_label_name(label, &format!("label_attributes.{key}"))?;
        }
        for name in self.labels.keys() {
            check_label_name(name, &format!("labels.{name}"))?;
        }
        if self.max_request_bytes < 1024 {
            return Err(FieldError::new(
                "max_request_bytes",
                format!("must be at least 1024, not {}", self.max_request_bytes),
            ));
        }
        self.headers.validate("headers")?;
        self.tls.validate("tls")?;
        self.settings().validate()
    }
}

impl LokiConfig {
    /// The push URL.
    pub fn push_url(&self) -> Result<Uri, FieldError> {
        let uri = parse_endpoint(&self.endpoint, "endpoint", false)?;
        if matches!(uri.path(), "" | "/") && uri.query().is_none() {
            let base = self.endpoint.trim().trim_end_matches('/');
            return format!("{base}{PUSH_PATH}")
                .parse()
                .map_err(|e| FieldError::new("endpoint", format!("{base}: {e}")));
        }
        Ok(uri)
    }

    /// Label keys and names likely to make a stream per record, for a warning at start.
    pub fn high_cardinality_labels(&self) -> Vec<String> {
        let risky = |s: &str| {
            let lower = s.to_ascii_lowercase();
            HIGH_CARDINALITY_KEYS
                .iter()
                .any(|k| *k == lower || sanitize_label_name(k) == lower)
        };
        self.label_attributes
            .iter()
            .filter(|(key, label)| risky(key) || risky(label))
            .map(|(key, _)| key.clone())
            .collect()
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

/// A label name must sanitise to something neither empty nor reserved (`__` is Loki's and
/// Prometheus' internal prefix).
fn check_label_name(name: &str, path: &str) -> Result<(), FieldError> {
    let clean = sanitize_label_name(name);
    if clean.is_empty() {
        return Err(FieldError::new(path, "the label name is empty"));
    }
    if clean.starts_with("__") {
        return Err(FieldError::new(
            path,
            format!("label name {clean:?}: names starting with __ are reserved"),
        ));
    }
    Ok(())
}

/// A label (or structured metadata) name as Loki takes it, Prometheus' rule
/// `[a-zA-Z_][a-zA-Z0-9_]*`: every other character becomes `_`, and a leading digit gets a
/// `_` in front (`service.name` -> `service_name`, `1st` -> `_1st`).
pub fn sanitize_label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}
