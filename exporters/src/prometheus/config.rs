//! The `prometheus` exporter's config, with the OpenTelemetry Collector's key names.

use std::collections::BTreeMap;

use pipeline_core::config::HumanDuration;
use pipeline_core::net::TlsServerConfig;
use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

use crate::helper::prometheus::{
    ResourceToTelemetry, TranslationConfig, config_labels, validate_config_labels,
};

/// Config of the `prometheus` exporter.
///
/// ```yaml
/// exporters:
///   prometheus:
///     endpoint: 0.0.0.0:8889          # serves /metrics
///     namespace: shop                 # shop_http_requests_total
///     const_labels: { region: eu }
///     metric_expiration: 5m
///     resource_to_telemetry_conversion: { enabled: false }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// `host:port` serving `/metrics` (default `127.0.0.1:8889`).
    pub endpoint: String,
    /// Serve over TLS.
    pub tls: Option<TlsServerConfig>,
    /// Prefix of every metric name.
    pub namespace: Option<String>,
    /// Labels on every series (a series' own label of the same name wins).
    pub const_labels: BTreeMap<String, String>,
    /// Unit suffixes and `_total` (default `true`).
    pub add_metric_suffixes: bool,
    /// Copy resource attributes onto every series.
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// A series not updated for this long disappears (default `5m`; `0`: never).
    pub metric_expiration: HumanDuration,
    /// Most series held (default `100000`); points of new series beyond it are dropped.
    pub max_series: usize,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            endpoint: "127.0.0.1:8889".into(),
            tls: None,
            namespace: None,
            const_labels: BTreeMap::new(),
            add_metric_suffixes: true,
            resource_to_telemetry_conversion: ResourceToTelemetry::default(),
            metric_expiration: HumanDuration::from_secs(300),
            max_series: 100_000,
        }
    }
}

impl ComponentConfig for PrometheusConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "endpoint": "127.0.0.1:8889" })
    }

    fn listen_addresses(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    /// Checks what can be checked without binding.
    fn validate(&self) -> Result<(), FieldError> {
        if self
            .endpoint
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return Err(FieldError::new(
                "endpoint",
                format!("{:?} is not host:port", self.endpoint),
            ));
        }
        if self.max_series == 0 {
            return Err(FieldError::new("max_series", "must be at least 1"));
        }
        validate_config_labels("const_labels", &self.const_labels)
    }
}

impl PrometheusConfig {
    /// The translation settings.
    pub fn translation(&self) -> TranslationConfig {
        TranslationConfig {
            namespace: self.namespace.clone(),
            add_metric_suffixes: self.add_metric_suffixes,
            resource_to_telemetry_conversion: self.resource_to_telemetry_conversion.enabled,
            const_labels: config_labels(&self.const_labels),
        }
    }
}
