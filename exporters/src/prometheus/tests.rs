//! Tests of the `prometheus` exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use pipeline_core::testing::check_exporter;
use pipeline_core::{AckToken, DynExporterFactory, Host};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Factory, Format, PrometheusConfig, PrometheusExporter};
use crate::helper::testutil::metrics::{all_kinds, batch, counter, gauge, resource};
use crate::helper::testutil::{TestCtx, eventually, in_secs};

#[tokio::test]
async fn conformance() {
    check_exporter(&Factory, &json!({"endpoint": "127.0.0.1:0"})).await;
}

#[test]
fn config_defaults_and_errors() {
    let c: PrometheusConfig = pipeline_core::parse_config(&json!({})).unwrap();
    assert_eq!(c.endpoint, "127.0.0.1:8889");
    assert_eq!(c.metric_expiration.get(), Duration::from_secs(300));
    assert_eq!(c.max_series, 100_000);
    assert!(c.add_metric_suffixes);
    assert!(Factory.validate(&json!({"endpoint": "nowhere"})).is_err());
    assert!(Factory.validate(&json!({"max_series": 0})).is_err());
    assert!(
        Factory
            .validate(&json!({"const_labels": {"bad-name": "x"}}))
            .is_err()
    );
    let e = Factory.validate(&json!({"endpont": "x:1"})).unwrap_err();
    assert!(e.message.contains("endpoint"), "{e}");
    assert_eq!(
        Factory.listen_addresses(&json!({"endpoint": "0.0.0.0:9464"})),
        vec!["0.0.0.0:9464".to_string()]
    );
}

fn exporter(t: &TestCtx, config: serde_json::Value) -> PrometheusExporter {
    let config: PrometheusConfig = pipeline_core::parse_config(&config).unwrap();
    PrometheusExporter::new(&t.ctx, config)
}

