//! The series state: requests, errors and durations per series, bounded by `max_series` per
//! metric, expired when idle, and turned into OTLP metrics at each flush.
//!
//! Time is passed in (a monotonic instant for expiry, Unix nanoseconds for timestamps), so
//! the whole aggregation is deterministic under test.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use pipeline_core::attributes::string;
use pipeline_core::proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use pipeline_core::proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exemplar, metric, number_data_point,
};
use pipeline_core::proto::tonic::resource::v1::Resource;
use tokio::time::Instant;

use super::config::{SliConfig, Temporality};
use super::extract::Request;
use super::quantiles::{Scratch, Window};

/// `http.requests`: a monotonic sum, written `http_requests_total` by a Prometheus exporter.
pub const REQUESTS: &str = "http.requests";
/// `http.errors`: a monotonic sum, written `http_errors_total`.
pub const ERRORS: &str = "http.errors";
/// `http.request.duration`: a histogram in seconds, written `http_request_duration_seconds`.
pub const DURATION: &str = "http.request.duration";
/// `http.request.duration.quantiles`: gauges per quantile, in seconds.
pub const QUANTILES: &str = "http.request.duration.quantiles";
/// The attribute of the one series that takes what does not fit under `max_series`.
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";
/// The instrumentation scope of the emitted metrics.
pub const SCOPE_NAME: &str = "sightline.connector.sli";

/// The three bounded metrics, as indices into per-metric arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Requests = 0,
    Errors = 1,
    Duration = 2,
}

impl Kind {
    pub(crate) const ALL: [Kind; 3] = [Kind::Requests, Kind::Errors, Kind::Duration];

    pub(crate) fn metric_name(self) -> &'static str {
        match self {
            Kind::Requests => REQUESTS,
            Kind::Errors => ERRORS,
            Kind::Duration => DURATION,
        }
    }
}

/// What every series has.
#[derive(Debug)]
struct Meta {
    attributes: Vec<KeyValue>,
    /// The resource group it is emitted under; `None` for the overflow series.
    service: Option<String>,
    start_unix_nano: u64,
    last_seen: Instant,
}

#[derive(Debug)]
struct CounterSeries {
    meta: Meta,
    value: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    value: f64,
    time_unix_nano: u64,
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

#[derive(Debug)]
struct HistogramSeries {
    meta: Meta,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// One slot per bucket; empty until the first exemplar.
    exemplars: Vec<Option<Sample>>,
    counts: Vec<u64>,
    window: Option<Window>,
}

/// A family of series of one metric with its bound.
#[derive(Debug)]
struct Family<S> {
    series: HashMap<Box<[u8]>, S, foldhash::fast::RandomState>,
    overflow: Option<S>,
    max: usize,
}

impl<S> Family<S> {
    fn new(max: usize) -> Self {
        Family {
            series: HashMap::default(),
            overflow: None,
            max,
        }
    }

    /// Applies `update` to the series of `key`, creating it with `make` while there is room
    /// and using the overflow series (made by `make_overflow`) when there is none. Returns
    /// whether the data went to the overflow series.
    fn update(
        &mut self,
        key: &[u8],
        make: impl FnOnce() -> S,
        make_overflow: impl FnOnce() -> S,
        update: impl FnOnce(&mut S),
    ) -> bool {
        if let Some(s) = self.series.get_mut(key) {
            update(s);
            return false;
        }
        if self.series.len() >= self.max {
            update(self.overflow.get_or_insert_with(make_overflow));
            return true;
        }
        let mut s = make();
        update(&mut s);
        self.series.insert(key.into(), s);
        false
    }

    /// Drops series last updated at or before `cutoff`; returns how many went.
    fn expire(&mut self, cutoff: Instant, meta: impl Fn(&S) -> &Meta) -> u64 {
        let before = self.series.len();
        self.series.retain(|_, s| meta(s).last_seen > cutoff);
        let mut gone = (before - self.series.len()) as u64;
        if self
            .overflow
            .as_ref()
            .is_some_and(|s| meta(s).last_seen <= cutoff)
        {
            self.overflow = None;
            gone += 1;
        }
        gone
    }

