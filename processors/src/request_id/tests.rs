use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use pipeline_core::telemetry::Telemetry;
use pipeline_core::testing::{AckProbe, CollectingConsumer, check_processor, metric_sum};
use pipeline_core::{
    AckOutcome, AckToken, Batch, ComponentId, ComponentKind, ConsumeError, Consumer, Host, Payload,
};
use serde_json::json;
use tokio::time::Instant;

use super::*;
use pipeline_core::DynProcessorFactory;
use serde_json::Value;

const SOON: Duration = Duration::from_secs(5);

fn host() -> Host {
    Host::new(std::env::temp_dir())
}

fn deadline() -> Instant {
    Instant::now() + SOON
}

/// A traces instance and a logs instance of one `request_id` component, as the graph
/// builds them for a component named in both pipelines.
struct Pair {
    traces: Arc<dyn ConsumerComponent>,
    logs: Arc<dyn ConsumerComponent>,
    traces_out: Arc<CollectingConsumer>,
    logs_out: Arc<CollectingConsumer>,
    ctx: CreateContext,
    telemetry: Telemetry,
}

impl Pair {
    fn new(config: Value) -> Pair {
        Self::with_logs_next(config, CollectingConsumer::new(), None)
    }

    fn with_logs_next(
        config: Value,
        logs_out: Arc<CollectingConsumer>,
        logs_next: Option<SharedConsumer>,
    ) -> Pair {
        let telemetry = Telemetry::new();
        let mut ctx = CreateContext::for_tests(ComponentKind::Processor, "request_id");
        ctx.telemetry = telemetry.component(
            ComponentKind::Processor,
            &ComponentId::parse("request_id").unwrap(),
        );
        let traces_out = CollectingConsumer::new();
        let traces = Factory
            .create(ctx.clone(), &config, Signal::Traces, traces_out.clone())
            .unwrap();
        let next = logs_next.unwrap_or_else(|| logs_out.clone());
        let logs = Factory
            .create(ctx.clone(), &config, Signal::Logs, next)
            .unwrap();
        Pair {
            traces,
            logs,
            traces_out,
            logs_out,
            ctx,
            telemetry,
        }
    }

    /// Items counted as dropped with `reason`.
    fn dropped(&self, reason: &str) -> f64 {
        metric_sum(
            &self.telemetry.render(),
            "sightline_component_items_dropped_total",
            &[("reason", reason)],
        )
    }

    async fn start(&self) {
        self.logs.start(&host()).await.unwrap();
        self.traces.start(&host()).await.unwrap();
    }

    async fn shutdown(&self) {
        self.traces.shutdown(deadline()).await.unwrap();
        self.logs.shutdown(deadline()).await.unwrap();
    }

    fn counter(&self, name: &str, label: &str) -> u64 {
        let labels: &[&str] = match name {
            MATCHED_METRIC => &["signal"],
            _ => &["reason"],
        };
        self.ctx
            .telemetry
            .counter_family(name, "", labels)
            .unwrap()
            .with_label_values(&["request_id", label])
            .get()
    }

    fn gauge(&self, name: &str) -> i64 {
        self.ctx
            .telemetry
            .gauge_family(name, "", &[])
            .unwrap()
            .with_label_values(&["request_id"])
            .get()
    }

    /// Every log record that came out, in order.
    fn records(&self) -> Vec<LogRecord> {
        self.logs_out
            .batches()
            .into_iter()
            .flat_map(|b| match b.into_parts().0 {
                Payload::Logs(rl) => rl,
                _ => Vec::new(),
            })
            .flat_map(|rl| rl.scope_logs)
            .flat_map(|sl| sl.log_records)
            .collect()
    }

    fn spans(&self) -> Vec<Span> {
        self.traces_out
            .batches()
            .into_iter()
            .flat_map(|b| match b.into_parts().0 {
                Payload::Traces(rs) => rs,
                _ => Vec::new(),
            })
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }

    async fn wait_for_records(&self, n: usize) -> usize {
        self.logs_out.wait_for_items(n, SOON).await
    }
}

fn sv(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: sv(value),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", service)],
        ..Default::default()
    })
}

fn trace_id(n: u8) -> Vec<u8> {
    vec![n; 16]
}

fn span_id(n: u8) -> Vec<u8> {
    vec![n; 8]
}

