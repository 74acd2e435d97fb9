//! Micro-benchmark of the `redaction` processor alone, on the spans of the end-to-end
//! `redaction` scenario (`pipeline_core::testing::pii_resource_spans`: 100 spans of ten
//! attributes, three of them personal data). Each iteration hands one fresh copy of a
//! 100-span group to the processor, which redacts it and passes it to a no-op consumer that
//! frees it; the baseline hands the same copy to the no-op consumer directly. Throughput is
//! in spans.
//!
//! `cargo bench -p processors --bench redaction`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pipeline_core::factory::DynProcessorFactory;
use pipeline_core::testing::{NopConsumer, PII_SPANS, pii_resource_spans};
use pipeline_core::{Batch, ComponentKind, Consumer, CreateContext, Payload, Signal};
use serde_json::json;

/// The allocator of the `sightline` binary, so allocation costs are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config(action: &str, summary: &str) -> serde_json::Value {
    json!({
        "allow_all_keys": true,
        "blocked_keys": ["(?i)password", "(?i)secret"],
        "detectors": ["email", "credit_card", "ipv4", "ipv6", "jwt", "bearer_token",
                      "aws_access_key", "url_credentials", "url_query"],
        "action": action,
        "summary": summary,
        "hash_key": "bench-key",
    })
}

fn redaction(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let groups: Vec<Payload> = (0..16)
        .map(|seed| Payload::Traces(vec![pii_resource_spans(seed)]))
        .collect();
    let mut next = 0usize;
    let mut input = move || {
        next += 1;
        Batch::new(groups[next % groups.len()].clone())
    };
    let mut group = c.benchmark_group("redaction");
    group.throughput(Throughput::Elements(PII_SPANS));
    let nop: Arc<dyn Consumer> = Arc::new(NopConsumer);
    group.bench_function("baseline: no-op consumer", |b| {
        b.iter_batched(
            &mut input,
            |batch| rt.block_on(nop.consume(batch)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    for (name, action, summary) in [
        ("mask, summary silent", "mask", "silent"),
        ("mask, summary info", "mask", "info"),
        ("hash, summary info", "hash", "info"),
    ] {
        let ctx = CreateContext::for_tests(ComponentKind::Processor, "redaction");
        let processor = processors::redaction::Factory
            .create(ctx, &config(action, summary), Signal::Traces, nop.clone())
            .unwrap();
        group.bench_function(name, |b| {
            b.iter_batched(
                &mut input,
                |batch| rt.block_on(processor.consume(batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, redaction);
criterion_main!(benches);
