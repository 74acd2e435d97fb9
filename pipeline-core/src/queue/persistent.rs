//! A sending queue on disk: what it accepted survives a restart and a kill -9.
//!
//! Batches come from an exporter's `consume` and go, after a restart if need be, to its
//! senders. Layout of the queue's directory:
//!
//! * `NNNNNNNNNNNNNNNNNNNN.seg`: segment files, named by the sequence number of their first
//!   record, written append-only. A record is `length: u32 LE`, `crc32: u32 LE` (of the
//!   body), then the body: `signal: u8`, `items: u32 LE`, and the batch as an OTLP export
//!   request in protobuf (an encoded batch's bytes as received).
//! * `commit`: the sequence number below which every record is finished with (delivered, or
//!   dropped and counted), written to a temporary file and renamed into place.
//! * `lock`: held (`flock`) while a process has the queue open.
//!
//! A push appends a record and, per [`FsyncPolicy`], syncs it before it returns; only then are
//! the batch's acknowledgement handles resolved as delivered (the data is safe), so a
//! `filelog` checkpoint advances and an `otlp` client is answered at that point. A pop reads
//! the next record back (checking its checksum and its protobuf, as a receiver would). When a
//! sender is done with a batch its record is finished; the commit point moves up to the first
//! record still waiting or being sent, and segments wholly behind it are deleted. After a restart the
//! records from the commit point on are sent again (at least once: records finished after
//! the last commit may be sent twice).
//!
//! Opening never refuses to start over damage: a torn or corrupt record (short, a length that
//! cannot be, a checksum or protobuf that does not match) ends what is read of its segment;
//! in the last segment the file is cut there. The records and bytes lost are counted and
//! logged, and [`inspect`] (`sightline validate --check-storage`) reports them without
//! changing anything.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

use super::{BatchQueue, FullPolicy, Ticket, TicketEnd};
use crate::consumer::ConsumeError;
use crate::model::{Batch, WaitingBatch};
use crate::signal::Signal;
use crate::wire::{EncodedPayload, Scanned};

/// Bytes of a record's header: length and checksum.
const HEADER: usize = 8;
/// Bytes of a record body's prefix: signal and item count.
const BODY_PREFIX: usize = 5;
/// The largest record body accepted when reading (a longer length is damage).
const MAX_RECORD: u64 = 1 << 30;

/// When appended records are synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before every push returns: survives power loss, costs a disk flush per batch.
    Always,
    /// Every `fsync_interval` (default): survives a crash or kill -9 of the process (the
    /// page cache is the kernel's), loses at most the last interval on power loss.
    #[default]
    Interval,
    /// Never explicitly (the kernel writes back when it likes): survives a process crash
    /// only.
    Never,
}

/// How a persistent queue is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistentConfig {
    /// The queue's own directory.
    pub dir: PathBuf,
    /// Most bytes of segment files on disk; a push that would go over waits or is refused
    /// like a full memory queue.
    pub max_size_bytes: u64,
    /// A new segment file is started once the current one reaches this size.
    pub segment_bytes: u64,
    /// When records are synced.
    pub fsync: FsyncPolicy,
    /// The period of [`FsyncPolicy::Interval`].
    pub fsync_interval: Duration,
}

/// Counters a persistent queue reports into.
#[derive(Clone, Default)]
pub struct QueueCounters {
    /// Records found damaged and skipped (`sightline_queue_corrupt_records_total`).
    pub corrupt_records: Option<IntCounter>,
    /// Bytes cut or skipped because of damage (`sightline_queue_corrupt_bytes_total`).
    pub corrupt_bytes: Option<IntCounter>,
    /// What is queued or being sent, in items (`sightline_queue_size`).
    pub size: Option<IntGauge>,
    /// The disk bound in bytes (`sightline_queue_capacity`).
    pub capacity: Option<IntGauge>,
}

/// What [`inspect`] found in a queue directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageReport {
    /// Segment files.
    pub segments: usize,
    /// Records waiting to be sent (from the commit point on).
    pub records: usize,
    /// Items in them.
    pub items: u64,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Damaged records (each ends what is read of its segment).
    pub corrupt_records: usize,
    /// Bytes lost to damage.
    pub corrupt_bytes: u64,
}

/// A record found on disk.
#[derive(Debug, Clone, Copy)]
struct RecordRef {
    seq: u64,
    segment: u64,
    offset: u64,
    len: u32,
    items: u32,
}

