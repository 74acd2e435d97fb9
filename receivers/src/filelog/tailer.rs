//! The file side of the receiver, synchronous and single-owner: finding files, telling them
//! apart by fingerprint, following rotation, reading and splitting records, and staging them
//! for the next hand-off. The reader in `mod.rs` runs each [`Tailer::step`] on the
//! receiver's own thread (never on an async worker) and hands the staged records to the
//! pipeline.
//!
//! Identity: a file is the length and hash of its first `fingerprint_size` bytes. While a
//! file is open its inode is followed (a rename keeps it), and at every poll where its size
//! or mtime changed its first bytes are read again (one positional read) and checked against
//! the fingerprint: a file shorter than the offset read, or whose first bytes changed, was
//! copy-truncated or rewritten in place, however much was written since, and is read again
//! from offset 0 as a new file. A path with an unknown inode is fingerprinted and either
//! continues a known file (a rotated copy, or a file from the checkpoint) at that file's
//! offset, or is new. A file from the checkpoint found shorter than its offset the first
//! time it is seen again was truncated and rewritten while the receiver was stopped: it is
//! read from offset 0. Files that left the globs or were deleted are read to their end
//! through the open handle.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use pipeline_core::proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use pipeline_core::proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::{Batch, Payload};
use prometheus::{IntCounter, IntGauge};

use super::checkpoint::{Checkpoints, FpHasher, Saved, fp_hash};
use super::config::{FileLogConfig, StartAt};
use super::glob::Glob;
use super::parser::RecordBuilder;

/// Bytes read from a file at a time.
const CHUNK: usize = 256 * 1024;
/// A hand-off closes at this many records (or `max_in_flight_records`, if smaller)...
pub(crate) const EMIT_RECORDS: usize = 1024;
/// ...or this many bytes of text.
const EMIT_BYTES: usize = 1024 * 1024;
/// A file that left the globs is closed once read to its end and unseen for this many polls.
const CLOSE_AFTER_POLLS: u32 = 2;
/// A closed file's identity is forgotten (and dropped from the checkpoint) after this many
/// polls without a sighting.
const FORGET_AFTER_POLLS: u32 = 25;
/// A file is read again after a lost acknowledgement at most this many times per process;
/// after that its checkpoint stays before the lost data until a restart reads it again.
pub(crate) const MAX_REWINDS: u32 = 3;
/// Compressed rotations are skipped unless the include pattern names the extension.
const COMPRESSED: [&str; 6] = [".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4"];

/// `log.file.name`, `log.file.path`, `log.record.truncated`.
pub(crate) const FILE_NAME_ATTR: &str = "log.file.name";
/// See [`FILE_NAME_ATTR`].
pub(crate) const FILE_PATH_ATTR: &str = "log.file.path";
/// See [`FILE_NAME_ATTR`].
pub(crate) const TRUNCATED_ATTR: &str = "log.record.truncated";

enum Multiline {
    Start(regex::bytes::Regex),
    End(regex::bytes::Regex),
}

/// The receiver's counters, resolved for its ID.
pub(crate) struct Metrics {
    pub(crate) bytes_read: IntCounter,
    pub(crate) files_open: IntGauge,
    pub(crate) truncated: IntCounter,
    pub(crate) truncated_bytes: IntCounter,
    pub(crate) invalid_utf8: IntCounter,
    pub(crate) parse_errors: IntCounter,
}

/// The compiled config.
pub(crate) struct Settings {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
    start_at: StartAt,
    poll_interval: Duration,
    max_open: usize,
    include_file_name: bool,
    include_file_path: bool,
    fp_size: usize,
    max_log_size: usize,
    force_flush: Duration,
    multiline: Option<Multiline>,
    builder: RecordBuilder,
    /// Records per hand-off.
    emit_records: usize,
}

impl Settings {
    /// Records per hand-off.
    pub(crate) fn emit_records(&self) -> usize {
        self.emit_records
    }

    /// Compiles a validated config.
    pub(crate) fn new(c: &FileLogConfig) -> Result<Settings, String> {
        let globs = |v: &[String]| {
            v.iter()
                .map(|p| Glob::new(p))
                .collect::<Result<Vec<_>, _>>()
        };
        let multiline = match &c.multiline {
            None => None,
            Some(m) => match (&m.line_start_pattern, &m.line_end_pattern) {
                (Some(p), _) => Some(Multiline::Start(
                    regex::bytes::Regex::new(p).map_err(|e| e.to_string())?,
                )),
                (None, Some(p)) => Some(Multiline::End(
                    regex::bytes::Regex::new(p).map_err(|e| e.to_string())?,
                )),
                (None, None) => None,
            },
        };
        Ok(Settings {
            include: globs(&c.include)?,
            exclude: globs(&c.exclude)?,
            start_at: c.start_at,
            poll_interval: c.poll_interval.get(),
            max_open: c.max_concurrent_files,
            include_file_name: c.include_file_name,
            include_file_path: c.include_file_path,
            fp_size: c.fingerprint_size.as_usize(),
            max_log_size: c.max_log_size.as_usize(),
            force_flush: c.force_flush_period.get(),
            multiline,
            builder: RecordBuilder::new(&c.parser)?,
            emit_records: EMIT_RECORDS.min(c.max_in_flight_records).max(1),
        })
    }
}

