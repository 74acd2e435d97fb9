//! Writing batches to stderr (or, in tests, to a buffer) from a thread of its own.
//!
//! `consume` renders the text on the caller's task and queues it; one writer thread, fed
//! through a channel whose pending text is bounded in bytes, writes and flushes each in
//! order, counts it and resolves its batch's acknowledgement tokens. A slow or blocked
//! stderr (a full pipe, a paused terminal) thus stalls the writer thread and, once the
//! queue is full, the callers' futures, but never an async worker thread.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use pipeline_core::model::Payload;
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{
    Batch, BatchContext, BuildError, Component, ComponentError, ConsumeError, Consumer, Signal,
    WaitingBatch,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::config::{DebugConfig, Verbosity};
use crate::helper::WRITE_FAILED;
use crate::helper::codec::write_json;

/// Where the text goes.
pub(crate) type Output = Box<dyn Write + Send>;

/// Rendered text waiting for the writer thread is bounded to this many bytes; a batch
/// larger than the whole budget waits for an empty queue.
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;

/// One rendered batch on its way to the writer thread.
struct Job {
    text: Vec<u8>,
    signal: Signal,
    items: usize,
    acks: BatchContext,
    /// Its share of [`MAX_QUEUED_BYTES`], given back once written.
    _room: OwnedSemaphorePermit,
}

enum Message {
    Write(Job),
    /// Answered once everything queued before it is written.
    Drained(oneshot::Sender<()>),
}

/// Writes each batch it is given; keeps nothing beyond the bounded queue.
pub(crate) struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    jobs: mpsc::UnboundedSender<Message>,
    room: Arc<Semaphore>,
    closed: AtomicBool,
    /// Set when shutdown gave up waiting: the writer counts what is left as dropped.
    abandon: Arc<AtomicBool>,
}

impl DebugExporter {
    pub(crate) fn new(
        id: String,
        config: &DebugConfig,
        telemetry: ComponentTelemetry,
        out: Output,
    ) -> Result<DebugExporter, BuildError> {
        let (jobs, queue) = mpsc::unbounded_channel();
        let abandon = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            id: id.clone(),
            telemetry,
            out,
            abandon: abandon.clone(),
        };
        std::thread::Builder::new()
            .name("debug-exporter".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| BuildError::Other(format!("cannot start the writer thread: {e}")))?;
        Ok(DebugExporter {
            id,
            verbosity: config.verbosity,
            jobs,
            room: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
            closed: AtomicBool::new(false),
            abandon,
        })
    }

    fn render(&self, batch: &Batch) -> Result<Vec<u8>, ConsumeError> {
        let mut text = summary(&self.id, &batch.payload_view()).into_bytes();
        text.push(b'\n');
        if self.verbosity == Verbosity::Detailed {
            write_json(&batch.payload_view(), &mut text).map_err(ConsumeError::permanent)?;
            text.push(b'\n');
        }
        Ok(text)
    }
}

/// The writer thread's side: the output, and what it needs to settle each job.
struct Writer {
    id: String,
    telemetry: ComponentTelemetry,
    out: Output,
    abandon: Arc<AtomicBool>,
}

impl Writer {
    /// Writes jobs in the order queued until the exporter is dropped.
    fn run(mut self, mut queue: mpsc::UnboundedReceiver<Message>) {
        while let Some(message) = queue.blocking_recv() {
            match message {
                Message::Write(job) => self.write(job),
                Message::Drained(done) => {
                    let _ = done.send(());
                }
            }
        }
        let _ = self.out.flush();
    }

    fn write(&mut self, job: Job) {
        if self.abandon.load(Ordering::SeqCst) {
            self.telemetry
                .dropped(job.signal, job.items, reason::SHUTDOWN_TIMEOUT);
            job.acks.dropped();
            return;
        }
        let out = &mut self.out;
        match out.write_all(&job.text).and_then(|()| out.flush()) {
            Ok(()) => {
                self.telemetry.sent(job.signal, job.items);
                job.acks.delivered();
            }
            Err(e) => {
                // Accepted but not shown: count it rather than push it back upstream, where
                // a retry would meet the same broken stream.
                tracing::warn!(exporter = %self.id, error = %e, "cannot write to stderr");
                self.telemetry.dropped(job.signal, job.items, WRITE_FAILED);
                job.acks.dropped();
            }
        }
    }
}

/// `debug: traces: 1 resource spans, 3 spans`, in the OpenTelemetry Collector's words.
pub(crate) fn summary(id: &str, payload: &Payload) -> String {
    let signal = payload.signal();
    let items = payload.item_count();
    match payload {
        Payload::Traces(rs) => {
            format!("{id}: {signal}: {} resource spans, {items} spans", rs.len())
        }
        Payload::Metrics(rm) => {
            let metrics: usize = rm
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum();
            format!(
                "{id}: {signal}: {} resource metrics, {metrics} metrics, {items} data points",
                rm.len()
            )
        }
        Payload::Logs(rl) => {
            format!(
                "{id}: {signal}: {} resource logs, {items} log records",
                rl.len()
            )
        }
        _ => format!("{id}: {signal}: {items} items"),
    }
}

#[async_trait]
impl Consumer for DebugExporter {
    /// Renders the batch and queues it for the writer thread; `Ok` means accepted, and the
    /// batch's tokens resolve once its text is written.
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.closed.load(Ordering::SeqCst) {
            batch.dropped();
            return Err(ConsumeError::ShuttingDown);
        }
        let text = match self.render(&batch) {
            Ok(text) => text,
            Err(e) => {
                batch.dropped();
                return Err(e);
            }
        };
        let share = u32::try_from(text.len().min(MAX_QUEUED_BYTES)).unwrap_or(u32::MAX);
        // Held so that a caller giving up while we wait for room refuses the batch rather
        // than dropping its handles unresolved.
        let waiting = WaitingBatch::new(batch);
        let room = self.room.clone().acquire_many_owned(share).await;
        let Some(mut batch) = waiting.take() else {
            return Err(ConsumeError::ShuttingDown);
        };
        let Ok(room) = room else {
            batch.dropped();
            return Err(ConsumeError::ShuttingDown);
        };
        // The payload is done with; only the tokens travel on, to be resolved after the write.
        let job = Job {
            text,
            signal: batch.signal(),
            items: batch.item_count(),
            acks: std::mem::take(&mut batch.ctx),
            _room: room,
        };
        if let Err(mpsc::error::SendError(Message::Write(job))) =
            self.jobs.send(Message::Write(job))
        {
            // The writer thread is gone (it panicked): nothing can be shown any more.
            job.acks.dropped();
            return Err(ConsumeError::ShuttingDown);
        }
        Ok(())
    }
}

#[async_trait]
impl Component for DebugExporter {
    /// Refuses new batches and waits, until `deadline`, for the queued ones to be written;
    /// what is still queued then is counted as dropped (`shutdown_timeout`).
    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        self.closed.store(true, Ordering::SeqCst);
        let (done, drained) = oneshot::channel();
        if self.jobs.send(Message::Drained(done)).is_ok()
            && tokio::time::timeout_at(deadline, drained).await.is_err()
        {
            tracing::warn!(
                exporter = %self.id,
                "shutdown deadline passed while writing to stderr; dropping the rest"
            );
            self.abandon.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}
