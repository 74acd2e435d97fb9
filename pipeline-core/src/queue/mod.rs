//! Bounded queues of batches, sized in items or in bytes ([`Sizer`]).
//!
//! [`BatchQueue`] is the interface exporters drain; [`MemoryQueue`] is the in-memory
//! implementation. A persistent implementation (with acknowledgement) plugs in behind the
//! same trait. Full means back-pressure: `push` waits for room ([`FullPolicy::Block`]) or
//! refuses at once with [`ConsumeError::Full`] ([`FullPolicy::Refuse`]); nothing is dropped.
//!
//! A batch taken out with `pop` comes with a [`Ticket`] and still counts against the capacity
//! until the ticket is dropped (the sender is done with it): the bound covers what waits *and*
//! what is being sent, so `queue_size` is the most telemetry an exporter holds, whatever the
//! number of workers. [`PersistentQueue`] keeps batches in segment files on disk (see its
//! module), so what it accepted survives a restart or a kill -9.

mod persistent;

pub use persistent::{
    FsyncPolicy, OpenError, PersistentConfig, PersistentQueue, QueueCounters, StorageReport,
    inspect,
};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prometheus::IntGauge;
use tokio::sync::Notify;

use crate::consumer::ConsumeError;
use crate::model::{Batch, WaitingBatch};

/// What a queue's capacity counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Items: spans, data points, log records.
    #[default]
    Items,
    /// Bytes of the batches' protobuf ([`Batch::size_bytes`]).
    Bytes,
}

impl Sizer {
    /// What `batch` weighs in this unit.
    pub fn weigh(self, batch: &Batch) -> usize {
        match self {
            Sizer::Items => batch.item_count(),
            Sizer::Bytes => batch.size_bytes(),
        }
    }
}

/// What `push` does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Wait until there is room (back-pressure to the caller).
    Block,
    /// Refuse at once with [`ConsumeError::Full`].
    Refuse,
}

/// How the taker of a batch ended with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketEnd {
    /// Finished: delivered, or dropped and counted. The queue forgets it.
    Done,
    /// Not finished (a shutdown cut the send off): a persistent queue keeps it for the next
    /// start; a memory queue cannot, and the taker counts it as dropped.
    Keep,
}

/// The receipt for a batch taken from a queue; dropping it means [`TicketEnd::Done`].
pub struct Ticket(Option<Box<dyn FnOnce(TicketEnd) + Send + Sync>>);

impl Ticket {
    /// A ticket that runs `end` when the taker is finished with the batch.
    pub fn new(end: impl FnOnce(TicketEnd) + Send + Sync + 'static) -> Ticket {
        Ticket(Some(Box::new(end)))
    }

    /// The batch is finished with (delivered, or dropped and counted).
    pub fn done(self) {}

