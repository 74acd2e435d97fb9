//! [`QueuedExporter`]: queue, workers, timeout, retries, counting and health around a
//! [`Sender`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::config::HumanDuration;
use pipeline_core::queue::{
    BatchQueue, FullPolicy, MemoryQueue, PersistentConfig, PersistentQueue, QueueCounters, Ticket,
};
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{
    Batch, Capabilities, Component, ComponentError, ConsumeError, Consumer, CreateContext, Host,
    Signal,
};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{ExporterSettings, RetryConfig};
use super::health::HealthTracker;
use super::retry::Backoff;
use super::sender::{Delivered, SendError, SendProgress, Sender};

/// An exporter built from a [`Sender`]: implements [`Consumer`] and [`Component`] the way
/// the OpenTelemetry Collector's exporter helper does.
///
/// * `consume` puts the batch in the `sending_queue` (waiting for room or refusing with
///   [`ConsumeError::Full`] per `block_on_overflow`); `num_consumers` workers, spawned by
///   `start`, take batches out and send them. With the queue disabled, `consume` sends in
///   the caller's task and returns the outcome.
/// * Each attempt is bounded by `timeout`. Retryable failures are retried per
///   `retry_on_failure`; permanent ones are not.
/// * Counting: items the backend accepted are `sent`; items lost after `consume` returned
///   `Ok` are `dropped` with reason `rejected` (permanent error or partial success),
///   `retries_exhausted` or `shutdown_timeout`. Every attempt records its duration and
///   outcome. A batch's acknowledgement tokens are resolved delivered once the backend
///   accepted all of it, dropped otherwise. A sender that sends a batch in parts
///   ([`Sender::send_resuming`]) resumes after the parts already answered when retrying,
///   and what those parts delivered is counted as sent even if a later part fails.
/// * Health: `RecoverableError` while the backend fails retryably, `PermanentError` when it
///   refuses us for good ([`SendError::Permanent`] with `health_permanent`), `Ok` again after
///   any success.
/// * `shutdown(deadline)` refuses new data, lets the workers drain the queue until the
///   deadline, then aborts what is in flight (sends and backoff sleeps) and counts every item
///   still held as dropped with reason `shutdown_timeout`.
/// * A member of a group ([`QueuedExporter::member`], one backend of the `loadbalancing`
///   exporter) hands the batches it could not deliver (retries exhausted, or still held at
///   shutdown) to its [`Fallback`] instead of dropping them, and gives up its queue on
///   demand ([`QueuedExporter::take_queued`]).
pub struct QueuedExporter<S: Sender> {
    inner: Arc<Inner<S>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Created,
    Starting,
    Started,
    Stopped,
}

struct Inner<S> {
    sender: S,
    id: String,
    timeout: Duration,
    retry: RetryConfig,
    num_consumers: usize,
    telemetry: ComponentTelemetry,
    health: HealthTracker,
    /// The sending queue: a memory queue from the start, a persistent one once `start`
    /// opened it; unset without a queue.
    queue: OnceLock<Arc<dyn BatchQueue>>,
    queue_enabled: bool,
    /// A persistent queue to open at `start`.
    persistent: Option<Persistent>,
    lifecycle: Mutex<Lifecycle>,
    workers: Mutex<JoinSet<()>>,
    closing: AtomicBool,
    abort: CancellationToken,
    in_flight: InFlight,
    fallback: Option<Arc<dyn Fallback>>,
}

/// Takes the batches a member [`QueuedExporter`] could not deliver, instead of the exporter
/// counting them as dropped: the `loadbalancing` exporter sends them to the backend that
/// owns their keys now. The batch comes with its acknowledgement handles unresolved; the
/// fallback owns them from then on.
pub trait Fallback: Send + Sync + 'static {
    /// `batch` will not reach this member's backend; `why` is the drop reason it would have
    /// been counted under (`retries_exhausted`, `shutdown_timeout`).
    fn take_back(&self, batch: Batch, why: &'static str);
}

/// A persistent sending queue, opened at `start`.
struct Persistent {
    config: PersistentConfig,
    policy: FullPolicy,
    gauges: (prometheus::IntGauge, prometheus::IntGauge),
}

/// Segment files of a persistent queue roll over at this size.
const SEGMENT_BYTES: u64 = 16 << 20;

