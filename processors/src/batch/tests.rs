use std::time::Duration;

use pipeline_core::proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use pipeline_core::telemetry::Telemetry;
use pipeline_core::testing::{
    AckProbe, CollectingConsumer, check_processor, metric_sum, span_batch,
};
use pipeline_core::{
    AckOutcome, AckToken, Batch, ComponentId, ComponentKind, ConsumeError, Host, Payload,
};
use tokio::time::Instant;

use super::*;
use pipeline_core::DynProcessorFactory;
use serde_json::Value;

fn build(config: Value, next: Arc<CollectingConsumer>) -> Arc<dyn ConsumerComponent> {
    build_with(config, next)
}

fn build_with(config: Value, next: SharedConsumer) -> Arc<dyn ConsumerComponent> {
    build_counted(config, Signal::Traces, next).0
}

/// A processor whose self-metrics the test can read.
fn build_counted(
    config: Value,
    signal: Signal,
    next: SharedConsumer,
) -> (Arc<dyn ConsumerComponent>, Telemetry) {
    let telemetry = Telemetry::new();
    let mut ctx = CreateContext::for_tests(ComponentKind::Processor, "batch");
    ctx.telemetry = telemetry.component(
        ComponentKind::Processor,
        &ComponentId::parse("batch").unwrap(),
    );
    (
        Factory.create(ctx, &config, signal, next).unwrap(),
        telemetry,
    )
}

fn dropped(t: &Telemetry, reason: &str) -> f64 {
    metric_sum(
        &t.render(),
        "sightline_component_items_dropped_total",
        &[("reason", reason)],
    )
}

/// A batch of `n` spans carrying a token whose outcome lands in `outcomes`.
fn tracked_batch(n: usize, outcomes: &Arc<std::sync::Mutex<Vec<bool>>>) -> pipeline_core::Batch {
    let mut batch = span_batch(n);
    let outcomes = outcomes.clone();
    batch.ctx.acks.push(AckToken::new(move |ok| {
        outcomes.lock().unwrap().push(ok);
    }));
    batch
}

/// Refuses everything permanently.
struct Refusing;

#[async_trait::async_trait]
impl pipeline_core::Consumer for Refusing {
    async fn consume(&self, batch: pipeline_core::Batch) -> Result<(), ConsumeError> {
        batch.dropped();
        Err(ConsumeError::permanent("no"))
    }
}

/// Delivers the first `accept` batches (keeping them), then never finishes a `consume`.
struct AcceptThenStuck {
    accept: usize,
    kept: Arc<CollectingConsumer>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl pipeline_core::Consumer for AcceptThenStuck {
    async fn consume(&self, batch: pipeline_core::Batch) -> Result<(), ConsumeError> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if call < self.accept {
            return self.kept.consume(batch).await;
        }
        std::future::pending().await
    }
}

