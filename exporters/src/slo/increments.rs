//! From metric data points to per-SLO event increments.
//!
//! The SLO selectors name metrics (`http.requests`, `http.errors`, `http.request.duration` from
//! the `sli` connector, or any counters) and attribute matchers. Each matching point becomes
//! (SLO, time, total, bad) increments:
//!
//! - **delta** points are increments as they are;
//! - **cumulative** points are turned into increments per series (metric, resource and point
//!   attributes): the tracker keeps each series' start time and last value, and adds the
//!   difference. A new start time or a smaller value is a reset: the value counts from 0. The
//!   first point of a series never seen counts in full only if the series started after this
//!   exporter did (it began under our watch); otherwise it is the baseline, as Prometheus'
//!   `increase()` treats it, since what came before was counted by whoever watched then.
//!
//! So each replica adds exactly the increments of the data it received, and N replicas fed
//! disjoint halves add up to what one fed all would. The tracker holds at most `max_series`
//! series (about 64 bytes each); when full, series idle for an hour of data time are
//! forgotten, and points of further new series are dropped and counted.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use pipeline_core::attributes::{find, hash_attributes, to_text};
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, NumberDataPoint, ResourceMetrics, metric,
    number_data_point,
};
use serde::{Deserialize, Serialize};

use super::config::{Indicator, Matchers, SloDefinition, bound_index, seconds_label};
use super::state::Counts;

/// Drop reasons counted in `sightline_component_items_dropped_total`.
pub mod reason {
    /// The series tracker is full.
    pub const SERIES_LIMIT: &str = "slo_series_limit";
    /// A latency threshold is not a bucket boundary of the histogram received.
    pub const NOT_A_BOUNDARY: &str = "slo_threshold_not_a_bucket";
    /// The point is older than every matching SLO's window.
    pub const OUTSIDE_WINDOW: &str = "slo_outside_window";
    /// The point's time is more than an hour ahead of the wall clock.
    pub const FUTURE: &str = "slo_timestamp_in_future";
    /// A negative or non-finite counter value.
    pub const INVALID_VALUE: &str = "slo_invalid_value";
    /// The metric's type does not fit the selector (a sum where a histogram is needed).
    pub const WRONG_TYPE: &str = "slo_wrong_metric_type";
    /// Redis is unreachable and the local buffer is full.
    pub const BUFFER_FULL: &str = "slo_store_buffer_full";
}

/// How a selected series feeds an SLO's counts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// Adds to total (availability `total`).
    Total,
    /// Adds to bad (availability `errors`).
    Bad,
    /// Subtracts from bad (ratio `good`).
    Good,
    /// Adds to total and bad (ratio `total`; good events are subtracted again).
    RatioTotal,
    /// Histogram: count to total, count above the threshold (seconds) to bad.
    Latency(f64),
}

#[derive(Debug, Clone)]
struct Use {
    slo: usize,
    role: Role,
    matchers: Matchers,
}

/// The last value of one cumulative series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    start: u64,
    last_time: u64,
    values: [i64; 2],
}

/// Cumulative series' last values, bounded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeriesTracker {
    series: HashMap<u64, SeriesState>,
}

/// Data time after which an idle series may be forgotten when the tracker is full.
const IDLE_NANOS: u64 = 3600 * 1_000_000_000;

impl SeriesTracker {
    /// Series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The increment a cumulative point adds, `None` when the tracker is full.
    fn increment(
        &mut self,
        key: u64,
        start: u64,
        time: u64,
        values: [i64; 2],
        watch_start: u64,
        max: usize,
    ) -> Option<[i64; 2]> {
        if let Some(s) = self.series.get_mut(&key) {
            if time < s.last_time || (time == s.last_time && start == s.start) {
                // Out of order or a repeat: nothing new.
                return Some([0, 0]);
            }
            let reset = start != s.start || values[0] < s.values[0] || values[1] < s.values[1];
            let inc = if reset {
                values
            } else {
                [values[0] - s.values[0], values[1] - s.values[1]]
            };
            *s = SeriesState {
                start,
                last_time: time,
                values,
            };
            return Some(inc);
        }
        if self.series.len() >= max {
            let newest = self.series.values().map(|s| s.last_time).max().unwrap_or(0);
            let cutoff = newest.saturating_sub(IDLE_NANOS);
            self.series.retain(|_, s| s.last_time >= cutoff);
            if self.series.len() >= max {
                return None;
            }
        }
        self.series.insert(
            key,
            SeriesState {
                start,
                last_time: time,
                values,
            },
        );
        Some(if start != 0 && start >= watch_start {
            values
        } else {
            [0, 0]
        })
    }
}

