//! The `request_id` processor end to end: the seed guide's Flask service writes JSON request
//! logs (request started, user login, request completed, each with `request_id`) to a file
//! read by `filelog`, and sends its spans over OTLP; every log record reaches the backend
//! with the trace and span IDs of its request's SERVER span, whether the logs come before or
//! after the spans. SIGTERM with records still held delivers them all.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};

fn config(ports: Ports, dir: &Path, downstream: &str, wait: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
  filelog:
    include: ["{dir}/*.log"]
    start_at: beginning
    poll_interval: 50ms
    storage: "{dir}/storage"
    parser: {{ type: json }}
processors:
  request_id:
    request_id_attributes: [request_id, http.request.header.x-request-id]
    wait: {wait}
    ttl: 5m
  batch: {{ timeout: 50ms }}
exporters:
  otlp:
    endpoint: "{downstream}"
    compression: none
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s }}
    # One sender, so the backend sees records in the order they were released.
    sending_queue: {{ num_consumers: 1 }}
service:
  telemetry:
    logs: {{ level: info }}
    metrics: {{ endpoint: "127.0.0.1:{metrics}" }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  shutdown_timeout: 10s
  pipelines:
    traces: {{ receivers: [otlp], processors: [request_id, batch], exporters: [otlp] }}
    logs:   {{ receivers: [filelog, otlp], processors: [request_id, batch], exporters: [otlp] }}
"#,
        grpc = ports.grpc,
        dir = dir.display(),
        metrics = ports.metrics,
        health = ports.health,
    )
}

/// One request of the Flask service: its ID, trace and SERVER span.
struct Request {
    id: &'static str,
    trace_id: [u8; 16],
    server_span: [u8; 8],
    user: u64,
}

impl Request {
    fn new(id: &'static str, n: u8) -> Request {
        Request {
            id,
            trace_id: [n; 16],
            server_span: [n, 0, 0, 0, 0, 0, 0, 1],
            user: 12_345 + u64::from(n),
        }
    }
}

