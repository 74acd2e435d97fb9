//! The `slo_*` gauges of an evaluation, defined once and written two ways: as the Prometheus
//! text of the endpoint's `GET /metrics`, and as OTLP gauges that the `slo` connector emits
//! into the metrics pipelines it feeds.
//!
//! The OTLP names are the Prometheus names, with units that the OpenTelemetry-to-Prometheus
//! translation (`helper::prometheus::naming`) leaves as they are: `1` on the `_ratio` gauges,
//! `min` on the `_minutes` one and none on `slo_burn_rate` and `slo_alert_active`. So a
//! `prometheus` exporter writes exactly the same names, with or without
//! `add_metric_suffixes`. The labels (`slo`, `service`, `window`, `severity`, `rule`) are
//! data point attributes; the resource is empty, so no `job`/`instance` is added.

use std::fmt::Write;

use pipeline_core::proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use pipeline_core::proto::tonic::resource::v1::Resource;

use super::eval::SloReport;
use crate::helper::prometheus::naming::{escape_label_value, write_float};

/// The instrumentation scope of the emitted gauges.
pub(crate) const SCOPE_NAME: &str = "sightline.connector.slo";

/// One gauge family and its points.
pub(crate) struct Family {
    /// The name, in both forms.
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    /// The OTLP unit.
    pub(crate) unit: &'static str,
    /// (labels, value) per point.
    pub(crate) points: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// The gauges of an evaluation; `rules` are every alert rule as (name, severity).
pub(crate) fn families(reports: &[SloReport], rules: &[(String, String)]) -> Vec<Family> {
    let base = |r: &SloReport| vec![("slo", r.name.clone()), ("service", r.service.clone())];
    type Figure = fn(&SloReport) -> f64;
    let simple: [(&str, &str, &str, Figure); 4] = [
        (
            "slo_sli_ratio",
            "The SLI over the SLO's window.",
            "1",
            |r| r.sli,
        ),
        ("slo_objective_ratio", "The SLO's objective.", "1", |r| {
            r.objective
        }),
        (
            "slo_error_budget_remaining_ratio",
            "Share of the error budget left (negative when overspent).",
            "1",
            |r| r.error_budget.remaining_ratio,
        ),
        (
            "slo_error_budget_remaining_minutes",
            "Minutes of error budget left in the window.",
            "min",
            |r| r.error_budget.remaining_minutes,
        ),
    ];
    let mut out: Vec<Family> = simple
        .into_iter()
        .map(|(name, help, unit, f)| Family {
            name,
            help,
            unit,
            points: reports.iter().map(|r| (base(r), f(r))).collect(),
        })
        .collect();
    out.push(Family {
        name: "slo_burn_rate",
        help: "Error rate over the window divided by the error budget.",
        unit: "",
        points: reports
            .iter()
            .flat_map(|r| {
                r.burn_rates.iter().map(move |(w, v)| {
                    let mut labels = base(r);
                    labels.push(("window", w.clone()));
                    (labels, *v)
                })
            })
            .collect(),
    });
    out.push(Family {
        name: "slo_alert_active",
        help: "1 while the alert rule fires for the SLO.",
        unit: "",
        points: reports
            .iter()
            .flat_map(|r| {
                rules.iter().map(move |(rule, severity)| {
                    let active = r.alerts.iter().any(|a| &a.rule == rule);
                    let mut labels = base(r);
                    labels.push(("severity", severity.clone()));
                    labels.push(("rule", rule.clone()));
                    (labels, f64::from(u8::from(active)))
                })
            })
            .collect(),
    });
    out
}

/// The gauges in the Prometheus text format.
pub(crate) fn metrics_text(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let name = f.name;
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} gauge", f.help);
        for (labels, value) in &f.points {
            out.push_str(name);
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"");
                escape_label_value(&mut out, v);
                out.push('"');
            }
            out.push_str("} ");
            write_float(&mut out, *value);
            out.push('\n');
        }
    }
    out
}

/// The gauges as OTLP metrics stamped `time_unix_nano`; empty when there is no point.
pub(crate) fn resource_metrics(families: &[Family], time_unix_nano: u64) -> Vec<ResourceMetrics> {
    let metrics: Vec<Metric> = families
        .iter()
        .filter(|f| !f.points.is_empty())
        .map(|f| Metric {
            name: f.name.into(),
            description: f.help.into(),
            unit: f.unit.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: f
                    .points
                    .iter()
                    .map(|(labels, value)| NumberDataPoint {
                        attributes: labels
                            .iter()
                            .map(|(k, v)| pipeline_core::attributes::string(k, v.as_str()))
                            .collect(),
                        time_unix_nano,
                        value: Some(number_data_point::Value::AsDouble(*value)),
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        })
        .collect();
    if metrics.is_empty() {
        return Vec::new();
    }
    vec![ResourceMetrics {
        resource: Some(Resource::default()),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(pipeline_core::model::sightline_scope(SCOPE_NAME)),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}
