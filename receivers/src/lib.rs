//! Sightline's built-in receivers: where data enters the graph.
//!
//! - [`otlp`]: OTLP over gRPC (4317) and HTTP (4318), protobuf and JSON, all three signals.
//! - [`filelog`]: tails log files (rotation-safe, checkpointed), parsing JSON or regex.
//! - [`hostmetrics`]: CPU, memory, disk, file system, network, load and process metrics of the node.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod filelog;
pub mod hostmetrics;
pub mod otlp;

use pipeline_core::{Registry, RegistryError};

/// Registers every receiver of this crate.
pub fn register(reg: &mut Registry) -> Result<(), RegistryError> {
    reg.add_receiver(filelog::Factory)?;
    reg.add_receiver(hostmetrics::Factory)?;
    reg.add_receiver(otlp::Factory)?;
    Ok(())
}
