//! Tests of the loki exporter: config, labels and lines, and round trips through the
//! strict push server of [`super::testing`], with faults.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipeline_core::testing::{check_exporter, span_batch};
use pipeline_core::{AckToken, Batch, DynExporterFactory};
use serde_json::{Value, json};

use super::Factory;
use pipeline_core::Payload;
use prost::Message;

use super::config::{LineFormat, LokiConfig, LokiEncoding, sanitize_label_name};
use super::encode::{Mapping, build_streams, encode_parts};
use super::proto::{PushRequest, StreamAdapter};
use super::testing::{LokiServer, Reply, parse_labels, request_logs};
use crate::helper::testutil::{TestCtx, eventually, fast_retries, in_secs, start_exporter};

const T0: u64 = 1_705_314_600_000_000_000;

fn parse(v: Value) -> Result<LokiConfig, pipeline_core::FieldError> {
    <LokiConfig as pipeline_core::ComponentConfig>::parse(&v)
}

#[test]
fn config_defaults_and_errors() {
    let c = parse(json!({"endpoint": "http://loki:3100"})).unwrap();
    assert_eq!(
        c.push_url().unwrap().to_string(),
        "http://loki:3100/loki/api/v1/push"
    );
    assert_eq!(c.label_attributes["service.name"], "service_name");
    assert_eq!(c.label_attributes["severity"], "level");
    assert_eq!(c.line_format, LineFormat::Body);
    assert!(c.structured_metadata);
    assert_eq!(c.max_request_bytes, 4 << 20);
    let c = parse(json!({"endpoint": "https://logs.example/custom/push"})).unwrap();
    assert_eq!(c.push_url().unwrap().path(), "/custom/push");

    assert!(parse(json!({})).unwrap_err().message.contains("endpoint"));
    let e = parse(json!({"endpoint": "http://l:1", "lables": {}})).unwrap_err();
    assert!(e.message.contains("did you mean \"labels\""), "{e}");
    assert_eq!(
        parse(json!({"endpoint": "http://l:1", "encoding": "snappy"}))
            .unwrap_err()
            .path,
        "encoding"
    );
    assert_eq!(
        parse(json!({"endpoint": "http://l:1", "tenant_id": "a\nb"}))
            .unwrap_err()
            .path,
        "tenant_id"
    );
    assert_eq!(
        parse(json!({"endpoint": "http://l:1", "max_request_bytes": 10}))
            .unwrap_err()
            .path,
        "max_request_bytes"
    );
    assert_eq!(
        parse(json!({"endpoint": "http://l:1", "label_attributes": {"k8s.pod.name": "__pod"}}))
            .unwrap_err()
            .path,
        "label_attributes.k8s.pod.name"
    );
    assert_eq!(
        parse(json!({"endpoint": "http://l:1", "labels": {"": "x"}}))
            .unwrap_err()
            .path,
        "labels."
    );
    assert_eq!(
        parse(json!({"endpoint": "loki:3100"})).unwrap_err().path,
        "endpoint"
    );
}

#[test]
fn high_cardinality_label_keys_are_flagged() {
    let c = parse(json!({"endpoint": "http://l:1", "label_attributes": {
        "service.name": "service_name", "trace_id": "trace", "http.request.header.x-request-id": "rid",
        "k8s.namespace.name": "namespace", "x": "user_id"}}))
    .unwrap();
    assert_eq!(
        c.high_cardinality_labels(),
        vec!["http.request.header.x-request-id", "trace_id", "x"]
    );
    assert!(
        parse(json!({"endpoint": "http://l:1"}))
            .unwrap()
            .high_cardinality_labels()
            .is_empty()
    );
}

#[test]
fn label_names_follow_lokis_rule() {
    assert_eq!(sanitize_label_name("service.name"), "service_name");
    assert_eq!(sanitize_label_name("k8s-pod/name"), "k8s_pod_name");
    assert_eq!(sanitize_label_name("1st"), "_1st");
    assert_eq!(sanitize_label_name("ok_1"), "ok_1");
    assert_eq!(sanitize_label_name("é"), "_");
}

fn mapping(extra: &Value) -> Mapping {
    Mapping::new(&parse(with(json!({"endpoint": "http://l:1"}), extra)).unwrap())
}

fn with(mut config: Value, extra: &Value) -> Value {
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    config
}