fn span(rid: Option<&str>, trace: u8, id: u8, kind: SpanKind, parent: Option<u8>) -> Span {
    Span {
        trace_id: trace_id(trace),
        span_id: span_id(id),
        parent_span_id: parent.map(span_id).unwrap_or_default(),
        name: "GET /login".into(),
        kind: kind as i32,
        flags: 0x101,
        attributes: rid.map(|r| vec![kv("request_id", r)]).unwrap_or_default(),
        ..Default::default()
    }
}

fn spans(list: Vec<Span>) -> Batch {
    Batch::new(Payload::Traces(vec![ResourceSpans {
        resource: resource("api"),
        scope_spans: vec![ScopeSpans {
            spans: list,
            ..Default::default()
        }],
        schema_url: String::new(),
    }]))
}

fn log(rid: Option<&str>, message: &str) -> LogRecord {
    LogRecord {
        body: sv(message),
        attributes: rid.map(|r| vec![kv("request_id", r)]).unwrap_or_default(),
        ..Default::default()
    }
}

fn log_with_context(rid: Option<&str>, message: &str, trace: u8, id: u8) -> LogRecord {
    LogRecord {
        trace_id: trace_id(trace),
        span_id: span_id(id),
        ..log(rid, message)
    }
}

fn logs_of(service: &str, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: resource(service),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "app".into(),
                ..Default::default()
            }),
            log_records: records,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn logs(records: Vec<LogRecord>) -> Batch {
    Batch::new(Payload::Logs(vec![logs_of("api", records)]))
}

fn message(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    pipeline_core::attributes::find(attributes, key)
}

#[tokio::test]
async fn conformance() {
    check_processor(&Factory).await;
}

#[test]
fn default_config_matches_the_issue() {
    let c: RequestIdConfig = pipeline_core::parse_config(&json!({})).unwrap();
    assert_eq!(
        c.request_id_attributes,
        vec![
            "request_id",
            "http.request.header.x-request-id",
            "http.request_id"
        ]
    );
    assert_eq!(c.wait.get(), Duration::from_secs(2));
    assert_eq!(c.ttl.get(), Duration::from_secs(300));
    assert_eq!(c.max_entries, 1_000_000);
    assert_eq!(c.max_pending_items, 100_000);
    // The issue's copyable config validates.
    Factory
        .validate(&json!({
            "request_id_attributes": ["request_id", "http.request.header.x-request-id"],
            "wait": "2s",
            "ttl": "5m"
        }))
        .unwrap();
}

#[test]
fn invalid_configs_name_the_field() {
    let err = |v: Value| Factory.validate(&v).unwrap_err();
    assert_eq!(
        err(json!({"request_id_attributes": []})).path,
        "request_id_attributes"
    );
    assert_eq!(
        err(json!({"request_id_attributes": ["a", ""]})).path,
        "request_id_attributes[1]"
    );
    let dup = err(json!({"request_id_attributes": ["a", "a"]}));
    assert_eq!(dup.path, "request_id_attributes[1]");
    assert!(dup.message.contains("twice"), "{}", dup.message);
    assert_eq!(err(json!({"ttl": "0s"})).path, "ttl");
    assert_eq!(err(json!({"ttl": "2d"})).path, "ttl");
    assert_eq!(err(json!({"ttl": "1s", "wait": "2s"})).path, "wait");
    assert_eq!(err(json!({"wait": "soon"})).path, "wait");
    assert_eq!(err(json!({"max_entries": 0})).path, "max_entries");
    assert_eq!(err(json!({"max_entries": -1})).path, "max_entries");
    let unknown = err(json!({"max_entrys": 5}));
    assert_eq!(unknown.path, "max_entrys");
    assert!(
        unknown.message.contains("did you mean \"max_entries\""),
        "{}",
        unknown.message
    );
    // wait 0 and max_pending_items 0 are allowed: they turn holding off.
    Factory
        .validate(&json!({"wait": "0", "max_pending_items": 0}))
        .unwrap();
}

#[test]
fn metrics_signal_is_refused() {
    let ctx = CreateContext::for_tests(ComponentKind::Processor, "request_id");
    let r = Factory.create(ctx, &json!({}), Signal::Metrics, CollectingConsumer::new());
    assert!(matches!(
        r,
        Err(BuildError::UnsupportedSignal(Signal::Metrics))
    ));
}

