//! The `redaction` processor in the real binary: personal data sent over OTLP (gRPC,
//! HTTP/JSON, HTTP/protobuf; all three signals; attributes, events, links, span names, log
//! bodies, exemplars) through `otlp -> redaction -> file` never reaches the output file;
//! hashed pseudonyms survive a restart with the same key and change with another;
//! `sightline validate` reports a broken regex with its position.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

/// Every piece of personal data or secret the test sends; none may reach the output.
const PII: &[&str] = &[
    "ops-lead@example.com",
    "dev1@example.org",
    "4111 1111 1111 1111",
    "alice.smith@example.com",
    "203.0.113.42",
    "2001:db8::42",
    "abcdef123456",
    "hunter2pass",
    "s3cr3tTok",
    "AKIAIOSFODNN7EXAMPLE",
    "4111111111111111",
    "p4ssw0rd-value",
    "carol@example.net",
    "198.51.100.7",
    "192.0.2.55",
    "dave@example.com",
    "ssn-123-45-6789",
    "topsecretpw",
    "5555 5555 5555 4444",
    "378282246310005",
    "10.9.8.7",
    "erin@example.com",
    "172.16.5.4",
    "jános.kovács@példa.hu",
    JWT,
];

fn av(v: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

fn skv(key: &str, v: &str) -> KeyValue {
    kv(key, av(Value::StringValue(v.into())))
}

fn resource(extra: Vec<KeyValue>) -> Option<Resource> {
    let mut attributes = vec![skv("service.name", "checkout")];
    attributes.extend(extra);
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn traces() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(vec![skv("owner.email", "ops-lead@example.com")]),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "shop".into(),
                    attributes: vec![skv("author", "dev1@example.org")],
                    ..Default::default()
                }),
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![3; 8],
                    name: "charge 4111 1111 1111 1111".into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: 1_705_314_600_000_000_000,
                    end_time_unix_nano: 1_705_314_600_045_000_000,
                    attributes: vec![
                        skv("user.email", "alice.smith@example.com"),
                        skv("client.address", "203.0.113.42"),
                        skv("network.peer.address", "2001:db8::42"),
                        skv(
                            "http.request.header.authorization",
                            "Bearer abcdef123456.token-xyz",
                        ),
                        skv(
                            "url.full",
                            "https://bob:hunter2pass@api.example.com/v1?token=s3cr3tTok&page=2",
                        ),
                        skv("cloud.key", "AKIAIOSFODNN7EXAMPLE"),
                        kv("card.number", av(Value::IntValue(4111111111111111))),
                        skv("db.password", "p4ssw0rd-value"),
                        skv("session", JWT),
                        skv("order.id", "4111111111111112"),
                        skv("customer", "jános.kovács@példa.hu"),
                    ],
                    events: vec![span::Event {
                        name: "exception".into(),
                        time_unix_nano: 1_705_314_600_010_000_000,
                        attributes: vec![skv(
                            "exception.message",
                            "user carol@example.net not found",
                        )],
                        ..Default::default()
                    }],
                    links: vec![span::Link {
                        trace_id: vec![8; 16],
                        span_id: vec![4; 8],
                        attributes: vec![skv("peer", "198.51.100.7")],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    let body = av(Value::KvlistValue(KeyValueList {
        values: vec![
            skv("msg", "login from 192.0.2.55 by dave@example.com"),
            kv(
                "user",
                av(Value::KvlistValue(KeyValueList {
                    values: vec![skv("id", "ssn-123-45-6789"), skv("password", "topsecretpw")],
                })),
            ),
            kv(
                "cards",
                av(Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("5555 5555 5555 4444".into())),
                    }],
                })),
            ),
        ],
    }));
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(vec![]),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_705_314_600_000_000_000,
                        severity_number: 9,
                        body,
                        attributes: vec![skv("client.address", "10.9.8.7")],
                        ..Default::default()
                    },
                    LogRecord {
                        time_unix_nano: 1_705_314_600_000_000_001,
                        severity_number: 9,
                        body: av(Value::StringValue("paid with 378282246310005".into())),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    let t = 1_705_314_600_000_000_000u64;
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(vec![]),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "logins".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                attributes: vec![skv("user", "erin@example.com")],
                                time_unix_nano: t,
                                value: Some(number_data_point::Value::AsInt(1)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "latency".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: t,
                                count: 1,
                                bucket_counts: vec![1, 0],
                                explicit_bounds: vec![0.5],
                                exemplars: vec![Exemplar {
                                    filtered_attributes: vec![skv("client", "172.16.5.4")],
                                    time_unix_nano: t,
                                    value: Some(
                                        opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(0.2),
                                    ),
                                    ..Default::default()
                                }],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// A config: OTLP in, `redaction` with `redaction` settings, the `file` exporter to `out`.
fn file_config(ports: Ports, redaction: &str, out: &std::path::Path) -> String {
    file_export_config(
        ports,
        &format!("  redaction:\n{redaction}"),
        "redaction",
        out,
    )
}

async fn post(sl: &Sightline, path: &str, content_type: &str, body: Vec<u8>) {
    let (status, _, resp) =
        http_post(&sl.http_url(path), &[("content-type", content_type)], body).await;
    assert_eq!(
        status,
        200,
        "{path}: {}; logs: {}",
        String::from_utf8_lossy(&resp),
        sl.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pii_reaches_the_output_file() {
    let ports = Ports::new();
    let dir = temp_dir("redaction");
    let out = dir.join("out.jsonl");
    let redaction = r#"
    allow_all_keys: true
    blocked_keys: ["(?i)password", "(?i)secret"]
    blocked_values: ["ssn-\\d{3}-\\d{2}-\\d{4}"]
    detectors: [email, credit_card, ipv4, ipv6, jwt, bearer_token, aws_access_key, url_credentials, url_query]
    redact_span_names: true
    summary: debug"#;
    let mut sl = Sightline::start(&file_config(ports, redaction, &out), ports).await;

    TraceServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .export(traces())
        .await
        .unwrap();
    post(
        &sl,
        "/v1/logs",
        "application/json",
        serde_json::to_vec(&logs()).unwrap(),
    )
    .await;
    post(
        &sl,
        "/v1/metrics",
        "application/x-protobuf",
        metrics().encode_to_vec(),
    )
    .await;

    let page = sl.metrics().await;
    for rule in [
        "email",
        "credit_card",
        "ipv4",
        "url_query",
        "blocked_keys[0]",
    ] {
        assert!(
            page.lines()
                .any(|l| l.starts_with("sightline_redaction_redactions_total")
                    && l.contains(&format!("rule=\"{rule}\""))
                    && !l.ends_with(" 0")),
            "no redactions counted for {rule}:\n{page}"
        );
    }
    assert!(sl.terminate().await.success(), "{}", sl.logs());

    let text = read(&out);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    // Everything arrived: one span, two log records, two data points.
    let count = |signal: &str, scopes: &str, items: &str| -> usize {
        lines
            .iter()
            .flat_map(|l| l[signal].as_array().cloned().unwrap_or_default())
            .flat_map(|r| r[scopes].as_array().cloned().unwrap_or_default())
            .map(|s| s[items].as_array().map_or(0, Vec::len))
            .sum()
    };
    assert_eq!(count("resourceSpans", "scopeSpans", "spans"), 1, "{text}");
    assert_eq!(
        count("resourceLogs", "scopeLogs", "logRecords"),
        2,
        "{text}"
    );
    assert_eq!(
        count("resourceMetrics", "scopeMetrics", "metrics"),
        2,
        "{text}"
    );

    for pii in PII {
        assert!(!text.contains(pii), "{pii:?} reached the output:\n{text}");
    }
    // What is not personal data is kept, and changed records say so.
    for kept in [
        "checkout",
        "4111111111111112",
        "charge ****",
        "redaction.masked.count",
        "redaction.masked.keys",
        "Bearer ****",
        "https://****@api.example.com/v1?token=****&page=2",
        "login from **** by ****",
    ] {
        assert!(
            text.contains(kept),
            "{kept:?} missing from the output:\n{text}"
        );
    }
}

/// Runs Sightline with `REDACTION_HASH_KEY=key`, sends one log line holding an email
/// address and returns the body as written.
async fn hashed_body(key: &str) -> String {
    let ports = Ports::new();
    let dir = temp_dir("redaction-hash");
    let out = dir.join("out.jsonl");
    let redaction = r#"
    allow_all_keys: true
    detectors: [email]
    action: hash
    hash_key: ${env:REDACTION_HASH_KEY}"#;
    let mut sl = Sightline::start_with_env(
        &file_config(ports, redaction, &out),
        ports,
        &[("REDACTION_HASH_KEY", key)],
    )
    .await;
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(vec![]),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: av(Value::StringValue("signup bob@example.com".into())),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    post(
        &sl,
        "/v1/logs",
        "application/x-protobuf",
        request.encode_to_vec(),
    )
    .await;
    assert!(sl.terminate().await.success(), "{}", sl.logs());
    let text = read(&out);
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    line["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["body"]["stringValue"]
        .as_str()
        .unwrap_or_else(|| panic!("no body in {text}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_pseudonyms_survive_restarts_and_follow_the_key() {
    let first = hashed_body("key-one").await;
    let after_restart = hashed_body("key-one").await;
    let other_key = hashed_body("key-two").await;
    assert!(!first.contains("bob"), "{first}");
    let pseudonym = first.strip_prefix("signup ").unwrap_or_default();
    assert_eq!(pseudonym.len(), 16, "{first}");
    assert!(pseudonym.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    assert_eq!(first, after_restart, "same key, same pseudonym");
    assert_ne!(first, other_key, "another key, another pseudonym");
}

#[test]
fn validate_reports_a_broken_regex_with_its_position() {
    let config = r#"
receivers: { otlp: { protocols: { grpc: {} } } }
processors:
  redaction:
    allow_all_keys: true
    blocked_values: ["ok", "(?i)pass(word"]
    detectors: [email, credit_crad]
exporters: { debug: {} }
service:
  pipelines:
    traces: { receivers: [otlp], processors: [redaction], exporters: [debug] }
"#;
    let (code, stderr) = validate_yaml("redaction-validate", config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("processors::redaction:"),
        "names the component: {stderr}"
    );
    // The first problem serde meets is the unknown detector; fix it and the regex shows.
    assert!(
        stderr.contains("detectors[1]") && stderr.contains("did you mean \"credit_card\""),
        "{stderr}"
    );
    let (code, stderr) = validate_yaml(
        "redaction-validate",
        &config.replace("credit_crad", "credit_card"),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("processors::redaction: blocked_values[1]")
            && stderr.contains("unclosed group at position 9"),
        "{stderr}"
    );
}
