//! The `sli` scenario: OTLP/gRPC traces through a pipeline that fans out to the `sli`
//! connector and the `otlp` exporter, with 1,000 distinct series, against the same pipeline
//! without `sli`, in the same run. Every span is a SERVER span, so every span is a request
//! the connector has to account for (the worst case for it). The connector flushes every
//! second (15 times as often as by default) so that flushing is part of what is measured;
//! with quantiles the window is 4 flush intervals, the default's shape (1m of 15s flushes).
//! The three processes run in three interleaved rounds per load and each row is the median
//! round, since this shared machine's background load moves single runs by more than the
//! difference being measured.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Status, span};

use crate::harness::{
    Outcome, Sink, config, drive, print_header, print_named_row, serve_sink, start_sightline,
};
use crate::traces::{kv, request, sv};

/// Distinct (method, route, status code) combinations across the requests.
const SERIES: u64 = 1_000;
const ROUTES: u64 = 250;
/// Requests built; together they hold every series at least once.
const REQUESTS: u64 = 16;
/// Interleaved rounds per load; rows report the median.
const ROUNDS: usize = 3;

fn per_cpu_second(o: &Outcome) -> f64 {
    o.delivered_spans as f64 / o.cpu.max(1e-9)
}

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
    for (load, r) in [("max", 0u64), ("rate", rate)] {
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
                with("flush_interval: 1s, quantiles: { enabled: true, window: 4s }"),
            ),
        ];
        // Rounds interleave the targets, so a burst of load from elsewhere on the machine
        // hits them alike; each row is the round with the median spans per CPU-second.
        let mut outcomes: Vec<Vec<Outcome>> = targets.iter().map(|_| Vec::new()).collect();
        let mut points = vec![0u64; targets.len()];
        for _ in 0..ROUNDS {
            for (i, (name, config)) in targets.iter().enumerate() {
                let target = start_sightline(sightline, name, config, sink_addr).await?;
                let points_before = sink.points.load(Ordering::Relaxed);
                let o = drive(&target, &sink, requests.clone(), duration, r, concurrency).await?;
                points[i] += sink.points.load(Ordering::Relaxed) - points_before;
                outcomes[i].push(o);
            }
        }
        let load_text = if r == 0 {
            format!("{load} ({concurrency} clients)")
        } else {
            format!("{r} spans/s")
        };
        for (((name, _), mut runs), points) in targets.iter().zip(outcomes).zip(points) {
            runs.sort_by(|a, b| per_cpu_second(a).total_cmp(&per_cpu_second(b)));
            let all: Vec<String> = runs
                .iter()
                .map(|o| format!("{:.0}", per_cpu_second(o)))
                .collect();
            if let Some(median) = runs.get(runs.len() / 2) {
                print_named_row(name, &load_text, median);
            }
            eprintln!(
                "  {name} @ {load_text}: spans per CPU-second in each round {}; {points} metric data points reached the sink",
                all.join(", ")
            );
        }
    }
    Ok(())
}