enum Source {
    Plain(File),
    Gzip(Box<MultiGzDecoder<File>>),
}

impl Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Plain(f) => f.read(buf),
            Source::Gzip(g) => g.read(buf),
        }
    }
}

/// The incomplete line at the end of what was read.
#[derive(Default)]
struct LineState {
    /// Bytes of the current line so far (at most `max_log_size`).
    carry: Vec<u8>,
    /// The line is longer than `max_log_size`: the rest is dropped up to its newline.
    skipping: bool,
    /// Bytes dropped of the current line.
    skipped: u64,
}

/// A multiline record being assembled.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    truncated: bool,
    dropped: u64,
    /// File offset just after the last line in `buf`.
    end: u64,
}

struct Tracked {
    id: u64,
    path: PathBuf,
    /// The inode followed while the file is known at a path.
    inode: Option<(u64, u64)>,
    /// Size and mtime when the fingerprint was last checked against the file.
    checked: Option<Stamp>,
    fp_len: usize,
    fp_hash: u128,
    /// [`quick_hash`] of the same `fp_len` bytes, once they were read in this process.
    fp_quick: Option<u64>,
    gzip: bool,
    source: Option<Source>,
    /// Next byte to read (decompressed bytes for gzip).
    pos: u64,
    /// Where the next record starts: the offset a checkpoint may hold.
    emitted: u64,
    line: LineState,
    pending: Pending,
    /// Bytes read but not yet split (the hand-off filled up in the middle of a read); they
    /// end at `pos`.
    unsplit: Vec<u8>,
    /// May have unread data.
    dirty: bool,
    last_data: Instant,
    seen: bool,
    missing: u32,
    last_used: u64,
    /// Restored from the checkpoint and not found on disk yet in this process.
    restored: bool,
    /// Times it was read again after an acknowledgement was lost downstream.
    rewinds: u32,
    /// Where it was when last read again: up to here, records are offered a second time.
    reread_until: u64,
}

impl Tracked {
    fn has_buffered(&self) -> bool {
        !self.line.carry.is_empty()
            || self.line.skipping
            || !self.pending.buf.is_empty()
            || !self.unsplit.is_empty()
    }
}

/// A file's size and modification time: while they stay the same, its first bytes are
/// taken to be unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

struct Entry {
    start: usize,
    end: usize,
    file: usize,
    truncated: bool,
}

struct StagedFile {
    id: u64,
    attributes: Vec<KeyValue>,
}

/// Records read and not yet handed over.
#[derive(Default)]
struct Staging {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    files: Vec<StagedFile>,
    /// (file id, offset after its last staged record).
    updates: Vec<(u64, u64)>,
    counted: bool,
}

impl Staging {
    fn full(&self, max_records: usize) -> bool {
        self.entries.len() >= max_records || self.arena.len() >= EMIT_BYTES
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
        self.files.clear();
        self.updates.clear();
        self.counted = false;
        if self.arena.capacity() > 4 * EMIT_BYTES {
            self.arena.shrink_to(EMIT_BYTES);
        }
    }

    fn file_index(&mut self, s: &Settings, t_id: u64, path: &Path) -> usize {
        if let Some(i) = self.files.iter().rposition(|f| f.id == t_id) {
            return i;
        }
        let mut attributes = Vec::with_capacity(2);
        let string = |key: &str, v: String| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v)),
            }),
            ..Default::default()
        };
        if s.include_file_name {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            attributes.push(string(FILE_NAME_ATTR, name));
        }
        if s.include_file_path {
            attributes.push(string(FILE_PATH_ATTR, path.to_string_lossy().into_owned()));
        }
        self.files.push(StagedFile {
            id: t_id,
            attributes,
        });
        self.files.len() - 1
    }

    fn update(&mut self, id: u64, offset: u64) {
        match self.updates.iter_mut().rev().find(|(i, _)| *i == id) {
            Some(u) => u.1 = offset,
            None => self.updates.push((id, offset)),
        }
    }
}

/// Where records go as lines complete: the staging area, bound to one file.
struct Out<'a> {
    settings: &'a Settings,
    metrics: &'a Metrics,
    staging: &'a mut Staging,
    id: u64,
    path: &'a Path,
    emitted: &'a mut u64,
}

