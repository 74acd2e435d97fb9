//! The data model: OTLP protobuf types moved through the graph in [`Batch`]es.
//!
//! Receivers decode once into these types, processors mutate them in place, exporters encode
//! straight from them. There is no intermediate representation on the OTLP path.
//!
//! # Who owns a batch's fate: the acknowledgement contract
//!
//! A batch carries the [`AckToken`]s of the sources whose data it holds (a file tailer's
//! checkpoint, a persistent queue). Every token is a *handle* that its holder must resolve
//! exactly once, explicitly:
//!
//! * [`Batch::delivered`] when the data reached its destination: a backend accepted it, a
//!   file was written and flushed, an aggregate took it in, a test collector kept it.
//! * [`Batch::dropped`] when it will not get there: after counting the drop with its reason
//!   (`sightline_component_items_dropped_total{reason}`), or when refusing the batch (returning
//!   an error from [`Consumer::consume`](crate::Consumer::consume); the graph counts refusals).
//!
//! Ownership moves with the batch. The caller of `consume` owns it until the call; from the
//! call on, the callee does, whether it returns `Ok` (it passes the batch on, keeps it in a
//! queue or buffer, or resolves it) or an error (it resolves it as dropped before returning).
//! A component that keeps a batch keeps its handles and resolves them when the batch's life
//! ends in it: the exporter helper after the last try, the batch processor through the
//! batches it sends on, a connector when it has taken the data in.
//!
//! Copies carry their own obligation: cloning a batch (a fan-out to several pipelines, a split
//! into parts) clones its handles, and each copy must be resolved by whoever holds it. Merging
//! batches merges their handles. The source's callback runs once, when the last handle is
//! gone, with [`AckOutcome::Delivered`] only if every handle was resolved as delivered.
//!
//! A future that waits before taking a batch on (for room in a queue, for its turn) holds it in
//! a [`WaitingBatch`], so a caller that gives up there refuses the batch (resolves it as
//! dropped) instead of dropping it unresolved.
//!
//! A handle dropped without being resolved (a forgotten path, a future cancelled while it held
//! the batch) counts as *not delivered*, so the next bug of this kind produces a duplicate (the
//! source offers the data again) rather than a silent loss. It is counted in
//! `sightline_ack_unresolved_total{component_id}` under the component that held it last (the
//! graph stamps each handle with the component a batch enters, see [`BatchContext::stamp`]),
//! and in tests it fails the check of [`testing::AckProbe`](crate::testing::AckProbe), whose
//! handles also panic at the drop in debug builds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::proto::tonic::logs::v1::ResourceLogs;
use crate::proto::tonic::metrics::v1::{ResourceMetrics, metric::Data};
use crate::proto::tonic::trace::v1::ResourceSpans;
use crate::signal::Signal;
use crate::wire::EncodedPayload;