    /// Every series, in key order (the overflow series last), for stable output.
    fn sorted_mut(&mut self) -> Vec<&mut S> {
        let mut all: Vec<(&Box<[u8]>, &mut S)> = self.series.iter_mut().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out: Vec<&mut S> = all.into_iter().map(|(_, s)| s).collect();
        out.extend(self.overflow.as_mut());
        out
    }
}

/// The data points of one resource group (a service, or the overflow group).
#[derive(Default)]
struct Group {
    requests: Vec<NumberDataPoint>,
    errors: Vec<NumberDataPoint>,
    durations: Vec<HistogramDataPoint>,
    quantiles: Vec<NumberDataPoint>,
}

/// What one flush produced.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    /// The metrics, one resource per service (and one for the overflow series).
    pub(crate) resource_metrics: Vec<ResourceMetrics>,
    /// Series dropped for idleness in this flush, per [`Kind`].
    pub(crate) expired: [u64; 3],
    /// Series held after the flush (overflow series included), per [`Kind`].
    pub(crate) series: [usize; 3],
}

/// All series of one connector.
#[derive(Debug)]
pub(crate) struct Aggregator {
    temporality: Temporality,
    bounds: Vec<f64>,
    exemplars: bool,
    quantiles: Option<(usize, u8, Vec<f64>)>,
    expiry: Option<Duration>,
    dimension_names: Vec<String>,
    requests: Family<CounterSeries>,
    errors: Family<CounterSeries>,
    durations: Family<HistogramSeries>,
    /// Where a request's series key is built, reused.
    key: Vec<u8>,
    /// Where windows are merged at flush time, reused.
    scratch: Scratch,
}

fn push_text(key: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            key.extend_from_slice(&(v.len() as u32).to_le_bytes());
            key.extend_from_slice(v.as_bytes());
        }
        None => key.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

/// A new series' identity: service, method, endpoint, then `extra` (status code or error
/// type), then the configured dimensions.
fn series_meta(
    dimension_names: &[String],
    r: &Request<'_>,
    extra: Option<(&str, &str)>,
    now: Instant,
    wall: u64,
) -> Meta {
    let mut attributes = Vec::with_capacity(4 + dimension_names.len());
    attributes.push(string("service", r.service.as_ref()));
    if let Some(m) = &r.method {
        attributes.push(string("method", m.as_ref()));
    }
    if let Some(e) = &r.endpoint {
        attributes.push(string("endpoint", e.as_ref()));
    }
    if let Some((k, v)) = extra {
        attributes.push(string(k, v));
    }
    for (name, value) in dimension_names.iter().zip(&r.dimensions) {
        if let Some(v) = value {
            attributes.push(string(name, v.as_ref()));
        }
    }
    Meta {
        attributes,
        service: Some(r.service.to_string()),
        start_unix_nano: wall,
        last_seen: now,
    }
}

fn overflow_meta(now: Instant, wall: u64) -> Meta {
    Meta {
        attributes: vec![KeyValue {
            key: OVERFLOW_ATTRIBUTE.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
            ..Default::default()
        }],
        service: None,
        start_unix_nano: wall,
        last_seen: now,
    }
}

impl Aggregator {
    pub(crate) fn new(config: &SliConfig) -> Aggregator {
        let q = &config.quantiles;
        let expiry = config.series_expiry.get();
        Aggregator {
            temporality: config.temporality,
            bounds: config.histogram.buckets.clone(),
            exemplars: config.exemplars.enabled,
            quantiles: q.enabled.then(|| {
                (
                    q.slots(config.flush_interval.get()),
                    q.significant_digits,
                    q.values.clone(),
                )
            }),
            expiry: (!expiry.is_zero()).then_some(expiry),
            dimension_names: config.dimensions.iter().map(|d| d.name.clone()).collect(),
            requests: Family::new(config.max_series),
            errors: Family::new(config.max_series),
            durations: Family::new(config.max_series),
            key: Vec::with_capacity(128),
            scratch: Scratch::default(),
        }
    }