impl Out<'_> {
    /// Stages one record's text, cut to `max_log_size`.
    fn record(&mut self, text: &[u8], truncated: bool, dropped: u64, end: u64) {
        let max = self.settings.max_log_size;
        let (text, cut) = if text.len() > max {
            (&text[..max], (text.len() - max) as u64)
        } else {
            (text, 0)
        };
        let truncated = truncated || cut > 0;
        if truncated {
            self.metrics.truncated.inc();
            self.metrics.truncated_bytes.inc_by(dropped + cut);
        }
        let file = self.staging.file_index(self.settings, self.id, self.path);
        let start = self.staging.arena.len();
        self.staging.arena.extend_from_slice(text);
        self.staging.entries.push(Entry {
            start,
            end: self.staging.arena.len(),
            file,
            truncated,
        });
        *self.emitted = end;
        self.staging.update(self.id, end);
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Handles one complete line (without its newline) ending at `end` (after the newline).
fn on_line(
    out: &mut Out<'_>,
    pending: &mut Pending,
    line: &[u8],
    truncated: bool,
    dropped: u64,
    start: u64,
    end: u64,
) {
    let line = trim_cr(line);
    match &out.settings.multiline {
        None => {
            if line.is_empty() && !truncated {
                // Nothing to say; the checkpoint may move past it with the next record.
                *out.emitted = end;
                return;
            }
            out.record(line, truncated, dropped, end);
        }
        Some(Multiline::Start(re)) => {
            if re.is_match(line) && !pending.buf.is_empty() {
                emit_pending(out, pending, start);
            }
            append_pending(
                out.settings.max_log_size,
                pending,
                line,
                truncated,
                dropped,
                end,
            );
        }
        Some(Multiline::End(re)) => {
            append_pending(
                out.settings.max_log_size,
                pending,
                line,
                truncated,
                dropped,
                end,
            );
            if re.is_match(line) {
                emit_pending(out, pending, end);
            }
        }
    }
}

fn append_pending(
    max: usize,
    p: &mut Pending,
    line: &[u8],
    truncated: bool,
    dropped: u64,
    end: u64,
) {
    p.end = end;
    p.truncated |= truncated;
    p.dropped += dropped;
    let extra = line.len() + usize::from(!p.buf.is_empty());
    if p.buf.len() + extra > max {
        let room = max.saturating_sub(p.buf.len());
        if room > 0 && !p.buf.is_empty() {
            p.buf.push(b'\n');
        }
        let take = room.saturating_sub(usize::from(!p.buf.is_empty() && room > 0));
        let take = take.min(line.len());
        p.buf.extend_from_slice(&line[..take]);
        p.truncated = true;
        p.dropped += (line.len() - take) as u64;
        return;
    }
    if !p.buf.is_empty() {
        p.buf.push(b'\n');
    }
    p.buf.extend_from_slice(line);
}

fn emit_pending(out: &mut Out<'_>, p: &mut Pending, end: u64) {
    if p.buf.is_empty() {
        *out.emitted = end;
        return;
    }
    let buf = std::mem::take(&mut p.buf);
    out.record(&buf, p.truncated, p.dropped, end);
    p.buf = buf;
    p.buf.clear();
    if p.buf.capacity() > 1 << 20 {
        p.buf.shrink_to(64 * 1024);
    }
    p.truncated = false;
    p.dropped = 0;
}

/// Splits newly read `data` (starting at file offset `off`) into lines, until the hand-off
/// is full; returns how many bytes it used.
fn feed(
    out: &mut Out<'_>,
    ls: &mut LineState,
    pending: &mut Pending,
    data: &[u8],
    off: u64,
) -> usize {
    let max = out.settings.max_log_size;
    let emit_records = out.settings.emit_records;
    let mut rest = data;
    let mut off = off;
    loop {
        if out.staging.full(emit_records) {
            return data.len() - rest.len();
        }
        let nl = memchr::memchr(b'\n', rest);
        if ls.skipping {
            match nl {
                None => {
                    ls.skipped += rest.len() as u64;
                    return data.len();
                }
                Some(k) => {
                    ls.skipped += k as u64;
                    let end = off + k as u64 + 1;
                    let start = end - 1 - ls.carry.len() as u64 - ls.skipped;
                    let carry = std::mem::take(&mut ls.carry);
                    on_line(out, pending, &carry, true, ls.skipped, start, end);
                    ls.carry = carry;
                    ls.carry.clear();
                    ls.skipping = false;
                    ls.skipped = 0;
                    rest = &rest[k + 1..];
                    off = end;
                    continue;
                }
            }
        }
        match nl {
            None => {
                let room = max.saturating_sub(ls.carry.len());
                if rest.len() > room {
                    ls.carry.extend_from_slice(&rest[..room]);
                    ls.skipping = true;
                    ls.skipped = (rest.len() - room) as u64;
                } else {
                    ls.carry.extend_from_slice(rest);
                }
                return data.len();
            }
            Some(k) => {
                let end = off + k as u64 + 1;
                if ls.carry.is_empty() {
                    on_line(out, pending, &rest[..k], false, 0, off, end);
                } else {
                    let start = off - ls.carry.len() as u64;
                    let mut carry = std::mem::take(&mut ls.carry);
                    let room = max.saturating_sub(carry.len());
                    let take = k.min(room);
                    carry.extend_from_slice(&rest[..take]);
                    let cut = (k - take) as u64;
                    on_line(out, pending, &carry, cut > 0, cut, start, end);
                    carry.clear();
                    if carry.capacity() > 1 << 20 {
                        carry.shrink_to(4096);
                    }
                    ls.carry = carry;
                }
                rest = &rest[k + 1..];
                off = end;
            }
        }
    }
}

/// What a step found.
pub(crate) enum StepOutcome {
    /// Records are staged: hand them over.
    Ready,
    /// Nothing to hand over; step again at this time.
    Idle(Instant),
}

/// Everything the receiver knows about its files.
pub(crate) struct Tailer {
    s: Arc<Settings>,
    metrics: Arc<Metrics>,
    checkpoints: Arc<Checkpoints>,
    files: Vec<Tracked>,
    staging: Staging,
    scratch: Vec<u8>,
    next_id: u64,
    polled_once: bool,
    next_poll: Instant,
    cursor: usize,
    open: usize,
    clock: u64,
    /// Runs at the start of every step (tests block it).
    #[cfg(test)]
    before_step: Option<Box<dyn FnMut() + Send>>,
}

impl Tailer {
    /// A tailer that resumes the files in `saved`.
    pub(crate) fn new(
        s: Arc<Settings>,
        metrics: Arc<Metrics>,
        checkpoints: Arc<Checkpoints>,
        saved: Vec<Saved>,
    ) -> Tailer {
        let now = Instant::now();
        let mut files = Vec::with_capacity(saved.len());
        for (i, sv) in saved.into_iter().enumerate() {
            let id = i as u64;
            checkpoints.set_identity(id, sv.fp_len, sv.fp_hash, &sv.path, Some(sv.offset));
            files.push(Tracked {
                id,
                gzip: is_gzip(&sv.path),
                path: sv.path,
                inode: None,
                checked: None,
                fp_len: sv.fp_len,
                fp_hash: sv.fp_hash,
                fp_quick: None,
                source: None,
                pos: sv.offset,
                emitted: sv.offset,
                line: LineState::default(),
                pending: Pending::default(),
                unsplit: Vec::new(),
                dirty: false,
                last_data: now,
                seen: false,
                missing: 0,
                last_used: 0,
                restored: true,
                rewinds: 0,
                reread_until: 0,
            });
        }
        Tailer {
            next_id: files.len() as u64,
            s,
            metrics,
            checkpoints,
            files,
            staging: Staging::default(),
            scratch: Vec::new(),
            polled_once: false,
            next_poll: now,
            cursor: 0,
            open: 0,
            clock: 0,
            #[cfg(test)]
            before_step: None,
        }
    }

    /// The same tailer, running `hook` at the start of every step.
    #[cfg(test)]
    pub(crate) fn with_step_hook(mut self, hook: Option<Box<dyn FnMut() + Send>>) -> Tailer {
        self.before_step = hook;
        self
    }

    /// Polls when due, reads what is there, flushes what waited long enough.
    pub(crate) fn step(&mut self) -> StepOutcome {
        #[cfg(test)]
        if let Some(hook) = self.before_step.as_mut() {
            hook();
        }
        let now = Instant::now();
        self.clock += 1;
        if now >= self.next_poll {
            self.poll();
            self.next_poll = now + self.s.poll_interval;
        }
        self.read_round(now);
        let mut wake = self.next_poll;
        if !self.staging.full(self.s.emit_records) {
            for i in 0..self.files.len() {
                let t = &self.files[i];
                if t.dirty || !t.has_buffered() {
                    continue;
                }
                let due = t.last_data + self.s.force_flush;
                if now >= due {
                    self.flush(i);
                } else {
                    wake = wake.min(due);
                }
            }
        }
        self.metrics.files_open.set(self.open as i64);
        if self.staging.entries.is_empty() {
            // Offsets that moved without a record (skipped blank lines) still count.
            StepOutcome::Idle(wake)
        } else {
            StepOutcome::Ready
        }
    }

    /// The (file, offset) pairs the staged records bring the checkpoint to.
    pub(crate) fn staged_updates(&self) -> Vec<(u64, u64)> {
        self.staging.updates.clone()
    }

    /// Whether records are staged (read and not yet handed over).
    pub(crate) fn has_staged(&self) -> bool {
        !self.staging.entries.is_empty()
    }

    /// Some file is being read again (see [`Tailer::rewind`]) and is not yet back where it
    /// was.
    pub(crate) fn rereading(&self) -> bool {
        self.files
            .iter()
            .any(|t| t.source.is_some() && t.emitted < t.reread_until)
    }

    /// Reads file `id` again from offset `from` (a record boundary: where a hand-off whose
    /// acknowledgement was lost downstream starts), if it is still open, plain (not `.gz`),
    /// was not read again too often, and nothing of it is staged. True if it will be.
    pub(crate) fn rewind(&mut self, id: u64, from: u64) -> bool {
        if self.staging.files.iter().any(|f| f.id == id) {
            return false;
        }
        let Some(t) = self.files.iter_mut().find(|t| t.id == id) else {
            return false;
        };
        if t.gzip || from > t.emitted || t.rewinds >= MAX_REWINDS {
            return false;
        }
        let Some(Source::Plain(file)) = t.source.as_mut() else {
            return false;
        };
        if file.seek(SeekFrom::Start(from)).is_err() {
            return false;
        }
        t.rewinds += 1;
        t.reread_until = t.reread_until.max(t.emitted);
        t.pos = from;
        t.emitted = from;
        t.line = LineState::default();
        t.pending = Pending::default();
        t.unsplit.clear();
        t.dirty = true;
        self.staging.updates.retain(|u| u.0 != id);
        true
    }

    /// The staged records were handed over.
    pub(crate) fn clear_staged(&mut self) {
        self.staging.clear();
    }

    /// Builds the batch of the staged records (again, after a refusal).
    pub(crate) fn build(&mut self) -> Batch {
        let observed = pipeline_core::time::now_unix_nanos();
        let count = !self.staging.counted;
        self.staging.counted = true;
        let st = &self.staging;
        let mut groups: Vec<(Option<String>, Vec<_>)> = Vec::with_capacity(1);
        for e in &st.entries {
            let bytes = &st.arena[e.start..e.end];
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => Cow::Borrowed(t),
                Err(_) => {
                    if count {
                        self.metrics.invalid_utf8.inc();
                    }
                    String::from_utf8_lossy(bytes)
                }
            };
            let file_attrs = &st.files[e.file].attributes;
            let mut attributes = Vec::with_capacity(file_attrs.len() + 2);
            attributes.extend(file_attrs.iter().cloned());
            if e.truncated {
                attributes.push(KeyValue {
                    key: TRUNCATED_ATTR.into(),
                    value: Some(AnyValue {
                        value: Some(Value::BoolValue(true)),
                    }),
                    ..Default::default()
                });
            }
            let built = self.s.builder.build(&text, attributes, observed);
            if built.parse_error && count {
                self.metrics.parse_errors.inc();
            }
            match groups.iter_mut().find(|(s, _)| *s == built.service) {
                Some((_, records)) => records.push(built.record),
                None => {
                    let mut records = Vec::with_capacity(st.entries.len());
                    records.push(built.record);
                    groups.push((built.service, records));
                }
            }
        }
        let resource_logs = groups
            .into_iter()
            .map(|(service, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: service
                        .map(|s| KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(Value::StringValue(s)),
                            }),
                            ..Default::default()
                        })
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        Batch::new(Payload::Logs(resource_logs))
    }

    fn flush(&mut self, i: usize) {
        let Tailer {
            s,
            metrics,
            staging,
            files,
            ..
        } = self;
        let t = &mut files[i];
        let mut out = Out {
            settings: s,
            metrics,
            staging,
            id: t.id,
            path: &t.path,
            emitted: &mut t.emitted,
        };
        let pos = t.pos;
        if !t.line.carry.is_empty() || t.line.skipping {
            let carry = std::mem::take(&mut t.line.carry);
            let start = pos - carry.len() as u64 - t.line.skipped;
            on_line(
                &mut out,
                &mut t.pending,
                &carry,
                t.line.skipping,
                t.line.skipped,
                start,
                pos,
            );
            t.line.skipping = false;
            t.line.skipped = 0;
        }
        if !t.pending.buf.is_empty() {
            emit_pending(&mut out, &mut t.pending, pos);
        }
    }

    fn read_round(&mut self, now: Instant) {
        let n = self.files.len();
        if n == 0 {
            return;
        }
        for k in 0..n {
            if self.staging.full(self.s.emit_records) {
                return;
            }
            let i = (self.cursor + k) % n;
            if !self.files[i].dirty {
                continue;
            }
            self.read_file(i, now);
            if self.staging.full(self.s.emit_records) {
                self.cursor = (i + 1) % n;
                return;
            }
        }
    }

    fn read_file(&mut self, i: usize, now: Instant) {
        if self.files[i].source.is_none() && !self.reopen(i) {
            self.files[i].dirty = false;
            return;
        }
        self.files[i].last_used = self.clock;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.resize(CHUNK, 0);
        while !self.staging.full(self.s.emit_records) {
            let Tailer {
                s,
                metrics,
                staging,
                files,
                ..
            } = self;
            let t = &mut files[i];
            if !t.unsplit.is_empty() {
                let data = std::mem::take(&mut t.unsplit);
                let off = t.pos - data.len() as u64;
                let mut out = Out {
                    settings: s,
                    metrics,
                    staging,
                    id: t.id,
                    path: &t.path,
                    emitted: &mut t.emitted,
                };
                let used = feed(&mut out, &mut t.line, &mut t.pending, &data, off);
                if used < data.len() {
                    t.unsplit = data[used..].to_vec();
                }
                continue;
            }
            let Some(src) = t.source.as_mut() else {
                break;
            };
            // Read about what the hand-off still wants, so little is left over to copy.
            let want = match staging.entries.len() {
                0 => CHUNK,
                staged => {
                    let per_record = staging.arena.len() / staged + 1;
                    let left = s.emit_records.saturating_sub(staged) + 16;
                    (left * per_record).clamp(16 * 1024, CHUNK)
                }
            };
            let n = match src.read(&mut scratch[..want]) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "filelog: read failed; will retry");
                    t.dirty = false;
                    break;
                }
            };
            if n == 0 {
                t.dirty = false;
                break;
            }
            metrics.bytes_read.inc_by(n as u64);
            t.last_data = now;
            let off = t.pos;
            t.pos += n as u64;
            let mut out = Out {
                settings: s,
                metrics,
                staging,
                id: t.id,
                path: &t.path,
                emitted: &mut t.emitted,
            };
            let used = feed(&mut out, &mut t.line, &mut t.pending, &scratch[..n], off);
            if used < n {
                t.unsplit.extend_from_slice(&scratch[used..n]);
            }
        }
        self.scratch = scratch;
    }

    fn set_source(&mut self, i: usize, source: Option<Source>) {
        let had = self.files[i].source.is_some();
        let has = source.is_some();
        self.files[i].source = source;
        match (had, has) {
            (false, true) => self.open += 1,
            (true, false) => self.open = self.open.saturating_sub(1),
            _ => {}
        }
    }

    /// Makes room for one more open file: closes the least recently used idle one.
    fn make_room(&mut self) -> bool {
        if self.open < self.s.max_open {
            return true;
        }
        let victim = self
            .files
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.source.is_some() && t.inode.is_some() && !t.dirty && !t.has_buffered()
            })
            .min_by_key(|(_, t)| t.last_used)
            .map(|(i, _)| i);
        match victim {
            Some(v) => {
                self.set_source(v, None);
                true
            }
            None => false,
        }
    }

    /// Opens a parked file again at its position, if it is still the same file.
    fn reopen(&mut self, i: usize) -> bool {
        if !self.make_room() {
            return false;
        }
        let t = &self.files[i];
        let Some(inode) = t.inode else {
            return false;
        };
        let Ok(file) = File::open(&t.path) else {
            return false;
        };
        match file.metadata() {
            Ok(m) if (m.dev(), m.ino()) == inode => {}
            _ => return false,
        }
        match open_source(file, t.gzip, t.pos) {
            Ok(src) => {
                self.set_source(i, Some(src));
                true
            }
            Err(e) => {
                tracing::warn!(path = %t.path.display(), error = %e, "filelog: cannot reopen");
                false
            }
        }
    }

    fn matched_paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for g in &self.s.include {
            g.walk(&mut paths);
        }
        paths.sort();
        paths.dedup();
        paths.retain(|p| {
            if self.s.exclude.iter().any(|g| g.matches(p)) {
                return false;
            }
            let name = p.to_string_lossy();
            match COMPRESSED.iter().find(|ext| name.ends_with(**ext)) {
                None => true,
                Some(ext) => self.s.include.iter().any(|g| g.names_extension(p, ext)),
            }
        });
        paths
    }

    /// Expands the globs and matches what is there against what is known.
    fn poll(&mut self) {
        let first = !self.polled_once;
        self.polled_once = true;
        let paths = self.matched_paths();
        for t in &mut self.files {
            t.seen = false;
        }
        let by_inode: HashMap<(u64, u64), usize> = self
            .files
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.inode.map(|k| (k, i)))
            .collect();
        let mut unknown = Vec::new();
        for p in paths {
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let key = (meta.dev(), meta.ino());
            match by_inode.get(&key) {
                Some(&i) if !self.files[i].seen => {
                    if self.check_known(i, &p, &meta) {
                        unknown.push((p, meta.len(), true));
                    }
                }
                Some(_) => {}
                None => unknown.push((p, meta.len(), false)),
            }
        }
        for (p, size, fresh) in unknown {
            if size > 0 {
                self.discover(&p, size, first, fresh);
            }
        }
        let mut forget = Vec::new();
        for i in 0..self.files.len() {
            let t = &mut self.files[i];
            if t.seen {
                t.missing = 0;
                continue;
            }
            t.missing = t.missing.saturating_add(1);
            if t.source.is_some() {
                // Renamed away or deleted: read through the open handle to the end.
                if t.missing == 1 {
                    t.dirty = true;
                }
                if t.missing >= CLOSE_AFTER_POLLS && !t.dirty && !t.has_buffered() {
                    t.inode = None;
                    self.set_source(i, None);
                }
            } else if t.missing >= FORGET_AFTER_POLLS && !t.has_buffered() {
                forget.push(i);
            }
        }
        for i in forget.into_iter().rev() {
            let t = self.files.swap_remove(i);
            self.checkpoints.forget(t.id);
        }
    }

    /// A path whose inode is followed; returns true when the content was replaced (the
    /// path must then be treated as a new file).
    fn check_known(&mut self, i: usize, path: &Path, meta: &std::fs::Metadata) -> bool {
        let stamp = Stamp::of(meta);
        let size = stamp.size;
        let t = &self.files[i];
        let replaced = if t.gzip {
            false
        } else if size < t.pos {
            true
        } else if t.checked == Some(stamp) {
            false
        } else {
            self.verify_identity(i, path, stamp)
        };
        let t = &mut self.files[i];
        if replaced {
            // Copy-truncate or a rewrite: this inode now holds new content. The old content
            // is matched by fingerprint (a rotated copy continues at our offset).
            tracing::debug!(path = %path.display(), "filelog: file shrank or was rewritten; reading it as a new file");
            t.inode = None;
            t.checked = None;
            self.set_source(i, None);
            return true;
        }
        t.seen = true;
        if t.path != path {
            t.path = path.to_path_buf();
            self.checkpoints
                .set_identity(t.id, t.fp_len, t.fp_hash, path, None);
        }
        let t = &mut self.files[i];
        if t.gzip {
            t.dirty |= t.source.is_some() && t.pos == 0;
        } else if size > t.pos {
            t.dirty = true;
        }
        false
    }

    /// Reads the first bytes of followed file `i` again (one positional read) and checks
    /// them against its fingerprint, which grows while it is shorter than `fingerprint_size`.
    /// True when they no longer match: the file was truncated or rewritten in place since
    /// it was fingerprinted, whatever its size now.
    fn verify_identity(&mut self, i: usize, path: &Path, stamp: Stamp) -> bool {
        let want = self
            .s
            .fp_size
            .min(usize::try_from(stamp.size).unwrap_or(usize::MAX));
        let t = &mut self.files[i];
        let Some(bytes) = read_prefix(path, t.source.as_ref(), want) else {
            // Unreadable now: checked again at the next poll.
            t.checked = None;
            return false;
        };
        let Some(prefix) = bytes.get(..t.fp_len) else {
            return true;
        };
        let quick = quick_hash(prefix);
        let same = match t.fp_quick {
            Some(q) => q == quick,
            None => fp_hash(prefix) == t.fp_hash,
        };
        if !same {
            return true;
        }
        t.checked = Some(stamp);
        t.fp_quick = Some(quick);
        if bytes.len() > t.fp_len {
            t.fp_len = bytes.len();
            t.fp_hash = fp_hash(&bytes);
            t.fp_quick = Some(quick_hash(&bytes));
            self.checkpoints
                .set_identity(t.id, t.fp_len, t.fp_hash, path, None);
        }
        false
    }

    /// A path with an inode not followed: continue a known file or start a new one.
    fn discover(&mut self, path: &Path, size: u64, first: bool, fresh: bool) {
        if !self.make_room() {
            return;
        }
        let Ok(mut file) = File::open(path) else {
            return;
        };
        let Ok(meta) = file.metadata() else {
            return;
        };
        let mut fp = vec![0u8; self.s.fp_size];
        let mut got = 0;
        while got < fp.len() {
            match file.read(&mut fp[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => return,
            }
        }
        fp.truncate(got);
        if fp.is_empty() {
            return;
        }
        let gzip = is_gzip(path);
        let inode = Some((meta.dev(), meta.ino()));
        let found = if fresh {
            FpMatch::New
        } else {
            self.match_fingerprint(&fp, gzip, size)
        };
        if let FpMatch::Duplicate = found {
            return;
        }
        if let FpMatch::Continue(i) = found {
            let t = &mut self.files[i];
            if let Some(bound) = t.inode
                && t.source.is_some()
                && bound != (meta.dev(), meta.ino())
            {
                tracing::debug!(from = %t.path.display(), to = %path.display(), "filelog: continuing a file at its rotated copy");
            }
            t.inode = inode;
            t.checked = Some(Stamp::of(&meta));
            t.seen = true;
            t.restored = false;
            t.dirty = true;
            t.missing = 0;
            t.path = path.to_path_buf();
            if fp.len() > t.fp_len {
                t.fp_len = fp.len();
                t.fp_hash = fp_hash(&fp);
            }
            t.fp_quick = fp.get(..t.fp_len).map(quick_hash);
            let (id, len, hash, pos) = (t.id, t.fp_len, t.fp_hash, t.pos);
            self.checkpoints.set_identity(id, len, hash, path, None);
            match open_source(file, gzip, pos) {
                Ok(src) => self.set_source(i, Some(src)),
                Err(_) => self.set_source(i, None),
            }
            return;
        }
        // A file rewritten while the receiver was stopped is read from its start whatever
        // `start_at` says: it is no stranger.
        let new = matches!(found, FpMatch::New);
        let start = if new && first && self.s.start_at == StartAt::End && !gzip {
            size
        } else {
            0
        };
        let id = self.next_id;
        self.next_id += 1;
        let (fp_len, fp_hash) = (fp.len(), fp_hash(&fp));
        self.checkpoints
            .set_identity(id, fp_len, fp_hash, path, Some(start));
        let source = match open_source(file, gzip, start) {
            Ok(s) => s,
            Err(_) => return,
        };
        self.files.push(Tracked {
            id,
            path: path.to_path_buf(),
            inode,
            checked: Some(Stamp::of(&meta)),
            fp_len,
            fp_hash,
            fp_quick: Some(quick_hash(&fp)),
            gzip,
            source: None,
            pos: start,
            emitted: start,
            line: LineState::default(),
            pending: Pending::default(),
            unsplit: Vec::new(),
            dirty: true,
            last_data: Instant::now(),
            seen: true,
            missing: 0,
            last_used: self.clock,
            restored: false,
            rewinds: 0,
            reread_until: 0,
        });
        let i = self.files.len() - 1;
        self.set_source(i, Some(source));
    }

    /// Which known file `fp` continues: the one whose fingerprint is the longest prefix of
    /// it. A file already followed (seen in this poll) means the candidate is a copy of it
    /// (copy-truncate before the truncate, or a plain copy): not new, nothing to read. So is
    /// a candidate shorter than what was read of the file, unless that file comes from the
    /// checkpoint and was not found yet: then it was rewritten while the receiver was
    /// stopped, and is read from its start.
    fn match_fingerprint(&self, fp: &[u8], gzip: bool, size: u64) -> FpMatch {
        let mut by_len: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, t) in self.files.iter().enumerate() {
            if t.fp_len <= fp.len() && t.gzip == gzip {
                by_len.entry(t.fp_len).or_default().push(i);
            }
        }
        if by_len.is_empty() {
            return FpMatch::New;
        }
        let mut h = FpHasher::new();
        let mut best = None;
        for (n, b) in fp.iter().enumerate() {
            h.byte(*b);
            if let Some(cands) = by_len.get(&(n + 1)) {
                let v = h.value();
                // Prefer a file not followed elsewhere.
                let mut hits = cands.iter().filter(|&&i| self.files[i].fp_hash == v);
                if let Some(&i) = hits.clone().find(|&&i| !self.files[i].seen).or(hits.next()) {
                    best = Some(i);
                }
            }
        }
        match best {
            None => FpMatch::New,
            Some(i) => {
                let t = &self.files[i];
                if t.seen {
                    FpMatch::Duplicate
                } else if !gzip && t.pos > size {
                    if t.restored {
                        // Shorter than its checkpoint the first time it is seen again: it
                        // was truncated and written again (with the same first bytes) while
                        // the receiver was stopped. All of it is new. The checkpoint entry
                        // stays for a rotated copy of the old content.
                        FpMatch::Rewritten
                    } else {
                        FpMatch::Duplicate
                    }
                } else {
                    FpMatch::Continue(i)
                }
            }
        }
    }
}

