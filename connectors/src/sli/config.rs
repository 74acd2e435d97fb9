//! The `sli` connector's config: which requests count, how their fields are found, and how
//! the RED metrics are aggregated and emitted.

use std::fmt;

use pipeline_core::config::HumanDuration;
use pipeline_core::{ComponentConfig, FieldError};
use serde::{Deserialize, Deserializer};

/// The seed guide's latency buckets, in seconds.
pub const DEFAULT_BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Attribute names the connector writes itself; a configured dimension may not reuse them.
pub const RESERVED_NAMES: [&str; 7] = [
    "service",
    "method",
    "endpoint",
    "status_code",
    "error_type",
    "quantile",
    "otel.metric.overflow",
];

/// `connectors.sli`.
///
/// ```yaml
/// connectors:
///   sli:
///     flush_interval: 15s
///     dimensions: [{ name: deployment.environment, default: unknown }]
///     quantiles: { enabled: true, window: 1m }
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SliConfig {
    /// How often the metrics are emitted.
    pub flush_interval: HumanDuration,
    /// `cumulative` (totals since the series started) or `delta` (since the last flush).
    pub temporality: Temporality,
    /// Span kinds that are requests.
    pub span_kinds: Vec<SpanKindName>,
    /// Extra dimensions from span or log attributes (then resource attributes).
    pub dimensions: Vec<Dimension>,
    /// What counts as an error.
    pub errors: ErrorsConfig,
    /// The duration histogram.
    pub histogram: HistogramConfig,
    /// Exemplars on histogram buckets.
    pub exemplars: ExemplarsConfig,
    /// Optional exact percentile gauges over a sliding window.
    pub quantiles: QuantilesConfig,
    /// Which log records are requests and where their fields are.
    pub logs: LogsConfig,
    /// Most series per metric; more go to one overflow series.
    pub max_series: usize,
    /// A series not updated for this long is forgotten (`0`: never).
    pub series_expiry: HumanDuration,
}

impl Default for SliConfig {
    fn default() -> Self {
        SliConfig {
            flush_interval: HumanDuration::from_secs(15),
            temporality: Temporality::Cumulative,
            span_kinds: vec![SpanKindName::Server, SpanKindName::Consumer],
            dimensions: Vec::new(),
            errors: ErrorsConfig::default(),
            histogram: HistogramConfig::default(),
            exemplars: ExemplarsConfig::default(),
            quantiles: QuantilesConfig::default(),
            logs: LogsConfig::default(),
            max_series: 10_000,
            series_expiry: HumanDuration::from_secs(300),
        }
    }
}

impl ComponentConfig for SliConfig {
    /// Checks what serde cannot.
    fn validate(&self) -> Result<(), FieldError> {
        let flush = self.flush_interval.get();
        if flush.is_zero() {
            return Err(FieldError::new("flush_interval", "must be greater than 0"));
        }
        let expiry = self.series_expiry.get();
        if !expiry.is_zero() && expiry < flush {
            return Err(FieldError::new(
                "series_expiry",
                format!(
                    "must be 0 (never) or at least flush_interval ({})",
                    self.flush_interval
                ),
            ));
        }
        if self.max_series == 0 {
            return Err(FieldError::new("max_series", "must be at least 1"));
        }
        if self.span_kinds.is_empty() {
            return Err(FieldError::new(
                "span_kinds",
                "list at least one span kind (SERVER, CONSUMER, CLIENT, PRODUCER, INTERNAL)",
            ));
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            let path = format!("dimensions[{i}].name");
            if d.name.trim().is_empty() {
                return Err(FieldError::new(path, "must not be empty"));
            }
            if RESERVED_NAMES.contains(&d.name.as_str()) {
                return Err(FieldError::new(
                    path,
                    format!(
                        "{:?} is written by the connector itself; pick another attribute",
                        d.name
                    ),
                ));
            }
            if self.dimensions[..i].iter().any(|o| o.name == d.name) {
                return Err(FieldError::new(
                    path,
                    format!("{:?} is listed twice", d.name),
                ));
            }
        }
        if !(100..=599).contains(&self.errors.min_status_code) {
            return Err(FieldError::new(
                "errors.min_status_code",
                "must be an HTTP status code (100 to 599)",
            ));
        }
        let b = &self.histogram.buckets;
        if b.is_empty() {
            return Err(FieldError::new(
                "histogram.buckets",
                "list at least one bound",
            ));
        }
        if let Some(i) = b.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(FieldError::new(
                format!("histogram.buckets[{i}]"),
                "must be a finite number of seconds, 0 or more",
            ));
        }
        if let Some(i) = b.windows(2).position(|w| w[1] <= w[0]) {
            return Err(FieldError::new(
                format!("histogram.buckets[{}]", i + 1),
                "bounds must increase strictly",
            ));
        }
        let q = &self.quantiles;
        if q.enabled && q.window.get() < flush {
            return Err(FieldError::new(
                "quantiles.window",
                format!("must be at least flush_interval ({})", self.flush_interval),
            ));
        }
        if q.enabled && q.slots(flush) > MAX_WINDOW_SLOTS {
            return Err(FieldError::new(
                "quantiles.window",
                format!("must be at most {MAX_WINDOW_SLOTS} flush intervals"),
            ));
        }
        if !(1..=5).contains(&q.significant_digits) {
            return Err(FieldError::new(
                "quantiles.significant_digits",
                "must be 1 to 5",
            ));
        }
        if q.values.is_empty() {
            return Err(FieldError::new(
                "quantiles.values",
                "list at least one quantile",
            ));
        }
        if let Some(i) = q.values.iter().position(|v| !(*v > 0.0 && *v <= 1.0)) {
            return Err(FieldError::new(
                format!("quantiles.values[{i}]"),
                "must be above 0 and at most 1 (0.99 is p99)",
            ));
        }
        if let Some(eq) = &self.logs.r#match.equals
            && eq.is_empty()
        {
            return Err(FieldError::new(
                "logs.match.equals",
                "must not be empty; leave it out to match every record that has the field",
            ));
        }
        Ok(())
    }
}

