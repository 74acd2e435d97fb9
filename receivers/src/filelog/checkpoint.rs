//! Checkpoints: which files were read how far, advanced only once the data is safe
//! downstream, persisted atomically.
//!
//! Every hand-off to the pipeline ("emit") carries an [`AckToken`] and the offsets it brings
//! each file to. An emit counts once `consume` returned `Ok` *and* its token was resolved
//! as delivered, or as dropped while running (whoever dropped it counted the drop; reading
//! it again would only be refused again). Each file's offset advances over its counted
//! emits, in order, so a checkpoint never passes data still in flight.
//!
//! An emit whose token was dropped *unresolved* (a bug downstream: nothing says where the
//! data went), or dropped after the receiver began shutting down (a drain deadline passed),
//! is held: the checkpoint of each of its files stays before it. Its records no longer
//! count against `max_in_flight_records`, so reading goes on. While running, an unresolved
//! drop also asks the reader ([`Checkpoints::take_rewinds`]) to read each of its files again
//! from where the emit starts in it; when the reader does ([`Checkpoints::rewound`]), the
//! offsets past that point go from every emit in flight, so the file's checkpoint moves
//! again only over the records offered anew (duplicates of what followed, never a loss).
//! A file the reader cannot read again (closed, `.gz`, or read again too often) stays held
//! until a restart, which reads from there. Emits finished behind a held or waiting one are
//! merged into one per gap, and a held emit's files are taken out of every emit after it,
//! so the list stays as long as what is in flight plus one held emit per file.
//!
//! The file is `<storage>/checkpoints.json`, rewritten as a temp file and renamed over the
//! old one, then fsynced (file and directory). No file work happens where a change is made:
//! the acknowledgement callback (run by whichever task releases the last token, usually an
//! exporter's sender on an async worker) and the reader only update the state in memory and
//! wake the writer, a job on the runtime's blocking pool that writes the newest state and
//! goes on until nothing changed since (so acknowledgements that arrive while it writes are
//! coalesced into one write). The runtime waits for a job that is running when it shuts
//! down, and whoever drops the last reference to the state (a job cancelled before it ran,
//! or the receiver at exit) writes what is left, so late acknowledgements (the pipeline
//! draining after the receiver stopped) are on disk when the process exits. A file is identified by the length and a 128-bit FNV-1a hash of its first
//! bytes (its fingerprint), so the checkpoint stays small however large `fingerprint_size`
//! is.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use pipeline_core::{AckOutcome, AckToken};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::Notify;

const FILE_NAME: &str = "checkpoints.json";
const VERSION: u32 = 1;

/// 128-bit FNV-1a, fed incrementally so the hash of every prefix is at hand.
#[derive(Clone, Copy)]
pub(crate) struct FpHasher(u128);

impl FpHasher {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    pub(crate) fn new() -> FpHasher {
        FpHasher(Self::OFFSET)
    }

    pub(crate) fn byte(&mut self, b: u8) {
        self.0 ^= u128::from(b);
        self.0 = self.0.wrapping_mul(Self::PRIME);
    }

    pub(crate) fn value(self) -> u128 {
        self.0
    }
}

/// The fingerprint hash of `bytes`.
pub(crate) fn fp_hash(bytes: &[u8]) -> u128 {
    let mut h = FpHasher::new();
    for b in bytes {
        h.byte(*b);
    }
    h.value()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    fingerprint_len: usize,
    fingerprint: String,
    offset: u64,
    path: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    version: u32,
    files: Vec<FileEntry>,
}

/// One file as the checkpoint remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) fp_len: usize,
    pub(crate) fp_hash: u128,
    pub(crate) offset: u64,
    pub(crate) path: PathBuf,
}

struct Identity {
    fp_len: usize,
    fp_hash: u128,
    path: PathBuf,
    committed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    Waiting,
    Done,
    /// Its data may not have been delivered (its token was dropped unresolved, or it
    /// failed while shutting down): its files' checkpoints stay before it until a restart.
    Held,
}

struct Emit {
    seq: u64,
    /// The acknowledgement token it shares with the other emits of its window.
    window: u64,
    updates: Vec<(u64, u64)>,
    confirmed: bool,
    ack: Ack,
    /// Records it carries, until their memory is released downstream.
    records: usize,
}

impl Emit {
    /// Accepted by `consume` and resolved (or refused for good): its offsets may be applied.
    fn finished(&self) -> bool {
        self.confirmed && self.ack == Ack::Done
    }

