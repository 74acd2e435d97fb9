//! Micro-benchmark of the receiver's one-pass check of an OTLP request
//! (`EncodedPayload::from_request`), against prost decoding the same bytes: the work the
//! bytes path does per request instead of decoding. The request is the redaction
//! benchmarks' 100 PII-heavy spans (`pipeline_core::testing::pii_resource_spans`), eight
//! groups of them (800 spans, about 470 KiB). Throughput is in spans.
//!
//! `cargo bench -p pipeline-core --bench wire_scan`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipeline_core::Signal;
use pipeline_core::proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use pipeline_core::testing::{PII_SPANS, pii_resource_spans};
use pipeline_core::wire::{EncodedPayload, Scanned};
use prost::Message;

fn request() -> Bytes {
    let request = ExportTraceServiceRequest {
        resource_spans: (0..8).map(pii_resource_spans).collect(),
    };
    Bytes::from(request.encode_to_vec())
}

fn scan(c: &mut Criterion) {
    let body = request();
    let mut group = c.benchmark_group("wire_scan");
    group.throughput(Throughput::Elements(8 * PII_SPANS));
    group.bench_function("scan", |b| {
        b.iter(
            || match EncodedPayload::from_request(Signal::Traces, &body) {
                Ok(Scanned::Clean(p)) => p,
                _ => unreachable!("the request is valid"),
            },
        )
    });
    group.bench_function("prost_decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(body.clone()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