#[tokio::test]
async fn logs_after_their_span_get_its_ids_at_once() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h"}));
    p.start().await;
    p.traces
        .consume(spans(vec![span(Some("r1"), 1, 1, SpanKind::Server, None)]))
        .await
        .unwrap();
    p.logs
        .consume(logs(vec![log(Some("r1"), "Request started")]))
        .await
        .unwrap();
    // With wait 1h, only an immediate pass can deliver it.
    let out = p.records();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trace_id, trace_id(1));
    assert_eq!(out[0].span_id, span_id(1));
    assert_eq!(out[0].flags & 0xff, 0x01, "trace flags from the span");
    assert_eq!(p.counter(MATCHED_METRIC, "logs"), 1);
    assert_eq!(p.gauge(ENTRIES_METRIC), 1);
    assert_eq!(p.gauge(PENDING_METRIC), 0);
    assert_eq!(p.spans().len(), 1, "spans pass through");
    p.shutdown().await;
}

#[tokio::test]
async fn logs_before_their_span_wait_and_leave_when_it_comes() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h"}));
    p.start().await;
    p.logs
        .consume(logs(vec![
            log(Some("r1"), "Request started"),
            log(Some("r1"), "User login successful"),
        ]))
        .await
        .unwrap();
    assert_eq!(p.records().len(), 0, "held for the span");
    assert_eq!(p.gauge(PENDING_METRIC), 2);
    p.traces
        .consume(spans(vec![span(Some("r1"), 1, 1, SpanKind::Server, None)]))
        .await
        .unwrap();
    // Released by the span's arrival, long before the 1h wait.
    assert_eq!(p.wait_for_records(2).await, 2);
    let out = p.records();
    assert!(
        out.iter()
            .all(|r| r.trace_id == trace_id(1) && r.span_id == span_id(1))
    );
    assert_eq!(message(&out[0]), "Request started");
    assert_eq!(message(&out[1]), "User login successful");
    assert_eq!(p.counter(MATCHED_METRIC, "logs"), 2);
    assert_eq!(p.gauge(PENDING_METRIC), 0);
    p.shutdown().await;
}

#[tokio::test]
async fn a_log_whose_span_never_comes_is_released_unchanged_after_wait() {
    let p = Pair::new(json!({"wait": "200ms"}));
    p.start().await;
    let started = Instant::now();
    p.logs
        .consume(logs(vec![log(Some("lost"), "Request started")]))
        .await
        .unwrap();
    assert_eq!(p.records().len(), 0);
    assert_eq!(p.wait_for_records(1).await, 1);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "held for wait"
    );
    let out = p.records();
    assert!(out[0].trace_id.is_empty() && out[0].span_id.is_empty());
    assert_eq!(out[0], log(Some("lost"), "Request started"), "unchanged");
    assert_eq!(p.counter(UNMATCHED_METRIC, "wait_expired"), 1);
    assert_eq!(p.counter(MATCHED_METRIC, "logs"), 0);
    p.shutdown().await;
}

#[tokio::test]
async fn with_wait_zero_nothing_is_held() {
    let p = Pair::new(json!({"wait": "0"}));
    p.start().await;
    p.logs
        .consume(logs(vec![log(Some("r9"), "Request started")]))
        .await
        .unwrap();
    assert_eq!(p.records().len(), 1);
    assert!(p.records()[0].trace_id.is_empty());
    assert_eq!(p.counter(UNMATCHED_METRIC, "not_held"), 1);
    p.shutdown().await;
}

#[tokio::test]
async fn the_server_span_wins_over_internal_children() {
    let p = Pair::new(json!({"wait": "0"}));
    p.start().await;
    // The child ends first, so it arrives first.
    p.traces
        .consume(spans(vec![span(
            Some("r1"),
            1,
            2,
            SpanKind::Internal,
            Some(1),
        )]))
        .await
        .unwrap();
    p.traces
        .consume(spans(vec![span(Some("r1"), 1, 1, SpanKind::Server, None)]))
        .await
        .unwrap();
    // Another child after the SERVER span does not take it back.
    p.traces
        .consume(spans(vec![span(
            Some("r1"),
            1,
            3,
            SpanKind::Internal,
            Some(1),
        )]))
        .await
        .unwrap();
    p.logs
        .consume(logs(vec![log(Some("r1"), "Request completed")]))
        .await
        .unwrap();
    assert_eq!(p.records()[0].span_id, span_id(1));
    p.shutdown().await;
}