enum FpMatch {
    /// Continues this known file at its offset.
    Continue(usize),
    /// A copy of what a known file holds: nothing to read.
    Duplicate,
    /// A checkpointed file rewritten while the receiver was stopped: read from 0.
    Rewritten,
    New,
}

fn is_gzip(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".gz")
}

fn open_source(mut file: File, gzip: bool, pos: u64) -> std::io::Result<Source> {
    if gzip {
        file.seek(SeekFrom::Start(0))?;
        let mut dec = MultiGzDecoder::new(file);
        std::io::copy(&mut (&mut dec).take(pos), &mut std::io::sink())?;
        Ok(Source::Gzip(Box::new(dec)))
    } else {
        file.seek(SeekFrom::Start(pos))?;
        Ok(Source::Plain(file))
    }
}

/// A fast 64-bit hash of a fingerprint's bytes, kept in memory only, for the check at every
/// poll: FNV-1a 128 (the checkpoint's, byte by byte) costs about 3.5 µs per KiB, this about
/// a tenth, which is most of the check's cost with many files being written.
fn quick_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(K).rotate_left(29);
    }
    h
}

/// The first `n` bytes of a file, through its open handle when there is one.
fn read_prefix(path: &Path, source: Option<&Source>, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let got = match source {
        Some(Source::Plain(f)) => read_at_full(f, &mut buf)?,
        _ => {
            let f = File::open(path).ok()?;
            read_at_full(&f, &mut buf)?
        }
    };
    buf.truncate(got);
    Some(buf)
}

fn read_at_full(f: &File, buf: &mut [u8]) -> Option<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return None,
        }
    }
    Some(got)
}
