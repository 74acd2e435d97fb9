//! Micro-benchmark of the `loki` exporter's per-attempt work against the `otlp` exporter's,
//! in the same run, on seed-style request logs (`exporters::loki::testing::request_logs`:
//! "Request completed" records with request ID, status, duration, method, path, user ID
//! and trace context, one service, 1,000 records per batch).
//!
//! * `otlp (protobuf + gzip)`: what the `otlp` and `otlphttp` exporters do per attempt:
//!   encode the export request straight from the batch and gzip it.
//! * `loki protobuf (default)`: group into streams, sort, build labels, structured metadata
//!   and lines, encode `PushRequest`, snappy.
//! * `loki json + gzip`, and `loki protobuf, line_format json`.
//!
//! Throughput is in log records. The machine's CPU does one iteration at a time on one
//! thread, so records per second here are records per CPU-second.
//!
//! `cargo bench -p exporters --bench loki`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exporters::helper::Compression;
use exporters::helper::codec::encode_proto;
use exporters::loki::testing::request_logs;
use exporters::loki::{LokiConfig, encode_requests};
use pipeline_core::parse_checked;
use serde_json::json;

/// The allocator of the `sightline` binary, so allocation costs are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: usize = 1_000;

fn loki_config(extra: serde_json::Value) -> LokiConfig {
    let mut config = json!({"endpoint": "http://loki:3100"});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    parse_checked(&config, LokiConfig::validate).unwrap()
}

fn encoders(c: &mut Criterion) {
    let batch = request_logs(RECORDS, 1_705_314_600_000_000_000);
    let mut group = c.benchmark_group("log records into the exporter's request bodies");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("otlp (protobuf + gzip)", |b| {
        b.iter(|| {
            let body = encode_proto(&batch.payload).unwrap();
            Compression::Gzip.compress_body(body).unwrap()
        })
    });
    for (name, extra) in [
        ("loki protobuf + snappy (default)", json!({})),
        ("loki json + gzip", json!({"encoding": "json"})),
        (
            "loki protobuf + snappy, line_format json",
            json!({"line_format": "json"}),
        ),
    ] {
        let config = loki_config(extra);
        group.bench_function(name, |b| {
            b.iter(|| encode_requests(&config, &batch).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, encoders);
criterion_main!(benches);
