//! # Sightline
//!
//! The `sightline` distribution: every built-in component family and the embedded default
//! config, run through [`pipeline_core::distribution`] (the command line, the service loop,
//! probes, self-metrics, signals). A custom distribution with plugin crates does the same
//! with its own [`Registry`]; see `examples/plugin`.

use std::process::ExitCode;

use pipeline_core::distribution::Distribution;
use pipeline_core::{Registry, RegistryError};

pub use pipeline_core::distribution::Cli;

/// The embedded default config (`configs/default.yaml`).
pub const DEFAULT_CONFIG: &str = include_str!("../configs/default.yaml");

/// Registers every built-in component family.
pub fn register_builtins(registry: &mut Registry) -> Result<(), RegistryError> {
    receivers::register(registry)?;
    processors::register(registry)?;
    connectors::register(registry)?;
    exporters::register(registry)?;
    Ok(())
}

/// A registry with every built-in component.
pub fn default_registry() -> Result<Registry, RegistryError> {
    let mut reg = Registry::new();
    register_builtins(&mut reg)?;
    Ok(reg)
}

/// Parses the command line and runs it with `registry` as the `sightline` distribution.
/// Exit codes: 0 success (and a clean shutdown on SIGTERM/SIGINT), 1 invalid config or
/// failed start, 2 usage error.
pub fn main_with(registry: Registry) -> ExitCode {
    Distribution::new("sightline", registry)
        .version(env!("CARGO_PKG_VERSION"))
        .default_config(DEFAULT_CONFIG)
        .run()
}