#[tokio::test]
async fn request_id_from_a_captured_header_string_array() {
    let p = Pair::new(json!({"wait": "0"}));
    p.start().await;
    let mut s = span(None, 4, 4, SpanKind::Server, None);
    s.attributes.push(KeyValue {
        key: "http.request.header.x-request-id".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![sv("hdr-1").unwrap_or_default()],
            })),
        }),
        ..Default::default()
    });
    p.traces.consume(spans(vec![s])).await.unwrap();
    p.logs
        .consume(logs(vec![log(Some("hdr-1"), "Request started")]))
        .await
        .unwrap();
    assert_eq!(p.records()[0].trace_id, trace_id(4));
    p.shutdown().await;
}

#[tokio::test]
async fn request_id_in_a_map_body_is_read() {
    let p = Pair::new(json!({"wait": "0"}));
    p.start().await;
    p.traces
        .consume(spans(vec![span(Some("b-1"), 5, 5, SpanKind::Server, None)]))
        .await
        .unwrap();
    let record = LogRecord {
        body: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("message", "Request started"), kv("request_id", "b-1")],
            })),
        }),
        ..Default::default()
    };
    p.logs.consume(logs(vec![record])).await.unwrap();
    assert_eq!(p.records()[0].trace_id, trace_id(5));
    p.shutdown().await;
}

#[tokio::test]
async fn logs_with_trace_context_teach_spans_and_other_logs() {
    let p = Pair::new(json!({"wait": "0"}));
    p.start().await;
    // A log with both teaches the mapping.
    p.logs
        .consume(logs(vec![log_with_context(
            Some("r7"),
            "Request started",
            7,
            9,
        )]))
        .await
        .unwrap();
    // A SERVER span of that trace without a request ID gets it; an INTERNAL one does not.
    p.traces
        .consume(spans(vec![
            span(None, 7, 7, SpanKind::Server, None),
            span(None, 7, 8, SpanKind::Internal, Some(7)),
        ]))
        .await
        .unwrap();
    let out = p.spans();
    assert_eq!(
        attr(&out[0].attributes, "request_id"),
        Some(&any_value::Value::StringValue("r7".into()))
    );
    assert_eq!(attr(&out[1].attributes, "request_id"), None);
    assert_eq!(p.counter(MATCHED_METRIC, "traces"), 1);
    // A log with trace context and no request ID gets the attribute.
    p.logs
        .consume(logs(vec![log_with_context(
            None,
            "User login successful",
            7,
            9,
        )]))
        .await
        .unwrap();
    let out = p.records();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].trace_id, trace_id(7), "kept");
    assert_eq!(
        attr(&out[1].attributes, "request_id"),
        Some(&any_value::Value::StringValue("r7".into()))
    );
    // A log without request ID of an unknown trace is untouched.
    p.logs
        .consume(logs(vec![log_with_context(None, "other", 8, 8)]))
        .await
        .unwrap();
    assert!(p.records()[2].attributes.is_empty());
    p.shutdown().await;
}

#[tokio::test]
async fn the_first_attribute_name_is_written_in_its_own_shape() {
    let p = Pair::new(json!({
        "wait": "0",
        "request_id_attributes": ["http.request.header.x-request-id", "request_id"]
    }));
    p.start().await;
    p.logs
        .consume(logs(vec![log_with_context(Some("h-2"), "x", 2, 2)]))
        .await
        .unwrap();
    p.traces
        .consume(spans(vec![span(None, 2, 2, SpanKind::Server, None)]))
        .await
        .unwrap();
    let out = p.spans();
    match attr(&out[0].attributes, "http.request.header.x-request-id") {
        Some(any_value::Value::ArrayValue(a)) => {
            assert_eq!(a.values[0], sv("h-2").unwrap_or_default())
        }
        other => panic!("expected a string array, got {other:?}"),
    }
    p.shutdown().await;
}

#[tokio::test]
async fn eviction_at_max_entries_forgets_the_least_recently_used() {
    let p = Pair::new(json!({"wait": "0", "max_entries": 2}));
    p.start().await;
    p.traces
        .consume(spans(vec![
            span(Some("r1"), 1, 1, SpanKind::Server, None),
            span(Some("r2"), 2, 2, SpanKind::Server, None),
        ]))
        .await
        .unwrap();
    // Using r1 makes r2 the least recently used.
    p.logs
        .consume(logs(vec![log(Some("r1"), "a")]))
        .await
        .unwrap();
    p.traces
        .consume(spans(vec![span(Some("r3"), 3, 3, SpanKind::Server, None)]))
        .await
        .unwrap();
    assert_eq!(p.counter(EVICTED_METRIC, "max_entries"), 1);
    assert_eq!(p.gauge(ENTRIES_METRIC), 2);
    p.logs
        .consume(logs(vec![
            log(Some("r1"), "b"),
            log(Some("r2"), "c"),
            log(Some("r3"), "d"),
        ]))
        .await
        .unwrap();
    let out = p.records();
    assert_eq!(out[1].trace_id, trace_id(1));
    assert!(out[2].trace_id.is_empty(), "r2 was evicted");
    assert_eq!(out[3].trace_id, trace_id(3));
    assert_eq!(p.counter(UNMATCHED_METRIC, "not_held"), 1);
    p.shutdown().await;
}