    /// The batch was not finished with; a persistent queue keeps it.
    pub fn keep(mut self) {
        if let Some(end) = self.0.take() {
            end(TicketEnd::Keep);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(end) = self.0.take() {
            end(TicketEnd::Done);
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket")
    }
}

/// A queue of batches that exporter workers drain.
#[async_trait]
pub trait BatchQueue: Send + Sync {
    /// Adds a batch, subject to the queue's [`FullPolicy`]. A refused batch is resolved as
    /// dropped (its sender is told by the error).
    async fn push(&self, batch: Batch) -> Result<(), ConsumeError>;
    /// The next batch and its ticket; `None` once the queue is closed and empty.
    async fn pop(&self) -> Option<(Batch, Ticket)>;
    /// Whether batches not finished with stay in the queue across restarts (on disk).
    fn keeps_data(&self) -> bool {
        false
    }
    /// Refuses further pushes; pops continue until empty.
    fn close(&self);
    /// What is queued or being sent now, in the queue's unit.
    fn len_items(&self) -> usize;
    /// Removes and returns everything queued (for counting drops at a deadline).
    fn drain_all(&self) -> Vec<Batch>;
}

struct State {
    batches: VecDeque<(Batch, usize)>,
    /// Weight queued plus weight popped and not yet resolved.
    items: usize,
    closed: bool,
}

/// An in-memory bounded queue.
pub struct MemoryQueue {
    shared: Arc<Shared>,
    capacity: usize,
    policy: FullPolicy,
    sizer: Sizer,
}

struct Shared {
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
    size_gauge: Option<IntGauge>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_gauge(&self, items: usize) {
        if let Some(g) = &self.size_gauge {
            g.set(items as i64);
        }
    }

    /// Gives back the room of a popped batch that was resolved.
    fn release(&self, n: usize) {
        let mut s = self.lock();
        s.items = s.items.saturating_sub(n);
        let items = s.items;
        drop(s);
        self.update_gauge(items);
        self.not_full.notify_waiters();
    }
}

impl MemoryQueue {
    /// A queue holding up to `capacity` items (and what its workers are sending). A batch
    /// larger than the capacity is accepted when the queue is empty, so that no batch can
    /// wait forever.
    pub fn new(capacity: usize, policy: FullPolicy, gauges: Option<(IntGauge, IntGauge)>) -> Self {
        MemoryQueue::sized(capacity, Sizer::Items, policy, gauges)
    }

    /// A queue holding up to `capacity` in `sizer`'s unit.
    pub fn sized(
        capacity: usize,
        sizer: Sizer,
        policy: FullPolicy,
        gauges: Option<(IntGauge, IntGauge)>,
    ) -> Self {
        let size_gauge = gauges.map(|(size, cap)| {
            cap.set(capacity as i64);
            size
        });
        MemoryQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    batches: VecDeque::new(),
                    items: 0,
                    closed: false,
                }),
                not_empty: Notify::new(),
                not_full: Notify::new(),
                size_gauge,
            }),
            capacity,
            policy,
            sizer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn update_gauge(&self, items: usize) {
        self.shared.update_gauge(items);
    }

    /// Pushes without waiting: `Err` gives the batch back when there is no room.
    fn try_push(&self, batch: Batch) -> Result<(), (Batch, ConsumeError)> {
        let n = self.sizer.weigh(&batch);
        let mut s = self.lock();
        if s.closed {
            return Err((batch, ConsumeError::ShuttingDown));
        }
        if s.items > 0 && s.items + n > self.capacity {
            return Err((batch, ConsumeError::Full));
        }
        s.items += n;
        s.batches.push_back((batch, n));
        let items = s.items;
        drop(s);
        self.update_gauge(items);
        self.shared.not_empty.notify_one();
        Ok(())
    }
}

#[async_trait]
impl BatchQueue for MemoryQueue {
    async fn push(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        loop {
            let notified = self.shared.not_full.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_push(batch) {
                Ok(()) => return Ok(()),
                Err((b, ConsumeError::Full)) if self.policy == FullPolicy::Block => {
                    // If the caller gives up while waiting, the batch is refused, not lost.
                    let waiting = WaitingBatch::new(b);
                    notified.await;
                    match waiting.take() {
                        Some(b) => batch = b,
                        None => return Err(ConsumeError::ShuttingDown),
                    }
                }
                Err((b, e)) => {
                    // Refused: the batch's fate goes back to the caller.
                    b.dropped();
                    return Err(e);
                }
            }
        }
    }

