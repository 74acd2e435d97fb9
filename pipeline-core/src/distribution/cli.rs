//! The command line: run (default), `validate`, `components`, `tap`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use super::Distribution;
use crate::Registry;
use crate::config::{ConfigErrors, ConfigSource};

/// Sightline: a telemetry pipeline in the OpenTelemetry Collector's shape.
///
/// With no command, runs the pipelines of the given configs (or of the embedded default:
/// OTLP on 127.0.0.1:4317/4318 -> batch -> debug; health on 13133; metrics on 8888).
#[derive(Debug, Parser)]
#[command(name = "sightline", about, long_about)]
pub struct Cli {
    /// A YAML config file. Repeatable: later files are deep-merged over earlier ones.
    #[arg(long = "config", short = 'c', value_name = "FILE", global = true)]
    pub config: Vec<String>,

    /// Reload when a config file changes (checked every second), as on SIGHUP.
    #[arg(long = "watch-config")]
    pub watch_config: bool,

    /// What to do; without a command, run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check configs and print every error (file, component, field path); exit 1 if any.
    Validate {
        /// Also report each persistent sending queue's depth and integrity (read-only).
        #[arg(long)]
        check_storage: bool,
    },
    /// List every registered receiver, processor, connector and exporter with its signals.
    Components,
    /// Print samples of what passes a running component's output, as OTLP/JSON lines.
    Tap(super::tap::TapArgs),
}

pub(crate) fn run(dist: Distribution) -> ExitCode {
    let command = Cli::command().name(dist.name).version(dist.version);
    let cli = match command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let default = dist.default_config;
    match cli.command {
        Some(Command::Components) => components(&dist.registry),
        Some(Command::Tap(args)) => super::tap::run(args),
        Some(Command::Validate { check_storage }) => {
            validate(&dist.registry, &cli.config, default, check_storage)
        }
        None => super::service::run(super::service::Settings {
            registry: dist.registry,
            files: cli.config,
            default,
            watch: cli.watch_config,
        }),
    }
}

/// Reads the files named on the command line, or the embedded default when there are none.
pub(crate) fn sources(
    files: &[String],
    default: Option<&str>,
) -> Result<Vec<ConfigSource>, ConfigErrors> {
    if files.is_empty() {
        return match default {
            Some(text) => Ok(vec![ConfigSource {
                name: "<embedded default>".into(),
                text: text.into(),
            }]),
            None => Err(ConfigErrors(vec![crate::config::ConfigError {
                file: "<command line>".into(),
                component: String::new(),
                path: String::new(),
                message: "no config given: pass --config FILE".into(),
            }])),
        };
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(text) => out.push(ConfigSource {
                name: f.clone(),
                text,
            }),
            Err(e) => errors.push(crate::config::ConfigError {
                file: f.clone(),
                component: String::new(),
                path: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Loads and validates; prints warnings to stderr.
pub(crate) fn load(
    registry: &Registry,
    files: &[String],
    default: Option<&str>,
) -> Result<crate::config::Config, ConfigErrors> {
    let env = |name: &str| std::env::var(name).ok();
    let config = crate::config::load(&sources(files, default)?, &env)?;
    let v = crate::graph::validate(&config, registry);
    for w in &v.warnings {
        eprintln!("warning: {w}");
    }
    if v.errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(v.errors))
    }
}

fn validate(
    registry: &Registry,
    files: &[String],
    default: Option<&str>,
    check_storage: bool,
) -> ExitCode {
    match load(registry, files, default) {
        Ok(config) => {
            println!("configuration is valid");
            if check_storage {
                report_storage(&config);
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s) found", errors.0.len());
            ExitCode::from(1)
        }
    }
}

/// Prints the depth and integrity of every exporter's persistent queue, changing nothing.
fn report_storage(config: &crate::config::Config) {
    let exporters = config.components.get(&crate::ComponentKind::Exporter);
    let mut found = false;
    for (id, raw) in exporters.into_iter().flatten() {
        let Some(storage) = raw
            .pointer("/sending_queue/storage")
            .and_then(|v| v.as_str())
        else {
            continue;
        };
        found = true;
        let base = std::path::Path::new(storage);
        let base = if base.is_absolute() {
            base.to_path_buf()
        } else {
            config.service.data_dir.0.join(base)
        };
        let dir = base.join(id.as_str().replace('/', "-"));
        match crate::queue::inspect(&dir) {
            Ok(r) => {
                let integrity = if r.corrupt_records == 0 {
                    "integrity ok".to_string()
                } else {
                    format!(
                        "DAMAGED: {} torn or corrupt record(s), {} bytes lost (cut and counted at the next start)",
                        r.corrupt_records, r.corrupt_bytes
                    )
                };
                println!(
                    "exporter {id}: queue {}: {} segment(s), {} bytes on disk, {} record(s) waiting ({} items); {integrity}",
                    dir.display(),
                    r.segments,
                    r.bytes,
                    r.records,
                    r.items
                );
            }
            Err(e) => println!("exporter {id}: queue {}: cannot read: {e}", dir.display()),
        }
    }
    if !found {
        println!("no exporter has a persistent sending queue (sending_queue.storage)");
    }
}

fn components(registry: &Registry) -> ExitCode {
    println!("{:<10} {:<16} signals", "kind", "type");
    for c in registry.describe() {
        println!(
            "{:<10} {:<16} {}",
            c.kind.as_str(),
            c.type_name,
            c.signals.join(", ")
        );
    }
    ExitCode::SUCCESS
}
