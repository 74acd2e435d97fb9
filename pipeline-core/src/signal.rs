//! The three OpenTelemetry signals, and a small map keyed by them.

use std::fmt;

/// One of the three OpenTelemetry signals a pipeline carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl Signal {
    /// All signals, in a stable order.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The name used in pipeline IDs and metric labels: `traces`, `metrics` or `logs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// Parses `traces`, `metrics` or `logs`.
    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value for each signal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerSignal<T> {
    values: [T; 3],
}

impl<T> PerSignal<T> {
    /// Builds the map from a function of the signal.
    pub fn from_fn(mut f: impl FnMut(Signal) -> T) -> Self {
        PerSignal {
            values: Signal::ALL.map(&mut f),
        }
    }

    /// The value for one signal.
    pub fn get(&self, signal: Signal) -> &T {
        &self.values[signal.index()]
    }

    /// The value for one signal, mutably.
    pub fn get_mut(&mut self, signal: Signal) -> &mut T {
        &mut self.values[signal.index()]
    }

    /// Every signal with its value.
    pub fn iter(&self) -> impl Iterator<Item = (Signal, &T)> {
        Signal::ALL.into_iter().zip(self.values.iter())
    }
}