/// Lines of the page without HELP/TYPE, sorted.
fn samples(page: &str) -> Vec<String> {
    let mut lines: Vec<String> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn text_format_has_every_kind_with_its_names() {
    use pipeline_core::Consumer;
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({}));
    x.consume(batch(vec![all_kinds("checkout", 1_700_000_100_000)]))
        .await
        .unwrap();
    let page = x.render(Format::Text);
    let job = r#"job="checkout""#;
    let expected = [
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="+Inf"}} 7"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="0.01"}} 1"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="0.05"}} 3"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="0.1"}} 6"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="0.5"}} 6"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="1"}} 6"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="10"}} 6"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="2.5"}} 6"#
        ),
        format!(
            r#"http_request_duration_seconds_bucket{{endpoint="/api/users/{{id}}",{job},le="5"}} 6"#
        ),
        format!(r#"http_request_duration_seconds_count{{endpoint="/api/users/{{id}}",{job}}} 7"#),
        format!(r#"http_request_duration_seconds_sum{{endpoint="/api/users/{{id}}",{job}}} 11.5"#),
        format!(r#"http_requests_total{{{job},method="GET"}} 42"#),
        format!(r#"http_requests_total{{{job},method="POST"}} 7"#),
        format!(r#"rpc_latency_seconds_count{{{job}}} 40"#),
        format!(r#"rpc_latency_seconds_sum{{{job}}} 12.5"#),
        format!(r#"rpc_latency_seconds{{{job},quantile="0.5"}} 0.25"#),
        format!(r#"rpc_latency_seconds{{{job},quantile="0.99"}} 0.9"#),
        format!(r#"system_memory_usage_bytes{{{job},state="used"}} 1024"#),
        format!(r#"target_info{{host_name="node-1",{job}}} 1"#),
    ];
    assert_eq!(samples(&page), expected);
    assert!(page.contains(
        "# HELP http_requests_total Total HTTP requests\n# TYPE http_requests_total counter\n"
    ));
    assert!(page.contains("# TYPE http_request_duration_seconds histogram\n"));
    assert!(page.contains("# TYPE rpc_latency_seconds summary\n"));
    assert!(page.contains("# TYPE system_memory_usage_bytes gauge\n"));
    assert!(page.contains("# TYPE target_info gauge\n"));
    assert!(!page.contains("# EOF"));
    assert!(!page.contains("_created"));
    assert_eq!(t.sent("metrics"), 5.0);
}

#[tokio::test]
async fn openmetrics_has_created_exemplars_and_eof() {
    use pipeline_core::Consumer;
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({}));
    x.consume(batch(vec![all_kinds("checkout", 1_700_000_100_000)]))
        .await
        .unwrap();
    let page = x.render(Format::OpenMetrics);
    assert!(page.ends_with("# EOF\n"), "{page}");
    // Counter families are named without _total; samples have it.
    assert!(page.contains("# TYPE http_requests counter\n"), "{page}");
    let trace = "11".repeat(16);
    let span = "22".repeat(8);
    assert!(
        page.contains(&format!(
            "http_requests_total{{job=\"checkout\",method=\"GET\"}} 42 # {{trace_id=\"{trace}\",span_id=\"{span}\"}} 1 1700000100\n"
        )),
        "{page}"
    );
    assert!(page.contains("http_requests_created{job=\"checkout\",method=\"GET\"} 1700000000\n"));
    // The exemplar of 0.07 s is on the 0.1 bucket.
    let bucket = format!(
        "http_request_duration_seconds_bucket{{endpoint=\"/api/users/{{id}}\",job=\"checkout\",le=\"0.1\"}} 6 # {{trace_id=\"{}\",span_id=\"{}\"}} 0.07 1700000100\n",
        "aa".repeat(16),
        "bb".repeat(8)
    );
    assert!(page.contains(&bucket), "{page}");
    assert!(page.contains("http_request_duration_seconds_created{"));
    assert!(page.contains("rpc_latency_seconds_created{job=\"checkout\"} 1700000000\n"));
    assert!(page.contains("# TYPE target info\ntarget_info{"));
    // Gauges have no _created.
    assert!(!page.contains("system_memory_usage_bytes_created"));
}

#[tokio::test]
async fn newer_points_replace_older_and_older_do_not() {
    use pipeline_core::Consumer;
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({}));
    let at = |v: f64, t_ms| batch(vec![resource("svc", vec![gauge("g", v, t_ms)])]);
    x.consume(at(1.0, 2000)).await.unwrap();
    x.consume(at(2.0, 3000)).await.unwrap();
    x.consume(at(9.0, 1000)).await.unwrap();
    let page = x.render(Format::Text);
    assert!(
        page.contains("g_bytes{job=\"svc\",state=\"used\"} 2\n"),
        "{page}"
    );
}

#[tokio::test]
async fn a_name_taken_by_another_type_is_skipped_and_counted() {
    use pipeline_core::Consumer;
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({}));
    // A counter `jobs` and a gauge `jobs_total` both want `jobs_total`.
    let mut g = gauge("jobs_total", 5.0, 1000);
    g.unit = String::new();
    x.consume(batch(vec![resource(
        "svc",
        vec![counter("jobs", &[("GET", 3)], 1000), g],
    )]))
    .await
    .unwrap();
    let page = x.render(Format::Text);
    assert_eq!(page.matches("# TYPE jobs_total").count(), 1, "{page}");
    assert!(page.contains("# TYPE jobs_total counter"));
    assert!(page.contains("jobs_total{job=\"svc\",method=\"GET\"} 3\n"));
    assert!(!page.contains("} 5\n"));
    assert_eq!(t.dropped("metrics", "name_conflict"), 1.0);
    assert_eq!(t.sent("metrics"), 1.0);
}

#[tokio::test]
async fn a_gauge_beside_a_counter_of_its_openmetrics_name_is_skipped() {
    use pipeline_core::Consumer;
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({}));
    // Counter `jobs` -> `jobs_total`, OpenMetrics family `jobs`; a gauge `jobs` and one
    // called `target_info` would repeat a family.
    let mut g = gauge("jobs", 5.0, 1000);
    g.unit = String::new();
    let mut info = gauge("target_info", 1.0, 1000);
    info.unit = String::new();
    x.consume(batch(vec![resource(
        "svc",
        vec![counter("jobs", &[("GET", 3)], 1000), g, info],
    )]))
    .await
    .unwrap();
    let page = x.render(Format::OpenMetrics);
    assert_eq!(page.matches("# TYPE jobs ").count(), 1, "{page}");
    assert_eq!(page.matches("# TYPE target ").count(), 1, "{page}");
    assert_eq!(t.dropped("metrics", "name_conflict"), 2.0);
}

#[tokio::test]
async fn max_series_bounds_the_table_and_counts_drops() {
    use pipeline_core::Consumer;
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({"max_series": 3}));
    let methods: Vec<(String, i64)> = (0..5).map(|i| (format!("M{i}"), i)).collect();
    let points: Vec<(&str, i64)> = methods.iter().map(|(m, v)| (m.as_str(), *v)).collect();
    x.consume(batch(vec![resource(
        "svc",
        vec![counter("c", &points, 1000)],
    )]))
    .await
    .unwrap();
    // Three series, target_info not among them: no room left.
    let page = x.render(Format::Text);
    assert_eq!(samples(&page).len(), 3, "{page}");
    assert_eq!(t.dropped("metrics", "max_series"), 2.0);
    assert_eq!(t.metric("sightline_prometheus_series", &[]), 3.0);
    // Known series still update.
    x.consume(batch(vec![resource(
        "svc",
        vec![counter("c", &[("M0", 100)], 2000)],
    )]))
    .await
    .unwrap();
    assert!(x.render(Format::Text).contains("method=\"M0\"} 100\n"));
}

#[tokio::test]
async fn series_expire_after_metric_expiration() {
    use pipeline_core::Consumer;
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({"metric_expiration": "100ms"}));
    x.consume(batch(vec![all_kinds("svc", 1000)]))
        .await
        .unwrap();
    assert!(x.render(Format::Text).contains("http_requests_total"));
    assert!(
        eventually(Duration::from_secs(5), || async {
            x.render(Format::Text).is_empty()
        })
        .await
    );
    assert_eq!(t.metric("sightline_prometheus_series", &[]), 6.0);
}

#[tokio::test]
async fn delta_sums_are_accumulated() {
    use pipeline_core::Consumer;
    use pipeline_core::proto::tonic::metrics::v1::{AggregationTemporality, metric};
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({}));
    let delta = |v, t_ms| {
        let mut m = counter("orders", &[("GET", v)], t_ms);
        if let Some(metric::Data::Sum(s)) = &mut m.data {
            s.aggregation_temporality = AggregationTemporality::Delta as i32;
        }
        batch(vec![resource("svc", vec![m])])
    };
    for (i, v) in [3, 4, 5].into_iter().enumerate() {
        x.consume(delta(v, 1000 + i as u64)).await.unwrap();
    }
    assert!(
        x.render(Format::Text)
            .contains("orders_total{job=\"svc\",method=\"GET\"} 12\n")
    );
}

#[tokio::test]
async fn folded_batches_are_acknowledged_as_delivered() {
    use pipeline_core::Consumer;
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({}));
    let outcome = Arc::new(AtomicU8::new(0));
    let o = Arc::clone(&outcome);
    let mut b = batch(vec![all_kinds("svc", 1000)]);
    b.ctx.acks.push(AckToken::new(move |ok| {
        o.store(if ok { 1 } else { 2 }, Ordering::SeqCst)
    }));
    x.consume(b).await.unwrap();
    assert_eq!(outcome.load(Ordering::SeqCst), 1);
}

