//! # `filelog` receiver
//!
//! Tails log files on the node and turns each line (or multiline record) into a log record
//! for the logs pipelines that name the receiver. Files come from `include` globs (minus
//! `exclude`), found again every `poll_interval`; a file is identified by a fingerprint of its
//! first bytes, not by its name, so rename-and-create and copy-truncate rotation neither lose
//! nor repeat lines, and a deleted file that is still open is read to its end.
//!
//! Records are parsed (`none`, `json` in the seed guide's structured layout, or `regex`) and
//! handed to the pipeline in batches of up to 1024. When the pipeline is full, `consume`
//! waits or refuses; the receiver then stops reading and offers the same records again. It
//! also stops reading while `max_in_flight_records` records are held downstream, so memory
//! stays bounded whatever the exporters' queues could hold. Each file's offset is
//! checkpointed under `storage` only after the records before it were accepted and delivered
//! (see `checkpoint.rs`), so a restart, even after kill -9, resumes where delivery stopped.
//! Records whose acknowledgement is dropped unresolved downstream (their fate unknown) are
//! read again from their file and offered anew, in a window of their own (at most three
//! times per file; a closed or `.gz` file is not); until they are delivered their files'
//! checkpoints stay before them, so at worst a restart reads them again: a duplicate,
//! never a loss.
//!
//! Threads: the reader (globs, `stat`, reads, `.gz` decompression, building records, and
//! handing them over) runs on the receiver's own thread, and checkpoint writes on the
//! runtime's blocking pool; neither runs on the async workers, so a slow disk or a large
//! start-up decompression never stalls the OTLP receivers or the exporters.
//!
//! Files: `config.rs` (keys), `glob.rs` (patterns), `tailer.rs` (files, rotation, lines),
//! `parser.rs`, `json.rs`, `timestamp.rs` (records), `checkpoint.rs` (offsets on disk),
//! `tests.rs`.

mod checkpoint;
mod config;
#[cfg(any(test, feature = "fuzzing"))]
// A failed check must panic: that is what a fuzzer and the seed tests look for.
#[allow(clippy::expect_used, clippy::unwrap_used)]
pub(crate) mod fuzzing;
mod glob;
mod json;
mod parser;
mod tailer;
#[cfg(test)]
mod tests;
mod timestamp;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{
    BuildError, Component, ComponentError, ConsumeError, CreateContext, Host, ReceiverFactory,
    Signal, SignalConsumers,
};
use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{
    ByteSize, FileLogConfig, MultilineConfig, ParserConfig, ParserKind, StartAt, parse_byte_size,
};

use checkpoint::Checkpoints;
use tailer::{Metrics, Settings, StepOutcome, Tailer};

/// Builds `filelog` receivers.
pub struct Factory;

/// The default checkpoint directory of receiver `id`: `<data_dir>/filelog/<id>` with `/`
/// written `_`.
pub fn default_storage(data_dir: &std::path::Path, id: &str) -> PathBuf {
    data_dir.join("filelog").join(id.replace(['/', '\\'], "_"))
}

impl ReceiverFactory for Factory {
    type Config = FileLogConfig;
    const TYPE_NAME: &'static str = "filelog";
    const SIGNALS: &'static [Signal] = &[Signal::Logs];