#[tokio::test]
async fn entries_expire_after_ttl() {
    let p = Pair::new(json!({"wait": "0", "ttl": "100ms"}));
    p.start().await;
    p.traces
        .consume(spans(vec![span(Some("r1"), 1, 1, SpanKind::Server, None)]))
        .await
        .unwrap();
    assert_eq!(p.gauge(ENTRIES_METRIC), 1);
    // The background sweep removes it.
    let until = Instant::now() + SOON;
    while p.gauge(ENTRIES_METRIC) != 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(p.gauge(ENTRIES_METRIC), 0);
    assert_eq!(p.counter(EVICTED_METRIC, "ttl"), 1);
    p.logs
        .consume(logs(vec![log(Some("r1"), "late")]))
        .await
        .unwrap();
    assert!(p.records()[0].trace_id.is_empty());
    p.shutdown().await;
}

#[tokio::test]
async fn at_max_pending_items_the_oldest_leave_unchanged_and_nothing_is_dropped() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h", "max_pending_items": 2}));
    p.start().await;
    for i in 0..3 {
        p.logs
            .consume(logs(vec![log(Some(&format!("u{i}")), &format!("m{i}"))]))
            .await
            .unwrap();
    }
    let out = p.records();
    assert_eq!(out.len(), 1, "the oldest was released");
    assert_eq!(message(&out[0]), "m0");
    assert!(out[0].trace_id.is_empty());
    assert_eq!(p.counter(UNMATCHED_METRIC, "pending_full"), 1);
    assert_eq!(p.gauge(PENDING_METRIC), 2);
    // A batch larger than the limit by itself is held only up to it.
    p.logs
        .consume(logs(
            (3..8)
                .map(|i| log(Some(&format!("u{i}")), &format!("m{i}")))
                .collect(),
        ))
        .await
        .unwrap();
    assert_eq!(p.gauge(PENDING_METRIC), 2);
    assert_eq!(p.records().len(), 6);
    p.shutdown().await;
    let out = p.records();
    let messages: Vec<String> = out.iter().map(message).collect();
    assert_eq!(
        messages,
        (0..8).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "all released, in order"
    );
    assert_eq!(p.counter(UNMATCHED_METRIC, "shutdown"), 2);
}

#[tokio::test]
async fn interleaved_requests_keep_their_order_and_get_their_own_ids() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h"}));
    p.start().await;
    p.logs
        .consume(logs(vec![
            log(Some("r1"), "r1 started"),
            log(Some("r2"), "r2 started"),
        ]))
        .await
        .unwrap();
    p.logs
        .consume(logs(vec![
            log(Some("r1"), "r1 completed"),
            log(Some("r2"), "r2 completed"),
        ]))
        .await
        .unwrap();
    // r2's span first: its records stay behind r1's, which still waits.
    p.traces
        .consume(spans(vec![span(Some("r2"), 2, 2, SpanKind::Server, None)]))
        .await
        .unwrap();
    assert_eq!(p.records().len(), 0, "order within the resource is kept");
    p.traces
        .consume(spans(vec![span(Some("r1"), 1, 1, SpanKind::Server, None)]))
        .await
        .unwrap();
    assert_eq!(p.wait_for_records(4).await, 4);
    let out = p.records();
    let got: Vec<(String, Vec<u8>)> = out
        .iter()
        .map(|r| (message(r), r.trace_id.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("r1 started".to_string(), trace_id(1)),
            ("r2 started".to_string(), trace_id(2)),
            ("r1 completed".to_string(), trace_id(1)),
            ("r2 completed".to_string(), trace_id(2)),
        ]
    );
    p.shutdown().await;
}

