use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pipeline_core::testing::{AckProbe, CollectingConsumer, check_processor, span_batch};
use pipeline_core::{
    AckOutcome, Component, ComponentKind, ConsumeError, Consumer, CreateContext, Host,
};
use serde_json::json;

use super::config::Limits;
use super::*;
use pipeline_core::ComponentConfig;

const MIB: u64 = 1 << 20;

fn limiter(resident: Arc<AtomicU64>, next: Arc<CollectingConsumer>) -> MemoryLimiter {
    let limits = MemoryLimiterConfig {
        limit_mib: 100,
        ..Default::default()
    }
    .limits(None)
    .unwrap();
    MemoryLimiter::new(
        limits,
        Arc::new(move || Some(resident.load(Ordering::Relaxed))),
        next,
        CreateContext::for_tests(ComponentKind::Processor, "memory_limiter").telemetry,
    )
}

#[tokio::test]
async fn passes_the_conformance_kit() {
    check_processor(&Factory).await;
}

#[test]
fn limits_follow_otelcol() {
    let c: MemoryLimiterConfig = serde_json::from_value(json!({"limit_mib": 100})).unwrap();
    c.validate().unwrap();
    let l = c.limits(None).unwrap();
    assert_eq!(l.hard_bytes, 100 * MIB);
    assert_eq!(l.soft_bytes, 80 * MIB, "spike defaults to 20% of the limit");
    assert_eq!(l.check_interval, Duration::from_secs(1));
    let c: MemoryLimiterConfig = serde_json::from_value(
        json!({"limit_percentage": 50, "spike_limit_percentage": 10, "check_interval": "100ms"}),
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(
        c.limits(Some(1000 * MIB)).unwrap(),
        Limits {
            soft_bytes: 400 * MIB,
            hard_bytes: 500 * MIB,
            check_interval: Duration::from_millis(100)
        }
    );
    let c: MemoryLimiterConfig = serde_json::from_value(json!({})).unwrap();
    c.validate().unwrap();
    assert_eq!(c.limits(Some(1000 * MIB)).unwrap().hard_bytes, 800 * MIB);
    for bad in [
        json!({"limit_mib": 100, "limit_percentage": 50}),
        json!({"limit_mib": 100, "spike_limit_mib": 100}),
        json!({"limit_percentage": 101}),
        json!({"limit_mib": 10, "check_interval": "0s"}),
    ] {
        let c: MemoryLimiterConfig = serde_json::from_value(bad.clone()).unwrap();
        assert!(c.validate().is_err(), "{bad}");
    }
    assert!(serde_json::from_value::<MemoryLimiterConfig>(json!({"limit": 1})).is_err());
    assert!(config::total_memory_bytes().is_some_and(|t| t > 0));
}

#[tokio::test]
async fn refuses_above_the_soft_limit_and_takes_data_again_below_it() {
    let resident = Arc::new(AtomicU64::new(50 * MIB));
    let next = CollectingConsumer::new();
    let l = limiter(resident.clone(), next.clone());
    l.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let probe = AckProbe::new();
    l.consume(probe.track(span_batch(3))).await.unwrap();
    assert_eq!(next.item_count(), 3);

    // Above the soft limit (80 MiB of 100): refused, retryable, with a delay; nothing passes.
    resident.store(90 * MIB, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        match l.consume(probe.track(span_batch(2))).await {
            Err(e) => break e,
            Ok(()) => {
                assert!(tokio::time::Instant::now() < deadline, "never refused");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        matches!(
            refused,
            ConsumeError::Retryable {
                retry_after: Some(_),
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(l.is_refusing());
    let passed = next.item_count();

    // Back below: data flows again.
    resident.store(60 * MIB, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while l.consume(probe.track(span_batch(4))).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "never reopened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(next.item_count(), passed + 4);
    l.shutdown(tokio::time::Instant::now()).await.unwrap();
    probe.assert_resolved();
    assert!(
        probe.count(AckOutcome::Dropped) >= 1,
        "refusals resolve as dropped"
    );
}
