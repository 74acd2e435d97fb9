//! The `sli` scenario: OTLP/gRPC traces through a pipeline that fans out to the `sli`
//! connector and the `otlp` exporter, with 1,000 distinct series, against the same pipeline
//! without `sli`, in the same run. Every span is a SERVER span, so every span is a request
//! the connector has to account for (the worst case for it). The connector runs with its
//! defaults (15s flushes: run 30s or more so that flushes fall in the measured window), and
//! flushing every second (15 times the default's flush work) with and without quantiles
//! (the window 4 flush intervals, the default's shape of 1m of 15s flushes).
//! The four processes run in three interleaved rounds per load and each row is the median
//! round, since this shared machine's background load moves single runs by more than the
//! difference being measured.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Status, span};

use crate::harness::{
    Sink, config, interleaved_runs, load_label, print_header, print_rounds, serve_sink,
};
use crate::traces::{kv, request, sv};

/// Distinct (method, route, status code) combinations across the requests.
const SERIES: u64 = 1_000;
const ROUTES: u64 = 250;
/// Requests built; together they hold every series at least once.
const REQUESTS: u64 = 16;
/// Interleaved rounds per load; rows report the median.
const ROUNDS: usize = 3;

/// The foundation scenario's request with every span a SERVER span and its method, route
/// and status code chosen so that the requests cover `SERIES` series.
fn sli_request(seed: u64) -> ExportTraceServiceRequest {
    let mut r = request(seed);
    let spans = r
        .resource_spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans);
    for (n, s) in (seed * 100..).zip(spans) {
        let combo = n % SERIES;
        let route = format!("/api/v1/resource{}/{{id}}", combo % ROUTES);
        let method = if (combo / ROUTES).is_multiple_of(2) {
            "GET"
        } else {
            "POST"
        };
        let code = if combo / (2 * ROUTES) == 0 { 200 } else { 503 };
        s.kind = span::SpanKind::Server as i32;
        s.name = format!("{method} {route}");
        s.status = Some(Status {
            code: if code >= 500 { 2 } else { 0 },
            message: String::new(),
        });
        for a in &mut s.attributes {
            match a.key.as_str() {
                "http.request.method" => *a = kv("http.request.method", sv(method)),
                "http.route" => *a = kv("http.route", sv(&route)),
                "http.response.status_code" => {
                    *a = kv(
                        "http.response.status_code",
                        opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(code),
                    )
                }
                _ => {}
            }
        }
    }
    r
}

/// Runs the scenario and prints its table.
pub(crate) async fn run(
    sightline: &str,
    duration: Duration,
    rate: u64,
    concurrency: usize,
) -> Result<()> {
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await?;
    let requests = Arc::new((0..REQUESTS).map(sli_request).collect::<Vec<_>>());
    let exporter = "otlp: { endpoint: 'http://{SINK}', compression: none }";
    let without = config(
        &format!("processors: {{ batch: {{}} }}\nexporters: {{ {exporter} }}"),
        "    traces: { receivers: [otlp], processors: [batch], exporters: [otlp] }",
    );
    let with = |sli: &str| {
        config(
            &format!(
                "processors: {{ batch: {{}} }}\nconnectors: {{ sli: {{ {sli} }} }}\nexporters: {{ {exporter} }}"
            ),
            "    traces: { receivers: [otlp], processors: [batch], exporters: [sli, otlp] }\n    metrics: { receivers: [sli], exporters: [otlp] }",
        )
    };
    print_header();
    for r in [0u64, rate] {
        let targets: Vec<(String, String)> = [
            (
                "sightline (otlp -> batch -> otlp, without sli)",
                without.clone(),
            ),
            (
                "sightline (otlp -> batch -> [sli, otlp], sli -> otlp; sli defaults, 15s flushes)",
                with("flush_interval: 15s"),
            ),
            ("sightline (same, 1s flushes)", with("flush_interval: 1s")),
            (
                "sightline (same, 1s flushes, quantiles over 4s)",
                with("flush_interval: 1s, quantiles: { enabled: true, window: 4s }"),
            ),
        ]
        .into_iter()
        .map(|(name, config)| (name.to_string(), config))
        .collect();
        let points_before = sink.points.load(Ordering::Relaxed);
        let runs = interleaved_runs(
            sightline,
            &targets,
            &sink,
            sink_addr,
            requests.clone(),
            duration,
            r,
            concurrency,
            ROUNDS,
        )
        .await?;
        let load_text = load_label(r, concurrency, "spans");
        print_rounds(&targets, &runs, &load_text);
        eprintln!(
            "  @ {load_text}: {} metric data points from the sli processes reached the sink",
            sink.points.load(Ordering::Relaxed) - points_before
        );
    }
    Ok(())
}
