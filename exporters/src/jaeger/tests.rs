//! Tests of the jaeger exporter: config, the translation to Jaeger's model field by field,
//! and round trips of each protocol through the strict collector of [`super::testing`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::common::v1::any_value::Value;
use pipeline_core::proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValueList,
};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status as OtlpStatus, span,
};
use pipeline_core::testing::{attribute, check_exporter, log_batch, span_batch};
use pipeline_core::{AckToken, Batch};
use serde_json::{Value as Json, json};
use tonic::Status;

use super::Factory;
use super::config::{JaegerConfig, JaegerProtocol};
use super::model::{KeyValue, SpanRefType, ValueType};
use super::testing::JaegerCollector;
use super::translate::{NO_SERVICE_NAME, batches};
use crate::helper::Compression;
use crate::helper::testutil::{TestCtx, eventually, fast_retries, in_secs, start_exporter};

fn parse(v: Json) -> Result<JaegerConfig, pipeline_core::FieldError> {
    <JaegerConfig as pipeline_core::ComponentConfig>::parse(&v)
}

#[test]
fn config_defaults_and_errors() {
    let c = parse(json!({"endpoint": "jaeger:4317"})).unwrap();
    assert_eq!(c.protocol, JaegerProtocol::OtlpGrpc);
    assert_eq!(c.grpc_uri().unwrap().to_string(), "http://jaeger:4317/");
    assert_eq!(c.compression(), Compression::Gzip);
    let c = parse(json!({"endpoint": "http://jaeger:4318", "protocol": "otlp_http"})).unwrap();
    assert_eq!(
        c.as_otlphttp()
            .signal_urls()
            .unwrap()
            .get(pipeline_core::Signal::Traces)
            .as_ref()
            .unwrap()
            .to_string(),
        "http://jaeger:4318/v1/traces"
    );
    let c = parse(json!({"endpoint": "jaeger:14250", "protocol": "grpc"})).unwrap();
    assert_eq!(c.protocol, JaegerProtocol::Grpc);
    assert_eq!(c.compression(), Compression::None);
    let c = parse(json!({"endpoint": "j:1", "protocol": "grpc", "compression": "gzip"})).unwrap();
    assert_eq!(c.compression(), Compression::Gzip);
    assert!(parse(json!({})).unwrap_err().message.contains("endpoint"));
    assert_eq!(
        parse(json!({"endpoint": "j:1", "protocol": "thrift_http"}))
            .unwrap_err()
            .path,
        "protocol"
    );
    assert_eq!(
        parse(json!({"endpoint": "http://j:1/api/traces", "protocol": "grpc"}))
            .unwrap_err()
            .path,
        "endpoint"
    );
    // A bare host:port is no HTTP URL.
    assert_eq!(
        parse(json!({"endpoint": "j:4318", "protocol": "otlp_http"}))
            .unwrap_err()
            .path,
        "endpoint"
    );
    let e = parse(json!({"endpoint": "j:1", "protocl": "grpc"})).unwrap_err();
    assert!(e.message.contains("did you mean \"protocol\""), "{e}");
    assert_eq!(
        parse(json!({"endpoint": "j:1", "sending_queue": {"num_consumers": 0}}))
            .unwrap_err()
            .path,
        "sending_queue.num_consumers"
    );
}

#[tokio::test]
async fn conformance() {
    for config in [
        json!({"endpoint": "127.0.0.1:1"}),
        json!({"endpoint": "http://127.0.0.1:1", "protocol": "otlp_http"}),
        json!({"endpoint": "127.0.0.1:1", "protocol": "grpc"}),
    ] {
        check_exporter(&Factory, &config).await;
    }
}

fn any(value: Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];

