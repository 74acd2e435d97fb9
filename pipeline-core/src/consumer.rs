//! The one trait for everything that takes data, and the wrappers built on it.
//!
//! Receivers call [`Consumer::consume`] on the head of a pipeline; processors hold their
//! `next` consumer; exporters and connectors are consumers at the leaves. `Ok(())` means the
//! data was accepted: from then on it is the callee's job not to lose it silently.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use tokio::time::Instant;

use crate::model::Batch;

/// A boxed error, as carried inside [`ConsumeError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a consumer declares about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The consumer changes the data it is given.
    pub mutates_data: bool,
    /// The consumer (or what it passes the data on to) looks inside the data, so it needs it
    /// decoded. A receiver whose every pipeline reads decodes requests itself; when some
    /// pipeline only moves data (`otlp -> batch -> otlp`), it hands over the protobuf bytes
    /// and the pipelines that read decode them on first use ([`Batch::payload`]). Defaults
    /// to `true`: only components that never look inside (batching, OTLP export,
    /// forwarding) say `false`.
    pub reads_data: bool,
}

impl Default for Capabilities {
    fn default() -> Capabilities {
        Capabilities {
            mutates_data: false,
            reads_data: true,
        }
    }
}

impl Capabilities {
    /// A consumer that never looks inside the data: it moves, merges, splits or sends it
    /// as it is.
    pub const MOVES_DATA: Capabilities = Capabilities {
        mutates_data: false,
        reads_data: false,
    };

    /// A consumer that reads and changes the data in place.
    pub const MUTATES_DATA: Capabilities = Capabilities {
        mutates_data: true,
        reads_data: true,
    };

    /// What a chain of `self` then `next` declares: it mutates if either does, reads if
    /// either does.
    pub fn then(self, next: Capabilities) -> Capabilities {
        Capabilities {
            mutates_data: self.mutates_data || next.mutates_data,
            reads_data: self.reads_data || next.reads_data,
        }
    }
}

/// Why a consumer did not accept a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// A passing failure: the caller may try again later (a receiver answers gRPC
    /// `UNAVAILABLE` / HTTP 503).
    #[error("retryable: {error}")]
    Retryable {
        /// The cause.
        error: BoxError,
        /// How long the caller should wait, if the consumer knows.
        retry_after: Option<Duration>,
    },
    /// The data can never be accepted (a receiver answers `INVALID_ARGUMENT` / HTTP 400).
    #[error("permanent: {0}")]
    Permanent(BoxError),
    /// A bounded queue is full: back-pressure (a receiver answers `UNAVAILABLE` / HTTP 503
    /// with Retry-After).
    #[error("queue full")]
    Full,
    /// The consumer is shutting down and takes no more data.
    #[error("shutting down")]
    ShuttingDown,
}

impl ConsumeError {
    /// A retryable error without a retry hint.
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        ConsumeError::Retryable {
            error: error.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        ConsumeError::Permanent(error.into())
    }

    /// Whether the caller may send the same data again.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ConsumeError::Permanent(_))
    }
}

/// Takes batches of telemetry.
///
/// A consumer given a batch owns its fate: it passes it on, keeps it, or resolves its
/// acknowledgement handles with [`Batch::delivered`] / [`Batch::dropped`], also when it
/// returns an error (see [`crate::model`]).
#[async_trait]
pub trait Consumer: Send + Sync {
    /// What this consumer does with the data it is given.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Takes a batch. `Ok` means accepted; an error means refused: the callee resolved the
    /// batch as dropped and the caller answers its sender (a retryable error: try again).
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError>;

    /// Whether the batches this consumer accepts end up only where they survive a restart
    /// (every exporter downstream has a persistent queue), their acknowledgement handles
    /// being resolved once they are written there. A receiver then answers its client only
    /// after that, not when `consume` returns (end-to-end acknowledgement).
    fn acks_durably(&self) -> bool {
        false
    }

