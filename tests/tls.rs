//! The `otlp` receiver over TLS (rustls): a self-signed certificate made in the test, a gRPC
//! client and an HTTPS client that trust it; a plaintext client is refused.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_over_tls() {
    let dir = temp_dir("tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "tls: {{ cert_file: '{0}/cert.pem', key_file: '{0}/key.pem' }}",
        dir.display()
    );

    let down = Downstream::start().await;
    let ports = Ports::new();
    let config = pipeline_config(ports, &down.url(), "", "")
        .replace(
            &format!("grpc: {{ endpoint: \"127.0.0.1:{}\" }}", ports.grpc),
            &format!("grpc: {{ endpoint: \"127.0.0.1:{}\", {tls} }}", ports.grpc),
        )
        .replace(
            &format!("http: {{ endpoint: \"127.0.0.1:{}\",", ports.http),
            &format!("http: {{ endpoint: \"127.0.0.1:{}\", {tls},", ports.http),
        );
    assert!(config.contains("cert_file"), "{config}");
    let sl = Sightline::start(&config, ports).await;

    // gRPC with TLS.
    let tls_config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", ports.grpc))
        .unwrap()
        .tls_config(tls_config)
        .unwrap()
        .connect()
        .await
        .unwrap();
    TraceServiceClient::new(channel)
        .export(traces_request(1, 10))
        .await
        .unwrap();

    // HTTPS.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config)
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);
    let req = hyper::Request::post(format!("https://localhost:{}/v1/traces", ports.http))
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(traces_request(2, 5).encode_to_vec())))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let _ = res.into_body().collect().await;

    assert!(
        down.wait_until(|r| r.span_count() == 15).await,
        "{}",
        sl.logs()
    );

    // A plaintext client gets no service.
    let plain = TraceServiceClient::connect(format!("http://127.0.0.1:{}", ports.grpc)).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c.export(traces_request(3, 1)).await.is_err(),
    };
    assert!(refused, "plaintext must not be served on a TLS port");
}
