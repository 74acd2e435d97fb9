//! The process's memory standing, shared by the `memory_limiter` processors and the receivers.
//!
//! A `memory_limiter` refuses batches once they reach it, but a receiver has read the request
//! body by then: 500 clients sending 4 MiB at once put 2 GiB in memory before any limiter sees
//! a batch. So every running limiter registers its soft limit here
//! ([`MemoryPressure::register`]), and a receiver asks before it reads a body
//! ([`MemoryPressure::admits`]): the body is read only while resident memory, plus the bodies
//! already being read (which resident memory does not show yet), plus this one stay under
//! the lowest registered soft limit. Without a limiter, everything is admitted.
//!
//! The reading is refreshed when it is older than [`FRESH`], so a burst of requests sees the
//! memory the previous ones took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How old a reading of resident memory may be when a receiver asks.
pub const FRESH: Duration = Duration::from_millis(5);

/// Reads the process's resident memory in bytes.
pub type ResidentProbe = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// The process's resident memory, from `/proc/self/stat`.
pub fn resident_bytes() -> Option<u64> {
    crate::time::process_usage().map(|u| u.resident_bytes)
}

/// Shared handle on the process's memory limits (cheap to clone).
#[derive(Clone)]
pub struct MemoryPressure {
    inner: Arc<Inner>,
}

struct Inner {
    probe: ResidentProbe,
    /// Soft limits of the registered limiters, by registration number.
    limits: Mutex<Vec<(u64, u64)>>,
    next_registration: AtomicU64,
    /// The lowest registered soft limit; `u64::MAX` when there is none.
    soft_limit: AtomicU64,
    resident: AtomicU64,
    /// Bytes reserved by receivers for bodies they are reading or handling.
    reserved: AtomicU64,
    /// Microseconds since `epoch` of the last reading, plus one (0: never read).
    read_at_us: AtomicU64,
    epoch: Instant,
}

impl Default for MemoryPressure {
    fn default() -> Self {
        MemoryPressure::with_probe(Arc::new(resident_bytes))
    }
}

impl std::fmt::Debug for MemoryPressure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPressure")
            .field("soft_limit", &self.soft_limit())
            .finish_non_exhaustive()
    }
}

/// A limiter's registration; the limit leaves when this is dropped.
#[derive(Debug)]
pub struct Registration {
    pressure: MemoryPressure,
    number: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.pressure
            .update(|limits| limits.retain(|(n, _)| *n != self.number));
    }
}