// Borrowing twins of the export request messages: same field names, same serde shape.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TracesJson<'a> {
    resource_spans: &'a [ResourceSpans],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricsJson<'a> {
    resource_metrics: &'a [ResourceMetrics],
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LogsJson<'a> {
    resource_logs: &'a [ResourceLogs],
}

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

    /// Writes the payload's export request (`ExportTraceServiceRequest` and its siblings) as
    /// OTLP/JSON, one line without a trailing newline, straight from the resource groups.
    ///
    /// ```
    /// let batch = pipeline_core::testing::span_batch(1);
    /// let mut json = Vec::new();
    /// batch.payload_view().write_json(&mut json).unwrap();
    /// assert!(json.starts_with(b"{\"resourceSpans\":[{"));
    /// # batch.delivered();
    /// ```
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match self {
            Payload::Traces(rs) => serde_json::to_writer(out, &TracesJson { resource_spans: rs }),
            Payload::Metrics(rm) => serde_json::to_writer(
                out,
                &MetricsJson {
                    resource_metrics: rm,
                },
            ),
            Payload::Logs(rl) => serde_json::to_writer(out, &LogsJson { resource_logs: rl }),
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

    /// Whether the payload holds no resource group at all.
    pub fn is_empty(&self) -> bool {
        match self {
            Payload::Traces(rs) => rs.is_empty(),
            Payload::Metrics(rm) => rm.is_empty(),
            Payload::Logs(rl) => rl.is_empty(),
        }
    }

    /// Moves the content of `other` to the end of this payload when the signals match
    /// (callers have checked), leaving a different signal's `other` out.
    pub(crate) fn append_same(&mut self, other: Payload) {
        let _ = self.append(other);
    }

    /// Bytes of the OTLP export request this payload encodes to.
    pub fn encoded_len(&self) -> usize {
        use prost::encoding::message::encoded_len_repeated;
        match self {
            Payload::Traces(rs) => encoded_len_repeated(1, rs),
            Payload::Metrics(rm) => encoded_len_repeated(1, rm),
            Payload::Logs(rl) => encoded_len_repeated(1, rl),
        }
    }

    /// Writes the payload as an OTLP `Export*ServiceRequest` in protobuf: field 1 of every
    /// request is the repeated resource group, so no request message is built.
    pub fn write_request(&self, out: &mut impl bytes::BufMut) {
        use prost::encoding::message::encode_repeated;
        match self {
            Payload::Traces(rs) => encode_repeated(1, rs, out),
            Payload::Metrics(rm) => encode_repeated(1, rm, out),
            Payload::Logs(rl) => encode_repeated(1, rl, out),
        }
    }

    /// Splits off the first `max_items` items (whole metrics for the metrics signal, so a
    /// metric with many points may exceed the limit) and returns them; `self` keeps the rest.
    /// Items are counted as [`Payload::item_count`] counts them: a metric without data points
    /// weighs nothing and goes with the part it stands in, so the front part holds
    /// `max_items` items whenever `self` had more.
    pub fn split_front(&mut self, max_items: usize) -> Payload {
        match self {
            Payload::Traces(rs) => Payload::Traces(split_groups_front(rs, max_items)),
            Payload::Logs(rl) => Payload::Logs(split_groups_front(rl, max_items)),
            Payload::Metrics(rm) => Payload::Metrics(split_groups_front(rm, max_items)),
        }
    }
}

/// A resource group that can give up its first items, keeping resource and scope.
pub(crate) trait SplitGroup: Sized {
    /// Moves up to `budget` items into a new group and returns it with its item count.
    fn split(&mut self, budget: usize) -> (Self, usize);
    fn is_empty_group(&self) -> bool;
}

