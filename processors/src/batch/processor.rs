//! The batching state machine.
//!
//! `consume` appends a batch to the pending one (moving the resource groups, no copies) and
//! returns: the data is accepted. A flusher task sends the pending batch to `next` when it
//! reaches `send_batch_size` or its oldest item has waited `timeout`, split to
//! `send_batch_max_size`. Pending items are bounded: past the limit `consume` waits for the
//! flusher, so a slow exporter slows the receivers instead of growing memory.
//!
//! Acknowledgements: pending batches' handles are merged into the batch the flusher takes;
//! each part of a split batch carries clones of them (the last part the originals), and
//! whoever downstream holds a part resolves it. What the processor itself loses (refused
//! downstream, or still held when the shutdown deadline aborts the flusher: pending items,
//! the part in flight and the parts of a split batch not yet sent) is counted as dropped and
//! its handles resolved as dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{
    Batch, BatchContext, Capabilities, Component, ComponentError, ConsumeError, Consumer, Host,
    Signal, WaitingBatch,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::BatchConfig;

struct Pending {
    /// The data waiting, with the handles of every batch merged into it.
    batch: Batch,
    items: usize,
    /// Protobuf bytes pending (only counted with a byte bound).
    bytes: usize,
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
    /// The batch the flusher is sending, counted and failed if the flusher is aborted.
    sending: Mutex<Sending>,
}

/// The flusher's batch between `take_due` and `next` accepting its last part.
#[derive(Default)]
struct Sending {
    /// The parts not handed to `next` yet.
    rest: Option<Batch>,
    /// The part `next` is being handed: its item count and clones of its handles (resolved
    /// once `next` answers, or as dropped if the flusher is aborted meanwhile).
    in_flight: Option<(usize, BatchContext)>,
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
            batch: Batch::empty(signal),
            items: 0,
            bytes: 0,
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
                sending: Mutex::new(Sending::default()),
            }),
            flusher: Mutex::new(None),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_sending(&self) -> std::sync::MutexGuard<'_, Sending> {
        self.sending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Settles the part in flight (`next` answered) and takes the next part to send, at
    /// most `send_batch_max_size` items, recording it as in flight; `None` when all is sent.
    fn next_part(&self) -> Option<Batch> {
        let mut sending = self.lock_sending();
        if let Some((_, handles)) = sending.in_flight.take() {
            // The part itself was resolved downstream; this copy only guarded the flight.
            handles.delivered();
        }
        let max = self.config.send_batch_max_size;
        let rest = sending.rest.as_mut()?;
        let part = if max > 0 && rest.item_count() > max {
            let front = rest.split_front(max);
            // A split always makes progress; an empty front would mean sending the rest whole.
            (front.item_count() > 0).then_some(front)
        } else {
            None
        };
        let part = match part {
            Some(part) => part,
            None => sending.rest.take()?,
        };
        sending.in_flight = Some((part.item_count(), part.ctx.clone()));
        Some(part)
    }

    /// Counts as dropped at the shutdown deadline, and resolves as dropped, everything this
    /// processor still holds: pending items, the part in flight and the parts not yet sent.
    /// The flusher must be stopped.
    fn drop_everything_held(&self) {
        let (pending_items, pending_ctx) = {
            let mut p = self.lock();
            p.oldest = None;
            p.bytes = 0;
            let batch = std::mem::replace(&mut p.batch, Batch::empty(self.signal));
            (std::mem::take(&mut p.items), batch)
        };
        pending_ctx.dropped();
        let Sending { rest, in_flight } = std::mem::take(&mut *self.lock_sending());
        let mut left = pending_items;
        if let Some(rest) = rest {
            left += rest.item_count();
            rest.dropped();
        }
        if let Some((items, handles)) = in_flight {
            left += items;
            handles.dropped();
        }
        if left > 0 {
            tracing::warn!(
                items = left,
                "batch: shutdown deadline passed with data not handed on; dropping it"
            );
        }
        self.telemetry
            .dropped(self.signal, left, reason::SHUTDOWN_TIMEOUT);
    }

    /// Takes the pending batch if it is due (or everything when `all`).
    fn take_due(&self, all: bool) -> Option<Batch> {
        let mut p = self.lock();
        let due = p.items >= self.config.send_batch_size
            || p.bytes >= self.config.pending_limit_bytes() / 2
            || p.oldest
                .is_some_and(|t| t.elapsed() >= self.config.timeout.get())
            || all;
        if p.items == 0 || !due {
            return None;
        }
        p.items = 0;
        p.bytes = 0;
        p.oldest = None;
        Some(std::mem::replace(&mut p.batch, Batch::empty(self.signal)))
    }

    /// Sends one batch, split to the maximum size; what `next` refuses is counted as dropped
    /// (with the default blocking queues `next` waits instead of refusing). The parts not
    /// sent yet wait in `sending`, where a shutdown that aborts the flusher finds them.
    async fn send(&self, batch: Batch) {
        self.lock_sending().rest = Some(batch);
        while let Some(part) = self.next_part() {
            let items = part.item_count();
            if let Err(e) = self.next.consume(part).await {
                // Refused: `next` resolved the part as dropped; counting it is ours.
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
    /// Merges and splits batches without looking inside: encoded data stays encoded.
    fn capabilities(&self) -> Capabilities {
        Capabilities::MOVES_DATA
    }

    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let s = &self.shared;
        let n = batch.item_count();
        if n == 0 {
            // Nothing to deliver (metrics without data points): nothing to lose either.
            batch.delivered();
            return Ok(());
        }
        let limit = s.config.pending_limit();
        let byte_limit = s.config.pending_limit_bytes();
        let size = if byte_limit == usize::MAX {
            0
        } else {
            batch.size_bytes()
        };
        // Waiting for room, the batch is not ours yet: a caller that gives up refuses it.
        let mut batch = Some(WaitingBatch::new(batch));
        loop {
            let room = s.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if s.stopping.load(Ordering::Acquire) {
                // Refused: dropping the waiting batch resolves it as dropped.
                drop(batch);
                return Err(ConsumeError::ShuttingDown);
            }
            {
                let mut p = s.lock();
                if p.items == 0 || (p.items + n <= limit && p.bytes + size <= byte_limit) {
                    let Some(taken) = batch.take().and_then(WaitingBatch::take) else {
                        return Ok(());
                    };
                    if let Err(other) = p.batch.append(taken) {
                        let signal = other.signal();
                        other.dropped();
                        return Err(ConsumeError::permanent(format!(
                            "batch processor of the {} pipeline got {signal} data",
                            s.signal,
                        )));
                    }
                    let was_empty = p.items == 0;
                    p.items += n;
                    p.bytes += size;
                    if was_empty {
                        p.oldest = Some(Instant::now());
                    }
                    // Half the byte bound is a full batch too: the other half fills meanwhile.
                    if was_empty || p.items >= s.config.send_batch_size || p.bytes >= byte_limit / 2
                    {
                        s.wake.notify_one();
                    }
                    return Ok(());
                }
            }
            room.await;
        }
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
                    // Stopped for sure before what it held is counted.
                    let _ = task.await;
                    s.drop_everything_held();
                }
            }
            None => {
                // Never started: hand on anything that was accepted anyway.
                if let Some(batch) = s.take_due(true)
                    && tokio::time::timeout_at(deadline, s.send(batch))
                        .await
                        .is_err()
                {
                    s.drop_everything_held();
                }
            }
        }
        Ok(())
    }
}
