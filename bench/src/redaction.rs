//! The `redaction` scenario: OTLP/gRPC traces through `otlp -> redaction -> batch -> otlp`
//! with every built-in detector on (masking with the issue's `summary: info`, masking
//! silently, and hashing), against the same pipeline without `redaction`, in the same run,
//! in interleaved rounds (median reported). Spans carry ten attributes, three of them personal data or secrets (an email,
//! a client IP, and one of a URL `token`, a bearer JWT or a card number), so a third of the
//! attribute values are rewritten.

use std::sync::Arc;

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use crate::Options;
use crate::harness::{
    Sink, config, interleaved_runs, items_per_cpu_second, print_header, print_named_row, serve_sink,
};
use crate::traces::{kv, sv};

const SPANS_PER_REQUEST: u64 = 100;

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

/// A request of 100 spans, ten attributes each, three of them sensitive.
fn request(seed: u64) -> ExportTraceServiceRequest {
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| {
            let id = seed.wrapping_mul(1_000_003).wrapping_add(i + 1);
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&seed.wrapping_add(1).to_be_bytes());
            trace_id[8..].copy_from_slice(&(i / 5 + 1).to_be_bytes());
            let user = id % 5000;
            let (url, extra) = match i % 3 {
                0 => (
                    format!("https://api.example.com/v1/orders/{user}?expand=items&token=t0k{id:x}"),
                    kv("order.note", sv(&format!("order {id} shipped"))),
                ),
                1 => (
                    format!("https://api.example.com/v1/orders/{user}?expand=items"),
                    kv("http.request.header.authorization", sv(&format!("Bearer {JWT}"))),
                ),
                _ => (
                    format!("https://api.example.com/v1/orders/{user}?expand=items"),
                    kv("payment.card", sv("4111 1111 1111 1111")),
                ),
            };
            Span {
                trace_id: trace_id.to_vec(),
                span_id: id.to_be_bytes().to_vec(),
                parent_span_id: if i % 5 == 0 { vec![] } else { (id - 1).to_be_bytes().to_vec() },
                name: "GET /v1/orders/{id}".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: 1_705_314_600_000_000_000 + i * 1_000_000,
                end_time_unix_nano: 1_705_314_600_045_000_000 + i * 1_000_000,
                attributes: vec![
                    kv("http.request.method", sv("GET")),
                    kv("http.route", sv("/v1/orders/{id}")),
                    kv("http.response.status_code", any_value::Value::IntValue(200)),
                    kv("server.address", sv("api.example.com")),
                    kv("user_agent.original", sv("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)")),
                    kv("network.protocol.version", sv("1.1")),
                    kv("client.address", sv(&format!("10.42.{}.{}", user / 250, user % 250))),
                    kv("user.email", sv(&format!("user{user}@example.com"))),
                    kv("url.full", sv(&url)),
                    extra,
                ],
                status: Some(Status { code: 0, message: String::new() }),
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

/// The `redaction` processor's config in the benchmark: every detector, the key
/// rules; `ACTION` and `SUMMARY` are filled in per row.
const REDACTION: &str = "redaction: { allow_all_keys: true, blocked_keys: ['(?i)password', '(?i)secret'], \
    detectors: [email, credit_card, ipv4, ipv6, jwt, bearer_token, aws_access_key, url_credentials, url_query], \
    summary: SUMMARY, hash_key: bench-key, action: ACTION }";

/// Interleaved rounds per load; rows report the median.
const ROUNDS: usize = 5;

/// Runs the scenario and prints its table: for each load, the three processes run in
/// `ROUNDS` interleaved rounds (this shared machine's background load moves single runs by
/// more than the difference measured) and each row is the median round.
pub(crate) async fn run(o: &Options) -> Result<()> {
    let (sightline, duration, concurrency) = (o.sightline.as_str(), o.duration, o.concurrency);
    let rounds = o.rounds.unwrap_or(ROUNDS);
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await?;
    let requests = Arc::new((0..16).map(request).collect::<Vec<_>>());
    let exporter = "exporters: { otlp: { endpoint: 'http://{SINK}', compression: none } }";
    let without = config(
        &format!("processors: {{ batch: {{}} }}\n{exporter}"),
        "    traces: { receivers: [otlp], processors: [batch], exporters: [otlp] }",
    );
    let with = |action: &str, summary: &str| {
        config(
            &format!(
                "processors: {{ batch: {{}}, {} }}\n{exporter}",
                REDACTION
                    .replace("ACTION", action)
                    .replace("SUMMARY", summary)
            ),
            "    traces: { receivers: [otlp], processors: [redaction, batch], exporters: [otlp] }",
        )
    };
    let targets = [
        ("sightline (otlp -> batch -> otlp)".to_string(), without),
        (
            "sightline (otlp -> redaction -> batch -> otlp, mask, summary info)".to_string(),
            with("mask", "info"),
        ),
        (
            "sightline (same, mask, summary silent)".to_string(),
            with("mask", "silent"),
        ),
        (
            "sightline (same, hash, summary info)".to_string(),
            with("hash", "info"),
        ),
    ];
    print_header();
    for &r in &o.loads {
        let load_text = if r == 0 {
            format!("max ({concurrency} clients)")
        } else {
            format!("{r} spans/s")
        };
        let runs = interleaved_runs(
            sightline,
            &targets,
            &sink,
            sink_addr,
            requests.clone(),
            duration,
            r,
            concurrency,
            rounds,
        )
        .await?;
        let medians: Vec<f64> = runs
            .iter()
            .map(|r| r.get(r.len() / 2).map_or(0.0, items_per_cpu_second))
            .collect();
        for (((name, _), runs), median) in targets.iter().zip(&runs).zip(&medians) {
            if let Some(o) = runs.get(runs.len() / 2) {
                print_named_row(name, &load_text, o);
            }
            let all: Vec<String> = runs
                .iter()
                .map(|o| format!("{:.0}", items_per_cpu_second(o)))
                .collect();
            eprintln!(
                "  {name} @ {load_text}: spans per CPU-second per round {}; {:.2}x without redaction",
                all.join(", "),
                median / medians[0].max(1e-9)
            );
        }
    }
    Ok(())
}
