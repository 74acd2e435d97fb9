//! Bad input keeps the process up and gets the right status: random bytes, truncated
//! protobuf, invalid JSON, wrong content type and method, a body over the limit, a gzip bomb
//! (over HTTP and gRPC), each counted by reason.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;

async fn still_alive(sl: &mut Sightline) {
    assert!(sl.is_running(), "sightline died: {}", sl.logs());
    let (status, _) = http_get(&format!("http://127.0.0.1:{}/health/live", sl.ports.health))
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bad_bodies_get_clear_errors() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let mut sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let url = sl.http_url("/v1/traces");
    let proto = [("content-type", "application/x-protobuf")];
    let json = [("content-type", "application/json")];

    // Random bytes (a fixed pseudo-random sequence, so failures reproduce).
    let mut x: u32 = 12345;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let (status, _, body) = http_post(&url, &proto, random).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let st = sightline_status(&body);
    assert!(st.message.contains("malformed"), "{}", st.message);

    // Truncated protobuf.
    let full = traces_request(1, 20).encode_to_vec();
    let (status, _, _) = http_post(&url, &proto, full[..full.len() / 2].to_vec()).await;
    assert_eq!(status, 400);

    // Invalid JSON and invalid UTF-8 in JSON.
    let (status, _, body) = http_post(&url, &json, b"{\"resourceSpans\": [".to_vec()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("malformed OTLP/JSON"));
    let (status, _, _) = http_post(
        &url,
        &json,
        b"{\"resourceSpans\": [{\"schemaUrl\": \"\xff\xfe\"}]}".to_vec(),
    )
    .await;
    assert_eq!(status, 400);

    // Wrong content type, wrong encoding, wrong method, unknown path.
    let (status, _, _) =
        http_post(&url, &[("content-type", "text/plain")], b"hello".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _, _) = http_post(
        &url,
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "br"),
        ],
        full.clone(),
    )
    .await;
    assert_eq!(status, 415);
    let (status, _, _) = http_request("GET", &url, &[], vec![]).await;
    assert_eq!(status, 405);
    let (status, _, _) = http_post(&sl.http_url("/v1/nothing"), &proto, full.clone()).await;
    assert_eq!(status, 404);

    // Over the 1 MiB limit of the test config, as sent and after decompression (a gzip bomb).
    let (status, _, _) = http_post(&url, &proto, vec![0u8; 2 << 20]).await;
    assert_eq!(status, 413);
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, _, _) = http_post(
        &url,
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        bomb,
    )
    .await;
    assert_eq!(status, 413);
    // Garbage claiming to be gzip.
    let (status, _, _) = http_post(
        &url,
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        b"nope".to_vec(),
    )
    .await;
    assert_eq!(status, 400);

    still_alive(&mut sl).await;
    // Good data still flows afterwards, and nothing bad reached the downstream.
    let (status, _, _) = http_post(&url, &proto, full).await;
    assert_eq!(status, 200);
    assert!(down.wait_until(|r| r.span_count() == 20).await);
    let metrics = sl.metrics().await;
    assert!(metrics.contains(r#"sightline_receiver_requests_rejected_total{component_id="otlp",protocol="http",reason="malformed"}"#), "{metrics}");
    assert!(metrics.contains(r#"reason="too_large""#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bad_messages_get_invalid_argument() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let mut sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;

    // A raw gRPC frame of garbage, sent over HTTP/2 with a plain client.
    let channel = tonic::transport::Channel::from_shared(sl.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    let garbage = bytes::Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
    let result: Result<tonic::Response<bytes::Bytes>, tonic::Status> = grpc
        .unary(tonic::Request::new(garbage), path, RawCodec)
        .await;
    let status = result.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // Over the 4 MiB default gRPC limit: a clean error, not a crash.
    let mut big = traces_request(5, 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(5 << 20);
    let mut tc = TraceServiceClient::connect(sl.grpc_url()).await.unwrap();
    let err = tc.export(big.clone()).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    // The same message gzip-compressed is small on the wire but over the limit decompressed.
    let mut tcz = TraceServiceClient::connect(sl.grpc_url())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let err = tcz.export(big).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert!(
        err.message().contains("size limit") || err.message().contains("too large"),
        "{err:?}"
    );

    still_alive(&mut sl).await;
    tc.export(traces_request(6, 5)).await.unwrap();
    assert!(down.wait_until(|r| r.span_count() == 5).await);
    let metrics = sl.metrics().await;
    assert!(
        metrics.contains(r#"protocol="grpc",reason="malformed""#),
        "{metrics}"
    );
    // The oversized message and the gzip bomb, both refused by the framing, are counted too.
    assert_eq!(rejected(&sl, "grpc", "too_large").await, 2.0, "{metrics}");
}

fn sightline_status(body: &[u8]) -> Status {
    Status::decode(body).expect("google.rpc.Status body")
}

#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Sends and receives raw bytes as gRPC messages.
#[derive(Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