fn gauge(points: usize) -> Metric {
    Metric {
        name: "g".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: (0..points)
                .map(|i| NumberDataPoint {
                    time_unix_nano: 1 + i as u64,
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_front_of_empty_metrics_does_not_lose_the_points_behind_it() {
    let out = CollectingConsumer::new();
    let (p, t) = build_counted(
        serde_json::json!({"send_batch_size": 1000, "send_batch_max_size": 1000, "timeout": "1h"}),
        Signal::Metrics,
        out.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let metrics = (0..1000)
        .map(|_| gauge(0))
        .chain((0..1500).map(|_| gauge(1)))
        .collect();
    let probe = AckProbe::new();
    let batch = probe.track(Batch::new(Payload::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }])));
    p.consume(batch).await.unwrap();
    assert_eq!(out.wait_for_items(1500, Duration::from_secs(5)).await, 1500);
    let parts: Vec<usize> = out.batches().iter().map(Batch::item_count).collect();
    assert_eq!(parts, vec![1000, 500], "split by data points");
    let metrics: usize = out
        .batches()
        .iter()
        .map(|b| match &*b.payload_view() {
            Payload::Metrics(rm) => rm
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum::<usize>(),
            _ => 0,
        })
        .sum();
    assert_eq!(metrics, 2500, "the empty metrics travel too");
    p.shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert!(probe.wait_settled(Duration::from_secs(5)).await);
    assert_eq!(probe.outcome(0), Some(AckOutcome::Delivered));
    assert_eq!(
        metric_sum(&t.render(), "sightline_component_items_dropped_total", &[]),
        0.0
    );
}

#[tokio::test]
async fn shutdown_deadline_counts_every_part_of_a_split_batch_not_sent() {
    let kept = CollectingConsumer::new();
    let next = Arc::new(AcceptThenStuck {
        accept: 1,
        kept: kept.clone(),
        calls: Default::default(),
    });
    let (p, t) = build_counted(
        serde_json::json!({"send_batch_size": 5, "send_batch_max_size": 5, "timeout": "1h"}),
        Signal::Traces,
        next.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    p.consume(tracked_batch(20, &outcomes)).await.unwrap();
    // The first part is delivered, the second hangs in flight, two more wait.
    let deadline = Instant::now() + Duration::from_secs(5);
    while next.calls.load(std::sync::atomic::Ordering::Acquire) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    p.shutdown(Instant::now() + Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(kept.item_count(), 5);
    assert_eq!(
        dropped(&t, "shutdown_timeout"),
        15.0,
        "every item is delivered or counted"
    );
    drop(p);
    assert_eq!(*outcomes.lock().unwrap(), vec![false], "not all delivered");
}

/// Never finishes a `consume`; says when one began.
#[derive(Default)]
struct Stuck {
    entered: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl pipeline_core::Consumer for Stuck {
    async fn consume(&self, _batch: pipeline_core::Batch) -> Result<(), ConsumeError> {
        self.entered
            .store(true, std::sync::atomic::Ordering::Release);
        std::future::pending().await
    }
}

#[tokio::test]
async fn refused_batches_fail_their_tokens() {
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let p = build_with(
        serde_json::json!({"send_batch_size": 1, "timeout": "1h"}),
        Arc::new(Refusing),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    p.consume(tracked_batch(3, &outcomes)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while outcomes.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        *outcomes.lock().unwrap(),
        vec![false],
        "a refused batch is not delivered"
    );
    p.shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn delivered_batches_release_their_tokens_as_delivered() {
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = CollectingConsumer::new();
    let p = build(
        serde_json::json!({"send_batch_size": 1000, "timeout": "1h"}),
        out.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    p.consume(tracked_batch(3, &outcomes)).await.unwrap();
    p.shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.item_count(), 3);
    // The collector resolved its handle as delivered when it took the batch.
    assert_eq!(*outcomes.lock().unwrap(), vec![true]);
}

#[tokio::test]
async fn shutdown_deadline_fails_the_tokens_of_lost_data() {
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stuck = Arc::new(Stuck::default());
    let p = build_with(
        serde_json::json!({"send_batch_size": 1, "timeout": "1h"}),
        stuck.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    // The first batch is taken by the flusher and stays in flight; the second waits.
    p.consume(tracked_batch(2, &outcomes)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stuck.entered.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    p.consume(tracked_batch(3, &outcomes)).await.unwrap();
    p.shutdown(Instant::now() + Duration::from_millis(100))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while outcomes.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*outcomes.lock().unwrap(), vec![false, false]);
}

#[tokio::test]
async fn a_caller_that_gives_up_waiting_for_room_has_its_batch_refused_not_lost() {
    let stuck = Arc::new(Stuck::default());
    let p = build_with(
        serde_json::json!({"send_batch_size": 2, "timeout": "1h"}),
        stuck.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let probe = AckProbe::new();
    // Two in flight (stuck), two pending: the limit. The next caller waits for room.
    p.consume(probe.track(span_batch(2))).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stuck.entered.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    p.consume(probe.track(span_batch(4))).await.unwrap();
    let waited = tokio::time::timeout(
        Duration::from_millis(50),
        p.consume(probe.track(span_batch(1))),
    )
    .await;
    assert!(waited.is_err(), "the caller waited for room");
    // Its batch is resolved as not delivered (the sender was told nothing went through),
    // and no handle was dropped unresolved (a strict probe token would have panicked).
    assert_eq!(probe.outcome(2), Some(AckOutcome::Dropped));
    p.shutdown(Instant::now() + Duration::from_millis(50))
        .await
        .unwrap();
}

#[tokio::test]
async fn conformance() {
    check_processor(&Factory).await;
}

#[tokio::test]
async fn sends_when_size_is_reached() {
    let out = CollectingConsumer::new();
    let p = build(
        serde_json::json!({"send_batch_size": 10, "timeout": "1h"}),
        out.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    for _ in 0..4 {
        p.consume(span_batch(3)).await.unwrap();
    }
    assert_eq!(out.wait_for_items(12, Duration::from_secs(5)).await, 12);
    assert_eq!(
        out.batches().len(),
        1,
        "12 items in one batch once 10 were reached"
    );
    p.shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn sends_on_timeout() {
    let out = CollectingConsumer::new();
    let p = build(
        serde_json::json!({"send_batch_size": 1000, "timeout": "50ms"}),
        out.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    p.consume(span_batch(3)).await.unwrap();
    assert_eq!(out.wait_for_items(3, Duration::from_secs(5)).await, 3);
    p.shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn splits_to_max_size() {
    let out = CollectingConsumer::new();
    let p = build(
        serde_json::json!({"send_batch_size": 5, "send_batch_max_size": 5}),
        out.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    p.consume(span_batch(12)).await.unwrap();
    assert_eq!(out.wait_for_items(12, Duration::from_secs(5)).await, 12);
    let sizes: Vec<usize> = out.batches().iter().map(|b| b.item_count()).collect();
    assert_eq!(sizes, vec![5, 5, 2]);
    p.shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn shutdown_flushes_everything() {
    let out = CollectingConsumer::new();
    let p = build(
        serde_json::json!({"send_batch_size": 1000, "timeout": "1h"}),
        out.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    p.consume(span_batch(7)).await.unwrap();
    p.shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.item_count(), 7);
    assert!(
        p.consume(span_batch(1)).await.is_err(),
        "no data accepted after shutdown"
    );
}

#[test]
fn invalid_configs() {
    assert_eq!(
        Factory
            .validate(&serde_json::json!({"send_batch_size": 0}))
            .unwrap_err()
            .path,
        "send_batch_size"
    );
    assert_eq!(
        Factory
            .validate(&serde_json::json!({"send_batch_size": 10, "send_batch_max_size": 5}))
            .unwrap_err()
            .path,
        "send_batch_max_size"
    );
    assert_eq!(
        Factory
            .validate(&serde_json::json!({"timeout": "soon"}))
            .unwrap_err()
            .path,
        "timeout"
    );
}

/// Large items: the byte bound, not the item count, holds callers back, and half of it is a
/// full batch (sent at once, not after the timeout).
#[tokio::test]
async fn pending_data_is_bounded_in_bytes() {
    let stuck = Arc::new(Stuck::default());
    let p = build_with(
        serde_json::json!({"send_batch_size": 100000, "timeout": "1h", "pending_limit_mib": 1}),
        stuck.clone(),
    );
    p.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let probe = AckProbe::new();
    let big = |n| {
        let mut b = span_batch(n);
        if let Payload::Traces(rs) = b.payload_mut() {
            for s in rs
                .iter_mut()
                .flat_map(|r| &mut r.scope_spans)
                .flat_map(|s| &mut s.spans)
            {
                s.name = "x".repeat(64 * 1024);
            }
        }
        b
    };
    // 9 spans of 64 KiB: over half of 1 MiB, so the flusher takes them at once (stuck).
    p.consume(probe.track(big(9))).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stuck.entered.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        stuck.entered.load(std::sync::atomic::Ordering::Acquire),
        "half the byte bound sends without waiting for the timeout"
    );
    // Then 15 more (~960 KiB) fit under 1 MiB; the next caller waits for room.
    p.consume(probe.track(big(15))).await.unwrap();
    let waited =
        tokio::time::timeout(Duration::from_millis(50), p.consume(probe.track(big(2)))).await;
    assert!(
        waited.is_err(),
        "the caller waited: pending is at the byte bound"
    );
    assert_eq!(probe.outcome(2), Some(AckOutcome::Dropped));
    p.shutdown(Instant::now() + Duration::from_millis(50))
        .await
        .unwrap();
}
