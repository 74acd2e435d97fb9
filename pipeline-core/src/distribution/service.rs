//! Running the service: load and validate the config, serve probes and self-metrics, build
//! and start the graph, wait for SIGTERM or SIGINT, then drain within
//! `service.shutdown_timeout` and exit 0.

use std::process::ExitCode;

use crate::Registry;
use crate::graph::Graph;
use crate::health::HealthRegistry;
use crate::net::HttpServer;
use crate::telemetry::Telemetry;
use crate::{ComponentError, Host};
use tokio::time::Instant;

fn enabled(endpoint: &str) -> bool {
    !endpoint.is_empty() && endpoint != "none"
}

pub(crate) fn run(registry: Registry, files: &[String], default: Option<&str>) -> ExitCode {
    let config = match super::cli::load(&registry, files, default) {
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
    match runtime.block_on(serve(registry, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "sightline failed");
            ExitCode::from(1)
        }
    }
}

async fn serve(registry: Registry, config: crate::config::Config) -> Result<(), String> {
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
    let metrics_endpoint = &config.service.telemetry.metrics.endpoint;
    if enabled(metrics_endpoint) {
        let server = HttpServer::start(
            metrics_endpoint,
            None,
            super::admin::metrics_router(telemetry.clone()),
        )
        .await
        .map_err(|e| describe(&e))?;
        tracing::info!(endpoint = %server.local_addr(), "self-metrics listening");
        admin.push(server);
    }
    // Build and start errors may quote config values; none may quote what came from the
    // environment (a secret in a header, a token in a path).
    let redact = |e: &dyn std::fmt::Display| config.env_values.redact(&e.to_string());
    let graph = Graph::build(&config, &registry, &telemetry, &health).map_err(|e| redact(&e))?;
    let host = Host::new(config.service.data_dir.0.clone());
    graph.start(&host).await.map_err(|e| redact(&e))?;
    tracing::info!(
        pipelines = config.service.pipelines.len(),
        "sightline started"
    );

    let why = wait_for_signal().await;
    let timeout = config.service.shutdown_timeout.0.get();
    tracing::info!(signal = why, timeout = ?timeout, "shutting down: receivers first, then draining");
    let deadline = Instant::now() + timeout;
    graph.shutdown(deadline).await;
    for server in admin {
        server.shutdown(Instant::now()).await;
    }
    tracing::info!("sightline stopped");
    Ok(())
}

fn describe(e: &ComponentError) -> String {
    e.to_string()
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