/// Damage found while reading a segment.
#[derive(Debug, Default, Clone, Copy)]
struct Damage {
    records: usize,
    bytes: u64,
}

/// Reads the records of one segment, stopping at the first damaged one. Returns them, the
/// offset where the good data ends, and the damage.
fn read_segment(path: &Path, first_seq: u64) -> std::io::Result<(Vec<RecordRef>, u64, Damage)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    let mut damage = Damage::default();
    while at < data.len() {
        let header = data.get(at..at + HEADER);
        let valid = header.and_then(|h| {
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let body = data.get(at + HEADER..at + HEADER + len as usize)?;
            (u64::from(len) <= MAX_RECORD
                && body.len() >= BODY_PREFIX
                && crc32fast::hash(body) == crc
                && Signal::ALL.get(body[0] as usize).is_some())
            .then(|| {
                (
                    len,
                    u32::from_le_bytes([body[1], body[2], body[3], body[4]]),
                )
            })
        });
        let Some((len, items)) = valid else {
            damage.records += 1;
            damage.bytes += (data.len() - at) as u64;
            break;
        };
        records.push(RecordRef {
            seq: first_seq + records.len() as u64,
            segment: first_seq,
            offset: at as u64,
            len,
            items,
        });
        at += HEADER + len as usize;
    }
    Ok((records, at as u64, damage))
}

/// The segment files of `dir`, by first sequence number.
fn segment_files(dir: &Path) -> std::io::Result<BTreeMap<u64, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.insert(first, path);
        }
    }
    Ok(out)
}

