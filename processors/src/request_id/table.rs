//! The correlation table: request ID -> (trace ID, span ID), and trace ID -> request ID.
//!
//! Sized for a million live requests in little memory: entries live in fixed chunks of a
//! slab (no reallocation copies as it grows), request IDs up to 38 bytes (UUIDs, 32-hex
//! IDs) are stored inline, and both indexes hold only a hash tag and a slot number per key
//! (see `index.rs`): keys are compared against the entries themselves, so no key is stored
//! twice.
//!
//! Eviction is least-recently-used with the second-chance approximation CLOCK uses: a
//! lookup only stamps its entry (time, "used" bit) instead of moving it to the head of the
//! recency list, because moving it writes to its two list neighbours, two more cache misses
//! that measured 230 ns per lookup in random order on the benchmark machine (more than the
//! lookup itself). The list is ordered by when an entry was last put at its head; an entry
//! reaching the tail that was used since then goes back to the head with its bit cleared,
//! one that was not is the least recently used. The tail is therefore also the first entry
//! to expire (`ttl` counts from last use). Each step is bounded: eviction gives at most
//! `SECOND_CHANCES` used entries another round before it evicts, and sweeps do a bounded
//! amount of work per call.

use std::hash::{BuildHasher, RandomState};

use tokio::time::Instant;

use super::index::SlotIndex;

const NIL: u32 = u32::MAX;
/// Entries per slab chunk.
const CHUNK: usize = 4096;
/// Longest request ID stored inline.
const INLINE: usize = 38;
/// Used entries an eviction sends back to the head before it evicts the tail anyway.
const SECOND_CHANCES: usize = 64;

/// How much an entry's span says about the request: a later span only replaces the span of
/// an entry of the same trace when it ranks higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Rank {
    /// Learned from a log record's trace context (whatever span was active).
    Log = 0,
    /// A span that is neither the root nor a SERVER span.
    Span = 1,
    /// A root span that is not a SERVER span.
    Root = 2,
    /// The SERVER span: the request itself.
    Server = 3,
}

/// A request's place in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    /// The trace.
    pub(crate) trace_id: [u8; 16],
    /// The span that stands for the request.
    pub(crate) span_id: [u8; 8],
    /// The span's W3C trace flags (sampled).
    pub(crate) flags: u8,
}

/// What `learn` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A request ID not known before.
    New,
    /// A known request ID got another trace or a better span.
    Changed,
    /// Nothing new.
    Same,
}

/// Entries removed since the counts were last taken.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removals {
    /// Least recently used entries evicted at `max_entries`.
    pub(crate) evicted: u64,
    /// Entries unused for `ttl`.
    pub(crate) expired: u64,
}

enum Rid {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Rid {
    fn new(s: &str) -> Rid {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Rid::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Rid::Heap(s.into())
        }
    }

    const EMPTY: Rid = Rid::Inline {
        len: 0,
        bytes: [0; INLINE],
    };