/// Moves the first `max_items` items of `groups` (see [`Payload::split_front`]) into a new
/// list and returns it.
pub(crate) fn split_groups_front<R: SplitGroup>(groups: &mut Vec<R>, max_items: usize) -> Vec<R> {
    let mut out = Vec::new();
    let mut budget = max_items;
    let mut first_empty = 0;
    while budget > 0 && first_empty < groups.len() {
        let (part, n) = groups[first_empty].split(budget);
        budget = budget.saturating_sub(n);
        if groups[first_empty].is_empty_group() {
            first_empty += 1;
        }
        if !part.is_empty_group() {
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

use crate::proto::tonic::common::v1::InstrumentationScope;
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
    |m: &crate::proto::tonic::metrics::v1::Metric| metric_points(m.data.as_ref())
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

/// A unit of work in the graph: one signal's telemetry and the context that travels with it.
///
/// The telemetry is either decoded ([`Payload`]) or still the OTLP protobuf bytes it arrived
/// in ([`EncodedPayload`], see [`crate::wire`]); components reach it only through the methods
/// here. Those that read or change it call [`Batch::payload`] / [`Batch::payload_mut`], which
/// decode once on first use and keep the result; those that only move it (batching,
/// forwarding, OTLP export) use [`Batch::append`], [`Batch::split_front`] and
/// [`Batch::write_request`], which never decode whole requests.
///
/// Its acknowledgement handles must be resolved: see the [module docs](self) for who calls
/// [`Batch::delivered`] or [`Batch::dropped`] when.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The decoded telemetry; empty while `encoded` holds it.
    decoded: Payload,
    /// The telemetry as protobuf bytes, until something decodes it (boxed: a batch moves
    /// through every edge of the graph, and stays small).
    encoded: Option<Box<EncodedPayload>>,
    /// Metadata and acknowledgement tokens.
    pub ctx: BatchContext,
}

impl Batch {
    /// A batch of decoded telemetry with an empty context.
    pub fn new(payload: Payload) -> Batch {
        Batch::with_context(payload, BatchContext::default())
    }

    /// A batch of decoded telemetry with `ctx`.
    pub fn with_context(payload: Payload, ctx: BatchContext) -> Batch {
        Batch {
            decoded: payload,
            encoded: None,
            ctx,
        }
    }

    /// A batch of encoded telemetry with an empty context.
    pub fn encoded(payload: EncodedPayload) -> Batch {
        Batch {
            decoded: Payload::empty(payload.signal()),
            encoded: Some(Box::new(payload)),
            ctx: BatchContext::default(),
        }
    }

    /// An empty batch of `signal`.
    pub fn empty(signal: Signal) -> Batch {
        Batch::new(Payload::empty(signal))
    }

    /// Items in the batch: spans, data points or log records (known without decoding).
    pub fn item_count(&self) -> usize {
        match &self.encoded {
            Some(e) => e.item_count(),
            None => self.decoded.item_count(),
        }
    }

    /// The batch's signal.
    pub fn signal(&self) -> Signal {
        self.decoded.signal()
    }

    /// Whether the batch still holds protobuf bytes (nothing decoded it yet).
    pub fn is_encoded(&self) -> bool {
        self.encoded.is_some()
    }

    /// The telemetry, decoded on first use (and kept decoded).
    pub fn payload(&mut self) -> &Payload {
        self.decode();
        &self.decoded
    }

    /// The telemetry to change in place, decoded on first use (and kept decoded).
    pub fn payload_mut(&mut self) -> &mut Payload {
        self.decode();
        &mut self.decoded
    }

    /// The telemetry for a reader holding the batch by reference: borrowed when the batch is
    /// decoded, else decoded into a copy that is not kept (prefer [`Batch::payload`], or
    /// [`Batch::decode`] when taking the batch, where you own it).
    pub fn payload_view(&self) -> std::borrow::Cow<'_, Payload> {
        match &self.encoded {
            Some(e) => std::borrow::Cow::Owned(decode_or_report(e, &self.ctx)),
            None => std::borrow::Cow::Borrowed(&self.decoded),
        }
    }

    /// The encoded telemetry, if the batch is still encoded.
    pub fn encoded_payload(&self) -> Option<&EncodedPayload> {
        self.encoded.as_deref()
    }

    /// Decodes the batch if it is encoded (a component that reads batches later by
    /// reference, such as an exporter's sender, calls this once when it takes one).
    pub fn decode(&mut self) {
        if let Some(e) = self.encoded.take() {
            self.decoded = decode_or_report(&e, &self.ctx);
        }
    }

    /// Takes the decoded telemetry and the context apart.
    pub fn into_parts(mut self) -> (Payload, BatchContext) {
        self.decode();
        (self.decoded, self.ctx)
    }

    /// Moves `other` (of the same signal) to the end of this batch, handles included.
    /// Encoded batches merge by concatenation; when one side is decoded and the other not,
    /// `other` takes this batch's form. Returns `other` back when the signals differ.
    pub fn append(&mut self, mut other: Batch) -> Result<(), Batch> {
        if other.signal() != self.signal() {
            return Err(other);
        }
        if self.encoded.is_none() && self.decoded.is_empty() {
            // Nothing here yet: take `other`'s form, whichever it is.
            let ctx = std::mem::take(&mut self.ctx);
            *self = other;
            self.ctx.merge(ctx);
            return Ok(());
        }
        match (&mut self.encoded, other.encoded.take()) {
            (Some(a), Some(b)) => a.append_groups(*b),
            (Some(a), None) => a.append_groups(EncodedPayload::from_payload(&other.decoded)),
            (None, Some(b)) => {
                let decoded = decode_or_report(&b, &other.ctx);
                self.decoded.append_same(decoded);
            }
            (None, None) => {
                let signal = other.signal();
                let decoded = std::mem::replace(&mut other.decoded, Payload::empty(signal));
                self.decoded.append_same(decoded);
            }
        }
        self.ctx.merge(other.ctx);
        Ok(())
    }

    /// Splits off the first `max_items` items (see [`Payload::split_front`]) and returns them
    /// as a batch carrying clones of this batch's handles; `self` keeps the rest. An encoded
    /// batch is cut between resource groups; only a group that must be cut is decoded.
    pub fn split_front(&mut self, max_items: usize) -> Batch {
        if let Some(e) = &mut self.encoded {
            match e.split_front(max_items) {
                Ok(front) => {
                    return Batch {
                        decoded: Payload::empty(front.signal()),
                        encoded: Some(Box::new(front)),
                        ctx: self.ctx.clone(),
                    };
                }
                // Not decodable after all: decode what is (reporting the rest), then cut.
                Err(_) => self.decode(),
            }
        }
        Batch::with_context(self.decoded.split_front(max_items), self.ctx.clone())
    }

    /// What the batch weighs in bytes, as a byte-sized queue counts it: the size of its
    /// OTLP export request in protobuf, as the OpenTelemetry Collector's `bytes` sizer
    /// counts (for an encoded batch, about the bytes it holds).
    pub fn size_bytes(&self) -> usize {
        self.encoded_len()
    }

    /// Bytes of the OTLP export request this batch encodes to.
    pub fn encoded_len(&self) -> usize {
        match &self.encoded {
            Some(e) => e.encoded_len(),
            None => self.decoded.encoded_len(),
        }
    }

    /// Writes the batch as an OTLP `Export*ServiceRequest` in protobuf: the bytes as
    /// received when the batch is encoded, else encoded from the decoded data.
    pub fn write_request(&self, out: &mut impl bytes::BufMut) {
        match &self.encoded {
            Some(e) => e.write_request(out),
            None => self.decoded.write_request(out),
        }
    }

    /// The batch as an OTLP export request in protobuf, in pieces to write one after the
    /// other: an encoded batch's bytes as held (no copy), a decoded one encoded into one piece.
    pub fn request_chunks(&self) -> Vec<bytes::Bytes> {
        match &self.encoded {
            Some(e) => e.request_chunks(),
            None => vec![bytes::Bytes::from(self.to_request())],
        }
    }

    /// The batch as one OTLP export request in protobuf.
    pub fn to_request(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_request(&mut out);
        out
    }

    /// Resolves every acknowledgement handle of the batch as delivered: the component that
    /// calls it has handed the data to its destination (a backend accepted it, a file was
    /// written and flushed, an aggregate took it in). Call it exactly when that is true.
    pub fn delivered(self) {
        self.ctx.delivered();
    }

    /// Resolves every acknowledgement handle of the batch as not delivered. The caller has
    /// counted the drop with its reason (`sightline_component_items_dropped_total{reason}`)
    /// or is refusing the batch with an error; sources that can (a file tailer, a persistent
    /// queue) offer the data again.
    pub fn dropped(self) {
        self.ctx.dropped();
    }
}

/// Items left out because encoded telemetry failed to decode, since the process started
/// (`sightline_payload_decode_failures_total`; a bug if ever non-zero, see
/// [`Batch::payload`]).
pub static ITEMS_LOST_TO_DECODING: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Decodes an encoded payload that the receiver's scan accepted. The scan accepts only what
/// prost decodes, so a failure is a bug; it must still not lose data silently: the groups
/// that do not decode are left out, logged, counted
/// (`sightline_payload_decode_failures_total`), and the batch's sources are told it was not
/// delivered.
fn decode_or_report(e: &EncodedPayload, ctx: &BatchContext) -> Payload {
    match e.decode() {
        Ok(p) => p,
        Err(error) => {
            let mut payload = Payload::empty(e.signal());
            let mut lost = 0usize;
            for group in e.groups() {
                match group.decode(e.signal()) {
                    Ok(p) => payload.append_same(p),
                    Err(_) => lost += group.items,
                }
            }
            for token in &ctx.acks {
                token.fail();
            }
            ITEMS_LOST_TO_DECODING.fetch_add(lost as u64, Ordering::Relaxed);
            tracing::error!(
                items = lost,
                %error,
                "encoded telemetry that passed the receiver's check failed to decode; those items are dropped and their sources told so"
            );
            payload
        }
    }
}

/// A batch a future holds while it waits before taking it on (for room in a queue, for its
/// turn): if the future is dropped there (its caller gave up: a receiver's timeout, a stopping
/// source), the batch is resolved as dropped, as a refusal would be, rather than dropped
/// unresolved. The caller tells its sender that nothing went through.
#[derive(Debug)]
pub struct WaitingBatch(Option<Batch>);

impl WaitingBatch {
    /// Holds `batch` until [`WaitingBatch::take`].
    pub fn new(batch: Batch) -> WaitingBatch {
        WaitingBatch(Some(batch))
    }

    /// The batch, to look at while waiting.
    pub fn get(&self) -> Option<&Batch> {
        self.0.as_ref()
    }

    /// Takes the batch on: from now on the taker resolves it.
    pub fn take(mut self) -> Option<Batch> {
        self.0.take()
    }
}

impl Drop for WaitingBatch {
    fn drop(&mut self) {
        if let Some(batch) = self.0.take() {
            batch.dropped();
        }
    }
}

/// What travels with a batch besides the data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchContext {
    /// Acknowledgement handles of the sources whose data this batch carries. When batches are
    /// merged the handles are merged; when a batch is cloned (fan-out, split) each clone holds
    /// clones of the handles, which its holder must resolve in turn.
    pub acks: Vec<AckToken>,
}