/// The streams of `batch` as the exporter encodes them (protobuf), decoded, per part.
fn pushed(batch: &Batch, extra: &Value, max_bytes: usize) -> Vec<Vec<StreamAdapter>> {
    let m = mapping(extra);
    let payload = batch.payload_view();
    let streams = build_streams(&payload, &m, 0).unwrap();
    encode_parts(&streams, &m, LokiEncoding::Protobuf, max_bytes)
        .iter()
        .map(|p| {
            assert!(
                p.body.len() <= max_bytes || p.items == 1,
                "{}",
                p.body.len()
            );
            let request = PushRequest::decode(&p.body[..]).unwrap();
            let items: usize = request.streams.iter().map(|s| s.entries.len()).sum();
            assert_eq!(items, p.items);
            request.streams
        })
        .collect()
}

fn pushed_one(batch: &Batch, extra: &Value) -> Vec<StreamAdapter> {
    let mut parts = pushed(batch, extra, 4 << 20);
    assert_eq!(parts.len(), 1);
    parts.remove(0)
}

#[test]
fn streams_are_grouped_sorted_and_escaped() {
    let batch = request_logs(40, T0);
    let extra = json!({"labels": {"env": "a \"quoted\" \\ value", "team-name": "x"}});
    let m = mapping(&extra);
    let payload = batch.payload_view();
    let streams = build_streams(&payload, &m, 0).unwrap();
    // INFO and ERROR records: two streams.
    assert_eq!(streams.len(), 2);
    for s in &streams {
        let parsed = parse_labels(&s.key).unwrap();
        assert_eq!(parsed["env"], "a \"quoted\" \\ value");
        assert_eq!(parsed["team_name"], "x");
        assert_eq!(parsed["service_name"], "api");
        assert!(s.entries.windows(2).all(|w| w[0].nanos <= w[1].nanos));
    }
    let levels: Vec<_> = streams
        .iter()
        .map(|s| parse_labels(&s.key).unwrap()["level"].clone())
        .collect();
    assert_eq!(levels, ["info", "error"]);
    assert_eq!(streams[0].entries.len() + streams[1].entries.len(), 40);
    // The encoded request says the same.
    let decoded = pushed_one(&batch, &extra);
    assert_eq!(decoded.len(), 2);
    assert_eq!(decoded[0].labels, streams[0].key);
    let times: Vec<u64> = decoded[0]
        .entries
        .iter()
        .map(|e| e.timestamp.unwrap().unix_nanos())
        .collect();
    assert_eq!(
        times,
        streams[0]
            .entries
            .iter()
            .map(|e| e.nanos)
            .collect::<Vec<_>>()
    );
    // Traces are not logs.
    assert!(build_streams(&span_batch(1).payload_view(), &m, 0).is_err());
}

#[test]
fn records_without_label_values_get_the_fallback_stream() {
    let streams = pushed_one(
        &request_logs(3, T0),
        &json!({"label_attributes": {"k8s.namespace.name": "namespace"}}),
    );
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].labels, "{service_name=\"unknown_service\"}");
    // service.name is no label now, so it is metadata, and so is the severity.
    let meta = &streams[0].entries[0].structured_metadata;
    assert!(
        meta.iter()
            .any(|p| p.name == "service_name" && p.value == "api")
    );
    assert!(
        meta.iter()
            .any(|p| p.name == "severity_text" && p.value == "info")
    );
}

#[test]
fn record_attributes_win_over_resource_attributes_and_ids() {
    let mut batch = request_logs(1, T0);
    let Payload::Logs(rl) = batch.payload_mut() else {
        unreachable!()
    };
    let record = &mut rl[0].scope_logs[0].log_records[0];
    record.attributes.push(pipeline_core::attributes::string(
        "host.name",
        "from-record",
    ));
    record
        .attributes
        .push(pipeline_core::attributes::string("trace_id", "custom"));
    let entry = &pushed_one(&batch, &json!({}))[0].entries[0];
    let values = |name: &str| -> Vec<&str> {
        entry
            .structured_metadata
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.value.as_str())
            .collect()
    };
    assert_eq!(values("host_name"), ["from-record"]);
    assert_eq!(values("trace_id"), ["custom"]);
}

