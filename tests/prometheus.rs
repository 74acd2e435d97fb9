//! End to end with a real Prometheus (Debian's `prometheus` 2.42, started per test on a free
//! port): the real binary fed over OTLP/gRPC by a tonic client, read back through
//! Prometheus's HTTP API.
//!
//! - `prometheus` exporter: Prometheus scrapes `/metrics` (OpenMetrics, so exemplars too)
//!   and finds the exact values of a counter, a gauge, a histogram and a summary;
//!   `promtool check metrics` finds nothing wrong with the text format; the seed's RED
//!   series from `sli` and the host series from `hostmetrics` are there by name.
//! - `prometheusremotewrite`: Prometheus's remote-write receiver gets the same values, and
//!   nothing sent while Prometheus was down for a while is lost.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::prometheus::{Prometheus, scrape_config};
use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    metric, number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use pipeline_core::attributes::string as kv;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// A label value with everything the text format must escape.
const WEIRD_VALUE: &str = "quote\" backslash\\ newline\n tab\t ünïcode {}=,";

fn metric(name: &str, description: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// One of each kind, for service `checkout`, stamped `t`: `http.requests` GET=42, POST=7;
/// `process.memory.usage` 1048576 By; `http.server.duration` with the seed's buckets
/// (counts 1,2,3,0,0,0,0,0,1; sum 11.5) and an exemplar of 0.07 s; `rpc.latency` summary.
fn request(t: u64, requests_get: i64) -> ExportMetricsServiceRequest {
    let start = t - 60_000_000_000;
    let counter = |method: &str, v: i64| NumberDataPoint {
        attributes: vec![kv("method", method)],
        start_time_unix_nano: start,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    };
    let metrics = vec![
        metric(
            "http.requests",
            "Total HTTP requests",
            "{request}",
            metric::Data::Sum(Sum {
                data_points: vec![counter("GET", requests_get), counter("POST", 7)],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
        ),
        metric(
            "process.memory.usage",
            "Memory in use",
            "By",
            metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: vec![kv("state", "used")],
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsDouble(1_048_576.0)),
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "http.server.duration",
            "HTTP request duration",
            "s",
            metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: vec![kv("endpoint", "/api/users/{id}")],
                    start_time_unix_nano: start,
                    time_unix_nano: t,
                    count: 7,
                    sum: Some(11.5),
                    bucket_counts: vec![1, 2, 3, 0, 0, 0, 0, 0, 1],
                    explicit_bounds: vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0],
                    exemplars: vec![Exemplar {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0xcd; 8],
                        time_unix_nano: t,
                        value: Some(exemplar::Value::AsDouble(0.07)),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        ),
        metric(
            "rpc.latency",
            "RPC latency",
            "s",
            metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    start_time_unix_nano: start,
                    time_unix_nano: t,
                    count: 40,
                    sum: 12.5,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 0.25,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 0.9,
                        },
                    ],
                    ..Default::default()
                }],
            }),
        ),
        // Hostile names and values: sanitised and escaped, never a broken page.
        metric(
            "weird.name-with spaces/ünïcode",
            "Help with \\ backslash and\nnewline",
            "By",
            metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: vec![
                        kv("bad key!", WEIRD_VALUE),
                        kv("0digit", "x"),
                        kv("_under", "y"),
                    ],
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsDouble(-0.5)),
                    ..Default::default()
                }],
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.instance.id", "pod-1"),
                    kv("deployment.environment", "test"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// OTLP/gRPC in, `exporter` (`type: { ... }`) out, for metrics.
fn config(ports: Ports, exporter: &str) -> String {
    let name = exporter.split(':').next().unwrap_or_default();
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
  {exporter}
service:
  telemetry: {{ metrics: {{ endpoint: "127.0.0.1:{metrics}" }} }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [{name}] }}
"#,
        grpc = ports.grpc,
        metrics = ports.metrics,
        health = ports.health,
    )
}

async fn send(s: &Sightline, request: ExportMetricsServiceRequest) {
    let mut client = MetricsServiceClient::connect(s.grpc_url()).await.unwrap();
    client.export(request).await.unwrap();
}

