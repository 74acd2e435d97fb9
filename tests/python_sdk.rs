//! A foreign client proves compatibility: the OpenTelemetry Python SDK (from PyPI) sends
//! traces over OTLP/gRPC and OTLP/HTTP, metrics over OTLP/HTTP and logs over OTLP/gRPC; the
//! `file` exporter's output (one OTLP/JSON request per line) must hold all of it.
//!
//! `.ci/run` installs the SDK. Elsewhere, without it, the test says so and passes only when
//! not in CI.

mod common;

use std::process::Command;

use common::*;

const MODULES: &str = "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_data_arrives() {
    let available = Command::new("python3")
        .args(["-c", MODULES])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !available {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install the OpenTelemetry Python SDK (see .ci/run)"
        );
        eprintln!(
            "SKIPPED: pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http"
        );
        return;
    }
    let ports = Ports::new();
    let out_dir = temp_dir("python");
    let out = out_dir.join("out.jsonl");
    let config = file_export_config(ports, "  batch: { timeout: 50ms }", "batch", &out);
    let mut sl = Sightline::start(&config, ports).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otel_sdk_send.py");
    let o = Command::new("python3")
        .arg(script)
        .arg(format!("127.0.0.1:{}", ports.grpc))
        .arg(format!("http://127.0.0.1:{}", ports.http))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python client failed:\n{}\n{}\nsightline: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        sl.logs()
    );
    assert!(sl.terminate().await.success(), "{}", sl.logs());

    let text = read(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let mut spans = Vec::new();
    let mut metric_names = Vec::new();
    let mut log_bodies = Vec::new();
    for l in &lines {
        for rs in l["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                spans.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
        for rm in l["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                metric_names.extend(
                    sm["metrics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| m["name"].as_str().unwrap_or("").to_string()),
                );
            }
        }
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                log_bodies.extend(
                    sl["logRecords"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| r["body"]["stringValue"].as_str().unwrap_or("").to_string()),
                );
            }
        }
    }
    assert_eq!(
        spans.len(),
        20,
        "10 spans over gRPC and 10 over HTTP:\n{text}"
    );
    for s in &spans {
        assert_eq!(s["name"], "GET /checkout");
        assert_eq!(s["kind"], 2, "SERVER as an integer enum");
        assert_eq!(s["traceId"].as_str().unwrap().len(), 32, "hex trace ID");
        assert_eq!(s["spanId"].as_str().unwrap().len(), 16, "hex span ID");
    }
    assert!(
        metric_names.contains(&"http_requests_total".to_string()),
        "{metric_names:?}"
    );
    assert!(
        metric_names.contains(&"http_request_duration_seconds".to_string()),
        "{metric_names:?}"
    );
    assert_eq!(log_bodies, vec!["Request completed".to_string()]);
}
