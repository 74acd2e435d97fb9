//! Sightline's built-in processors: what happens to data between receivers and exporters.
//!
//! - [`batch`]: groups small requests into larger batches by size or time.
//! - [`redaction`]: masks, hashes or removes personal data and secrets.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod batch;
pub mod redaction;

use pipeline_core::{Registry, RegistryError};

/// Registers every processor of this crate.
pub fn register(reg: &mut Registry) -> Result<(), RegistryError> {
    reg.add_processor(batch::Factory)?;
    reg.add_processor(redaction::Factory)?;
    Ok(())
}
