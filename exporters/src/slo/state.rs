//! Time-bucketed event counts of one SLO: a minute ring over the last 6 hours (the short
//! alert windows) and an hour ring over the SLO's window (the window's figures and the long
//! alert windows). Every increment goes into both, so no compaction runs and a 30-day window
//! holds 360 + 721 buckets (about 26 KB) whatever the traffic.
//!
//! Buckets are addressed by their absolute index (Unix seconds / width): a slot holds the
//! index it counts, so a slot left over from an older lap of the ring is never summed.

use serde::{Deserialize, Serialize};

/// Seconds in a minute bucket.
pub const MINUTE: u64 = 60;
/// Seconds in an hour bucket.
pub const HOUR: u64 = 3600;
/// Minute buckets kept (6 hours).
pub const MINUTE_SLOTS: usize = 360;

/// Events counted in one bucket or window. `bad` may be negative inside one bucket (a ratio
/// SLO subtracts good events from bad); windows clamp it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// All events.
    pub total: i64,
    /// Bad events.
    pub bad: i64,
}

impl Counts {
    /// Adds `other` in place (saturating).
    pub fn add(&mut self, other: Counts) {
        self.total = self.total.saturating_add(other.total);
        self.bad = self.bad.saturating_add(other.bad);
    }

    /// Whether nothing is counted.
    pub fn is_zero(&self) -> bool {
        self.total == 0 && self.bad == 0
    }

    /// Bad events clamped to `0..=total`.
    pub fn bad_clamped(&self) -> i64 {
        self.bad.clamp(0, self.total.max(0))
    }
}

/// The two granularities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// One-minute buckets.
    Minute,
    /// One-hour buckets.
    Hour,
}

impl Tier {
    /// Seconds per bucket.
    pub fn width(self) -> u64 {
        match self {
            Tier::Minute => MINUTE,
            Tier::Hour => HOUR,
        }
    }

    /// The short name used in store keys.
    pub fn key(self) -> &'static str {
        match self {
            Tier::Minute => "m",
            Tier::Hour => "h",
        }
    }
}

/// A ring of buckets addressed by absolute index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ring {
    /// The index each slot holds (`-1`: empty).
    index: Vec<i64>,
    counts: Vec<Counts>,
    /// The newest index added; buckets a whole ring older are out of reach.
    #[serde(default = "no_index")]
    newest: i64,
}

fn no_index() -> i64 {
    -1
}

