use pipeline_core::testing::{CollectingConsumer, check_connector, span_batch};
use pipeline_core::{ComponentKind, PerSignal};

use super::*;
use pipeline_core::DynConnectorFactory;

#[tokio::test]
async fn conformance() {
    check_connector(&Factory).await;
}

#[tokio::test]
async fn forwards_unchanged() {
    let out = CollectingConsumer::new();
    let next = PerSignal::from_fn(|s| {
        (s == Signal::Traces).then(|| out.clone() as pipeline_core::consumer::SharedConsumer)
    });
    let c = Factory
        .create(
            CreateContext::for_tests(ComponentKind::Connector, "forward"),
            &serde_json::json!({}),
            next,
        )
        .unwrap();
    let batch = span_batch(4);
    c.consume(batch.clone()).await.unwrap();
    assert_eq!(out.batches(), vec![batch]);
    assert!(
        c.consume(pipeline_core::testing::log_batch(1))
            .await
            .is_err()
    );
}

#[test]
fn rejects_keys() {
    assert!(Factory.validate(&serde_json::json!({"x": 1})).is_err());
}
