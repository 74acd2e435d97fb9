//! The processor instances and the state they share.
//!
//! One [`Shared`] per component ID holds the table, the held records of every logs pipeline
//! the processor is in, and one background task (started by the first instance to start,
//! stopped by the last to shut down) that expires entries and releases held records when
//! their request ID becomes known or their wait is over.
//!
//! Each logs pipeline has a *lane* (an async mutex) that every hand-off to its `next` goes
//! through, taking records from the queues and sending them in one critical section: a
//! released record can never overtake, or be overtaken by, a later record of its resource.
//! A logs batch is handled in three steps under the lane: decide (under the state lock)
//! which records pass now and which are held; send the passing ones; then queue the held
//! ones. If `next` refuses the passing records, nothing was held and the caller gets the
//! error with the whole batch still in its hands.
//!
//! Released records (matched, expired, or the oldest over `max_pending_items`) belong to
//! requests that were accepted earlier, so they are never sent from the future of whichever
//! call happened to release them (a receiver's timeout or a cancelled request would drop
//! them): a task of the processor's sends them, holding the lane until `next` answered, and
//! the caller only waits for it. What `next` refuses, or what a shutdown deadline cuts off,
//! is counted as dropped and its acknowledgement handles resolved as dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::component::join_until;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{
    Batch, Capabilities, Component, ComponentError, ConsumeError, Consumer, Host, Payload, Signal,
    WaitingBatch,
};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{Notify, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::RequestIdConfig;
use super::correlate::{Correlator, LogOutcome};
use super::pending::{Cause, Group, Pending, Released, Resolver, ScopeShell};
use super::table::Table;

/// Most entries one sweep looks at while holding the lock (about a millisecond's work).
const SWEEP_BUDGET: usize = 20_000;

/// The processor's own metrics, label values resolved.
pub(crate) struct Metrics {
    pub(crate) matched_logs: IntCounter,
    pub(crate) matched_spans: IntCounter,
    pub(crate) unmatched_wait_expired: IntCounter,
    pub(crate) unmatched_pending_full: IntCounter,
    pub(crate) unmatched_shutdown: IntCounter,
    pub(crate) unmatched_not_held: IntCounter,
    pub(crate) evicted_max_entries: IntCounter,
    pub(crate) evicted_ttl: IntCounter,
    pub(crate) pending: IntGauge,
    pub(crate) entries: IntGauge,
}

impl Metrics {
    fn unmatched(&self, cause: Cause) -> &IntCounter {
        match cause {
            Cause::WaitExpired => &self.unmatched_wait_expired,
            Cause::PendingFull => &self.unmatched_pending_full,
            Cause::Shutdown => &self.unmatched_shutdown,
            Cause::Ready => &self.unmatched_not_held,
        }
    }
}

/// A logs pipeline's way out.
struct Link {
    next: SharedConsumer,
    lane: Arc<tokio::sync::Mutex<()>>,
    closed: AtomicBool,
    /// Fired when the shutdown deadline passes: a release still waiting for `next` stops
    /// and counts its records as dropped.
    abort: CancellationToken,
}

struct State {
    table: Table,
    /// Per logs pipeline, by link index.
    links: Vec<Arc<Link>>,
    pending: Vec<Pending>,
}

impl State {
    fn held(&self) -> usize {
        self.pending.iter().map(Pending::held).sum()
    }
}

#[derive(Default)]
struct Lifecycle {
    running: usize,
    task: Option<JoinHandle<()>>,
}

/// Everything the instances of one component ID share.
pub(crate) struct Shared {
    correlator: Correlator,
    wait: Duration,
    holds: bool,
    max_pending: usize,
    /// How often expired entries are swept (lookups check expiry anyway).
    sweep_every: Duration,
    state: Mutex<State>,
    wake: Notify,
    stopping: AtomicBool,
    lifecycle: Mutex<Lifecycle>,
    metrics: Metrics,
    telemetry: ComponentTelemetry,
}

/// Enrichment and counting of records as they leave the queues.
struct Releaser<'a> {
    correlator: &'a Correlator,
    table: &'a mut Table,
    metrics: &'a Metrics,
    now: Instant,
}

