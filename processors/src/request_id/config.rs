//! The `request_id` processor's config.

use std::collections::HashSet;

use pipeline_core::config::HumanDuration;
use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

pub use pipeline_core::attributes::DEFAULT_REQUEST_ID_ATTRIBUTES;

/// `processors.request_id`.
///
/// ```yaml
/// processors:
///   request_id:
///     request_id_attributes: [request_id, http.request.header.x-request-id]
///     wait: 2s
///     ttl: 5m
///     max_entries: 1000000
///     max_pending_items: 100000
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RequestIdConfig {
    /// Attribute names holding the request ID, the first present one wins. The first name
    /// is also the attribute written when a record or span is given its request ID.
    pub request_id_attributes: Vec<String>,
    /// Longest a log record whose request ID is not known yet is held for its span. `0`
    /// never holds.
    pub wait: HumanDuration,
    /// An entry expires this long after it was last learned or used.
    pub ttl: HumanDuration,
    /// Most request IDs remembered; past it the least recently used is evicted.
    pub max_entries: usize,
    /// Most log records held per logs pipeline; past it the oldest are released unchanged.
    /// `0` never holds.
    pub max_pending_items: usize,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        RequestIdConfig {
            request_id_attributes: DEFAULT_REQUEST_ID_ATTRIBUTES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            wait: HumanDuration::from_secs(2),
            ttl: HumanDuration::from_secs(300),
            max_entries: 1_000_000,
            max_pending_items: 100_000,
        }
    }
}

/// Longest `ttl` accepted: entry times are kept in 32-bit milliseconds.
const MAX_TTL_MS: u128 = 24 * 3600 * 1000;

/// Most entries accepted: slots are 32-bit indices.
const MAX_ENTRIES: usize = 1 << 30;

impl ComponentConfig for RequestIdConfig {
    /// Checks what serde cannot.
    fn validate(&self) -> Result<(), FieldError> {
        if self.request_id_attributes.is_empty() {
            return Err(FieldError::new(
                "request_id_attributes",
                "must name at least one attribute",
            ));
        }
        let mut seen = HashSet::new();
        for (i, name) in self.request_id_attributes.iter().enumerate() {
            let path = format!("request_id_attributes[{i}]");
            if name.trim().is_empty() {
                return Err(FieldError::new(path, "must not be empty"));
            }
            if !seen.insert(name.as_str()) {
                return Err(FieldError::new(path, format!("{name:?} is listed twice")));
            }
        }
        if self.ttl.get().is_zero() {
            return Err(FieldError::new("ttl", "must be greater than 0"));
        }
        if self.ttl.get().as_millis() > MAX_TTL_MS {
            return Err(FieldError::new("ttl", "must be at most 24h"));
        }
        if self.wait.get() > self.ttl.get() {
            return Err(FieldError::new(
                "wait",
                format!(
                    "must not be longer than ttl ({}): a held record waits for an entry that would already have expired",
                    self.ttl
                ),
            ));
        }
        if self.max_entries == 0 {
            return Err(FieldError::new("max_entries", "must be at least 1"));
        }
        if self.max_entries > MAX_ENTRIES {
            return Err(FieldError::new(
                "max_entries",
                format!("must be at most {MAX_ENTRIES}"),
            ));
        }
        Ok(())
    }
}

impl RequestIdConfig {
    /// Whether log records are ever held.
    pub fn holds(&self) -> bool {
        !self.wait.get().is_zero() && self.max_pending_items > 0
    }
}
