//! What the two Prometheus exporters share: the OpenTelemetry-to-Prometheus translation.
//!
//! Metrics payloads come from the exporters' `consume`. [`DeltaToCumulative`] first turns
//! delta sums and histograms into running totals (in place), then [`translate`] names and
//! labels every data point the Prometheus way and hands it to a [`Sink`]: the `prometheus`
//! exporter's series table (rendered as text on each scrape), or the `prometheusremotewrite`
//! exporter's sample builder. [`Point::for_each_sample`] expands a point into the samples
//! both write (`_bucket` with `le`, `_sum`, `_count`, `quantile`), so the names are the same
//! on both paths.
//!
//! The rules are the OpenTelemetry specification's "Prometheus and OpenMetrics
//! Compatibility": [`naming`] for names, unit suffixes, `_total`, label names and escaping;
//! resource `service.namespace`/`service.name` -> `job`, `service.instance.id` ->
//! `instance`, the other resource attributes on `target_info` (or on every series with
//! `resource_to_telemetry_conversion`).

mod cumulative;
pub mod naming;
#[cfg(test)]
mod tests;
mod translate;

use serde::{Deserialize, Serialize};

pub use cumulative::{DeltaToCumulative, MAX_SERIES};
pub use translate::{
    Bucket, Exemplar, Family, INVALID, Kind, Labels, NO_RECORDED_VALUE_REASON, Point, Sample, Sink,
    TranslationConfig, Value, hex, labels_from_attributes, merge_over, translate, value_text,
};

/// Drop reason for points of a metric whose Prometheus name is taken by a metric of another
/// type.
pub const NAME_CONFLICT: &str = "name_conflict";

/// `resource_to_telemetry_conversion`, in the OpenTelemetry Collector's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceToTelemetry {
    /// Copy every resource attribute onto every series (default `false`).
    pub enabled: bool,
}

/// Sanitised, sorted labels from a config map (`const_labels`, `external_labels`).
pub fn config_labels(map: &std::collections::BTreeMap<String, String>) -> Labels {
    let mut labels: Labels = map
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (naming::sanitize_label_name(k), v.clone()))
        .collect();
    labels.sort();
    labels.dedup_by(|a, b| a.0 == b.0);
    labels
}

/// Checks a config label map: names must be valid Prometheus label names as written.
pub fn validate_config_labels(
    path: &str,
    map: &std::collections::BTreeMap<String, String>,
) -> Result<(), pipeline_core::FieldError> {
    for key in map.keys() {
        if naming::sanitize_label_name(key) != *key || key.starts_with("__") {
            return Err(pipeline_core::FieldError::new(
                format!("{path}.{key}"),
                "not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
            ));
        }
    }
    Ok(())
}
