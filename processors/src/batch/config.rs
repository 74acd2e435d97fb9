//! The `batch` processor's config, with the OpenTelemetry Collector's key names.

use pipeline_core::config::HumanDuration;
use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

/// `processors.batch`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items that trigger a send as soon as they are pending.
    pub send_batch_size: usize,
    /// Largest batch sent; bigger ones are split. 0 means no limit.
    pub send_batch_max_size: usize,
    /// Longest an item waits for its batch to fill.
    pub timeout: HumanDuration,
    /// Most data held pending, in MiB of protobuf, before callers wait (default `16`): with
    /// large items (64 KiB log bodies, 2 KiB PII-heavy spans) this, not the item count, is
    /// what bounds the processor's memory. `0` means no byte bound.
    pub pending_limit_mib: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: HumanDuration::from_millis(200),
            pending_limit_mib: 16,
        }
    }
}

impl ComponentConfig for BatchConfig {
    /// Checks relations serde cannot.
    fn validate(&self) -> Result<(), FieldError> {
        if self.send_batch_size == 0 {
            return Err(FieldError::new("send_batch_size", "must be at least 1"));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            return Err(FieldError::new(
                "send_batch_max_size",
                format!(
                    "must be 0 (no limit) or at least send_batch_size ({})",
                    self.send_batch_size
                ),
            ));
        }
        if self.timeout.get().is_zero() {
            return Err(FieldError::new("timeout", "must be greater than 0"));
        }
        Ok(())
    }
}

impl BatchConfig {
    /// Most bytes held pending before callers wait (`usize::MAX` without a byte bound).
    pub fn pending_limit_bytes(&self) -> usize {
        match self.pending_limit_mib {
            0 => usize::MAX,
            mib => mib.saturating_mul(1 << 20),
        }
    }

    /// Most items held pending before callers wait: room for two full batches, so one can
    /// fill while the previous is being sent.
    pub fn pending_limit(&self) -> usize {
        self.send_batch_size
            .max(self.send_batch_max_size)
            .saturating_mul(2)
    }
}
