//! # Sightline
//!
//! The binary's library half: the command line, the service loop (config -> graph ->
//! probes and self-metrics -> signals -> drain), and the embedded default config. A custom
//! distribution (with plugin crates) builds its own [`Registry`] and calls [`main_with`].

mod admin;
mod cli;
mod logging;
mod service;

use std::process::ExitCode;

use pipeline_core::{Registry, RegistryError};

pub use cli::Cli;

/// The embedded default config (`configs/default.yaml`).
pub const DEFAULT_CONFIG: &str = include_str!("../configs/default.yaml");

/// A registry with every built-in component.
pub fn default_registry() -> Result<Registry, RegistryError> {
    let mut reg = Registry::new();
    receivers::register(&mut reg)?;
    processors::register(&mut reg)?;
    connectors::register(&mut reg)?;
    exporters::register(&mut reg)?;
    Ok(reg)
}

/// Parses the command line and runs it with `registry`. Exit codes: 0 success (and a clean
/// shutdown on SIGTERM/SIGINT), 1 invalid config or failed start, 2 usage error.
pub fn main_with(registry: Registry) -> ExitCode {
    cli::run(registry)
}