/// Sliding windows are cut into at most this many flush intervals.
pub const MAX_WINDOW_SLOTS: usize = 120;

/// Aggregation temporality of the emitted sums and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    /// Totals since the series started; the start time stays fixed.
    #[default]
    #[serde(alias = "AGGREGATION_TEMPORALITY_CUMULATIVE")]
    Cumulative,
    /// Changes since the previous flush; only series that changed are emitted.
    #[serde(alias = "AGGREGATION_TEMPORALITY_DELTA")]
    Delta,
}

/// A span kind as written in config: `SERVER` (or `SPAN_KIND_SERVER`, or `server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SpanKindName {
    /// `INTERNAL`.
    #[serde(rename = "INTERNAL", alias = "SPAN_KIND_INTERNAL", alias = "internal")]
    Internal,
    /// `SERVER`.
    #[serde(rename = "SERVER", alias = "SPAN_KIND_SERVER", alias = "server")]
    Server,
    /// `CLIENT`.
    #[serde(rename = "CLIENT", alias = "SPAN_KIND_CLIENT", alias = "client")]
    Client,
    /// `PRODUCER`.
    #[serde(rename = "PRODUCER", alias = "SPAN_KIND_PRODUCER", alias = "producer")]
    Producer,
    /// `CONSUMER`.
    #[serde(rename = "CONSUMER", alias = "SPAN_KIND_CONSUMER", alias = "consumer")]
    Consumer,
}

impl SpanKindName {
    /// The OTLP enum value.
    pub fn proto_value(self) -> i32 {
        match self {
            SpanKindName::Internal => 1,
            SpanKindName::Server => 2,
            SpanKindName::Client => 3,
            SpanKindName::Producer => 4,
            SpanKindName::Consumer => 5,
        }
    }
}

/// An extra dimension: an attribute looked up on the span or log record, then on its
/// resource; emitted under its own name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// The attribute key, also the emitted attribute's name.
    pub name: String,
    /// The value when the attribute is missing; without one, the dimension is left off.
    #[serde(default)]
    pub default: Option<String>,
}

/// `errors`: what makes a request an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorsConfig {
    /// A status code at least this high is an error.
    pub min_status_code: i64,
    /// A span with status ERROR is an error whatever its status code.
    pub span_status: bool,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        ErrorsConfig {
            min_status_code: 500,
            span_status: true,
        }
    }
}

/// `histogram`: the duration histogram's bucket bounds in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    /// Explicit bucket upper bounds, seconds, strictly increasing.
    pub buckets: Vec<f64>,
}

impl Default for HistogramConfig {
    fn default() -> Self {
        HistogramConfig {
            buckets: DEFAULT_BUCKETS.to_vec(),
        }
    }
}

/// `exemplars`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    /// Attach the trace and span ID of one request per bucket per flush.
    pub enabled: bool,
}

impl Default for ExemplarsConfig {
    fn default() -> Self {
        ExemplarsConfig { enabled: true }
    }
}

/// `quantiles`: `http.request.duration.quantiles` gauges per series.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantilesConfig {
    /// Emit the gauges.
    pub enabled: bool,
    /// The sliding window they cover, in whole flush intervals (rounded up).
    pub window: HumanDuration,
    /// The quantiles, each in (0, 1].
    pub values: Vec<f64>,
    /// HdrHistogram precision: values are exact to this many significant digits.
    pub significant_digits: u8,
}

impl Default for QuantilesConfig {
    fn default() -> Self {
        QuantilesConfig {
            enabled: false,
            window: HumanDuration::from_secs(60),
            values: vec![0.5, 0.95, 0.99],
            significant_digits: 2,
        }
    }
}

impl QuantilesConfig {
    /// How many flush intervals the window spans.
    pub fn slots(&self, flush_interval: std::time::Duration) -> usize {
        if flush_interval.is_zero() {
            return 1;
        }
        let n = self
            .window
            .get()
            .as_nanos()
            .div_ceil(flush_interval.as_nanos());
        usize::try_from(n).unwrap_or(usize::MAX).max(1)
    }
}