impl Resolver for Releaser<'_> {
    fn known(&mut self, record: &LogRecord) -> bool {
        !self.correlator.must_wait(self.table, record, self.now)
    }

    fn release(&mut self, record: &mut LogRecord, cause: Cause) {
        match self.correlator.enrich_log(self.table, record, self.now) {
            LogOutcome::Matched => self.metrics.matched_logs.inc(),
            LogOutcome::Unmatched => self.metrics.unmatched(cause).inc(),
            LogOutcome::Untouched => {}
        }
    }
}

impl Shared {
    pub(crate) fn new(
        config: &RequestIdConfig,
        metrics: Metrics,
        telemetry: ComponentTelemetry,
    ) -> Shared {
        let ttl = config.ttl.get();
        Shared {
            correlator: Correlator::new(config.request_id_attributes.clone()),
            wait: config.wait.get(),
            holds: config.holds(),
            max_pending: config.max_pending_items,
            sweep_every: (ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)),
            state: Mutex::new(State {
                table: Table::new(config.max_entries, ttl.as_millis() as u32),
                links: Vec::new(),
                pending: Vec::new(),
            }),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            lifecycle: Mutex::new(Lifecycle::default()),
            metrics,
            telemetry,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the metrics up to date with the state.
    fn sync(&self, st: &mut State) {
        let removed = st.table.take_removals();
        if removed.evicted > 0 {
            self.metrics.evicted_max_entries.inc_by(removed.evicted);
        }
        if removed.expired > 0 {
            self.metrics.evicted_ttl.inc_by(removed.expired);
        }
        self.metrics.entries.set(st.table.len() as i64);
        self.metrics.pending.set(st.held() as i64);
    }

    /// Adds a logs pipeline; returns its index.
    fn add_link(&self, next: SharedConsumer) -> usize {
        let mut st = self.lock();
        st.links.push(Arc::new(Link {
            next,
            lane: Arc::new(tokio::sync::Mutex::new(())),
            closed: AtomicBool::new(false),
            abort: CancellationToken::new(),
        }));
        st.pending.push(Pending::default());
        st.links.len() - 1
    }

    fn link(&self, id: usize) -> Option<Arc<Link>> {
        self.lock().links.get(id).cloned()
    }

    /// Sends released records to a pipeline's `next` in a task of the processor's, which
    /// holds the pipeline's `lane` until `next` answered: a caller that gives up waiting
    /// (its future dropped) loses nothing. Await the handle to wait for the send.
    fn spawn_release(
        self: &Arc<Self>,
        link: Arc<Link>,
        lane: Option<OwnedMutexGuard<()>>,
        released: Released,
    ) -> JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.send_released(&link, released).await;
            drop(lane);
        })
    }

    /// Hands released records to a pipeline's `next`; what is refused, or cut off by the
    /// link's abort at the shutdown deadline, was accepted before, so it is counted as
    /// dropped (and its handles resolved so, by `next` or here).
    async fn send_released(&self, link: &Link, released: Released) {
        if released.is_empty() {
            released.ctx.delivered();
            return;
        }
        let n = released.count;
        let batch = Batch::with_context(Payload::Logs(released.logs), released.ctx);
        let sent = tokio::select! {
            biased;
            r = link.next.consume(batch) => Some(r),
            () = link.abort.cancelled() => None,
        };
        match sent {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                let why = match e {
                    ConsumeError::Permanent(_) => reason::REJECTED,
                    _ => "refused_downstream",
                };
                tracing::warn!(error = %e, records = n, "request_id: downstream refused released log records; dropping them");
                self.telemetry.dropped(Signal::Logs, n, why);
            }
            None => {
                // The batch went with the send `next` did not finish: its handles were
                // dropped unresolved there, which fails them as well.
                tracing::warn!(
                    records = n,
                    "request_id: shutdown deadline passed while releasing held log records"
                );
                self.telemetry
                    .dropped(Signal::Logs, n, reason::SHUTDOWN_TIMEOUT);
            }
        }
    }

    /// Releases what may leave pipeline `id` now.
    async fn release_ready(self: &Arc<Self>, id: usize) {
        let Some(link) = self.link(id) else { return };
        let lane = Arc::clone(&link.lane).lock_owned().await;
        if link.closed.load(Ordering::Acquire) {
            return;
        }
        let released = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let now = Instant::now();
            let released = match st.pending.get_mut(id) {
                Some(p) if p.held() > 0 => p.take_ready(
                    &mut Releaser {
                        correlator: &self.correlator,
                        table: &mut st.table,
                        metrics: &self.metrics,
                        now,
                    },
                    now,
                ),
                _ => Released::default(),
            };
            self.sync(st);
            released
        };
        if released.is_empty() {
            released.ctx.delivered();
            return;
        }
        // Awaited here so the sweep paces itself, but owned by its own task.
        let _ = self.spawn_release(link, Some(lane), released).await;
    }

    /// The background task: sweeps expired entries and releases held records.
    async fn run(self: Arc<Self>) {
        let mut next_sweep = Instant::now() + self.sweep_every;
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let holding: Vec<usize> = {
                let mut st = self.lock();
                let now = Instant::now();
                if now >= next_sweep {
                    next_sweep = if st.table.expire(now, SWEEP_BUDGET) {
                        // Nothing expires before the least recently used entry does.
                        (now + self.sweep_every).max(st.table.next_expiry().unwrap_or(now))
                    } else {
                        // More to do: let the pipelines have the lock in between.
                        now + Duration::from_millis(5)
                    };
                }
                self.sync(&mut st);
                (0..st.pending.len())
                    .filter(|&i| st.pending[i].held() > 0)
                    .collect()
            };
            for id in holding {
                self.release_ready(id).await;
            }
            let next_deadline = {
                let mut st = self.lock();
                st.pending
                    .iter_mut()
                    .filter_map(Pending::next_deadline)
                    .min()
            };
            let wake_at = next_deadline.map_or(next_sweep, |d| d.min(next_sweep));
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    /// Learns from and enriches a traces batch.
    fn traces(&self, batch: &mut Batch) {
        let Payload::Traces(rs) = batch.payload_mut() else {
            return;
        };
        let now = Instant::now();
        let mut st = self.lock();
        let mut learned = false;
        for span in rs
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            learned |= self.correlator.learn_span(&mut st.table, span, now);
        }
        let mut matched = 0;
        for span in rs
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans)
        {
            if self.correlator.enrich_span(&mut st.table, span, now) {
                matched += 1;
            }
        }
        if matched > 0 {
            self.metrics.matched_spans.inc_by(matched);
        }
        let wake = learned && st.held() > 0;
        self.sync(&mut st);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Splits a logs batch into what passes now and what is held, learning from every
    /// record and enriching the ones that pass.
    fn split_logs(
        &self,
        st: &mut State,
        id: usize,
        rls: Vec<ResourceLogs>,
        holds: bool,
        now: Instant,
    ) -> (Vec<ResourceLogs>, Vec<Group>, bool) {
        let c = &self.correlator;
        let mut out = Vec::with_capacity(rls.len());
        let mut groups = Vec::new();
        let mut learned = false;
        let (mut matched, mut unmatched) = (0u64, 0u64);
        for mut rl in rls {
            let queued = holds
                && st
                    .pending
                    .get(id)
                    .is_some_and(|p| p.holds_resource(rl.resource.as_ref(), &rl.schema_url));
            if queued {
                // Records of this resource are held: everything queues behind them.
                let mut records = Vec::new();
                for sl in rl.scope_logs {
                    let shell = Arc::new(ScopeShell {
                        scope: sl.scope,
                        schema_url: sl.schema_url,
                    });
                    for record in sl.log_records {
                        learned |= c.learn_log(&mut st.table, &record, now);
                        let waits = c.must_wait(&st.table, &record, now);
                        records.push((shell.clone(), record, waits));
                    }
                }
                groups.push(Group {
                    resource: rl.resource,
                    schema_url: rl.schema_url,
                    records,
                });
                continue;
            }
            let group = c.enrich_group(&mut st.table, &mut rl, now, holds);
            learned |= group.learned;
            matched += group.matched;
            unmatched += group.unmatched;
            let Some((si, ri)) = group.first_unmatched else {
                out.push(rl);
                continue;
            };
            // Records before (si, ri) pass; it and everything after it are held.
            let mut rest = rl.scope_logs.split_off(si);
            let mut records = Vec::new();
            for (k, mut sl) in rest.drain(..).enumerate() {
                let held = if k == 0 {
                    sl.log_records.split_off(ri)
                } else {
                    std::mem::take(&mut sl.log_records)
                };
                let shell = Arc::new(ScopeShell {
                    scope: sl.scope.clone(),
                    schema_url: sl.schema_url.clone(),
                });
                for (j, record) in held.into_iter().enumerate() {
                    // Everything was learned from already; the first one waits for sure.
                    let waits = (k == 0 && j == 0) || c.must_wait(&st.table, &record, now);
                    records.push((shell.clone(), record, waits));
                }
                if k == 0 && !sl.log_records.is_empty() {
                    rl.scope_logs.push(sl);
                }
            }
            let group = Group {
                resource: rl.resource.clone(),
                schema_url: rl.schema_url.clone(),
                records,
            };
            if !rl.scope_logs.is_empty() {
                out.push(rl);
            }
            groups.push(group);
        }
        if matched > 0 {
            self.metrics.matched_logs.inc_by(matched);
        }
        if unmatched > 0 {
            self.metrics.unmatched_not_held.inc_by(unmatched);
        }
        (out, groups, learned)
    }

    async fn logs(self: &Arc<Self>, id: usize, batch: Batch) -> Result<(), ConsumeError> {
        let Some(link) = self.link(id) else {
            batch.dropped();
            return Err(ConsumeError::permanent("request_id: unknown logs pipeline"));
        };
        // Waiting for the lane, the batch is not taken on yet: a caller that gives up
        // refuses it.
        let waiting = WaitingBatch::new(batch);
        let lane = Arc::clone(&link.lane).lock_owned().await;
        let Some((payload, mut ctx)) = waiting.take().map(Batch::into_parts) else {
            return Ok(());
        };
        let rls = match payload {
            Payload::Logs(rls) => rls,
            other => {
                return link.next.consume(Batch::with_context(other, ctx)).await;
            }
        };
        let now = Instant::now();
        let holds = self.holds && !link.closed.load(Ordering::Acquire);
        let (out, groups, wake) = {
            let mut st = self.lock();
            let (out, groups, learned) = self.split_logs(&mut st, id, rls, holds, now);
            self.sync(&mut st);
            (out, groups, learned && st.held() > 0)
        };
        if wake {
            // What this batch taught may release records held before it.
            self.wake.notify_one();
        }
        if groups.is_empty() {
            if out.is_empty() {
                ctx.delivered();
                return Ok(());
            }
            return link
                .next
                .consume(Batch::with_context(Payload::Logs(out), ctx))
                .await;
        }
        if !out.is_empty() {
            // The held part is not held yet: a caller that gives up during this send refuses
            // the batch (its handles resolve as dropped with the waiting shell).
            let waiting = WaitingBatch::new(Batch::with_context(Payload::empty(Signal::Logs), ctx));
            let passing = Batch::with_context(
                Payload::Logs(out),
                waiting.get().map(|b| b.ctx.clone()).unwrap_or_default(),
            );
            let sent = link.next.consume(passing).await;
            let Some(Batch { ctx: taken, .. }) = waiting.take() else {
                return Ok(());
            };
            ctx = taken;
            if let Err(e) = sent {
                // Nothing was held: the whole batch goes back to the caller.
                ctx.dropped();
                return Err(e);
            }
        }
        let (released, first) = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let now = Instant::now();
            let first = st.held() == 0;
            let mut released = Released::default();
            if let Some(p) = st.pending.get_mut(id) {
                let deadline = now + self.wait;
                for group in groups {
                    p.hold(group, &ctx, deadline);
                }
                let mut r = Releaser {
                    correlator: &self.correlator,
                    table: &mut st.table,
                    metrics: &self.metrics,
                    now,
                };
                // A span may have come while the passing records were sent.
                released.extend(p.take_ready(&mut r, now));
                released.extend(p.take_oldest(&mut r, now, self.max_pending));
                if link.closed.load(Ordering::Acquire) {
                    // Shut down meanwhile (it gave up waiting for the lane): nobody would
                    // release these later.
                    released.extend(p.take_all(&mut r, now));
                }
            }
            self.sync(st);
            (released, first)
        };
        // The passing records and the held ones each carry a copy of the handles.
        ctx.delivered();
        if first {
            // The background task has no deadline to wake for yet; later records' deadlines
            // are never earlier than the ones it knows.
            self.wake.notify_one();
        }
        if released.is_empty() {
            released.ctx.delivered();
            return Ok(());
        }
        // The caller waits for the release (back-pressure) but does not own it: if its
        // future is dropped here, the task still sends, and the lane stays taken until then.
        let _ = self.spawn_release(link, Some(lane), released).await;
        Ok(())
    }

    fn start(self: &Arc<Self>) {
        let mut lc = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        lc.running += 1;
        if lc.task.is_none() {
            self.stopping.store(false, Ordering::Release);
            lc.task = Some(tokio::spawn(Arc::clone(self).run()));
        }
    }

    async fn stop_one(&self, deadline: Instant) {
        let task = {
            let mut lc = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
            lc.running = lc.running.saturating_sub(1);
            if lc.running > 0 {
                return;
            }
            lc.task.take()
        };
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
        join_until(task, deadline).await;
    }

    /// Releases everything pipeline `id` holds and closes it to holding.
    async fn close(self: &Arc<Self>, id: usize, deadline: Instant) {
        let Some(link) = self.link(id) else { return };
        // Without the lane (a send stuck past the deadline) release anyway: order matters
        // less than not losing the records. The stuck release counts its records.
        let lane = tokio::time::timeout_at(deadline, Arc::clone(&link.lane).lock_owned())
            .await
            .ok();
        if lane.is_none() {
            link.abort.cancel();
        }
        link.closed.store(true, Ordering::Release);
        let released = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let now = Instant::now();
            let released = match st.pending.get_mut(id) {
                Some(p) => p.take_all(
                    &mut Releaser {
                        correlator: &self.correlator,
                        table: &mut st.table,
                        metrics: &self.metrics,
                        now,
                    },
                    now,
                ),
                None => Released::default(),
            };
            self.sync(st);
            released
        };
        if released.is_empty() {
            released.ctx.delivered();
            return;
        }
        let mut task = self.spawn_release(Arc::clone(&link), lane, released);
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            // The release counts what it held once aborted.
            link.abort.cancel();
            let _ = task.await;
        }
    }
}