impl BatchContext {
    /// Moves `other`'s handles into this context (when two batches are merged).
    pub fn merge(&mut self, other: BatchContext) {
        self.acks.extend(other.acks);
    }

    /// Whether the context carries no handle (nothing to resolve).
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    /// Resolves every handle as delivered (see [`Batch::delivered`]).
    pub fn delivered(self) {
        for token in self.acks {
            token.delivered();
        }
    }

    /// Resolves every handle as not delivered (see [`Batch::dropped`]).
    pub fn dropped(self) {
        for token in self.acks {
            token.dropped();
        }
    }

    /// Records `holder` as the component now holding every handle, so that a handle it drops
    /// unresolved is counted under its ID. The graph calls it on each edge a batch crosses.
    pub fn stamp(&mut self, holder: &AckHolder) {
        for token in &mut self.acks {
            token.holder = Some(holder.clone());
        }
    }
}

/// The component a handle was last given to, where an unresolved drop is counted
/// (`sightline_ack_unresolved_total{component_id}`).
#[derive(Clone)]
pub struct AckHolder(Arc<AckHolderInner>);

struct AckHolderInner {
    component_id: String,
    unresolved: prometheus::IntCounter,
}

impl AckHolder {
    /// A holder that counts unresolved drops in `unresolved` (the component's series of
    /// `sightline_ack_unresolved_total`).
    pub fn new(component_id: impl Into<String>, unresolved: prometheus::IntCounter) -> AckHolder {
        AckHolder(Arc::new(AckHolderInner {
            component_id: component_id.into(),
            unresolved,
        }))
    }

