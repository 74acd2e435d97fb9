//! The `request_id` scenario.
//!
//! Throughput: OTLP/gRPC logs through `otlp -> request_id -> batch -> otlp` with 100,000
//! live request IDs (learned from 100,000 SERVER spans sent through the traces pipeline
//! before the load), every log record carrying one of them and no trace context, so every
//! record is looked up and enriched; against the same pipeline without `request_id`, in the
//! same run. The processor's own counters are read afterwards to show every record matched.
//! At full load the pair runs three times in alternating order (the machine is shared and
//! its load drifts); the result is the median ratio.
//!
//! Memory: two processes learn one million distinct request IDs from spans; one keeps them
//! all (`max_entries: 1000000`), the control keeps one (`max_entries: 1`). The difference of
//! their resident memory, divided by the entries, is the memory per entry.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use tonic::transport::Channel;

use crate::harness::{
    Load, Sink, Target, config, drive, free_port, load_label, print_header_for, print_row, rss,
    sample, scrape, serve_sink, start_sightline,
};
use crate::traces::{kv, sv};

/// Live request IDs during the throughput runs.
const LIVE_IDS: u64 = 100_000;
/// Request IDs learned in the memory runs.
const MEMORY_IDS: u64 = 1_000_000;
const PER_REQUEST: u64 = 100;

/// A request ID as Flask's `uuid.uuid4()` writes it (36 characters).
fn rid(n: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (n.wrapping_mul(2_654_435_761)) & 0xffff_ffff,
        n & 0xffff,
        (n >> 4) & 0xfff,
        (n >> 8) & 0xfff,
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15) & 0xffff_ffff_ffff
    )
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", sv(service)),
            kv("service.version", sv("1.4.2")),
            kv("host.name", sv("node-7")),
            kv("k8s.pod.name", sv("api-7c9f8d6b5-x2k4q")),
        ],
        ..Default::default()
    })
}