impl Ring {
    /// `slots` empty buckets.
    pub fn new(slots: usize) -> Ring {
        Ring {
            index: vec![-1; slots.max(1)],
            counts: vec![Counts::default(); slots.max(1)],
            newest: -1,
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the ring has no slots (never: at least one).
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn slot(&self, idx: i64) -> usize {
        idx.rem_euclid(self.index.len() as i64) as usize
    }

    /// Adds into bucket `idx`. A bucket older than the one its slot holds is past the ring's
    /// reach: nothing is added and `false` returned.
    pub fn add(&mut self, idx: i64, c: Counts) -> bool {
        if idx <= self.newest - self.index.len() as i64 {
            return false;
        }
        self.newest = self.newest.max(idx);
        let s = self.slot(idx);
        if self.index[s] == idx {
            self.counts[s].add(c);
        } else if self.index[s] < idx {
            self.index[s] = idx;
            self.counts[s] = c;
        } else {
            return false;
        }
        true
    }

    /// Sets bucket `idx` (a store's read-back).
    pub fn set(&mut self, idx: i64, c: Counts) {
        self.newest = self.newest.max(idx);
        let s = self.slot(idx);
        if self.index[s] <= idx {
            self.index[s] = idx;
            self.counts[s] = c;
        }
    }

    /// The counts of bucket `idx` (zero if the slot holds another).
    pub fn get(&self, idx: i64) -> Counts {
        let s = self.slot(idx);
        if self.index[s] == idx {
            self.counts[s]
        } else {
            Counts::default()
        }
    }

    /// The sum of buckets `first..=last` (at most the ring's length of them).
    pub fn sum(&self, first: i64, last: i64) -> Counts {
        let mut total = Counts::default();
        self.for_each(first, last, |c| total.add(c));
        total
    }

    /// Calls `f` with the counts of buckets `first..=last` in order (at most the ring's
    /// length of them, the newest), zero for buckets the ring does not hold. Walks the slots
    /// without a division per bucket: this is the evaluation's inner loop.
    pub fn for_each(&self, first: i64, last: i64, mut f: impl FnMut(Counts)) {
        let len = self.index.len();
        let first = first.max(last - len as i64 + 1);
        if first > last {
            return;
        }
        let mut slot = self.slot(first);
        for idx in first..=last {
            f(if self.index[slot] == idx {
                self.counts[slot]
            } else {
                Counts::default()
            });
            slot += 1;
            if slot == len {
                slot = 0;
            }
        }
    }

    /// Every non-empty bucket as (index, counts).
    pub fn entries(&self) -> impl Iterator<Item = (i64, Counts)> + '_ {
        self.index
            .iter()
            .zip(&self.counts)
            .filter(|(i, c)| **i >= 0 && !c.is_zero())
            .map(|(i, c)| (*i, *c))
    }
}

/// The buckets of one SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloBuckets {
    /// One-minute buckets over the last 6 hours.
    pub minutes: Ring,
    /// One-hour buckets over the window (plus the hour in progress).
    pub hours: Ring,
}

impl SloBuckets {
    /// Empty buckets for a window of `window_secs`.
    pub fn new(window_secs: u64) -> SloBuckets {
        SloBuckets {
            minutes: Ring::new(MINUTE_SLOTS),
            hours: Ring::new(hour_slots(window_secs)),
        }
    }

    /// The ring of `tier`.
    pub fn ring_mut(&mut self, tier: Tier) -> &mut Ring {
        match tier {
            Tier::Minute => &mut self.minutes,
            Tier::Hour => &mut self.hours,
        }
    }

    /// Adds events that happened at `t` (Unix seconds). Returns whether the hour ring (the
    /// window) took them; an event older than the window is not counted.
    pub fn add(&mut self, t: u64, c: Counts) -> bool {
        self.minutes.add((t / MINUTE) as i64, c);
        self.hours.add((t / HOUR) as i64, c)
    }

    /// Events over the `window_secs` ending at `now` (Unix seconds), the bucket in progress
    /// included: from minute buckets for windows up to 6 hours in whole minutes, else from
    /// hour buckets (the oldest edge moves by the hour).
    pub fn window(&self, now: u64, window_secs: u64) -> Counts {
        if window_secs <= MINUTE * MINUTE_SLOTS as u64 && window_secs.is_multiple_of(MINUTE) {
            let last = (now / MINUTE) as i64;
            self.minutes
                .sum(last - (window_secs / MINUTE) as i64 + 1, last)
        } else {
            let last = (now / HOUR) as i64;
            let n = window_secs.div_ceil(HOUR) as i64;
            self.hours.sum(last - n + 1, last)
        }
    }

    /// Carries the buckets over into a ring sized for another window (after a config
    /// change between a snapshot and a restart).
    pub fn resized(&self, window_secs: u64) -> SloBuckets {
        if self.hours.len() == hour_slots(window_secs) {
            return self.clone();
        }
        let mut out = SloBuckets::new(window_secs);
        out.minutes = self.minutes.clone();
        let mut entries: Vec<_> = self.hours.entries().collect();
        entries.sort_by_key(|(i, _)| *i);
        for (i, c) in entries {
            out.hours.add(i, c);
        }
        out
    }
}

/// Hour slots for a window: its hours plus the one in progress.
pub fn hour_slots(window_secs: u64) -> usize {
    window_secs.div_ceil(HOUR) as usize + 1
}