    /// Whether this consumer only reads batches and takes them by reference through
    /// [`Consumer::consume_ref`] (a connector that derives metrics from spans). A [`Fanout`]
    /// then lends it the batch instead of cloning it.
    fn reads_by_ref(&self) -> bool {
        false
    }

    /// Takes a batch it only reads. The default clones it into [`Consumer::consume`] (the
    /// clone's handles are the callee's to resolve); consumers that say
    /// [`Consumer::reads_by_ref`] implement it without the copy and own no handle: their
    /// `Ok` or error is their whole answer.
    async fn consume_ref(&self, batch: &Batch) -> Result<(), ConsumeError> {
        self.consume(batch.clone()).await
    }
}

/// A consumer shared between owners.
pub type SharedConsumer = Arc<dyn Consumer>;

/// Sends each batch to several consumers: branches that [read by
/// reference](Consumer::reads_by_ref) are lent the batch, the others get clones except the
/// last of them, which gets the original. The first error is returned after every branch was
/// tried. Each owning branch resolves the acknowledgement handles of its copy; when every
/// branch only reads, the fanout resolves the batch itself (delivered when every reader took
/// it, dropped when one refused).
pub struct Fanout {
    branches: Vec<SharedConsumer>,
}

impl Fanout {
    /// A fanout over `branches`; with one branch, prefer using it directly.
    pub fn new(branches: Vec<SharedConsumer>) -> Fanout {
        Fanout { branches }
    }
}