    /// Takes in the offsets of a later finished emit (the later offset of a file wins).
    fn merge(&mut self, updates: Vec<(u64, u64)>) {
        for (id, offset) in updates {
            match self.updates.iter_mut().find(|u| u.0 == id) {
                Some(u) => u.1 = offset,
                None => self.updates.push((id, offset)),
            }
        }
    }

    /// Its records are no longer held anywhere: count them out of the unreleased total.
    fn release(&mut self, unreleased: &mut usize) {
        *unreleased -= std::mem::take(&mut self.records);
    }
}

#[derive(Default)]
struct State {
    identities: HashMap<u64, Identity>,
    inflight: VecDeque<Emit>,
    next_seq: u64,
    dirty: bool,
    closing: bool,
    /// Records handed over whose tokens were not yet released.
    unreleased: usize,
    /// A writer job is scheduled or running: it writes whatever is dirty before it ends.
    writing: bool,
    /// Files to read again from an offset (the start of an emit whose token was dropped
    /// unresolved), for the reader to take.
    rewinds: HashMap<u64, u64>,
}

impl State {
    /// Applies what is finished, file by file: a file's offset moves over its emits in
    /// order up to the first one not yet finished (waiting for `consume` or its token), and
    /// never past a held one (until a restart, which reads from there again). Finished
    /// emits left behind an unfinished one are merged, and a held emit's files are taken
    /// out of every emit after it, so the list stays as long as what is in flight plus
    /// one held emit per file.
    fn advance(&mut self) {
        // The common case: everything at the front is finished.
        while self.inflight.front().is_some_and(Emit::finished) {
            if let Some(emit) = self.inflight.pop_front() {
                self.apply(&emit.updates);
            }
        }
        if self.inflight.is_empty() {
            return;
        }
        // Files with an earlier emit not yet finished, and files with an earlier held emit.
        let mut blocked: HashSet<u64> = HashSet::new();
        let mut frozen: HashSet<u64> = HashSet::new();
        let mut kept: VecDeque<Emit> = VecDeque::with_capacity(self.inflight.len());
        for mut emit in std::mem::take(&mut self.inflight) {
            let finished = emit.finished();
            let mut applied = Vec::new();
            let identities = &self.identities;
            emit.updates.retain(|&(id, offset)| {
                // A file forgotten (gone for good), or held before: nothing to apply.
                if frozen.contains(&id) || !identities.contains_key(&id) {
                    return false;
                }
                if finished && !blocked.contains(&id) {
                    applied.push((id, offset));
                    return false;
                }
                true
            });
            self.apply(&applied);
            match emit.ack {
                Ack::Held => frozen.extend(emit.updates.iter().map(|u| u.0)),
                _ if !finished => blocked.extend(emit.updates.iter().map(|u| u.0)),
                _ => {}
            }
            // Kept while `confirm`, `settle`, `discard` or the token may still look for it,
            // or while it holds offsets that cannot be applied yet.
            let settled = finished || emit.ack == Ack::Held;
            if settled && emit.updates.is_empty() {
                continue;
            }
            match kept.back_mut() {
                Some(last) if finished && last.finished() => last.merge(emit.updates),
                _ => kept.push_back(emit),
            }
        }
        self.inflight = kept;
    }

    /// Asks the reader to read the files of window `window`'s unfinished emits again, each
    /// from where the emit starts in it: the end of the file's emit before it, or its
    /// checkpoint.
    fn request_rewinds(&mut self, window: u64) {
        for (i, e) in self.inflight.iter().enumerate() {
            if e.window != window || e.finished() {
                continue;
            }
            for &(id, _) in &e.updates {
                let start = self
                    .inflight
                    .iter()
                    .take(i)
                    .rev()
                    .find_map(|before| before.updates.iter().find(|u| u.0 == id))
                    .map(|u| u.1)
                    .or_else(|| self.identities.get(&id).map(|ident| ident.committed));
                if let Some(start) = start {
                    let from = self.rewinds.entry(id).or_insert(start);
                    *from = (*from).min(start);
                }
            }
        }
    }

    /// Moves the files' committed offsets.
    fn apply(&mut self, updates: &[(u64, u64)]) {
        for &(id, offset) in updates {
            if let Some(ident) = self.identities.get_mut(&id)
                && ident.committed != offset
            {
                ident.committed = offset;
                self.dirty = true;
            }
        }
    }
}

/// Checkpoint state shared by the reader, the ack callbacks and the writer.
pub(crate) struct Checkpoints {
    dir: PathBuf,
    state: Mutex<State>,
    released: Notify,
    /// Held while the file is written: one writer at a time.
    write_lock: Mutex<()>,
    /// The runtime whose blocking pool runs the writer (set when the receiver starts).
    runtime: OnceLock<Handle>,
    errors: prometheus::IntCounterVec,
    id_label: String,
    /// Runs before each write (tests block it to show writes stall no async task).
    #[cfg(test)]
    pub(crate) before_write: Mutex<Option<Box<dyn FnMut() + Send>>>,
}