    /// Adds one request. Returns, per [`Kind`], whether it went to the overflow series.
    pub(crate) fn record(&mut self, r: &Request<'_>, now: Instant, wall: u64) -> [bool; 3] {
        let mut overflowed = [false; 3];
        let Aggregator {
            bounds,
            exemplars,
            quantiles,
            dimension_names,
            requests,
            errors,
            durations,
            key,
            ..
        } = self;
        let dims = dimension_names.as_slice();
        key.clear();
        push_text(key, Some(&r.service));
        push_text(key, r.method.as_deref());
        push_text(key, r.endpoint.as_deref());
        for d in &r.dimensions {
            push_text(key, d.as_deref());
        }
        let base = key.len();

        // Durations: service, method, endpoint (and dimensions), as the seed's histogram.
        if let Some(d) = r.duration {
            let bucket = bounds.partition_point(|b| *b < d);
            let sample = r.trace.filter(|_| *exemplars).map(|t| {
                let mut s = Sample {
                    value: d,
                    time_unix_nano: t.time_unix_nano,
                    trace_id: [0; 16],
                    span_id: [0; 8],
                };
                s.trace_id.copy_from_slice(t.trace_id);
                s.span_id.copy_from_slice(t.span_id);
                s
            });
            let buckets = bounds.len() + 1;
            let window = quantiles
                .as_ref()
                .map(|(slots, digits, _)| (*slots, *digits));
            let make_hist = |meta: Meta| HistogramSeries {
                meta,
                count: 0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                exemplars: Vec::new(),
                counts: vec![0; buckets],
                window: window.map(|(slots, digits)| Window::new(slots, digits)),
            };
            overflowed[Kind::Duration as usize] = durations.update(
                key,
                || make_hist(series_meta(dims, r, None, now, wall)),
                || make_hist(overflow_meta(now, wall)),
                |s| {
                    s.meta.last_seen = now;
                    s.count += 1;
                    s.sum += d;
                    s.min = s.min.min(d);
                    s.max = s.max.max(d);
                    if let Some(c) = s.counts.get_mut(bucket) {
                        *c += 1;
                    }
                    if let Some(sample) = sample {
                        if s.exemplars.is_empty() {
                            s.exemplars = vec![None; buckets];
                        }
                        if let Some(slot) = s.exemplars.get_mut(bucket)
                            && slot.is_none()
                        {
                            *slot = Some(sample);
                        }
                    }
                    if let Some(w) = s.window.as_mut() {
                        w.record(d);
                    }
                },
            );
        }

        // Requests: plus status_code.
        key.truncate(base);
        match r.status_code {
            Some(c) => {
                key.push(1);
                key.extend_from_slice(&c.to_le_bytes());
            }
            None => key.push(0),
        }
        let bump = |s: &mut CounterSeries| {
            s.meta.last_seen = now;
            s.value += 1;
        };
        overflowed[Kind::Requests as usize] = requests.update(
            key,
            || {
                let code = r.status_code.map(|c| c.to_string());
                let extra = code.as_deref().map(|c| ("status_code", c));
                CounterSeries {
                    meta: series_meta(dims, r, extra, now, wall),
                    value: 0,
                }
            },
            || CounterSeries {
                meta: overflow_meta(now, wall),
                value: 0,
            },
            bump,
        );

        // Errors: plus error_type.
        if let Some(error_type) = &r.error_type {
            key.truncate(base);
            push_text(key, Some(error_type));
            overflowed[Kind::Errors as usize] = errors.update(
                key,
                || CounterSeries {
                    meta: series_meta(dims, r, Some(("error_type", error_type)), now, wall),
                    value: 0,
                },
                || CounterSeries {
                    meta: overflow_meta(now, wall),
                    value: 0,
                },
                bump,
            );
        }
        overflowed
    }

    /// Series held per [`Kind`], overflow series included.
    pub(crate) fn series_counts(&self) -> [usize; 3] {
        [
            self.requests.series.len() + usize::from(self.requests.overflow.is_some()),
            self.errors.series.len() + usize::from(self.errors.overflow.is_some()),
            self.durations.series.len() + usize::from(self.durations.overflow.is_some()),
        ]
    }