/// One increment for one SLO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Increment {
    /// The SLO's position in the config.
    pub slo: usize,
    /// When (Unix seconds).
    pub time: u64,
    /// What it adds.
    pub counts: Counts,
}

/// What one batch yields.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Increments to add to the store.
    pub increments: Vec<Increment>,
    /// Points dropped, by reason.
    pub dropped: Vec<(&'static str, usize)>,
    /// Problems to show on an SLO (position, message).
    pub problems: Vec<(usize, String)>,
    /// The newest point time seen (Unix nanoseconds).
    pub newest: u64,
}

impl Extracted {
    fn drop_point(&mut self, reason: &'static str) {
        match self.dropped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.dropped.push((reason, 1)),
        }
    }
}

/// The selectors of every SLO, by metric name.
#[derive(Debug, Clone)]
pub struct Selectors {
    by_metric: HashMap<String, Vec<Use>>,
    windows: Vec<u64>,
}

impl Selectors {
    /// The selectors of `defs`.
    pub fn new(defs: &[SloDefinition]) -> Selectors {
        let mut by_metric: HashMap<String, Vec<Use>> = HashMap::new();
        let mut add = |metric: &str, slo: usize, role: Role, matchers: &Matchers| {
            by_metric.entry(metric.to_string()).or_default().push(Use {
                slo,
                role,
                matchers: matchers.clone(),
            });
        };
        for (slo, def) in defs.iter().enumerate() {
            match &def.indicator {
                Indicator::Availability(a) => {
                    add(&a.total, slo, Role::Total, &a.matchers);
                    add(&a.errors, slo, Role::Bad, &a.matchers);
                }
                Indicator::Latency(l) => add(
                    &l.histogram,
                    slo,
                    Role::Latency(l.threshold.get().as_secs_f64()),
                    &l.matchers,
                ),
                Indicator::Ratio(r) => {
                    add(&r.good.metric, slo, Role::Good, &r.good.matchers);
                    add(&r.total.metric, slo, Role::RatioTotal, &r.total.matchers);
                }
            }
        }
        Selectors {
            by_metric,
            windows: defs.iter().map(|d| d.window.get().as_secs()).collect(),
        }
    }

    /// Turns a batch's points into increments. `clock` is the data clock (Unix nanoseconds)
    /// for points without a time, `wall` the wall clock (future points are refused),
    /// `watch_start` when this exporter started (see the module docs).
    pub fn extract(
        &self,
        resource_metrics: &[ResourceMetrics],
        tracker: &mut SeriesTracker,
        ctx: &ExtractContext,
    ) -> Extracted {
        let mut out = Extracted::default();
        for rm in resource_metrics {
            let resource: &[KeyValue] = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default();
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let Some(uses) = self.by_metric.get(&m.name) else {
                    continue;
                };
                let mut point = PointCtx {
                    metric: &m.name,
                    unit: &m.unit,
                    resource,
                    uses,
                    tracker,
                    ctx,
                    out: &mut out,
                    windows: &self.windows,
                };
                match &m.data {
                    Some(metric::Data::Sum(s)) => {
                        let delta =
                            s.aggregation_temporality == AggregationTemporality::Delta as i32;
                        for p in &s.data_points {
                            point.number(p, delta);
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        let delta =
                            h.aggregation_temporality == AggregationTemporality::Delta as i32;
                        for p in &h.data_points {
                            point.histogram(p, delta);
                        }
                    }
                    other => {
                        let points = match other {
                            Some(metric::Data::Gauge(g)) => g.data_points.len(),
                            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
                            Some(metric::Data::Summary(s)) => s.data_points.len(),
                            _ => 0,
                        };
                        for _ in 0..points {
                            point.out.drop_point(reason::WRONG_TYPE);
                        }
                        for u in uses {
                            point.out.problems.push((
                                u.slo,
                                format!(
                                    "{} is not a sum or an explicit-bucket histogram; it cannot count events",
                                    m.name
                                ),
                            ));
                        }
                    }
                }
            }
        }
        out
    }
}

