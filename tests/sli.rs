//! End to end: OTLP traces and request logs -> the `sli` connector in the real binary ->
//! the `file` exporter, while the traces also fan out to a downstream OTLP server. The RED
//! metrics in the file must hold exact values under the names a Prometheus exporter writes
//! as `http_requests_total`, `http_errors_total` and `http_request_duration_seconds`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::Value;

/// The pipelines of the issue's example; `sli` is the body of the connector's flow map.
fn config(ports: Ports, downstream: &str, out: &Path, sli: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
connectors:
  sli: {{ {sli} }}
exporters:
  otlp:
    endpoint: "{downstream}"
  file:
    path: "{path}"
    flush_interval: 0
service:
  telemetry: {{ metrics: {{ endpoint: "127.0.0.1:{metrics}" }} }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    traces:  {{ receivers: [otlp], exporters: [sli, otlp] }}
    logs:    {{ receivers: [otlp], exporters: [sli] }}
    metrics: {{ receivers: [sli], exporters: [file] }}
"#,
        grpc = ports.grpc,
        metrics = ports.metrics,
        health = ports.health,
        path = out.display(),
    )
}

/// The name OpenTelemetry's Prometheus translation gives a metric: dots become
/// underscores, the unit `s` adds `_seconds` (annotations in braces add nothing), and a
/// monotonic sum gets `_total`.
fn prometheus_name(metric: &Value) -> String {
    let mut name = metric["name"]
        .as_str()
        .unwrap_or_default()
        .replace('.', "_");
    if metric["unit"] == "s" {
        name.push_str("_seconds");
    }
    if metric["sum"]["isMonotonic"] == true {
        name.push_str("_total");
    }
    name
}

fn number(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_i64().unwrap(),
    }
}

fn labels(point: &Value) -> BTreeMap<String, String> {
    point["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let v = &kv["value"];
            let text = v["stringValue"]
                .as_str()
                .map(String::from)
                .or_else(|| v["boolValue"].as_bool().map(|b| b.to_string()))
                .unwrap_or_default();
            (kv["key"].as_str().unwrap_or_default().to_string(), text)
        })
        .collect()
}

fn series(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One flush as Prometheus would expose it: metric name -> labels -> data point.
type Exposition = BTreeMap<String, BTreeMap<BTreeMap<String, String>, Value>>;

/// The flushes written so far, oldest first.
fn flushes(out: &Path) -> Vec<Exposition> {
    read(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|line| {
            let mut e = Exposition::new();
            for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
                for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                    for m in sm["metrics"].as_array().into_iter().flatten() {
                        let data = ["sum", "histogram", "gauge"]
                            .iter()
                            .find_map(|k| m[*k]["dataPoints"].as_array())
                            .cloned()
                            .unwrap_or_default();
                        let points = e.entry(prometheus_name(m)).or_default();
                        for p in data {
                            points.insert(labels(&p), p);
                        }
                    }
                }
            }
            e
        })
        .collect()
}

