//! OTLP metrics to Prometheus series: names, labels, values.
//!
//! [`translate`] walks the resource groups of a metrics payload and hands each data point,
//! named and labelled the Prometheus way, to a [`Sink`]: the scrape exporter keeps them in
//! its series table, the remote-write exporter turns them into samples. Delta temporality is
//! dealt with before (see [`super::DeltaToCumulative`]): what arrives here is cumulative.

use std::borrow::Cow;
use std::fmt::Write as _;

use pipeline_core::proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use pipeline_core::proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, SummaryDataPoint, exemplar, metric, number_data_point,
};
use pipeline_core::proto::tonic::resource::v1::Resource;

use super::naming::{metric_name, sanitize_label_name};

/// Sorted `(name, value)` label pairs, without `__name__`.
pub type Labels = Vec<(String, String)>;

/// The flag bit of a data point that carries no value (a staleness marker).
const NO_RECORDED_VALUE: u32 = 1;

/// Drop reason for data points that cannot be translated (a histogram whose bucket counts do
/// not match its bounds, a point with no value).
pub const INVALID: &str = "invalid";
/// Drop reason for data points flagged as having no recorded value.
pub const NO_RECORDED_VALUE_REASON: &str = "no_recorded_value";

/// The Prometheus metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Gauges and non-monotonic sums.
    Gauge,
    /// Monotonic sums.
    Counter,
    /// Histograms and exponential histograms.
    Histogram,
    /// Summaries.
    Summary,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// How OTLP names and resources become Prometheus names and labels (shared by both
/// exporters' configs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TranslationConfig {
    /// Prefix of every metric name (`namespace_name`).
    pub namespace: Option<String>,
    /// Add unit suffixes and `_total`.
    pub add_metric_suffixes: bool,
    /// Copy every resource attribute onto every series.
    pub resource_to_telemetry_conversion: bool,
    /// Labels added to every series unless a series has its own value (names sanitised).
    pub const_labels: Labels,
}

/// A metric family: its Prometheus name, type and help.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Metric name (a counter's ends with `_total` when suffixes are on).
    pub name: String,
    /// Type.
    pub kind: Kind,
    /// The OTLP description.
    pub help: String,
}

/// An exemplar: a traced measurement attached to a counter or a histogram bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// `trace_id`, `span_id` (hex) and the filtered attributes.
    pub labels: Labels,
    /// The measurement.
    pub value: f64,
    /// When it was measured, in milliseconds since the epoch (0: unknown).
    pub timestamp_ms: i64,
}

/// One cumulative bucket of a histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// The upper bound (`le`); the last bucket's is `+Inf`.
    pub le: f64,
    /// Observations at or below `le`.
    pub count: u64,
    /// An exemplar that fell in this bucket.
    pub exemplar: Option<Exemplar>,
}

/// The value of one series.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Gauge or counter value.
    Number(f64),
    /// Histogram: cumulative buckets ending with `+Inf`, sum (when known) and count.
    Histogram {
        /// The buckets.
        buckets: Vec<Bucket>,
        /// Sum of observations, when the source recorded it.
        sum: Option<f64>,
        /// Number of observations.
        count: u64,
    },
    /// Summary: `(quantile, value)` pairs, sum and count.
    Summary {
        /// The quantiles.
        quantiles: Vec<(f64, f64)>,
        /// Sum of observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

/// One data point, translated.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The series' labels.
    pub labels: Labels,
    /// When it was measured, in milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// When the cumulative series started, in milliseconds (counters, histograms,
    /// summaries), if known.
    pub created_ms: Option<i64>,
    /// The value.
    pub value: Value,
    /// A counter's exemplar.
    pub exemplar: Option<Exemplar>,
}

/// One sample of a point, as text lines and remote-write series hold them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// Appended to the family name: `""`, `_bucket`, `_sum`, `_count`.
    pub suffix: &'static str,
    /// An extra label: `le` for buckets, `quantile` for summaries.
    pub extra: Option<(&'static str, f64)>,
    /// The value.
    pub value: f64,
    /// The exemplar that goes with it.
    pub exemplar: Option<&'a Exemplar>,
}

