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
//! Throughput is in log records per CPU-second: the measurement is the benchmark thread's
//! CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so other work on a shared machine
//! does not count against either side.
//!
//! `cargo bench -p exporters --bench loki`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exporters::helper::Compression;
use exporters::loki::testing::request_logs;
use exporters::loki::{LokiConfig, encode_requests};
use pipeline_core::ComponentConfig;
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
    LokiConfig::parse(&config).unwrap()
}

/// The benchmark thread's CPU time, in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_nanos()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_nanos().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// CPU nanoseconds as `ms`/`µs` of CPU, throughput as elements per CPU-second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e6 {
            (1e-3, "µs cpu")
        } else {
            (1e-6, "ms cpu")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let elements = match t {
            Throughput::Elements(n) => *n as f64,
            _ => 1.0,
        };
        values
            .iter_mut()
            .for_each(|v| *v = elements * 1e9 / *v / 1e3);
        "K records/cpu-s"
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn encoders(c: &mut Criterion<ThreadCpuTime>) {
    let batch = request_logs(RECORDS, 1_705_314_600_000_000_000);
    let mut group = c.benchmark_group("log records into the exporter's request bodies");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("otlp (protobuf + gzip)", |b| {
        b.iter(|| {
            let body = batch.to_request();
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

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = encoders
}
criterion_main!(benches);