/// A span with every field the translation reads, under a resource with `service.name`,
/// and a second resource without one.
fn rich_payload() -> Payload {
    let span = OtlpSpan {
        trace_id: TRACE.to_vec(),
        span_id: vec![0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        parent_span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
        trace_state: "rojo=00f067aa0ba902b7".into(),
        flags: 0x101,
        name: "POST /api/login".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_705_314_600_123_456_789,
        end_time_unix_nano: 1_705_314_600_180_456_789,
        attributes: vec![
            attribute("http.route", Value::StringValue("/api/login".into())),
            attribute("http.response.status_code", Value::IntValue(500)),
            attribute("retry", Value::BoolValue(true)),
            attribute("ratio", Value::DoubleValue(0.25)),
            attribute("blob", Value::BytesValue(vec![0xde, 0xad])),
            attribute(
                "tags",
                Value::ArrayValue(ArrayValue {
                    values: vec![any(Value::StringValue("a".into())), any(Value::IntValue(2))],
                }),
            ),
            attribute(
                "user",
                Value::KvlistValue(KeyValueList {
                    values: vec![attribute("id", Value::IntValue(7))],
                }),
            ),
        ],
        events: vec![span::Event {
            time_unix_nano: 1_705_314_600_150_000_000,
            name: "exception".into(),
            attributes: vec![attribute(
                "exception.type",
                Value::StringValue("ValueError".into()),
            )],
            ..Default::default()
        }],
        links: vec![
            span::Link {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                ..Default::default()
            },
            span::Link {
                trace_id: vec![7; 16],
                span_id: vec![6; 8],
                ..Default::default()
            },
        ],
        status: Some(OtlpStatus {
            message: "database timeout".into(),
            code: 2,
        }),
        ..Default::default()
    };
    let root = OtlpSpan {
        trace_id: vec![3; 16],
        span_id: vec![4; 8],
        name: "GET /health".into(),
        kind: span::SpanKind::Unspecified as i32,
        start_time_unix_nano: 10,
        end_time_unix_nano: 5,
        status: Some(OtlpStatus {
            message: String::new(),
            code: 1,
        }),
        ..Default::default()
    };
    Payload::Traces(vec![
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", Value::StringValue("api".into())),
                    attribute("host.name", Value::StringValue("node-1".into())),
                    attribute("process.pid", Value::IntValue(4242)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "flask".into(),
                    version: "3.0.0".into(),
                    ..Default::default()
                }),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        },
        ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![root],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        },
        // A resource without spans makes no call.
        ResourceSpans::default(),
    ])
}

fn tag<'a>(tags: &'a [KeyValue], key: &str) -> &'a KeyValue {
    tags.iter()
        .find(|t| t.key == key)
        .unwrap_or_else(|| panic!("no tag {key} in {tags:?}"))
}