    fn build(
        &self,
        ctx: CreateContext,
        config: FileLogConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Component>, BuildError> {
        Ok(self.build_receiver(ctx, config, next)?)
    }
}

impl Factory {
    /// [`ReceiverFactory::build`], with the receiver's own type.
    fn build_receiver(
        &self,
        ctx: CreateContext,
        config: FileLogConfig,
        next: SignalConsumers,
    ) -> Result<Arc<FileLogReceiver>, BuildError> {
        let next = next
            .get(Signal::Logs)
            .clone()
            .ok_or_else(|| BuildError::Other("filelog feeds logs pipelines only".into()))?;
        let settings = Settings::new(&config).map_err(BuildError::Other)?;
        let storage = config
            .storage
            .clone()
            .unwrap_or_else(|| default_storage(&ctx.data_dir, ctx.id.as_str()));
        let id = ctx.id.to_string();
        let t = &ctx.telemetry;
        let family = |name: &str, help: &str| {
            t.counter_family(name, help, &[])
                .map(|f| f.with_label_values(&[id.as_str()]))
                .map_err(|e| BuildError::Other(e.to_string()))
        };
        let metrics = Metrics {
            bytes_read: family(
                "sightline_filelog_bytes_read_total",
                "Bytes a filelog receiver read from files.",
            )?,
            files_open: t
                .gauge_family(
                    "sightline_filelog_files_open",
                    "Files a filelog receiver holds open.",
                    &[],
                )
                .map(|f| f.with_label_values(&[id.as_str()]))
                .map_err(|e| BuildError::Other(e.to_string()))?,
            truncated: family(
                "sightline_filelog_records_truncated_total",
                "Records cut to max_log_size (marked log.record.truncated).",
            )?,
            truncated_bytes: family(
                "sightline_filelog_truncated_bytes_total",
                "Bytes dropped from records longer than max_log_size.",
            )?,
            invalid_utf8: family(
                "sightline_filelog_invalid_utf8_total",
                "Records whose invalid UTF-8 was replaced with U+FFFD.",
            )?,
            parse_errors: family(
                "sightline_filelog_parse_errors_total",
                "Records the parser could not parse (kept with log.parse_error).",
            )?,
        };
        let errors = t
            .counter_family(
                "sightline_filelog_checkpoint_errors_total",
                "Checkpoint files that could not be loaded or written, by op.",
                &["op"],
            )
            .map_err(|e| BuildError::Other(e.to_string()))?;
        let checkpoints = Arc::new(Checkpoints::new(storage.clone(), errors, id.clone()));
        Ok(Arc::new(FileLogReceiver {
            inner: Arc::new(Inner {
                max_in_flight: config.max_in_flight_records,
                id,
                settings: Arc::new(settings),
                metrics: Arc::new(metrics),
                next,
                telemetry: ctx.telemetry.clone(),
                checkpoints,
                storage,
            }),
            running: Mutex::new(None),
            #[cfg(test)]
            before_step: Mutex::new(None),
        }))
    }
}

struct Inner {
    id: String,
    max_in_flight: usize,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    next: SharedConsumer,
    telemetry: ComponentTelemetry,
    checkpoints: Arc<Checkpoints>,
    storage: PathBuf,
}

struct Running {
    stop: CancellationToken,
    /// Closed when the reader thread ends.
    reader_done: tokio::sync::oneshot::Receiver<()>,
}

/// A running (or not yet started) `filelog` receiver.
pub struct FileLogReceiver {
    inner: Arc<Inner>,
    running: Mutex<Option<Running>>,
    /// Given to the tailer at start: runs at the start of every step (tests block it to show
    /// a step stalls no async task).
    #[cfg(test)]
    before_step: Mutex<Option<Box<dyn FnMut() + Send>>>,
}

impl Drop for FileLogReceiver {
    /// Dropped without `shutdown`: the reader thread still stops.
    fn drop(&mut self) {
        if let Some(running) = self
            .running
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            running.stop.cancel();
        }
    }
}

impl FileLogReceiver {
    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.inner.checkpoints.path()
    }
}

#[async_trait]
impl Component for FileLogReceiver {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        if self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        inner.checkpoints.attach(Handle::current());
        let (storage, checkpoints) = (inner.storage.clone(), Arc::clone(&inner.checkpoints));
        let saved = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&storage).map(|()| checkpoints.load())
        })
        .await
        .map_err(|e| ComponentError::Other(format!("filelog {}: {e}", inner.id)))?
        .map_err(|e| {
            ComponentError::Other(format!(
                "filelog {}: cannot create the storage directory {}: {e}",
                inner.id,
                inner.storage.display()
            ))
        })?;
        tracing::info!(
            receiver = %inner.id, storage = %inner.storage.display(), checkpointed_files = saved.len(),
            "filelog receiver starting"
        );
        let tailer = Tailer::new(
            Arc::clone(&inner.settings),
            Arc::clone(&inner.metrics),
            Arc::clone(&inner.checkpoints),
            saved,
        );
        #[cfg(test)]
        let tailer = tailer.with_step_hook(
            self.before_step
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let stop = CancellationToken::new();
        let (done, reader_done) = tokio::sync::oneshot::channel::<()>();
        let runtime = Handle::current();
        let reader_stop = stop.clone();
        let id = inner.id.clone();
        std::thread::Builder::new()
            .name("filelog".into())
            .spawn(move || {
                // The sender goes when the thread ends, however it ends.
                let _done = done;
                runtime.block_on(run(inner, tailer, reader_stop));
            })
            .map_err(|e| {
                ComponentError::Other(format!("filelog {id}: cannot start the reader thread: {e}"))
            })?;
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Running { stop, reader_done });
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(Running { stop, reader_done }) = running else {
            return Ok(());
        };
        stop.cancel();
        if tokio::time::timeout_at(deadline, reader_done)
            .await
            .is_err()
        {
            // It hands nothing more over once stopped; it ends after the step it is in.
            tracing::warn!(receiver = %self.inner.id, "filelog: the reader did not stop before the deadline");
        }
        let checkpoints = Arc::clone(&self.inner.checkpoints);
        let _ = tokio::task::spawn_blocking(move || checkpoints.close()).await;
        Ok(())
    }
}

