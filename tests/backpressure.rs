//! A full pipeline answers "retry later", never 500 and never silent loss: HTTP 503 with
//! Retry-After, gRPC UNAVAILABLE with a RetryInfo detail; refusals are counted.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_and_unavailable() {
    let ports = Ports::new();
    // The backend is down, so the exporter's small queue fills and stays full.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = pipeline_config(
        ports,
        &dead,
        "",
        "sending_queue: { queue_size: 20, num_consumers: 1, block_on_overflow: false }",
    )
    .replace("processors: [batch]", "processors: []");
    let sl = Sightline::start(&config, ports).await;

    let body = traces_request(1, 10).encode_to_vec();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..20 {
        let (status, headers, _) = http_post(
            &sl.http_url("/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            body.clone(),
        )
        .await;
        statuses.push(status);
        if status == 503 {
            retry_after = headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "statuses: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "never 500: {statuses:?}"
    );
    let secs: u64 = retry_after.expect("Retry-After header").parse().unwrap();
    assert!(secs >= 1);

    let mut client = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
    let status = client.export(traces_request(2, 10)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        pipeline_core::rpc::retry_delay(status.details()).is_some(),
        "RetryInfo detail expected"
    );

    let metrics = sl.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with(r#"sightline_component_items_refused_total{component_id="otlp",component_kind="exporter",signal="traces"}"#) && !l.ends_with(" 0")),
        "{metrics}"
    );
}
