//! Self-telemetry: the RED and USE of the pipeline itself, as Prometheus metrics.
//!
//! One [`Telemetry`] per running service holds a private registry (no global state, so many
//! services can live in one test process). The graph hands each component a
//! [`ComponentTelemetry`] with its labels resolved once, and wraps every edge in an
//! [`Instrumented`] consumer, so plugins get their counts for free.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::component::{ComponentId, ComponentKind};
use crate::consumer::{ConsumeError, Consumer, SharedConsumer};
use crate::model::{AckHolder, Batch};
use crate::signal::{PerSignal, Signal};
use crate::tap::{TapPoint, Taps};

/// Why items were dropped, as the `reason` label says it.
pub mod reason {
    /// The backend rejected the data as invalid (HTTP 400, gRPC INVALID_ARGUMENT).
    pub const REJECTED: &str = "rejected";
    /// Retries ran out (`retry_on_failure.max_elapsed_time`) or retry is disabled.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// The shutdown deadline passed with data still queued.
    pub const SHUTDOWN_TIMEOUT: &str = "shutdown_timeout";
    /// Data could not be encoded for the backend.
    pub const ENCODING: &str = "encoding";
    /// A connector's output pipeline refused what it emitted (full, shutting down).
    pub const REFUSED_DOWNSTREAM: &str = "refused_downstream";
}

const COMPONENT_LABELS: [&str; 3] = ["component_kind", "component_id", "signal"];

/// One component's item counters for one signal (drops summed over reasons).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComponentTotals {
    /// Items handed to it.
    pub received: u64,
    /// Items it passed on.
    pub sent: u64,
    /// Items it refused.
    pub refused: u64,
    /// Items it accepted and lost.
    pub dropped: u64,
}

/// A snapshot of [`Telemetry::totals`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// By (`component_kind`, `component_id`, `signal`) label values (`exporter`,
    /// `otlp/backend`, `traces`).
    pub components: BTreeMap<(String, String, String), ComponentTotals>,
    /// Queues by `component_id`: (items queued, capacity).
    pub queues: BTreeMap<String, (i64, i64)>,
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// The metric families of one service.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    received: IntCounterVec,
    sent: IntCounterVec,
    refused: IntCounterVec,
    dropped: IntCounterVec,
    rejected_requests: IntCounterVec,
    ack_unresolved: IntCounterVec,
    queue_size: IntGaugeVec,
    queue_capacity: IntGaugeVec,
    send_duration: HistogramVec,
    process_cpu: Gauge,
    process_rss: Gauge,
    decode_failures: prometheus::IntCounter,
    taps: Taps,
    /// The process's memory limits, shared by the memory limiters and the receivers.
    memory: crate::memory::MemoryPressure,
    /// Families components register for themselves, by name (see
    /// [`ComponentTelemetry::counter_family`]).
    own: Arc<Mutex<HashMap<String, OwnFamily>>>,
}

/// A family a component type registered, with its label names.
#[derive(Clone)]
enum OwnFamily {
    Counter(IntCounterVec, Vec<String>),
    Gauge(IntGaugeVec, Vec<String>),
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(vec.clone()));
    vec
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, e));
    let _ = registry.register(Box::new(vec.clone()));
    vec
}

