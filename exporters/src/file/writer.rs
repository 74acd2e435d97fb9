//! Appending OTLP/JSON lines to a file through a buffer.
//!
//! A batch's acknowledgement tokens wait in the buffer with its line and are resolved when
//! the buffer's fate is known: delivered once `write(2)` of the whole buffer has returned
//! (the bytes are then in the kernel's page cache, which outlives a killed process, so a
//! `filelog` checkpoint may move past them), dropped when the write failed or shutdown gave
//! up on it. There is no fsync: a power loss or kernel crash can still lose the last
//! seconds, as with the OpenTelemetry Collector's file exporter.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{
    Batch, BatchContext, Component, ComponentError, ConsumeError, Consumer, Host, PerSignal,
    WaitingBatch,
};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::config::FileConfig;
use crate::helper::WRITE_FAILED;
use crate::helper::codec::write_json;

/// Buffered lines are written out once they reach this size, whatever the interval.
const FLUSH_BYTES: usize = 256 * 1024;

/// Appends one export request per line; counts items as sent, and acknowledges them, once
/// they reach the file.
pub(crate) struct FileExporter {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    path: PathBuf,
    flush_interval: Duration,
    telemetry: ComponentTelemetry,
    state: tokio::sync::Mutex<State>,
    closed: AtomicBool,
    stop: CancellationToken,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    file: Option<tokio::fs::File>,
    buf: Vec<u8>,
    /// Items in `buf`, per signal: sent once written, dropped if the write fails.
    pending: PerSignal<usize>,
    /// The acknowledgement tokens of the batches in `buf`, resolved with them.
    acks: BatchContext,
}

/// The fate of one buffer's batches, decided under the state lock and told to their
/// sources (whose callbacks may do I/O) after it is released.
#[must_use = "resolve the tokens once the state lock is released"]
#[derive(Default)]
struct Settled {
    acks: BatchContext,
    delivered: bool,
}

impl Settled {
    fn resolve(self) {
        if self.delivered {
            self.acks.delivered();
        } else {
            self.acks.dropped();
        }
    }
}

impl FileExporter {
    pub(crate) fn new(id: String, config: &FileConfig, telemetry: ComponentTelemetry) -> Self {
        FileExporter {
            inner: Arc::new(Inner {
                id,
                path: config.path.clone(),
                flush_interval: config.flush_interval.get(),
                telemetry,
                state: tokio::sync::Mutex::new(State::default()),
                closed: AtomicBool::new(false),
                stop: CancellationToken::new(),
                flusher: Mutex::new(None),
            }),
        }
    }
}

/// Writes `buf` to the end of `file` and waits until it has been through write(2).
///
/// Safe to cancel: `buf` loses only what the file took, so the next call writes the rest and
/// no line is torn or written twice. On an error (disk full) the file is cut back to where
/// this call started, so a half-written line never merges with the next one.
pub(super) async fn write_out(
    file: &mut tokio::fs::File,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    // Finishes what a cancelled call left in flight, so the length below includes it.
    file.flush().await?;
    let len_before = file.metadata().await?.len();
    let result = async {
        while !buf.is_empty() {
            let n = file.write(buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            buf.drain(..n);
        }
        // Waits for tokio's background write: after it the bytes have been through write(2).
        file.flush().await
    }
    .await;
    if result.is_err()
        && let Err(e) = file.set_len(len_before).await
    {
        tracing::warn!(error = %e, "cannot cut a partly written line off the file");
    }
    result
}

impl Inner {
    /// Writes the buffer out and settles its items' counts; the caller resolves the tokens
    /// after releasing the lock.
    async fn flush(&self, state: &mut State) -> Settled {
        let State {
            file,
            buf,
            pending,
            acks,
        } = state;
        // Items whose bytes a cancelled flush already wrote wait here with an empty buffer.
        if buf.is_empty() && acks.is_empty() && pending.iter().all(|(_, n)| *n == 0) {
            return Settled::default();
        }
        let Some(file) = file.as_mut() else {
            return Settled::default();
        };
        let written = write_out(file, buf).await;
        // Cleared only after the write finished: if shutdown abandons it half-way, the
        // items and tokens are still here to be counted and failed.
        buf.clear();
        let items = std::mem::take(pending);
        let acks = std::mem::take(acks);
        match written {
            Ok(()) => {
                for (signal, &n) in items.iter().filter(|(_, n)| **n > 0) {
                    self.telemetry.sent(signal, n);
                }
                Settled {
                    acks,
                    delivered: true,
                }
            }
            Err(e) => {
                tracing::error!(
                    exporter = %self.id, path = %self.path.display(), error = %e,
                    "cannot write to the file; dropping the buffered data"
                );
                for (signal, &n) in items.iter().filter(|(_, n)| **n > 0) {
                    self.telemetry.dropped(signal, n, WRITE_FAILED);
                }
                Settled {
                    acks,
                    delivered: false,
                }
            }
        }
    }

    /// Writes the buffer out under the lock, then tells the sources.
    async fn flush_and_resolve(&self) {
        let mut state = self.state.lock().await;
        let settled = self.flush(&mut state).await;
        drop(state);
        settled.resolve();
    }

    /// Counts what is buffered as dropped at shutdown; the tokens fail with it.
    fn count_abandoned(&self, state: &mut State) -> Settled {
        state.buf.clear();
        let items = std::mem::take(&mut state.pending);
        for (signal, &n) in items.iter().filter(|(_, n)| **n > 0) {
            self.telemetry.dropped(signal, n, reason::SHUTDOWN_TIMEOUT);
        }
        Settled {
            acks: std::mem::take(&mut state.acks),
            delivered: false,
        }
    }

    async fn open(&self) -> Result<tokio::fs::File, ComponentError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                ComponentError::Other(format!(
                    "file exporter: cannot create directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| {
                ComponentError::Other(format!(
                    "file exporter: cannot open {} for appending: {e}",
                    self.path.display()
                ))
            })
    }
}

