//! The `redaction` scenario: OTLP/gRPC traces through `otlp -> redaction -> batch -> otlp`
//! with every built-in detector on (masking with the issue's `summary: info`, masking
//! silently, and hashing), against the same pipeline without `redaction`, in the same run,
//! in interleaved rounds (median reported). The spans are
//! `pipeline_core::testing::pii_resource_spans`: ten attributes, three of them personal data
//! or secrets (an email, a client IP, and one of a URL `token`, a bearer JWT or a card
//! number), so a third of the attribute values are rewritten.

use std::sync::Arc;

use anyhow::Result;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline_core::testing::pii_resource_spans;

use crate::Options;
use crate::harness::{
    Sink, config, interleaved_runs, load_label, print_header, print_rounds, serve_sink,
};

/// Sixteen distinct pre-built requests of PII-heavy spans.
pub(crate) fn requests() -> Arc<Vec<ExportTraceServiceRequest>> {
    Arc::new((0..16).map(request).collect())
}

/// A request of 100 spans, ten attributes each, three of them sensitive.
fn request(seed: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![pii_resource_spans(seed)],
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
    let requests = requests();
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
        print_rounds(&targets, &runs, &load_label(r, concurrency, "spans"));
    }
    Ok(())
}