/// 100 SERVER spans of the requests `first..first + 100`, each with its request ID.
fn spans(first: u64) -> ExportTraceServiceRequest {
    let spans = (first..first + PER_REQUEST)
        .map(|n| {
            let mut trace_id = [0x5au8; 16];
            trace_id[8..].copy_from_slice(&(n + 1).to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: (n + 1).to_be_bytes().to_vec(),
                name: "POST /api/login".into(),
                kind: span::SpanKind::Server as i32,
                flags: 0x101,
                start_time_unix_nano: 1_705_314_600_000_000_000 + n,
                end_time_unix_nano: 1_705_314_600_057_000_000 + n,
                attributes: vec![
                    kv("http.request.method", sv("POST")),
                    kv("http.route", sv("/api/login")),
                    kv("http.response.status_code", Value::IntValue(200)),
                    kv("request_id", sv(&rid(n))),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("api"),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.flask".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// 100 "Request completed" records of the seed's Flask app with their request ID and no
/// trace context. Records `first..first + 100` of a permutation of the live requests: the
/// requests of one batch are scattered over the table, as those of concurrent users are
/// (requests learned one after another would sit next to each other in memory, which
/// flatters the lookups).
fn logs(first: u64) -> ExportLogsServiceRequest {
    let log_records = (first..first + PER_REQUEST)
        .map(|k| k * 7_919 % LIVE_IDS)
        .map(|n| LogRecord {
            time_unix_nano: 1_705_314_600_180_000_000 + n,
            observed_time_unix_nano: 1_705_314_600_200_000_000 + n,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(sv("Request completed")),
            }),
            attributes: vec![
                kv("module", sv("app")),
                kv("function", sv("after_request")),
                kv("line", Value::IntValue(185)),
                kv("request_id", sv(&rid(n))),
                kv("status_code", Value::IntValue(200)),
                kv("duration_seconds", Value::DoubleValue(0.057)),
                kv("method", sv("POST")),
                kv("path", sv("/api/login")),
            ],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("api"),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "api".into(),
                    ..Default::default()
                }),
                log_records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Sends the spans of requests `0..ids` (four in flight) and waits until the sink has them.
async fn learn(target: &Target, sink: &Sink, ids: u64) -> Result<()> {
    let channel = Channel::from_shared(target.url.clone())?.connect().await?;
    let before = sink.spans.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let mut first = t * PER_REQUEST;
            while first < ids {
                while !ExportTraceServiceRequest::send(&channel, spans(first)).await {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                first += 4 * PER_REQUEST;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.spans.load(Ordering::Relaxed) - before < ids {
        if Instant::now() > deadline {
            bail!("the sink did not get the {ids} spans");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls the processor's entry gauge until it reads `n`.
async fn wait_for_entries(metrics_port: u16, n: u64) -> Result<()> {
    let series = r#"sightline_request_id_entries{component_id="request_id"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sample(&scrape(metrics_port).await?, series);
        if got == Some(n as f64) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("entries: {got:?}, expected {n}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The config of a run: traces and logs pipelines with or without `request_id`, the
/// metrics endpoint on `metrics_port`.
fn pipeline_config(processor: Option<&str>, metrics_port: u16) -> String {
    let exporter = "exporters: { otlp: { endpoint: 'http://{SINK}', compression: none } }";
    let (components, chain) = match processor {
        Some(p) => (
            format!("processors: {{ batch: {{}}, request_id: {{ {p} }} }}\n{exporter}"),
            "request_id, batch",
        ),
        None => (
            format!("processors: {{ batch: {{}} }}\n{exporter}"),
            "batch",
        ),
    };
    config(
        &components,
        &format!(
            "    traces: {{ receivers: [otlp], processors: [{chain}], exporters: [otlp] }}\n    \
             logs: {{ receivers: [otlp], processors: [{chain}], exporters: [otlp] }}"
        ),
    )
    .replace("{METRICS}", &metrics_port.to_string())
}

/// Runs the scenario and prints its tables.
pub(crate) async fn run(
    sightline: &str,
    duration: Duration,
    rate: u64,
    concurrency: usize,
) -> Result<()> {
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await?;
    let requests = Arc::new(
        (0..LIVE_IDS / PER_REQUEST)
            .map(|i| logs(i * PER_REQUEST))
            .collect::<Vec<_>>(),
    );
    let processor = "wait: 2s, ttl: 5m";
    print_header_for("log records");
    let mut notes = Vec::new();
    // This machine is shared and its load drifts: at full load the pair runs three times,
    // in alternating order, and the ratio is the median of the three pairs.
    let rounds: [(u64, [bool; 2]); 4] = [
        (0, [false, true]),
        (0, [true, false]),
        (0, [false, true]),
        (rate, [false, true]),
    ];
    let mut ratios = Vec::new();
    for (r, order) in rounds {
        let mut per_cpu = [0.0f64; 2];
        for with in order {
            let metrics_port = free_port()?;
            let (name, cfg) = if with {
                (
                    "sightline (otlp -> request_id -> batch -> otlp, 100,000 live IDs)",
                    pipeline_config(Some(processor), metrics_port),
                )
            } else {
                (
                    "sightline (otlp -> batch -> otlp)",
                    pipeline_config(None, metrics_port),
                )
            };
            let target = start_sightline(sightline, name, &cfg, sink_addr).await?;
            // Both runs get the same spans first, so the only difference is the processor.
            learn(&target, &sink, LIVE_IDS).await?;
            if with {
                wait_for_entries(metrics_port, LIVE_IDS).await?;
            }
            let o = drive(&target, &sink, requests.clone(), duration, r, concurrency).await?;
            let load_text = load_label(r, concurrency, "log records");
            print_row(&target, &load_text, &o);
            per_cpu[usize::from(with)] = o.delivered_spans as f64 / o.cpu.max(1e-9);
            if with {
                let text = scrape(metrics_port).await?;
                let matched = sample(
                    &text,
                    r#"sightline_request_id_matched_total{component_id="request_id",signal="logs"}"#,
                )
                .unwrap_or(0.0);
                let pending = sample(
                    &text,
                    r#"sightline_request_id_pending{component_id="request_id"}"#,
                )
                .unwrap_or(-1.0);
                notes.push(format!(
                    "{load_text}: {matched:.0} of {} delivered log records matched, {pending:.0} held at the end",
                    o.delivered_spans
                ));
            }
        }
        let ratio = per_cpu[1] / per_cpu[0].max(1e-9);
        if r == 0 {
            ratios.push(ratio);
        } else {
            notes.push(format!("{r} log records/s: ratio {ratio:.2}x"));
        }
    }
    ratios.sort_by(f64::total_cmp);
    notes.push(format!(
        "max: ratios {:?}, median **{:.2}x** the pipeline without request_id",
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>(),
        ratios[ratios.len() / 2]
    ));
    for n in notes {
        println!("\n{n}");
    }

    println!("\n| process | request IDs sent | entries kept | RSS after MiB | peak RSS MiB |");
    println!("|---|---|---|---|---|");
    let mut after = Vec::new();
    for max_entries in [1u64, MEMORY_IDS] {
        let metrics_port = free_port()?;
        let cfg = pipeline_config(
            Some(&format!("wait: 2s, ttl: 1h, max_entries: {max_entries}")),
            metrics_port,
        );
        let name = format!("sightline, request_id max_entries {max_entries}");
        let target = start_sightline(sightline, &name, &cfg, sink_addr).await?;
        learn(&target, &sink, MEMORY_IDS).await?;
        wait_for_entries(metrics_port, max_entries).await?;
        // Let the pipeline's buffers drain before reading the resident memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = target.child.id();
        let now = rss(pid)?;
        let (_, peak) = crate::harness::usage(pid)?;
        println!(
            "| {name} | {MEMORY_IDS} | {max_entries} | {:.1} | {:.1} |",
            now as f64 / (1 << 20) as f64,
            peak as f64 / (1 << 20) as f64
        );
        after.push(now);
    }
    let per_entry = (after[1] as f64 - after[0] as f64) / MEMORY_IDS as f64;
    println!(
        "\nMemory per entry: ({} - {}) bytes / {MEMORY_IDS} entries = **{per_entry:.0} bytes** ({:.0} MiB per million entries)",
        after[1],
        after[0],
        per_entry * MEMORY_IDS as f64 / (1 << 20) as f64
    );
    Ok(())
}
