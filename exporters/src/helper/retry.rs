//! Exponential backoff with jitter, the way the OpenTelemetry Collector computes it
//! (cenkalti/backoff's `ExponentialBackOff`), plus server retry hints.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::config::RetryConfig;

/// The longest server retry hint honoured as given; longer hints are cut to this, so a
/// bogus `Retry-After: 86400` cannot park a worker for a day when `max_elapsed_time` is 0.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// The delays of one batch's retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    current: Duration,
    max_interval: Duration,
    max_elapsed: Option<Duration>,
    multiplier: f64,
    randomization: f64,
    rng: SplitMix64,
}

impl Backoff {
    /// A fresh sequence for one batch.
    pub fn new(config: &RetryConfig) -> Backoff {
        let max_elapsed = config.max_elapsed_time.get();
        Backoff {
            current: config.initial_interval.get(),
            max_interval: config.max_interval.get(),
            max_elapsed: (!max_elapsed.is_zero()).then_some(max_elapsed),
            multiplier: config.multiplier,
            randomization: config.randomization_factor,
            rng: SplitMix64::seeded(),
        }
    }

    /// The delay before the next attempt, or `None` when it is time to give up: when the
    /// next attempt would start more than `max_elapsed_time` after the first. `elapsed` is
    /// the time since the first attempt started; `retry_after` is the server's hint, which
    /// replaces the computed delay (capped at [`RETRY_AFTER_CAP`]).
    pub fn next_delay(
        &mut self,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let random = self.rng.next_f64();
        self.next_delay_with(elapsed, retry_after, random)
    }

    /// [`Backoff::next_delay`] with the random draw given (in `[0, 1)`), for tests.
    pub(crate) fn next_delay_with(
        &mut self,
        elapsed: Duration,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        let computed = randomize(self.current, self.randomization, random);
        self.advance();
        let delay = match retry_after {
            Some(hint) => hint.min(RETRY_AFTER_CAP),
            None => computed,
        };
        match self.max_elapsed {
            Some(max) if elapsed.saturating_add(delay) > max => None,
            _ => Some(delay),
        }
    }

    fn advance(&mut self) {
        let next = self.current.as_secs_f64() * self.multiplier;
        self.current = if next >= self.max_interval.as_secs_f64() {
            self.max_interval
        } else {
            Duration::from_secs_f64(next)
        };
    }
}

/// A value drawn uniformly from `[d * (1 - factor), d * (1 + factor)]`.
fn randomize(d: Duration, factor: f64, random: f64) -> Duration {
    let secs = d.as_secs_f64();
    let delta = factor * secs;
    let low = secs - delta;
    let value = low + random.clamp(0.0, 1.0) * (2.0 * delta);
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(d)
}

/// A tiny PRNG for jitter: no need for a crate, and no need for quality beyond spreading
/// retries of many workers and processes apart.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn seeded() -> SplitMix64 {
        // RandomState is seeded per process from the OS and varies per instance.
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5EED);
        SplitMix64(h.finish())
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use pipeline_core::config::HumanDuration;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn close(a: Duration, b: Duration) -> bool {
        (a.as_secs_f64() - b.as_secs_f64()).abs() < 1e-6
    }

    #[test]
    fn nominal_sequence_grows_by_multiplier_up_to_max_interval() {
        let mut b = Backoff::new(&RetryConfig::default());
        let expected = [5.0, 7.5, 11.25, 16.875, 25.3125, 30.0, 30.0];
        for want in expected {
            let got = b.next_delay_with(Duration::ZERO, None, 0.5).unwrap();
            assert!(close(got, secs(want)), "got {got:?}, want {want}");
        }
    }

    #[test]
    fn jitter_spreads_by_randomization_factor() {
        let cfg = RetryConfig::default();
        let low = Backoff::new(&cfg).next_delay_with(Duration::ZERO, None, 0.0);
        let high = Backoff::new(&cfg).next_delay_with(Duration::ZERO, None, 1.0);
        assert!(close(low.unwrap(), secs(2.5)));
        assert!(close(high.unwrap(), secs(7.5)));
        let mut b = Backoff::new(&cfg);
        for _ in 0..1000 {
            let d = b.next_delay(Duration::ZERO, None).unwrap();
            assert!(d >= secs(2.5) && d <= secs(45.0), "{d:?}");
        }
        let none = RetryConfig {
            randomization_factor: 0.0,
            ..cfg
        };
        let d = Backoff::new(&none).next_delay_with(Duration::ZERO, None, 0.99);
        assert_eq!(d, Some(secs(5.0)));
    }

    #[test]
    fn stops_when_next_attempt_would_pass_max_elapsed_time() {
        let cfg = RetryConfig {
            max_elapsed_time: HumanDuration::from_secs(60),
            ..RetryConfig::default()
        };
        let mut b = Backoff::new(&cfg);
        assert_eq!(b.next_delay_with(secs(54.0), None, 0.5), Some(secs(5.0)));
        // 7.5s after 54s is past 60s.
        assert_eq!(b.next_delay_with(secs(54.0), None, 0.5), None);
        // Zero means forever.
        let forever = RetryConfig {
            max_elapsed_time: HumanDuration::from_secs(0),
            ..RetryConfig::default()
        };
        let mut b = Backoff::new(&forever);
        assert!(b.next_delay_with(secs(1e9), None, 0.5).is_some());
    }

    #[test]
    fn retry_after_replaces_the_computed_delay() {
        let mut b = Backoff::new(&RetryConfig::default());
        // Shorter than the backoff: honoured as given.
        assert_eq!(
            b.next_delay_with(Duration::ZERO, Some(secs(1.0)), 0.5),
            Some(secs(1.0))
        );
        // Longer than the backoff and than max_interval: still honoured.
        assert_eq!(
            b.next_delay_with(Duration::ZERO, Some(secs(120.0)), 0.5),
            Some(secs(120.0))
        );
        // The backoff kept growing underneath.
        assert!(close(
            b.next_delay_with(Duration::ZERO, None, 0.5).unwrap(),
            secs(11.25)
        ));
        // A hint past max_elapsed_time gives up rather than wait.
        assert_eq!(b.next_delay_with(secs(200.0), Some(secs(120.0)), 0.5), None);
    }

    #[test]
    fn retry_after_is_capped() {
        let forever = RetryConfig {
            max_elapsed_time: HumanDuration::from_secs(0),
            ..RetryConfig::default()
        };
        let mut b = Backoff::new(&forever);
        assert_eq!(
            b.next_delay_with(Duration::ZERO, Some(secs(86_400.0)), 0.5),
            Some(RETRY_AFTER_CAP)
        );
    }
}