/// Why the checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a checkpoint this version understands.
    #[error("{path}: not a valid checkpoint file: {why}")]
    Corrupt {
        /// The file.
        path: String,
        /// Details.
        why: String,
    },
}

impl Checkpoints {
    /// Checkpoints kept in `dir`; `errors` counts load and write failures by `op`.
    pub(crate) fn new(
        dir: PathBuf,
        errors: prometheus::IntCounterVec,
        id_label: String,
    ) -> Checkpoints {
        Checkpoints {
            dir,
            state: Mutex::new(State::default()),
            released: Notify::new(),
            write_lock: Mutex::new(()),
            runtime: OnceLock::new(),
            errors,
            id_label,
            #[cfg(test)]
            before_write: Mutex::new(None),
        }
    }

    /// Writes from now on run on `runtime`'s blocking pool.
    pub(crate) fn attach(&self, runtime: Handle) {
        let _ = self.runtime.set(runtime);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checkpoint file's path.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn count_error(&self, op: &str) {
        self.errors.with_label_values(&[&self.id_label, op]).inc();
    }

    /// Reads the saved files. A missing file is an empty checkpoint; an unreadable or
    /// corrupt one is reported, counted, moved aside (`.corrupt`) and treated as empty.
    pub(crate) fn load(&self) -> Vec<Saved> {
        match read_file(&self.path()) {
            Ok(saved) => saved,
            Err(e) => {
                self.count_error("load");
                let aside = self.dir.join(format!("{FILE_NAME}.corrupt"));
                let _ = std::fs::rename(self.path(), &aside);
                tracing::warn!(
                    receiver = %self.id_label, error = %e, moved_to = %aside.display(),
                    "filelog: ignoring the checkpoint file; files are read as if new"
                );
                Vec::new()
            }
        }
    }

    /// Records (or updates) what identifies file `id`. `committed` sets its checkpoint
    /// offset (for a file just found).
    pub(crate) fn set_identity(
        self: &Arc<Self>,
        id: u64,
        fp_len: usize,
        fp_hash: u128,
        path: &Path,
        committed: Option<u64>,
    ) {
        let mut s = self.lock();
        let ident = s.identities.entry(id).or_insert_with(|| Identity {
            fp_len,
            fp_hash,
            path: path.to_path_buf(),
            committed: committed.unwrap_or(0),
        });
        ident.fp_len = fp_len;
        ident.fp_hash = fp_hash;
        if ident.path != path {
            ident.path = path.to_path_buf();
        }
        if let Some(c) = committed {
            ident.committed = c;
        }
        s.dirty = true;
        self.schedule_write(s);
    }

    /// Forgets file `id` (gone for good).
    pub(crate) fn forget(self: &Arc<Self>, id: u64) {
        let mut s = self.lock();
        if s.identities.remove(&id).is_some() {
            s.dirty = true;
            self.schedule_write(s);
        }
    }

    /// A token for a window of emits: it is released once every emit of the window was
    /// (one callback and one checkpoint write for all of them). The reader holds a clone
    /// while it may add emits, and drops it before it waits.
    pub(crate) fn window(self: &Arc<Self>) -> (u64, AckToken) {
        let mut s = self.lock();
        let window = s.next_seq;
        s.next_seq += 1;
        drop(s);
        let me = Arc::clone(self);
        (
            window,
            AckToken::with_outcome(move |outcome| me.acked(window, outcome)),
        )
    }

    /// Registers an emit of `window` that brings each `(file id, offset)` to that offset,
    /// before it is handed to the pipeline with the window's token.
    pub(crate) fn register(&self, window: u64, updates: Vec<(u64, u64)>, records: usize) -> u64 {
        let mut s = self.lock();
        let seq = s.next_seq;
        s.next_seq += 1;
        s.unreleased += records;
        s.inflight.push_back(Emit {
            seq,
            window,
            updates,
            confirmed: false,
            ack: Ack::Waiting,
            records,
        });
        seq
    }

    /// Whether `next` more records fit under `limit` held downstream now.
    pub(crate) fn has_room(&self, limit: usize, next: usize) -> bool {
        let held = self.unreleased();
        held == 0 || held + next <= limit
    }

