//! The consistent-hash ring: which backend owns a routing key.
//!
//! Each backend is placed on a 64-bit circle at [`VIRTUAL_NODES`] points derived from its
//! endpoint; a key belongs to the backend of the first point at or after the key's hash.
//! Adding or removing one of N backends therefore moves only the keys of the arcs it gains
//! or loses, about 1/N of them, and every agent that knows the same backends routes a key to
//! the same one: the hash is [`stable_hash`], the same in every process and version.

/// Points per backend: enough to keep the shares within a few percent of 1/N.
pub(crate) const VIRTUAL_NODES: u32 = 160;

/// A stable 64-bit hasher (FNV-1a, then the SplitMix64 finaliser for an even spread).
/// Unlike `std`'s hashers it gives the same result in every process, which routing across
/// agents needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

/// [`StableHasher`] over `parts`, each followed by a separator so ("ab", "c") and
/// ("a", "bc") differ.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut h = StableHasher::default();
    for part in parts {
        h.write(part);
        h.write_u8(0xff);
    }
    h.finish()
}

/// Backends placed on the circle; `T` is what a lookup returns for a backend.
#[derive(Debug, Clone)]
pub(crate) struct Ring<T> {
    /// (point, index into `members`), sorted by point.
    points: Vec<(u64, usize)>,
    members: Vec<T>,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Ring {
            points: Vec::new(),
            members: Vec::new(),
        }
    }
}

impl<T> Ring<T> {
    /// A ring of `members`, each placed by its name.
    pub(crate) fn new<'a>(members: impl IntoIterator<Item = (&'a str, T)>) -> Ring<T> {
        let mut ring = Ring::default();
        for (name, member) in members {
            let index = ring.members.len();
            ring.members.push(member);
            for i in 0..VIRTUAL_NODES {
                let point = stable_hash(&[name.as_bytes(), &i.to_le_bytes()]);
                ring.points.push((point, index));
            }
        }
        // Ties (astronomically rare) are broken by index, so the order is deterministic.
        ring.points.sort_unstable();
        ring
    }

    /// Whether the ring has no backend.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The backends, in the order they were given.
    pub(crate) fn members(&self) -> &[T] {
        &self.members
    }

    /// The index (into [`Ring::members`]) of the backend owning `key_hash`; `None` when the
    /// ring is empty.
    pub(crate) fn owner_index(&self, key_hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let at = self.points.partition_point(|&(point, _)| point < key_hash);
        let (_, index) = self.points[at % self.points.len()];
        Some(index)
    }
}