#[cold]
fn unreachable_metric(name: &str, e: prometheus::Error) -> ! {
    // The names and labels are constants of this file; a test covers them.
    panic!("invalid self-metric definition {name}: {e}")
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// A fresh set of metric families in a private registry.
    pub fn new() -> Telemetry {
        let registry = Registry::new();
        let mut dropped_labels = COMPONENT_LABELS.to_vec();
        dropped_labels.push("reason");
        let send_duration = HistogramVec::new(
            HistogramOpts::new(
                "sightline_exporter_send_duration_seconds",
                "Time an exporter took to send one batch to its backend, by outcome.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["component_id", "signal", "outcome"],
        )
        .unwrap_or_else(|e| unreachable_metric("send_duration", e));
        let _ = registry.register(Box::new(send_duration.clone()));
        let process_cpu = Gauge::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )
        .unwrap_or_else(|e| unreachable_metric("process_cpu_seconds_total", e));
        let process_rss = Gauge::new(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )
        .unwrap_or_else(|e| unreachable_metric("process_resident_memory_bytes", e));
        let _ = registry.register(Box::new(process_cpu.clone()));
        let _ = registry.register(Box::new(process_rss.clone()));
        let decode_failures = prometheus::IntCounter::new(
            "sightline_payload_decode_failures_total",
            "Items dropped because telemetry kept as protobuf bytes failed to decode after the receiver's check passed it (a bug if ever non-zero).",
        )
        .unwrap_or_else(|e| unreachable_metric("sightline_payload_decode_failures_total", e));
        let _ = registry.register(Box::new(decode_failures.clone()));
        let taps = Taps::new(counter(
            &registry,
            "sightline_tap_samples_total",
            "Samples of a component's output sent to `sightline tap` clients, and samples dropped because a client's channel was full.",
            &["component_id", "outcome"],
        ));
        Telemetry {
            taps,
            memory: crate::memory::MemoryPressure::default(),
            received: counter(
                &registry,
                "sightline_component_items_received_total",
                "Items (spans, data points, log records) handed to a component.",
                &COMPONENT_LABELS,
            ),
            sent: counter(
                &registry,
                "sightline_component_items_sent_total",
                "Items a component passed on successfully (exporters: accepted by the backend).",
                &COMPONENT_LABELS,
            ),
            refused: counter(
                &registry,
                "sightline_component_items_refused_total",
                "Items a component refused; the caller got an error and keeps responsibility.",
                &COMPONENT_LABELS,
            ),
            dropped: counter(
                &registry,
                "sightline_component_items_dropped_total",
                "Items a component accepted and then lost, by reason.",
                &dropped_labels,
            ),
            rejected_requests: counter(
                &registry,
                "sightline_receiver_requests_rejected_total",
                "Requests a receiver rejected before decoding any item, by reason.",
                &["component_id", "protocol", "reason"],
            ),
            ack_unresolved: counter(
                &registry,
                "sightline_ack_unresolved_total",
                "Acknowledgement handles a component dropped without resolving them as delivered or dropped (a bug; the source treats the data as not delivered).",
                &["component_id"],
            ),
            queue_size: gauge(
                &registry,
                "sightline_queue_size",
                "Items waiting in a component's queue.",
                &["component_id"],
            ),
            queue_capacity: gauge(
                &registry,
                "sightline_queue_capacity",
                "Capacity of a component's queue in items.",
                &["component_id"],
            ),
            send_duration,
            process_cpu,
            process_rss,
            decode_failures,
            own: Arc::default(),
            registry,
        }
    }

    /// The handle a component records through.
    pub fn component(&self, kind: ComponentKind, id: &ComponentId) -> ComponentTelemetry {
        let labels = |signal: Signal| [kind.as_str(), id.as_str(), signal.as_str()];
        ComponentTelemetry {
            inner: Arc::new(ComponentTelemetryInner {
                kind,
                id: id.clone(),
                received: PerSignal::from_fn(|s| self.received.with_label_values(&labels(s))),
                sent: PerSignal::from_fn(|s| self.sent.with_label_values(&labels(s))),
                refused: PerSignal::from_fn(|s| self.refused.with_label_values(&labels(s))),
                ack_holder: AckHolder::new(
                    id.as_str(),
                    self.ack_unresolved.with_label_values(&[id.as_str()]),
                ),
                tap: self.taps.point(kind, id),
                telemetry: self.clone(),
            }),
        }
    }

    /// Every component's tap point, for `sightline tap`.
    pub fn taps(&self) -> &Taps {
        &self.taps
    }

    /// The process's memory limits (see [`crate::memory`]).
    pub fn memory_pressure(&self) -> &crate::memory::MemoryPressure {
        &self.memory
    }

    /// Every component's running totals per signal (drops summed over reasons) and every
    /// queue's use, read from the metric families: for the live pipeline page.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for family in self.registry.gather() {
            let field: fn(&mut ComponentTotals) -> &mut u64 = match family.name() {
                "sightline_component_items_received_total" => |t| &mut t.received,
                "sightline_component_items_sent_total" => |t| &mut t.sent,
                "sightline_component_items_refused_total" => |t| &mut t.refused,
                "sightline_component_items_dropped_total" => |t| &mut t.dropped,
                "sightline_queue_size" | "sightline_queue_capacity" => {
                    let capacity = family.name() == "sightline_queue_capacity";
                    for m in family.get_metric() {
                        let id = label(m, "component_id").to_string();
                        let q = totals.queues.entry(id).or_default();
                        let v = m.get_gauge().get_value() as i64;
                        if capacity { q.1 = v } else { q.0 = v }
                    }
                    continue;
                }
                _ => continue,
            };
            for m in family.get_metric() {
                let key = (
                    label(m, "component_kind").to_string(),
                    label(m, "component_id").to_string(),
                    label(m, "signal").to_string(),
                );
                *field(totals.components.entry(key).or_default()) +=
                    m.get_counter().get_value() as u64;
            }
        }
        totals
    }

    /// Refreshes the process metrics and renders everything in the Prometheus text format.
    pub fn render(&self) -> String {
        if let Some(usage) = crate::time::process_usage() {
            self.process_cpu.set(usage.cpu_seconds);
            self.process_rss.set(usage.resident_bytes as f64);
        }
        let lost = crate::model::ITEMS_LOST_TO_DECODING.load(std::sync::atomic::Ordering::Relaxed);
        self.decode_failures
            .inc_by(lost.saturating_sub(self.decode_failures.get()));
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The registry, for components that add families of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

struct ComponentTelemetryInner {
    kind: ComponentKind,
    id: ComponentId,
    received: PerSignal<IntCounter>,
    sent: PerSignal<IntCounter>,
    refused: PerSignal<IntCounter>,
    ack_holder: AckHolder,
    tap: Arc<TapPoint>,
    telemetry: Telemetry,
}

/// One component's view of the self-metrics, labels resolved.
#[derive(Clone)]
pub struct ComponentTelemetry {
    inner: Arc<ComponentTelemetryInner>,
}

impl ComponentTelemetry {
    /// The component's ID.
    pub fn id(&self) -> &ComponentId {
        &self.inner.id
    }

    /// The process's memory limits: memory limiters register theirs, receivers ask before
    /// reading a body (see [`crate::memory`]).
    pub fn memory_pressure(&self) -> &crate::memory::MemoryPressure {
        self.inner.telemetry.memory_pressure()
    }

    /// The component as the holder of acknowledgement handles: where the handles it drops
    /// unresolved are counted (see [`crate::model`]).
    pub fn ack_holder(&self) -> &AckHolder {
        &self.inner.ack_holder
    }

    /// Counts items handed to the component.
    pub fn received(&self, signal: Signal, items: usize) {
        self.inner.received.get(signal).inc_by(items as u64);
    }

    /// Counts items passed on (exporters: accepted by the backend).
    pub fn sent(&self, signal: Signal, items: usize) {
        self.inner.sent.get(signal).inc_by(items as u64);
    }

    /// Counts items refused back to the caller.
    pub fn refused(&self, signal: Signal, items: usize) {
        self.inner.refused.get(signal).inc_by(items as u64);
    }

    /// Counts items accepted and then lost, with the reason (see [`reason`]).
    pub fn dropped(&self, signal: Signal, items: usize, reason: &str) {
        if items == 0 {
            return;
        }
        self.inner
            .telemetry
            .dropped
            .with_label_values(&[
                self.inner.kind.as_str(),
                self.inner.id.as_str(),
                signal.as_str(),
                reason,
            ])
            .inc_by(items as u64);
    }

    /// A connector's output pipeline refused `items` it emitted: logged and counted as
    /// dropped (`rejected` for a permanent refusal, else `refused_downstream`).
    pub fn dropped_downstream(&self, signal: Signal, items: usize, error: &ConsumeError) {
        let why = match error {
            ConsumeError::Permanent(_) => reason::REJECTED,
            _ => reason::REFUSED_DOWNSTREAM,
        };
        tracing::warn!(
            component = %self.inner.id, %error, items,
            "the {signal} pipeline refused what the connector emitted; dropping it"
        );
        self.dropped(signal, items, why);
    }

    /// The shutdown deadline cut off `items` a connector was emitting: logged and counted as
    /// dropped (`shutdown_timeout`).
    pub fn dropped_at_shutdown(&self, signal: Signal, items: usize) {
        if items == 0 {
            return;
        }
        tracing::warn!(
            component = %self.inner.id, items,
            "shutdown deadline passed while the connector was emitting; dropping it"
        );
        self.dropped(signal, items, reason::SHUTDOWN_TIMEOUT);
    }

    /// Counts a request rejected before any item was decoded.
    pub fn rejected_request(&self, protocol: &str, reason: &str) {
        self.inner
            .telemetry
            .rejected_requests
            .with_label_values(&[self.inner.id.as_str(), protocol, reason])
            .inc();
    }

    /// Records how long one send to the backend took.
    pub fn send_duration(&self, signal: Signal, outcome: &str, elapsed: Duration) {
        self.inner
            .telemetry
            .send_duration
            .with_label_values(&[self.inner.id.as_str(), signal.as_str(), outcome])
            .observe(elapsed.as_secs_f64());
    }

    /// A counter family of the component type's own, such as
    /// `sightline_sli_overflow_total`, labelled `component_id` followed by `labels`.
    /// Registered once per service: every instance asking for the same name shares the family
    /// (and tells its series apart by `component_id`). Asking again with other labels or as
    /// another kind of metric is an error.
    pub fn counter_family(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.own_family(
            name,
            help,
            labels,
            IntCounterVec::new,
            OwnFamily::Counter,
            |f| match f {
                OwnFamily::Counter(vec, known) => Some((vec, known)),
                OwnFamily::Gauge(..) => None,
            },
        )
    }

    /// A gauge family of the component type's own, like [`Self::counter_family`].
    pub fn gauge_family(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.own_family(
            name,
            help,
            labels,
            IntGaugeVec::new,
            OwnFamily::Gauge,
            |f| match f {
                OwnFamily::Gauge(vec, known) => Some((vec, known)),
                OwnFamily::Counter(..) => None,
            },
        )
    }

    /// The family `name` of kind `V`: the registered one when its labels match, else a new
    /// one made by `make`, registered and remembered as `wrap` of it.
    fn own_family<V: prometheus::core::Collector + Clone + 'static>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        make: impl FnOnce(Opts, &[&str]) -> Result<V, prometheus::Error>,
        wrap: impl FnOnce(V, Vec<String>) -> OwnFamily,
        known: impl FnOnce(&OwnFamily) -> Option<(&V, &Vec<String>)>,
    ) -> Result<V, prometheus::Error> {
        let labels = own_labels(labels);
        let mut own = self
            .inner
            .telemetry
            .own
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match own.get(name) {
            Some(family) => match known(family) {
                Some((vec, known)) if *known == labels => Ok(vec.clone()),
                _ => Err(own_conflict(name)),
            },
            None => {
                let names: Vec<&str> = labels.iter().map(String::as_str).collect();
                let vec = make(Opts::new(name, help), &names)?;
                self.inner
                    .telemetry
                    .registry
                    .register(Box::new(vec.clone()))?;
                own.insert(name.to_string(), wrap(vec.clone(), labels));
                Ok(vec)
            }
        }
    }

    /// Gauges for a queue owned by this component: (size, capacity).
    pub fn queue_gauges(&self) -> (prometheus::IntGauge, prometheus::IntGauge) {
        self.gauges_labelled(self.inner.id.as_str())
    }

    /// Gauges for one of several queues owned by this component (the `loadbalancing`
    /// exporter's queue per backend), labelled `component_id="<id>/<queue>"`.
    pub fn queue_gauges_named(&self, queue: &str) -> (prometheus::IntGauge, prometheus::IntGauge) {
        self.gauges_labelled(&format!("{}/{queue}", self.inner.id.as_str()))
    }

    fn gauges_labelled(&self, label: &str) -> (prometheus::IntGauge, prometheus::IntGauge) {
        let id = [label];
        (
            self.inner.telemetry.queue_size.with_label_values(&id),
            self.inner.telemetry.queue_capacity.with_label_values(&id),
        )
    }
}

