//! Delta to cumulative: Prometheus only knows totals since a start, so delta sums and
//! histograms are added up per series before translation.
//!
//! [`DeltaToCumulative::convert`] rewrites a metrics payload in place: every delta point
//! becomes the running total of its series (keyed by resource, metric and attributes), with
//! the start time of the series' first point, and its metric says cumulative. Memory is
//! bounded: at most `max_series` running totals, each forgotten after `expiry` without a
//! point; a new series beyond the bound has its point removed and counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use pipeline_core::proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint,
    ResourceMetrics, metric, number_data_point,
};
use prost::Message;

/// Drop reason for points of new series when a series table is full.
pub const MAX_SERIES: &str = "max_series";

/// A running total.
#[derive(Debug, Clone)]
enum Total {
    Number(number_data_point::Value),
    Histogram(HistogramDataPoint),
    Exponential(ExponentialHistogramDataPoint),
}

#[derive(Debug)]
struct Entry {
    start_nanos: u64,
    total: Total,
    seen: Instant,
}

/// The running totals of delta series.
#[derive(Debug)]
pub struct DeltaToCumulative {
    series: HashMap<Vec<u8>, Entry>,
    max_series: usize,
    expiry: Duration,
    last_sweep: Instant,
}

const DELTA: i32 = AggregationTemporality::Delta as i32;
const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

impl DeltaToCumulative {
    /// Holds at most `max_series` totals, each for `expiry` after its last point (`0`:
    /// forever).
    pub fn new(max_series: usize, expiry: Duration) -> DeltaToCumulative {
        DeltaToCumulative {
            series: HashMap::new(),
            max_series,
            expiry,
            last_sweep: Instant::now(),
        }
    }

    /// Series held now.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Turns every delta point of `payload` into its series' running total; returns how
    /// many points were removed because the table was full.
    pub fn convert(&mut self, payload: &mut [ResourceMetrics]) -> usize {
        let now = Instant::now();
        self.sweep(now);
        let mut dropped = 0;
        for rm in payload.iter_mut() {
            let mut key_head = Vec::new();
            if let Some(r) = &rm.resource {
                r.encode(&mut key_head).unwrap_or_default();
            }
            for sm in &mut rm.scope_metrics {
                for m in &mut sm.metrics {
                    let mut head = key_head.clone();
                    prost::encoding::string::encode(1, &m.name, &mut head);
                    prost::encoding::string::encode(2, &m.unit, &mut head);
                    dropped += self.convert_metric(&head, m.data.as_mut(), now);
                }
            }
        }
        dropped
    }

    fn convert_metric(
        &mut self,
        head: &[u8],
        data: Option<&mut metric::Data>,
        now: Instant,
    ) -> usize {
        match data {
            Some(metric::Data::Sum(s)) if s.aggregation_temporality == DELTA => {
                s.aggregation_temporality = CUMULATIVE;
                self.convert_points(
                    &mut s.data_points,
                    head,
                    3,
                    now,
                    |p| &p.attributes,
                    Self::add_number,
                )
            }
            Some(metric::Data::Histogram(h)) if h.aggregation_temporality == DELTA => {
                h.aggregation_temporality = CUMULATIVE;
                self.convert_points(
                    &mut h.data_points,
                    head,
                    4,
                    now,
                    |p| &p.attributes,
                    Self::add_histogram,
                )
            }
            Some(metric::Data::ExponentialHistogram(h)) if h.aggregation_temporality == DELTA => {
                h.aggregation_temporality = CUMULATIVE;
                self.convert_points(
                    &mut h.data_points,
                    head,
                    5,
                    now,
                    |p| &p.attributes,
                    Self::add_histogram,
                )
            }
            _ => 0,
        }
    }

    /// Runs `add` on every point, removing those it has no room for; returns how many.
    fn convert_points<P>(
        &mut self,
        points: &mut Vec<P>,
        head: &[u8],
        tag: u8,
        now: Instant,
        attributes: fn(&P) -> &[KeyValue],
        add: fn(&mut Self, Vec<u8>, &mut P, Instant) -> bool,
    ) -> usize {
        let before = points.len();
        points.retain_mut(|p| {
            let key = key(head, tag, attributes(p));
            add(self, key, p, now)
        });
        before - points.len()
    }

