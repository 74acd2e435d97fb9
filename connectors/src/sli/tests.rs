use std::collections::BTreeMap;
use std::time::Duration;

use pipeline_core::attributes::to_text;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use pipeline_core::proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, metric,
    number_data_point,
};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use pipeline_core::telemetry::Telemetry;
use pipeline_core::testing::{CollectingConsumer, check_connector};
use pipeline_core::{
    Batch, Component, ComponentId, ComponentKind, ConsumeError, Consumer, Host, Payload, PerSignal,
};
use serde_json::json;
use tokio::time::Instant;

use super::aggregate::Aggregator;
use super::extract::{self, Invalid, normalize_path};
use super::*;
use pipeline_core::{ComponentConfig as _, DynConnectorFactory};

// ---------------------------------------------------------------- builders

use pipeline_core::testing::attribute as kv;

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn int(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

fn float(v: f64) -> any_value::Value {
    any_value::Value::DoubleValue(v)
}

const T0: u64 = 1_705_314_600_000_000_000;

/// A span of `kind` lasting `ms` milliseconds with `attrs`; IDs from `n`.
fn span(n: u64, kind: span::SpanKind, name: &str, ms: u64, attrs: Vec<KeyValue>) -> Span {
    let mut trace_id = [0u8; 16];
    trace_id[8..].copy_from_slice(&(n + 1).to_be_bytes());
    Span {
        trace_id: trace_id.to_vec(),
        span_id: (n + 1).to_be_bytes().to_vec(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + ms * 1_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn http(method: &str, route: Option<&str>, path: &str, code: i64) -> Vec<KeyValue> {
    let mut a = vec![
        kv("http.request.method", s(method)),
        kv("url.path", s(path)),
        kv("http.response.status_code", int(code)),
    ];
    if let Some(r) = route {
        a.push(kv("http.route", s(r)));
    }
    a
}

fn traces(service: &str, spans: Vec<Span>) -> Batch {
    Batch::new(Payload::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", s(service)),
                kv("deployment.environment", s("production")),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }]))
}

/// A log record in the seed's `after_request` shape (as the filelog JSON parser or an OTLP
/// logging handler delivers it: message as body, the rest as attributes).
fn request_log(n: u64, method: &str, path: &str, code: any_value::Value, secs: f64) -> LogRecord {
    let mut trace_id = vec![0u8; 16];
    trace_id[15] = n as u8 + 1;
    LogRecord {
        time_unix_nano: T0 + n,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(s("Request completed")),
        }),
        attributes: vec![
            kv("request_id", s(&format!("req-{n}"))),
            kv("status_code", code),
            kv("duration_seconds", float(secs)),
            kv("method", s(method)),
            kv("path", s(path)),
        ],
        trace_id,
        span_id: vec![9u8; 8],
        ..Default::default()
    }
}

fn other_log(body: &str) -> LogRecord {
    LogRecord {
        body: Some(AnyValue {
            value: Some(s(body)),
        }),
        attributes: vec![kv("method", s("GET")), kv("path", s("/api/users/1"))],
        ..Default::default()
    }
}

fn logs(service: &str, records: Vec<LogRecord>) -> Batch {
    Batch::new(Payload::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s(service))],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        schema_url: String::new(),
    }]))
}

// ---------------------------------------------------------------- readers

type Attrs = BTreeMap<String, String>;

fn attrs(kvs: &[KeyValue]) -> Attrs {
    kvs.iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .and_then(to_text)
                .map(|t| t.into_owned())
                .unwrap_or_default();
            (kv.key.clone(), v)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Attrs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn metrics<'a>(rm: &'a [ResourceMetrics], name: &str) -> Vec<&'a Metric> {
    rm.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == name)
        .collect()
}

fn sum_points(rm: &[ResourceMetrics], name: &str) -> Vec<NumberDataPoint> {
    metrics(rm, name)
        .into_iter()
        .flat_map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => {
                assert!(s.is_monotonic, "{name} is monotonic");
                s.data_points.clone()
            }
            other => panic!("{name} is not a sum: {other:?}"),
        })
        .collect()
}

fn sums(rm: &[ResourceMetrics], name: &str) -> BTreeMap<Attrs, i64> {
    sum_points(rm, name)
        .iter()
        .map(|p| {
            let v = match p.value {
                Some(number_data_point::Value::AsInt(v)) => v,
                ref other => panic!("not an int: {other:?}"),
            };
            (attrs(&p.attributes), v)
        })
        .collect()
}

fn histograms(rm: &[ResourceMetrics], name: &str) -> BTreeMap<Attrs, HistogramDataPoint> {
    metrics(rm, name)
        .into_iter()
        .flat_map(|m| match &m.data {
            Some(metric::Data::Histogram(h)) => h.data_points.clone(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .map(|p| (attrs(&p.attributes), p))
        .collect()
}

fn gauges(rm: &[ResourceMetrics], name: &str) -> BTreeMap<Attrs, f64> {
    metrics(rm, name)
        .into_iter()
        .flat_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.clone(),
            other => panic!("{name} is not a gauge: {other:?}"),
        })
        .map(|p| {
            let v = match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                ref other => panic!("not a double: {other:?}"),
            };
            (attrs(&p.attributes), v)
        })
        .collect()
}

fn emitted(out: &CollectingConsumer) -> Vec<ResourceMetrics> {
    out.batches()
        .into_iter()
        .flat_map(|b| match b.into_parts().0 {
            Payload::Metrics(rm) => rm,
            other => panic!("the connector emitted {}", other.signal()),
        })
        .collect()
}

// ---------------------------------------------------------------- harness

struct Harness {
    connector: SliConnector,
    out: Arc<CollectingConsumer>,
    telemetry: Telemetry,
}

impl Harness {
    fn new(config: serde_json::Value) -> Harness {
        let telemetry = Telemetry::new();
        let tel = telemetry.component(
            ComponentKind::Connector,
            &ComponentId::parse("sli").unwrap(),
        );
        let out = CollectingConsumer::new();
        let config = SliConfig::parse(&config).unwrap();
        let metrics = connector::SliMetrics::new(&tel).unwrap();
        Harness {
            connector: SliConnector::new(config, out.clone(), tel, metrics),
            out,
            telemetry,
        }
    }