#[async_trait]
impl Consumer for Fanout {
    /// Mutates if a branch does (each owning branch gets its own copy); reads only if every
    /// branch reads, so that a branch that only moves the data gets it as bytes.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            mutates_data: self.branches.iter().any(|b| b.capabilities().mutates_data),
            reads_data: self.branches.iter().all(|b| b.capabilities().reads_data),
        }
    }

    fn acks_durably(&self) -> bool {
        self.branches.iter().all(|b| b.acks_durably())
    }

    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        // Asked per batch: a branch may be a switch whose target changes.
        let last_owner = self.branches.iter().rposition(|b| !b.reads_by_ref());
        if batch.is_encoded() && self.branches.iter().any(|b| b.reads_by_ref()) {
            // Lent to readers: decode once here rather than once per reader.
            batch.decode();
        }
        let mut first_error = None;
        for (i, branch) in self.branches.iter().enumerate() {
            let result = if branch.reads_by_ref() {
                branch.consume_ref(&batch).await
            } else if Some(i) != last_owner {
                branch.consume(batch.clone()).await
            } else {
                continue;
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        match last_owner.and_then(|i| self.branches.get(i)) {
            Some(last) => {
                if let Err(e) = last.consume(batch).await {
                    first_error.get_or_insert(e);
                }
            }
            // Only readers: they took the data in (or refused it), the batch ends here.
            None if first_error.is_none() => batch.delivered(),
            None => batch.dropped(),
        }
        first_error.map_or(Ok(()), Err)
    }

    fn reads_by_ref(&self) -> bool {
        self.branches.iter().all(|b| b.reads_by_ref())
    }

    async fn consume_ref(&self, batch: &Batch) -> Result<(), ConsumeError> {
        let mut first_error = None;
        for branch in &self.branches {
            if let Err(e) = branch.consume_ref(batch).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A consumer whose target can be replaced while callers hold it: the head of every pipeline
/// is one, so that a rebuilt graph can be swapped in while receivers keep their ports.
pub struct SwitchConsumer {
    target: ArcSwap<SharedConsumer>,
}

impl SwitchConsumer {
    /// Starts pointing at `target`.
    pub fn new(target: SharedConsumer) -> SwitchConsumer {
        SwitchConsumer {
            target: ArcSwap::from_pointee(target),
        }
    }

    /// Points every later call at `target`.
    pub fn switch(&self, target: SharedConsumer) {
        self.target.store(Arc::new(target));
    }

    /// Points every later call at `target`, then waits until the calls that were already
    /// running on the previous target have returned (or `deadline` passes): after it, the
    /// previous target gets nothing more through this switch. Returns whether they all
    /// returned in time.
    pub async fn switch_and_wait(&self, target: SharedConsumer, deadline: Instant) -> bool {
        let previous = self.target.swap(Arc::new(target));
        // Every running call holds a clone of `previous` (see `consume`).
        while Arc::strong_count(&previous) > 1 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        true
    }
}

#[async_trait]
impl Consumer for SwitchConsumer {
    fn capabilities(&self) -> Capabilities {
        self.target.load().capabilities()
    }

    fn acks_durably(&self) -> bool {
        self.target.load().acks_durably()
    }

    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let target = self.target.load_full();
        target.consume(batch).await
    }

    fn reads_by_ref(&self) -> bool {
        self.target.load().reads_by_ref()
    }

    async fn consume_ref(&self, batch: &Batch) -> Result<(), ConsumeError> {
        let target = self.target.load_full();
        target.consume_ref(batch).await
    }
}

#[cfg(test)]
mod fanout_tests {
    use std::sync::Mutex;

    use super::*;
    use crate::testing::{CollectingConsumer, span_batch};

    /// Records whether it was lent or given each batch.
    #[derive(Default)]
    struct Reader {
        lent: Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl Consumer for Reader {
        async fn consume(&self, _batch: Batch) -> Result<(), ConsumeError> {
            panic!("a by-reference reader must be lent the batch");
        }
        fn reads_by_ref(&self) -> bool {
            true
        }
        async fn consume_ref(&self, batch: &Batch) -> Result<(), ConsumeError> {
            self.lent.lock().unwrap().push(batch.item_count());
            Ok(())
        }
    }

    #[tokio::test]
    async fn readers_are_lent_the_batch_and_owners_get_it() {
        let reader = Arc::new(Reader::default());
        let (a, b) = (CollectingConsumer::new(), CollectingConsumer::new());
        // The reader comes last, so the original goes to the last owner before it.
        let fanout = Fanout::new(vec![
            a.clone() as SharedConsumer,
            b.clone() as SharedConsumer,
            reader.clone() as SharedConsumer,
        ]);
        assert!(!fanout.reads_by_ref());
        let batch = span_batch(3);
        fanout.consume(batch.clone()).await.unwrap();
        assert_eq!(*reader.lent.lock().unwrap(), vec![3]);
        assert_eq!(a.batches(), vec![batch.clone()]);
        assert_eq!(b.batches(), vec![batch.clone()]);

        // Only readers: nobody needs the batch itself.
        let readers = Fanout::new(vec![reader.clone() as SharedConsumer]);
        assert!(readers.reads_by_ref());
        readers.consume(batch.clone()).await.unwrap();
        let switch = SwitchConsumer::new(Arc::new(readers));
        assert!(switch.reads_by_ref());
        switch.consume_ref(&batch).await.unwrap();
        assert_eq!(*reader.lent.lock().unwrap(), vec![3, 3, 3]);

        // The default `consume_ref` hands a copy to an owner.
        a.consume_ref(&batch).await.unwrap();
        assert_eq!(a.batches().len(), 2);
    }

    /// Refuses every batch it is lent.
    struct RefusingReader;

    #[async_trait]
    impl Consumer for RefusingReader {
        async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
            batch.dropped();
            Err(ConsumeError::Full)
        }
        fn reads_by_ref(&self) -> bool {
            true
        }
        async fn consume_ref(&self, _batch: &Batch) -> Result<(), ConsumeError> {
            Err(ConsumeError::Full)
        }
    }

    #[tokio::test]
    async fn every_copy_is_resolved_and_readers_only_fanouts_resolve_the_batch() {
        use crate::model::AckOutcome;
        use crate::testing::AckProbe;

        let probe = AckProbe::new();
        let (a, b) = (CollectingConsumer::new(), CollectingConsumer::new());
        let owners = Fanout::new(vec![a.clone() as SharedConsumer, b as SharedConsumer]);
        owners.consume(probe.track(span_batch(2))).await.unwrap();
        assert_eq!(probe.outcome(0), Some(AckOutcome::Delivered));

        let readers = Fanout::new(vec![Arc::new(Reader::default()) as SharedConsumer]);
        readers.consume(probe.track(span_batch(2))).await.unwrap();
        assert_eq!(probe.outcome(1), Some(AckOutcome::Delivered));

        let refusing = Fanout::new(vec![
            Arc::new(Reader::default()) as SharedConsumer,
            Arc::new(RefusingReader) as SharedConsumer,
        ]);
        assert!(refusing.consume(probe.track(span_batch(2))).await.is_err());
        assert_eq!(probe.outcome(2), Some(AckOutcome::Dropped));

        // A refusing reader answers with its error (the sender retries); it owns no copy, so
        // the token follows the owners.
        let mixed = Fanout::new(vec![
            a as SharedConsumer,
            Arc::new(RefusingReader) as SharedConsumer,
        ]);
        assert!(mixed.consume(probe.track(span_batch(2))).await.is_err());
        assert_eq!(
            probe.outcome(3),
            Some(AckOutcome::Delivered),
            "the reader owns no copy"
        );
        probe.assert_resolved();
    }
}

#[cfg(test)]
mod switch_tests {
    use super::*;
    use crate::testing::{CollectingConsumer, span_batch};

    /// Holds every batch until released, then passes it on.
    struct Gate {
        open: tokio::sync::Semaphore,
        entered: tokio::sync::Notify,
        next: Arc<CollectingConsumer>,
    }

    fn gate() -> Arc<Gate> {
        Arc::new(Gate {
            open: tokio::sync::Semaphore::new(0),
            entered: tokio::sync::Notify::new(),
            next: CollectingConsumer::new(),
        })
    }

    #[async_trait]
    impl Consumer for Gate {
        async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
            self.entered.notify_one();
            let _permit = self.open.acquire().await;
            self.next.consume(batch).await
        }
    }

    #[tokio::test]
    async fn switch_and_wait_returns_once_calls_on_the_old_target_are_done() {
        let old = gate();
        let new = CollectingConsumer::new();
        let switch = Arc::new(SwitchConsumer::new(old.clone()));
        let in_flight = tokio::spawn({
            let switch = switch.clone();
            async move { switch.consume(span_batch(2)).await }
        });
        old.entered.notified().await;
        let switched = tokio::spawn({
            let switch = switch.clone();
            let new = new.clone() as SharedConsumer;
            async move {
                switch
                    .switch_and_wait(new, Instant::now() + Duration::from_secs(5))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !switched.is_finished(),
            "a call on the old target is still running"
        );
        switch.consume(span_batch(1)).await.unwrap();
        assert_eq!(new.item_count(), 1, "later calls go to the new target");
        old.open.add_permits(1);
        assert!(switched.await.unwrap());
        in_flight.await.unwrap().unwrap();
        assert_eq!(old.next.item_count(), 2);
        for b in old.next.batches().into_iter().chain(new.batches()) {
            b.delivered();
        }
    }

    #[tokio::test]
    async fn switch_and_wait_gives_up_at_the_deadline() {
        let old = gate();
        let switch = Arc::new(SwitchConsumer::new(old.clone()));
        let in_flight = tokio::spawn({
            let switch = switch.clone();
            async move { switch.consume(span_batch(1)).await }
        });
        old.entered.notified().await;
        let done = switch
            .switch_and_wait(
                CollectingConsumer::new(),
                Instant::now() + Duration::from_millis(30),
            )
            .await;
        assert!(!done);
        old.open.add_permits(1);
        in_flight.await.unwrap().unwrap();
        for b in old.next.batches() {
            b.delivered();
        }
    }
}
