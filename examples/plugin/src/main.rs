//! `sightline-attributes`: a Sightline distribution with every built-in component plus the
//! `attributes` processor of this crate. Same command line as `sightline` (run, `validate`,
//! `components`, `tap`); a config is required (`--config FILE`).

use std::process::ExitCode;

use pipeline_core::distribution::Distribution;
use pipeline_core::{Registry, RegistryError};

fn main() -> Result<ExitCode, RegistryError> {
    let mut registry = Registry::new();
    receivers::register(&mut registry)?;
    processors::register(&mut registry)?;
    connectors::register(&mut registry)?;
    exporters::register(&mut registry)?;
    sightline_attributes::register(&mut registry)?;
    let distribution = Distribution::new("sightline-attributes", registry);
    Ok(distribution.version(env!("CARGO_PKG_VERSION")).run())
}