    /// `consume` returned `Ok` for emit `seq`.
    pub(crate) fn confirm(self: &Arc<Self>, seq: u64) {
        let mut s = self.lock();
        if let Some(e) = s.inflight.iter_mut().find(|e| e.seq == seq) {
            e.confirmed = true;
        }
        self.after_change(s);
    }

    /// `consume` failed for emit `seq`: the data will be handed over again.
    pub(crate) fn discard(self: &Arc<Self>, seq: u64) {
        let mut s = self.lock();
        if let Some(i) = s.inflight.iter().position(|e| e.seq == seq)
            && let Some(mut e) = s.inflight.remove(i)
        {
            e.release(&mut s.unreleased);
        }
        self.released.notify_waiters();
        self.after_change(s);
    }

    /// The files to read again, each from an offset (taken: the reader answers with
    /// [`Checkpoints::rewound`] for those it could).
    pub(crate) fn take_rewinds(&self) -> Vec<(u64, u64)> {
        let mut rewinds: Vec<(u64, u64)> = self.lock().rewinds.drain().collect();
        rewinds.sort_unstable();
        rewinds
    }

    /// The reader reads file `id` again from `from`: what the emits in flight bring it past
    /// `from` will come again in later emits, so their offsets for it go (a held emit with
    /// nothing else to hold goes with them).
    pub(crate) fn rewound(self: &Arc<Self>, id: u64, from: u64) {
        let mut s = self.lock();
        for e in s.inflight.iter_mut() {
            e.updates.retain(|&(f, offset)| f != id || offset <= from);
        }
        self.after_change(s);
    }

    /// Records handed over and still held downstream.
    pub(crate) fn unreleased(&self) -> usize {
        self.lock().unreleased
    }

    /// Waits until `next` more records fit under `limit` held downstream.
    pub(crate) async fn wait_for_room(&self, limit: usize, next: usize) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.has_room(limit, next) {
                return;
            }
            released.await;
        }
    }

    /// Emit `seq`'s data was permanently refused: nothing more will come of it.
    pub(crate) fn settle(self: &Arc<Self>, seq: u64) {
        let mut s = self.lock();
        let st = &mut *s;
        if let Some(e) = st.inflight.iter_mut().find(|e| e.seq == seq) {
            e.confirmed = true;
            e.ack = Ack::Done;
            e.release(&mut st.unreleased);
        }
        self.after_change(s);
    }

    /// The callback of window `window`'s token: runs in whatever task released it, so it
    /// only updates the state and wakes the writer. Delivered, or dropped while running (the
    /// dropper decided and counted the data's fate; reading it again would only repeat
    /// that), lets the checkpoint pass the window's emits. Dropped unresolved (a bug
    /// downstream: its fate is unknown), or dropped while shutting down (a drain deadline
    /// passed), holds their files' checkpoints before them, so the data is read again after
    /// a restart: a duplicate rather than a loss. Either way their records no longer count
    /// against `max_in_flight_records`, so reading goes on.
    fn acked(self: &Arc<Self>, window: u64, outcome: AckOutcome) {
        let mut s = self.lock();
        let hold = match outcome {
            AckOutcome::Delivered => false,
            AckOutcome::Dropped => s.closing,
            AckOutcome::Unresolved => true,
        };
        let st = &mut *s;
        if outcome == AckOutcome::Unresolved && !st.closing {
            st.request_rewinds(window);
        }
        // A refused emit (`settle`) is finished already: its fate was decided then.
        for e in st
            .inflight
            .iter_mut()
            .filter(|e| e.window == window && !e.finished())
        {
            e.ack = if hold { Ack::Held } else { Ack::Done };
            e.release(&mut st.unreleased);
        }
        self.released.notify_waiters();
        match outcome {
            AckOutcome::Unresolved => tracing::warn!(
                receiver = %self.id_label,
                "filelog: an acknowledgement was dropped unresolved downstream; that data is read again (now if its file is still open and was not read again too often, else after a restart), and the checkpoint stays before it until then"
            ),
            AckOutcome::Dropped if hold => tracing::warn!(
                receiver = %self.id_label,
                "filelog: data was not delivered before shutdown; it will be read again after a restart"
            ),
            _ => {}
        }
        self.after_change(s);
    }

    fn after_change(self: &Arc<Self>, mut s: std::sync::MutexGuard<'_, State>) {
        s.advance();
        if s.dirty {
            self.schedule_write(s);
        }
    }

    /// Makes sure a writer job will write the current state: starts one on the blocking pool
    /// unless one is scheduled or running (it checks for changes before it ends).
    fn schedule_write(self: &Arc<Self>, mut s: std::sync::MutexGuard<'_, State>) {
        if std::mem::replace(&mut s.writing, true) {
            return;
        }
        drop(s);
        let me = Arc::clone(self);
        match self.runtime.get() {
            Some(runtime) => {
                runtime.spawn_blocking(move || me.write_pending());
            }
            // Not started yet (no tokens exist then): nothing is in flight to stall.
            None => me.write_pending(),
        }
    }

    /// The writer: writes (temp file + rename, then fsync of the file and the directory)
    /// until the state on disk is the newest.
    fn write_pending(&self) {
        let _write = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let file = {
                let mut s = self.lock();
                if !s.dirty {
                    s.writing = false;
                    return;
                }
                s.dirty = false;
                snapshot(&s)
            };
            self.run_write_hook();
            if let Err(e) = write_file(&self.dir, &file) {
                self.count_error("write");
                tracing::error!(receiver = %self.id_label, error = %e, "filelog: cannot write the checkpoint");
                // Tried again at the next change.
                let mut s = self.lock();
                s.dirty = true;
                s.writing = false;
                return;
            }
        }
    }

    #[cfg(test)]
    fn run_write_hook(&self) {
        if let Some(hook) = self
            .before_write
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            hook();
        }
    }

    #[cfg(not(test))]
    fn run_write_hook(&self) {}

    /// Emits remembered (in flight, held, or finished behind one of those).
    #[cfg(test)]
    pub(crate) fn emits_remembered(&self) -> usize {
        self.lock().inflight.len()
    }

    /// The offset checkpointed for file `id`.
    #[cfg(test)]
    pub(crate) fn committed(&self, id: u64) -> Option<u64> {
        self.lock().identities.get(&id).map(|i| i.committed)
    }

    /// No writer job is scheduled or running.
    #[cfg(test)]
    pub(crate) fn writer_idle(&self) -> bool {
        !self.lock().writing
    }

    /// From now on a failed acknowledgement holds the checkpoint. Writes what is pending
    /// before it returns (a blocking call: run it on the blocking pool); acknowledgements
    /// that come later (the pipeline draining) are written by the writer as they come.
    pub(crate) fn close(&self) {
        {
            let mut s = self.lock();
            s.closing = true;
            s.advance();
            // A writer job that is running finishes first (this waits for its lock); one
            // still queued finds nothing left to write.
            s.writing = true;
        }
        self.write_pending();
    }
}

