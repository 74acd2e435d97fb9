//! Sightline's built-in receivers: where data enters the graph.
//!
//! - [`otlp`]: OTLP over gRPC (4317) and HTTP (4318), protobuf and JSON, all three signals.
//! - [`filelog`]: tails log files (rotation-safe, checkpointed), parsing JSON or regex.
//! - [`hostmetrics`]: CPU, memory, disk, file system, network, load and process metrics of the node.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod filelog;
pub mod hostmetrics;
pub mod otlp;

/// Entry points for the fuzz targets in `fuzz/` (and the seed-corpus tests).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::filelog::fuzzing::filelog_json_line;
    pub use crate::otlp::fuzzing::{HarnessAnswer, OtlpHttpHarness};
}

use pipeline_core::{Registry, RegistryError};

/// Registers every receiver of this crate.
pub fn register(reg: &mut Registry) -> Result<(), RegistryError> {
    reg.add_receiver(filelog::Factory)?;
    reg.add_receiver(hostmetrics::Factory)?;
    reg.add_receiver(otlp::Factory)?;
    Ok(())
}
