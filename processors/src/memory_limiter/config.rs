//! The `memory_limiter` processor's config, with the OpenTelemetry Collector's key names.

use std::time::Duration;

use pipeline_core::FieldError;
use pipeline_core::config::HumanDuration;
use serde::Deserialize;

const MIB: u64 = 1 << 20;
/// The limit when neither `limit_mib` nor `limit_percentage` is set.
const DEFAULT_LIMIT_PERCENTAGE: u64 = 80;

/// `processors.memory_limiter`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// How often resident memory is measured (default `1s`).
    pub check_interval: HumanDuration,
    /// The hard limit in MiB. Without it or `limit_percentage`, the limit is 80% of the
    /// memory available (otelcol requires one of the two).
    pub limit_mib: u64,
    /// The hard limit as a percentage of the memory available (the cgroup's limit when
    /// there is one, else the machine's).
    pub limit_percentage: u64,
    /// Headroom below the hard limit in MiB; data is refused above `limit - spike`
    /// (default 20% of the limit).
    pub spike_limit_mib: u64,
    /// Headroom as a percentage of the memory available, with `limit_percentage`.
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: HumanDuration::from_secs(1),
            limit_mib: 0,
            limit_percentage: 0,
            spike_limit_mib: 0,
            spike_limit_percentage: 0,
        }
    }
}

/// The limits in bytes, worked out from the config and the memory available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Above this, data is refused (limit minus spike).
    pub soft_bytes: u64,
    /// The configured limit.
    pub hard_bytes: u64,
    /// How often memory is measured.
    pub check_interval: Duration,
}

impl pipeline_core::ComponentConfig for MemoryLimiterConfig {
    /// Checks what serde cannot.
    fn validate(&self) -> Result<(), FieldError> {
        if self.check_interval.get().is_zero() {
            return Err(FieldError::new("check_interval", "must be more than 0"));
        }
        if self.limit_mib > 0 && self.limit_percentage > 0 {
            return Err(FieldError::new(
                "limit_percentage",
                "set limit_mib or limit_percentage, not both",
            ));
        }
        if self.limit_percentage > 100 {
            return Err(FieldError::new(
                "limit_percentage",
                format!("must be 1 to 100, not {}", self.limit_percentage),
            ));
        }
        if self.limit_mib > 0 && self.spike_limit_mib >= self.limit_mib {
            return Err(FieldError::new(
                "spike_limit_mib",
                format!(
                    "must be less than limit_mib ({}), not {}",
                    self.limit_mib, self.spike_limit_mib
                ),
            ));
        }
        if self.limit_percentage > 0 && self.spike_limit_percentage >= self.limit_percentage {
            return Err(FieldError::new(
                "spike_limit_percentage",
                format!(
                    "must be less than limit_percentage ({}), not {}",
                    self.limit_percentage, self.spike_limit_percentage
                ),
            ));
        }
        Ok(())
    }
}

impl MemoryLimiterConfig {
    /// The limits in bytes, `total` being the memory available (for the percentages).
    pub fn limits(&self, total: Option<u64>) -> Result<Limits, FieldError> {
        let (hard, spike) = if self.limit_mib > 0 {
            let hard = self.limit_mib * MIB;
            let spike = if self.spike_limit_mib > 0 {
                self.spike_limit_mib * MIB
            } else {
                hard / 5
            };
            (hard, spike)
        } else {
            let total = total.ok_or_else(|| {
                FieldError::new(
                    "limit_percentage",
                    "the memory available cannot be read here (no /proc/meminfo or cgroup limit); use limit_mib",
                )
            })?;
            let percentage = if self.limit_percentage > 0 {
                self.limit_percentage
            } else {
                DEFAULT_LIMIT_PERCENTAGE
            };
            let hard = total / 100 * percentage;
            let spike = if self.spike_limit_percentage > 0 {
                total / 100 * self.spike_limit_percentage
            } else {
                hard / 5
            };
            (hard, spike)
        };
        Ok(Limits {
            soft_bytes: hard.saturating_sub(spike),
            hard_bytes: hard,
            check_interval: self.check_interval.get(),
        })
    }
}

/// The memory available to the process: its cgroup (v2 or v1) limit when one is set, else
/// the machine's `MemTotal`.
pub(crate) fn total_memory_bytes() -> Option<u64> {
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|s| s.trim().parse::<u64>().ok())
    // cgroup v1 says "no limit" with a huge number.
    .find(|&n| n < (1 << 60));
    let machine = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (cgroup, machine) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }
}
