//! The connector's output: after every evaluation the `slo_*` gauges (`figures.rs`) are
//! offered here, and a task of their own hands them to the metrics pipelines that receive
//! from the connector.
//!
//! The evaluation loop never waits for the pipeline: a pipeline that is slow or full holds
//! only this task, not evaluations, alerts, Redis flushes or snapshots. One batch waits at
//! most; a newer evaluation replaces it, and the replaced points are counted as dropped
//! (`reason="superseded"`: the newer figures are on their way). What the pipeline refuses is
//! counted too; the emitted batches carry no acknowledgement tokens.

use std::sync::Mutex;

use pipeline_core::consumer::SharedConsumer;
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::time::now_unix_nanos;
use pipeline_core::{Batch, Payload, Signal};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::eval::SloReport;
use super::figures::{families, resource_metrics};

/// Why emitted gauges were dropped: a newer evaluation replaced them before they were sent.
pub(crate) const SUPERSEDED: &str = "superseded";

/// The gauges waiting for, or being handed to, the connector's metrics pipelines.
pub(crate) struct Emitter {
    output: SharedConsumer,
    /// The newest gauges not yet taken by the sending task.
    pending: Mutex<Option<Batch>>,
    /// Points of the batch being sent, for the shutdown deadline to count.
    in_flight: Mutex<usize>,
    ready: Notify,
    /// One send at a time, so gauges reach the pipeline in evaluation order.
    sending: tokio::sync::Mutex<()>,
    telemetry: ComponentTelemetry,
}

impl Emitter {
    pub(crate) fn new(output: SharedConsumer, telemetry: ComponentTelemetry) -> Emitter {
        Emitter {
            output,
            pending: Mutex::new(None),
            in_flight: Mutex::new(0),
            ready: Notify::new(),
            sending: tokio::sync::Mutex::new(()),
            telemetry,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<Batch>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, usize> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offers the gauges of an evaluation, stamped with the wall clock (the moment they were
    /// computed; the figures themselves are for the data clock). Never waits.
    pub(crate) fn offer(&self, reports: &[SloReport], rules: &[(String, String)]) {
        let metrics = resource_metrics(&families(reports, rules), now_unix_nanos());
        if metrics.is_empty() {
            return;
        }
        let replaced = self
            .pending()
            .replace(Batch::new(Payload::Metrics(metrics)));
        if let Some(old) = replaced {
            self.telemetry
                .dropped(Signal::Metrics, old.item_count(), SUPERSEDED);
        }
        self.ready.notify_one();
    }

    /// Sends what is pending, if anything.
    async fn send_pending(&self) {
        let _in_order = self.sending.lock().await;
        self.send_locked().await;
    }

    /// [`Emitter::send_pending`] with `sending` held.
    async fn send_locked(&self) {
        let Some(batch) = self.pending().take() else {
            return;
        };
        let points = batch.item_count();
        *self.in_flight() = points;
        let result = self.output.consume(batch).await;
        *self.in_flight() = 0;
        if let Err(e) = result {
            self.telemetry
                .dropped_downstream(Signal::Metrics, points, &e);
        }
    }

    /// The sending task: sends whenever gauges are offered, until `cancel`. A send under way
    /// is not interrupted by `cancel` (the shutdown deadline aborts it; [`Emitter::finish`]
    /// counts it).
    pub(crate) async fn run(&self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = self.ready.notified() => {}
            }
            self.send_pending().await;
        }
    }

    /// At shutdown, once the sending task has stopped or been aborted and after the last
    /// evaluation: sends what is pending by `deadline`. A send the abort cut off, and what is
    /// still pending or being sent at the deadline, is counted as dropped.
    pub(crate) async fn finish(&self, deadline: Instant) {
        let finished = tokio::time::timeout_at(deadline, async {
            let _in_order = self.sending.lock().await;
            let aborted = std::mem::take(&mut *self.in_flight());
            self.cut_off(aborted);
            self.send_locked().await;
        })
        .await;
        if finished.is_err() {
            let in_flight = std::mem::take(&mut *self.in_flight());
            let pending = self.pending().take().map_or(0, |b| b.item_count());
            self.cut_off(in_flight + pending);
        }
    }

    fn cut_off(&self, points: usize) {
        self.telemetry.dropped_at_shutdown(Signal::Metrics, points);
    }
}