impl MemoryPressure {
    /// A handle measuring resident memory with `probe` (tests inject one).
    pub fn with_probe(probe: ResidentProbe) -> MemoryPressure {
        MemoryPressure {
            inner: Arc::new(Inner {
                probe,
                limits: Mutex::new(Vec::new()),
                next_registration: AtomicU64::new(0),
                soft_limit: AtomicU64::new(u64::MAX),
                resident: AtomicU64::new(0),
                reserved: AtomicU64::new(0),
                read_at_us: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// Registers a limiter's soft limit in bytes until the registration is dropped.
    pub fn register(&self, soft_limit: u64) -> Registration {
        let number = self.inner.next_registration.fetch_add(1, Ordering::Relaxed);
        self.update(|limits| limits.push((number, soft_limit)));
        Registration {
            pressure: self.clone(),
            number,
        }
    }

    fn update(&self, change: impl FnOnce(&mut Vec<(u64, u64)>)) {
        let mut limits = self.inner.limits.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut limits);
        let lowest = limits.iter().map(|(_, l)| *l).min().unwrap_or(u64::MAX);
        self.inner.soft_limit.store(lowest, Ordering::Release);
    }

    /// The lowest registered soft limit, if a limiter runs.
    pub fn soft_limit(&self) -> Option<u64> {
        match self.inner.soft_limit.load(Ordering::Acquire) {
            u64::MAX => None,
            l => Some(l),
        }
    }

    /// Resident memory, read again when the last reading is older than [`FRESH`].
    pub fn resident(&self) -> u64 {
        let now_us = self.inner.epoch.elapsed().as_micros() as u64 + 1;
        let read_at = self.inner.read_at_us.load(Ordering::Acquire);
        if read_at == 0 || now_us.saturating_sub(read_at) >= FRESH.as_micros() as u64 {
            self.inner.read_at_us.store(now_us, Ordering::Release);
            if let Some(r) = (self.inner.probe)() {
                self.inner.resident.store(r, Ordering::Release);
            }
        }
        self.inner.resident.load(Ordering::Acquire)
    }

    /// Whether `bytes` more fit under the soft limit on top of resident memory and what is
    /// reserved. Always true without a limiter.
    pub fn admits(&self, bytes: u64) -> bool {
        match self.soft_limit() {
            None => true,
            Some(limit) => fits(
                self.resident(),
                self.inner.reserved.load(Ordering::Acquire),
                bytes,
                limit,
            ),
        }
    }

    /// Reserves `bytes` for a body about to be read if they fit under the soft limit on top
    /// of resident memory and the other reservations; `None` when they do not. Without a
    /// limiter every reservation succeeds (and costs one atomic add).
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let inner = &self.inner;
        match self.soft_limit() {
            None => {
                inner.reserved.fetch_add(bytes, Ordering::AcqRel);
            }
            Some(limit) => {
                let resident = self.resident();
                let mut current = inner.reserved.load(Ordering::Acquire);
                loop {
                    if !fits(resident, current, bytes, limit) {
                        return None;
                    }
                    match inner.reserved.compare_exchange_weak(
                        current,
                        current + bytes,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break,
                        Err(now) => current = now,
                    }
                }
            }
        }
        Some(Reservation {
            pressure: self.clone(),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> u64 {
        self.inner.reserved.load(Ordering::Acquire)
    }
}

/// Whether `bytes` more on top of `resident` memory and `reserved` bytes stay within `limit`.
fn fits(resident: u64, reserved: u64, bytes: u64, limit: u64) -> bool {
    resident.saturating_add(reserved).saturating_add(bytes) <= limit
}

/// Bytes reserved for a body; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    pressure: MemoryPressure,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pressure
            .inner
            .reserved
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn admits_everything_without_a_limiter_and_only_what_fits_with_one() {
        let resident = Arc::new(AtomicU64::new(50 << 20));
        let r = Arc::clone(&resident);
        let p = MemoryPressure::with_probe(Arc::new(move || Some(r.load(Ordering::Relaxed))));
        assert!(p.admits(u64::MAX / 2));
        let first = p.register(80 << 20);
        let second = p.register(70 << 20);
        assert_eq!(p.soft_limit(), Some(70 << 20));
        assert!(p.admits(20 << 20));
        assert!(!p.admits(21 << 20));
        drop(second);
        assert_eq!(p.soft_limit(), Some(80 << 20));
        assert!(p.admits(30 << 20));
        drop(first);
        assert_eq!(p.soft_limit(), None);
        assert!(p.admits(u64::MAX));
    }

    #[test]
    fn reservations_add_up_and_are_given_back() {
        let p = MemoryPressure::with_probe(Arc::new(|| Some(50 << 20)));
        let unlimited = p.try_reserve(1 << 30).unwrap();
        assert_eq!(p.reserved(), 1 << 30);
        drop(unlimited);
        let _limit = p.register(80 << 20);
        let a = p.try_reserve(20 << 20).unwrap();
        let b = p.try_reserve(10 << 20).unwrap();
        assert!(p.try_reserve(1).is_none(), "50 + 30 reserved is the limit");
        assert!(!p.admits(1));
        drop(a);
        let c = p.try_reserve(20 << 20).unwrap();
        assert_eq!(p.reserved(), 30 << 20);
        drop((b, c));
        assert_eq!(p.reserved(), 0);
    }

    #[test]
    fn a_stale_reading_is_refreshed() {
        let resident = Arc::new(AtomicU64::new(10));
        let r = Arc::clone(&resident);
        let p = MemoryPressure::with_probe(Arc::new(move || Some(r.load(Ordering::Relaxed))));
        assert_eq!(p.resident(), 10);
        resident.store(20, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while p.resident() != 20 {
            assert!(std::time::Instant::now() < deadline, "never refreshed");
            std::thread::yield_now();
        }
    }
}