    async fn pop(&self) -> Option<(Batch, Ticket)> {
        loop {
            let notified = self.shared.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if let Some((batch, n)) = s.batches.pop_front() {
                    let more = !s.batches.is_empty();
                    drop(s);
                    if more {
                        self.shared.not_empty.notify_one();
                    }
                    // Its room comes back when the taker is done with it, not now.
                    let shared = Arc::clone(&self.shared);
                    return Some((batch, Ticket::new(move |_| shared.release(n))));
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.shared.not_empty.notify_waiters();
        self.shared.not_full.notify_waiters();
    }

    fn len_items(&self) -> usize {
        self.lock().items
    }

    fn drain_all(&self) -> Vec<Batch> {
        let mut s = self.lock();
        let queued: usize = s.batches.iter().map(|(_, n)| n).sum();
        s.items -= queued;
        let items = s.items;
        let out = s.batches.drain(..).map(|(b, _)| b).collect();
        drop(s);
        self.update_gauge(items);
        self.shared.not_full.notify_waiters();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::span_batch;
    use std::time::Duration;

    #[tokio::test]
    async fn refuses_when_full() {
        let q = MemoryQueue::new(10, FullPolicy::Refuse, None);
        q.push(span_batch(8)).await.unwrap();
        assert!(matches!(
            q.push(span_batch(5)).await,
            Err(ConsumeError::Full)
        ));
        assert_eq!(q.len_items(), 8);
    }

    #[tokio::test]
    async fn oversized_batch_fits_an_empty_queue() {
        let q = MemoryQueue::new(10, FullPolicy::Refuse, None);
        q.push(span_batch(50)).await.unwrap();
        let (popped, ticket) = q.pop().await.unwrap();
        assert_eq!(popped.item_count(), 50);
        assert_eq!(q.len_items(), 50, "in flight until the taker is done");
        popped.dropped();
        ticket.done();
        assert_eq!(q.len_items(), 0);
    }

    #[tokio::test]
    async fn a_byte_sized_queue_weighs_batches_in_bytes() {
        let batch = span_batch(10);
        let bytes = batch.size_bytes();
        assert_eq!(bytes, batch.to_request().len());
        let q = MemoryQueue::sized(bytes * 2, Sizer::Bytes, FullPolicy::Refuse, None);
        q.push(span_batch(10)).await.unwrap();
        q.push(span_batch(10)).await.unwrap();
        assert_eq!(q.len_items(), bytes * 2);
        assert!(matches!(
            q.push(span_batch(1)).await,
            Err(ConsumeError::Full)
        ));
        let (popped, ticket) = q.pop().await.unwrap();
        popped.delivered();
        drop(ticket);
        q.push(span_batch(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_push_given_up_while_blocked_refuses_its_batch_and_a_refused_one_is_dropped() {
        use crate::model::AckOutcome;
        use crate::testing::AckProbe;

        let probe = AckProbe::new();
        let q = MemoryQueue::new(10, FullPolicy::Block, None);
        q.push(probe.track(span_batch(8))).await.unwrap();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            q.push(probe.track(span_batch(5))),
        )
        .await;
        assert!(gave_up.is_err());
        assert_eq!(probe.outcome(1), Some(AckOutcome::Dropped));
        q.close();
        assert!(q.push(probe.track(span_batch(1))).await.is_err());
        assert_eq!(probe.outcome(2), Some(AckOutcome::Dropped));
        q.pop().await.unwrap().0.delivered();
        assert_eq!(probe.outcome(0), Some(AckOutcome::Delivered));
        probe.assert_resolved();
    }

    #[tokio::test]
    async fn blocks_until_room_then_closes() {
        let q = Arc::new(MemoryQueue::new(10, FullPolicy::Block, None));
        q.push(span_batch(8)).await.unwrap();
        let q2 = q.clone();
        let pusher = tokio::spawn(async move { q2.push(span_batch(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!pusher.is_finished(), "push must wait while full");
        let (popped, ticket) = q.pop().await.unwrap();
        assert_eq!(popped.item_count(), 8);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !pusher.is_finished(),
            "a batch being sent still takes its room"
        );
        popped.delivered();
        ticket.done();
        pusher.await.unwrap().unwrap();
        q.close();
        assert_eq!(q.pop().await.unwrap().0.item_count(), 5);
        assert!(q.pop().await.is_none());
        assert!(matches!(
            q.push(span_batch(1)).await,
            Err(ConsumeError::ShuttingDown)
        ));
    }
}