/// The checks both exporters must pass: the exact values of each kind, named and labelled
/// as the translation says.
async fn assert_values(p: &Prometheus) {
    let id = r#"job="checkout",instance="pod-1""#;
    p.wait_value(
        &format!(r#"http_requests_total{{{id},method="GET"}}"#),
        42.0,
    )
    .await;
    p.wait_value(
        &format!(r#"http_requests_total{{{id},method="POST"}}"#),
        7.0,
    )
    .await;
    p.wait_value(
        &format!(r#"process_memory_usage_bytes{{{id},state="used"}}"#),
        1_048_576.0,
    )
    .await;
    let h = format!(r#"{id},endpoint="/api/users/{{id}}""#);
    for (le, count) in [
        ("0.01", 1.0),
        ("0.05", 3.0),
        ("0.1", 6.0),
        ("10", 6.0),
        ("+Inf", 7.0),
    ] {
        p.wait_value(
            &format!(r#"http_server_duration_seconds_bucket{{{h},le="{le}"}}"#),
            count,
        )
        .await;
    }
    let buckets = p
        .wait_for(
            &format!("http_server_duration_seconds_bucket{{{h}}}"),
            |r| r.len() == 9,
        )
        .await;
    let les: BTreeSet<String> = buckets.iter().map(|(l, _)| l["le"].clone()).collect();
    let want: BTreeSet<String> = ["0.01", "0.05", "0.1", "0.5", "1", "2.5", "5", "10", "+Inf"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(les, want);
    p.wait_value(&format!("http_server_duration_seconds_sum{{{h}}}"), 11.5)
        .await;
    p.wait_value(&format!("http_server_duration_seconds_count{{{h}}}"), 7.0)
        .await;
    p.wait_value(
        &format!(r#"rpc_latency_seconds{{{id},quantile="0.99"}}"#),
        0.9,
    )
    .await;
    p.wait_value(
        &format!(r#"rpc_latency_seconds{{{id},quantile="0.5"}}"#),
        0.25,
    )
    .await;
    p.wait_value(&format!("rpc_latency_seconds_sum{{{id}}}"), 12.5)
        .await;
    p.wait_value(&format!("rpc_latency_seconds_count{{{id}}}"), 40.0)
        .await;
    p.wait_value(
        &format!(r#"target_info{{{id},deployment_environment="test"}}"#),
        1.0,
    )
    .await;
    let weird = p
        .wait_for("weird_name_with_spaces_n_code_bytes", |r| r.len() == 1)
        .await;
    assert_eq!(weird[0].1, -0.5);
    assert_eq!(weird[0].0["bad_key_"], WEIRD_VALUE);
    assert_eq!(weird[0].0["key_0digit"], "x");
    assert_eq!(weird[0].0["key_under"], "y");
}

#[tokio::test]
async fn prometheus_scrapes_exact_values_and_exemplars() {
    let ports = Ports::new();
    let port = free_port();
    let yaml = config(
        ports,
        &format!(r#"prometheus: {{ endpoint: "127.0.0.1:{port}" }}"#),
    );
    let s = Sightline::start(&yaml, ports).await;
    let p = Prometheus::start(&scrape_config(&[port])).await;
    send(&s, request(now_ns(), 42)).await;
    assert_values(&p).await;
    // Prometheus asked for OpenMetrics, so the bucket's exemplar arrived with its IDs.
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let found = p.exemplars("http_server_duration_seconds_bucket").await;
        if found.iter().any(|e| {
            e.get("trace_id") == Some(&"ab".repeat(16)) && e.get("span_id") == Some(&"cd".repeat(8))
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exemplar: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A newer value replaces the old one.
    send(&s, request(now_ns(), 50)).await;
    p.wait_value(r#"http_requests_total{job="checkout",method="GET"}"#, 50.0)
        .await;
}

#[tokio::test]
async fn promtool_finds_no_problem_in_the_text_format() {
    let ports = Ports::new();
    let port = free_port();
    let yaml = config(
        ports,
        &format!(r#"prometheus: {{ endpoint: "127.0.0.1:{port}" }}"#),
    );
    let s = Sightline::start(&yaml, ports).await;
    send(&s, request(now_ns(), 42)).await;
    let (status, page) = http_get(&format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        page.contains("http_server_duration_seconds_bucket"),
        "{page}"
    );
    let file = temp_dir("promtool").join("metrics.txt");
    std::fs::write(&file, &page).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{page}");
    assert!(said.trim().is_empty(), "promtool: {said}\n{page}");
}

#[tokio::test]
async fn remote_write_delivers_the_same_values() {
    let p = Prometheus::start(&scrape_config(&[])).await;
    let ports = Ports::new();
    let yaml = config(
        ports,
        &format!(
            r#"prometheusremotewrite: {{ endpoint: "{}", retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms }} }}"#,
            p.write_url()
        ),
    );
    let s = Sightline::start(&yaml, ports).await;
    let now = now_ns();
    send(&s, request(now, 42)).await;
    assert_values(&p).await;
    // Older samples for the same series: Prometheus answers 400 (out of order); the batch
    // is dropped and counted, not retried, and the stored values stay.
    send(&s, request(now - 600_000_000_000, 1)).await;
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let page = s.metrics().await;
        let rejected: f64 = page
            .lines()
            .filter(|l| {
                l.starts_with("sightline_component_items_dropped_total")
                    && l.contains("reason=\"rejected\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        // The six data points of the request.
        if rejected == 6.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rejected {rejected}:\n{page}\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.logs().contains("out of order"), "{}", s.logs());
    p.wait_value(r#"http_requests_total{job="checkout",method="GET"}"#, 42.0)
        .await;
}

#[tokio::test]
async fn remote_write_loses_nothing_while_prometheus_restarts() {
    let mut p = Prometheus::start(&scrape_config(&[])).await;
    let ports = Ports::new();
    let yaml = config(
        ports,
        &format!(
            r#"prometheusremotewrite: {{ endpoint: "{}", retry_on_failure: {{ initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 2m }} }}"#,
            p.write_url()
        ),
    );
    let s = Sightline::start(&yaml, ports).await;
    let probe = |n: u64, t: u64| {
        let mut r = request(t, 0);
        let m = &mut r.resource_metrics[0].scope_metrics[0].metrics;
        m.truncate(1);
        m[0].name = format!("probe.{n}");
        r
    };
    send(&s, probe(0, now_ns())).await;
    p.wait_value(r#"probe_0_total{method="POST"}"#, 7.0).await;

    p.stop();
    for n in 1..=3 {
        send(&s, probe(n, now_ns())).await;
    }
    // Sightline tried while Prometheus was down, and failed.
    let deadline = std::time::Instant::now() + DEADLINE;
    while !s.metrics().await.lines().any(|l| {
        l.starts_with("sightline_exporter_send_duration_seconds_count")
            && l.contains("outcome=\"failure\"")
            && !l.ends_with(" 0")
    }) {
        assert!(std::time::Instant::now() < deadline, "no failed attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.restart().await;
    for n in 0..=3 {
        p.wait_value(&format!(r#"probe_{n}_total{{method="POST"}}"#), 7.0)
            .await;
    }
    let page = s.metrics().await;
    assert!(
        !page
            .lines()
            .any(|l| l.starts_with("sightline_component_items_dropped_total")
                && l.contains("prometheusremotewrite")
                && !l.ends_with(" 0")),
        "{page}"
    );
}

/// Every label name in a query result.
fn label_names(r: &[common::prometheus::Series]) -> BTreeSet<String> {
    r.iter().flat_map(|(l, _)| l.keys().cloned()).collect()
}

#[tokio::test]
async fn seed_red_series_and_host_series_are_queryable_by_name() {
    let ports = Ports::new();
    let port = free_port();
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
  hostmetrics:
    collection_interval: 1s
    scrapers: {{ cpu: {{}}, memory: {{}} }}
connectors:
  sli: {{ flush_interval: 1s }}
exporters:
  prometheus: {{ endpoint: "127.0.0.1:{port}" }}
service:
  telemetry: {{ metrics: {{ endpoint: "127.0.0.1:{metrics}" }} }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    traces:  {{ receivers: [otlp], exporters: [sli] }}
    metrics: {{ receivers: [sli, hostmetrics], exporters: [prometheus] }}
"#,
        grpc = ports.grpc,
        metrics = ports.metrics,
        health = ports.health,
    );
    let s = Sightline::start(&yaml, ports).await;
    let p = Prometheus::start(&scrape_config(&[port])).await;
    let mut traces = TraceServiceClient::connect(s.grpc_url()).await.unwrap();
    traces.export(traces_request(1, 20)).await.unwrap();

    let names =
        |list: &[&str]| -> BTreeSet<String> { list.iter().map(|s| s.to_string()).collect() };
    // Exactly the seed's labels, plus Prometheus's own job and instance.
    let seed_labels = |last: &str| {
        names(&[
            "__name__", "job", "instance", "service", "method", "endpoint", last,
        ])
    };
    let requests = p
        .wait_for_sum(r#"http_requests_total{service="api-service"}"#, 20.0)
        .await;
    assert_eq!(label_names(&requests), seed_labels("status_code"));
    p.wait_value(
        r#"http_requests_total{service="api-service",method="GET",endpoint="/api/users/{id}",status_code="500"}"#,
        2.0,
    )
    .await;
    let errors = p
        .wait_for_sum(r#"http_errors_total{service="api-service"}"#, 2.0)
        .await;
    assert_eq!(label_names(&errors), seed_labels("error_type"));
    let r = p
        .wait_for(
            r#"http_request_duration_seconds_bucket{service="api-service"}"#,
            |r| r.len() == 9,
        )
        .await;
    let les: BTreeSet<String> = r.iter().map(|(l, _)| l["le"].clone()).collect();
    assert_eq!(
        les,
        names(&["0.01", "0.05", "0.1", "0.5", "1", "2.5", "5", "10", "+Inf"])
    );
    assert_eq!(label_names(&r), seed_labels("le"));
    // Every span took 45ms: all in the 0.05 bucket and above.
    p.wait_value(
        r#"http_request_duration_seconds_bucket{service="api-service",le="0.05"}"#,
        20.0,
    )
    .await;
    p.wait_value(
        r#"http_request_duration_seconds_count{service="api-service"}"#,
        20.0,
    )
    .await;
    // The README's PromQL for the RED metrics evaluates.
    p.wait_for(
        r#"histogram_quantile(0.95, sum by (le, service) (rate(http_request_duration_seconds_bucket[1m])))"#,
        |_| true,
    )
    .await;

    let cpu = p
        .wait_for(r#"system_cpu_time_seconds_total{state="idle"}"#, |r| {
            !r.is_empty()
        })
        .await;
    assert!(cpu.iter().all(|(l, _)| l.contains_key("cpu")), "{cpu:?}");
    let mem = p
        .wait_for(r#"system_memory_usage_bytes{state="used"}"#, |r| {
            r.len() == 1
        })
        .await;
    assert!(mem[0].1 > 0.0);
    p.wait_for("system_cpu_utilization_ratio", |r| !r.is_empty())
        .await;
}