#[tokio::test]
async fn a_record_that_could_pass_waits_behind_a_held_one_of_its_resource_only() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h"}));
    p.start().await;
    p.traces
        .consume(spans(vec![span(
            Some("known"),
            3,
            3,
            SpanKind::Server,
            None,
        )]))
        .await
        .unwrap();
    p.logs
        .consume(logs(vec![
            log(None, "before"),
            log(Some("unknown"), "waits"),
            log(Some("known"), "behind"),
        ]))
        .await
        .unwrap();
    // Another resource is not held up.
    p.logs
        .consume(Batch::new(Payload::Logs(vec![logs_of(
            "worker",
            vec![log(Some("known"), "other resource")],
        )])))
        .await
        .unwrap();
    let got: Vec<String> = p.records().iter().map(message).collect();
    assert_eq!(got, vec!["before", "other resource"]);
    assert_eq!(p.gauge(PENDING_METRIC), 2);
    p.traces
        .consume(spans(vec![span(
            Some("unknown"),
            4,
            4,
            SpanKind::Server,
            None,
        )]))
        .await
        .unwrap();
    assert_eq!(p.wait_for_records(4).await, 4);
    let out = p.records();
    assert_eq!(message(&out[2]), "waits");
    assert_eq!(out[2].trace_id, trace_id(4));
    assert_eq!(message(&out[3]), "behind");
    assert_eq!(out[3].trace_id, trace_id(3));
    p.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_every_held_record_and_their_acks() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h"}));
    p.start().await;
    let acked = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicBool::new(false));
    let mut batch = Batch::new(Payload::Logs(vec![
        logs_of("api", vec![log(Some("a"), "1"), log(Some("b"), "2")]),
        logs_of("worker", vec![log(Some("c"), "3")]),
    ]));
    {
        let (acked, ok) = (acked.clone(), ok.clone());
        batch.ctx.acks.push(AckToken::new(move |success| {
            acked.fetch_add(1, Ordering::SeqCst);
            ok.store(success, Ordering::SeqCst);
        }));
    }
    p.logs.consume(batch).await.unwrap();
    p.logs
        .consume(logs(vec![log(Some("d"), "4")]))
        .await
        .unwrap();
    assert_eq!(p.gauge(PENDING_METRIC), 4);
    assert_eq!(
        acked.load(Ordering::SeqCst),
        0,
        "the ack waits for the held records"
    );
    // The logs pipeline shuts down first; its records must be out when shutdown returns.
    p.logs.shutdown(deadline()).await.unwrap();
    assert_eq!(p.records().len(), 4);
    assert_eq!(p.gauge(PENDING_METRIC), 0);
    assert_eq!(p.counter(UNMATCHED_METRIC, "shutdown"), 4);
    // The traces instance still works; the background task stops with it.
    p.traces
        .consume(spans(vec![span(Some("e"), 1, 1, SpanKind::Server, None)]))
        .await
        .unwrap();
    p.traces.shutdown(deadline()).await.unwrap();
    // After shutdown, logs pass without being held.
    p.logs
        .consume(logs(vec![log(Some("f"), "5")]))
        .await
        .unwrap();
    assert_eq!(p.records().len(), 5);
    // The collector resolved the handles as delivered when it took the records.
    drop(p);
    assert_eq!(acked.load(Ordering::SeqCst), 1);
    assert!(ok.load(Ordering::SeqCst));
}

#[tokio::test]
async fn shutdown_without_start_releases_held_records_too() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h"}));
    p.logs
        .consume(logs(vec![log(Some("a"), "1")]))
        .await
        .unwrap();
    assert_eq!(p.records().len(), 0);
    p.shutdown().await;
    assert_eq!(p.records().len(), 1);
}

/// Refuses every batch, as a full queue with `block_on_overflow: false` does.
struct Refusing(AtomicUsize);

#[async_trait]
impl Consumer for Refusing {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        batch.dropped();
        Err(ConsumeError::Full)
    }
}

/// Passes the first `pass` batches to `out` at once; later ones wait until `open`. Refuses
/// everything while `refuse` is set.
struct Gated {
    out: Arc<CollectingConsumer>,
    refuse: AtomicBool,
    pass: usize,
    calls: AtomicUsize,
    open: tokio::sync::Semaphore,
}

impl Gated {
    /// A started pair whose logs go through a gate letting `pass` batches through unopened.
    async fn pair(config: Value, pass: usize) -> (Pair, Arc<Gated>) {
        let out = CollectingConsumer::new();
        let gated = Arc::new(Gated {
            out: out.clone(),
            refuse: AtomicBool::new(false),
            pass,
            calls: AtomicUsize::new(0),
            open: tokio::sync::Semaphore::new(0),
        });
        let p = Pair::with_logs_next(config, out, Some(gated.clone()));
        p.start().await;
        (p, gated)
    }
}