fn read_commit(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("commit"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Reports on the queue in `dir` without changing anything.
pub fn inspect(dir: &Path) -> std::io::Result<StorageReport> {
    let mut report = StorageReport::default();
    if !dir.exists() {
        return Ok(report);
    }
    let commit = read_commit(dir);
    for (first, path) in segment_files(dir)? {
        let (records, _, damage) = read_segment(&path, first)?;
        report.segments += 1;
        report.bytes += std::fs::metadata(&path)?.len();
        report.corrupt_records += damage.records;
        report.corrupt_bytes += damage.bytes;
        for r in records.iter().filter(|r| r.seq >= commit) {
            report.records += 1;
            report.items += u64::from(r.items);
        }
    }
    Ok(report)
}

struct Writer {
    file: File,
    first_seq: u64,
    len: u64,
    dirty: bool,
}

struct State {
    writer: Option<Writer>,
    next_seq: u64,
    /// Records not popped yet, in order.
    pending: VecDeque<RecordRef>,
    /// Items popped and not finished with, by sequence number.
    in_flight: BTreeMap<u64, u32>,
    /// Every record below this is finished (as written in `commit`).
    commit: u64,
    /// Segment files and their sizes, by first sequence number.
    segments: BTreeMap<u64, u64>,
    disk_bytes: u64,
    items: u64,
    closed: bool,
}

struct Shared {
    config: PersistentConfig,
    state: Mutex<State>,
    not_empty: Notify,
    not_full: Notify,
    counters: QueueCounters,
    _lock: File,
}

/// A bounded queue of batches in segment files (see the [`queue`](crate::queue) module docs: segment files, checksums, commit point).
pub struct PersistentQueue {
    shared: Arc<Shared>,
    policy: FullPolicy,
    syncer: Option<tokio::task::JoinHandle<()>>,
}

/// Why a persistent queue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be created or read.
    #[error("persistent queue {dir}: {source}")]
    Io {
        /// The queue's directory.
        dir: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process has the queue open, or another exporter of this one (a reload that
    /// changed an exporter with a persistent queue: the running one keeps it).
    #[error(
        "persistent queue {0} is in use by another process, or by the running exporter during a reload (changing an exporter that has a persistent queue takes a restart)"
    )]
    Locked(String),
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        self.config.dir.join(format!("{first:020}.seg"))
    }

    fn report_size(&self, s: &State) {
        if let Some(g) = &self.counters.size {
            g.set(s.items as i64);
        }
    }

    /// Marks `seq` finished; moves the commit point and deletes segments behind it.
    fn finish(&self, seq: u64) {
        let mut s = self.lock();
        if let Some(items) = s.in_flight.remove(&seq) {
            s.items = s.items.saturating_sub(u64::from(items));
        }
        // Every record below the lowest one still waiting or being sent is finished with.
        // Sequence numbers may have gaps (records lost to damage, a segment named past the
        // last record before it), so the commit point jumps to that record rather than
        // stepping over finished ones.
        let lowest_open = [
            s.pending.front().map(|r| r.seq),
            s.in_flight.keys().next().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(s.next_seq);
        if lowest_open > s.commit {
            s.commit = lowest_open;
            self.write_commit(&mut s);
        }
        self.report_size(&s);
        drop(s);
        self.not_full.notify_waiters();
    }

    /// A record taken out but not finished with goes back to the front (a send cut off by
    /// shutdown: the next start sends it).
    fn keep(&self, record: RecordRef) {
        let mut s = self.lock();
        s.in_flight.remove(&record.seq);
        // Back in sequence order, where it was taken from.
        let at = s.pending.partition_point(|r| r.seq < record.seq);
        s.pending.insert(at, record);
        drop(s);
        self.not_empty.notify_one();
    }

    fn write_commit(&self, s: &mut State) {
        let tmp = self.config.dir.join("commit.tmp");
        let written = std::fs::write(&tmp, s.commit.to_string())
            .and_then(|()| {
                if self.config.fsync == FsyncPolicy::Always {
                    File::open(&tmp)?.sync_all()?;
                }
                Ok(())
            })
            .and_then(|()| std::fs::rename(&tmp, self.config.dir.join("commit")));
        if let Err(e) = written {
            tracing::warn!(dir = %self.config.dir.display(), error = %e, "cannot write the persistent queue's commit point; records may be sent again after a restart");
        }
        // Delete segments wholly behind the commit point (never the one being written).
        let writing = s.writer.as_ref().map(|w| w.first_seq);
        let firsts: Vec<u64> = s.segments.keys().copied().collect();
        for (i, first) in firsts.iter().enumerate() {
            let next_first = firsts.get(i + 1).copied().unwrap_or(s.next_seq);
            if Some(*first) == writing || next_first > s.commit {
                continue;
            }
            if let Some(bytes) = s.segments.remove(first) {
                let _ = std::fs::remove_file(self.segment_path(*first));
                s.disk_bytes = s.disk_bytes.saturating_sub(bytes);
            }
        }
    }

    /// Appends one record; `Err(None)` when there is no room (the caller waits or refuses).
    fn append(&self, body: &[u8]) -> Result<(u64, Option<File>), Option<std::io::Error>> {
        let mut s = self.lock();
        if s.closed {
            return Err(None);
        }
        let record_len = (HEADER + body.len()) as u64;
        if s.disk_bytes > 0 && s.disk_bytes + record_len > self.config.max_size_bytes {
            return Err(None);
        }
        let roll = s
            .writer
            .as_ref()
            .is_none_or(|w| w.len >= self.config.segment_bytes);
        if roll {
            if let Some(old) = s.writer.take()
                && old.dirty
                && self.config.fsync != FsyncPolicy::Never
            {
                old.file.sync_data().map_err(Some)?;
            }
            let first = s.next_seq;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.segment_path(first))
                .map_err(Some)?;
            s.segments.insert(first, 0);
            s.writer = Some(Writer {
                file,
                first_seq: first,
                len: 0,
                dirty: false,
            });
        }
        let mut record = Vec::with_capacity(HEADER + body.len());
        record.extend_from_slice(&(body.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        record.extend_from_slice(body);
        let seq = s.next_seq;
        let Some(w) = s.writer.as_mut() else {
            return Err(None);
        };
        let offset = w.len;
        if let Err(e) = w.file.write_all(&record) {
            // A partial write is cut off again, so the segment stays well-formed.
            let _ = w.file.set_len(offset);
            return Err(Some(e));
        }
        w.len += record_len;
        w.dirty = true;
        let first = w.first_seq;
        let sync = (self.config.fsync == FsyncPolicy::Always)
            .then(|| w.file.try_clone())
            .transpose()
            .map_err(Some)?;
        let items = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
        s.next_seq += 1;
        if let Some(size) = s.segments.get_mut(&first) {
            *size += record_len;
        }
        s.disk_bytes += record_len;
        s.items += u64::from(items);
        s.pending.push_back(RecordRef {
            seq,
            segment: first,
            offset,
            len: body.len() as u32,
            items,
        });
        self.report_size(&s);
        drop(s);
        self.not_empty.notify_one();
        Ok((seq, sync))
    }

    /// Reads a record back as a batch; `None` when it is damaged (counted).
    fn read(&self, r: &RecordRef) -> Option<Batch> {
        let mut body = vec![0u8; r.len as usize];
        let read = File::open(self.segment_path(r.segment))
            .and_then(|f| f.read_exact_at(&mut body, r.offset + HEADER as u64));
        let signal = Signal::ALL.get(usize::from(body.first().copied().unwrap_or(255)));
        let batch = match (read, signal) {
            (Ok(()), Some(&signal)) => {
                let request = Bytes::from(body).slice(BODY_PREFIX..);
                match EncodedPayload::from_request(signal, &request) {
                    Ok(Scanned::Clean(e)) => Some(Batch::encoded(e)),
                    _ => decode(signal, &request),
                }
            }
            _ => None,
        };
        if batch.is_none() {
            self.count_damage(1, u64::from(r.len));
            tracing::error!(dir = %self.config.dir.display(), seq = r.seq, "a persistent queue record is unreadable; skipping it");
        }
        batch
    }

    fn count_damage(&self, records: usize, bytes: u64) {
        if let Some(c) = &self.counters.corrupt_records {
            c.inc_by(records as u64);
        }
        if let Some(c) = &self.counters.corrupt_bytes {
            c.inc_by(bytes);
        }
    }

    /// Syncs the segment being written if it has unsynced records.
    fn sync_now(&self) {
        let file = {
            let mut s = self.lock();
            match s.writer.as_mut() {
                Some(w) if w.dirty => {
                    w.dirty = false;
                    w.file.try_clone().ok()
                }
                _ => None,
            }
        };
        if let Some(f) = file
            && let Err(e) = f.sync_data()
        {
            tracing::warn!(dir = %self.config.dir.display(), error = %e, "cannot sync the persistent queue");
        }
    }
}

/// Decodes a record whose bytes the scan refused (an invalid ID the receiver would have
/// removed never gets here; this is for records prost still reads).
fn decode(signal: Signal, request: &Bytes) -> Option<Batch> {
    use prost::Message;
    let payload = match signal {
        Signal::Traces => crate::Payload::Traces(
            crate::proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                request.clone(),
            )
            .ok()?
            .resource_spans,
        ),
        Signal::Metrics => crate::Payload::Metrics(
            crate::proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
                request.clone(),
            )
            .ok()?
            .resource_metrics,
        ),
        Signal::Logs => crate::Payload::Logs(
            crate::proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
                request.clone(),
            )
            .ok()?
            .resource_logs,
        ),
    };
    Some(Batch::new(payload))
}