fn own_labels(labels: &[&str]) -> Vec<String> {
    std::iter::once("component_id")
        .chain(labels.iter().copied())
        .map(str::to_string)
        .collect()
}

fn own_conflict(name: &str) -> prometheus::Error {
    prometheus::Error::Msg(format!(
        "metric family {name} is already registered with other labels or of another kind"
    ))
}

/// Counts what crosses one edge of the graph: items received and refused by the component
/// downstream, and items sent by the component upstream (when there is one). It also stamps
/// the batch's acknowledgement handles with the component downstream, their holder from now
/// on (see [`crate::model`]).
pub struct Instrumented {
    upstream: Option<ComponentTelemetry>,
    downstream: Option<ComponentTelemetry>,
    inner: SharedConsumer,
}

impl Instrumented {
    /// Wraps `inner`, the entry of `downstream`, called by `upstream`.
    pub fn new(
        upstream: Option<ComponentTelemetry>,
        downstream: Option<ComponentTelemetry>,
        inner: SharedConsumer,
    ) -> Instrumented {
        Instrumented {
            upstream,
            downstream,
            inner,
        }
    }
}

#[async_trait]
impl Consumer for Instrumented {
    fn capabilities(&self) -> crate::consumer::Capabilities {
        self.inner.capabilities()
    }