#[async_trait]
impl Consumer for Gated {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.refuse.load(Ordering::SeqCst) {
            batch.dropped();
            return Err(ConsumeError::Full);
        }
        // Waiting, it has not taken the batch on (as the batch processor and the exporter
        // queues do): a caller that gives up refuses it.
        let waiting = pipeline_core::WaitingBatch::new(batch);
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.pass {
            let _permit = self.open.acquire().await;
        }
        match waiting.take() {
            Some(batch) => self.out.consume(batch).await,
            None => Ok(()),
        }
    }
}

#[tokio::test]
async fn records_released_by_a_caller_that_times_out_are_still_delivered() {
    let (p, gated) = Gated::pair(
        json!({"wait": "1h", "ttl": "2h", "max_pending_items": 2}),
        0,
    )
    .await;
    let out = p.logs_out.clone();
    let probe = AckProbe::new();
    // Request A's records wait for their request ID to become known.
    p.logs
        .consume(probe.track(logs(vec![log(Some("a"), "a1"), log(Some("a"), "a2")])))
        .await
        .unwrap();
    assert_eq!(p.gauge(PENDING_METRIC), 2);
    // Request B's record is held too, which pushes A's first (the oldest over the limit)
    // out from B's call; `next` stalls on it longer than B's receiver waits (its pipeline
    // timeout, or the client's grpc-timeout), so B's future is dropped while releasing it.
    let b = probe.track(Batch::new(Payload::Logs(vec![logs_of(
        "edge",
        vec![log(Some("b"), "b1")],
    )])));
    let answered = tokio::time::timeout(Duration::from_millis(100), p.logs.consume(b)).await;
    assert!(answered.is_err(), "B's caller gave up (its client retries)");
    gated.open.add_permits(10);
    assert_eq!(
        out.wait_for_items(1, SOON).await,
        1,
        "A's released record is not lost"
    );
    assert_eq!(p.records().iter().map(message).collect::<Vec<_>>(), ["a1"]);
    // A is not acknowledged while a record of it waits: a checkpoint stays put.
    assert_eq!(probe.outcome(0), None);
    // The rest leaves at shutdown; everything delivered and resolved, nothing dropped.
    p.shutdown().await;
    let released: Vec<String> = p.records().iter().map(message).collect();
    assert_eq!(released, vec!["a1", "a2", "b1"]);
    assert!(probe.wait_settled(SOON).await);
    assert_eq!(probe.count(AckOutcome::Delivered), 2);
    probe.assert_resolved();
    assert_eq!(
        p.dropped("shutdown_timeout") + p.dropped("refused_downstream"),
        0.0
    );
}

#[tokio::test]
async fn a_batch_released_in_parts_is_acknowledged_by_every_part() {
    let (p, next) = Gated::pair(json!({"wait": "1h", "ttl": "2h"}), usize::MAX).await;
    next.refuse.store(true, Ordering::SeqCst);
    let probe = AckProbe::new();
    p.logs
        .consume(probe.track(logs(vec![log(Some("a"), "a1"), log(Some("b"), "b1")])))
        .await
        .unwrap();
    // Request "a" becomes known: a1 leaves alone, and the destination refuses it.
    p.traces
        .consume(spans(vec![span(Some("a"), 1, 1, SpanKind::Server, None)]))
        .await
        .unwrap();
    let until = Instant::now() + SOON;
    while p.dropped("refused_downstream") < 1.0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(p.dropped("refused_downstream"), 1.0);
    // b1 is delivered at shutdown; the batch as a whole was not.
    next.refuse.store(false, Ordering::SeqCst);
    p.shutdown().await;
    assert_eq!(p.records().iter().map(message).collect::<Vec<_>>(), ["b1"]);
    assert!(probe.wait_settled(SOON).await);
    assert_eq!(probe.outcome(0), Some(AckOutcome::Dropped));
}

