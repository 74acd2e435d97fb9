//! Sightline's built-in processors: what happens to data between receivers and exporters.
//!
//! - [`batch`]: groups small requests into larger batches by size or time.
//! - [`memory_limiter`]: refuses data while resident memory is above a limit.
//! - [`redaction`]: masks, hashes or removes personal data and secrets.
//! - [`request_id`]: joins logs and traces by request ID (trace context on log records,
//!   request IDs on spans), holding logs briefly for their span.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod batch;
pub mod memory_limiter;
pub mod redaction;
pub mod request_id;

use pipeline_core::{Registry, RegistryError};

/// Registers every processor of this crate.
pub fn register(reg: &mut Registry) -> Result<(), RegistryError> {
    reg.add_processor(batch::Factory)?;
    reg.add_processor(memory_limiter::Factory)?;
    reg.add_processor(redaction::Factory)?;
    reg.add_processor(request_id::Factory)?;
    Ok(())
}