    fn acks_durably(&self) -> bool {
        self.inner.acks_durably()
    }

    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        let (signal, items) = self.before(&batch);
        if let Some(d) = &self.downstream {
            batch.ctx.stamp(d.ack_holder());
        }
        let result = self.inner.consume(batch).await;
        self.after(signal, items, &result);
        result
    }

    fn reads_by_ref(&self) -> bool {
        self.inner.reads_by_ref()
    }

    async fn consume_ref(&self, batch: &Batch) -> Result<(), ConsumeError> {
        let (signal, items) = self.before(batch);
        let result = self.inner.consume_ref(batch).await;
        self.after(signal, items, &result);
        result
    }
}

impl Instrumented {
    fn before(&self, batch: &Batch) -> (Signal, usize) {
        let signal = batch.signal();
        let items = batch.item_count();
        // A component's output is tapped where it leaves it; an exporter's, where it enters.
        match (&self.upstream, &self.downstream) {
            (Some(u), _) => u.inner.tap.offer(batch),
            (None, Some(d)) if d.inner.kind == ComponentKind::Exporter => d.inner.tap.offer(batch),
            _ => {}
        }
        if let Some(d) = &self.downstream {
            d.received(signal, items);
        }
        (signal, items)
    }

    fn after(&self, signal: Signal, items: usize, result: &Result<(), ConsumeError>) {
        match result {
            Ok(()) => {
                if let Some(u) = &self.upstream {
                    u.sent(signal, items);
                }
            }
            Err(_) => {
                if let Some(d) = &self.downstream {
                    d.refused(signal, items);
                }
            }
        }
    }
}