impl Point {
    /// Calls `f` with every sample of the point, in exposition order.
    pub fn for_each_sample<'a>(&'a self, mut f: impl FnMut(Sample<'a>)) {
        match &self.value {
            Value::Number(v) => f(Sample {
                suffix: "",
                extra: None,
                value: *v,
                exemplar: self.exemplar.as_ref(),
            }),
            Value::Histogram {
                buckets,
                sum,
                count,
            } => {
                for b in buckets {
                    f(Sample {
                        suffix: "_bucket",
                        extra: Some(("le", b.le)),
                        value: b.count as f64,
                        exemplar: b.exemplar.as_ref(),
                    });
                }
                if let Some(sum) = sum {
                    f(plain("_sum", *sum));
                }
                f(plain("_count", *count as f64));
            }
            Value::Summary {
                quantiles,
                sum,
                count,
            } => {
                for (q, v) in quantiles {
                    f(Sample {
                        suffix: "",
                        extra: Some(("quantile", *q)),
                        value: *v,
                        exemplar: None,
                    });
                }
                f(plain("_sum", *sum));
                f(plain("_count", *count as f64));
            }
        }
    }

    /// How many samples [`Point::for_each_sample`] gives.
    pub fn sample_count(&self) -> usize {
        match &self.value {
            Value::Number(_) => 1,
            Value::Histogram { buckets, sum, .. } => buckets.len() + 1 + usize::from(sum.is_some()),
            Value::Summary { quantiles, .. } => quantiles.len() + 2,
        }
    }
}

fn plain(suffix: &'static str, value: f64) -> Sample<'static> {
    Sample {
        suffix,
        extra: None,
        value,
        exemplar: None,
    }
}

/// Where [`translate`] puts what it made.
pub trait Sink {
    /// The `target_info` series of a resource: its labels (`job`, `instance` and the other
    /// resource attributes), stamped with the newest point time of the resource.
    fn target_info(&mut self, labels: Labels, timestamp_ms: i64);
    /// One data point of `family`.
    fn point(&mut self, family: &Family, point: Point);
    /// `points` data points that were left out, and why.
    fn skipped(&mut self, points: usize, reason: &'static str);
}

/// Translates every data point of `resource_metrics` into `sink`.
pub fn translate(
    resource_metrics: &[ResourceMetrics],
    config: &TranslationConfig,
    sink: &mut impl Sink,
) {
    for rm in resource_metrics {
        let resource = ResourceLabels::new(rm.resource.as_ref(), config);
        let mut newest_ms = 0i64;
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                let newest = translate_metric(metric, &resource, config, sink);
                newest_ms = newest_ms.max(newest);
            }
        }
        if newest_ms > 0 && !resource.info.is_empty() {
            sink.target_info(resource.info_labels(config), newest_ms);
        }
    }
}

/// The labels a resource gives: `job` and `instance` for every series, the rest for
/// `target_info` (or for every series with `resource_to_telemetry_conversion`).
struct ResourceLabels {
    /// Labels below the point's own: const labels and, with the conversion, the resource's.
    base: Labels,
    /// `job` and `instance`: above the point's own.
    identity: Labels,
    /// The other resource attributes, for `target_info`.
    info: Labels,
}

impl ResourceLabels {
    fn new(resource: Option<&Resource>, config: &TranslationConfig) -> ResourceLabels {
        let attributes: &[KeyValue] = resource.map_or(&[], |r| &r.attributes);
        let text = |key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| value_text(kv.value.as_ref()).into_owned())
                .filter(|v| !v.is_empty())
        };
        let mut identity = Labels::new();
        let job = match (text("service.namespace"), text("service.name")) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            (None, Some(name)) => Some(name),
            (Some(ns), None) => Some(ns),
            (None, None) => None,
        };
        if let Some(job) = job {
            identity.push(("job".into(), job));
        }
        if let Some(instance) = text("service.instance.id") {
            identity.push(("instance".into(), instance));
        }
        let info = labels_from_attributes(attributes.iter().filter(|kv| {
            !matches!(
                kv.key.as_str(),
                "service.name" | "service.namespace" | "service.instance.id"
            )
        }));
        let mut base = config.const_labels.clone();
        if config.resource_to_telemetry_conversion {
            merge_over(&mut base, info.clone());
        }
        ResourceLabels {
            base,
            identity,
            info,
        }
    }

    /// `target_info`'s labels: const labels, the resource attributes, `job`/`instance`.
    fn info_labels(&self, config: &TranslationConfig) -> Labels {
        let mut labels = config.const_labels.clone();
        merge_over(&mut labels, self.info.clone());
        merge_over(&mut labels, self.identity.clone());
        labels
    }

    /// A point's labels: base, then the point's attributes, then `job`/`instance`.
    fn point_labels(&self, attributes: &[KeyValue]) -> Labels {
        let mut labels = self.base.clone();
        merge_over(&mut labels, labels_from_attributes(attributes.iter()));
        merge_over(&mut labels, self.identity.clone());
        labels
    }
}