fn assert_rich_translation(jaeger: &[super::model::Batch]) {
    assert_eq!(jaeger.len(), 2);
    let process = jaeger[0].process.as_ref().unwrap();
    assert_eq!(process.service_name, "api");
    assert_eq!(process.tags.len(), 2);
    assert_eq!(tag(&process.tags, "host.name").v_str, "node-1");
    let pid = tag(&process.tags, "process.pid");
    assert_eq!((pid.v_type, pid.v_int64), (ValueType::Int64 as i32, 4242));
    assert_eq!(
        jaeger[1].process.as_ref().unwrap().service_name,
        NO_SERVICE_NAME
    );

    let s = &jaeger[0].spans[0];
    assert_eq!(s.trace_id, TRACE);
    // High and low halves, big-endian, as Jaeger reads the 16 bytes.
    assert_eq!(
        u64::from_be_bytes(s.trace_id[..8].try_into().unwrap()),
        0x4bf9_2f35_77b3_4da6
    );
    assert_eq!(
        u64::from_be_bytes(s.trace_id[8..].try_into().unwrap()),
        0xa3ce_929d_0e0e_4736
    );
    assert_eq!(s.span_id, [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    assert_eq!(s.operation_name, "POST /api/login");
    assert_eq!(s.flags, 1);
    let start = s.start_time.unwrap();
    assert_eq!((start.seconds, start.nanos), (1_705_314_600, 123_456_789));
    let d = s.duration.unwrap();
    assert_eq!((d.seconds, d.nanos), (0, 57_000_000));
    assert_eq!(s.references.len(), 3);
    assert_eq!(s.references[0].ref_type, SpanRefType::ChildOf as i32);
    assert_eq!(s.references[0].trace_id, TRACE);
    assert_eq!(s.references[0].span_id, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(s.references[1].ref_type, SpanRefType::FollowsFrom as i32);
    assert_eq!(s.references[1].trace_id, [9; 16]);
    assert_eq!(s.references[2].span_id, [6; 8]);

    let t = &s.tags;
    assert_eq!(tag(t, "http.route").v_str, "/api/login");
    let status = tag(t, "http.response.status_code");
    assert_eq!(
        (status.v_type, status.v_int64),
        (ValueType::Int64 as i32, 500)
    );
    let retry = tag(t, "retry");
    assert_eq!((retry.v_type, retry.v_bool), (ValueType::Bool as i32, true));
    let ratio = tag(t, "ratio");
    assert_eq!(
        (ratio.v_type, ratio.v_float64),
        (ValueType::Float64 as i32, 0.25)
    );
    let blob = tag(t, "blob");
    assert_eq!(
        (blob.v_type, blob.v_binary.as_slice()),
        (ValueType::Binary as i32, &[0xde, 0xad][..])
    );
    assert_eq!(tag(t, "tags").v_str, r#"["a",2]"#);
    assert_eq!(tag(t, "user").v_str, r#"{"id":7}"#);
    assert_eq!(tag(t, "span.kind").v_str, "server");
    assert_eq!(tag(t, "otel.status_code").v_str, "ERROR");
    assert_eq!(tag(t, "otel.status_description").v_str, "database timeout");
    let error = tag(t, "error");
    assert_eq!((error.v_type, error.v_bool), (ValueType::Bool as i32, true));
    assert_eq!(tag(t, "w3c.tracestate").v_str, "rojo=00f067aa0ba902b7");
    assert_eq!(tag(t, "otel.scope.name").v_str, "flask");
    assert_eq!(tag(t, "otel.scope.version").v_str, "3.0.0");
    assert_eq!(t.len(), 14);

    assert_eq!(s.logs.len(), 1);
    let log = &s.logs[0];
    assert_eq!(log.timestamp.unwrap().nanos, 150_000_000);
    assert_eq!(log.fields[0].key, "event");
    assert_eq!(log.fields[0].v_str, "exception");
    assert_eq!(tag(&log.fields, "exception.type").v_str, "ValueError");

    let root = &jaeger[1].spans[0];
    assert!(root.references.is_empty());
    assert_eq!(tag(&root.tags, "otel.status_code").v_str, "OK");
    assert!(
        root.tags
            .iter()
            .all(|t| t.key != "span.kind" && t.key != "error")
    );
    // An end before the start is a zero duration, not a wrap-around.
    assert_eq!(root.duration.unwrap().seconds, 0);
}

#[test]
fn translation_maps_every_field() {
    assert_rich_translation(&batches(&rich_payload()));
    assert!(batches(&log_batch(2).payload_view()).is_empty());
}

fn grpc_config(collector: &JaegerCollector, protocol: &str) -> Json {
    let endpoint = match protocol {
        "otlp_http" => collector.http_url(),
        _ => collector.grpc_addr().to_string(),
    };
    fast_retries(json!({"endpoint": endpoint, "protocol": protocol}))
}

#[tokio::test]
async fn post_spans_round_trip() {
    let collector = JaegerCollector::start().await.unwrap();
    let t = TestCtx::new("jaeger/grpc");
    let x = start_exporter(&Factory, &t, grpc_config(&collector, "grpc")).await;
    x.consume(Batch::new(rich_payload())).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 2.0
        })
        .await
    );
    assert_eq!(collector.violations(), Vec::<String>::new());
    // One call per resource, decoded by the collector's api_v2 messages.
    assert_eq!(collector.calls(), 2);
    assert_rich_translation(&collector.jaeger_batches());
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn otlp_protocols_deliver_the_batch_unchanged() {
    let collector = JaegerCollector::start().await.unwrap();
    for (i, protocol) in ["otlp_grpc", "otlp_http"].into_iter().enumerate() {
        let t = TestCtx::new(&format!("jaeger/{protocol}"));
        let x = start_exporter(&Factory, &t, grpc_config(&collector, protocol)).await;
        let batch = span_batch(3);
        x.consume(batch.clone()).await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || async {
                t.sent("traces") == 3.0
            })
            .await
        );
        let requests = collector.otlp_requests();
        assert_eq!(requests.len(), i + 1);
        assert_eq!(
            Payload::Traces(requests[i].resource_spans.clone()),
            batch.into_parts().0
        );
        x.shutdown(in_secs(5.0)).await.unwrap();
    }
}

#[tokio::test]
async fn unavailable_then_success_resumes_without_duplicates() {
    let collector = JaegerCollector::start().await.unwrap();
    let t = TestCtx::new("jaeger/unavailable");
    let x = start_exporter(&Factory, &t, grpc_config(&collector, "grpc")).await;
    let outcome = std::sync::Arc::new(std::sync::Mutex::new(None));
    let o = std::sync::Arc::clone(&outcome);
    let mut batch = Batch::new(rich_payload());
    batch
        .ctx
        .acks
        .push(AckToken::new(move |ok| *o.lock().unwrap() = Some(ok)));
    // The first resource goes through, the second finds the collector down once.
    collector.pass_next();
    collector.fail_next(Status::unavailable("collector restarting"));
    x.consume(batch).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 2.0
        })
        .await
    );
    assert_eq!(collector.calls(), 3);
    let services: Vec<_> = collector
        .jaeger_batches()
        .iter()
        .map(|b| b.process.as_ref().unwrap().service_name.clone())
        .collect();
    assert_eq!(services, ["api", NO_SERVICE_NAME]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            *outcome.lock().unwrap() == Some(true)
        })
        .await
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn invalid_argument_is_dropped_and_counted_and_later_batches_go_through() {
    let collector = JaegerCollector::start().await.unwrap();
    let t = TestCtx::new("jaeger/invalid");
    let x = start_exporter(&Factory, &t, grpc_config(&collector, "grpc")).await;
    collector.fail_next(Status::invalid_argument("span too large"));
    x.consume(span_batch(3)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("traces", "rejected") == 3.0
        })
        .await
    );
    x.consume(span_batch(2)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 2.0
        })
        .await
    );
    assert_eq!(collector.calls(), 2);
    assert_eq!(t.health(), "ok");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[test]
