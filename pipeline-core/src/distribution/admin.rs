//! The service's own HTTP endpoints: health probes (`/health/live`, `/health/ready`,
//! `/health/startup`, with the seed guide's JSON bodies), and on the self-telemetry endpoint
//! the self-metrics (`/metrics`), the live pipeline page (`/`, see `page.rs`) and the tap
//! stream (`/tap`, see `tap.rs`).

use crate::health::HealthRegistry;
use crate::telemetry::Telemetry;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::page::LiveView;

fn json_response(ok: bool, body: serde_json::Value) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The probe routes.
pub(crate) fn health_router(health: HealthRegistry) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { json_response(true, json!({"status": "healthy"})) }),
        )
        .route(
            "/health/ready",
            get(|State(h): State<HealthRegistry>| async move {
                let r = h.readiness();
                let status = if r.ready { "ready" } else { "not ready" };
                json_response(r.ready, json!({"status": status, "checks": r.checks}))
            }),
        )
        .route(
            "/health/startup",
            get(|State(h): State<HealthRegistry>| async move {
                let started = h.started();
                json_response(
                    started,
                    json!({"status": if started { "started" } else { "starting" }}),
                )
            }),
        )
        .with_state(health)
}

/// The self-telemetry routes: `/metrics`, the live pipeline page at `/`, and `/tap`.
pub(crate) fn telemetry_router(telemetry: Telemetry, live: Arc<LiveView>) -> Router {
    let page = Router::new()
        .route(
            "/",
            get(|State(live): State<Arc<LiveView>>| async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    live.render(),
                )
            }),
        )
        .route(
            "/tap",
            get(
                |State(live): State<Arc<LiveView>>, uri: axum::http::Uri| async move {
                    super::tap::serve(&live.telemetry, &live, uri.query())
                },
            ),
        )
        .with_state(live);
    Router::new()
        .route(
            "/metrics",
            get(|State(t): State<Telemetry>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    t.render(),
                )
            }),
        )
        .with_state(telemetry)
        .merge(page)
}