#[test]
fn line_formats() {
    let batch = request_logs(1, T0);
    let line = |format: &str| {
        pushed_one(&batch, &json!({"line_format": format}))[0].entries[0]
            .line
            .clone()
    };
    assert_eq!(line("body"), "Request completed");
    let j: Value = serde_json::from_str(&line("json")).unwrap();
    assert_eq!(j["body"], "Request completed");
    assert_eq!(j["severity"], "info");
    assert_eq!(j["status_code"], 200);
    assert_eq!(j["duration_seconds"], 0.057);
    assert_eq!(j["trace_id"], "0000000000005eed0000000000000001");
    assert_eq!(j["span_id"], "0000000000000001");
    let l = line("logfmt");
    assert!(
        l.starts_with("body=\"Request completed\" severity=info trace_id=0000000000005eed0000000000000001 span_id=0000000000000001 module=app"),
        "{l}"
    );
    assert!(l.contains(" status_code=200 "), "{l}");
    assert!(l.contains(" path=/api/login "), "{l}");
}

#[test]
fn entries_of_every_size_encode_exactly() {
    // Under 128 bytes, 128 to 16383, and over: one, two and three length bytes.
    for len in [10, 300, 20_000] {
        let mut batch = request_logs(2, T0);
        let Payload::Logs(rl) = batch.payload_mut() else {
            unreachable!()
        };
        for record in &mut rl[0].scope_logs[0].log_records {
            record.body = Some(pipeline_core::proto::tonic::common::v1::AnyValue {
                value: Some(
                    pipeline_core::proto::tonic::common::v1::any_value::Value::StringValue(
                        "x".repeat(len),
                    ),
                ),
            });
        }
        for extra in [json!({"structured_metadata": false}), json!({})] {
            let streams = pushed_one(&batch, &extra);
            assert_eq!(streams[0].entries.len(), 2);
            assert!(streams[0].entries.iter().all(|e| e.line.len() == len));
        }
    }
}

#[test]
fn structured_metadata_can_be_turned_off() {
    let streams = pushed_one(
        &request_logs(2, T0),
        &json!({"structured_metadata": false, "line_format": "json"}),
    );
    assert!(streams[0].entries[0].structured_metadata.is_empty());
}

#[test]
fn large_batches_split_without_reordering() {
    let batch = request_logs(500, T0);
    let whole = pushed_one(&batch, &json!({}));
    let parts = pushed(&batch, &json!({}), 8 * 1024);
    assert!(parts.len() > 3, "{}", parts.len());
    // Concatenated per stream, the parts give the streams back in order.
    for s in &whole {
        let joined: Vec<_> = parts
            .iter()
            .flatten()
            .filter(|ps| ps.labels == s.labels)
            .flat_map(|ps| ps.entries.clone())
            .collect();
        assert_eq!(joined, s.entries);
    }
    // The same holds for JSON bodies.
    let m = mapping(&json!({"encoding": "json"}));
    let payload = batch.payload_view();
    let streams = build_streams(&payload, &m, 0).unwrap();
    let json_parts = encode_parts(&streams, &m, LokiEncoding::Json, 8 * 1024);
    assert!(json_parts.len() > 3);
    let mut n = 0;
    for p in &json_parts {
        assert!(p.body.len() <= 8 * 1024, "{}", p.body.len());
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        n += v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum::<usize>();
    }
    assert_eq!(n, 500);
}

#[tokio::test]
async fn conformance() {
    check_exporter(&Factory, &json!({"endpoint": "http://127.0.0.1:1"})).await;
}