async fn get(addr: std::net::SocketAddr, accept: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: x\r\nAccept: {accept}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn serves_metrics_with_content_negotiation() {
    use pipeline_core::{Component, Consumer};
    let t = TestCtx::new("prometheus");
    let x = exporter(&t, json!({"endpoint": "127.0.0.1:0"}));
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    x.consume(batch(vec![all_kinds("svc", 1000)]))
        .await
        .unwrap();
    let addr = x.local_addr().await.unwrap();
    let text = get(addr, "text/plain;version=0.0.4").await;
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    assert!(
        text.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{text}"
    );
    assert!(text.contains("http_requests_total{job=\"svc\",method=\"GET\"} 42"));
    let om = get(
        addr,
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )
    .await;
    assert!(
        om.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"));
    x.shutdown(in_secs(5.0)).await.unwrap();
    // Stopped: the port is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn two_exporters_on_one_port_fail_to_start() {
    use pipeline_core::Component;
    let t = TestCtx::new("prometheus");
    let a = exporter(&t, json!({"endpoint": "127.0.0.1:0"}));
    a.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let addr = a.local_addr().await.unwrap();
    let b = exporter(&t, json!({"endpoint": addr.to_string()}));
    assert!(b.start(&Host::new(std::env::temp_dir())).await.is_err());
    a.shutdown(in_secs(5.0)).await.unwrap();
}
