//! Taps: samples of what passes a component's output right now, for `sightline tap`.
//!
//! Every component has a [`TapPoint`] (its [`ComponentTelemetry`](crate::telemetry::ComponentTelemetry)
//! holds it); the graph's instrumented edges offer it each batch the component emits
//! (receivers, processors, connectors) or, for exporters, each batch they are handed. With no
//! one tapping, an offer is one atomic load. A tap ([`Taps::subscribe`]) gets samples through
//! a small bounded channel, at most `rate` per second: an offer copies the batch's OTLP
//! protobuf request (the received bytes, for a batch still encoded) and `try_send`s it, and a
//! full channel drops the sample and counts it in
//! `sightline_tap_samples_total{outcome="dropped"}`. The pipeline never waits for a tap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::component::{ComponentId, ComponentKind};
use crate::model::{Batch, Payload};
use crate::proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use crate::proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use crate::signal::Signal;

/// Samples a tap's channel holds before further ones are dropped.
pub const CHANNEL_CAPACITY: usize = 16;

/// Taps open at once on one service, at most.
pub const MAX_TAPS: usize = 16;

/// One sampled batch: its signal and its OTLP protobuf export request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The signal.
    pub signal: Signal,
    /// `Export{Trace,Metrics,Logs}ServiceRequest` bytes.
    pub request: Vec<u8>,
}

impl Sample {
    /// The sample as one OTLP/JSON line (with its newline).
    pub fn to_json_line(&self) -> Result<Vec<u8>, String> {
        use prost::Message;
        let payload = match self.signal {
            Signal::Traces => ExportTraceServiceRequest::decode(self.request.as_slice())
                .map(|r| Payload::Traces(r.resource_spans)),
            Signal::Metrics => ExportMetricsServiceRequest::decode(self.request.as_slice())
                .map(|r| Payload::Metrics(r.resource_metrics)),
            Signal::Logs => ExportLogsServiceRequest::decode(self.request.as_slice())
                .map(|r| Payload::Logs(r.resource_logs)),
        }
        .map_err(|e| format!("undecodable sample: {e}"))?;
        let mut line = Vec::with_capacity(self.request.len() * 2);
        payload
            .write_json(&mut line)
            .map_err(|e| format!("sample as OTLP/JSON: {e}"))?;
        line.push(b'\n');
        Ok(line)
    }
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Sample>,
    /// The earliest time of the next sample.
    next_at: Instant,
    every: Duration,
}

/// Where one component's output can be tapped.
pub struct TapPoint {
    /// Subscribers, counted outside the lock for the fast path.
    active: AtomicUsize,
    subscribers: Mutex<Vec<Subscriber>>,
    sent: IntCounter,
    dropped: IntCounter,
}

impl TapPoint {
    /// Offers a batch: nothing to do unless someone taps this component, and never a wait.
    #[inline]
    pub fn offer(&self, batch: &Batch) {
        if self.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.offer_to_subscribers(batch);
    }

    #[cold]
    fn offer_to_subscribers(&self, batch: &Batch) {
        let now = Instant::now();
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let mut sample: Option<Sample> = None;
        subscribers.retain_mut(|s| {
            if s.tx.is_closed() {
                return false;
            }
            if now < s.next_at {
                return true;
            }
            s.next_at = now + s.every;
            if s.tx.capacity() == 0 {
                self.dropped.inc();
                return true;
            }
            let sample = sample.get_or_insert_with(|| Sample {
                signal: batch.signal(),
                request: batch.to_request(),
            });
            match s.tx.try_send(sample.clone()) {
                Ok(()) => {
                    self.sent.inc();
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped.inc();
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.active.store(subscribers.len(), Ordering::Relaxed);
    }

    fn unsubscribe(&self, id: u64) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|s| s.id != id);
        self.active.store(subscribers.len(), Ordering::Relaxed);
    }
}

/// Tap points by component kind and ID.
type Points = HashMap<(ComponentKind, ComponentId), Arc<TapPoint>>;

/// Every component's tap point, by kind and ID (kept across reloads).
#[derive(Clone)]
pub struct Taps {
    points: Arc<Mutex<Points>>,
    samples: IntCounterVec,
    next_id: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
}

/// Why a tap could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    /// [`MAX_TAPS`] taps are open already.
    #[error("{MAX_TAPS} taps are open already; close one first")]
    TooMany,
}

impl Taps {
    /// Taps counting their samples in `samples` (labels `component_id`, `outcome`).
    pub(crate) fn new(samples: IntCounterVec) -> Taps {
        Taps {
            points: Arc::default(),
            samples,
            next_id: Arc::default(),
            open: Arc::default(),
        }
    }