    /// The holder's component ID.
    pub fn component_id(&self) -> &str {
        &self.0.component_id
    }
}

impl std::fmt::Debug for AckHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AckHolder")
            .field(&self.0.component_id)
            .finish()
    }
}

/// How the data behind an [`AckToken`] ended, as its source's callback receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Every handle was resolved as delivered.
    Delivered,
    /// Some handle was resolved as dropped (counted, or refused to its sender), none was
    /// dropped unresolved.
    Dropped,
    /// Some handle was dropped without being resolved: a bug, treated as not delivered.
    Unresolved,
}

impl AckOutcome {
    /// Whether the data was delivered by every holder.
    pub fn is_delivered(self) -> bool {
        self == AckOutcome::Delivered
    }
}

/// An end-to-end acknowledgement handle.
///
/// A source that needs to know when its data is safe (a persistent queue, a file tailer's
/// checkpoint) creates a token and attaches it to the batch it emits. Each clone is a handle
/// of its own that its holder resolves with [`AckToken::delivered`] or [`AckToken::dropped`]
/// (usually through [`Batch::delivered`] / [`Batch::dropped`]). When the last handle is gone
/// the callback runs once with the outcome: delivered only if every handle was resolved as
/// delivered. A handle dropped unresolved counts as not delivered and is counted in
/// `sightline_ack_unresolved_total` (see the [module docs](self)). A source that keeps a
/// handle to clone into later batches resolves its own with `delivered` when it stops adding.
pub struct AckToken {
    shared: Arc<AckShared>,
    resolved: bool,
    holder: Option<AckHolder>,
}

