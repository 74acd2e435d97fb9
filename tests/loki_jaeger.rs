//! End to end: real OTLP clients -> the `sightline` binary -> the `loki` and `jaeger`
//! exporters -> test servers that decode what Loki (push protobuf with snappy) and Jaeger
//! (api_v2 `PostSpans`, OTLP) would. What arrives must be what was sent, mapped.

mod common;

use common::*;
use exporters::jaeger::testing::JaegerCollector;
use exporters::loki::testing::{LokiServer, Reply};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

fn config(ports: Ports, loki: &LokiServer, risky: &LokiServer, jaeger: &JaegerCollector) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
processors:
  batch: {{ timeout: 50ms }}
exporters:
  loki:
    endpoint: "{loki}"
    tenant_id: e2e
    labels: {{ env: e2e }}
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 50ms }}
  loki/risky:
    endpoint: "{risky}"
    label_attributes: {{ service.name: service_name, request_id: request_id }}
  jaeger:
    protocol: grpc
    endpoint: "{jaeger}"
  jaeger/otlp:
    endpoint: "{jaeger}"
service:
  telemetry: {{ metrics: {{ endpoint: "127.0.0.1:{metrics}" }} }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [batch], exporters: [jaeger, jaeger/otlp] }}
    logs:   {{ receivers: [otlp], processors: [batch], exporters: [loki, loki/risky] }}
"#,
        grpc = ports.grpc,
        http = ports.http,
        metrics = ports.metrics,
        health = ports.health,
        loki = loki.url(),
        risky = risky.url(),
        jaeger = jaeger.grpc_addr(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_in_loki_and_jaeger_out() {
    let loki = LokiServer::start().await.unwrap();
    let risky = LokiServer::start().await.unwrap();
    let jaeger = JaegerCollector::start().await.unwrap();
    let ports = Ports::new();
    let sl = Sightline::start(&config(ports, &loki, &risky, &jaeger), ports).await;
    // A request ID as a label is flagged when the exporter is built.
    assert!(
        sl.logs()
            .contains("label_attributes.request_id is usually unique per request"),
        "{}",
        sl.logs()
    );
    // Loki throttles the first push: it must arrive once, later.
    loki.reply(Reply {
        status: 429,
        retry_after: Some(0),
        body: "Ingestion rate limit exceeded".into(),
    });

    let logs = logs_request(1, 30);
    LogsServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .export(logs.clone())
        .await
        .unwrap();
    let traces = traces_request(1, 20);
    TraceServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .export(traces.clone())
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + DEADLINE;
    while (loki.accepted().len() < 30
        || risky.accepted().len() < 30
        || jaeger.jaeger_batches().is_empty()
        || jaeger.otlp_requests().is_empty())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(loki.violations(), Vec::<String>::new());
    assert_eq!(jaeger.violations(), Vec::<String>::new());

    // Loki: one stream, every record once, mapped.
    let entries = loki.accepted();
    assert_eq!(entries.len(), 30, "logs: {}", sl.logs());
    let pushes = loki.pushes();
    assert_eq!(pushes[0].status, 429);
    assert!(pushes.iter().all(|p| p.tenant.as_deref() == Some("e2e")));
    let mut ids: Vec<_> = entries
        .iter()
        .map(|e| e.meta("request_id").unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    let e = &entries[0];
    assert_eq!(
        e.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        ["env=e2e", "level=info", "service_name=api-service"]
    );
    assert_eq!(e.line, "Request completed");
    assert_eq!(e.timestamp, 1_705_314_600_123_456_000);
    assert_eq!(e.meta("status_code"), Some("200"));
    assert_eq!(e.meta("host_name"), Some("node-7"));
    assert_eq!(e.meta("span_id"), Some("0303030303030303"));
    assert_eq!(e.meta("trace_id"), Some("07070707070707070707070707070700"));

    // Jaeger api_v2: the resource as the process, spans translated.
    let batches = jaeger.jaeger_batches();
    let spans: Vec<_> = batches.iter().flat_map(|b| b.spans.clone()).collect();
    assert_eq!(spans.len(), 20);
    let process = batches[0].process.as_ref().unwrap();
    assert_eq!(process.service_name, "api-service");
    assert!(
        process
            .tags
            .iter()
            .any(|t| t.key == "host.name" && t.v_str == "node-7")
    );
    let sent = &traces.resource_spans[0].scope_spans[0].spans;
    for (want, got) in sent.iter().zip(&spans) {
        assert_eq!(got.trace_id, want.trace_id);
        assert_eq!(got.span_id, want.span_id);
        assert_eq!(got.operation_name, want.name);
        assert_eq!(
            got.references.len(),
            usize::from(!want.parent_span_id.is_empty())
        );
        assert!(
            got.tags
                .iter()
                .any(|t| t.key == "span.kind" && t.v_str == "server")
        );
        assert_eq!(got.logs[0].fields[0].v_str, "cache.miss");
    }
    // Jaeger OTLP: unchanged.
    let otlp: Vec<_> = jaeger
        .otlp_requests()
        .into_iter()
        .flat_map(|r| r.resource_spans)
        .collect();
    assert_eq!(otlp, traces.resource_spans);

    // What the warning was about: a stream per record.
    let streams: std::collections::BTreeSet<_> =
        risky.accepted().into_iter().map(|e| e.labels).collect();
    assert_eq!(streams.len(), 30);

    let metrics = sl.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sightline_component_items_sent_total")
                && l.contains("component_id=\"loki\"")
                && l.ends_with(" 30")),
        "{metrics}"
    );
}
