use std::time::Duration;

use pipeline_core::testing::{CollectingConsumer, check_processor, span_batch};
use pipeline_core::{ComponentKind, Host};
use tokio::time::Instant;

use super::*;

fn build(config: Value, next: Arc<CollectingConsumer>) -> Arc<dyn ConsumerComponent> {
    let ctx = CreateContext::for_tests(ComponentKind::Processor, "batch");
    Factory.create(ctx, &config, Signal::Traces, next).unwrap()
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
