//! The foundation scenario: OTLP/gRPC traces through `otlp -> batch -> otlp`, against the
//! baseline forwarder, at full load and at a fixed rate.

use std::sync::Arc;

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use crate::harness::{
    Sink, config, drive, load_label, print_header, print_row, serve_sink, start_baseline,
    start_sightline,
};

const SPANS_PER_REQUEST: usize = 100;

pub(crate) use pipeline_core::testing::attribute as kv;

pub(crate) fn sv(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

/// A request of 100 SERVER spans with HTTP semantic-convention attributes.
pub(crate) fn request(seed: u64) -> ExportTraceServiceRequest {
    let routes = [
        "/api/users/{id}",
        "/api/orders",
        "/api/cart/{id}/items",
        "/health",
    ];
    let spans = (0..SPANS_PER_REQUEST as u64)
        .map(|i| {
            let id = seed.wrapping_mul(1_000_003).wrapping_add(i + 1);
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seed.wrapping_add(1).to_be_bytes());
            trace_id[8..].copy_from_slice(&(i / 5 + 1).to_be_bytes());
            let route = routes[(i % 4) as usize];
            Span {
                trace_id: trace_id.to_vec(),
                span_id: id.to_be_bytes().to_vec(),
                parent_span_id: if i % 5 == 0 { vec![] } else { (id - 1).to_be_bytes().to_vec() },
                name: format!("GET {route}"),
                kind: if i % 5 == 0 { span::SpanKind::Server } else { span::SpanKind::Internal } as i32,
                start_time_unix_nano: 1_705_314_600_000_000_000 + i * 1_000_000,
                end_time_unix_nano: 1_705_314_600_045_000_000 + i * 1_000_000,
                attributes: vec![
                    kv("http.request.method", sv("GET")),
                    kv("http.route", sv(route)),
                    kv("url.path", sv(&format!("/api/users/{}", id % 10_000))),
                    kv("url.scheme", sv("https")),
                    kv("server.address", sv("api.example.com")),
                    kv("http.response.status_code", any_value::Value::IntValue(if i % 50 == 0 { 503 } else { 200 })),
                    kv("user_agent.original", sv("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)")),
                    kv("client.address", sv("10.42.7.19")),
                    kv("request_id", sv(&format!("{:016x}-{i}", seed))),
                    kv("network.protocol.version", sv("1.1")),
                ],
                status: Some(Status { code: if i % 50 == 0 { 2 } else { 0 }, message: String::new() }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", sv("checkout")),
                    kv("service.version", sv("2.14.1")),
                    kv("deployment.environment", sv("production")),
                    kv("host.name", sv("ip-10-42-7-19")),
                    kv("k8s.pod.name", sv("checkout-7d9f8b6c5-x2x4q")),
                    kv("k8s.namespace.name", sv("shop")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.flask".into(),
                    version: "0.48b0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Sixteen distinct pre-built requests: the generator's cost stays out of the measured process.
pub(crate) fn requests() -> Arc<Vec<ExportTraceServiceRequest>> {
    Arc::new((0..16).map(request).collect())
}

/// Runs the scenario and prints its table (with `--pii`, on the PII-heavy spans of the
/// `redaction` scenario).
pub(crate) async fn run(o: &crate::Options) -> Result<()> {
    let (sightline, duration, concurrency) = (o.sightline.as_str(), o.duration, o.concurrency);
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await?;
    let requests = if o.pii {
        crate::redaction::requests()
    } else {
        requests()
    };
    let bytes: usize = requests.iter().map(prost::Message::encoded_len).sum();
    let spans: usize = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    println!(
        "spans: {} ({} bytes each on average, as OTLP protobuf)\n",
        if o.pii { "PII-heavy" } else { "plain" },
        bytes / spans.max(1)
    );
    let pipeline = |compression: &str| {
        config(
            &format!(
                "processors: {{ batch: {{}} }}\nexporters: {{ otlp: {{ endpoint: 'http://{{SINK}}', compression: {compression} }} }}"
            ),
            "    traces: { receivers: [otlp], processors: [batch], exporters: [otlp] }",
        )
    };
    print_header();
    for &r in &o.loads {
        let targets = [
            start_baseline(sink_addr).await?,
            start_sightline(
                sightline,
                "sightline (otlp -> batch -> otlp, compression none)",
                &pipeline("none"),
                sink_addr,
            )
            .await?,
            start_sightline(
                sightline,
                "sightline (otlp -> batch -> otlp, compression gzip)",
                &pipeline("gzip"),
                sink_addr,
            )
            .await?,
        ];
        for target in targets {
            let o = drive(&target, &sink, requests.clone(), duration, r, concurrency).await?;
            let load_text = load_label(r, concurrency, "spans");
            print_row(&target, &load_text, &o);
        }
    }
    Ok(())
}