    /// The tap point of a component, made on first use.
    pub fn point(&self, kind: ComponentKind, id: &ComponentId) -> Arc<TapPoint> {
        let mut points = self.points.lock().unwrap_or_else(|p| p.into_inner());
        points
            .entry((kind, id.clone()))
            .or_insert_with(|| {
                Arc::new(TapPoint {
                    active: AtomicUsize::new(0),
                    subscribers: Mutex::new(Vec::new()),
                    sent: self.samples.with_label_values(&[id.as_str(), "sent"]),
                    dropped: self.samples.with_label_values(&[id.as_str(), "dropped"]),
                })
            })
            .clone()
    }

    /// Opens a tap on a component's output: at most `per_second` samples a second (at least
    /// one), through a channel of [`CHANNEL_CAPACITY`]. The tap closes when the
    /// [`Subscription`] is dropped.
    pub fn subscribe(
        &self,
        kind: ComponentKind,
        id: &ComponentId,
        per_second: u32,
    ) -> Result<Subscription, TapError> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= MAX_TAPS {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(TapError::TooMany);
        }
        let point = self.point(kind, id);
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let sub_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut subscribers = point.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            subscribers.push(Subscriber {
                id: sub_id,
                tx,
                next_at: Instant::now(),
                every: Duration::from_secs(1) / per_second.max(1),
            });
            point.active.store(subscribers.len(), Ordering::Relaxed);
        }
        Ok(Subscription {
            rx,
            point,
            id: sub_id,
            open: self.open.clone(),
        })
    }
}

/// An open tap: receive its samples; dropping it closes the tap.
pub struct Subscription {
    rx: mpsc::Receiver<Sample>,
    point: Arc<TapPoint>,
    id: u64,
    open: Arc<AtomicUsize>,
}

impl Subscription {
    /// The next sample (`None` never, while the service runs).
    pub async fn recv(&mut self) -> Option<Sample> {
        self.rx.recv().await
    }

    /// Polls for the next sample (for a streaming response body).
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Sample>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.point.unsubscribe(self.id);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::span_batch;

    fn taps() -> (Taps, IntCounterVec) {
        let counter = IntCounterVec::new(
            prometheus::Opts::new("t", "t"),
            &["component_id", "outcome"],
        )
        .unwrap();
        (Taps::new(counter.clone()), counter)
    }

    #[tokio::test]
    async fn samples_are_bounded_and_drops_counted_and_closing_stops_them() {
        let (taps, counter) = taps();
        let id = ComponentId::parse("batch").unwrap();
        let point = taps.point(ComponentKind::Processor, &id);
        let batch = span_batch(3);
        point.offer(&batch); // no one taps: nothing happens
        assert_eq!(counter.with_label_values(&["batch", "sent"]).get(), 0);

        let mut sub = taps.subscribe(ComponentKind::Processor, &id, 1000).unwrap();
        for _ in 0..CHANNEL_CAPACITY + 10 {
            point.offer(&batch);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let sent = counter.with_label_values(&["batch", "sent"]).get();
        let dropped = counter.with_label_values(&["batch", "dropped"]).get();
        assert_eq!(sent, CHANNEL_CAPACITY as u64, "the channel is bounded");
        assert_eq!(dropped, 10, "samples beyond it are dropped and counted");
        let sample = sub.recv().await.unwrap();
        let line = String::from_utf8(sample.to_json_line().unwrap()).unwrap();
        assert!(
            line.starts_with("{\"resourceSpans\":[") && line.ends_with("}\n"),
            "{line}"
        );

        drop(sub);
        assert_eq!(point.active.load(Ordering::Relaxed), 0);
        point.offer(&batch);
        assert_eq!(counter.with_label_values(&["batch", "sent"]).get(), sent);
        batch.delivered();
    }

    #[tokio::test]
    async fn the_rate_limit_spaces_samples() {
        let (taps, counter) = taps();
        let id = ComponentId::parse("otlp").unwrap();
        let point = taps.point(ComponentKind::Receiver, &id);
        let _sub = taps.subscribe(ComponentKind::Receiver, &id, 1).unwrap();
        let batch = span_batch(1);
        for _ in 0..100 {
            point.offer(&batch);
        }
        assert_eq!(counter.with_label_values(&["otlp", "sent"]).get(), 1);
        assert_eq!(counter.with_label_values(&["otlp", "dropped"]).get(), 0);
        batch.delivered();
    }

    #[test]
    fn taps_are_limited() {
        let (taps, _) = taps();
        let id = ComponentId::parse("otlp").unwrap();
        let subs: Vec<_> = (0..MAX_TAPS)
            .map(|_| taps.subscribe(ComponentKind::Receiver, &id, 10).unwrap())
            .collect();
        assert_eq!(
            taps.subscribe(ComponentKind::Receiver, &id, 10).err(),
            Some(TapError::TooMany)
        );
        drop(subs);
        assert!(taps.subscribe(ComponentKind::Receiver, &id, 10).is_ok());
    }
}