/// The clocks an extraction runs with.
#[derive(Debug, Clone, Copy)]
pub struct ExtractContext {
    /// The data clock (Unix nanoseconds): the time of points that have none.
    pub clock: u64,
    /// The wall clock (Unix nanoseconds).
    pub wall: u64,
    /// When this exporter started (Unix nanoseconds).
    pub watch_start: u64,
    /// Most series the tracker holds.
    pub max_series: usize,
}

struct PointCtx<'a> {
    metric: &'a str,
    unit: &'a str,
    resource: &'a [KeyValue],
    uses: &'a [Use],
    tracker: &'a mut SeriesTracker,
    ctx: &'a ExtractContext,
    out: &'a mut Extracted,
    windows: &'a [u64],
}

fn matches(matchers: &Matchers, attributes: &[KeyValue], resource: &[KeyValue]) -> bool {
    matchers.iter().all(|(k, want)| {
        find(attributes, k)
            .or_else(|| find(resource, k))
            .and_then(to_text)
            .is_some_and(|v| v == want.as_str())
    })
}

/// Seconds per unit of a histogram's unit (`s`, `ms`, `us`, `ns`, `min`; seconds if unset).
fn unit_seconds(unit: &str) -> f64 {
    match unit {
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "min" => 60.0,
        "h" => 3600.0,
        _ => 1.0,
    }
}

