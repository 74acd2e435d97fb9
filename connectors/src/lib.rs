//! Sightline's built-in connectors: the exporter of one pipeline and the receiver of another.
//!
//! - [`forward`]: passes data unchanged from pipelines of one signal to others of the same.
//! - [`sli`]: derives RED metrics (requests, errors, durations) from spans and request logs.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod forward;
pub mod sli;

use pipeline_core::{Registry, RegistryError};

/// Registers every connector of this crate.
pub fn register(reg: &mut Registry) -> Result<(), RegistryError> {
    reg.add_connector(forward::Factory)?;
    reg.add_connector(sli::Factory)?;
    Ok(())
}