struct AckShared {
    failed: AtomicBool,
    unresolved: AtomicUsize,
    /// Handles panic when dropped unresolved (debug builds; [`crate::testing::AckProbe`]).
    strict: bool,
    on_done: Option<Box<dyn Fn(AckOutcome) + Send + Sync>>,
}

impl Drop for AckShared {
    fn drop(&mut self) {
        if let Some(f) = self.on_done.take() {
            let outcome = if self.unresolved.load(Ordering::Acquire) > 0 {
                AckOutcome::Unresolved
            } else if self.failed.load(Ordering::Acquire) {
                AckOutcome::Dropped
            } else {
                AckOutcome::Delivered
            };
            f(outcome);
        }
    }
}

impl AckToken {
    /// A token whose callback receives `true` when every holder delivered, `false` otherwise.
    pub fn new(on_done: impl Fn(bool) + Send + Sync + 'static) -> AckToken {
        AckToken::with_outcome(move |outcome| on_done(outcome.is_delivered()))
    }

    /// A token whose callback receives the full outcome.
    pub fn with_outcome(on_done: impl Fn(AckOutcome) + Send + Sync + 'static) -> AckToken {
        AckToken::build(false, Box::new(on_done))
    }

    /// A token whose handles panic when dropped unresolved (debug builds), for tests.
    pub(crate) fn strict(on_done: impl Fn(AckOutcome) + Send + Sync + 'static) -> AckToken {
        AckToken::build(true, Box::new(on_done))
    }

    fn build(strict: bool, on_done: Box<dyn Fn(AckOutcome) + Send + Sync>) -> AckToken {
        AckToken {
            shared: Arc::new(AckShared {
                failed: AtomicBool::new(false),
                unresolved: AtomicUsize::new(0),
                strict,
                on_done: Some(on_done),
            }),
            resolved: false,
            holder: None,
        }
    }

    /// Marks the data as not delivered for every holder. This handle must still be resolved.
    pub fn fail(&self) {
        self.shared.failed.store(true, Ordering::Release);
    }

    /// This holder delivered its copy of the data.
    pub fn delivered(mut self) {
        self.resolved = true;
    }