impl PointCtx<'_> {
    fn series_key(&self, attributes: &[KeyValue], view: usize) -> u64 {
        let mut h = DefaultHasher::new();
        self.metric.hash(&mut h);
        hash_attributes(self.resource, &mut h);
        hash_attributes(attributes, &mut h);
        view.hash(&mut h);
        h.finish()
    }

    /// The time of a point some selector matches; `None` when none does (the point is not
    /// for any SLO) or when it is in the future (dropped and counted).
    fn selected_time(&mut self, attributes: &[KeyValue], t: u64) -> Option<u64> {
        if !self
            .uses
            .iter()
            .any(|u| matches(&u.matchers, attributes, self.resource))
        {
            return None;
        }
        let t = if t == 0 { self.ctx.clock } else { t };
        if t > self.ctx.wall.saturating_add(IDLE_NANOS) {
            self.out.drop_point(reason::FUTURE);
            return None;
        }
        self.out.newest = self.out.newest.max(t);
        Some(t)
    }

    /// The increment of one tracked quantity of a point.
    fn increment(
        &mut self,
        attributes: &[KeyValue],
        view: usize,
        start: u64,
        time: u64,
        values: [i64; 2],
        delta: bool,
    ) -> Option<[i64; 2]> {
        if delta {
            return Some(values);
        }
        let key = self.series_key(attributes, view);
        self.tracker.increment(
            key,
            start,
            time,
            values,
            self.ctx.watch_start,
            self.ctx.max_series,
        )
    }

    /// Adds `counts` to `slo` at `time`; false if it is older than the SLO's window.
    fn add(&mut self, slo: usize, time: u64, counts: Counts) -> bool {
        let secs = time / 1_000_000_000;
        let window = self.windows.get(slo).copied().unwrap_or(0);
        if secs.saturating_add(window) < self.ctx.clock / 1_000_000_000 {
            return false;
        }
        if !counts.is_zero() {
            self.out.increments.push(Increment {
                slo,
                time: secs,
                counts,
            });
        }
        true
    }

    fn number(&mut self, p: &NumberDataPoint, delta: bool) {
        let value = match p.value {
            Some(number_data_point::Value::AsInt(i)) if i >= 0 => i,
            Some(number_data_point::Value::AsDouble(d)) if d.is_finite() && d >= 0.0 => {
                d.round() as i64
            }
            _ => {
                self.out.drop_point(reason::INVALID_VALUE);
                return;
            }
        };
        let uses = self.uses;
        let Some(time) = self.selected_time(&p.attributes, p.time_unix_nano) else {
            return;
        };
        let Some([v, _]) = self.increment(
            &p.attributes,
            0,
            p.start_time_unix_nano,
            time,
            [value, 0],
            delta,
        ) else {
            self.out.drop_point(reason::SERIES_LIMIT);
            return;
        };
        let mut taken = false;
        let mut failed = None;
        for u in uses {
            if !matches(&u.matchers, &p.attributes, self.resource) {
                continue;
            }
            let counts = match u.role {
                Role::Total => Counts { total: v, bad: 0 },
                Role::Bad => Counts { total: 0, bad: v },
                Role::Good => Counts { total: 0, bad: -v },
                Role::RatioTotal => Counts { total: v, bad: v },
                // A histogram selector on a sum: the SLO shows the problem.
                Role::Latency(_) => {
                    self.out.problems.push((
                        u.slo,
                        format!("{} is a sum; a latency SLO needs a histogram", self.metric),
                    ));
                    failed = Some(reason::WRONG_TYPE);
                    continue;
                }
            };
            taken |= self.add(u.slo, time, counts);
        }
        if !taken {
            self.out
                .drop_point(failed.unwrap_or(reason::OUTSIDE_WINDOW));
        }
    }

    fn histogram(&mut self, p: &HistogramDataPoint, delta: bool) {
        let uses = self.uses;
        let Some(time) = self.selected_time(&p.attributes, p.time_unix_nano) else {
            return;
        };
        let scale = unit_seconds(self.unit);
        let bounds: Vec<f64> = p.explicit_bounds.iter().map(|b| b * scale).collect();
        let mut taken = false;
        let mut failed = None;
        let mut views: Vec<(usize, Option<[i64; 2]>)> = Vec::new();
        for u in uses {
            if !matches(&u.matchers, &p.attributes, self.resource) {
                continue;
            }
            let Role::Latency(threshold) = u.role else {
                self.out.problems.push((
                    u.slo,
                    format!("{} is a histogram; this selector needs a sum", self.metric),
                ));
                failed = Some(reason::WRONG_TYPE);
                continue;
            };
            let Some(i) = bound_index(&bounds, threshold) else {
                let available: Vec<String> = bounds.iter().map(|b| seconds_label(*b)).collect();
                self.out.problems.push((
                    u.slo,
                    format!(
                        "threshold {} is not a bucket boundary of {}; its boundaries are {}",
                        seconds_label(threshold),
                        self.metric,
                        if available.is_empty() {
                            "none".to_string()
                        } else {
                            available.join(", ")
                        }
                    ),
                ));
                failed = Some(reason::NOT_A_BOUNDARY);
                continue;
            };
            // SLOs with the same threshold share one tracked series: compute it once.
            let inc = match views.iter().find(|(v, _)| *v == i) {
                Some((_, inc)) => *inc,
                None => {
                    let good: u64 = p.bucket_counts.iter().take(i + 1).sum();
                    let count = i64::try_from(p.count).unwrap_or(i64::MAX);
                    let good = i64::try_from(good).unwrap_or(i64::MAX).min(count);
                    let inc = self.increment(
                        &p.attributes,
                        i + 1,
                        p.start_time_unix_nano,
                        time,
                        [count, good],
                        delta,
                    );
                    views.push((i, inc));
                    inc
                }
            };
            match inc {
                Some([dc, dg]) => {
                    let counts = Counts {
                        total: dc,
                        bad: dc - dg,
                    };
                    taken |= self.add(u.slo, time, counts);
                }
                None => failed = Some(reason::SERIES_LIMIT),
            }
        }
        if !taken {
            self.out
                .drop_point(failed.unwrap_or(reason::OUTSIDE_WINDOW));
        }
    }
}