async fn run_flusher(inner: Arc<Inner>) {
    let mut ticks = tokio::time::interval(inner.flush_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            biased;
            () = inner.stop.cancelled() => return,
            _ = ticks.tick() => inner.flush_and_resolve().await,
        }
    }
}

impl Drop for FileExporter {
    /// Dropped without `shutdown`: stop the flusher, which holds the inner state, and count
    /// what could not be written.
    fn drop(&mut self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        inner.stop.cancel();
        let abandoned = inner
            .state
            .try_lock()
            .ok()
            .map(|mut state| inner.count_abandoned(&mut state));
        if let Some(settled) = abandoned {
            settled.resolve();
        }
    }
}

#[async_trait]
impl Consumer for FileExporter {
    /// Buffers the batch's line and keeps its tokens with it; `Ok` means accepted, and the
    /// tokens resolve once the line is written (or its write failed).
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            batch.dropped();
            return Err(ConsumeError::ShuttingDown);
        }
        let items = batch.item_count();
        if items == 0 {
            batch.delivered();
            return Ok(());
        }
        let mut line = Vec::new();
        if let Err(e) = write_json(&batch.payload_view(), &mut line) {
            batch.dropped();
            return Err(ConsumeError::permanent(e));
        }
        line.push(b'\n');
        // Held so that a caller giving up while we wait for the lock refuses the batch rather
        // than dropping its handles unresolved.
        let waiting = WaitingBatch::new(batch);
        let mut state = inner.state.lock().await;
        let Some(batch) = waiting.take() else {
            return Err(ConsumeError::ShuttingDown);
        };
        if inner.closed.load(Ordering::SeqCst) {
            batch.dropped();
            return Err(ConsumeError::ShuttingDown);
        }
        if state.file.is_none() {
            batch.dropped();
            return Err(ConsumeError::retryable("the file exporter has not started"));
        }
        state.buf.extend_from_slice(&line);
        *state.pending.get_mut(batch.signal()) += items;
        state.acks.merge(batch.ctx);
        if inner.flush_interval.is_zero() || state.buf.len() >= FLUSH_BYTES {
            let settled = inner.flush(&mut state).await;
            drop(state);
            settled.resolve();
        }
        Ok(())
    }
}

#[async_trait]
impl Component for FileExporter {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        if state.file.is_some() || inner.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        state.file = Some(inner.open().await?);
        drop(state);
        if !inner.flush_interval.is_zero() {
            let handle = tokio::spawn(run_flusher(Arc::clone(inner)));
            *inner.flusher.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::SeqCst);
        inner.stop.cancel();
        let flusher = inner
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut handle) = flusher {
            let finished = tokio::time::timeout_at(deadline, &mut handle).await.is_ok();
            if !finished {
                handle.abort();
                let _ = handle.await;
            }
        }
        let flushed = tokio::time::timeout_at(deadline, inner.flush_and_resolve()).await;
        let mut state = inner.state.lock().await;
        let abandoned = if flushed.is_err() {
            tracing::warn!(
                exporter = %inner.id, path = %inner.path.display(),
                "shutdown deadline passed while writing; dropping the buffered data"
            );
            Some(inner.count_abandoned(&mut state))
        } else {
            None
        };
        state.file = None;
        drop(state);
        if let Some(settled) = abandoned {
            settled.resolve();
        }
        Ok(())
    }
}
