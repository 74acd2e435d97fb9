//! The example distribution end to end: the `sightline-attributes` binary (built by cargo
//! for this test) runs `otlp -> attributes -> batch -> otlp`; a real OTLP/gRPC client sends
//! traces and logs, and what reaches the downstream OTLP server has its attributes edited.

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::*;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_distribution_runs_its_processor_between_real_otlp_ends() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let config = pipeline_config(ports, &down.url(), "attributes, ", "").replace(
        "processors:\n",
        r#"processors:
  attributes:
    actions:
      - { key: deployment.environment, value: "${env:DEPLOY_ENV}", action: insert }
      - { key: client.address, action: hash }
      - { key: service.tier, value: 2, action: upsert }
      - { pattern: "^url\\.", action: delete }
"#,
    );
    let sl = Sightline::start_with_env(&config, ports, &[("DEPLOY_ENV", "prod")]).await;

    let traces = traces_request(7, 20);
    let spans = pipeline_core::model::span_count(&traces.resource_spans);
    let logs = logs_request(7, 10);
    export_traces(&sl.grpc_url(), traces.clone()).await;
    export_logs(&sl.grpc_url(), logs.clone()).await;
    assert!(
        down.wait_until(|r| r.span_count() == spans && !r.resource_logs().is_empty())
            .await,
        "downstream did not receive everything; logs: {}",
        sl.logs()
    );
    let sent = traces
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans);
    let got = down.received.resource_spans();
    let got = got
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans);
    let mut hashed = 0;
    for (before, after) in sent.zip(got) {
        assert_eq!(before.span_id, after.span_id, "spans arrive in order");
        assert_eq!(
            value(&after.attributes, "deployment.environment"),
            Some(&Value::StringValue("prod".into())),
            "the ${{env:...}} value is inserted"
        );
        assert_eq!(
            value(&after.attributes, "service.tier"),
            Some(&Value::IntValue(2))
        );
        assert!(
            after
                .attributes
                .iter()
                .all(|kv| !kv.key.starts_with("url."))
        );
        if let Some(Value::StringValue(method)) = value(&before.attributes, "client.address") {
            let Some(Value::StringValue(h)) = value(&after.attributes, "client.address") else {
                panic!("client.address is gone: {after:?}");
            };
            assert_ne!(h, method);
            assert_eq!(h.len(), 64, "a hex SHA-256: {h}");
            hashed += 1;
        }
    }
    assert!(
        hashed > 0,
        "the test data has client.address attributes to hash"
    );
    let records = down.received.resource_logs();
    for record in records
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
    {
        assert_eq!(
            value(&record.attributes, "deployment.environment"),
            Some(&Value::StringValue("prod".into()))
        );
    }

    let mut sl = sl;
    assert!(sl.terminate().await.success(), "{}", sl.logs());
}

#[test]
fn the_plugin_distribution_lists_its_processor_with_the_built_ins() {
    let out = std::process::Command::new(bin())
        .arg("components")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.lines()
            .any(|l| l.starts_with("processor") && l.contains("attributes")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("processor") && l.contains("batch")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("exporter") && l.contains("otlp")),
        "{text}"
    );
}