/// What became of one batch.
enum Outcome {
    /// Every part answered; `all_accepted` unless the backend rejected some items.
    Sent {
        all_accepted: bool,
    },
    Rejected(String),
    Exhausted {
        reason: String,
        retry_after: Option<Duration>,
    },
    Aborted,
}

impl<S: Sender> QueuedExporter<S> {
    /// Wraps `sender` with the behaviour `settings` asks for, counting and reporting
    /// through `ctx`. Nothing runs until `start`.
    pub fn new(ctx: &CreateContext, settings: ExporterSettings, sender: S) -> QueuedExporter<S> {
        let gauges = ctx.telemetry.queue_gauges();
        QueuedExporter::build(ctx, ctx.id.to_string(), gauges, settings, sender, None)
    }

    /// One member of a group of exporters behind one component (a backend of the
    /// `loadbalancing` exporter): logs as `<id>/<name>`, reports its queue as
    /// `component_id="<id>/<name>"`, counts under the component, and hands what it cannot
    /// deliver to `fallback` instead of dropping it.
    pub fn member(
        ctx: &CreateContext,
        name: &str,
        settings: ExporterSettings,
        sender: S,
        fallback: Arc<dyn Fallback>,
    ) -> QueuedExporter<S> {
        let gauges = ctx.telemetry.queue_gauges_named(name);
        let id = format!("{}/{name}", ctx.id);
        QueuedExporter::build(ctx, id, gauges, settings, sender, Some(fallback))
    }

    fn build(
        ctx: &CreateContext,
        id: String,
        gauges: (::prometheus::IntGauge, ::prometheus::IntGauge),
        settings: ExporterSettings,
        sender: S,
        fallback: Option<Arc<dyn Fallback>>,
    ) -> QueuedExporter<S> {
        let queue_cfg = &settings.sending_queue;
        let policy = if queue_cfg.block_on_overflow {
            FullPolicy::Block
        } else {
            FullPolicy::Refuse
        };
        let queue = OnceLock::new();
        let mut persistent = None;
        if queue_cfg.enabled {
            match &queue_cfg.storage {
                Some(storage) => {
                    let base = if storage.is_absolute() {
                        storage.clone()
                    } else {
                        ctx.data_dir.join(storage)
                    };
                    persistent = Some(Persistent {
                        config: PersistentConfig {
                            dir: base.join(id.replace('/', "-")),
                            max_size_bytes: queue_cfg.max_size.get(),
                            segment_bytes: SEGMENT_BYTES,
                            fsync: queue_cfg.fsync,
                            fsync_interval: queue_cfg.fsync_interval.get(),
                        },
                        policy,
                        gauges,
                    });
                }
                None => {
                    let _ = queue.set(Arc::new(MemoryQueue::sized(
                        queue_cfg.queue_size,
                        queue_cfg.sizer,
                        policy,
                        Some(gauges),
                    )) as Arc<dyn BatchQueue>);
                }
            }
        }
        QueuedExporter {
            inner: Arc::new(Inner {
                sender,
                id,
                timeout: settings.timeout.get(),
                retry: settings.retry_on_failure,
                num_consumers: queue_cfg.num_consumers.max(1),
                telemetry: ctx.telemetry.clone(),
                health: HealthTracker::new(ctx.health.clone()),
                queue,
                queue_enabled: queue_cfg.enabled,
                persistent,
                lifecycle: Mutex::new(Lifecycle::Created),
                workers: Mutex::new(JoinSet::new()),
                closing: AtomicBool::new(false),
                abort: CancellationToken::new(),
                in_flight: InFlight::default(),
                fallback,
            }),
        }
    }

    /// The sender inside.
    pub fn sender(&self) -> &S {
        &self.inner.sender
    }

    /// Items waiting in the queue now (0 without a queue).
    pub fn queued_items(&self) -> usize {
        self.inner.queue.get().map_or(0, |q| q.len_items())
    }

    /// Takes every batch waiting in the queue out of it, handles unresolved (for sending
    /// them elsewhere); the batches in flight stay with the workers.
    pub fn take_queued(&self) -> Vec<Batch> {
        self.inner
            .queue
            .get()
            .map(|q| q.drain_all())
            .unwrap_or_default()
    }
}