    /// This holder did not deliver its copy of the data (and counted the drop, or refused
    /// the batch with an error).
    pub fn dropped(mut self) {
        self.fail();
        self.resolved = true;
    }

    /// The component this handle was last given to, if the graph stamped it.
    pub fn holder(&self) -> Option<&AckHolder> {
        self.holder.as_ref()
    }
}

impl Clone for AckToken {
    /// Another handle on the same data: the clone's holder must resolve it as well.
    fn clone(&self) -> Self {
        AckToken {
            shared: Arc::clone(&self.shared),
            resolved: false,
            holder: self.holder.clone(),
        }
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if self.resolved {
            return;
        }
        self.shared.failed.store(true, Ordering::Release);
        self.shared.unresolved.fetch_add(1, Ordering::AcqRel);
        let holder = self.holder.as_ref().map(|h| {
            h.0.unresolved.inc();
            h.component_id()
        });
        tracing::warn!(
            component_id = holder.unwrap_or("(not in a graph)"),
            "an acknowledgement handle was dropped without being resolved as delivered or dropped; its source treats the data as not delivered"
        );
        if self.shared.strict && cfg!(debug_assertions) && !std::thread::panicking() {
            panic!(
                "acknowledgement handle dropped unresolved (last holder: {})",
                holder.unwrap_or("not in a graph")
            );
        }
    }
}

impl std::fmt::Debug for AckToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckToken")
            .field("failed", &self.shared.failed.load(Ordering::Relaxed))
            .field("resolved", &self.resolved)
            .field("holder", &self.holder)
            .finish()
    }
}

impl PartialEq for AckToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
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

#[cfg(test)]
mod ack_tests {
    use std::sync::Mutex;

    use super::*;

    fn recording() -> (AckToken, Arc<Mutex<Vec<AckOutcome>>>) {
        let seen: Arc<Mutex<Vec<AckOutcome>>> = Arc::default();
        let s = seen.clone();
        (
            AckToken::with_outcome(move |o| s.lock().unwrap().push(o)),
            seen,
        )
    }

    #[test]
    fn the_callback_runs_once_when_every_clone_is_resolved() {
        let (token, seen) = recording();
        let (a, b) = (token.clone(), token.clone());
        token.delivered();
        a.delivered();
        assert!(seen.lock().unwrap().is_empty(), "b still holds the data");
        b.delivered();
        assert_eq!(*seen.lock().unwrap(), vec![AckOutcome::Delivered]);

        let (token, seen) = recording();
        let copy = token.clone();
        token.delivered();
        copy.dropped();
        assert_eq!(*seen.lock().unwrap(), vec![AckOutcome::Dropped]);
    }

    #[test]
    fn a_handle_dropped_unresolved_counts_as_not_delivered_and_under_its_holder() {
        let (token, seen) = recording();
        let counter = prometheus::IntCounter::new("x", "x").unwrap();
        let mut ctx = BatchContext {
            acks: vec![token.clone()],
        };
        ctx.stamp(&AckHolder::new("exporter/x", counter.clone()));
        token.delivered();
        assert_eq!(ctx.acks[0].holder().unwrap().component_id(), "exporter/x");
        drop(ctx);
        assert_eq!(*seen.lock().unwrap(), vec![AckOutcome::Unresolved]);
        assert_eq!(counter.get(), 1);
    }

    #[test]
    fn a_cloned_batch_carries_its_own_obligation() {
        let (token, seen) = recording();
        let mut batch = Batch::new(Payload::Logs(Vec::new()));
        batch.ctx.acks.push(token);
        let copy = batch.clone();
        batch.delivered();
        assert!(seen.lock().unwrap().is_empty());
        copy.delivered();
        assert_eq!(*seen.lock().unwrap(), vec![AckOutcome::Delivered]);
    }
}

/// The instrumentation scope of telemetry Sightline makes itself (the `sli` and `slo`
/// connectors' metrics): `name` and Sightline's version.
pub fn sightline_scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}