#[cfg(test)]
mod own_family_tests {
    use super::*;

    #[test]
    fn instances_share_a_family_and_conflicts_are_errors() {
        let t = Telemetry::new();
        let a = t.component(
            ComponentKind::Connector,
            &ComponentId::parse("sli/a").unwrap(),
        );
        let b = t.component(
            ComponentKind::Connector,
            &ComponentId::parse("sli/b").unwrap(),
        );
        let fa = a
            .counter_family("sightline_test_things_total", "Things.", &["metric"])
            .unwrap();
        let fb = b
            .counter_family("sightline_test_things_total", "Things.", &["metric"])
            .unwrap();
        fa.with_label_values(&["sli/a", "x"]).inc();
        fb.with_label_values(&["sli/b", "x"]).inc_by(2);
        let text = t.render();
        assert!(
            text.contains("sightline_test_things_total{component_id=\"sli/a\",metric=\"x\"} 1")
        );
        assert!(
            text.contains("sightline_test_things_total{component_id=\"sli/b\",metric=\"x\"} 2")
        );
        assert!(
            a.counter_family("sightline_test_things_total", "Things.", &["other"])
                .is_err()
        );
        assert!(
            a.gauge_family("sightline_test_things_total", "Things.", &["metric"])
                .is_err()
        );
        let g = a
            .gauge_family("sightline_test_level", "Level.", &[])
            .unwrap();
        g.with_label_values(&["sli/a"]).set(3);
        assert!(
            t.render()
                .contains("sightline_test_level{component_id=\"sli/a\"} 3")
        );
    }
}
