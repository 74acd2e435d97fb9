//! The running `prometheus` exporter: folds batches into the series table and serves it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use pipeline_core::health::{ComponentStatus, HealthReporter};
use pipeline_core::net::HttpServer;
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::{
    Batch, Component, ComponentError, ConsumeError, Consumer, CreateContext, Host, Payload, Signal,
};

use super::config::PrometheusConfig;
use super::store::SeriesStore;
use super::text::{Format, render};

/// The `prometheus` exporter.
pub struct PrometheusExporter {
    config: PrometheusConfig,
    id: String,
    telemetry: ComponentTelemetry,
    health: HealthReporter,
    store: Arc<Mutex<SeriesStore>>,
    series_gauge: Option<prometheus::IntGauge>,
    server: tokio::sync::Mutex<Option<HttpServer>>,
}

impl PrometheusExporter {
    pub(crate) fn new(ctx: &CreateContext, config: PrometheusConfig) -> PrometheusExporter {
        let store = SeriesStore::new(
            config.translation(),
            config.max_series,
            config.metric_expiration.get(),
        );
        let series_gauge = ctx
            .telemetry
            .gauge_family(
                "sightline_prometheus_series",
                "Series the prometheus exporter holds for /metrics (target_info included)",
                &[],
            )
            .map(|g| g.with_label_values(&[ctx.id.as_str()]))
            .map_err(|e| tracing::warn!(error = %e, "cannot register sightline_prometheus_series"))
            .ok();
        PrometheusExporter {
            id: ctx.id.to_string(),
            telemetry: ctx.telemetry.clone(),
            health: ctx.health.clone(),
            store: Arc::new(Mutex::new(store)),
            series_gauge,
            server: tokio::sync::Mutex::new(None),
            config,
        }
    }

    /// The address `/metrics` is served on, once started.
    pub async fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server
            .lock()
            .await
            .as_ref()
            .map(HttpServer::local_addr)
    }

    /// The page a scrape in `format` would get now.
    pub fn render(&self, format: Format) -> String {
        let mut store = lock(&self.store);
        store.expire(Instant::now());
        render(&store, format)
    }
}

fn lock(store: &Mutex<SeriesStore>) -> std::sync::MutexGuard<'_, SeriesStore> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Consumer for PrometheusExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let (payload, ctx) = batch.into_parts();
        let mut resource_metrics = match payload {
            Payload::Metrics(rm) => rm,
            other => {
                ctx.dropped();
                return Err(ConsumeError::permanent(format!(
                    "the prometheus exporter takes metrics, not {}",
                    other.signal()
                )));
            }
        };
        let (outcome, series) = {
            let mut store = lock(&self.store);
            let outcome = store.fold(&mut resource_metrics, Instant::now());
            (outcome, store.series_count())
        };
        if let Some(g) = &self.series_gauge {
            g.set(i64::try_from(series).unwrap_or(i64::MAX));
        }
        self.telemetry.sent(Signal::Metrics, outcome.stored);
        for (reason, points) in &outcome.dropped {
            self.telemetry.dropped(Signal::Metrics, *points, reason);
        }
        if outcome.stored == 0 && !outcome.dropped.is_empty() {
            ctx.dropped();
        } else {
            ctx.delivered();
        }
        Ok(())
    }
}

#[async_trait]
impl Component for PrometheusExporter {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let mut server = self.server.lock().await;
        if server.is_some() {
            return Ok(());
        }
        let router = axum::Router::new()
            .route("/metrics", axum::routing::get(scrape))
            .with_state(Arc::clone(&self.store));
        let started =
            HttpServer::start(&self.config.endpoint, self.config.tls.as_ref(), router).await?;
        tracing::info!(exporter = %self.id, endpoint = %started.local_addr(), "serving /metrics");
        *server = Some(started);
        self.health.report(ComponentStatus::Ok);
        Ok(())
    }

    async fn shutdown(&self, deadline: tokio::time::Instant) -> Result<(), ComponentError> {
        if let Some(server) = self.server.lock().await.take() {
            server.shutdown(deadline).await;
        }
        self.health.report(ComponentStatus::Stopped);
        Ok(())
    }
}

async fn scrape(State(store): State<Arc<Mutex<SeriesStore>>>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    let body = {
        let mut store = lock(&store);
        store.expire(Instant::now());
        render(&store, format)
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}
