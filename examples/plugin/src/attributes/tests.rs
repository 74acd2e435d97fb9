use std::time::Duration;

use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::common::v1::any_value::Value;
use pipeline_core::testing::{AckProbe, CollectingConsumer, attribute, check_processor, log_batch};
use pipeline_core::{
    ComponentConfig, ComponentKind, CreateContext, DynProcessorFactory, Payload, Signal,
};
use serde_json::json;

use super::*;

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn processor(actions: serde_json::Value) -> AttributesProcessor {
    let config = AttributesConfig::parse(&json!({ "actions": actions }))
        .unwrap_or_else(|e| panic!("{actions}: {e}"));
    AttributesProcessor::new(&config, CollectingConsumer::new()).unwrap()
}

fn apply(actions: serde_json::Value, mut attributes: Vec<KeyValue>) -> Vec<(String, Value)> {
    processor(actions).apply(&mut attributes);
    attributes
        .into_iter()
        .map(|kv| (kv.key, kv.value.and_then(|v| v.value).unwrap()))
        .collect()
}

fn pairs(list: &[(&str, Value)]) -> Vec<(String, Value)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test]
async fn conformance() {
    check_processor(&Factory).await;
}

#[test]
fn insert_adds_only_where_missing_and_update_changes_only_where_present() {
    let actions = json!([
        { "key": "env", "value": "prod", "action": "insert" },
        { "key": "region", "value": "eu", "action": "insert" },
        { "key": "tier", "value": 3, "action": "update" },
        { "key": "absent", "value": true, "action": "update" },
    ]);
    let got = apply(
        actions,
        vec![attribute("region", s("us")), attribute("tier", s("gold"))],
    );
    assert_eq!(
        got,
        pairs(&[
            ("region", s("us")),
            ("tier", Value::IntValue(3)),
            ("env", s("prod")),
        ])
    );
}

#[test]
fn upsert_sets_either_way_and_from_attribute_copies() {
    let actions = json!([
        { "key": "a", "value": 1.5, "action": "upsert" },
        { "key": "b", "value": false, "action": "upsert" },
        { "key": "copy", "from_attribute": "src", "action": "upsert" },
        { "key": "nothing", "from_attribute": "missing", "action": "insert" },
    ]);
    let got = apply(
        actions,
        vec![attribute("a", s("old")), attribute("src", s("value"))],
    );
    assert_eq!(
        got,
        pairs(&[
            ("a", Value::DoubleValue(1.5)),
            ("src", s("value")),
            ("b", Value::BoolValue(false)),
            ("copy", s("value")),
        ])
    );
}

#[test]
fn delete_by_key_and_pattern_and_hash_like_otelcol() {
    let actions = json!([
        { "key": "http.request.header.cookie", "action": "delete" },
        { "pattern": "^secret\\.", "action": "delete" },
        { "key": "user.id", "action": "hash" },
        { "key": "count", "action": "hash" },
    ]);
    let got = apply(
        actions,
        vec![
            attribute("http.request.header.cookie", s("session=1")),
            attribute("secret.a", s("x")),
            attribute("secret.b", s("y")),
            attribute("user.id", s("alice")),
            attribute("count", Value::IntValue(1)),
            attribute("kept", s("z")),
        ],
    );
    assert_eq!(
        got,
        pairs(&[
            // sha256("alice")
            (
                "user.id",
                s("2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90")
            ),
            // sha256 of the 8 big-endian bytes of 1
            (
                "count",
                s("cd2662154e6d76b2b2b92e70c0cac3ccf534f9b74eb5b89819ec509083d00a50")
            ),
            ("kept", s("z")),
        ])
    );
}

#[test]
fn config_errors_name_the_action() {
    let err = |actions: serde_json::Value| {
        AttributesConfig::parse(&json!({ "actions": actions }))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(json!([])), "actions: at least one action is required");
    assert_eq!(
        err(json!([{ "key": "a", "action": "insert" }])),
        "actions.0: exactly one of \"value\" or \"from_attribute\" is required for the insert action"
    );
    assert_eq!(
        err(json!([{ "key": "a", "value": 1, "action": "delete" }])),
        "actions.0: \"value\" and \"from_attribute\" are not used by the delete action"
    );
    assert!(
        err(json!([{ "pattern": "(", "action": "hash" }]))
            .starts_with("actions.0.pattern: invalid regex"),
    );
    assert!(
        err(json!([{ "key": "a", "value": 1, "action": "insrt" }]))
            .contains("did you mean \"insert\""),
    );
    assert!(
        err(json!([{ "key": "a", "valeu": 1, "action": "insert" }]))
            .contains("did you mean \"value\"")
    );
}

#[tokio::test]
async fn edits_every_record_of_a_batch_and_passes_it_on() {
    let dest = CollectingConsumer::new();
    let p = Factory
        .create(
            CreateContext::for_tests(ComponentKind::Processor, "attributes"),
            &AttributesConfig::default_config(),
            Signal::Logs,
            dest.clone(),
        )
        .unwrap();
    let probe = AckProbe::new();
    p.consume(probe.track(log_batch(4))).await.unwrap();
    assert_eq!(dest.wait_for_items(4, Duration::from_secs(5)).await, 4);
    let mut batches = dest.batches();
    let Payload::Logs(rl) = batches[0].payload() else {
        panic!("not logs")
    };
    for record in &rl[0].scope_logs[0].log_records {
        assert!(
            record
                .attributes
                .iter()
                .any(|kv| kv.key == "deployment.environment"),
            "{record:?}"
        );
    }
    for b in batches.drain(..) {
        b.delivered();
    }
}
