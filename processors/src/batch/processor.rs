//! The batching state machine.
//!
//! `consume` appends a batch to the pending one (moving the resource groups, no copies) and
//! returns: the data is accepted. A flusher task sends the pending batch to `next` when it
//! reaches `send_batch_size` or its oldest item has waited `timeout`, split to
//! `send_batch_max_size`. Pending items are bounded: past the limit `consume` waits for the
//! flusher, so a slow exporter slows the receivers instead of growing memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{
    Batch, BatchContext, Component, ComponentError, ConsumeError, Consumer, Host, Payload, Signal,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::BatchConfig;

struct Pending {
    payload: Payload,
    ctx: BatchContext,
    items: usize,
    oldest: Option<Instant>,
}

struct Shared {
    config: BatchConfig,
    signal: Signal,
    next: SharedConsumer,
    telemetry: ComponentTelemetry,
    pending: Mutex<Pending>,
    /// Wakes the flusher: first item, size reached, shutdown.
    wake: Notify,
    /// Wakes callers waiting for room.
    room: Notify,
    stopping: AtomicBool,
    /// What the flusher handed to `next` and `next` has not accepted yet: the item count
    /// and the acknowledgement tokens, counted and failed if the flusher is aborted.
    in_flight: Mutex<(usize, BatchContext)>,
}

/// The `batch` processor for one pipeline.
pub struct BatchProcessor {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl BatchProcessor {
    pub(crate) fn new(
        config: BatchConfig,
        signal: Signal,
        next: SharedConsumer,
        telemetry: ComponentTelemetry,
    ) -> Self {
        let pending = Pending {
            payload: Payload::empty(signal),
            ctx: BatchContext::default(),
            items: 0,
            oldest: None,
        };
        BatchProcessor {
            shared: Arc::new(Shared {
                config,
                signal,
                next,
                telemetry,
                pending: Mutex::new(pending),
                wake: Notify::new(),
                room: Notify::new(),
                stopping: AtomicBool::new(false),
                in_flight: Mutex::new((0, BatchContext::default())),
            }),
            flusher: Mutex::new(None),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Swaps in what is in flight now, returning what was.
    fn set_in_flight(&self, now: (usize, BatchContext)) -> (usize, BatchContext) {
        std::mem::replace(
            &mut *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()),
            now,
        )
    }

    /// Takes the pending batch if it is due (or everything when `all`).
    fn take_due(&self, all: bool) -> Option<Batch> {
        let mut p = self.lock();
        let due = p.items >= self.config.send_batch_size
            || p.oldest
                .is_some_and(|t| t.elapsed() >= self.config.timeout.get())
            || all;
        if p.items == 0 || !due {
            return None;
        }
        p.items = 0;
        p.oldest = None;
        let payload = std::mem::replace(&mut p.payload, Payload::empty(self.signal));
        let ctx = std::mem::take(&mut p.ctx);
        Some(Batch { payload, ctx })
    }

    /// Sends one batch, split to the maximum size; what `next` refuses is counted as dropped
    /// (with the default blocking queues `next` waits instead of refusing).
    async fn send(&self, mut batch: Batch) {
        let max = self.config.send_batch_max_size;
        loop {
            let chunk = if max > 0 && batch.item_count() > max {
                Batch {
                    payload: batch.payload.split_front(max),
                    ctx: batch.ctx.clone(),
                }
            } else {
                std::mem::replace(&mut batch, Batch::new(Payload::empty(self.signal)))
            };
            let items = chunk.item_count();
            if items == 0 {
                break;
            }
            self.set_in_flight((items, chunk.ctx.clone()));
            let result = self.next.consume(chunk).await;
            let (_, acks) = self.set_in_flight((0, BatchContext::default()));
            if let Err(e) = result {
                // Refused data is this processor's to report: its sources must not
                // count it as delivered.
                fail_all(&acks);
                let why = match e {
                    ConsumeError::Permanent(_) => reason::REJECTED,
                    _ => "refused_downstream",
                };
                tracing::warn!(error = %e, items, "batch: downstream refused a batch; dropping it");
                self.telemetry.dropped(self.signal, items, why);
            }
        }
        self.room.notify_waiters();
    }

    async fn run(self: Arc<Self>) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let stopping = self.stopping.load(Ordering::Acquire);
            if let Some(batch) = self.take_due(stopping) {
                self.send(batch).await;
                continue;
            }
            if stopping {
                return;
            }
            let timer = self.lock().oldest.map(|t| t + self.config.timeout.get());
            match timer {
                Some(at) => {
                    tokio::select! {
                        _ = &mut woken => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => woken.await,
            }
        }
    }
}

#[async_trait]
impl Consumer for BatchProcessor {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let s = &self.shared;
        let n = batch.item_count();
        if n == 0 {
            return Ok(());
        }
        let limit = s.config.pending_limit();
        let mut batch = Some(batch);
        loop {
            let room = s.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if s.stopping.load(Ordering::Acquire) {
                return Err(ConsumeError::ShuttingDown);
            }
            {
                let mut p = s.lock();
                if p.items == 0 || p.items + n <= limit {
                    let Some(Batch { payload, ctx }) = batch.take() else {
                        return Ok(());
                    };
                    if let Err(other) = p.payload.append(payload) {
                        return Err(ConsumeError::permanent(format!(
                            "batch processor of the {} pipeline got {} data",
                            s.signal,
                            other.signal()
                        )));
                    }
                    p.ctx.merge(ctx);
                    let was_empty = p.items == 0;
                    p.items += n;
                    if was_empty {
                        p.oldest = Some(Instant::now());
                    }
                    if was_empty || p.items >= s.config.send_batch_size {
                        s.wake.notify_one();
                    }
                    return Ok(());
                }
            }
            room.await;
        }
    }
}

/// Marks every token in `ctx` as not delivered.
fn fail_all(ctx: &BatchContext) {
    for ack in &ctx.acks {
        ack.fail();
    }
}

#[async_trait]
impl Component for BatchProcessor {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let task = tokio::spawn(self.shared.clone().run());
        *self.flusher.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let s = &self.shared;
        s.stopping.store(true, Ordering::Release);
        s.wake.notify_one();
        s.room.notify_waiters();
        let task = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match task {
            Some(mut task) => {
                if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                    task.abort();
                    // Whatever the flusher had not handed on is lost: count it, and tell
                    // its sources it was not delivered.
                    let pending = {
                        let mut p = s.lock();
                        fail_all(&std::mem::take(&mut p.ctx));
                        p.items
                    };
                    let (in_flight, acks) = s.set_in_flight((0, BatchContext::default()));
                    fail_all(&acks);
                    let left = pending + in_flight;
                    s.telemetry
                        .dropped(s.signal, left, reason::SHUTDOWN_TIMEOUT);
                }
            }
            None => {
                // Never started: hand on anything that was accepted anyway.
                if let Some(batch) = s.take_due(true)
                    && tokio::time::timeout_at(deadline, s.send(batch))
                        .await
                        .is_err()
                {
                    tracing::warn!("batch: shutdown deadline passed while sending");
                }
            }
        }
        Ok(())
    }
}