impl PersistentQueue {
    /// Opens (creating if need be) the queue in `config.dir`: reads what is there, cuts a
    /// damaged tail, and starts the sync task of [`FsyncPolicy::Interval`] (call within a
    /// Tokio runtime).
    pub fn open(
        config: PersistentConfig,
        policy: FullPolicy,
        counters: QueueCounters,
    ) -> Result<PersistentQueue, OpenError> {
        let dir = config.dir.clone();
        let io = |source| OpenError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(io)?;
        if lock.try_lock().is_err() {
            return Err(OpenError::Locked(dir.display().to_string()));
        }
        let _ = std::fs::remove_file(dir.join("commit.tmp"));
        let commit = read_commit(&dir);
        let files = segment_files(&dir).map_err(io)?;
        let mut state = State {
            writer: None,
            next_seq: commit,
            pending: VecDeque::new(),
            in_flight: BTreeMap::new(),
            commit,
            segments: BTreeMap::new(),
            disk_bytes: 0,
            items: 0,
            closed: false,
        };
        let mut damage = Damage::default();
        let last = files.keys().next_back().copied();
        for (first, path) in &files {
            let (records, good_end, d) = read_segment(path, *first).map_err(io)?;
            if d.records > 0 {
                damage.records += d.records;
                damage.bytes += d.bytes;
                tracing::warn!(
                    segment = %path.display(),
                    at = good_end,
                    bytes_lost = d.bytes,
                    "persistent queue segment damaged (torn or corrupt record); what follows it in this segment is dropped"
                );
                if Some(*first) == last {
                    // Cut the tail so later appends (to a new segment) never follow garbage.
                    OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|f| f.set_len(good_end))
                        .map_err(io)?;
                }
            }
            let size = std::fs::metadata(path).map_err(io)?.len();
            state.segments.insert(*first, size);
            state.disk_bytes += size;
            for r in records {
                state.next_seq = state.next_seq.max(r.seq + 1);
                if r.seq >= commit {
                    state.items += u64::from(r.items);
                    state.pending.push_back(r);
                }
            }
            state.next_seq = state.next_seq.max(*first);
        }
        if let Some(g) = &counters.capacity {
            g.set(config.max_size_bytes as i64);
        }
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(state),
            not_empty: Notify::new(),
            not_full: Notify::new(),
            counters,
            _lock: lock,
        });
        if damage.records > 0 {
            shared.count_damage(damage.records, damage.bytes);
        }
        {
            let s = shared.lock();
            shared.report_size(&s);
            if !s.pending.is_empty() {
                tracing::info!(dir = %dir.display(), records = s.pending.len(), items = s.items, "persistent queue holds data from before the restart; sending it");
            }
        }
        let syncer = (shared.config.fsync == FsyncPolicy::Interval).then(|| {
            let weak = Arc::downgrade(&shared);
            let period = shared.config.fsync_interval.max(Duration::from_millis(1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    let Some(shared) = weak.upgrade() else { return };
                    tokio::task::spawn_blocking(move || shared.sync_now())
                        .await
                        .ok();
                }
            })
        });
        Ok(PersistentQueue {
            shared,
            policy,
            syncer,
        })
    }

    /// Records waiting (not taken out yet).
    pub fn pending_records(&self) -> usize {
        self.shared.lock().pending.len()
    }
}