    fn as_bytes(&self) -> &[u8] {
        match self {
            Rid::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Rid::Heap(s) => s.as_bytes(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Rid::Inline { .. } => 0,
            Rid::Heap(s) => s.len(),
        }
    }
}

struct Entry {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    rid: Rid,
    /// Toward the most recently used; on the free list, unused.
    prev: u32,
    /// Toward the least recently used; on the free list, the next free slot.
    next: u32,
    /// Milliseconds since the table's base instant, wrapping.
    touched: u32,
    rank: Rank,
    flags: u8,
    /// Used since it was last put at the head of the list.
    used: bool,
}

impl Entry {
    const EMPTY: Entry = Entry {
        trace_id: [0; 16],
        span_id: [0; 8],
        rid: Rid::EMPTY,
        prev: NIL,
        next: NIL,
        touched: 0,
        rank: Rank::Log,
        flags: 0,
        used: false,
    };
}

fn at(chunks: &[Vec<Entry>], slot: u32) -> &Entry {
    let s = slot as usize;
    &chunks[s / CHUNK][s % CHUNK]
}

fn at_mut(chunks: &mut [Vec<Entry>], slot: u32) -> &mut Entry {
    let s = slot as usize;
    &mut chunks[s / CHUNK][s % CHUNK]
}

/// The table. Not synchronised: the processor keeps it behind its lock.
pub(crate) struct Table {
    chunks: Vec<Vec<Entry>>,
    /// Head of the free-slot list.
    free: u32,
    by_rid: SlotIndex,
    by_trace: SlotIndex,
    hasher: RandomState,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    len: usize,
    max_entries: usize,
    ttl_ms: u32,
    base: Instant,
    heap_bytes: usize,
    removals: Removals,
}

impl Table {
    /// An empty table holding at most `max_entries`, each for `ttl_ms` after its last use
    /// (`ttl_ms` at most a day, which the config checks).
    pub(crate) fn new(max_entries: usize, ttl_ms: u32) -> Table {
        Table {
            chunks: Vec::new(),
            free: NIL,
            by_rid: SlotIndex::new(),
            by_trace: SlotIndex::new(),
            hasher: RandomState::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            max_entries: max_entries.max(1),
            ttl_ms: ttl_ms.max(1),
            base: Instant::now(),
            heap_bytes: 0,
            removals: Removals::default(),
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Evictions and expiries since the last call.
    pub(crate) fn take_removals(&mut self) -> Removals {
        std::mem::take(&mut self.removals)
    }

    /// Bytes the table has allocated: slab chunks, both indexes, request IDs too long to
    /// store inline.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Entry>()
            + self.by_rid.allocated_bytes()
            + self.by_trace.allocated_bytes()
            + self.heap_bytes
    }

    fn now_ms(&self, now: Instant) -> u32 {
        // Wrapping: ages are differences, and no entry outlives a day.
        now.saturating_duration_since(self.base).as_millis() as u32
    }

    fn expired(&self, slot: u32, now_ms: u32) -> bool {
        now_ms.wrapping_sub(at(&self.chunks, slot).touched) >= self.ttl_ms
    }

    /// When the least recently used entry expires, if there is one (the table's start when
    /// the tail was used since and must be looked at again).
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        if self.tail == NIL {
            return None;
        }
        let tail = at(&self.chunks, self.tail);
        if tail.used {
            return Some(self.base);
        }
        let touched = tail.touched;
        Some(
            self.base
                + std::time::Duration::from_millis(u64::from(touched) + u64::from(self.ttl_ms)),
        )
    }

    fn find_rid(&self, rid: &str) -> Option<u32> {
        self.find_rid_hashed(rid, self.hasher.hash_one(rid.as_bytes()))
    }

    fn find_rid_hashed(&self, rid: &str, hash: u64) -> Option<u32> {
        let chunks = &self.chunks;
        self.by_rid
            .find(hash, |s| at(chunks, s).rid.as_bytes() == rid.as_bytes())
    }

