//! The `forward` connector takes no settings.

use serde::Deserialize;

/// `connectors.forward`: empty, and unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

impl pipeline_core::ComponentConfig for ForwardConfig {}