    /// Expires idle series and emits the rest as of `wall` (Unix nanoseconds).
    pub(crate) fn flush(&mut self, now: Instant, wall: u64) -> Flushed {
        let mut flushed = Flushed::default();
        if let Some(expiry) = self.expiry
            && let Some(cutoff) = now.checked_sub(expiry)
        {
            flushed.expired = [
                self.requests.expire(cutoff, |s| &s.meta),
                self.errors.expire(cutoff, |s| &s.meta),
                self.durations.expire(cutoff, |s| &s.meta),
            ];
        }
        let delta = self.temporality == Temporality::Delta;
        let mut groups: BTreeMap<Option<String>, Group> = BTreeMap::new();
        for (family, is_errors) in [(&mut self.requests, false), (&mut self.errors, true)] {
            for s in family.sorted_mut() {
                if delta && s.value == 0 {
                    s.meta.start_unix_nano = wall;
                    continue;
                }
                let point = NumberDataPoint {
                    attributes: s.meta.attributes.clone(),
                    start_time_unix_nano: s.meta.start_unix_nano,
                    time_unix_nano: wall,
                    value: Some(number_data_point::Value::AsInt(
                        i64::try_from(s.value).unwrap_or(i64::MAX),
                    )),
                    ..Default::default()
                };
                let group = groups.entry(s.meta.service.clone()).or_default();
                if is_errors {
                    group.errors.push(point);
                } else {
                    group.requests.push(point);
                }
                if delta {
                    s.value = 0;
                    s.meta.start_unix_nano = wall;
                }
            }
        }
        let quantiles = self.quantiles.as_ref().map(|(_, _, q)| q.as_slice());
        for s in self.durations.sorted_mut() {
            if let (Some(w), Some(qs)) = (s.window.as_mut(), quantiles) {
                if let Some(values) = w.quantiles(qs, &mut self.scratch) {
                    let group = groups.entry(s.meta.service.clone()).or_default();
                    for (q, v) in qs.iter().zip(values) {
                        let mut attributes = s.meta.attributes.clone();
                        attributes.push(string("quantile", q.to_string()));
                        group.quantiles.push(NumberDataPoint {
                            attributes,
                            time_unix_nano: wall,
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..Default::default()
                        });
                    }
                }
                w.rotate();
            }
            if delta && s.count == 0 {
                s.meta.start_unix_nano = wall;
                continue;
            }
            let exemplars = s
                .exemplars
                .iter_mut()
                .filter_map(Option::take)
                .map(|e| Exemplar {
                    time_unix_nano: e.time_unix_nano,
                    trace_id: e.trace_id.to_vec(),
                    span_id: e.span_id.to_vec(),
                    value: Some(exemplar::Value::AsDouble(e.value)),
                    ..Default::default()
                })
                .collect();
            let group = groups.entry(s.meta.service.clone()).or_default();
            group.durations.push(HistogramDataPoint {
                attributes: s.meta.attributes.clone(),
                start_time_unix_nano: s.meta.start_unix_nano,
                time_unix_nano: wall,
                count: s.count,
                sum: Some(s.sum),
                bucket_counts: s.counts.clone(),
                explicit_bounds: self.bounds.clone(),
                exemplars,
                min: (s.count > 0).then_some(s.min),
                max: (s.count > 0).then_some(s.max),
                ..Default::default()
            });
            if delta {
                s.count = 0;
                s.sum = 0.0;
                s.min = f64::INFINITY;
                s.max = f64::NEG_INFINITY;
                s.counts.iter_mut().for_each(|c| *c = 0);
                s.meta.start_unix_nano = wall;
            }
        }
        let temporality = match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as i32;
        // Named services first, the overflow group last.
        let (overflow, named): (Vec<_>, Vec<_>) = groups
            .into_iter()
            .partition(|(service, _)| service.is_none());
        flushed.resource_metrics = named
            .into_iter()
            .chain(overflow)
            .map(|(service, g)| resource_metrics(service, g, temporality))
            .collect();
        flushed.series = self.series_counts();
        flushed
    }
}

fn sum(
    name: &str,
    description: &str,
    unit: &str,
    points: Vec<NumberDataPoint>,
    temporality: i32,
) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn resource_metrics(service: Option<String>, g: Group, temporality: i32) -> ResourceMetrics {
    let mut metrics = Vec::with_capacity(4);
    if !g.requests.is_empty() {
        metrics.push(sum(
            REQUESTS,
            "Total HTTP requests",
            "{request}",
            g.requests,
            temporality,
        ));
    }
    if !g.errors.is_empty() {
        metrics.push(sum(
            ERRORS,
            "Total HTTP errors",
            "{error}",
            g.errors,
            temporality,
        ));
    }
    if !g.durations.is_empty() {
        metrics.push(Metric {
            name: DURATION.into(),
            description: "HTTP request duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: g.durations,
                aggregation_temporality: temporality,
            })),
            ..Default::default()
        });
    }
    if !g.quantiles.is_empty() {
        metrics.push(Metric {
            name: QUANTILES.into(),
            description: "HTTP request duration percentiles over a sliding window".into(),
            unit: "s".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: g.quantiles,
            })),
            ..Default::default()
        });
    }
    ResourceMetrics {
        resource: Some(Resource {
            attributes: service
                .map(|s| vec![string("service.name", &s)])
                .unwrap_or_default(),
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(pipeline_core::model::sightline_scope(SCOPE_NAME)),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}
