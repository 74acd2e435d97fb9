//! `store: memory`: the buckets live in this process; with `snapshot_path` they (and the
//! series tracker, so cumulative series continue where they were) are written to a file every
//! `snapshot_interval` and at shutdown, atomically (a temporary file in the same directory,
//! fsync, rename), and read back at start. A snapshot that cannot be read is reported and set
//! aside as `<path>.corrupt`, never silently replaced by an empty one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::slo::config::SloDefinition;
use crate::slo::increments::SeriesTracker;
use crate::slo::state::SloBuckets;

/// Format version of the snapshot file.
const VERSION: u32 = 1;

/// What a snapshot holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    version: u32,
    /// The data clock (Unix nanoseconds).
    pub(crate) clock: u64,
    /// Buckets by SLO name.
    pub(crate) slos: HashMap<String, SloBuckets>,
    /// Cumulative series' last values.
    pub(crate) tracker: SeriesTracker,
}

impl Snapshot {
    /// A snapshot of `buckets` (in `defs` order).
    pub(crate) fn new(
        defs: &[SloDefinition],
        buckets: &[SloBuckets],
        tracker: &SeriesTracker,
        clock: u64,
    ) -> Snapshot {
        Snapshot {
            version: VERSION,
            clock,
            slos: defs
                .iter()
                .zip(buckets)
                .map(|(d, b)| (d.name.clone(), b.clone()))
                .collect(),
            tracker: tracker.clone(),
        }
    }

    /// The buckets for `defs`: restored by name (resized if the window changed), new ones
    /// empty. SLOs no longer configured are left out.
    pub(crate) fn buckets_for(&mut self, defs: &[SloDefinition]) -> Vec<SloBuckets> {
        defs.iter()
            .map(|d| {
                let w = d.window.get().as_secs();
                match self.slos.remove(&d.name) {
                    Some(b) => b.resized(w),
                    None => SloBuckets::new(w),
                }
            })
            .collect()
    }
}

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a snapshot of this version.
    #[error("{path} is not a readable SLO snapshot ({message}); it was moved to {moved}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
        /// Where it was moved.
        moved: String,
    },
}

fn io_error(path: &Path, source: std::io::Error) -> SnapshotError {
    SnapshotError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the snapshot at `path`: `None` if there is none yet.
pub(crate) fn load(path: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let parsed: Result<Snapshot, String> = serde_json::from_slice::<Snapshot>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            if s.version == VERSION {
                Ok(s)
            } else {
                Err(format!("version {} (expected {VERSION})", s.version))
            }
        });
    match parsed {
        Ok(s) => Ok(Some(s)),
        Err(message) => {
            let mut moved = path.as_os_str().to_owned();
            moved.push(".corrupt");
            let moved = PathBuf::from(moved);
            std::fs::rename(path, &moved).map_err(|e| io_error(path, e))?;
            Err(SnapshotError::Corrupt {
                path: path.display().to_string(),
                message,
                moved: moved.display().to_string(),
            })
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of
/// the directory. A crash leaves the old snapshot or the new one, never half of one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(path, e)
    })
}
