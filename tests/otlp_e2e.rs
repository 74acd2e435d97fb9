//! End to end: real OTLP clients -> the `sightline` binary (otlp -> batch -> otlp) -> a
//! downstream OTLP server, over gRPC and HTTP (protobuf and JSON, plain and gzip). What
//! arrives downstream must equal what was sent, field for field.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_all_signals_arrive_unchanged() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;

    let traces = traces_request(1, 100);
    let metrics = metrics_request(1);
    let logs = logs_request(1, 20);
    let mut tc = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
    let resp = tc.export(traces.clone()).await.unwrap().into_inner();
    assert_eq!(resp.partial_success, None);
    MetricsServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .export(metrics.clone())
        .await
        .unwrap();
    LogsServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .export(logs.clone())
        .await
        .unwrap();

    assert!(
        down.wait_until(|r| r.resource_spans().len() == 1
            && r.resource_metrics().len() == 1
            && r.resource_logs().len() == 1)
            .await,
        "downstream did not receive all three signals; logs: {}",
        sl.logs()
    );
    assert_eq!(down.received.resource_spans(), traces.resource_spans);
    assert_eq!(down.received.resource_metrics(), metrics.resource_metrics);
    assert_eq!(down.received.resource_logs(), logs.resource_logs);
    let headers = down.received.headers.lock().unwrap().clone();
    assert_eq!(
        headers[0]
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip"),
        "the exporter compresses by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_client_is_accepted() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let traces = traces_request(2, 50);
    let mut tc = TraceServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    tc.export(traces.clone()).await.unwrap();
    assert!(down.wait_until(|r| r.span_count() == 50).await);
    assert_eq!(down.received.resource_spans(), traces.resource_spans);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_and_json_plain_and_gzip() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let mut sent_spans = Vec::new();
    let mut sent_metrics = Vec::new();
    let mut sent_logs = Vec::new();
    let mut seed = 10;
    for json in [false, true] {
        for gz in [false, true] {
            seed += 1;
            let t = traces_request(seed, 30);
            let m = metrics_request(seed);
            let l = logs_request(seed, 5);
            let bodies: [(&str, Vec<u8>); 3] = if json {
                [
                    ("/v1/traces", serde_json::to_vec(&t).unwrap()),
                    ("/v1/metrics", serde_json::to_vec(&m).unwrap()),
                    ("/v1/logs", serde_json::to_vec(&l).unwrap()),
                ]
            } else {
                [
                    ("/v1/traces", t.encode_to_vec()),
                    ("/v1/metrics", m.encode_to_vec()),
                    ("/v1/logs", l.encode_to_vec()),
                ]
            };
            let content_type = if json {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            for (path, body) in bodies {
                let (body, mut headers) = (body, vec![("content-type", content_type)]);
                let body = if gz {
                    headers.push(("content-encoding", "gzip"));
                    gzip(&body)
                } else {
                    body
                };
                let (status, resp_headers, resp) =
                    http_post(&sl.http_url(path), &headers, body).await;
                assert_eq!(
                    status,
                    200,
                    "{path} json={json} gzip={gz}: {}",
                    String::from_utf8_lossy(&resp)
                );
                assert_eq!(resp_headers.get("content-type").unwrap(), content_type);
            }
            sent_spans.extend(t.resource_spans);
            sent_metrics.extend(m.resource_metrics);
            sent_logs.extend(l.resource_logs);
        }
    }
    assert!(
        down.wait_until(|r| r.resource_spans().len() == 4
            && r.resource_metrics().len() == 4
            && r.resource_logs().len() == 4)
            .await,
        "logs: {}",
        sl.logs()
    );
    let mut got_spans = down.received.resource_spans();
    let key = |r: &opentelemetry_proto::tonic::trace::v1::ResourceSpans| {
        r.scope_spans[0].spans[0].span_id.clone()
    };
    got_spans.sort_by_key(key);
    sent_spans.sort_by_key(key);
    assert_eq!(got_spans, sent_spans);
    let mut got_metrics = down.received.resource_metrics();
    let mkey = |r: &opentelemetry_proto::tonic::metrics::v1::ResourceMetrics| {
        format!("{:?}", r.scope_metrics[0].metrics[0].data)
    };
    got_metrics.sort_by_key(mkey);
    sent_metrics.sort_by_key(mkey);
    assert_eq!(got_metrics, sent_metrics);
    let mut got_logs = down.received.resource_logs();
    let lkey = |r: &opentelemetry_proto::tonic::logs::v1::ResourceLogs| {
        format!("{:?}", r.scope_logs[0].log_records[0].attributes[0])
    };
    got_logs.sort_by_key(lkey);
    sent_logs.sort_by_key(lkey);
    assert_eq!(got_logs, sent_logs);
}

/// OTLP/JSON as the spec writes it: hex IDs, lowerCamelCase keys, enums as integers,
/// 64-bit integers as strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_follows_the_otlp_json_encoding() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
      "scopeSpans":[{"scope":{"name":"manual"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "parentSpanId":"eee19b7ec3c1b173","name":"I'm a server span","kind":2,"startTimeUnixNano":"1544712660000000000",
      "endTimeUnixNano":"1544712661000000000","attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}],
      "status":{"code":1}}]}]}]}"#;
    let (status, _, resp) = http_post(
        &sl.http_url("/v1/traces"),
        &[("content-type", "application/json")],
        body.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    assert_eq!(
        &resp[..],
        b"{}",
        "a full success is an empty ExportTraceServiceResponse"
    );
    assert!(down.wait_until(|r| r.span_count() == 1).await);
    let rs = down.received.resource_spans();
    let span = &rs[0].scope_spans[0].spans[0];
    assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.status.as_ref().unwrap().code, 1);
    assert_eq!(
        span.attributes[0].value.as_ref().unwrap().value,
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(200))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spans_get_partial_success() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let mut t = traces_request(3, 10);
    t.resource_spans[0].scope_spans[0].spans[4].trace_id = vec![0; 16];
    t.resource_spans[0].scope_spans[0].spans[7].span_id = vec![1, 2, 3];
    let mut tc = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
    let resp = tc.export(t.clone()).await.unwrap().into_inner();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 2);
    assert!(ps.error_message.contains("trace_id"));
    // Over HTTP too, in the response body.
    let (status, _, body) = http_post(
        &sl.http_url("/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        t.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let resp = ExportTraceServiceResponse::decode(body).unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 2);
    assert!(
        down.wait_until(|r| r.span_count() == 16).await,
        "8 valid spans per request arrive"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