impl Drop for PersistentQueue {
    fn drop(&mut self) {
        if let Some(t) = self.syncer.take() {
            t.abort();
        }
        self.shared.sync_now();
    }
}

#[async_trait]
impl BatchQueue for PersistentQueue {
    async fn push(&self, batch: Batch) -> Result<(), ConsumeError> {
        let signal = batch.signal();
        let items = batch.item_count();
        let mut body = Vec::with_capacity(BODY_PREFIX + batch.encoded_len());
        body.push(Signal::ALL.iter().position(|s| *s == signal).unwrap_or(0) as u8);
        body.extend_from_slice(&(items as u32).to_le_bytes());
        batch.write_request(&mut body);
        // Until the record is safe, a caller that gives up refuses the batch.
        let waiting = WaitingBatch::new(batch);
        loop {
            let notified = self.shared.not_full.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.shared.append(&body) {
                Ok((_, sync)) => {
                    if let Some(file) = sync
                        && let Ok(Err(e)) =
                            tokio::task::spawn_blocking(move || file.sync_data()).await
                    {
                        tracing::warn!(error = %e, "persistent queue sync failed");
                    }
                    // On disk (synced per policy): the sources' data is safe.
                    if let Some(b) = waiting.take() {
                        b.delivered();
                    }
                    return Ok(());
                }
                Err(Some(e)) => {
                    tracing::error!(dir = %self.shared.config.dir.display(), error = %e, "cannot write to the persistent queue; refusing the batch");
                    return Err(ConsumeError::retryable(format!(
                        "persistent queue write failed: {e}"
                    )));
                }
                Err(None) if self.shared.lock().closed => {
                    return Err(ConsumeError::ShuttingDown);
                }
                Err(None) if self.policy == FullPolicy::Refuse => return Err(ConsumeError::Full),
                Err(None) => notified.await,
            }
        }
    }

    async fn pop(&self) -> Option<(Batch, Ticket)> {
        loop {
            let notified = self.shared.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = {
                let mut s = self.shared.lock();
                match s.pending.pop_front() {
                    Some(r) => {
                        s.in_flight.insert(r.seq, r.items);
                        Some(r)
                    }
                    None if s.closed => return None,
                    None => None,
                }
            };
            let Some(record) = next else {
                notified.await;
                continue;
            };
            let Some(batch) = self.shared.read(&record) else {
                self.shared.finish(record.seq);
                continue;
            };
            let shared = Arc::clone(&self.shared);
            let ticket = Ticket::new(move |end| match end {
                TicketEnd::Done => shared.finish(record.seq),
                TicketEnd::Keep => shared.keep(record),
            });
            return Some((batch, ticket));
        }
    }

    fn keeps_data(&self) -> bool {
        true
    }

    fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.not_empty.notify_waiters();
        self.shared.not_full.notify_waiters();
    }

    fn len_items(&self) -> usize {
        self.shared.lock().items as usize
    }

    /// Nothing: what is queued stays on disk for the next start.
    fn drain_all(&self) -> Vec<Batch> {
        self.shared.sync_now();
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
