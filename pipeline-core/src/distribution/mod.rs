//! A distribution: a binary built from a [`Registry`] of components, with Sightline's command
//! line (run, `validate`, `components`), probes, self-metrics and signal handling.
//!
//! `sightline` itself is one; a plugin crate makes its own by registering the built-in
//! families and its components, then handing the registry to [`Distribution::run`]:
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use pipeline_core::Registry;
//! use pipeline_core::distribution::Distribution;
//!
//! fn main() -> Result<ExitCode, pipeline_core::RegistryError> {
//!     let mut registry = Registry::new();
//!     // receivers::register(&mut registry)?; ... registry.add_processor(my_plugin::Factory)?;
//!     Ok(Distribution::new("my-collector", registry).run())
//! }
//! ```
//!
//! Exit codes: 0 success (and a clean shutdown on SIGTERM/SIGINT), 1 invalid config or
//! failed start, 2 usage error.

mod admin;
mod cli;
mod logging;
mod page;
mod service;
mod tap;

use std::process::ExitCode;

use crate::Registry;

pub use cli::{Cli, Command};
pub use tap::TapArgs;

/// What a distribution is made of: its name (in `--help` and `--version`), its components,
/// and the config it runs when given none.
pub struct Distribution {
    name: &'static str,
    version: &'static str,
    registry: Registry,
    default_config: Option<&'static str>,
}

impl Distribution {
    /// A distribution of the components in `registry`, versioned as pipeline-core, with no
    /// default config (running it needs `--config`).
    pub fn new(name: &'static str, registry: Registry) -> Distribution {
        Distribution {
            name,
            version: env!("CARGO_PKG_VERSION"),
            registry,
            default_config: None,
        }
    }

    /// Sets the version `--version` prints (pass your crate's `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: &'static str) -> Distribution {
        self.version = version;
        self
    }

    /// Sets the YAML config run when no `--config` is given.
    pub fn default_config(mut self, yaml: &'static str) -> Distribution {
        self.default_config = Some(yaml);
        self
    }

    /// The registered components.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Parses the process's command line and runs it.
    pub fn run(self) -> ExitCode {
        cli::run(self)
    }
}