fn config(server: &LokiServer, extra: Value) -> Value {
    let mut c = fast_retries(json!({"endpoint": server.url()}));
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

/// A batch whose token records the outcome.
fn tracked(batch: Batch) -> (Batch, Arc<Mutex<Option<bool>>>) {
    let outcome = Arc::new(Mutex::new(None));
    let o = Arc::clone(&outcome);
    let mut batch = batch;
    batch
        .ctx
        .acks
        .push(AckToken::new(move |ok| *o.lock().unwrap() = Some(ok)));
    (batch, outcome)
}

#[tokio::test]
async fn protobuf_round_trip_maps_every_field() {
    let server = LokiServer::start().await.unwrap();
    let t = TestCtx::new("loki/proto");
    let x = start_exporter(
        &Factory,
        &t,
        config(
            &server,
            json!({"tenant_id": "team-a", "labels": {"env": "prod"}, "headers": {"x-extra": "1"}}),
        ),
    )
    .await;
    let (batch, acked) = tracked(request_logs(40, T0));
    x.consume(batch).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || async { t.sent("logs") == 40.0 }).await);
    assert_eq!(server.violations(), Vec::<String>::new());
    let pushes = server.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].tenant.as_deref(), Some("team-a"));
    assert_eq!(pushes[0].content_type, "application/x-protobuf");
    assert_eq!(pushes[0].streams, 2);
    let entries = server.accepted();
    assert_eq!(entries.len(), 40);
    let e = entries
        .iter()
        .find(|e| e.meta("request_id") == Some("req-00000003-4d2b-9c1e"))
        .unwrap();
    assert_eq!(
        e.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
        ["env=prod", "level=info", "service_name=api"]
    );
    // Record 3 arrived 5ms late: its own time, not its position.
    assert_eq!(e.timestamp, T0 + 3_000_000 - 5_000_000);
    assert_eq!(e.line, "Request completed");
    for (name, value) in [
        ("module", "app"),
        ("line", "185"),
        ("status_code", "200"),
        ("duration_seconds", "0.057"),
        ("method", "POST"),
        ("path", "/api/login"),
        ("user_id", "12348"),
        ("trace_id", "0000000000005eed0000000000000004"),
        ("span_id", "0000000000000004"),
        ("host_name", "node-1"),
        ("deployment_environment", "prod"),
    ] {
        assert_eq!(e.meta(name), Some(value), "{name} in {:?}", e.metadata);
    }
    // Labels are not repeated as metadata.
    assert_eq!(e.meta("service_name"), None);
    assert_eq!(e.meta("severity_text"), None);
    let errors: Vec<_> = entries
        .iter()
        .filter(|e| e.labels["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(
        eventually(Duration::from_secs(5), || async {
            *acked.lock().unwrap() == Some(true)
        })
        .await
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn json_round_trip_with_gzip() {
    let server = LokiServer::start().await.unwrap();
    let t = TestCtx::new("loki/json");
    let x = start_exporter(
        &Factory,
        &t,
        config(
            &server,
            json!({"encoding": "json", "line_format": "logfmt"}),
        ),
    )
    .await;
    x.consume(request_logs(10, T0)).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || async { t.sent("logs") == 10.0 }).await);
    assert_eq!(server.violations(), Vec::<String>::new());
    assert_eq!(server.pushes()[0].content_type, "application/json");
    let entries = server.accepted();
    assert_eq!(entries.len(), 10);
    let e = entries
        .iter()
        .find(|e| e.meta("span_id") == Some("0000000000000002"))
        .unwrap();
    assert_eq!(e.timestamp, T0 + 1_000_000);
    assert!(
        e.line
            .starts_with("body=\"Request completed\" severity=info"),
        "{}",
        e.line
    );
    assert_eq!(e.meta("status_code"), Some("200"));
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn status_429_then_success_loses_and_duplicates_nothing() {
    let server = LokiServer::start().await.unwrap();
    let t = TestCtx::new("loki/429");
    // Split into several requests; the second is throttled once.
    let x = start_exporter(
        &Factory,
        &t,
        config(&server, json!({"max_request_bytes": 4096})),
    )
    .await;
    server.reply(Reply {
        status: 204,
        retry_after: None,
        body: String::new(),
    });
    server.reply(Reply {
        status: 429,
        retry_after: Some(0),
        body: "Ingestion rate limit exceeded for user fake".into(),
    });
    let (batch, acked) = tracked(request_logs(200, T0));
    x.consume(batch).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("logs") == 200.0
        })
        .await
    );
    let pushes = server.pushes();
    assert!(pushes.len() > 3, "{}", pushes.len());
    assert_eq!(pushes[1].status, 429);
    // The throttled part was sent again, the accepted one was not.
    assert_eq!(pushes[2].entries, pushes[1].entries);
    let mut ids: Vec<_> = server
        .accepted()
        .iter()
        .map(|e| e.meta("request_id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 200);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "duplicates");
    for p in &pushes {
        assert!(p.body_bytes <= 4096, "{}", p.body_bytes);
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            *acked.lock().unwrap() == Some(true)
        })
        .await
    );
    assert_eq!(t.dropped("logs", "rejected"), 0.0);
    assert_eq!(server.violations(), Vec::<String>::new());
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn status_400_is_dropped_and_counted_and_later_batches_go_through() {
    let server = LokiServer::start().await.unwrap();
    let t = TestCtx::new("loki/400");
    let x = start_exporter(&Factory, &t, config(&server, json!({}))).await;
    // Loki took part of the request and says how much it ignored.
    server.reply(Reply {
        status: 400,
        retry_after: None,
        body: "entry with timestamp 2024-01-15 10:30:00 +0000 UTC ignored, reason: 'entry too far behind, oldest acceptable timestamp is: 2024-01-15T11:30:00Z' for stream: {level=\"info\", service_name=\"api\"},\ntotal ignored: 3 out of 10".into(),
    });
    // And refused the whole of the next.
    server.reply(Reply {
        status: 400,
        retry_after: None,
        body: "error at least one label pair is required per stream".into(),
    });
    let (first, first_acked) = tracked(request_logs(10, T0));
    x.consume(first).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("logs", "rejected") == 3.0
        })
        .await
    );
    assert_eq!(t.sent("logs"), 7.0);
    x.consume(request_logs(5, T0)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("logs", "rejected") == 8.0
        })
        .await
    );
    x.consume(request_logs(4, T0 + 1_000_000_000))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || async { t.sent("logs") == 11.0 }).await);
    // Not retried: one request per batch.
    assert_eq!(server.pushes().len(), 3);
    assert_eq!(*first_acked.lock().unwrap(), Some(false));
    // A bad batch does not make Loki unhealthy.
    assert_eq!(t.health(), "ok");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn server_down_then_up_delivers_everything() {
    let server = LokiServer::start().await.unwrap();
    server.set_down(true);
    let t = TestCtx::new("loki/down");
    let x = start_exporter(&Factory, &t, config(&server, json!({}))).await;
    x.consume(request_logs(25, T0)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.send_attempts("failure") >= 2.0
        })
        .await
    );
    assert!(t.health().contains("recoverable"), "{}", t.health());
    server.set_down(false);
    assert!(eventually(Duration::from_secs(10), || async { t.sent("logs") == 25.0 }).await);
    assert_eq!(server.accepted().len(), 25);
    assert_eq!(t.health(), "ok");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn unauthorized_marks_the_exporter_unhealthy() {
    let server = LokiServer::start().await.unwrap();
    let t = TestCtx::new("loki/401");
    let x = start_exporter(&Factory, &t, config(&server, json!({}))).await;
    server.reply(Reply {
        status: 401,
        retry_after: None,
        body: "no org id".into(),
    });
    x.consume(request_logs(5, T0)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("logs", "rejected") == 5.0
        })
        .await
    );
    assert!(t.health().contains("permanent"), "{}", t.health());
    assert!(t.health().contains("no org id"), "{}", t.health());
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn traces_are_refused_at_build() {
    let t = TestCtx::new("loki/signals");
    assert_eq!(Factory.signals(), [pipeline_core::Signal::Logs]);
    let x = Factory
        .create(t.ctx.clone(), &json!({"endpoint": "http://127.0.0.1:1"}))
        .unwrap();
    // Fed traces anyway, the batch is dropped as rejected rather than sent.
    x.start(&pipeline_core::Host::new(std::env::temp_dir()))
        .await
        .unwrap();
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("traces", "rejected") == 2.0
        })
        .await
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[test]
fn wire_bytes_use_the_upstream_field_numbers() {
    use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter};
    use crate::helper::values::ProtoTimestamp;
    use prost::Message;
    // PushRequest { streams = 1 { labels = 1, entries = 2 { timestamp = 1 { seconds = 1 },
    // line = 2, structuredMetadata = 3 { name = 1, value = 2 } } } }, written out by hand.
    let request = PushRequest {
        streams: vec![StreamAdapter {
            labels: "{a=\"b\"}".into(),
            entries: vec![EntryAdapter {
                timestamp: Some(ProtoTimestamp {
                    seconds: 1,
                    nanos: 0,
                }),
                line: "x".into(),
                structured_metadata: vec![LabelPairAdapter {
                    name: "n".into(),
                    value: "v".into(),
                }],
            }],
            hash: 0,
        }],
    };
    let mut want = vec![0x0a, 26, 0x0a, 7];
    want.extend_from_slice(b"{a=\"b\"}");
    want.extend_from_slice(&[0x12, 15, 0x0a, 2, 0x08, 1, 0x12, 1, b'x']);
    want.extend_from_slice(&[0x1a, 6, 0x0a, 1, b'n', 0x12, 1, b'v']);
    assert_eq!(request.encode_to_vec(), want);
}