async fn wait_for_flush(out: &Path, pred: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(last) = flushes(out).pop()
            && pred(&last)
        {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "no flush matched in time; last: {:?}",
            flushes(out).pop()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn requests_total(e: &Exposition, labels: &BTreeMap<String, String>) -> Option<i64> {
    e.get("http_requests_total")
        .and_then(|s| s.get(labels))
        .map(|p| number(&p["asInt"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_to_sli_to_file_has_exact_red_metrics() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let out = temp_dir("sli").join("metrics.jsonl");
    let sl = Sightline::start(
        &config(ports, &down.url(), &out, "flush_interval: 100ms"),
        ports,
    )
    .await;

    // 100 SERVER spans of api-service, GET /api/users/{id} (raw paths /api/users/0..99),
    // 45 ms each; every tenth answered 500 with span status ERROR.
    let traces = traces_request(1, 100);
    TraceServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .export(traces)
        .await
        .unwrap();
    // 20 "Request completed" logs of GET /api/users/42, 200, 45 ms.
    LogsServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .export(logs_request(1, 20))
        .await
        .unwrap();

    let ok = series(&[
        ("service", "api-service"),
        ("method", "GET"),
        ("endpoint", "/api/users/{id}"),
        ("status_code", "200"),
    ]);
    let failed = series(&[
        ("service", "api-service"),
        ("method", "GET"),
        ("endpoint", "/api/users/{id}"),
        ("status_code", "500"),
    ]);
    let last = wait_for_flush(&out, |e| {
        requests_total(e, &ok) == Some(110) && requests_total(e, &failed) == Some(10)
    })
    .await;

    assert_eq!(
        last.keys().collect::<Vec<_>>(),
        vec![
            "http_errors_total",
            "http_request_duration_seconds",
            "http_requests_total"
        ],
        "the seed's metric names"
    );
    assert_eq!(
        last["http_requests_total"].len(),
        2,
        "one series per status code, none per raw path: {:?}",
        last["http_requests_total"].keys()
    );
    let errors = &last["http_errors_total"];
    let five_xx = series(&[
        ("service", "api-service"),
        ("method", "GET"),
        ("endpoint", "/api/users/{id}"),
        ("error_type", "5xx"),
    ]);
    assert_eq!(errors.len(), 1);
    assert_eq!(number(&errors[&five_xx]["asInt"]), 10);

    let durations = &last["http_request_duration_seconds"];
    let users = series(&[
        ("service", "api-service"),
        ("method", "GET"),
        ("endpoint", "/api/users/{id}"),
    ]);
    let h = &durations[&users];
    assert_eq!(number(&h["count"]), 120);
    let buckets: Vec<i64> = h["bucketCounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(number)
        .collect();
    assert_eq!(
        buckets,
        vec![0, 120, 0, 0, 0, 0, 0, 0, 0],
        "45 ms is in the 0.05 bucket"
    );
    let bounds: Vec<f64> = h["explicitBounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(bounds, vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0]);
    let exemplars = h["exemplars"].as_array().cloned().unwrap_or_default();
    assert!(
        exemplars.len() <= 1,
        "at most one exemplar per bucket per flush"
    );

    // Cumulative: the start time stays while the totals stay put across later flushes.
    let start = h["startTimeUnixNano"].clone();
    let count_before = flushes(&out).len();
    let later = wait_for_flush(&out, |_| flushes(&out).len() >= count_before + 2).await;
    assert_eq!(requests_total(&later, &ok), Some(110));
    assert_eq!(
        later["http_request_duration_seconds"][&users]["startTimeUnixNano"],
        start
    );

    // The traces fanned out to the OTLP exporter unchanged.
    assert!(down.wait_until(|r| r.span_count() == 100).await);

    // The connector's own metrics.
    let m = sl.metrics().await;
    assert!(
        m.contains(
            "sightline_sli_requests_derived_total{component_id=\"sli\",signal=\"traces\"} 100"
        ),
        "{m}"
    );
    assert!(
        m.contains("sightline_sli_requests_derived_total{component_id=\"sli\",signal=\"logs\"} 20"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_what_was_derived() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let out = temp_dir("sli-shutdown").join("metrics.jsonl");
    let mut sl = Sightline::start(
        &config(
            ports,
            &down.url(),
            &out,
            "flush_interval: 1h, series_expiry: 0",
        ),
        ports,
    )
    .await;
    TraceServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .export(traces_request(2, 30))
        .await
        .unwrap();
    assert!(down.wait_until(|r| r.span_count() == 30).await);
    assert!(flushes(&out).is_empty(), "no flush before the hour is up");
    assert!(sl.terminate().await.success(), "{}", sl.logs());
    let last = flushes(&out).pop().expect("the last flush at shutdown");
    let total: i64 = last["http_requests_total"]
        .values()
        .map(|p| number(&p["asInt"]))
        .sum();
    assert_eq!(total, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_starts_new_series_with_new_start_times() {
    let down = Downstream::start().await;
    let out = temp_dir("sli-restart").join("metrics.jsonl");
    let start_time = |e: &Exposition| {
        e.get("http_requests_total")
            .and_then(|s| s.values().next())
            .map(|p| (number(&p["startTimeUnixNano"]), number(&p["asInt"])))
    };
    let mut runs = Vec::new();
    for seed in [3, 4] {
        let ports = Ports::new();
        let mut sl = Sightline::start(
            &config(
                ports,
                &down.url(),
                &out,
                "flush_interval: 1h, series_expiry: 0",
            ),
            ports,
        )
        .await;
        TraceServiceClient::connect(sl.grpc_url())
            .await
            .unwrap()
            .export(traces_request(seed, 10))
            .await
            .unwrap();
        assert!(sl.terminate().await.success(), "{}", sl.logs());
        let last = flushes(&out).pop().expect("a flush at shutdown");
        runs.push(start_time(&last).expect("http_requests_total in the flush"));
    }
    let (first, second) = (runs[0], runs[1]);
    assert_eq!(first.1, 9, "9 of 10 spans answered 200");
    assert_eq!(second.1, 9, "the restarted process counts from zero");
    assert!(
        second.0 > first.0,
        "a new start time tells Prometheus the counter was reset: {runs:?}"
    );
}

#[test]
fn validate_reports_bad_sli_config() {
    let (code, stderr) = validate_yaml(
        "sli-validate",
        r#"
receivers: { otlp: { protocols: { grpc: {} } } }
connectors:
  sli:
    histogram: { buckets: [0.5, 0.1] }
    span_kinds: [SERVR]
exporters: { debug: {} }
service:
  pipelines:
    traces:  { receivers: [otlp], exporters: [sli] }
    metrics: { receivers: [sli], exporters: [debug] }
"#,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("connectors::sli") && stderr.contains("span_kinds[0]"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean \"SERVER\""), "{stderr}");
}