    /// The entry for `key`, made by `init` when there is room; `None` when full.
    fn entry(
        &mut self,
        key: Vec<u8>,
        now: Instant,
        init: impl FnOnce() -> Entry,
    ) -> Option<(&mut Entry, bool)> {
        let full = self.series.len() >= self.max_series;
        match self.series.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let e = o.into_mut();
                e.seen = now;
                Some((e, false))
            }
            std::collections::hash_map::Entry::Vacant(_) if full => None,
            std::collections::hash_map::Entry::Vacant(v) => Some((v.insert(init()), true)),
        }
    }

    fn add_number(&mut self, key: Vec<u8>, p: &mut NumberDataPoint, now: Instant) -> bool {
        let Some(value) = p.value else { return true };
        let start = p.start_time_unix_nano;
        let Some((entry, fresh)) = self.entry(key, now, || Entry {
            start_nanos: start,
            total: Total::Number(value),
            seen: now,
        }) else {
            return false;
        };
        if !fresh && let Total::Number(total) = &mut entry.total {
            use number_data_point::Value::{AsDouble, AsInt};
            *total = match (*total, value) {
                (AsInt(a), AsInt(b)) => AsInt(a.saturating_add(b)),
                (a, b) => AsDouble(as_f64(a) + as_f64(b)),
            };
        }
        if let Total::Number(total) = entry.total {
            p.value = Some(total);
        }
        p.start_time_unix_nano = entry.start_nanos;
        true
    }

    /// Adds histogram point `p` into its series' total (when the bucket layout changed the
    /// series starts over from `p`), then writes the total back into `p` with the series'
    /// start time. False when the table is full.
    fn add_histogram<P: HistogramPoint>(&mut self, key: Vec<u8>, p: &mut P, now: Instant) -> bool {
        let start = p.start();
        let Some((entry, fresh)) = self.entry(key, now, || Entry {
            start_nanos: start,
            total: p.clone().into_total(),
            seen: now,
        }) else {
            return false;
        };
        if !fresh && !p.add_to(&mut entry.total) {
            entry.total = p.clone().into_total();
            entry.start_nanos = start;
        }
        p.take_total(&entry.total);
        p.set_start(entry.start_nanos);
        true
    }

    fn sweep(&mut self, now: Instant) {
        if self.expiry.is_zero() || now.duration_since(self.last_sweep) < self.expiry / 4 {
            return;
        }
        self.last_sweep = now;
        let expiry = self.expiry;
        self.series
            .retain(|_, e| now.duration_since(e.seen) < expiry);
    }
}

fn key(head: &[u8], tag: u8, attributes: &[KeyValue]) -> Vec<u8> {
    let mut key = Vec::with_capacity(head.len() + 64);
    key.extend_from_slice(head);
    key.push(tag);
    prost::encoding::message::encode_repeated(3, attributes, &mut key);
    key
}

/// Adds `add`'s counts into `total`, aligning their offsets.
fn add_buckets(total: &mut Option<Buckets>, add: Option<&Buckets>) {
    let Some(add) = add.filter(|b| !b.bucket_counts.is_empty()) else {
        return;
    };
    let t = total.get_or_insert_with(|| Buckets {
        offset: add.offset,
        bucket_counts: Vec::new(),
    });
    if t.bucket_counts.is_empty() {
        t.offset = add.offset;
    }
    let lo = t.offset.min(add.offset);
    let t_end = i64::from(t.offset) + t.bucket_counts.len() as i64;
    let a_end = i64::from(add.offset) + add.bucket_counts.len() as i64;
    let hi = t_end.max(a_end);
    let mut merged = vec![0u64; usize::try_from(hi - i64::from(lo)).unwrap_or(0)];
    for (src_offset, counts) in [
        (t.offset, &t.bucket_counts),
        (add.offset, &add.bucket_counts),
    ] {
        let shift = usize::try_from(src_offset - lo).unwrap_or(0);
        for (i, c) in counts.iter().enumerate() {
            if let Some(slot) = merged.get_mut(shift + i) {
                *slot = slot.saturating_add(*c);
            }
        }
    }
    t.offset = lo;
    t.bucket_counts = merged;
}

