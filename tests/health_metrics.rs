//! Health probes with the seed guide's semantics, and the self-metrics page.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_and_metrics_count_items() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let base = format!("http://127.0.0.1:{}", ports.health);
    let (status, body) = http_get(&format!("{base}/health/live")).await.unwrap();
    assert_eq!((status, body.contains("healthy")), (200, true));
    let (status, body) = http_get(&format!("{base}/health/startup")).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("started"));
    let (status, body) = http_get(&format!("{base}/health/ready")).await.unwrap();
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["exporter/otlp"], "ok");

    let mut tc = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
    tc.export(traces_request(1, 100)).await.unwrap();
    assert!(down.wait_until(|r| r.span_count() == 100).await);
    let deadline = std::time::Instant::now() + DEADLINE;
    let sent = r#"sightline_component_items_sent_total{component_id="otlp",component_kind="exporter",signal="traces"} 100"#;
    let mut metrics = String::new();
    while std::time::Instant::now() < deadline {
        metrics = sl.metrics().await;
        if metrics.contains(sent) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for expected in [
        sent,
        r#"sightline_component_items_received_total{component_id="otlp",component_kind="receiver",signal="traces"} 100"#,
        r#"sightline_component_items_sent_total{component_id="otlp",component_kind="receiver",signal="traces"} 100"#,
        r#"sightline_component_items_received_total{component_id="batch",component_kind="processor",signal="traces"} 100"#,
        r#"sightline_component_items_sent_total{component_id="batch",component_kind="processor",signal="traces"} 100"#,
        r#"sightline_queue_capacity{component_id="otlp"}"#,
        "sightline_exporter_send_duration_seconds_bucket",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_seed_style_json() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let logs = sl.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("sightline started"))
        .unwrap_or_else(|| panic!("no start line in:\n{logs}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    for key in ["timestamp", "level", "service", "message", "module"] {
        assert!(v.get(key).is_some(), "{key} missing in {line}");
    }
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["service"], "sightline");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_exporter_stays_ready_but_reports() {
    // A backend that is down is a recoverable condition: ready stays 200 (the seed guide's
    // readiness is about this process), and the check names the exporter.
    let ports = Ports::new();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let sl = Sightline::start(&pipeline_config(ports, &dead, "", ""), ports).await;
    let mut tc = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
    tc.export(traces_request(1, 10)).await.unwrap();
    let url = format!("http://127.0.0.1:{}/health/ready", ports.health);
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = http_get(&url).await.unwrap();
        if body.contains("recoverable error") {
            assert_eq!(status, 200, "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "exporter never reported the failure: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A backend that rejects every request as unauthenticated.
struct Rejecting;

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Rejecting
{
    async fn export(
        &self,
        _r: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        Err(tonic::Status::unauthenticated("bad token"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_exporter_failure_makes_unready_and_counts_the_drop() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = format!("http://{}", listener.local_addr().unwrap());
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let svc = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(Rejecting)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &backend, "", ""), ports).await;
    let mut tc = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
    tc.export(traces_request(1, 10)).await.unwrap();
    let url = format!("http://127.0.0.1:{}/health/ready", ports.health);
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = http_get(&url).await.unwrap();
        if status == 503 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], "not ready");
            let check = v["checks"]["exporter/otlp"].as_str().unwrap();
            assert!(
                check.starts_with("permanent error") && check.contains("bad token"),
                "{body}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never unready: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let metrics = sl.metrics().await;
    assert!(
        metrics.contains(r#"sightline_component_items_dropped_total{component_id="otlp",component_kind="exporter",reason="rejected",signal="traces"} 10"#),
        "{metrics}"
    );
}