#[tokio::test]
async fn a_caller_that_gives_up_while_its_passing_records_are_sent_has_its_batch_refused() {
    let (p, gated) = Gated::pair(json!({"wait": "1h", "ttl": "2h"}), 0).await;
    let probe = AckProbe::new();
    let batch = probe.track(Batch::new(Payload::Logs(vec![
        logs_of("api", vec![log(None, "passes")]),
        logs_of("worker", vec![log(Some("w"), "would wait")]),
    ])));
    let gave_up = tokio::time::timeout(Duration::from_millis(50), p.logs.consume(batch)).await;
    assert!(gave_up.is_err());
    // Refused as a whole (the client sends it again): nothing held, no handle left unresolved.
    assert_eq!(probe.outcome(0), Some(AckOutcome::Dropped));
    assert_eq!(p.gauge(PENDING_METRIC), 0);
    probe.assert_resolved();
    gated.open.add_permits(10);
    p.shutdown().await;
}

#[tokio::test]
async fn records_cut_off_at_the_shutdown_deadline_are_counted_and_fail_their_source() {
    let (p, _gate) = Gated::pair(json!({"wait": "1h", "ttl": "2h"}), 0).await;
    let outcome = Arc::new(std::sync::Mutex::new(None));
    let mut batch = logs(vec![log(Some("a"), "a1"), log(Some("a"), "a2")]);
    {
        let outcome = outcome.clone();
        batch.ctx.acks.push(AckToken::new(move |ok| {
            *outcome.lock().unwrap() = Some(ok);
        }));
    }
    p.logs.consume(batch).await.unwrap();
    // Shutdown releases them; `next` never answers before the deadline.
    p.logs
        .shutdown(Instant::now() + Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(p.dropped("shutdown_timeout"), 2.0);
    assert_eq!(
        *outcome.lock().unwrap(),
        Some(false),
        "read again after a restart"
    );
    assert_eq!(p.logs_out.item_count(), 0);
    p.traces.shutdown(deadline()).await.unwrap();
}

#[tokio::test]
async fn a_refused_batch_is_handed_back_whole_and_nothing_is_held() {
    let refusing = Arc::new(Refusing(AtomicUsize::new(0)));
    let p = Pair::with_logs_next(
        json!({"wait": "1h", "ttl": "2h"}),
        CollectingConsumer::new(),
        Some(refusing.clone()),
    );
    p.start().await;
    let batch = Batch::new(Payload::Logs(vec![
        logs_of("api", vec![log(None, "passes")]),
        logs_of("worker", vec![log(Some("unknown"), "would wait")]),
    ]));
    let r = p.logs.consume(batch).await;
    assert!(matches!(r, Err(ConsumeError::Full)), "{r:?}");
    assert_eq!(refusing.0.load(Ordering::SeqCst), 1);
    assert_eq!(p.gauge(PENDING_METRIC), 0, "the caller keeps everything");
    p.shutdown().await;
}

#[tokio::test]
async fn many_records_of_many_requests_all_come_out_enriched() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h"}));
    p.start().await;
    let n = 500u32;
    let rid = |i: u32| format!("req-{i}");
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        p.logs
            .consume(logs(
                chunk.iter().map(|&i| log(Some(&rid(i)), "x")).collect(),
            ))
            .await
            .unwrap();
    }
    assert_eq!(p.gauge(PENDING_METRIC), i64::from(n));
    // Spans in reverse order: everything leaves only when the oldest request's span comes.
    for i in (0..n).rev() {
        let mut s = span(Some(&rid(i)), 1, 1, SpanKind::Server, None);
        s.trace_id[..4].copy_from_slice(&i.to_be_bytes());
        p.traces.consume(spans(vec![s])).await.unwrap();
    }
    assert_eq!(p.wait_for_records(n as usize).await, n as usize);
    for (i, r) in p.records().iter().enumerate() {
        assert_eq!(&r.trace_id[..4], &(i as u32).to_be_bytes(), "record {i}");
    }
    assert_eq!(p.counter(MATCHED_METRIC, "logs"), u64::from(n));
    p.shutdown().await;
}

#[tokio::test]
async fn a_batch_teaches_its_own_records() {
    let p = Pair::new(json!({"wait": "1h", "ttl": "2h"}));
    p.start().await;
    // The first record has no trace context; a later one of the same request has it.
    p.logs
        .consume(logs(vec![
            log(Some("r5"), "Request started"),
            log_with_context(Some("r5"), "from the instrumented handler", 5, 6),
        ]))
        .await
        .unwrap();
    let out = p.records();
    assert_eq!(out.len(), 2, "nothing held");
    assert_eq!(out[0].trace_id, trace_id(5));
    assert_eq!(out[0].span_id, span_id(6));
    p.shutdown().await;
}