/// `logs`: request-completion records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Which records are requests.
    #[serde(rename = "match")]
    pub r#match: LogMatch,
    /// Where a request's fields are.
    pub fields: LogFields,
}

/// `logs.match`: a record is a request when `field` equals `equals` (or, without `equals`,
/// when it has `field`). Without a `match` key: the body equals `Request completed`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMatch {
    /// The field to test (default `body`).
    #[serde(default = "body_field")]
    pub field: FieldRef,
    /// The text it must equal.
    #[serde(default)]
    pub equals: Option<String>,
}

fn body_field() -> FieldRef {
    FieldRef::Body
}

impl Default for LogMatch {
    fn default() -> Self {
        LogMatch {
            field: FieldRef::Body,
            equals: Some("Request completed".into()),
        }
    }
}

/// `logs.fields`: where each part of a request is found on a log record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFields {
    /// The HTTP status code.
    pub status_code: FieldRef,
    /// The request's duration, in `duration_unit`.
    pub duration: FieldRef,
    /// The unit of `duration`.
    pub duration_unit: DurationUnit,
    /// The HTTP method.
    pub method: FieldRef,
    /// The route template (`/api/users/{id}`); preferred over `path` when present.
    pub route: FieldRef,
    /// The request path, used for the endpoint when there is no route.
    pub path: FieldRef,
    /// Replace ID-like path segments (numbers, UUIDs, long hex) with `{id}` and drop the
    /// query string, so the endpoint never is the raw path.
    pub normalize_path: bool,
    /// The service; `unknown_service` when missing.
    pub service: FieldRef,
    /// The exception type, used as `error_type`.
    pub exception_type: FieldRef,
}

impl Default for LogFields {
    fn default() -> Self {
        LogFields {
            status_code: FieldRef::Attribute("status_code".into()),
            duration: FieldRef::Attribute("duration_seconds".into()),
            duration_unit: DurationUnit::Seconds,
            method: FieldRef::Attribute("method".into()),
            route: FieldRef::Attribute("http.route".into()),
            path: FieldRef::Attribute("path".into()),
            normalize_path: true,
            service: FieldRef::Resource("service.name".into()),
            exception_type: FieldRef::Attribute("exception.type".into()),
        }
    }
}

/// The unit a log's duration field is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum DurationUnit {
    /// Seconds.
    #[default]
    #[serde(rename = "s")]
    Seconds,
    /// Milliseconds.
    #[serde(rename = "ms")]
    Millis,
    /// Microseconds.
    #[serde(rename = "us")]
    Micros,
    /// Nanoseconds.
    #[serde(rename = "ns")]
    Nanos,
}

impl DurationUnit {
    /// Seconds per unit.
    pub fn seconds(self) -> f64 {
        match self {
            DurationUnit::Seconds => 1.0,
            DurationUnit::Millis => 1e-3,
            DurationUnit::Micros => 1e-6,
            DurationUnit::Nanos => 1e-9,
        }
    }
}

/// Where a value sits on a log record, written as `body`, `body.KEY` (a key of a map body),
/// `attributes.KEY`, `resource.KEY`, or a bare `KEY` (the record's attribute, else the key
/// of a map body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    /// The body.
    Body,
    /// A key of a map body.
    BodyKey(String),
    /// A record attribute.
    Attribute(String),
    /// A resource attribute.
    Resource(String),
    /// A record attribute, else a key of a map body.
    AttributeOrBody(String),
}

impl FieldRef {
    /// Parses the written form.
    pub fn parse(text: &str) -> Result<FieldRef, String> {
        let t = text.trim();
        let keyed = |prefix: &str, make: fn(String) -> FieldRef| {
            t.strip_prefix(prefix).map(|k| {
                if k.is_empty() {
                    Err(format!("{text:?} names no key after {prefix:?}"))
                } else {
                    Ok(make(k.to_string()))
                }
            })
        };
        if t.is_empty() {
            return Err(
                "empty field reference: write body, attributes.KEY, resource.KEY or KEY".into(),
            );
        }
        if t == "body" {
            return Ok(FieldRef::Body);
        }
        if let Some(r) = keyed("body.", FieldRef::BodyKey)
            .or_else(|| keyed("attributes.", FieldRef::Attribute))
            .or_else(|| keyed("resource.", FieldRef::Resource))
        {
            return r;
        }
        Ok(FieldRef::AttributeOrBody(t.to_string()))
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldRef::Body => f.write_str("body"),
            FieldRef::BodyKey(k) => write!(f, "body.{k}"),
            FieldRef::Attribute(k) => write!(f, "attributes.{k}"),
            FieldRef::Resource(k) => write!(f, "resource.{k}"),
            FieldRef::AttributeOrBody(k) => f.write_str(k),
        }
    }
}

impl<'de> Deserialize<'de> for FieldRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        FieldRef::parse(&text).map_err(serde::de::Error::custom)
    }
}
