//! Appending OTLP/JSON lines to a file through a buffer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{Batch, Component, ComponentError, ConsumeError, Consumer, Host, PerSignal};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::config::FileConfig;
use crate::helper::WRITE_FAILED;
use crate::helper::codec::write_json;

/// Buffered lines are written out once they reach this size, whatever the interval.
const FLUSH_BYTES: usize = 256 * 1024;

/// Appends one export request per line; counts items as sent once they reach the file.
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

impl Inner {
    /// Writes the buffer out and settles its items' counts.
    async fn flush(&self, state: &mut State) {
        let State { file, buf, pending } = state;
        if buf.is_empty() {
            return;
        }
        let Some(file) = file.as_mut() else {
            return;
        };
        let written = async {
            file.write_all(buf).await?;
            file.flush().await
        }
        .await;
        // Cleared only after the write finished: if shutdown abandons it half-way, the
        // items are still here to be counted.
        buf.clear();
        let items = std::mem::take(pending);
        match written {
            Ok(()) => {
                for (signal, &n) in items.iter().filter(|(_, n)| **n > 0) {
                    self.telemetry.sent(signal, n);
                }
            }
            Err(e) => {
                tracing::error!(
                    exporter = %self.id, path = %self.path.display(), error = %e,
                    "cannot write to the file; dropping the buffered data"
                );
                for (signal, &n) in items.iter() {
                    self.telemetry.dropped(signal, n, WRITE_FAILED);
                }
            }
        }
    }

    fn count_abandoned(&self, state: &mut State) {
        state.buf.clear();
        let items = std::mem::take(&mut state.pending);
        for (signal, &n) in items.iter() {
            self.telemetry.dropped(signal, n, reason::SHUTDOWN_TIMEOUT);
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
            _ = ticks.tick() => {
                let mut state = inner.state.lock().await;
                inner.flush(&mut state).await;
            }
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
        if let Ok(mut state) = inner.state.try_lock() {
            inner.count_abandoned(&mut state);
        }
    }
}

#[async_trait]
impl Consumer for FileExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(ConsumeError::ShuttingDown);
        }
        let items = batch.item_count();
        if items == 0 {
            return Ok(());
        }
        let mut line = Vec::new();
        write_json(&batch.payload, &mut line).map_err(ConsumeError::permanent)?;
        line.push(b'\n');
        let mut state = inner.state.lock().await;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(ConsumeError::ShuttingDown);
        }
        if state.file.is_none() {
            return Err(ConsumeError::retryable("the file exporter has not started"));
        }
        state.buf.extend_from_slice(&line);
        *state.pending.get_mut(batch.signal()) += items;
        if inner.flush_interval.is_zero() || state.buf.len() >= FLUSH_BYTES {
            inner.flush(&mut state).await;
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
        let flushed = tokio::time::timeout_at(deadline, async {
            let mut state = inner.state.lock().await;
            inner.flush(&mut state).await;
        })
        .await;
        let mut state = inner.state.lock().await;
        if flushed.is_err() {
            tracing::warn!(
                exporter = %inner.id, path = %inner.path.display(),
                "shutdown deadline passed while writing; dropping the buffered data"
            );
            inner.count_abandoned(&mut state);
        }
        state.file = None;
        Ok(())
    }
}