#[async_trait]
impl<S: Sender> Consumer for QueuedExporter<S> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            mutates_data: false,
            reads_data: self.inner.sender.reads_data(),
        }
    }

    /// With a persistent queue, a batch's handles are resolved once it is written to disk.
    fn acks_durably(&self) -> bool {
        self.inner.persistent.is_some()
    }

    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        // Enter before checking `closing`, so shutdown either sees us or we see it.
        let _guard = inner.in_flight.enter();
        if inner.closing.load(Ordering::SeqCst) {
            // Refused: the data goes back to the caller, not to the backend.
            batch.dropped();
            return Err(ConsumeError::ShuttingDown);
        }
        if batch.item_count() == 0 {
            // Nothing to send is delivered.
            batch.delivered();
            return Ok(());
        }
        if inner.sender.reads_data() {
            // Decoded once here, not on every attempt.
            batch.decode();
        }
        if !inner.queue_enabled {
            return inner.export_now(batch).await;
        }
        match inner.queue.get() {
            Some(queue) => queue.push(batch).await,
            None => {
                // A persistent queue not opened yet: the exporter has not started.
                batch.dropped();
                Err(ConsumeError::retryable("the exporter has not started yet"))
            }
        }
    }
}

#[async_trait]
impl<S: Sender> Component for QueuedExporter<S> {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let inner = &self.inner;
        {
            let mut state = inner.lock_lifecycle();
            if *state != Lifecycle::Created {
                return Ok(());
            }
            *state = Lifecycle::Starting;
        }
        if let Err(e) = inner.sender.start().await {
            let mut state = inner.lock_lifecycle();
            if *state == Lifecycle::Starting {
                *state = Lifecycle::Created;
            }
            return Err(e);
        }
        let mut state = inner.lock_lifecycle();
        if *state != Lifecycle::Starting {
            // Shut down while the sender was starting.
            return Ok(());
        }
        if let Some(Persistent {
            config,
            policy,
            gauges: (size, capacity),
        }) = &inner.persistent
            && inner.queue.get().is_none()
        {
            let counter = |name: &str, help: &str| {
                inner
                    .telemetry
                    .counter_family(name, help, &[])
                    .ok()
                    .map(|f| f.with_label_values(&[inner.id.as_str()]))
            };
            let counters = QueueCounters {
                corrupt_records: counter(
                    "sightline_queue_corrupt_records_total",
                    "Persistent queue records found torn or corrupt and skipped (counted at start-up and when read).",
                ),
                corrupt_bytes: counter(
                    "sightline_queue_corrupt_bytes_total",
                    "Bytes of persistent queue segments lost to damage.",
                ),
                size: Some(size.clone()),
                capacity: Some(capacity.clone()),
            };
            match PersistentQueue::open(config.clone(), *policy, counters) {
                Ok(q) => {
                    let _ = inner.queue.set(Arc::new(q) as Arc<dyn BatchQueue>);
                }
                Err(e) => {
                    *state = Lifecycle::Created;
                    return Err(ComponentError::Other(e.to_string()));
                }
            }
        }
        if let Some(queue) = inner.queue.get() {
            let mut workers = inner.workers.lock().unwrap_or_else(|p| p.into_inner());
            for _ in 0..inner.num_consumers {
                workers.spawn(run_worker(Arc::clone(inner), Arc::clone(queue)));
            }
        }
        *state = Lifecycle::Started;
        inner.health.ok();
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let inner = &self.inner;
        inner.closing.store(true, Ordering::SeqCst);
        *inner.lock_lifecycle() = Lifecycle::Stopped;
        if let Some(queue) = inner.queue.get() {
            queue.close();
        }
        let mut workers =
            std::mem::take(&mut *inner.workers.lock().unwrap_or_else(|p| p.into_inner()));
        let drained = tokio::time::timeout_at(deadline, async {
            while workers.join_next().await.is_some() {}
        })
        .await
        .is_ok()
            && inner.in_flight.wait_idle(deadline).await;
        // From here on every send, retry and backoff sleep ends at once; the workers count
        // what they held, callers without a queue get ShuttingDown back.
        inner.abort.cancel();
        if !drained {
            while workers.join_next().await.is_some() {}
        }
        if let Some(queue) = inner.queue.get() {
            let left = queue.drain_all();
            let items: usize = left.iter().map(Batch::item_count).sum();
            if items > 0 {
                tracing::warn!(
                    exporter = %inner.id,
                    items,
                    "shutdown deadline passed with data still queued; dropping it"
                );
            }
            for batch in left {
                inner.give_up(batch, reason::SHUTDOWN_TIMEOUT);
            }
        }
        inner.sender.shutdown().await;
        inner.health.stopped();
        Ok(())
    }
}