fn wire_bytes_use_the_upstream_field_numbers() {
    use prost::Message;
    // KeyValue { key = 1, v_type = 2, v_int64 = 5 }, written out by hand.
    let kv = KeyValue {
        key: "a".into(),
        v_type: ValueType::Int64 as i32,
        v_int64: 5,
        ..Default::default()
    };
    assert_eq!(kv.encode_to_vec(), [0x0a, 1, b'a', 0x10, 2, 0x28, 5]);
    // SpanRef { trace_id = 1, span_id = 2, ref_type = 3 } with FOLLOWS_FROM.
    let r = super::model::SpanRef {
        trace_id: vec![1],
        span_id: vec![2],
        ref_type: SpanRefType::FollowsFrom as i32,
    };
    assert_eq!(r.encode_to_vec(), [0x0a, 1, 1, 0x12, 1, 2, 0x18, 1]);
    // PostSpansRequest { batch = 1 { process = 2 { service_name = 1 } } }.
    let req = super::model::PostSpansRequest {
        batch: Some(super::model::Batch {
            spans: vec![],
            process: Some(super::model::Process {
                service_name: "s".into(),
                tags: vec![],
            }),
        }),
    };
    assert_eq!(req.encode_to_vec(), [0x0a, 5, 0x12, 3, 0x0a, 1, b's']);
}

#[tokio::test]
async fn collector_down_then_up_delivers_everything() {
    let collector = JaegerCollector::start_paused().await.unwrap();
    let t = TestCtx::new("jaeger/down");
    let mut config = grpc_config(&collector, "grpc");
    config["timeout"] = json!("200ms");
    let x = start_exporter(&Factory, &t, config).await;
    x.consume(Batch::new(rich_payload())).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.send_attempts("failure") >= 2.0
        })
        .await
    );
    assert!(t.health().contains("recoverable"), "{}", t.health());
    collector.resume();
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.sent("traces") == 2.0
        })
        .await
    );
    // Attempts that timed out had already written their request into a connection waiting
    // in the backlog; the collector reads those too once it serves. Delivery is at least
    // once: every resource arrived, the last copy of each complete.
    let batches = collector.jaeger_batches();
    let last = |service: &str| {
        batches
            .iter()
            .rev()
            .find(|b| b.process.as_ref().unwrap().service_name == service)
            .unwrap()
            .clone()
    };
    assert_rich_translation(&[last("api"), last(NO_SERVICE_NAME)]);
    assert_eq!(t.health(), "ok");
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn logs_fed_to_the_api_v2_sender_are_rejected_not_counted_as_sent() {
    let collector = JaegerCollector::start().await.unwrap();
    let t = TestCtx::new("jaeger/logs");
    let x = start_exporter(&Factory, &t, grpc_config(&collector, "grpc")).await;
    x.consume(log_batch(3)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            t.dropped("logs", "rejected") == 3.0
        })
        .await
    );
    assert_eq!(t.sent("logs"), 0.0);
    assert_eq!(collector.calls(), 0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}
