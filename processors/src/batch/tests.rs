use std::time::Duration;

use pipeline_core::testing::{CollectingConsumer, check_processor, span_batch};
use pipeline_core::{AckToken, ComponentKind, ConsumeError, Host};
use tokio::time::Instant;

use super::*;

fn build(config: Value, next: Arc<CollectingConsumer>) -> Arc<dyn ConsumerComponent> {
    build_with(config, next)
}

fn build_with(config: Value, next: SharedConsumer) -> Arc<dyn ConsumerComponent> {
    let ctx = CreateContext::for_tests(ComponentKind::Processor, "batch");
    Factory.create(ctx, &config, Signal::Traces, next).unwrap()
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
    async fn consume(&self, _batch: pipeline_core::Batch) -> Result<(), ConsumeError> {
        Err(ConsumeError::permanent("no"))
    }
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
    assert!(
        outcomes.lock().unwrap().is_empty(),
        "the collector still holds it"
    );
    drop(p);
    drop(out);
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
