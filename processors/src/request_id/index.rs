//! A hash index from keys to table slots, built for lookups that miss the CPU cache.
//!
//! One `u64` per bucket holds the low 32 bits of the key's hash (the tag) and the slot, so a
//! probe reads one cache line where a general-purpose table reads two (control bytes and
//! values live apart); the key itself is compared against the table's entry only when the
//! tag matches. Open addressing with linear probing, at most half full, with backward-shift
//! deletion (no tombstones). Hashes come from a keyed hasher, so clients cannot choose keys
//! that collide.

const EMPTY: u64 = u64::MAX;
const MIN_BUCKETS: usize = 16;

pub(crate) struct SlotIndex {
    buckets: Vec<u64>,
    len: usize,
}

fn bucket(hash: u64, slot: u32) -> u64 {
    (hash << 32) | u64::from(slot)
}

fn tag_of(bucket: u64) -> u32 {
    (bucket >> 32) as u32
}

fn slot_of(bucket: u64) -> u32 {
    bucket as u32
}

impl SlotIndex {
    pub(crate) fn new() -> SlotIndex {
        SlotIndex {
            buckets: Vec::new(),
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The bucket position of the first slot with `hash` that `eq` accepts.
    fn position(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let tag = hash as u32;
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            let b = self.buckets[i];
            if b == EMPTY {
                return None;
            }
            if tag_of(b) == tag && eq(slot_of(b)) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The bucket where a probe for `hash` starts (`u64::MAX` when empty); reading it ahead
    /// of the probe brings its cache line in.
    pub(crate) fn home(&self, hash: u64) -> u64 {
        match self.buckets.len() {
            0 => EMPTY,
            n => self.buckets[hash as u32 as usize & (n - 1)],
        }
    }

    /// The slot in a bucket read by [`Self::home`], if its tag is `hash`'s.
    pub(crate) fn candidate(bucket: u64, hash: u64) -> Option<u32> {
        (bucket != EMPTY && tag_of(bucket) == hash as u32).then_some(slot_of(bucket))
    }

    /// The slot whose key has `hash` and which `eq` accepts.
    pub(crate) fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.position(hash, eq).map(|i| slot_of(self.buckets[i]))
    }

    /// Adds `slot` under `hash` (the caller knows its key is not in the index).
    pub(crate) fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        self.place(bucket(hash, slot));
        self.len += 1;
    }

    fn place(&mut self, b: u64) {
        let mask = self.mask();
        let mut i = tag_of(b) as usize & mask;
        while self.buckets[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.buckets[i] = b;
    }

    fn grow(&mut self) {
        let size = (self.buckets.len() * 2).max(MIN_BUCKETS);
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; size]);
        for b in old.into_iter().filter(|b| *b != EMPTY) {
            self.place(b);
        }
    }

    /// Points the key that `eq` accepts under `hash` at `slot`; false if it is not there.
    pub(crate) fn repoint(&mut self, hash: u64, eq: impl FnMut(u32) -> bool, slot: u32) -> bool {
        match self.position(hash, eq) {
            Some(i) => {
                self.buckets[i] = bucket(hash, slot);
                true
            }
            None => false,
        }
    }

    /// Removes `slot` stored under `hash`; false if it is not there.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let Some(mut hole) = self.position(hash, |s| s == slot) else {
            return false;
        };
        // Backward shift: move later members of the probe run into the hole when their home
        // bucket is not between the hole and where they are.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let b = self.buckets[j];
            if b == EMPTY {
                break;
            }
            let home = tag_of(b) as usize & mask;
            if (hole.wrapping_sub(home) & mask) <= (j.wrapping_sub(home) & mask) {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
        true
    }

    pub(crate) fn allocated_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn finds_inserts_repoints_and_removes_under_collisions() {
        let mut index = SlotIndex::new();
        // Few distinct hashes: long probe runs, wrap-around and shifting get exercised.
        let hash = |k: u32| u64::from(k % 7) * 0x9e37_79b9 + 13;
        let mut model: HashMap<u32, u32> = HashMap::new();
        for k in 0..200u32 {
            index.insert(hash(k), k);
            model.insert(k, k);
        }
        for k in (0..200u32).step_by(3) {
            assert!(index.remove(hash(k), k));
            model.remove(&k);
        }
        assert!(!index.remove(hash(0), 0), "already gone");
        assert!(index.repoint(hash(1), |s| s == 1, 1001));
        model.insert(1, 1001);
        for k in 0..200u32 {
            let want = model.get(&k).copied();
            let got = index.find(hash(k), |s| s == k || (k == 1 && s == 1001));
            assert_eq!(got, want, "key {k}");
        }
        assert_eq!(index.len, model.len());
        assert!(index.allocated_bytes() >= model.len() * 16);
    }
}