/// Sanitised, sorted labels from attributes; keys that sanitise to the same name have their
/// values joined with `;` in the order of the original keys. Empty values are left out.
pub fn labels_from_attributes<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> Labels {
    let mut raw: Vec<(String, &'a str, Cow<'a, str>)> = attributes
        .map(|kv| {
            (
                sanitize_label_name(&kv.key),
                kv.key.as_str(),
                value_text(kv.value.as_ref()),
            )
        })
        .filter(|(_, _, v)| !v.is_empty())
        .collect();
    raw.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mut labels: Labels = Vec::with_capacity(raw.len());
    for (name, _, value) in raw {
        match labels.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(';');
                joined.push_str(&value);
            }
            _ => labels.push((name, value.into_owned())),
        }
    }
    labels
}

/// Puts `top` over `labels` (both sorted): a name in both takes `top`'s value.
pub fn merge_over(labels: &mut Labels, top: Labels) {
    if labels.is_empty() {
        *labels = top;
        return;
    }
    for (name, value) in top {
        match labels.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => labels[i].1 = value,
            Err(i) => labels.insert(i, (name, value)),
        }
    }
}

/// An attribute value as label text: scalars as they are, arrays and maps as JSON, bytes
/// as base64-free hex.
pub fn value_text(value: Option<&AnyValue>) -> Cow<'_, str> {
    use any_value::Value as V;
    match value.and_then(|v| v.value.as_ref()) {
        None => Cow::Borrowed(""),
        Some(V::StringValue(s)) => Cow::Borrowed(s),
        Some(V::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(V::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(V::DoubleValue(d)) => Cow::Owned(super::naming::float_label(*d)),
        Some(V::BytesValue(b)) => Cow::Owned(hex(b)),
        Some(other) => {
            let mut out = String::new();
            write_json(&mut out, Some(other));
            Cow::Owned(out)
        }
    }
}

fn write_json(out: &mut String, value: Option<&any_value::Value>) {
    use any_value::Value as V;
    match value {
        None => out.push_str("null"),
        Some(V::StringValue(s)) => {
            out.push_str(&serde_json::Value::String(s.clone()).to_string());
        }
        Some(V::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(V::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(V::DoubleValue(d)) => out.push_str(&super::naming::float_label(*d)),
        Some(V::BytesValue(b)) => {
            out.push('"');
            out.push_str(&hex(b));
            out.push('"');
        }
        Some(V::ArrayValue(a)) => {
            out.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, v.value.as_ref());
            }
            out.push(']');
        }
        Some(V::KvlistValue(kv)) => {
            out.push('{');
            for (i, entry) in kv.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(entry.key.clone()).to_string());
                out.push(':');
                write_json(out, entry.value.as_ref().and_then(|v| v.value.as_ref()));
            }
            out.push('}');
        }
        // A string-table reference (profiles only): no text without the table.
        Some(_) => out.push_str("null"),
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn nanos_to_ms(nanos: u64) -> i64 {
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

fn created(start_nanos: u64) -> Option<i64> {
    (start_nanos > 0).then(|| nanos_to_ms(start_nanos))
}

/// Translates one metric's points; returns the newest point time in milliseconds.
fn translate_metric(
    metric: &Metric,
    resource: &ResourceLabels,
    config: &TranslationConfig,
    sink: &mut impl Sink,
) -> i64 {
    let Some(data) = &metric.data else { return 0 };
    let kind = match data {
        metric::Data::Gauge(_) => Kind::Gauge,
        metric::Data::Sum(s) if s.is_monotonic => Kind::Counter,
        metric::Data::Sum(_) => Kind::Gauge,
        metric::Data::Histogram(_) | metric::Data::ExponentialHistogram(_) => Kind::Histogram,
        metric::Data::Summary(_) => Kind::Summary,
    };
    let family = Family {
        name: metric_name(
            config.namespace.as_deref(),
            &metric.name,
            &metric.unit,
            kind,
            config.add_metric_suffixes,
        ),
        kind,
        help: metric.description.clone(),
    };
    let mut newest = 0i64;
    let mut emit = |sink: &mut _, flags: u32, point: Option<Point>| {
        if flags & NO_RECORDED_VALUE != 0 {
            Sink::skipped(sink, 1, NO_RECORDED_VALUE_REASON);
            return;
        }
        match point {
            Some(p) => {
                newest = newest.max(p.timestamp_ms);
                Sink::point(sink, &family, p);
            }
            None => Sink::skipped(sink, 1, INVALID),
        }
    };
    match data {
        metric::Data::Gauge(g) => {
            for p in &g.data_points {
                emit(sink, p.flags, number_point(p, resource, false));
            }
        }
        metric::Data::Sum(s) => {
            let cumulative = s.aggregation_temporality != AggregationTemporality::Delta as i32;
            for p in &s.data_points {
                let point = number_point(p, resource, s.is_monotonic && cumulative);
                emit(sink, p.flags, point);
            }
        }
        metric::Data::Histogram(h) => {
            for p in &h.data_points {
                emit(sink, p.flags, histogram_point(p, resource));
            }
        }
        metric::Data::ExponentialHistogram(h) => {
            for p in &h.data_points {
                emit(sink, p.flags, exponential_point(p, resource));
            }
        }
        metric::Data::Summary(s) => {
            for p in &s.data_points {
                emit(sink, p.flags, summary_point(p, resource));
            }
        }
    }
    newest
}

fn number_value(p: &NumberDataPoint) -> Option<f64> {
    match p.value? {
        number_data_point::Value::AsDouble(d) => Some(d),
        number_data_point::Value::AsInt(i) => Some(i as f64),
    }
}

fn number_point(p: &NumberDataPoint, resource: &ResourceLabels, counter: bool) -> Option<Point> {
    Some(Point {
        labels: resource.point_labels(&p.attributes),
        timestamp_ms: nanos_to_ms(p.time_unix_nano),
        created_ms: if counter {
            created(p.start_time_unix_nano)
        } else {
            None
        },
        value: Value::Number(number_value(p)?),
        exemplar: p.exemplars.last().map(translate_exemplar),
    })
}

fn translate_exemplar(e: &pipeline_core::proto::tonic::metrics::v1::Exemplar) -> Exemplar {
    let mut labels = Labels::new();
    if !e.trace_id.is_empty() {
        labels.push(("trace_id".into(), hex(&e.trace_id)));
    }
    if !e.span_id.is_empty() {
        labels.push(("span_id".into(), hex(&e.span_id)));
    }
    // OpenMetrics allows 128 characters of exemplar labels; the IDs come first.
    let mut room = 128usize.saturating_sub(labels.iter().map(|(n, v)| n.len() + v.len()).sum());
    for (name, value) in labels_from_attributes(e.filtered_attributes.iter()) {
        let len = name.chars().count() + value.chars().count();
        if len <= room && name != "trace_id" && name != "span_id" {
            room -= len;
            labels.push((name, value));
        }
    }
    Exemplar {
        labels,
        value: match e.value {
            Some(exemplar::Value::AsDouble(d)) => d,
            Some(exemplar::Value::AsInt(i)) => i as f64,
            None => 0.0,
        },
        timestamp_ms: nanos_to_ms(e.time_unix_nano),
    }
}

/// Puts each exemplar in the first bucket whose bound it does not exceed.
fn place_exemplars(
    buckets: &mut [Bucket],
    exemplars: &[pipeline_core::proto::tonic::metrics::v1::Exemplar],
) {
    for e in exemplars {
        let e = translate_exemplar(e);
        if let Some(b) = buckets.iter_mut().find(|b| e.value <= b.le) {
            b.exemplar = Some(e);
        }
    }
}

/// The [`HistogramParts`] of either histogram point type.
macro_rules! histogram_parts {
    ($p:expr) => {
        HistogramParts {
            attributes: &$p.attributes,
            time: $p.time_unix_nano,
            start: $p.start_time_unix_nano,
            count: $p.count,
            sum: $p.sum,
            exemplars: &$p.exemplars,
        }
    };
}

fn histogram_point(p: &HistogramDataPoint, resource: &ResourceLabels) -> Option<Point> {
    let bounds = &p.explicit_bounds;
    let counts = &p.bucket_counts;
    // No buckets at all is a histogram of only sum and count.
    if !counts.is_empty() && counts.len() != bounds.len() + 1 {
        return None;
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) || bounds.iter().any(|b| b.is_nan()) {
        return None;
    }
    let mut buckets = Vec::with_capacity(bounds.len() + 1);
    let mut running = 0u64;
    for (i, le) in bounds.iter().enumerate() {
        running = running.saturating_add(counts.get(i).copied().unwrap_or(0));
        if *le == f64::INFINITY {
            break;
        }
        buckets.push(Bucket {
            le: *le,
            count: running,
            exemplar: None,
        });
    }
    Some(histogram_with(buckets, histogram_parts!(p), resource))
}

/// The buckets of an exponential histogram on its own boundaries: index `i` of scale `s`
/// covers `(base^i, base^(i+1)]` with `base = 2^(2^-s)`; negative buckets mirror that, and
/// the zero bucket ends at 0.
fn exponential_point(
    p: &ExponentialHistogramDataPoint,
    resource: &ResourceLabels,
) -> Option<Point> {
    if !(-10..=20).contains(&p.scale) {
        return None;
    }
    let base = 2f64.powf(2f64.powi(-p.scale));
    let bound = |index: i64| base.powf(index as f64);
    let mut buckets = Vec::new();
    let mut running = 0u64;
    if let Some(neg) = &p.negative {
        // From the most negative: bucket i covers [-base^(i+1), -base^i).
        for (k, c) in neg.bucket_counts.iter().enumerate().rev() {
            let index = i64::from(neg.offset) + k as i64;
            running = running.saturating_add(*c);
            buckets.push(Bucket {
                le: -bound(index),
                count: running,
                exemplar: None,
            });
        }
    }
    running = running.saturating_add(p.zero_count);
    buckets.push(Bucket {
        le: 0.0,
        count: running,
        exemplar: None,
    });
    if let Some(pos) = &p.positive {
        for (k, c) in pos.bucket_counts.iter().enumerate() {
            let index = i64::from(pos.offset) + k as i64;
            running = running.saturating_add(*c);
            buckets.push(Bucket {
                le: bound(index + 1),
                count: running,
                exemplar: None,
            });
        }
    }
    // Bounds so large they overflow end the list; +Inf holds everything.
    buckets.retain(|b| b.le.is_finite());
    buckets.dedup_by(|later, earlier| {
        let same = later.le == earlier.le;
        if same {
            earlier.count = later.count;
        }
        same
    });
    Some(histogram_with(buckets, histogram_parts!(p), resource))
}

/// What both histogram point types have.
struct HistogramParts<'a> {
    attributes: &'a [KeyValue],
    time: u64,
    start: u64,
    count: u64,
    sum: Option<f64>,
    exemplars: &'a [pipeline_core::proto::tonic::metrics::v1::Exemplar],
}

/// The point of a histogram whose finite `buckets` are made: `+Inf` and exemplars added.
fn histogram_with(
    mut buckets: Vec<Bucket>,
    parts: HistogramParts<'_>,
    resource: &ResourceLabels,
) -> Point {
    buckets.push(Bucket {
        le: f64::INFINITY,
        count: parts.count,
        exemplar: None,
    });
    place_exemplars(&mut buckets, parts.exemplars);
    Point {
        labels: resource.point_labels(parts.attributes),
        timestamp_ms: nanos_to_ms(parts.time),
        created_ms: created(parts.start),
        value: Value::Histogram {
            buckets,
            sum: parts.sum,
            count: parts.count,
        },
        exemplar: None,
    }
}

fn summary_point(p: &SummaryDataPoint, resource: &ResourceLabels) -> Option<Point> {
    let mut quantiles: Vec<(f64, f64)> = p
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    if quantiles.iter().any(|(q, _)| !(0.0..=1.0).contains(q)) {
        return None;
    }
    quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(Point {
        labels: resource.point_labels(&p.attributes),
        timestamp_ms: nanos_to_ms(p.time_unix_nano),
        created_ms: created(p.start_time_unix_nano),
        value: Value::Summary {
            quantiles,
            sum: p.sum,
            count: p.count,
        },
        exemplar: None,
    })
}
