//! The `sli` scenario: OTLP/gRPC traces through a pipeline that fans out to the `sli`
//! connector and the `otlp` exporter, with 1,000 distinct series, against the same pipeline
//! without `sli`, in the same run. Every span is a SERVER span, so every span is a request
//! the connector has to account for (the worst case for it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Status, span};

use crate::harness::{Sink, config, drive, print_header, print_row, serve_sink, start_sightline};
use crate::traces::{kv, request, sv};

/// Distinct (method, route, status code) combinations across the requests.
const SERIES: u64 = 1_000;
const ROUTES: u64 = 250;
/// Requests built; together they hold every series at least once.
const REQUESTS: u64 = 16;

/// The foundation scenario's request with every span a SERVER span and its method, route
/// and status code chosen so that the requests cover `SERIES` series.
fn sli_request(seed: u64) -> ExportTraceServiceRequest {
    let mut r = request(seed);
    let mut n = seed * 100;
    for s in r
        .resource_spans
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
    {
        let combo = n % SERIES;
        n += 1;
        let route = format!("/api/v1/resource{}/{{id}}", combo % ROUTES);
        let method = if (combo / ROUTES) % 2 == 0 {
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
    for (load, r) in [("rate", rate)] {
        let targets = [
            (
                "sightline (otlp -> batch -> otlp, without sli)",
                without.clone(),
            ),
            (
                "sightline (otlp -> batch -> [sli, otlp], sli -> otlp)",
                with("flush_interval: 1s"),
            ),
            (
                "sightline (same, sli with quantiles)",
                with("flush_interval: 1s, quantiles: { enabled: true }"),
            ),
            (
                "TMP sli to file devnull",
                config(
                    &format!(
                        "processors: {{ batch: {{}} }}\nconnectors: {{ sli: {{ flush_interval: 1s }} }}\nexporters: {{ {exporter}, file: {{ path: /dev/null }} }}"
                    ),
                    "    traces: { receivers: [otlp], processors: [batch], exporters: [sli, otlp] }\n    metrics: { receivers: [sli], exporters: [file] }",
                ),
            ),
            (
                "TMP sli flush 1h",
                with("flush_interval: 1h, series_expiry: 0"),
            ),
        ];
        for (name, config) in targets {
            let target = start_sightline(sightline, name, &config, sink_addr).await?;
            let points_before = sink.points.load(Ordering::Relaxed);
            let o = drive(&target, &sink, requests.clone(), duration, r, concurrency).await?;
            let load_text = if r == 0 {
                format!("{load} ({concurrency} clients)")
            } else {
                format!("{r} spans/s")
            };
            print_row(&target, &load_text, &o);
            let points = sink.points.load(Ordering::Relaxed) - points_before;
            if points > 0 {
                eprintln!("  {name}: {points} metric data points reached the sink");
            }
        }
    }
    Ok(())
}