    /// Flushes and returns what this flush emitted.
    async fn flush(&self) -> Vec<ResourceMetrics> {
        let before = self.out.batches().len();
        self.connector.flush().await;
        self.out
            .batches()
            .into_iter()
            .skip(before)
            .flat_map(|b| match b.into_parts().0 {
                Payload::Metrics(rm) => rm,
                _ => Vec::new(),
            })
            .collect()
    }

    fn self_metric(&self, line_start: &str) -> Option<f64> {
        self.telemetry
            .render()
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

// ---------------------------------------------------------------- conformance and config

#[tokio::test]
async fn conformance() {
    check_connector(&Factory).await;
}

#[test]
fn default_config_is_the_documented_one() {
    let c = SliConfig::parse(&json!({})).unwrap();
    assert_eq!(c.flush_interval.get(), Duration::from_secs(15));
    assert_eq!(c.temporality, Temporality::Cumulative);
    assert_eq!(
        c.span_kinds,
        vec![SpanKindName::Server, SpanKindName::Consumer]
    );
    assert_eq!(
        c.histogram.buckets,
        vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0]
    );
    assert_eq!(c.max_series, 10_000);
    assert_eq!(c.series_expiry.get(), Duration::from_secs(300));
    assert!(c.exemplars.enabled);
    assert!(!c.quantiles.enabled);
    assert_eq!(c.quantiles.values, vec![0.5, 0.95, 0.99]);
    assert_eq!(c.logs.r#match.field, FieldRef::Body);
    assert_eq!(c.logs.r#match.equals.as_deref(), Some("Request completed"));
    assert_eq!(
        c.logs.fields.status_code,
        FieldRef::Attribute("status_code".into())
    );
    assert_eq!(
        c.logs.fields.duration,
        FieldRef::Attribute("duration_seconds".into())
    );
    assert_eq!(c.logs.fields.method, FieldRef::Attribute("method".into()));
    assert_eq!(c.logs.fields.path, FieldRef::Attribute("path".into()));
}

#[test]
fn accepts_collector_spellings() {
    let c = SliConfig::parse(&json!({
        "span_kinds": ["SPAN_KIND_SERVER", "client", "CONSUMER"],
        "temporality": "AGGREGATION_TEMPORALITY_DELTA",
        "dimensions": [{"name": "deployment.environment", "default": "unknown"}, {"name": "k8s.pod.name"}],
        "logs": {"match": {"field": "attributes.event"}, "fields": {"duration": "body.elapsed_ms", "duration_unit": "ms", "service": "service"}},
        "quantiles": {"enabled": true, "window": "30s"},
        "flush_interval": "10s",
    }))
    .unwrap();
    assert_eq!(
        c.span_kinds,
        vec![
            SpanKindName::Server,
            SpanKindName::Client,
            SpanKindName::Consumer
        ]
    );
    assert_eq!(c.temporality, Temporality::Delta);
    assert_eq!(c.dimensions[0].default.as_deref(), Some("unknown"));
    assert_eq!(c.dimensions[1].default, None);
    assert_eq!(c.logs.r#match.field, FieldRef::Attribute("event".into()));
    assert_eq!(c.logs.r#match.equals, None);
    assert_eq!(
        c.logs.fields.duration,
        FieldRef::BodyKey("elapsed_ms".into())
    );
    assert_eq!(c.logs.fields.duration_unit, DurationUnit::Millis);
    assert_eq!(
        c.logs.fields.service,
        FieldRef::AttributeOrBody("service".into())
    );
    assert_eq!(c.quantiles.slots(c.flush_interval.get()), 3);
}

#[test]
fn rejects_bad_configs_with_field_paths() {
    let cases = [
        (
            json!({"flush_intervall": "1s"}),
            "flush_intervall",
            "did you mean \"flush_interval\"",
        ),
        (
            json!({"flush_interval": "0"}),
            "flush_interval",
            "greater than 0",
        ),
        (json!({"flush_interval": "5"}), "flush_interval", "no unit"),
        (
            json!({"series_expiry": "1s"}),
            "series_expiry",
            "at least flush_interval",
        ),
        (json!({"max_series": 0}), "max_series", "at least 1"),
        (json!({"max_series": -1}), "max_series", "invalid value"),
        (json!({"span_kinds": []}), "span_kinds", "at least one"),
        (
            json!({"span_kinds": ["SERVR"]}),
            "span_kinds[0]",
            "did you mean \"SERVER\"",
        ),
        (
            json!({"temporality": "sometimes"}),
            "temporality",
            "unknown value",
        ),
        (
            json!({"dimensions": [{"name": "status_code"}]}),
            "dimensions[0].name",
            "written by the connector",
        ),
        (
            json!({"dimensions": [{"name": "a"}, {"name": "a"}]}),
            "dimensions[1].name",
            "twice",
        ),
        (
            json!({"dimensions": [{"name": ""}]}),
            "dimensions[0].name",
            "empty",
        ),
        (
            json!({"dimensions": [{"name": "a", "defualt": "x"}]}),
            "dimensions[0].defualt",
            "unknown key",
        ),
        (
            json!({"errors": {"min_status_code": 600}}),
            "errors.min_status_code",
            "100 to 599",
        ),
        (
            json!({"histogram": {"buckets": []}}),
            "histogram.buckets",
            "at least one",
        ),
        (
            json!({"histogram": {"buckets": [0.1, 0.1]}}),
            "histogram.buckets[1]",
            "increase strictly",
        ),
        (
            json!({"histogram": {"buckets": [-1.0]}}),
            "histogram.buckets[0]",
            "0 or more",
        ),
        (
            json!({"histogram": {"buckets": ["fast"]}}),
            "histogram.buckets[0]",
            "invalid type",
        ),
        (
            json!({"quantiles": {"enabled": true, "window": "1s"}}),
            "quantiles.window",
            "at least flush_interval",
        ),
        (
            json!({"quantiles": {"enabled": true, "window": "1d"}}),
            "quantiles.window",
            "at most",
        ),
        (
            json!({"quantiles": {"values": [0.5, 1.5]}}),
            "quantiles.values[1]",
            "at most 1",
        ),
        (
            json!({"quantiles": {"values": []}}),
            "quantiles.values",
            "at least one",
        ),
        (
            json!({"quantiles": {"significant_digits": 7}}),
            "quantiles.significant_digits",
            "1 to 5",
        ),
        (
            json!({"logs": {"match": {"equals": ""}}}),
            "logs.match.equals",
            "must not be empty",
        ),
        (
            json!({"logs": {"match": {"field": "attributes."}}}),
            "logs.match.field",
            "names no key",
        ),
        (
            json!({"logs": {"fields": {"duration_unit": "h"}}}),
            "logs.fields.duration_unit",
            "unknown value",
        ),
        (
            json!({"logs": {"fields": {"staus_code": "x"}}}),
            "logs.fields.staus_code",
            "did you mean \"status_code\"",
        ),
    ];
    for (config, path, needle) in cases {
        let e = Factory.validate(&config).expect_err(&config.to_string());
        assert_eq!(e.path, path, "{config}: {e}");
        assert!(e.message.contains(needle), "{config}: {e}");
    }
}

#[test]
fn field_refs_parse_and_print() {
    for (text, want) in [
        ("body", FieldRef::Body),
        ("body.msg", FieldRef::BodyKey("msg".into())),
        (
            "attributes.http.route",
            FieldRef::Attribute("http.route".into()),
        ),
        (
            "resource.service.name",
            FieldRef::Resource("service.name".into()),
        ),
        (
            "status_code",
            FieldRef::AttributeOrBody("status_code".into()),
        ),
    ] {
        let got = FieldRef::parse(text).unwrap();
        assert_eq!(got, want);
        assert_eq!(got.to_string(), text);
    }
    assert!(FieldRef::parse(" ").is_err());
    assert!(FieldRef::parse("resource.").is_err());
}

// ---------------------------------------------------------------- spans

/// The known set: 10 SERVER spans and a CONSUMER span of `checkout`, plus CLIENT and
/// INTERNAL spans that are not requests.
fn known_spans() -> Batch {
    use span::SpanKind::*;
    let mut spans = Vec::new();
    // 6 x GET /api/users/{id} 200 at 5, 20, 20, 70, 300, 700 ms, raw paths all different.
    for (i, ms) in [5u64, 20, 20, 70, 300, 700].into_iter().enumerate() {
        spans.push(span(
            i as u64,
            Server,
            "GET /api/users/{id}",
            ms,
            http(
                "GET",
                Some("/api/users/{id}"),
                &format!("/api/users/{}", 40 + i),
                200,
            ),
        ));
    }
    // 2 x POST /api/orders 503 at 1.2 s and 3 s; one with an exception event.
    let mut failed = span(
        10,
        Server,
        "POST /api/orders",
        1200,
        http("POST", Some("/api/orders"), "/api/orders", 503),
    );
    failed.events.push(span::Event {
        name: "exception".into(),
        attributes: vec![kv("exception.type", s("TimeoutError"))],
        ..Default::default()
    });
    failed.status = Some(Status {
        code: 2,
        message: "upstream timed out".into(),
    });
    spans.push(failed);
    spans.push(span(
        11,
        Server,
        "POST /api/orders",
        3000,
        http("POST", Some("/api/orders"), "/api/orders", 503),
    ));
    // 1 x POST /api/orders 201, legacy attribute names.
    spans.push(span(
        12,
        Server,
        "POST /api/orders",
        40,
        vec![
            kv("http.method", s("POST")),
            kv("http.route", s("/api/orders")),
            kv("http.status_code", s("201")),
        ],
    ));
    // 1 x span status ERROR with a 200 status code and no exception: error_type "error".
    let mut status_error = span(
        13,
        Server,
        "GET /health",
        1,
        http("GET", Some("/health"), "/health", 200),
    );
    status_error.status = Some(Status {
        code: 2,
        message: String::new(),
    });
    spans.push(status_error);
    // 1 x CONSUMER span without HTTP attributes: endpoint is the span name.
    spans.push(span(14, Consumer, "orders process", 12_000, vec![]));
    // Not requests.
    spans.push(span(20, Client, "GET", 50, http("GET", None, "/x", 500)));
    spans.push(span(21, Internal, "db.query", 50, vec![]));
    traces("checkout", spans)
}

#[tokio::test]
async fn known_spans_give_exact_counts_errors_and_buckets() {
    let h = Harness::new(json!({}));
    h.connector.consume(known_spans()).await.unwrap();
    let rm = h.flush().await;

    let svc = ("service", "checkout");
    let users = [svc, ("method", "GET"), ("endpoint", "/api/users/{id}")];
    let orders = [svc, ("method", "POST"), ("endpoint", "/api/orders")];
    let health = [svc, ("method", "GET"), ("endpoint", "/health")];
    let consumer = [svc, ("endpoint", "orders process")];
    let with = |base: &[(&'static str, &'static str)], extra: (&'static str, &'static str)| {
        let mut v = base.to_vec();
        v.push(extra);
        labels(&v)
    };

    let requests = sums(&rm, REQUESTS);
    let want: BTreeMap<Attrs, i64> = [
        (with(&users, ("status_code", "200")), 6),
        (with(&orders, ("status_code", "503")), 2),
        (with(&orders, ("status_code", "201")), 1),
        (with(&health, ("status_code", "200")), 1),
        (labels(&consumer), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(requests, want);

    let errors = sums(&rm, ERRORS);
    let want: BTreeMap<Attrs, i64> = [
        (with(&orders, ("error_type", "TimeoutError")), 1),
        (with(&orders, ("error_type", "5xx")), 1),
        (with(&health, ("error_type", "error")), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(errors, want);

    let hist = histograms(&rm, DURATION);
    assert_eq!(hist.len(), 4);
    let u = &hist[&labels(&users)];
    assert_eq!(u.explicit_bounds, DEFAULT_BUCKETS.to_vec());
    // Buckets (le): 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, +Inf.
    assert_eq!(u.bucket_counts, vec![1, 2, 1, 1, 1, 0, 0, 0, 0]);
    assert_eq!(u.count, 6);
    assert!((u.sum.unwrap() - 1.115).abs() < 1e-9);
    assert_eq!(u.min, Some(0.005));
    assert_eq!(u.max, Some(0.7));
    let o = &hist[&labels(&orders)];
    assert_eq!(o.bucket_counts, vec![0, 1, 0, 0, 0, 1, 1, 0, 0]);
    assert_eq!(o.count, 3);
    let c = &hist[&labels(&consumer)];
    assert_eq!(
        c.bucket_counts,
        vec![0, 0, 0, 0, 0, 0, 0, 0, 1],
        "12 s is past the last bound"
    );

    // One resource per service, named after it; the metrics carry the seed's units.
    assert_eq!(rm.len(), 1);
    assert_eq!(
        attrs(&rm[0].resource.as_ref().unwrap().attributes),
        labels(&[("service.name", "checkout")])
    );
    let scope = rm[0].scope_metrics[0].scope.as_ref().unwrap();
    assert_eq!(scope.name, SCOPE_NAME);
    let units: Vec<(&str, &str)> = rm[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.unit.as_str()))
        .collect();
    assert_eq!(
        units,
        vec![
            (REQUESTS, "{request}"),
            (ERRORS, "{error}"),
            (DURATION, "s")
        ]
    );
    assert_eq!(
        h.self_metric(
            "sightline_sli_requests_derived_total{component_id=\"sli\",signal=\"traces\"}"
        ),
        Some(11.0)
    );
}

#[tokio::test]
async fn endpoint_is_the_route_never_the_raw_path() {
    use span::SpanKind::Server;
    let h = Harness::new(json!({}));
    let spans = (0..50)
        .map(|i| {
            span(
                i,
                Server,
                "GET /api/users/{id}",
                10,
                http(
                    "GET",
                    Some("/api/users/{id}"),
                    &format!("/api/users/{i}"),
                    200,
                ),
            )
        })
        .chain([span(
            99,
            Server,
            "GET",
            10,
            http("GET", None, "/api/users/77", 200),
        )])
        .collect();
    h.connector.consume(traces("api", spans)).await.unwrap();
    h.connector
        .consume(logs(
            "api",
            vec![
                request_log(1, "GET", "/api/users/42", int(200), 0.01),
                request_log(2, "GET", "/api/users/43?expand=true", int(200), 0.01),
                request_log(
                    3,
                    "GET",
                    "/api/orders/3f2b8c1e-9a7d-4e21-b0c5-6d8f9e0a1b2c",
                    int(200),
                    0.01,
                ),
                request_log(4, "GET", "/static/app.js", int(200), 0.01),
            ],
        ))
        .await
        .unwrap();
    let rm = h.flush().await;
    let endpoints: std::collections::BTreeSet<String> = sums(&rm, REQUESTS)
        .keys()
        .map(|a| a["endpoint"].clone())
        .collect();
    let want: std::collections::BTreeSet<String> = [
        "/api/users/{id}",
        "GET",
        "/api/orders/{id}",
        "/static/app.js",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(endpoints, want);
    let users = labels(&[
        ("service", "api"),
        ("method", "GET"),
        ("endpoint", "/api/users/{id}"),
        ("status_code", "200"),
    ]);
    assert_eq!(sums(&rm, REQUESTS)[&users], 52, "50 spans and 2 logs");
}

#[test]
fn path_normalization() {
    for (raw, want) in [
        ("/api/users/42", "/api/users/{id}"),
        (
            "/api/users/42/orders/7?page=2",
            "/api/users/{id}/orders/{id}",
        ),
        (
            "/api/items/3f2b8c1e-9a7d-4e21-b0c5-6d8f9e0a1b2c",
            "/api/items/{id}",
        ),
        ("/blobs/9f86d081884c7d659a2feaa0c55ad015", "/blobs/{id}"),
        ("/api/v2/users", "/api/v2/users"),
        ("/health#x", "/health"),
        ("/", "/"),
        ("/api/deadbeefcafe", "/api/deadbeefcafe"),
    ] {
        assert_eq!(normalize_path(raw), want, "{raw}");
    }
}

// ---------------------------------------------------------------- logs

#[tokio::test]
async fn seed_request_logs_give_exact_counts() {
    let h = Harness::new(json!({}));
    let mut exception = request_log(7, "GET", "/api/users/9", int(500), 0.2);
    exception
        .attributes
        .push(kv("exception.type", s("ValueError")));
    let records = vec![
        other_log("Request started"),
        request_log(1, "GET", "/api/users/1", int(200), 0.045),
        request_log(2, "GET", "/api/users/2", int(200), 0.003),
        request_log(3, "GET", "/api/users/3", s("200"), 0.7),
        request_log(4, "POST", "/api/orders", int(502), 6.0),
        request_log(5, "POST", "/api/orders", s("oops"), 0.01),
        exception,
        other_log("User login successful"),
    ];
    h.connector
        .consume(logs("api-service", records))
        .await
        .unwrap();
    let rm = h.flush().await;
    let svc = ("service", "api-service");
    let requests = sums(&rm, REQUESTS);
    let want: BTreeMap<Attrs, i64> = [
        (
            labels(&[
                svc,
                ("method", "GET"),
                ("endpoint", "/api/users/{id}"),
                ("status_code", "200"),
            ]),
            3,
        ),
        (
            labels(&[
                svc,
                ("method", "GET"),
                ("endpoint", "/api/users/{id}"),
                ("status_code", "500"),
            ]),
            1,
        ),
        (
            labels(&[
                svc,
                ("method", "POST"),
                ("endpoint", "/api/orders"),
                ("status_code", "502"),
            ]),
            1,
        ),
        (
            labels(&[svc, ("method", "POST"), ("endpoint", "/api/orders")]),
            1,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(requests, want);
    let errors = sums(&rm, ERRORS);
    let want: BTreeMap<Attrs, i64> = [
        (
            labels(&[
                svc,
                ("method", "GET"),
                ("endpoint", "/api/users/{id}"),
                ("error_type", "ValueError"),
            ]),
            1,
        ),
        (
            labels(&[
                svc,
                ("method", "POST"),
                ("endpoint", "/api/orders"),
                ("error_type", "5xx"),
            ]),
            1,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(errors, want);
    let hist = histograms(&rm, DURATION);
    let users = &hist[&labels(&[svc, ("method", "GET"), ("endpoint", "/api/users/{id}")])];
    assert_eq!(users.bucket_counts, vec![1, 1, 0, 1, 1, 0, 0, 0, 0]);
    let orders = &hist[&labels(&[svc, ("method", "POST"), ("endpoint", "/api/orders")])];
    assert_eq!(orders.bucket_counts, vec![1, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(
        h.self_metric("sightline_sli_invalid_values_total{component_id=\"sli\",field=\"status_code\",signal=\"logs\"}"),
        Some(1.0)
    );
    assert_eq!(
        h.self_metric("sightline_sli_requests_derived_total{component_id=\"sli\",signal=\"logs\"}"),
        Some(6.0)
    );
}

#[tokio::test]
async fn log_match_and_field_mapping_are_configurable() {
    let h = Harness::new(json!({
        "logs": {
            "match": {"field": "event"},
            "fields": {
                "status_code": "body.status",
                "duration": "body.elapsed",
                "duration_unit": "ms",
                "method": "body.verb",
                "route": "body.route",
                "service": "app",
            }
        }
    }));
    let body = |route: &str, status: i64, elapsed: f64| AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv("status", int(status)),
                kv("elapsed", float(elapsed)),
                kv("verb", s("PUT")),
                kv("route", s(route)),
            ],
        })),
    };
    let record = |route: &str, status: i64, elapsed: f64, tagged: bool| LogRecord {
        body: Some(body(route, status, elapsed)),
        attributes: if tagged {
            vec![kv("event", s("http")), kv("app", s("billing"))]
        } else {
            vec![]
        },
        ..Default::default()
    };
    h.connector
        .consume(logs(
            "ignored",
            vec![
                record("/invoices/{id}", 204, 30.0, true),
                record("/invoices/{id}", 204, 700.0, true),
                record("/invoices/{id}", 204, 1.0, false),
            ],
        ))
        .await
        .unwrap();
    let rm = h.flush().await;
    let base = [
        ("service", "billing"),
        ("method", "PUT"),
        ("endpoint", "/invoices/{id}"),
    ];
    let mut with_code = base.to_vec();
    with_code.push(("status_code", "204"));
    assert_eq!(
        sums(&rm, REQUESTS),
        [(labels(&with_code), 2)].into_iter().collect()
    );
    assert_eq!(
        histograms(&rm, DURATION)[&labels(&base)].bucket_counts,
        vec![0, 1, 0, 0, 1, 0, 0, 0, 0],
        "30 ms and 700 ms"
    );
}

// ---------------------------------------------------------------- dimensions

#[tokio::test]
async fn extra_dimensions_with_defaults() {
    use span::SpanKind::Server;
    let h = Harness::new(json!({
        "dimensions": [
            {"name": "deployment.environment"},
            {"name": "tenant", "default": "none"},
            {"name": "region"},
        ]
    }));
    let mut a = http("GET", Some("/a"), "/a", 200);
    a.push(kv("tenant", s("acme")));
    let b = http("GET", Some("/a"), "/a", 200);
    h.connector
        .consume(traces(
            "svc",
            vec![span(1, Server, "a", 1, a), span(2, Server, "a", 1, b)],
        ))
        .await
        .unwrap();
    let rm = h.flush().await;
    let base = [
        ("service", "svc"),
        ("method", "GET"),
        ("endpoint", "/a"),
        ("status_code", "200"),
        ("deployment.environment", "production"),
    ];
    let mut acme = base.to_vec();
    acme.push(("tenant", "acme"));
    let mut none = base.to_vec();
    none.push(("tenant", "none"));
    assert_eq!(
        sums(&rm, REQUESTS),
        [(labels(&acme), 1), (labels(&none), 1)]
            .into_iter()
            .collect(),
        "resource attribute found, default used, missing dimension left off"
    );
}

// ---------------------------------------------------------------- cardinality

#[tokio::test]
async fn overflow_at_max_series() {
    use span::SpanKind::Server;
    let h = Harness::new(json!({"max_series": 3}));
    let spans = (0..10)
        .map(|i| {
            let route = format!("/r{}", i % 5);
            span(i, Server, "x", 10, http("GET", Some(&route), &route, 500))
        })
        .collect();
    h.connector.consume(traces("svc", spans)).await.unwrap();
    let rm = h.flush().await;
    let overflow = labels(&[(OVERFLOW_ATTRIBUTE, "true")]);
    let requests = sums(&rm, REQUESTS);
    assert_eq!(requests.len(), 4, "3 series and the overflow series");
    assert_eq!(requests[&overflow], 4, "the 4th and 5th routes, twice each");
    assert_eq!(requests.values().sum::<i64>(), 10, "nothing lost");
    assert_eq!(sums(&rm, ERRORS)[&overflow], 4);
    assert_eq!(histograms(&rm, DURATION)[&overflow].count, 4);
    // The overflow series sits under a resource of its own, last.
    let last = rm.last().unwrap();
    assert!(last.resource.as_ref().unwrap().attributes.is_empty());
    for metric in ["http.requests", "http.errors", "http.request.duration"] {
        assert_eq!(
            h.self_metric(&format!(
                "sightline_sli_overflow_total{{component_id=\"sli\",metric=\"{metric}\"}}"
            )),
            Some(4.0),
            "{metric}"
        );
        assert_eq!(
            h.self_metric(&format!(
                "sightline_sli_series{{component_id=\"sli\",metric=\"{metric}\"}}"
            )),
            Some(4.0)
        );
    }
}

fn test_config(extra: serde_json::Value) -> SliConfig {
    let mut base = json!({"flush_interval": "15s", "series_expiry": "5m"});
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    SliConfig::parse(&base).unwrap()
}

fn requests_of(config: &SliConfig, batch: &Batch) -> Vec<extract::Request<'static>> {
    let mut out = Vec::new();
    let mut invalid = Invalid::default();
    let kinds: Vec<i32> = config.span_kinds.iter().map(|k| k.proto_value()).collect();
    let payload = batch.payload_view();
    match &*payload {
        Payload::Traces(rs) => extract::spans(config, &kinds, rs, &mut invalid, |r| out.push(r)),
        Payload::Logs(rl) => extract::logs(config, rl, &mut invalid, |r| out.push(r)),
        _ => unreachable!(),
    }
    out.into_iter()
        .map(|r| extract::Request {
            service: r.service.into_owned().into(),
            method: r.method.map(|m| m.into_owned().into()),
            endpoint: r.endpoint.map(|m| m.into_owned().into()),
            status_code: r.status_code,
            error_type: r.error_type.map(|m| m.into_owned().into()),
            duration: r.duration,
            dimensions: Vec::new(),
            trace: None,
        })
        .collect()
}

fn one_request(route: &str) -> Batch {
    traces(
        "svc",
        vec![span(
            1,
            span::SpanKind::Server,
            "x",
            10,
            http("GET", Some(route), route, 200),
        )],
    )
}

#[test]
fn idle_series_expire_and_return_with_a_new_start_time() {
    let config = test_config(json!({"series_expiry": "1m"}));
    let mut agg = Aggregator::new(&config);
    let t0 = Instant::now();
    let wall0 = T0;
    let sec = |n: u64| Duration::from_secs(n);
    let ns = |n: u64| n * 1_000_000_000;
    for r in requests_of(&config, &one_request("/a")) {
        agg.record(&r, t0, wall0);
    }
    for r in requests_of(&config, &one_request("/b")) {
        agg.record(&r, t0 + sec(45), wall0 + ns(45));
    }
    let f = agg.flush(t0 + sec(59), wall0 + ns(59));
    assert_eq!(sums(&f.resource_metrics, REQUESTS).len(), 2);
    assert_eq!(f.expired, [0, 0, 0]);

    // At 60 s /a has been idle for its whole expiry: gone from memory and output.
    let f = agg.flush(t0 + sec(60), wall0 + ns(60));
    let endpoints: Vec<String> = sums(&f.resource_metrics, REQUESTS)
        .keys()
        .map(|a| a["endpoint"].clone())
        .collect();
    assert_eq!(endpoints, vec!["/b"]);
    assert_eq!(f.expired, [1, 0, 1]);
    assert_eq!(f.series, [1, 0, 1]);

    // /a comes back: a new series, counted from 1, with a new start time.
    for r in requests_of(&config, &one_request("/a")) {
        agg.record(&r, t0 + sec(70), wall0 + ns(70));
    }
    let f = agg.flush(t0 + sec(75), wall0 + ns(75));
    let points = sum_points(&f.resource_metrics, REQUESTS);
    let a = points
        .iter()
        .find(|p| attrs(&p.attributes)["endpoint"] == "/a")
        .unwrap();
    assert_eq!(a.value, Some(number_data_point::Value::AsInt(1)));
    assert_eq!(a.start_time_unix_nano, wall0 + ns(70));
    // Everything expires eventually, and then nothing is emitted.
    let f = agg.flush(t0 + sec(200), wall0 + ns(200));
    assert!(f.resource_metrics.is_empty());
    assert_eq!(f.series, [0, 0, 0]);
}

#[test]
fn expiry_zero_keeps_series_forever() {
    let config = test_config(json!({"series_expiry": "0"}));
    let mut agg = Aggregator::new(&config);
    let t0 = Instant::now();
    for r in requests_of(&config, &one_request("/a")) {
        agg.record(&r, t0, T0);
    }
    let f = agg.flush(t0 + Duration::from_secs(86_400 * 30), T0);
    assert_eq!(sums(&f.resource_metrics, REQUESTS).len(), 1);
}

// ---------------------------------------------------------------- temporality

#[test]
fn cumulative_start_times_stay_fixed_across_flushes() {
    let config = test_config(json!({}));
    let mut agg = Aggregator::new(&config);
    let t0 = Instant::now();
    let ns = |n: u64| T0 + n * 1_000_000_000;
    for r in requests_of(&config, &one_request("/a")) {
        agg.record(&r, t0, ns(1));
    }
    let mut seen = Vec::new();
    for flush in 1..=3u64 {
        for r in requests_of(&config, &one_request("/a")) {
            agg.record(&r, t0, ns(flush * 15 - 1));
        }
        let f = agg.flush(t0, ns(flush * 15));
        let p = sum_points(&f.resource_metrics, REQUESTS).remove(0);
        let h = histograms(&f.resource_metrics, DURATION)
            .into_values()
            .next()
            .unwrap();
        let m = metrics(&f.resource_metrics, REQUESTS)[0];
        let Some(metric::Data::Sum(sum)) = &m.data else {
            panic!()
        };
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        seen.push((
            p.start_time_unix_nano,
            p.time_unix_nano,
            p.value,
            h.start_time_unix_nano,
            h.count,
        ));
    }
    let v = |n| Some(number_data_point::Value::AsInt(n));
    assert_eq!(
        seen,
        vec![
            (ns(1), ns(15), v(2), ns(1), 2),
            (ns(1), ns(30), v(3), ns(1), 3),
            (ns(1), ns(45), v(4), ns(1), 4),
        ]
    );
    // An idle interval still reports the totals.
    let f = agg.flush(t0, ns(60));
    assert_eq!(sum_points(&f.resource_metrics, REQUESTS)[0].value, v(4));
}

#[test]
fn delta_reports_changes_since_the_last_flush() {
    let config = test_config(json!({"temporality": "delta"}));
    let mut agg = Aggregator::new(&config);
    let t0 = Instant::now();
    let ns = |n: u64| T0 + n * 1_000_000_000;
    for _ in 0..3 {
        for r in requests_of(&config, &one_request("/a")) {
            agg.record(&r, t0, ns(2));
        }
    }
    let f = agg.flush(t0, ns(15));
    let p = sum_points(&f.resource_metrics, REQUESTS).remove(0);
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(3)));
    assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (ns(2), ns(15)));
    let m = metrics(&f.resource_metrics, DURATION)[0];
    let Some(metric::Data::Histogram(hist)) = &m.data else {
        panic!()
    };
    assert_eq!(
        hist.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    // Nothing new: nothing emitted.
    assert!(agg.flush(t0, ns(30)).resource_metrics.is_empty());
    for r in requests_of(&config, &one_request("/a")) {
        agg.record(&r, t0, ns(40));
    }
    let f = agg.flush(t0, ns(45));
    let p = sum_points(&f.resource_metrics, REQUESTS).remove(0);
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(1)));
    assert_eq!(p.start_time_unix_nano, ns(30), "the previous flush");
    let h = histograms(&f.resource_metrics, DURATION)
        .into_values()
        .next()
        .unwrap();
    assert_eq!((h.count, h.start_time_unix_nano), (1, ns(30)));
}

#[tokio::test]
async fn restart_starts_new_series_with_new_start_times() {
    let first = Harness::new(json!({}));
    first.connector.consume(one_request("/a")).await.unwrap();
    let before = first.flush().await;
    first.connector.shutdown(deadline()).await.unwrap();
    let old = sum_points(&before, REQUESTS).remove(0);

    let second = Harness::new(json!({}));
    second.connector.consume(one_request("/a")).await.unwrap();
    let after = second.flush().await;
    let new = sum_points(&after, REQUESTS).remove(0);
    assert_eq!(
        new.value,
        Some(number_data_point::Value::AsInt(1)),
        "counting starts over"
    );
    assert!(
        new.start_time_unix_nano > old.start_time_unix_nano,
        "a new start time tells the backend the counter was reset"
    );
    assert!(new.start_time_unix_nano >= old.time_unix_nano);
}

// ---------------------------------------------------------------- exemplars and quantiles

#[tokio::test]
async fn exemplars_at_most_one_per_bucket_per_flush() {
    use span::SpanKind::Server;
    let h = Harness::new(json!({}));
    let route = || http("GET", Some("/a"), "/a", 200);
    h.connector
        .consume(traces(
            "svc",
            vec![
                span(1, Server, "a", 3, route()),
                span(2, Server, "a", 4, route()),
                span(3, Server, "a", 30, route()),
                span(4, Server, "a", 2000, route()),
            ],
        ))
        .await
        .unwrap();
    let rm = h.flush().await;
    let p = histograms(&rm, DURATION).into_values().next().unwrap();
    assert_eq!(
        p.exemplars.len(),
        3,
        "buckets 0.01, 0.05 and 2.5 each get one"
    );
    let first = &p.exemplars[0];
    let want = span(1, Server, "a", 3, vec![]);
    assert_eq!(first.trace_id, want.trace_id);
    assert_eq!(first.span_id, want.span_id);
    assert_eq!(first.time_unix_nano, want.end_time_unix_nano);
    assert_eq!(
        first.value,
        Some(pipeline_core::proto::tonic::metrics::v1::exemplar::Value::AsDouble(0.003))
    );
    // The next flush has no new requests: the totals stay, the exemplars do not.
    let rm = h.flush().await;
    let p = histograms(&rm, DURATION).into_values().next().unwrap();
    assert_eq!(p.count, 4);
    assert!(p.exemplars.is_empty());
    // Logs carry their trace context into exemplars too.
    h.connector
        .consume(logs(
            "svc",
            vec![request_log(1, "GET", "/a", int(200), 0.02)],
        ))
        .await
        .unwrap();
    let rm = h.flush().await;
    let p = histograms(&rm, DURATION).into_values().next().unwrap();
    assert_eq!(p.exemplars.len(), 1);
    assert_eq!(p.exemplars[0].span_id, vec![9u8; 8]);
}

#[tokio::test]
async fn exemplars_can_be_turned_off() {
    let h = Harness::new(json!({"exemplars": {"enabled": false}}));
    h.connector.consume(one_request("/a")).await.unwrap();
    let rm = h.flush().await;
    assert!(
        histograms(&rm, DURATION)
            .values()
            .all(|p| p.exemplars.is_empty())
    );
}

#[tokio::test]
async fn quantile_gauges_over_the_window() {
    use span::SpanKind::Server;
    let h = Harness::new(
        json!({"quantiles": {"enabled": true, "window": "30s", "significant_digits": 3}}),
    );
    let spans = (1..=100u64)
        .map(|ms| span(ms, Server, "a", ms, http("GET", Some("/a"), "/a", 200)))
        .collect();
    h.connector.consume(traces("svc", spans)).await.unwrap();
    let rm = h.flush().await;
    let q = gauges(&rm, QUANTILES);
    let base = [("service", "svc"), ("method", "GET"), ("endpoint", "/a")];
    let at = |quantile: &'static str| {
        let mut v = base.to_vec();
        v.push(("quantile", quantile));
        q[&labels(&v)]
    };
    for (quantile, want) in [("0.5", 0.050), ("0.95", 0.095), ("0.99", 0.099)] {
        let got = at(quantile);
        assert!(
            (got - want).abs() <= want * 1e-3,
            "p{quantile}: {got} vs {want}"
        );
    }
    // The window is two flush intervals: one more flush keeps the data, the next drops it.
    assert_eq!(gauges(&h.flush().await, QUANTILES).len(), 3);
    assert!(gauges(&h.flush().await, QUANTILES).is_empty());
}

// ---------------------------------------------------------------- lifecycle

#[tokio::test]
async fn flushes_on_the_interval_while_running() {
    let h = Harness::new(json!({"flush_interval": "50ms"}));
    h.connector
        .start(&Host::new(std::env::temp_dir()))
        .await
        .unwrap();
    h.connector.consume(one_request("/a")).await.unwrap();
    // Cumulative: every flush repeats the series, so a few flushes give a few points.
    assert!(h.out.wait_for_items(6, Duration::from_secs(10)).await >= 6);
    h.connector.shutdown(deadline()).await.unwrap();
    let rm = emitted(&h.out);
    assert!(
        sum_points(&rm, REQUESTS)
            .iter()
            .all(|p| p.value == Some(number_data_point::Value::AsInt(1)))
    );
    assert!(matches!(
        h.connector.consume(one_request("/a")).await,
        Err(ConsumeError::ShuttingDown)
    ));
}

#[tokio::test]
async fn shutdown_without_start_emits_what_was_derived() {
    let h = Harness::new(json!({}));
    h.connector.consume(one_request("/a")).await.unwrap();
    assert_eq!(h.out.item_count(), 0, "nothing before a flush");
    h.connector.shutdown(deadline()).await.unwrap();
    let rm = emitted(&h.out);
    assert_eq!(sums(&rm, REQUESTS).values().sum::<i64>(), 1);
}

#[tokio::test]
async fn metrics_input_is_refused() {
    let h = Harness::new(json!({}));
    let e = h
        .connector
        .consume(Batch::new(Payload::Metrics(Vec::new())))
        .await
        .unwrap_err();
    assert!(!e.is_retryable());
}

struct Refusing;

#[async_trait::async_trait]
impl Consumer for Refusing {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        batch.dropped();
        Err(ConsumeError::permanent("no"))
    }
}

/// Never answers a `consume`; remembers the points it was offered.
#[derive(Default)]
struct Stuck {
    offered: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Consumer for Stuck {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.offered
            .fetch_add(batch.item_count(), std::sync::atomic::Ordering::SeqCst);
        std::future::pending().await
    }
}

#[tokio::test]
async fn flushes_cut_off_by_the_shutdown_deadline_are_counted_as_dropped() {
    let telemetry = Telemetry::new();
    let tel = telemetry.component(
        ComponentKind::Connector,
        &ComponentId::parse("sli").unwrap(),
    );
    let metrics = connector::SliMetrics::new(&tel).unwrap();
    let stuck = Arc::new(Stuck::default());
    let c = SliConnector::new(
        SliConfig::parse(&json!({"flush_interval": "10ms"})).unwrap(),
        stuck.clone(),
        tel,
        metrics,
    );
    c.start(&Host::new(std::env::temp_dir())).await.unwrap();
    c.consume(one_request("/a")).await.unwrap();
    // The flush task hands the points on and hangs there.
    let until = Instant::now() + Duration::from_secs(5);
    while stuck.offered.load(std::sync::atomic::Ordering::SeqCst) == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.shutdown(Instant::now() + Duration::from_millis(100))
        .await
        .unwrap();
    let offered = stuck.offered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(offered > 0);
    let dropped = pipeline_core::testing::metric_sum(
        &telemetry.render(),
        "sightline_component_items_dropped_total",
        &[("reason", "shutdown_timeout")],
    );
    // The flush task's send and the last flush's: every point offered and not taken.
    assert_eq!(dropped, offered as f64);
}

#[tokio::test]
async fn refused_flushes_are_counted_as_dropped() {
    let telemetry = Telemetry::new();
    let tel = telemetry.component(
        ComponentKind::Connector,
        &ComponentId::parse("sli").unwrap(),
    );
    let metrics = connector::SliMetrics::new(&tel).unwrap();
    let c = SliConnector::new(
        SliConfig::parse(&json!({})).unwrap(),
        Arc::new(Refusing),
        tel,
        metrics,
    );
    c.consume(one_request("/a")).await.unwrap();
    c.flush().await;
    let text = telemetry.render();
    assert!(
        text.contains("sightline_component_items_dropped_total{component_id=\"sli\",component_kind=\"connector\",reason=\"rejected\",signal=\"metrics\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn factory_needs_a_metrics_pipeline() {
    let out = CollectingConsumer::new();
    let only_traces =
        PerSignal::from_fn(|s| (s == Signal::Traces).then(|| out.clone() as SharedConsumer));
    let ctx = CreateContext::for_tests(ComponentKind::Connector, "sli");
    assert!(Factory.create(ctx, &json!({}), only_traces).is_err());
    // Two instances in one service share the self-metric families.
    let telemetry = Telemetry::new();
    for id in ["sli/a", "sli/b"] {
        let tel = telemetry.component(ComponentKind::Connector, &ComponentId::parse(id).unwrap());
        assert!(connector::SliMetrics::new(&tel).is_ok());
    }
}

#[tokio::test]
async fn a_fanout_lends_the_batch_instead_of_copying_it() {
    let h = Arc::new(Harness::new(json!({})));
    assert!(h.connector.reads_by_ref());
    let otlp = CollectingConsumer::new();
    struct Lent(Arc<Harness>);
    #[async_trait::async_trait]
    impl Consumer for Lent {
        async fn consume(&self, _batch: Batch) -> Result<(), ConsumeError> {
            panic!("the fan-out copied the batch for the sli connector");
        }
        fn reads_by_ref(&self) -> bool {
            self.0.connector.reads_by_ref()
        }
        async fn consume_ref(&self, batch: &Batch) -> Result<(), ConsumeError> {
            self.0.connector.consume_ref(batch).await
        }
    }
    let fanout = pipeline_core::Fanout::new(vec![
        Arc::new(Lent(h.clone())) as SharedConsumer,
        otlp.clone() as SharedConsumer,
    ]);
    let batch = known_spans();
    fanout.consume(batch.clone()).await.unwrap();
    assert_eq!(otlp.batches(), vec![batch], "the exporter got the original");
    let rm = h.flush().await;
    assert_eq!(sums(&rm, REQUESTS).values().sum::<i64>(), 11);
}