impl<S: Sender> Drop for QueuedExporter<S> {
    /// Dropped without `shutdown` (the graph always shuts down first; this is for everyone
    /// else): stop the workers, which hold the inner state, and count what was held.
    fn drop(&mut self) {
        let inner = &self.inner;
        inner.closing.store(true, Ordering::SeqCst);
        inner.abort.cancel();
        if let Some(queue) = inner.queue.get() {
            queue.close();
            for batch in queue.drain_all() {
                inner.give_up(batch, reason::SHUTDOWN_TIMEOUT);
            }
        }
    }
}

async fn run_worker<S: Sender>(inner: Arc<Inner<S>>, queue: Arc<dyn BatchQueue>) {
    loop {
        let next = tokio::select! {
            biased;
            () = inner.abort.cancelled() => None,
            batch = queue.pop() => batch,
        };
        let Some((batch, ticket)) = next else { return };
        inner.export_queued(batch, ticket, queue.keeps_data()).await;
    }
}

impl<S: Sender> Inner<S> {
    fn lock_lifecycle(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a batch taken from the queue; whatever is not delivered is counted here, and
    /// the batch's tokens are resolved. The queue's `ticket` is finished with, except for a
    /// send cut off at shutdown from a queue that `keeps` data (on disk, for the next start).
    async fn export_queued(&self, batch: Batch, ticket: Ticket, keeps: bool) {
        let signal = batch.signal();
        let items = batch.item_count();
        let mut progress = SendProgress::starting_now();
        match self.deliver(&batch, &mut progress).await {
            Outcome::Sent { all_accepted: true } => batch.delivered(),
            Outcome::Sent {
                all_accepted: false,
            } => batch.dropped(),
            Outcome::Rejected(why) => {
                tracing::error!(
                    exporter = %self.id, %signal, items, reason = %why,
                    "backend rejected the data permanently; dropping it"
                );
                self.drop_rest(batch, &progress, reason::REJECTED);
            }
            Outcome::Exhausted { reason: why, .. } => {
                tracing::error!(
                    exporter = %self.id, %signal, items, reason = %why,
                    "no more retries; dropping the data"
                );
                self.give_up_rest(batch, &progress, reason::RETRIES_EXHAUSTED);
            }
            Outcome::Aborted if keeps => {
                tracing::info!(
                    exporter = %self.id, %signal, items,
                    "shutdown deadline passed while sending; the data stays in the persistent queue for the next start"
                );
                // Parts already delivered are counted; the record is sent whole next time.
                self.count_parts_done(signal, &progress);
                ticket.keep();
                batch.dropped();
                return;
            }
            Outcome::Aborted => {
                tracing::warn!(
                    exporter = %self.id, %signal, items,
                    "shutdown deadline passed while sending; dropping the data"
                );
                self.give_up_rest(batch, &progress, reason::SHUTDOWN_TIMEOUT);
            }
        }
        ticket.done();
    }

    /// Sends in the caller's task (no queue); the caller keeps responsibility on error
    /// (its tokens are failed here, as the data went back to the caller). Parts a
    /// multi-part sender already delivered are counted; the caller may send them again.
    async fn export_now(&self, batch: Batch) -> Result<(), ConsumeError> {
        let mut progress = SendProgress::starting_now();
        let outcome = self.deliver(&batch, &mut progress).await;
        if !matches!(outcome, Outcome::Sent { .. }) {
            self.count_parts_done(batch.signal(), &progress);
        }
        let result = match outcome {
            Outcome::Sent { all_accepted } => {
                if all_accepted {
                    batch.delivered();
                } else {
                    batch.dropped();
                }
                return Ok(());
            }
            Outcome::Rejected(why) => Err(ConsumeError::permanent(why)),
            Outcome::Exhausted {
                reason: why,
                retry_after,
            } => Err(ConsumeError::Retryable {
                error: why.into(),
                retry_after,
            }),
            Outcome::Aborted => Err(ConsumeError::ShuttingDown),
        };
        batch.dropped();
        result
    }

    /// Counts a batch that will not be delivered: the items of the parts already answered as
    /// sent (or rejected), the rest as dropped with `why`; then fails its tokens.
    fn drop_rest(&self, batch: Batch, progress: &SendProgress, why: &str) {
        let signal = batch.signal();
        self.count_parts_done(signal, progress);
        let rest = batch.item_count().saturating_sub(progress.items_done);
        self.telemetry.dropped(signal, rest, why);
        batch.dropped();
    }

    /// A batch this exporter will not deliver: to the fallback when it has one and no part
    /// of the batch was delivered yet, else counted as dropped with `why` (the parts already
    /// answered as sent).
    fn give_up_rest(&self, batch: Batch, progress: &SendProgress, why: &'static str) {
        if progress.items_done == 0 {
            self.give_up(batch, why);
        } else {
            self.drop_rest(batch, progress, why);
        }
    }

    /// A whole batch this exporter will not deliver: to the fallback, or counted as dropped
    /// with `why` and its tokens failed.
    fn give_up(&self, batch: Batch, why: &'static str) {
        match &self.fallback {
            Some(fallback) => fallback.take_back(batch, why),
            None => {
                self.telemetry
                    .dropped(batch.signal(), batch.item_count(), why);
                batch.dropped();
            }
        }
    }

    /// Counts what the finished parts of a batch that failed later came to.
    fn count_parts_done(&self, signal: Signal, progress: &SendProgress) {
        if progress.items_done > 0 {
            self.count_delivered(signal, progress.items_done, progress.rejected.clone());
        }
    }

    /// Attempts until success, a permanent error, the end of retries or abort.
    async fn deliver(&self, batch: &Batch, progress: &mut SendProgress) -> Outcome {
        let signal = batch.signal();
        let first = Instant::now();
        // Made on the first failure only: the success path needs no randomness.
        let mut backoff: Option<Backoff> = None;
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                () = self.abort.cancelled() => return Outcome::Aborted,
                r = self.attempt(batch, progress) => r,
            };
            let outcome = if result.is_ok() { "success" } else { "failure" };
            self.telemetry
                .send_duration(signal, outcome, started.elapsed());
            let (why, retry_after) = match result {
                Ok(delivered) => {
                    self.health.ok();
                    let all_accepted = delivered.rejected_items == 0;
                    self.count_delivered(signal, batch.item_count(), delivered);
                    return Outcome::Sent { all_accepted };
                }
                Err(SendError::Permanent {
                    reason: why,
                    health_permanent,
                }) => {
                    if health_permanent {
                        self.health.permanent(&why);
                    }
                    return Outcome::Rejected(why);
                }
                Err(SendError::Retryable {
                    reason: why,
                    retry_after,
                }) => (why, retry_after),
            };
            self.health.recoverable(&why);
            if !self.retry.enabled {
                return Outcome::Exhausted {
                    reason: why,
                    retry_after,
                };
            }
            let backoff = backoff.get_or_insert_with(|| Backoff::new(&self.retry));
            let Some(delay) = backoff.next_delay(first.elapsed(), retry_after) else {
                return Outcome::Exhausted {
                    reason: format!(
                        "{why} (still failing after {})",
                        HumanDuration(round_ms(first.elapsed()))
                    ),
                    retry_after,
                };
            };
            tracing::warn!(
                exporter = %self.id, %signal, items = batch.item_count(), reason = %why,
                "sending failed; will retry in {}", HumanDuration(round_ms(delay))
            );
            tokio::select! {
                biased;
                () = self.abort.cancelled() => return Outcome::Aborted,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn attempt(
        &self,
        batch: &Batch,
        progress: &mut SendProgress,
    ) -> Result<Delivered, SendError> {
        if self.timeout.is_zero() {
            return self.sender.send_resuming(batch, progress).await;
        }
        match tokio::time::timeout(self.timeout, self.sender.send_resuming(batch, progress)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::retryable(format!(
                "no answer within the timeout of {}",
                HumanDuration(self.timeout)
            ))),
        }
    }

    fn count_delivered(&self, signal: Signal, items: usize, delivered: Delivered) {
        let rejected = usize::try_from(delivered.rejected_items)
            .unwrap_or(usize::MAX)
            .min(items);
        if rejected > 0 {
            tracing::warn!(
                exporter = %self.id, %signal, rejected, message = %delivered.message,
                "backend accepted the request but rejected some items (partial success)"
            );
            self.telemetry.dropped(signal, rejected, reason::REJECTED);
        } else if !delivered.message.is_empty() {
            tracing::warn!(
                exporter = %self.id, %signal, message = %delivered.message,
                "backend accepted the request with a warning"
            );
        }
        self.telemetry.sent(signal, items - rejected);
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// Counts `consume` calls in progress, so shutdown can wait for callers sending without a
/// queue.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// Waits until no call is in progress; false if `deadline` came first.
    async fn wait_idle(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
