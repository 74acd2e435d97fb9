//! Running the service: load and validate the config, serve probes and self-metrics, build
//! and start the graph, reload it on SIGHUP (and, with `--watch-config`, when a config file
//! changes), wait for SIGTERM or SIGINT, then drain within `service.shutdown_timeout` and exit
//! 0.
//!
//! A reload re-reads every config file, validates it, builds the new graph beside the running
//! one and swaps it in ([`Graph::take_over`]): unchanged receivers keep their ports, data in
//! flight drains, and an invalid config is logged and rejected while the running graph goes
//! on. `service.telemetry` and `service.health` take effect at the next start.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounterVec;
use tokio::signal::unix::{Signal as UnixSignal, SignalKind, signal};
use tokio::time::Instant;

use super::page::LiveView;
use crate::Registry;
use crate::config::Config;
use crate::graph::Graph;
use crate::health::HealthRegistry;
use crate::net::HttpServer;
use crate::telemetry::Telemetry;
use crate::{ComponentError, Host};

/// How often `--watch-config` looks at the config files.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What the command line gave the service.
pub(crate) struct Settings {
    pub(crate) registry: Registry,
    pub(crate) files: Vec<String>,
    pub(crate) default: Option<&'static str>,
    pub(crate) watch: bool,
}

fn enabled(endpoint: &str) -> bool {
    !endpoint.is_empty() && endpoint != "none"
}

pub(crate) fn run(settings: Settings) -> ExitCode {
    let config = match super::cli::load(&settings.registry, &settings.files, settings.default) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!(
                "sightline: invalid configuration ({} error(s)); see `sightline validate`",
                errors.0.len()
            );
            return ExitCode::from(1);
        }
    };
    super::logging::init(&config.service.telemetry.logs);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(settings, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "sightline failed");
            ExitCode::from(1)
        }
    }
}

async fn serve(settings: Settings, config: Config) -> Result<(), String> {
    // Installed first: SIGHUP's default action would end the process.
    let mut hup = signal(SignalKind::hangup()).ok();
    let telemetry = Telemetry::new();
    let health = HealthRegistry::default();
    let mut admin = Vec::new();
    let health_endpoint = &config.service.health.endpoint;
    if enabled(health_endpoint) {
        let server = HttpServer::start(
            health_endpoint,
            None,
            super::admin::health_router(health.clone()),
        )
        .await
        .map_err(|e| describe(&e))?;
        tracing::info!(endpoint = %server.local_addr(), "health probes listening");
        admin.push(server);
    }
    let live = LiveView::new(telemetry.clone());
    let metrics_endpoint = &config.service.telemetry.metrics.endpoint;
    if enabled(metrics_endpoint) {
        let server = HttpServer::start(
            metrics_endpoint,
            None,
            super::admin::telemetry_router(telemetry.clone(), live.clone()),
        )
        .await
        .map_err(|e| describe(&e))?;
        tracing::info!(endpoint = %server.local_addr(), "self-metrics listening");
        admin.push(server);
    }
    // Build and start errors may quote config values; none may quote what came from the
    // environment (a secret in a header, a token in a path).
    let redact = |e: &dyn std::fmt::Display| config.env_values.redact(&e.to_string());
    let graph =
        Graph::build(&config, &settings.registry, &telemetry, &health).map_err(|e| redact(&e))?;
    let host = Host::new(config.service.data_dir.0.clone());
    graph.start(&host).await.map_err(|e| redact(&e))?;
    live.set_layout(graph.layout());
    let sampler = tokio::spawn(live.clone().run_sampler());
    tracing::info!(
        pipelines = config.service.pipelines.len(),
        "sightline started"
    );

    let mut service = Service {
        reloads: reload_counter(&telemetry),
        sources: read_sources(&settings.files),
        settings,
        telemetry,
        health,
        host,
        config,
        graph: Some(graph),
        live,
    };
    let mut signals = Signals::new();
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let why = loop {
        tokio::select! {
            why = signals.stop() => break why,
            () = hangup(&mut hup) => service.reload("SIGHUP").await,
            _ = watch.tick(), if service.settings.watch => {
                if read_sources(&service.settings.files) != service.sources {
                    service.reload("a config file changed").await;
                }
            }
        }
    };
    let timeout = service.config.service.shutdown_timeout.0.get();
    tracing::info!(signal = why, timeout = ?timeout, "shutting down: receivers first, then draining");
    let deadline = Instant::now() + timeout;
    if let Some(graph) = service.graph.take() {
        graph.shutdown(deadline).await;
    }
    sampler.abort();
    for server in admin {
        server.shutdown(Instant::now()).await;
    }
    tracing::info!("sightline stopped");
    Ok(())
}

