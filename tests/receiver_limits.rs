//! Connection limits of the `otlp` receiver's servers: `max_connections` (one more is closed
//! at once), `read_header_timeout` (a client that never finishes its headers, or never sends
//! the HTTP/2 preface, is cut off), `tls_handshake_timeout`; each refusal counted, and
//! well-behaved clients served throughout.

mod common;

use std::time::{Duration, Instant};

use common::pki::TestCa;
use common::*;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; false if it stays open past `within`.
/// These tests measure timeouts of a few hundred milliseconds on a two-core machine; they
/// take turns so that one test's load does not stretch another's timings.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Whether the server keeps `stream` open for `for_at_least`.
async fn stays_open(stream: &mut TcpStream, for_at_least: Duration) -> bool {
    !closed_by_server(stream, for_at_least).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_over_max_connections_is_closed_at_once() {
    let _one_at_a_time = SERIAL.lock().await;
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(
        &receiver_config(
            ports,
            &down.url(),
            "max_connections: 2",
            "max_connections: 2",
            "",
        ),
        ports,
    )
    .await;
    for (port, protocol) in [(ports.http, "http"), (ports.grpc, "grpc")] {
        let mut first = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut second = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert!(
            closed_by_server(&mut third, DEADLINE).await,
            "{protocol}: a third connection was kept"
        );
        assert!(wait_rejected(&sl, protocol, "too_many_connections", 1.0).await);
        assert!(stays_open(&mut first, Duration::from_millis(200)).await);
        assert!(stays_open(&mut second, Duration::from_millis(200)).await);
        // A slot freed is a slot for the next client.
        drop(first);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let sent = if protocol == "http" {
                let body = traces_request(1, 1).encode_to_vec();
                let proto = [("content-type", "application/x-protobuf")];
                http_post_timeout(&sl.http_url("/v1/traces"), &proto, body).await == Some(200)
            } else {
                grpc_ok(&sl.grpc_url()).await
            };
            if sent {
                break;
            }
            assert!(Instant::now() < deadline, "{protocol}: no slot came free");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(second);
    }
    assert!(down.wait_until(|r| r.span_count() >= 2).await);
}

async fn http_post_timeout(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Option<u16> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = hyper::Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(2), client.request(req))
        .await
        .ok()?
        .ok()?;
    Some(res.status().as_u16())
}

async fn grpc_ok(url: &str) -> bool {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let Ok(Ok(mut client)) = tokio::time::timeout(
        Duration::from_secs(2),
        TraceServiceClient::connect(url.to_string()),
    )
    .await
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.export(traces_request(2, 1))).await,
        Ok(Ok(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_silent_clients_are_cut_off_after_read_header_timeout() {
    let _one_at_a_time = SERIAL.lock().await;
    let down = Downstream::start().await;
    let ports = Ports::new();
    let limit = "read_header_timeout: 300ms";
    let sl = Sightline::start(
        &receiver_config(ports, &down.url(), limit, limit, ""),
        ports,
    )
    .await;

    // HTTP/1.1: half a request head, then nothing (slowloris).
    let mut slow = TcpStream::connect(("127.0.0.1", ports.http)).await.unwrap();
    slow.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_by_server(&mut slow, DEADLINE).await, "{}", sl.logs());
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(wait_rejected(&sl, "http", "header_timeout", 1.0).await);

    // gRPC: a connection that never sends the HTTP/2 preface; and one that sends half.
    let mut silent = TcpStream::connect(("127.0.0.1", ports.grpc)).await.unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", ports.grpc)).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(closed_by_server(&mut silent, DEADLINE).await);
    assert!(closed_by_server(&mut half, DEADLINE).await);
    assert!(wait_rejected(&sl, "grpc", "header_timeout", 2.0).await);

    // A gRPC client that connected, sent its preface and then idles past the timeout keeps
    // its connection (gRPC channels are long-lived).
    let channel = tonic::transport::Channel::from_shared(sl.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut client =
        opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(channel);
    client.export(traces_request(3, 1)).await.unwrap();

    // Prompt clients are served as usual.
    let body = traces_request(4, 2).encode_to_vec();
    let (status, _, _) = http_post(
        &sl.http_url("/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        body,
    )
    .await;
    assert_eq!(status, 200);
    assert!(down.wait_until(|r| r.span_count() == 3).await);
    assert_eq!(rejected(&sl, "grpc", "header_timeout").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_cut_off() {
    let _one_at_a_time = SERIAL.lock().await;
    let dir = temp_dir("tls-handshake-timeout");
    let ca = TestCa::new("CA");
    let (cert, key) = ca.issue("sightline").write(&dir, "server");
    let tls = format!(
        "tls: {{ cert_file: '{}', key_file: '{}' }}, tls_handshake_timeout: 300ms",
        cert.display(),
        key.display()
    );
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&receiver_config(ports, &down.url(), &tls, &tls, ""), ports).await;
    for (port, protocol) in [(ports.grpc, "grpc"), (ports.http, "http")] {
        let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // The first bytes of a ClientHello record, then nothing.
        stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
        assert!(closed_by_server(&mut stalled, DEADLINE).await);
        assert!(wait_rejected(&sl, protocol, "tls_handshake_timeout", 1.0).await);
    }
    // Plaintext on the TLS port fails the handshake at once.
    let mut plain = TcpStream::connect(("127.0.0.1", ports.http)).await.unwrap();
    plain
        .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut plain, DEADLINE).await);
    assert!(wait_rejected(&sl, "http", "tls_handshake_failed", 1.0).await);
}
