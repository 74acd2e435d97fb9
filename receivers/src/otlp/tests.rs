use super::*;
use pipeline_core::testing::check_receiver;
use pipeline_core::{ComponentConfig as _, DynReceiverFactory};

#[tokio::test]
async fn conformance() {
    let run = serde_json::json!({"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}});
    check_receiver(&Factory, &run).await;
}

#[test]
fn config_errors_name_the_field() {
    let e = Factory
        .validate(&serde_json::json!({"protocols": {"grpc": {"endpont": "x"}}}))
        .unwrap_err();
    assert_eq!(e.path, "protocols.grpc.endpont");
    assert!(e.message.contains("did you mean \"endpoint\""));
    let e = Factory
        .validate(&serde_json::json!({"protocols": {}}))
        .unwrap_err();
    assert_eq!(e.path, "protocols");
    let e = Factory
        .validate(&serde_json::json!({"protocols": {"http": {"endpoint": "nope"}}}))
        .unwrap_err();
    assert_eq!(e.path, "protocols.http.endpoint");
}

#[test]
fn null_protocol_means_enabled_with_defaults() {
    let c = OtlpReceiverConfig::parse(&serde_json::json!({"protocols": {"grpc": null}})).unwrap();
    assert_eq!(c.protocols.grpc.unwrap().endpoint, "127.0.0.1:4317");
    assert!(c.protocols.http.is_none());
}