/// The running service, between signals.
struct Service {
    settings: Settings,
    telemetry: Telemetry,
    health: HealthRegistry,
    host: Host,
    /// The config the running graph was built from.
    config: Config,
    /// The running graph (taken out only while a reload swaps it).
    graph: Option<Graph>,
    /// The config files' texts as last loaded, to see when `--watch-config` should reload.
    sources: Vec<Option<String>>,
    /// `sightline_config_reloads_total{outcome}`.
    reloads: IntCounterVec,
    /// The live pipeline page's view.
    live: Arc<LiveView>,
}

impl Service {
    /// Re-reads the config and swaps the new graph in, or logs why not and keeps running.
    async fn reload(&mut self, why: &str) {
        tracing::info!(trigger = why, "reloading the configuration");
        self.sources = read_sources(&self.settings.files);
        let outcome = match self.try_reload().await {
            Ok(()) => "success",
            Err(errors) => {
                for e in &errors {
                    tracing::error!(error = %e, "configuration reload rejected");
                }
                tracing::error!(
                    errors = errors.len(),
                    "configuration reload rejected; the running pipelines go on unchanged"
                );
                "rejected"
            }
        };
        self.reloads.with_label_values(&[outcome]).inc();
    }

    async fn try_reload(&mut self) -> Result<(), Vec<String>> {
        let s = &self.settings;
        let config = super::cli::load(&s.registry, &s.files, s.default)
            .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let redact = |e: &dyn std::fmt::Display| vec![config.env_values.redact(&e.to_string())];
        let Some(running) = self.graph.take() else {
            return Err(vec!["no graph is running".into()]);
        };
        let next = match Graph::build_next(
            &config,
            &s.registry,
            &self.telemetry,
            &self.health,
            &running,
        ) {
            Ok(next) => next,
            Err(e) => {
                self.graph = Some(running);
                return Err(redact(&e));
            }
        };
        let deadline = Instant::now() + config.service.shutdown_timeout.0.get();
        match next.take_over(running, &self.host, deadline).await {
            Ok(graph) => {
                let kept: Vec<&str> = graph.adopted().collect();
                tracing::info!(
                    pipelines = config.service.pipelines.len(),
                    kept = ?kept,
                    "configuration reloaded"
                );
                self.live.set_layout(graph.layout());
                self.graph = Some(graph);
                let (new, old) = (&config.service, &self.config.service);
                if new.telemetry.metrics.endpoint != old.telemetry.metrics.endpoint
                    || new.health.endpoint != old.health.endpoint
                    || new.telemetry.logs.level != old.telemetry.logs.level
                    || new.telemetry.logs.format != old.telemetry.logs.format
                {
                    tracing::warn!(
                        "service.telemetry and service.health changes take effect at the next start"
                    );
                }
                self.config = config;
                Ok(())
            }
            Err(rejected) => {
                self.graph = Some(rejected.running);
                Err(redact(&rejected.error))
            }
        }
    }
}

fn reload_counter(telemetry: &Telemetry) -> IntCounterVec {
    let counter = IntCounterVec::new(
        prometheus::Opts::new(
            "sightline_config_reloads_total",
            "Configuration reloads (SIGHUP, --watch-config) by outcome: success, rejected.",
        ),
        &["outcome"],
    )
    .unwrap_or_else(|e| unreachable!("constant metric definition: {e}"));
    let _ = telemetry.registry().register(Box::new(counter.clone()));
    counter
}

/// The texts of the config files (`None` for one that cannot be read).
fn read_sources(files: &[String]) -> Vec<Option<String>> {
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).ok())
        .collect()
}

fn describe(e: &ComponentError) -> String {
    e.to_string()
}

/// The signals that stop the service: SIGTERM and SIGINT.
struct Signals {
    term: Option<UnixSignal>,
    int: Option<UnixSignal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn stop(&mut self) -> &'static str {
        match (&mut self.term, &mut self.int) {
            (Some(term), Some(int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
}

/// The next SIGHUP (never, if its handler could not be installed).
async fn hangup(hup: &mut Option<UnixSignal>) {
    match hup {
        Some(hup) => {
            hup.recv().await;
        }
        None => std::future::pending().await,
    }
}
