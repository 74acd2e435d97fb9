//! # An example Sightline plugin crate
//!
//! Depends only on `pipeline-core` (the plugin API) and the built-in component families, and
//! adds one component: the [`attributes`] processor, otelcol's `attributes` processor
//! (insert / update / upsert / delete / hash actions on record attributes). `src/main.rs`
//! builds a distribution with the built-ins and this processor.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod attributes;

use pipeline_core::{Registry, RegistryError};

/// Registers this crate's components.
pub fn register(registry: &mut Registry) -> Result<(), RegistryError> {
    registry.add_processor(attributes::Factory)
}
