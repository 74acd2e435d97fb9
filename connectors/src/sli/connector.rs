//! The running connector: `consume` turns each batch of spans or log records into requests
//! and adds them to the series; a flush task emits the series every `flush_interval` into
//! the metrics pipelines; `shutdown` emits a last time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::time::now_unix_nanos;
use pipeline_core::{
    Batch, Component, ComponentError, ConsumeError, Consumer, Host, Payload, Signal,
};
use prometheus::{IntCounter, IntGauge};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::aggregate::{Aggregator, Kind};
use super::config::SliConfig;
use super::extract::{self, Invalid};

/// The connector's own metrics, labels resolved.
pub(crate) struct SliMetrics {
    /// Requests derived, per input signal (traces, logs).
    derived: [IntCounter; 2],
    /// Present but unusable values, per input signal: [status_code, duration].
    invalid: [[IntCounter; 2]; 2],
    /// Per [`Kind`].
    overflow: [IntCounter; 3],
    /// Per [`Kind`].
    expired: [IntCounter; 3],
    /// Per [`Kind`].
    series: [IntGauge; 3],
}

impl SliMetrics {
    pub(crate) fn new(telemetry: &ComponentTelemetry) -> Result<SliMetrics, prometheus::Error> {
        let id = telemetry.id().as_str();
        let derived = telemetry.counter_family(
            "sightline_sli_requests_derived_total",
            "Requests (spans and request log records) the sli connector turned into metrics, by input signal.",
            &["signal"],
        )?;
        let invalid = telemetry.counter_family(
            "sightline_sli_invalid_values_total",
            "Status codes and durations that were present but unusable; the request counted without them.",
            &["signal", "field"],
        )?;
        let overflow = telemetry.counter_family(
            "sightline_sli_overflow_total",
            "Requests recorded into a metric's overflow series because it had max_series series.",
            &["metric"],
        )?;
        let expired = telemetry.counter_family(
            "sightline_sli_series_expired_total",
            "Series dropped after being idle for series_expiry.",
            &["metric"],
        )?;
        let series = telemetry.gauge_family(
            "sightline_sli_series",
            "Series held per metric, overflow series included, as of the last flush.",
            &["metric"],
        )?;
        let per_kind = |f: &prometheus::IntCounterVec| {
            Kind::ALL.map(|k| f.with_label_values(&[id, k.metric_name()]))
        };
        let signals = ["traces", "logs"];
        Ok(SliMetrics {
            derived: signals.map(|s| derived.with_label_values(&[id, s])),
            invalid: signals.map(|s| {
                ["status_code", "duration"].map(|f| invalid.with_label_values(&[id, s, f]))
            }),
            overflow: per_kind(&overflow),
            expired: per_kind(&expired),
            series: Kind::ALL.map(|k| series.with_label_values(&[id, k.metric_name()])),
        })
    }
}

struct Inner {
    config: SliConfig,
    /// OTLP span kind values that count as requests.
    kinds: Vec<i32>,
    next: SharedConsumer,
    telemetry: ComponentTelemetry,
    metrics: SliMetrics,
    state: Mutex<Aggregator>,
    /// Serialises flushes, so emitted cumulative points never go back in time.
    flushing: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    stop: CancellationToken,
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// Points of the flush `next` has not answered yet: counted as dropped if the shutdown
    /// deadline cuts the flush off (the aggregate has already let go of the deltas).
    sending: Mutex<usize>,
}

/// The `sli` connector.
pub struct SliConnector {
    inner: Arc<Inner>,
}

impl SliConnector {
    pub(crate) fn new(
        config: SliConfig,
        next: SharedConsumer,
        telemetry: ComponentTelemetry,
        metrics: SliMetrics,
    ) -> SliConnector {
        let kinds = config.span_kinds.iter().map(|k| k.proto_value()).collect();
        SliConnector {
            inner: Arc::new(Inner {
                state: Mutex::new(Aggregator::new(&config)),
                config,
                kinds,
                next,
                telemetry,
                metrics,
                flushing: tokio::sync::Mutex::new(()),
                closed: AtomicBool::new(false),
                stop: CancellationToken::new(),
                flusher: Mutex::new(None),
                sending: Mutex::new(0),
            }),
        }
    }