/// The reader: steps the tailer and hands what it staged to the pipeline. It runs on the
/// receiver's own thread (`Handle::block_on`), never on an async worker: a step walks
/// globs, `stat`s and reads files, and at start-up may decompress a `.gz` up to its
/// checkpoint. Records are built on the thread that hands them over (handing the tailer to
/// a blocking-pool thread for each step measured about twice the CPU). Every wait selects
/// on `stop` first, so once stopped it hands nothing more over.
async fn run(inner: Arc<Inner>, mut tailer: Tailer, stop: CancellationToken) {
    let mut window = Window::new(
        (inner.max_in_flight / inner.settings.emit_records()).max(1),
        Arc::clone(&inner.checkpoints),
    );
    loop {
        // Memory stays bounded whatever the pipeline buffers: wait for releases (after
        // letting go of the open window, whose release may be what is waited for).
        let (limit, next) = (inner.max_in_flight, inner.settings.emit_records());
        if !inner.checkpoints.has_room(limit, next) {
            window.close();
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = inner.checkpoints.wait_for_room(limit, next) => {}
            }
        }
        read_again(&inner, &mut tailer, &mut window);
        // Records offered again go in windows of their own, so that if they are lost again
        // no other hand-off is read again with them.
        let solo = tailer.rereading();
        match tailer.step() {
            StepOutcome::Ready => {
                if solo {
                    window.close();
                }
                let batch = tailer.build();
                if !deliver(&inner, &mut tailer, &mut window, batch, &stop).await {
                    return;
                }
                if solo {
                    window.close();
                }
                tokio::task::yield_now().await;
            }
            StepOutcome::Idle(at) => {
                window.close();
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until(Instant::from_std(at)) => {}
                }
            }
        }
    }
}

/// Reads again the files whose hand-offs' acknowledgements were dropped unresolved
/// downstream, from where those hand-offs start, so the data is offered again now; a file
/// that cannot be (closed, `.gz`, read again too often) keeps its checkpoint before the data
/// until a restart.
fn read_again(inner: &Inner, tailer: &mut Tailer, window: &mut Window) {
    if tailer.has_staged() {
        return;
    }
    let rewinds = inner.checkpoints.take_rewinds();
    for (id, from) in rewinds {
        if tailer.rewind(id, from) {
            inner.checkpoints.rewound(id, from);
            tracing::warn!(receiver = %inner.id, offset = from, "filelog: reading a file again from where data whose acknowledgement was lost downstream starts");
        } else {
            tracing::warn!(receiver = %inner.id, offset = from, "filelog: cannot read a file again now; its checkpoint stays before data whose acknowledgement was lost downstream until a restart");
        }
        window.close();
    }
}

/// Hands the staged records to the pipeline until it accepts them, waiting between tries
/// (the reader stands still meanwhile). False when stopped.
async fn deliver(
    inner: &Inner,
    tailer: &mut Tailer,
    window: &mut Window,
    mut batch: pipeline_core::Batch,
    stop: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(20);
    loop {
        let items = batch.item_count();
        let (window_id, token) = window.join();
        let seq = inner
            .checkpoints
            .register(window_id, tailer.staged_updates(), items);
        batch.ctx.acks.push(token);
        let result = tokio::select! {
            biased;
            () = stop.cancelled() => None,
            r = inner.next.consume(batch) => Some(r),
        };
        let wait = match result {
            None => {
                // Not accepted: read again after a restart.
                inner.checkpoints.discard(seq);
                return false;
            }
            Some(Ok(())) => {
                inner.checkpoints.confirm(seq);
                tailer.clear_staged();
                return true;
            }
            Some(Err(e)) if !e.is_retryable() => {
                tracing::error!(receiver = %inner.id, error = %e, items, "filelog: the pipeline refused records permanently; dropping them");
                inner
                    .telemetry
                    .dropped(Signal::Logs, items, reason::REJECTED);
                inner.checkpoints.settle(seq);
                tailer.clear_staged();
                return true;
            }
            Some(Err(e)) => {
                inner.checkpoints.discard(seq);
                let hint = match &e {
                    ConsumeError::Retryable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                tracing::debug!(receiver = %inner.id, error = %e, "filelog: pipeline full; waiting before offering the records again");
                window.close();
                let wait = hint.unwrap_or(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                wait
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
        batch = tailer.build();
    }
}

/// The acknowledgement window the next emits join: one token shared by up to `size` emits,
/// so a batch downstream releases them with one callback (one checkpoint write).
struct Window {
    size: usize,
    checkpoints: Arc<Checkpoints>,
    open: Option<(u64, pipeline_core::AckToken, usize)>,
}

impl Window {
    fn new(size: usize, checkpoints: Arc<Checkpoints>) -> Window {
        Window {
            size,
            checkpoints,
            open: None,
        }
    }

    /// The window for one more emit, and a token for its batch.
    fn join(&mut self) -> (u64, pipeline_core::AckToken) {
        let (id, token, joined) = match self.open.take() {
            Some(w) => w,
            None => {
                let (id, token) = self.checkpoints.window();
                (id, token, 0)
            }
        };
        let for_batch = token.clone();
        if joined + 1 < self.size {
            self.open = Some((id, token, joined + 1));
        } else {
            // The reader's own handle: it adds nothing more, its batches decide.
            token.delivered();
        }
        (id, for_batch)
    }

    /// No more emits join this window: its token is released once its batches are.
    fn close(&mut self) {
        if let Some((_, token, _)) = self.open.take() {
            // The reader's own hold: nothing of it is undelivered.
            token.delivered();
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        self.close();
    }
}