/// The three JSON lines the seed's Flask app writes for a request (`StructuredLogger` with
/// `RequestContextLogger`): before_request, the login, after_request.
fn flask_lines(r: &Request) -> Vec<String> {
    vec![
        format!(
            r#"{{"timestamp": "2024-01-15T10:30:00.123456", "level": "INFO", "service": "api", "message": "Request started", "module": "app", "function": "before_request", "line": 171, "request_id": "{id}", "method": "POST", "path": "/api/login", "ip": "192.168.1.1"}}"#,
            id = r.id
        ),
        format!(
            r#"{{"timestamp": "2024-01-15T10:30:00.150000", "level": "INFO", "service": "api", "message": "User login successful", "module": "app", "function": "login", "line": 94, "request_id": "{id}", "user_id": {user}, "ip_address": "192.168.1.1", "session_id": "abc-123"}}"#,
            id = r.id,
            user = r.user
        ),
        format!(
            r#"{{"timestamp": "2024-01-15T10:30:00.180000", "level": "INFO", "service": "api", "message": "Request completed", "module": "app", "function": "after_request", "line": 185, "request_id": "{id}", "status_code": 200, "duration_seconds": 0.057, "method": "POST", "path": "/api/login"}}"#,
            id = r.id
        ),
    ]
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(V::StringValue(v.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// The request's spans as the OpenTelemetry Flask instrumentation sends them: the SERVER
/// span with the captured `X-Request-ID` header (a string array), and an INTERNAL child
/// (the login) that also carries the request ID, ending first.
fn flask_spans(r: &Request) -> ExportTraceServiceRequest {
    let header = Some(AnyValue {
        value: Some(V::ArrayValue(ArrayValue {
            values: vec![s(r.id).unwrap_or_default()],
        })),
    });
    let child = Span {
        trace_id: r.trace_id.to_vec(),
        span_id: [r.trace_id[0], 0, 0, 0, 0, 0, 0, 2].to_vec(),
        parent_span_id: r.server_span.to_vec(),
        name: "authenticate".into(),
        kind: span::SpanKind::Internal as i32,
        attributes: vec![kv("request_id", s(r.id))],
        ..Default::default()
    };
    let server = Span {
        trace_id: r.trace_id.to_vec(),
        span_id: r.server_span.to_vec(),
        name: "POST /api/login".into(),
        kind: span::SpanKind::Server as i32,
        flags: 0x101,
        attributes: vec![
            kv("http.request.method", s("POST")),
            kv("http.route", s("/api/login")),
            kv("http.request.header.x-request-id", header),
        ],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("api"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![child, server],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn string_attr(r: &LogRecord, key: &str) -> Option<String> {
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            V::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

fn body(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(V::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn received_records(received: &Received) -> Vec<LogRecord> {
    received
        .resource_logs()
        .into_iter()
        .flat_map(|rl| rl.scope_logs)
        .flat_map(|sl| sl.log_records)
        .collect()
}

fn records_of(received: &Received, rid: &str) -> Vec<LogRecord> {
    received_records(received)
        .into_iter()
        .filter(|r| string_attr(r, "request_id").as_deref() == Some(rid))
        .collect()
}

/// Polls the self-metrics until `line` (a whole sample line) is there.
async fn wait_for_metric(sl: &Sightline, line: &str) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if sl.metrics().await.lines().any(|l| l == line) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn assert_enriched(records: &[LogRecord], r: &Request) {
    assert_eq!(records.len(), 3, "three log lines of {}", r.id);
    let bodies: Vec<String> = records.iter().map(body).collect();
    assert_eq!(
        bodies,
        [
            "Request started",
            "User login successful",
            "Request completed"
        ],
        "in the order they were written"
    );
    for rec in records {
        assert_eq!(rec.trace_id, r.trace_id.to_vec(), "{}: trace ID", body(rec));
        assert_eq!(
            rec.span_id,
            r.server_span.to_vec(),
            "{}: the SERVER span, not the INTERNAL child",
            body(rec)
        );
        assert_eq!(rec.flags & 0xff, 1, "sampled flag from the span");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_logs_get_the_trace_of_their_request_before_or_after_the_spans() {
    let downstream = Downstream::start().await;
    let ports = Ports::new();
    let dir = temp_dir("request-id-flask");
    let log_file = dir.join("app.log");
    // wait is long: a log released before its span came would have no trace ID, so only a
    // release triggered by the span can pass.
    let sl = Sightline::start(&config(ports, &dir, &downstream.url(), "30s"), ports).await;
    let mut traces = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();

    // Request A: the logs are written (and read) before the spans are exported, as with
    // the SDK's batching span processor.
    let a = Request::new("7f3c2a9e-1b4d-4e8a-9c61-2d5f8e0b4a17", 0xa1);
    append(&log_file, &flask_lines(&a));
    assert!(
        wait_for_metric(
            &sl,
            r#"sightline_request_id_pending{component_id="request_id"} 3"#
        )
        .await,
        "the three lines are held for their span: {}",
        sl.metrics().await
    );
    assert!(records_of(&downstream.received, a.id).is_empty());
    traces.export(flask_spans(&a)).await.unwrap();
    assert!(
        downstream
            .wait_until(|r| records_of(r, a.id).len() == 3)
            .await,
        "request A's logs: {:?}",
        received_records(&downstream.received)
    );
    assert_enriched(&records_of(&downstream.received, a.id), &a);

    // Request B: the spans come first.
    let b = Request::new("c41d8e07-5a2b-4f9c-8e3d-6b1a0f7c2e95", 0xb2);
    traces.export(flask_spans(&b)).await.unwrap();
    assert!(
        downstream
            .wait_until(|r| r.span_ids().contains(b.server_span.as_slice()))
            .await
    );
    append(&log_file, &flask_lines(&b));
    assert!(
        downstream
            .wait_until(|r| records_of(r, b.id).len() == 3)
            .await
    );
    assert_enriched(&records_of(&downstream.received, b.id), &b);

    // Interleaved requests C and D, logs first, spans in the other order.
    let c = Request::new("req-c", 0xc3);
    let d = Request::new("req-d", 0xd4);
    let (lc, ld) = (flask_lines(&c), flask_lines(&d));
    append(
        &log_file,
        &[
            lc[0].clone(),
            ld[0].clone(),
            lc[1].clone(),
            ld[1].clone(),
            ld[2].clone(),
            lc[2].clone(),
        ],
    );
    assert!(
        wait_for_metric(
            &sl,
            r#"sightline_request_id_pending{component_id="request_id"} 6"#
        )
        .await
    );
    traces.export(flask_spans(&d)).await.unwrap();
    traces.export(flask_spans(&c)).await.unwrap();
    assert!(
        downstream
            .wait_until(|r| records_of(r, c.id).len() == 3 && records_of(r, d.id).len() == 3)
            .await
    );
    assert_enriched(&records_of(&downstream.received, c.id), &c);
    assert_enriched(&records_of(&downstream.received, d.id), &d);

    let metrics = sl.metrics().await;
    assert!(
        metrics.contains(
            r#"sightline_request_id_matched_total{component_id="request_id",signal="logs"} 12"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sightline_request_id_entries{component_id="request_id"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sightline_request_id_pending{component_id="request_id"} 0"#),
        "{metrics}"
    );
    // Nothing else came out: every record is one of the twelve.
    assert_eq!(received_records(&downstream.received).len(), 12);
    // Every acknowledgement handle on the way (filelog's tokens through request_id, batch
    // and the exporter) was resolved.
    assert!(
        metrics.contains(r#"sightline_ack_unresolved_total{component_id="request_id"} 0"#),
        "{metrics}"
    );
    assert_eq!(
        pipeline_core::testing::metric_sum(&metrics, "sightline_ack_unresolved_total", &[]),
        0.0,
        "{metrics}"
    );
}

fn otlp_logs(rids: &[String]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("api"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: rids
                    .iter()
                    .map(|rid| LogRecord {
                        body: s("Request started"),
                        attributes: vec![kv("request_id", s(rid))],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_every_held_record() {
    let downstream = Downstream::start().await;
    let ports = Ports::new();
    let dir = temp_dir("request-id-shutdown");
    let mut sl = Sightline::start(&config(ports, &dir, &downstream.url(), "5m"), ports).await;
    let mut logs = LogsServiceClient::connect(sl.grpc_url()).await.unwrap();
    let rids: Vec<String> = (0..250).map(|i| format!("never-{i}")).collect();
    for chunk in rids.chunks(50) {
        logs.export(otlp_logs(chunk)).await.unwrap();
    }
    assert!(
        wait_for_metric(
            &sl,
            r#"sightline_request_id_pending{component_id="request_id"} 250"#
        )
        .await
    );
    assert!(received_records(&downstream.received).is_empty());
    let status = sl.terminate().await;
    assert!(status.success(), "{status}: {}", sl.logs());
    let out = received_records(&downstream.received);
    assert_eq!(out.len(), 250, "none lost");
    let got: Vec<String> = out
        .iter()
        .filter_map(|r| string_attr(r, "request_id"))
        .collect();
    assert_eq!(got, rids, "released in order, unchanged");
    assert!(out.iter().all(|r| r.trace_id.is_empty()));
}
