//! The `debug` exporter's config.

use pipeline_core::{ComponentConfig, FieldError};
use serde::{Deserialize, Serialize};

/// `verbosity`: how much of each batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One line per batch: signal and counts (the default).
    #[default]
    Basic,
    /// The counts line, then the whole batch as one line of OTLP/JSON.
    Detailed,
}

/// Config of the `debug` exporter.
///
/// ```yaml
/// exporters:
///   debug:
///     verbosity: detailed   # or basic (default)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// How much to write (default `basic`).
    pub verbosity: Verbosity,
}

impl ComponentConfig for DebugConfig {
    /// Checks the values (there is nothing that can be wrong once parsed).
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}
