//! The `file` exporter's config.

use std::path::PathBuf;

use pipeline_core::config::HumanDuration;
use pipeline_core::{ComponentConfig, FieldError};
use serde::{Deserialize, Serialize};

fn default_flush_interval() -> HumanDuration {
    HumanDuration::from_secs(1)
}

/// Config of the `file` exporter.
///
/// ```yaml
/// exporters:
///   file:
///     path: /var/lib/sightline/export.jsonl
///     flush_interval: 1s
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to (created, with its parent directories, at start). Required.
    pub path: PathBuf,
    /// How often buffered lines are written out (default `1s`; `0` writes every batch at
    /// once). Lines are also written whenever 256 KiB are buffered, and at shutdown.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: HumanDuration,
}

impl ComponentConfig for FileConfig {
    /// `path` is required; the default names a file in the working directory.
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "path": "sightline-export.jsonl" })
    }

    /// Checks the values.
    fn validate(&self) -> Result<(), FieldError> {
        if self.path.as_os_str().is_empty() {
            return Err(FieldError::new("path", "must not be empty"));
        }
        if self.path.to_string_lossy().ends_with(['/', '\\']) {
            return Err(FieldError::new(
                "path",
                format!("{} names a directory; name a file", self.path.display()),
            ));
        }
        Ok(())
    }
}