    fn find_trace(&self, trace_id: &[u8; 16]) -> Option<u32> {
        let hash = self.hasher.hash_one(trace_id);
        let chunks = &self.chunks;
        self.by_trace
            .find(hash, |s| at(chunks, s).trace_id == *trace_id)
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let e = at(&self.chunks, slot);
            (e.prev, e.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            at_mut(&mut self.chunks, prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            at_mut(&mut self.chunks, next).prev = prev;
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old = self.head;
        {
            let e = at_mut(&mut self.chunks, slot);
            e.prev = NIL;
            e.next = old;
        }
        if old == NIL {
            self.tail = slot;
        } else {
            at_mut(&mut self.chunks, old).prev = slot;
        }
        self.head = slot;
    }

    fn touch(&mut self, slot: u32, now_ms: u32) {
        let e = at_mut(&mut self.chunks, slot);
        e.touched = now_ms;
        e.used = true;
    }

    /// Sends the (used) tail back to the head with its bit cleared.
    fn second_chance(&mut self) {
        let slot = self.tail;
        at_mut(&mut self.chunks, slot).used = false;
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    /// Evicts the least recently used entry.
    fn evict(&mut self) {
        for _ in 0..SECOND_CHANCES {
            if self.tail == NIL || !at(&self.chunks, self.tail).used {
                break;
            }
            self.second_chance();
        }
        if self.tail != NIL {
            self.remove(self.tail);
            self.removals.evicted += 1;
        }
    }

    /// Points the trace index of `slot`'s trace at `slot`.
    fn index_trace(&mut self, slot: u32) {
        let chunks = &self.chunks;
        let trace_id = at(chunks, slot).trace_id;
        let hash = self.hasher.hash_one(trace_id);
        if !self
            .by_trace
            .repoint(hash, |s| at(chunks, s).trace_id == trace_id, slot)
        {
            self.by_trace.insert(hash, slot);
        }
    }

    /// Removes the trace index entry of `slot`'s trace if it points at `slot`.
    fn unindex_trace(&mut self, slot: u32) {
        let hash = self.hasher.hash_one(at(&self.chunks, slot).trace_id);
        self.by_trace.remove(hash, slot);
    }

    fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        self.unindex_trace(slot);
        let hash = self.hasher.hash_one(at(&self.chunks, slot).rid.as_bytes());
        self.by_rid.remove(hash, slot);
        let free = self.free;
        let e = at_mut(&mut self.chunks, slot);
        self.heap_bytes -= e.rid.heap_bytes();
        e.rid = Rid::EMPTY;
        e.prev = NIL;
        e.next = free;
        self.free = slot;
        self.len -= 1;
    }

    fn alloc(&mut self) -> u32 {
        if self.free != NIL {
            let slot = self.free;
            self.free = at(&self.chunks, slot).next;
            return slot;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let chunk_index = self.chunks.len() - 1;
        let last = &mut self.chunks[chunk_index];
        last.push(Entry::EMPTY);
        (chunk_index * CHUNK + last.len() - 1) as u32
    }

    /// Removes entries unused for `ttl`, least recently used first, doing at most `budget`
    /// steps; returns whether it got through (false: call again soon).
    pub(crate) fn expire(&mut self, now: Instant, budget: usize) -> bool {
        self.expire_some(self.now_ms(now), budget)
    }

    fn expire_some(&mut self, now_ms: u32, budget: usize) -> bool {
        let mut expired = 0;
        let mut done = false;
        for _ in 0..budget {
            if self.tail == NIL {
                done = true;
                break;
            }
            if self.expired(self.tail, now_ms) {
                self.remove(self.tail);
                expired += 1;
            } else if at(&self.chunks, self.tail).used {
                self.second_chance();
            } else {
                // The tail was put at the head when it was last used, before every other
                // entry was: nothing else has expired either.
                done = true;
                break;
            }
        }
        self.removals.expired += expired;
        done
    }

    /// The live entry of `rid`, dropping it if it expired.
    fn live_rid(&mut self, rid: &str, now_ms: u32) -> Option<u32> {
        self.live_rid_hashed(rid, self.hasher.hash_one(rid.as_bytes()), now_ms)
    }

    fn live_rid_hashed(&mut self, rid: &str, hash: u64, now_ms: u32) -> Option<u32> {
        let slot = self.find_rid_hashed(rid, hash)?;
        if self.expired(slot, now_ms) {
            self.remove(slot);
            self.removals.expired += 1;
            return None;
        }
        Some(slot)
    }

    /// Where request `rid` is in its trace, if known; counts as a use.
    pub(crate) fn lookup_rid(&mut self, rid: &str, now: Instant) -> Option<Mapping> {
        let hash = self.hasher.hash_one(rid.as_bytes());
        self.lookup_hashed(rid, hash, self.now_ms(now))
    }

    fn lookup_hashed(&mut self, rid: &str, hash: u64, now_ms: u32) -> Option<Mapping> {
        let slot = self.live_rid_hashed(rid, hash, now_ms)?;
        self.touch(slot, now_ms);
        let e = at(&self.chunks, slot);
        Some(Mapping {
            trace_id: e.trace_id,
            span_id: e.span_id,
            flags: e.flags,
        })
    }

    /// [`Self::lookup_rid`] for many request IDs. The memory the lookups need (each probe's
    /// first bucket, then its candidate entry) is read for all of them before any is used,
    /// so the CPU overlaps their cache misses instead of waiting for each in turn: on a
    /// table larger than the cache that is most of a lookup's cost.
    pub(crate) fn lookup_many(&mut self, rids: &[&str], now: Instant) -> Vec<Option<Mapping>> {
        let hashes: Vec<u64> = rids
            .iter()
            .map(|r| self.hasher.hash_one(r.as_bytes()))
            .collect();
        let homes: Vec<u64> = hashes.iter().map(|&h| self.by_rid.home(h)).collect();
        let mut warm = 0u32;
        for (&bucket, &hash) in homes.iter().zip(&hashes) {
            if let Some(slot) = SlotIndex::candidate(bucket, hash) {
                warm ^= at(&self.chunks, slot).touched;
            }
        }
        std::hint::black_box(warm);
        let now_ms = self.now_ms(now);
        rids.iter()
            .zip(hashes)
            .map(|(rid, hash)| self.lookup_hashed(rid, hash, now_ms))
            .collect()
    }

    /// Whether `rid` is known (and live), without counting as a use.
    pub(crate) fn contains_rid(&self, rid: &str, now: Instant) -> bool {
        let now_ms = self.now_ms(now);
        self.find_rid(rid).is_some_and(|s| !self.expired(s, now_ms))
    }

    /// The request ID last learned for `trace_id`, if known; counts as a use.
    pub(crate) fn lookup_trace(&mut self, trace_id: &[u8; 16], now: Instant) -> Option<String> {
        let now_ms = self.now_ms(now);
        let slot = self.find_trace(trace_id)?;
        if self.expired(slot, now_ms) {
            self.remove(slot);
            self.removals.expired += 1;
            return None;
        }
        self.touch(slot, now_ms);
        let bytes = at(&self.chunks, slot).rid.as_bytes();
        // Stored from a &str, so always UTF-8.
        std::str::from_utf8(bytes).ok().map(str::to_string)
    }

    /// Records that request `rid` is `mapping` (with `rank`): a new request ID is added
    /// (evicting the least recently used at `max_entries`); a known one moves to a new trace,
    /// or to a better-ranked span of the same trace.
    pub(crate) fn learn(
        &mut self,
        rid: &str,
        mapping: Mapping,
        rank: Rank,
        now: Instant,
    ) -> Learned {
        let now_ms = self.now_ms(now);
        // Amortised expiry keeps the table from filling with dead entries between sweeps.
        self.expire_some(now_ms, 4);
        if let Some(slot) = self.live_rid(rid, now_ms) {
            let e = at(&self.chunks, slot);
            let learned = if e.trace_id != mapping.trace_id {
                self.unindex_trace(slot);
                let e = at_mut(&mut self.chunks, slot);
                e.trace_id = mapping.trace_id;
                e.span_id = mapping.span_id;
                e.flags = mapping.flags;
                e.rank = rank;
                self.index_trace(slot);
                Learned::Changed
            } else if rank > e.rank {
                let e = at_mut(&mut self.chunks, slot);
                e.span_id = mapping.span_id;
                e.flags = mapping.flags;
                e.rank = rank;
                Learned::Changed
            } else {
                Learned::Same
            };
            self.touch(slot, now_ms);
            return learned;
        }
        if self.len >= self.max_entries {
            self.evict();
        }
        let slot = self.alloc();
        let stored = Rid::new(rid);
        self.heap_bytes += stored.heap_bytes();
        {
            let e = at_mut(&mut self.chunks, slot);
            e.trace_id = mapping.trace_id;
            e.span_id = mapping.span_id;
            e.flags = mapping.flags;
            e.rank = rank;
            e.rid = stored;
            e.touched = now_ms;
            e.used = false;
        }
        self.by_rid
            .insert(self.hasher.hash_one(rid.as_bytes()), slot);
        self.index_trace(slot);
        self.push_front(slot);
        self.len += 1;
        Learned::New
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn m(n: u8) -> Mapping {
        Mapping {
            trace_id: [n; 16],
            span_id: [n; 8],
            flags: 1,
        }
    }

    #[test]
    fn entry_is_compact() {
        assert!(
            std::mem::size_of::<Entry>() <= 80,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn learns_and_looks_up_both_ways() {
        let now = Instant::now();
        let mut t = Table::new(10, 60_000);
        assert_eq!(t.learn("a", m(1), Rank::Server, now), Learned::New);
        assert_eq!(t.lookup_rid("a", now), Some(m(1)));
        assert_eq!(t.lookup_trace(&[1; 16], now).as_deref(), Some("a"));
        assert_eq!(t.lookup_rid("b", now), None);
        // A long ID goes to the heap and still matches.
        let long = "x".repeat(100);
        t.learn(&long, m(2), Rank::Log, now);
        assert_eq!(t.lookup_rid(&long, now), Some(m(2)));
        assert_eq!(t.lookup_trace(&[2; 16], now), Some(long));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn many_lookups_at_once_agree_with_single_ones() {
        let now = Instant::now();
        let mut t = Table::new(100, 60_000);
        for i in 0..50u8 {
            t.learn(&format!("r{i}"), m(i + 1), Rank::Server, now);
        }
        let keys: Vec<String> = (0..80u8).map(|i| format!("r{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let many = t.lookup_many(&refs, now);
        for (i, got) in many.iter().enumerate() {
            let want = (i < 50).then(|| m(i as u8 + 1));
            assert_eq!(*got, want, "r{i}");
            assert_eq!(t.lookup_rid(&keys[i], now), want);
        }
        assert!(t.lookup_many(&[], now).is_empty());
        assert_eq!(Table::new(1, 1).lookup_many(&["x"], now), vec![None]);
    }

    #[test]
    fn better_rank_replaces_the_span_and_a_new_trace_moves_the_entry() {
        let now = Instant::now();
        let mut t = Table::new(10, 60_000);
        let child = Mapping {
            span_id: [9; 8],
            ..m(1)
        };
        t.learn("a", child, Rank::Span, now);
        assert_eq!(t.learn("a", m(1), Rank::Server, now), Learned::Changed);
        // A later INTERNAL child does not take it back.
        assert_eq!(t.learn("a", child, Rank::Span, now), Learned::Same);
        assert_eq!(t.lookup_rid("a", now), Some(m(1)));
        // The same request ID in another trace (a retry): the newest wins.
        assert_eq!(t.learn("a", m(3), Rank::Log, now), Learned::Changed);
        assert_eq!(t.lookup_rid("a", now), Some(m(3)));
        assert_eq!(t.lookup_trace(&[1; 16], now), None);
        assert_eq!(t.lookup_trace(&[3; 16], now).as_deref(), Some("a"));
    }

    #[test]
    fn evicts_least_recently_used() {
        let now = Instant::now();
        let mut t = Table::new(3, 60_000);
        t.learn("a", m(1), Rank::Server, now);
        t.learn("b", m(2), Rank::Server, now);
        t.learn("c", m(3), Rank::Server, now);
        assert!(t.lookup_rid("a", now).is_some());
        t.learn("d", m(4), Rank::Server, now);
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup_rid("b", now), None, "b was least recently used");
        assert_eq!(t.lookup_trace(&[2; 16], now), None);
        assert!(t.lookup_rid("a", now).is_some());
        assert!(t.lookup_rid("d", now).is_some());
        assert_eq!(t.take_removals().evicted, 1);
        // Slots are reused: many more learns never grow past the limit.
        for i in 0..1000u32 {
            t.learn(&format!("r{i}"), m((i % 200) as u8 + 5), Rank::Log, now);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.chunks.iter().map(Vec::len).sum::<usize>(), 3);
    }

    #[test]
    fn eviction_and_sweeps_do_bounded_work() {
        let now = Instant::now();
        let mut t = Table::new(200, 60_000);
        for i in 0..200u8 {
            t.learn(&format!("r{i}"), m(i), Rank::Server, now);
        }
        // Every entry used: an eviction still evicts, after a bounded number of second
        // chances, and the oldest of those sent back are kept.
        for i in 0..200u8 {
            assert!(t.lookup_rid(&format!("r{i}"), now).is_some());
        }
        t.learn("new", m(250), Rank::Server, now);
        assert_eq!(t.len(), 200);
        assert_eq!(t.take_removals().evicted, 1);
        assert!(t.contains_rid("r0", now), "r0 got its second chance");
        let gone: Vec<u8> = (0..200u8)
            .filter(|i| !t.contains_rid(&format!("r{i}"), now))
            .collect();
        assert_eq!(gone.len(), 1);
        assert!(
            usize::from(gone[0]) <= SECOND_CHANCES + 4,
            "evicted after a bounded number of second chances: r{}",
            gone[0]
        );
        // A sweep with a small budget stops early and says so.
        let later = now + std::time::Duration::from_secs(61);
        assert!(!t.expire(later, 10));
        assert_eq!(t.take_removals().expired, 10);
        assert!(t.expire(later, usize::MAX));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn entries_expire_after_ttl_from_last_use() {
        let mut t = Table::new(10, 1_000);
        let t0 = t.base;
        t.learn("a", m(1), Rank::Server, t0);
        t.learn("b", m(2), Rank::Server, t0);
        assert_eq!(t.next_expiry(), Some(t0 + Duration::from_millis(1_000)));
        assert!(t.lookup_rid("a", t0 + Duration::from_millis(900)).is_some());
        assert_eq!(t.next_expiry(), Some(t0), "the tail was used: look again");
        let later = t0 + Duration::from_millis(1_500);
        assert!(t.expire(later, 100));
        assert_eq!(
            t.take_removals().expired,
            1,
            "b expired, a was used at 900ms"
        );
        assert!(t.contains_rid("a", later));
        assert_eq!(t.next_expiry(), Some(t0 + Duration::from_millis(1_900)));
        assert_eq!(t.lookup_rid("a", t0 + Duration::from_millis(2_000)), None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.take_removals().expired, 1);
    }

    #[test]
    fn a_million_entries_fit_in_under_200_bytes_each() {
        let now = Instant::now();
        let n = 1_000_000u32;
        let mut t = Table::new(n as usize, 60_000);
        for i in 0..n {
            let rid = format!("{i:08x}-5f1e-4c3e-9a51-5d1b8e0c4f21");
            let mut trace_id = [7u8; 16];
            trace_id[..4].copy_from_slice(&i.to_be_bytes());
            let mapping = Mapping {
                trace_id,
                span_id: [1; 8],
                flags: 1,
            };
            t.learn(&rid, mapping, Rank::Server, now);
        }
        assert_eq!(t.len(), n as usize);
        let per_entry = t.allocated_bytes() as f64 / f64::from(n);
        assert!(per_entry < 200.0, "{per_entry} bytes per entry");
        assert!(t.contains_rid("000f4239-5f1e-4c3e-9a51-5d1b8e0c4f21", now));
    }
}