impl Drop for Checkpoints {
    /// The last holder goes (the receiver is torn down, or a writer job the runtime cancels
    /// while shutting down): what changed since the last write is written now, so a clean
    /// exit never leaves the checkpoint behind what was delivered.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if state.dirty {
            state.writing = true;
            self.write_pending();
        }
    }
}

fn snapshot(s: &State) -> CheckpointFile {
    let mut files: Vec<FileEntry> = s
        .identities
        .values()
        .map(|i| FileEntry {
            fingerprint_len: i.fp_len,
            fingerprint: format!("{:032x}", i.fp_hash),
            offset: i.committed,
            path: i.path.to_string_lossy().into_owned(),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    CheckpointFile {
        version: VERSION,
        files,
    }
}

fn read_file(path: &Path) -> Result<Vec<Saved>, CheckpointError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let corrupt = |why: String| CheckpointError::Corrupt {
        path: path.display().to_string(),
        why,
    };
    let file: CheckpointFile = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.version != VERSION {
        return Err(corrupt(format!("unknown version {}", file.version)));
    }
    file.files
        .into_iter()
        .map(|f| {
            let fp_hash = u128::from_str_radix(&f.fingerprint, 16)
                .map_err(|_| corrupt(format!("bad fingerprint {:?}", f.fingerprint)))?;
            if f.fingerprint_len == 0 {
                return Err(corrupt("empty fingerprint".into()));
            }
            Ok(Saved {
                fp_len: f.fingerprint_len,
                fp_hash,
                offset: f.offset,
                path: PathBuf::from(f.path),
            })
        })
        .collect()
}

fn write_file(dir: &Path, file: &CheckpointFile) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CheckpointError::Io { path, source }
    };
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let target = dir.join(FILE_NAME);
    let bytes = serde_json::to_vec(file).map_err(|e| CheckpointError::Corrupt {
        path: tmp.display().to_string(),
        why: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&bytes).map_err(io(&tmp))?;
    // Renamed first, so a restart after kill -9 sees it as early as possible; the fsyncs,
    // which only matter if the machine itself goes down, follow.
    std::fs::rename(&tmp, &target).map_err(io(&target))?;
    f.sync_all().map_err(io(&target))?;
    drop(f);
    // The rename is durable once the directory is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
