//! The data model: OTLP protobuf types moved through the graph in [`Batch`]es.
//!
//! Receivers decode once into these types, processors mutate them in place, exporters encode
//! straight from them. There is no intermediate representation on the OTLP path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::proto::tonic::logs::v1::ResourceLogs;
use crate::proto::tonic::metrics::v1::{ResourceMetrics, metric::Data};
use crate::proto::tonic::trace::v1::ResourceSpans;
use crate::signal::Signal;

/// The telemetry of one signal.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// Spans, grouped by resource and scope.
    Traces(Vec<ResourceSpans>),
    /// Metrics, grouped by resource and scope.
    Metrics(Vec<ResourceMetrics>),
    /// Log records, grouped by resource and scope.
    Logs(Vec<ResourceLogs>),
}

impl Payload {
    /// The signal this payload carries.
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
        }
    }

    /// An empty payload of a signal.
    pub fn empty(signal: Signal) -> Payload {
        match signal {
            Signal::Traces => Payload::Traces(Vec::new()),
            Signal::Metrics => Payload::Metrics(Vec::new()),
            Signal::Logs => Payload::Logs(Vec::new()),
        }
    }

    /// Items in the payload: spans, metric data points or log records.
    pub fn item_count(&self) -> usize {
        match self {
            Payload::Traces(rs) => span_count(rs),
            Payload::Metrics(rm) => data_point_count(rm),
            Payload::Logs(rl) => log_record_count(rl),
        }
    }

    /// Moves the content of `other` (of the same signal) to the end of this payload.
    /// Returns `other` back when the signals differ.
    pub fn append(&mut self, other: Payload) -> Result<(), Payload> {
        match (self, other) {
            (Payload::Traces(a), Payload::Traces(mut b)) => a.append(&mut b),
            (Payload::Metrics(a), Payload::Metrics(mut b)) => a.append(&mut b),
            (Payload::Logs(a), Payload::Logs(mut b)) => a.append(&mut b),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// Splits off the first `max_items` items (whole metrics for the metrics signal, so a
    /// metric with many points may exceed the limit) and returns them; `self` keeps the rest.
    pub fn split_front(&mut self, max_items: usize) -> Payload {
        match self {
            Payload::Traces(rs) => Payload::Traces(split_front(rs, max_items)),
            Payload::Logs(rl) => Payload::Logs(split_front(rl, max_items)),
            Payload::Metrics(rm) => Payload::Metrics(split_front(rm, max_items)),
        }
    }
}

/// A resource group that can give up its first items, keeping resource and scope.
trait SplitGroup: Sized {
    /// Moves up to `budget` items into a new group and returns it with its item count.
    fn split(&mut self, budget: usize) -> (Self, usize);
    fn is_empty_group(&self) -> bool;
}

fn split_front<R: SplitGroup>(groups: &mut Vec<R>, max_items: usize) -> Vec<R> {
    let mut out = Vec::new();
    let mut budget = max_items;
    let mut first_empty = 0;
    while budget > 0 && first_empty < groups.len() {
        let (part, n) = groups[first_empty].split(budget);
        budget = budget.saturating_sub(n);
        if groups[first_empty].is_empty_group() {
            first_empty += 1;
        }
        if n > 0 {
            out.push(part);
        }
    }
    groups.drain(..first_empty);
    out
}

macro_rules! impl_split_group {
    ($resource:ty, $scopes:ident, $items:ident, $weight:expr) => {
        impl SplitGroup for $resource {
            fn split(&mut self, budget: usize) -> (Self, usize) {
                let mut taken = Vec::new();
                let mut count = 0usize;
                while count < budget && !self.$scopes.is_empty() {
                    let scope = &mut self.$scopes[0];
                    let mut take = 0usize;
                    let mut weight_sum = 0usize;
                    for item in scope.$items.iter() {
                        let w: usize = $weight(item);
                        if take > 0 && count + weight_sum + w > budget {
                            break;
                        }
                        take += 1;
                        weight_sum += w;
                        if count + weight_sum >= budget {
                            break;
                        }
                    }
                    if take == scope.$items.len() {
                        taken.push(self.$scopes.remove(0));
                    } else {
                        let rest = scope.$items.split_off(take);
                        let front = std::mem::replace(&mut scope.$items, rest);
                        let mut part = scope.clone_without_items();
                        part.$items = front;
                        taken.push(part);
                    }
                    count += weight_sum;
                }
                let mut part = self.clone_without_scopes();
                part.$scopes = taken;
                (part, count)
            }
            fn is_empty_group(&self) -> bool {
                self.$scopes.is_empty()
            }
        }
    };
}

trait CloneShell {
    fn clone_without_items(&self) -> Self;
}
trait CloneResourceShell {
    fn clone_without_scopes(&self) -> Self;
}

macro_rules! impl_shells {
    ($resource:ty, $scopes:ident, $scope:ty, $items:ident) => {
        impl CloneShell for $scope {
            fn clone_without_items(&self) -> Self {
                Self {
                    scope: self.scope.clone(),
                    $items: Vec::new(),
                    schema_url: self.schema_url.clone(),
                }
            }
        }
        impl CloneResourceShell for $resource {
            fn clone_without_scopes(&self) -> Self {
                Self {
                    resource: self.resource.clone(),
                    $scopes: Vec::new(),
                    schema_url: self.schema_url.clone(),
                }
            }
        }
    };
}

use crate::proto::tonic::logs::v1::ScopeLogs;
use crate::proto::tonic::metrics::v1::ScopeMetrics;
use crate::proto::tonic::trace::v1::ScopeSpans;

impl_shells!(ResourceSpans, scope_spans, ScopeSpans, spans);
impl_shells!(ResourceLogs, scope_logs, ScopeLogs, log_records);
impl_shells!(ResourceMetrics, scope_metrics, ScopeMetrics, metrics);
impl_split_group!(ResourceSpans, scope_spans, spans, |_| 1);
impl_split_group!(ResourceLogs, scope_logs, log_records, |_| 1);
impl_split_group!(
    ResourceMetrics,
    scope_metrics,
    metrics,
    |m: &crate::proto::tonic::metrics::v1::Metric| metric_points(m.data.as_ref()).max(1)
);

/// Spans in a list of resource groups.
pub fn span_count(rs: &[ResourceSpans]) -> usize {
    rs.iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Log records in a list of resource groups.
pub fn log_record_count(rl: &[ResourceLogs]) -> usize {
    rl.iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// Metric data points in a list of resource groups (the unit the OpenTelemetry Collector counts).
pub fn data_point_count(rm: &[ResourceMetrics]) -> usize {
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| metric_points(m.data.as_ref()))
        .sum()
}

fn metric_points(data: Option<&Data>) -> usize {
    match data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Whether `id` is a valid trace ID: 16 bytes, not all zero (W3C Trace Context).
pub fn is_valid_trace_id(id: &[u8]) -> bool {
    id.len() == 16 && id.iter().any(|b| *b != 0)
}

/// Whether `id` is a valid span ID: 8 bytes, not all zero (W3C Trace Context).
pub fn is_valid_span_id(id: &[u8]) -> bool {
    id.len() == 8 && id.iter().any(|b| *b != 0)
}

/// A unit of work in the graph: one signal's payload and the context that travels with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The telemetry.
    pub payload: Payload,
    /// Metadata and acknowledgement tokens.
    pub ctx: BatchContext,
}

impl Batch {
    /// A batch with an empty context.
    pub fn new(payload: Payload) -> Batch {
        Batch {
            payload,
            ctx: BatchContext::default(),
        }
    }

    /// Items in the batch.
    pub fn item_count(&self) -> usize {
        self.payload.item_count()
    }

    /// The batch's signal.
    pub fn signal(&self) -> Signal {
        self.payload.signal()
    }

    /// Resolves every acknowledgement token of the batch as delivered: the component that
    /// calls it has handed the data to its destination (a backend accepted it, a file was
    /// written and flushed, an aggregate took it in). Call it exactly when that is true.
    pub fn delivered(self) {
        self.ctx.delivered();
    }

    /// Resolves every acknowledgement token of the batch as not delivered. The caller has
    /// counted the drop with its reason (`sightline_component_items_dropped_total{reason}`);
    /// sources that can (a file tailer, a persistent queue) will offer the data again.
    pub fn dropped(self) {
        self.ctx.dropped();
    }
}

/// What travels with a batch besides the data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchContext {
    /// Acknowledgement tokens of the requests whose data this batch carries. When batches are
    /// merged the tokens are merged; when one is cloned for fan-out the tokens are shared.
    pub acks: Vec<AckToken>,
}

impl BatchContext {
    /// Moves `other`'s tokens into this context (when two batches are merged).
    pub fn merge(&mut self, other: BatchContext) {
        self.acks.extend(other.acks);
    }

    /// Resolves every token as delivered (see [`Batch::delivered`]).
    pub fn delivered(self) {
        for token in self.acks {
            token.delivered();
        }
    }

    /// Resolves every token as not delivered (see [`Batch::dropped`]).
    pub fn dropped(self) {
        for token in self.acks {
            token.dropped();
        }
    }
}

/// An end-to-end acknowledgement token.
///
/// A source that needs to know when its data is safe (a persistent queue, a file tailer's
/// checkpoint) attaches a token; every holder that fails to deliver calls [`AckToken::fail`];
/// when the last clone is dropped the callback runs with the outcome.
#[derive(Clone)]
pub struct AckToken(Arc<AckInner>);

struct AckInner {
    failed: AtomicBool,
    on_done: Option<Box<dyn Fn(bool) + Send + Sync>>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        if let Some(f) = self.on_done.take() {
            f(!self.failed.load(Ordering::Acquire));
        }
    }
}

impl AckToken {
    /// A token whose callback receives `true` when every holder delivered, `false` otherwise.
    pub fn new(on_done: impl Fn(bool) + Send + Sync + 'static) -> AckToken {
        AckToken(Arc::new(AckInner {
            failed: AtomicBool::new(false),
            on_done: Some(Box::new(on_done)),
        }))
    }

    /// Marks the data as not delivered.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }

    /// This holder delivered its copy of the data.
    pub fn delivered(self) {
        drop(self);
    }

    /// This holder could not deliver its copy of the data (and counted the drop).
    pub fn dropped(self) {
        self.fail();
    }
}

impl std::fmt::Debug for AckToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckToken")
            .field("failed", &self.0.failed.load(Ordering::Relaxed))
            .finish()
    }
}

impl PartialEq for AckToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn trace_and_span_id_validity() {
        assert!(is_valid_trace_id(&[1; 16]));
        assert!(!is_valid_trace_id(&[0; 16]));
        assert!(!is_valid_trace_id(&[1; 8]));
        assert!(!is_valid_trace_id(&[]));
        assert!(is_valid_span_id(&[1; 8]));
        assert!(!is_valid_span_id(&[0; 8]));
        assert!(!is_valid_span_id(&[1; 16]));
    }
}