/// Where an instance sends what it processed.
enum Route {
    /// A traces pipeline: straight on.
    Traces(SharedConsumer),
    /// A logs pipeline: through its lane, by link index.
    Logs(usize),
}

/// The `request_id` processor of one pipeline.
pub struct RequestIdProcessor {
    shared: Arc<Shared>,
    route: Route,
    started: AtomicBool,
}

impl RequestIdProcessor {
    pub(crate) fn new(shared: Arc<Shared>, signal: Signal, next: SharedConsumer) -> Self {
        let route = match signal {
            Signal::Logs => Route::Logs(shared.add_link(next)),
            _ => Route::Traces(next),
        };
        RequestIdProcessor {
            shared,
            route,
            started: AtomicBool::new(false),
        }
    }

    /// Entries in the table (shared by every instance of the component ID).
    pub fn entries(&self) -> usize {
        self.shared.lock().table.len()
    }

    /// Log records held (by every logs pipeline of the component ID).
    pub fn pending(&self) -> usize {
        self.shared.lock().held()
    }

    /// Bytes the table has allocated.
    pub fn table_bytes(&self) -> usize {
        self.shared.lock().table.allocated_bytes()
    }
}

#[async_trait]
impl Consumer for RequestIdProcessor {
    fn capabilities(&self) -> Capabilities {
        Capabilities::MUTATES_DATA
    }

    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        match &self.route {
            Route::Traces(next) => {
                self.shared.traces(&mut batch);
                next.consume(batch).await
            }
            Route::Logs(id) => self.shared.logs(*id, batch).await,
        }
    }
}

#[async_trait]
impl Component for RequestIdProcessor {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        if !self.started.swap(true, Ordering::AcqRel) {
            self.shared.start();
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        if let Route::Logs(id) = self.route {
            self.shared.close(id, deadline).await;
        }
        if self.started.swap(false, Ordering::AcqRel) {
            self.shared.stop_one(deadline).await;
        }
        Ok(())
    }
}