fn as_f64(v: number_data_point::Value) -> f64 {
    match v {
        number_data_point::Value::AsDouble(d) => d,
        number_data_point::Value::AsInt(i) => i as f64,
    }
}

/// What delta accumulation needs of the two histogram point types.
trait HistogramPoint: Clone {
    fn start(&self) -> u64;
    fn set_start(&mut self, nanos: u64);
    fn into_total(self) -> Total;
    /// Adds this point into `total`; false when the layouts differ.
    fn add_to(&self, total: &mut Total) -> bool;
    /// Becomes the running `total`.
    fn take_total(&mut self, total: &Total);
}

impl HistogramPoint for HistogramDataPoint {
    fn start(&self) -> u64 {
        self.start_time_unix_nano
    }

    fn set_start(&mut self, nanos: u64) {
        self.start_time_unix_nano = nanos;
    }

    fn into_total(self) -> Total {
        Total::Histogram(self)
    }

    fn add_to(&self, total: &mut Total) -> bool {
        match total {
            Total::Histogram(t)
                if t.explicit_bounds == self.explicit_bounds
                    && t.bucket_counts.len() == self.bucket_counts.len() =>
            {
                for (t, c) in t.bucket_counts.iter_mut().zip(&self.bucket_counts) {
                    *t = t.saturating_add(*c);
                }
                t.count = t.count.saturating_add(self.count);
                (t.sum, t.min, t.max) =
                    add_stats((t.sum, t.min, t.max), (self.sum, self.min, self.max));
                true
            }
            _ => false,
        }
    }

    fn take_total(&mut self, total: &Total) {
        if let Total::Histogram(t) = total {
            self.bucket_counts.clone_from(&t.bucket_counts);
            (self.count, self.sum, self.min, self.max) = (t.count, t.sum, t.min, t.max);
        }
    }
}

impl HistogramPoint for ExponentialHistogramDataPoint {
    fn start(&self) -> u64 {
        self.start_time_unix_nano
    }

    fn set_start(&mut self, nanos: u64) {
        self.start_time_unix_nano = nanos;
    }

    fn into_total(self) -> Total {
        Total::Exponential(self)
    }

    fn add_to(&self, total: &mut Total) -> bool {
        match total {
            Total::Exponential(t)
                if t.scale == self.scale && t.zero_threshold == self.zero_threshold =>
            {
                add_buckets(&mut t.positive, self.positive.as_ref());
                add_buckets(&mut t.negative, self.negative.as_ref());
                t.zero_count = t.zero_count.saturating_add(self.zero_count);
                t.count = t.count.saturating_add(self.count);
                (t.sum, t.min, t.max) =
                    add_stats((t.sum, t.min, t.max), (self.sum, self.min, self.max));
                true
            }
            _ => false,
        }
    }

    fn take_total(&mut self, total: &Total) {
        if let Total::Exponential(t) = total {
            self.positive.clone_from(&t.positive);
            self.negative.clone_from(&t.negative);
            self.zero_count = t.zero_count;
            (self.count, self.sum, self.min, self.max) = (t.count, t.sum, t.min, t.max);
        }
    }
}

type Stats = (Option<f64>, Option<f64>, Option<f64>);

/// (sum, min, max) of two histograms together.
fn add_stats(a: Stats, b: Stats) -> Stats {
    let both = |x: Option<f64>, y: Option<f64>, f: fn(f64, f64) -> f64| match (x, y) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, y) => x.or(y),
    };
    (
        both(a.0, b.0, |x, y| x + y),
        both(a.1, b.1, f64::min),
        both(a.2, b.2, f64::max),
    )
}
