//! Exact percentiles over a sliding window, with HdrHistogram.
//!
//! The window is cut into slots of one flush interval each: durations go into the newest
//! slot, a flush reads the quantiles over every slot and then opens a new one, dropping the
//! oldest once the window is full. Slots are allocated on first use, so an idle series costs
//! no histogram memory. Durations are recorded in microseconds, exact to the configured
//! number of significant digits.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

/// A histogram reused to merge each series' window at flush time.
#[derive(Debug, Default)]
pub(crate) struct Scratch(Option<Histogram<u32>>);

/// The sliding window of one series.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// Oldest first; the last is the slot being filled.
    slots: VecDeque<Option<Histogram<u32>>>,
    max_slots: usize,
    significant_digits: u8,
}

const MICROS_PER_SECOND: f64 = 1e6;

impl Window {
    /// A window of `max_slots` flush intervals.
    pub(crate) fn new(max_slots: usize, significant_digits: u8) -> Window {
        let mut slots = VecDeque::with_capacity(max_slots.min(8));
        slots.push_back(None);
        Window {
            slots,
            max_slots: max_slots.max(1),
            significant_digits,
        }
    }

    /// Records one duration in seconds.
    pub(crate) fn record(&mut self, seconds: f64) {
        let digits = self.significant_digits;
        let Some(slot) = self.slots.back_mut() else {
            return;
        };
        if slot.is_none() {
            *slot = Histogram::new(digits).ok();
        }
        if let Some(h) = slot.as_mut() {
            let micros = (seconds * MICROS_PER_SECOND).round().max(0.0) as u64;
            // `record` grows the histogram to fit; past what it can ever hold, clamp.
            if h.record(micros).is_err() {
                h.saturating_record(micros);
            }
        }
    }

    /// The quantiles (each in (0, 1]) in seconds over the whole window, or `None` when the
    /// window saw nothing. `scratch` is where the slots are merged; one per aggregator, so
    /// flushing many series allocates nothing once it has grown.
    pub(crate) fn quantiles(&self, qs: &[f64], scratch: &mut Scratch) -> Option<Vec<f64>> {
        let mut filled = self
            .slots
            .iter()
            .flatten()
            .filter(|h| !h.is_empty())
            .peekable();
        filled.peek()?;
        if scratch.0.is_none() {
            scratch.0 = Histogram::new(self.significant_digits).ok();
        }
        let merged = scratch.0.as_mut()?;
        merged.reset();
        for h in filled {
            // Auto-resizing histograms of equal precision: adding cannot fail on range.
            let _ = merged.add(h);
        }
        Some(
            qs.iter()
                .map(|q| merged.value_at_quantile(*q) as f64 / MICROS_PER_SECOND)
                .collect(),
        )
    }

    /// Opens the next slot; the oldest leaves once the window is full.
    pub(crate) fn rotate(&mut self) {
        self.slots.push_back(None);
        while self.slots.len() > self.max_slots {
            self.slots.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_percentiles_over_the_window() {
        let mut w = Window::new(2, 3);
        let mut scratch = Scratch::default();
        assert_eq!(w.quantiles(&[0.5], &mut scratch), None);
        // 1..=100 ms: p50 is 50 ms, p95 95 ms, p99 99 ms.
        for ms in 1..=100 {
            w.record(ms as f64 / 1000.0);
        }
        let q = w.quantiles(&[0.5, 0.95, 0.99, 1.0], &mut scratch).unwrap();
        for (got, want) in q.iter().zip([0.050, 0.095, 0.099, 0.100]) {
            assert!((got - want).abs() <= want * 1e-3, "{got} vs {want}");
        }
        // Next interval: 100 slow requests at 2 s; the window holds both intervals.
        w.rotate();
        for _ in 0..100 {
            w.record(2.0);
        }
        let q = w.quantiles(&[0.5, 0.51], &mut scratch).unwrap();
        assert!((q[0] - 0.100).abs() < 1e-3, "{q:?}");
        assert!((q[1] - 2.0).abs() < 2e-3, "{q:?}");
        // Two rotations later the fast interval has left the window.
        w.rotate();
        let q = w.quantiles(&[0.5], &mut scratch).unwrap();
        assert!((q[0] - 2.0).abs() < 2e-3, "{q:?}");
        w.rotate();
        assert_eq!(
            w.quantiles(&[0.5], &mut scratch),
            None,
            "everything left the window"
        );
    }
}