    /// Emits the series now, as the flush task does every `flush_interval`.
    pub async fn flush(&self) {
        self.inner.flush().await;
    }
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        if let Some(batch) = self.collect() {
            self.send(batch).await;
        }
    }

    /// Expires idle series and takes the metrics to emit, if any.
    fn collect(&self) -> Option<Batch> {
        let flushed = self.state().flush(Instant::now(), now_unix_nanos());
        for k in Kind::ALL {
            let i = k as usize;
            self.metrics.expired[i].inc_by(flushed.expired[i]);
            self.metrics.series[i].set(i64::try_from(flushed.series[i]).unwrap_or(i64::MAX));
        }
        (!flushed.resource_metrics.is_empty())
            .then(|| Batch::new(Payload::Metrics(flushed.resource_metrics)))
    }

    fn sending(&self) -> std::sync::MutexGuard<'_, usize> {
        self.sending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the points of a flush the shutdown deadline cut off (its task or future is
    /// gone) as dropped.
    fn drop_cut_off_flush(&self) {
        let points = std::mem::take(&mut *self.sending());
        self.telemetry.dropped_at_shutdown(Signal::Metrics, points);
    }

    /// Hands emitted metrics on; what the metrics pipeline refuses is counted as dropped.
    async fn send(&self, batch: Batch) {
        let points = batch.item_count();
        *self.sending() = points;
        let result = self.next.consume(batch).await;
        *self.sending() = 0;
        if let Err(e) = result {
            self.telemetry
                .dropped_downstream(Signal::Metrics, points, &e);
        }
    }
}

async fn run_flusher(inner: Arc<Inner>) {
    let mut ticks = tokio::time::interval(inner.config.flush_interval.get());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            biased;
            () = inner.stop.cancelled() => return,
            _ = ticks.tick() => inner.flush().await,
        }
    }
}

#[async_trait]
impl Consumer for SliConnector {
    /// Given its own copy: once the requests are in the aggregate the batch has reached
    /// its destination here.
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let result = self.consume_ref(&batch).await;
        if result.is_ok() {
            batch.delivered();
        } else {
            batch.dropped();
        }
        result
    }

    /// The connector only reads spans and log records, so a fan-out lends it the batch
    /// instead of copying it for it.
    fn reads_by_ref(&self) -> bool {
        true
    }

    async fn consume_ref(&self, batch: &Batch) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(ConsumeError::ShuttingDown);
        }
        let mut invalid = Invalid::default();
        let mut derived = 0u64;
        let mut overflowed = [0u64; 3];
        let (now, wall) = (Instant::now(), now_unix_nanos());
        let signal_index = {
            // Requests go straight into the series: no list of them is built, so a large
            // batch costs no large allocation.
            let mut state = inner.state();
            let mut record = |r: extract::Request<'_>| {
                derived += 1;
                for (n, o) in overflowed.iter_mut().zip(state.record(&r, now, wall)) {
                    *n += u64::from(o);
                }
            };
            match &*batch.payload_view() {
                Payload::Traces(rs) => {
                    extract::spans(&inner.config, &inner.kinds, rs, &mut invalid, &mut record);
                    0
                }
                Payload::Logs(rl) => {
                    extract::logs(&inner.config, rl, &mut invalid, &mut record);
                    1
                }
                other => {
                    return Err(ConsumeError::permanent(format!(
                        "the sli connector takes traces and logs, not {}",
                        other.signal()
                    )));
                }
            }
        };
        let m = &inner.metrics;
        m.invalid[signal_index][0].inc_by(invalid.status_code as u64);
        m.invalid[signal_index][1].inc_by(invalid.duration as u64);
        m.derived[signal_index].inc_by(derived);
        for (counter, n) in m.overflow.iter().zip(overflowed) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Component for SliConnector {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let inner = &self.inner;
        let mut flusher = inner.flusher.lock().unwrap_or_else(|p| p.into_inner());
        if flusher.is_none() && !inner.closed.load(Ordering::Acquire) {
            *flusher = Some(tokio::spawn(run_flusher(Arc::clone(inner))));
        }
        Ok(())
    }

    /// Stops the flush task and emits a last time, so what was derived since the last flush
    /// reaches the metrics pipelines. Safe without `start`.
    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        inner.stop.cancel();
        let task = inner
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut task) = task
            && tokio::time::timeout_at(deadline, &mut task).await.is_err()
        {
            task.abort();
            // Stopped for sure before the flush it was sending is counted.
            let _ = task.await;
            inner.drop_cut_off_flush();
        }
        let Ok(_one_at_a_time) = tokio::time::timeout_at(deadline, inner.flushing.lock()).await
        else {
            return Ok(());
        };
        if let Some(batch) = inner.collect()
            && tokio::time::timeout_at(deadline, inner.send(batch))
                .await
                .is_err()
        {
            inner.drop_cut_off_flush();
        }
        Ok(())
    }
}

impl Drop for SliConnector {
    fn drop(&mut self) {
        self.inner.stop.cancel();
    }
}
