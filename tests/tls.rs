//! The `otlp` receiver over TLS (rustls), with certificates made in the test: TLS, mutual TLS
//! (`client_ca_file`), `min_version`, certificates replaced on disk while connections are
//! open, and exporters presenting client certificates to a Sightline that requires them.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::pki::{self, TestCa};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use rustls::pki_types::pem::PemObject;
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

/// gRPC export of one small request on `channel`.
async fn grpc_export(channel: Channel, seed: u64) -> Result<(), String> {
    TraceServiceClient::new(channel)
        .export(traces_request(seed, 1))
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

/// A gRPC export on a new TLS connection made with `config`; Err when the handshake or the
/// call fails.
async fn grpc_export_with(port: u16, config: rustls::ClientConfig) -> Result<(), String> {
    let channel = pki::grpc_channel(port, config).await?;
    grpc_export(channel, 9).await
}

const H2: &[&[u8]] = &[b"h2"];
const H1: &[&[u8]] = &[b"http/1.1"];

fn tls_keys(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "tls: {{ cert_file: '{0}/server.crt', key_file: '{0}/server.key'{extra} }}",
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_only_clients_with_a_certificate_from_client_ca() {
    let dir = temp_dir("mtls");
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let other_ca = TestCa::new("some other CA");
    server_ca.issue("sightline").write(&dir, "server");
    let ca_file = client_ca.write(&dir, "clients.pem");
    let tls = tls_keys(&dir, &format!(", client_ca_file: '{}'", ca_file.display()));
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&receiver_config(ports, &down.url(), &tls, &tls, ""), ports).await;
    let good = client_ca.issue("good client");
    let stranger = other_ca.issue("stranger");
    let v = rustls::ALL_VERSIONS;
    let trust = server_ca.pem();

    // gRPC: the right certificate is served; none, or one from another CA, is refused.
    grpc_export_with(ports.grpc, pki::client_config(&trust, Some(&good), v, H2))
        .await
        .unwrap();
    let none = grpc_export_with(ports.grpc, pki::client_config(&trust, None, v, H2)).await;
    assert!(none.is_err(), "a client without a certificate was served");
    let wrong = grpc_export_with(
        ports.grpc,
        pki::client_config(&trust, Some(&stranger), v, H2),
    )
    .await;
    assert!(wrong.is_err(), "a certificate from another CA was accepted");

    // HTTP, the same.
    let ok =
        pki::https_post_traces(ports.http, pki::client_config(&trust, Some(&good), v, H1)).await;
    assert_eq!(ok, Ok(200));
    let none = pki::https_post_traces(ports.http, pki::client_config(&trust, None, v, H1)).await;
    assert!(none.is_err(), "{none:?}");
    let wrong = pki::https_post_traces(
        ports.http,
        pki::client_config(&trust, Some(&stranger), v, H1),
    )
    .await;
    assert!(wrong.is_err(), "{wrong:?}");

    // Only what the good clients sent arrived (1 span by gRPC, 2 by HTTP); the refusals
    // are counted.
    assert!(
        down.wait_until(|r| r.span_count() == 3).await,
        "{}",
        sl.logs()
    );
    assert!(wait_rejected(&sl, "grpc", "tls_handshake_failed", 2.0).await);
    assert!(wait_rejected(&sl, "http", "tls_handshake_failed", 2.0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_1_3_refuses_tls_1_2_clients() {
    let dir = temp_dir("tls13");
    let ca = TestCa::new("CA");
    ca.issue("sightline").write(&dir, "server");
    let tls = tls_keys(&dir, ", min_version: \"1.3\"");
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&receiver_config(ports, &down.url(), &tls, &tls, ""), ports).await;
    let tls12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let old = pki::tls_connect(ports.http, pki::client_config(&ca.pem(), None, tls12, H1)).await;
    assert!(old.is_err(), "a TLS 1.2 handshake succeeded");
    let old = grpc_export_with(ports.grpc, pki::client_config(&ca.pem(), None, tls12, H2)).await;
    assert!(old.is_err(), "a TLS 1.2 gRPC client was served");
    let new = pki::tls_connect(ports.http, pki::client_config(&ca.pem(), None, tls13, H1))
        .await
        .unwrap();
    assert_eq!(
        new.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    grpc_export_with(ports.grpc, pki::client_config(&ca.pem(), None, tls13, H2))
        .await
        .unwrap();
    assert!(wait_rejected(&sl, "http", "tls_handshake_failed", 1.0).await);
    assert!(wait_rejected(&sl, "grpc", "tls_handshake_failed", 1.0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_without_dropping_open_connections() {
    let dir = temp_dir("tls-reload");
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let old_clients = TestCa::new("old client CA");
    let new_clients = TestCa::new("new client CA");
    old_ca.issue("sightline").write(&dir, "server");
    let clients_file = old_clients.write(&dir, "clients.pem");
    let tls = tls_keys(
        &dir,
        &format!(", client_ca_file: '{}'", clients_file.display()),
    );
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&receiver_config(ports, &down.url(), &tls, &tls, ""), ports).await;
    let v = rustls::ALL_VERSIONS;
    let old_client = old_clients.issue("old client");
    let new_client = new_clients.issue("new client");

    // Connections opened with the old certificates.
    let grpc_open = pki::grpc_channel(
        ports.grpc,
        pki::client_config(&old_ca.pem(), Some(&old_client), v, H2),
    )
    .await
    .unwrap();
    grpc_export(grpc_open.clone(), 1).await.unwrap();
    let mut http_open = pki::HttpsConnection::open(
        ports.http,
        pki::client_config(&old_ca.pem(), Some(&old_client), v, H1),
    )
    .await
    .unwrap();
    let proto = [("content-type", "application/x-protobuf")];
    let body = || prost::Message::encode_to_vec(&traces_request(2, 1));
    assert_eq!(http_open.post("/v1/traces", &proto, body()).await, Ok(200));

    // The files are replaced: a new server certificate from another CA, and another client CA.
    new_ca.issue("sightline").replace(&dir, "server");
    std::fs::write(dir.join(".clients.new"), new_clients.pem()).unwrap();
    std::fs::rename(dir.join(".clients.new"), &clients_file).unwrap();

    // New handshakes see the new certificate and the new client CA...
    for port in [ports.grpc, ports.http] {
        let alpn = if port == ports.grpc { H2 } else { H1 };
        let config = pki::client_config(&new_ca.pem(), Some(&new_client), v, alpn);
        let stream = pki::tls_connect(port, config).await.unwrap();
        let shown = &stream.get_ref().1.peer_certificates().unwrap()[0];
        let expected = rustls::pki_types::CertificateDer::from_pem_slice(
            std::fs::read(dir.join("server.crt")).unwrap().as_slice(),
        )
        .unwrap();
        assert_eq!(
            shown, &expected,
            "port {port} still shows the old certificate"
        );
    }
    grpc_export_with(
        ports.grpc,
        pki::client_config(&new_ca.pem(), Some(&new_client), v, H2),
    )
    .await
    .unwrap();
    assert_eq!(
        pki::https_post_traces(
            ports.http,
            pki::client_config(&new_ca.pem(), Some(&new_client), v, H1)
        )
        .await,
        Ok(200)
    );
    // ...and refuse what was trusted before.
    let stale = grpc_export_with(
        ports.grpc,
        pki::client_config(&old_ca.pem(), Some(&old_client), v, H2),
    )
    .await;
    assert!(
        stale.is_err(),
        "a client trusting only the old CA connected"
    );
    let old_client_new_trust = pki::https_post_traces(
        ports.http,
        pki::client_config(&new_ca.pem(), Some(&old_client), v, H1),
    )
    .await;
    assert!(
        old_client_new_trust.is_err(),
        "the old client CA still counts"
    );

    // The connections opened before keep working (they cannot have reconnected: a new
    // handshake with the old trust fails, as just seen).
    grpc_export(grpc_open, 3).await.unwrap();
    assert_eq!(http_open.post("/v1/traces", &proto, body()).await, Ok(200));
    assert!(
        down.wait_until(|r| r.span_count() == 1 + 1 + 1 + 2 + 1 + 1)
            .await,
        "{}",
        sl.logs()
    );
    assert!(sl.logs().contains("reloaded"), "{}", sl.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_present_client_certificates() {
    // Sightline "gateway" requires client certificates on both protocols; Sightline "agent"
    // sends every span to it twice: by otlp (gRPC) and by otlphttp, each with its own
    // client certificate, TLS 1.3 only.
    let dir = temp_dir("mtls-exporters");
    let server_ca = TestCa::new("gateway CA");
    let client_ca = TestCa::new("agents CA");
    server_ca.issue("gateway").write(&dir, "server");
    let (server_ca_file, clients_file) = (
        server_ca.write(&dir, "server-ca.pem"),
        client_ca.write(&dir, "clients.pem"),
    );
    let (cert, key) = client_ca.issue("agent").write(&dir, "agent");
    let tls = tls_keys(
        &dir,
        &format!(", client_ca_file: '{}'", clients_file.display()),
    );
    let down = Downstream::start().await;
    let gateway_ports = Ports::new();
    let gateway = Sightline::start(
        &receiver_config(gateway_ports, &down.url(), &tls, &tls, ""),
        gateway_ports,
    )
    .await;

    let client_tls = format!(
        "{{ ca_file: '{}', cert_file: '{}', key_file: '{}', min_version: \"1.3\" }}",
        server_ca_file.display(),
        cert.display(),
        key.display()
    );
    let ports = Ports::new();
    let agent_config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  otlp:
    endpoint: "https://localhost:{gateway_grpc}"
    tls: {client_tls}
  otlphttp:
    endpoint: "https://localhost:{gateway_http}"
    tls: {client_tls}
service:
  telemetry:
    metrics: {{ endpoint: "127.0.0.1:{metrics}" }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp, otlphttp] }}
"#,
        grpc = ports.grpc,
        http = ports.http,
        metrics = ports.metrics,
        health = ports.health,
        gateway_grpc = gateway_ports.grpc,
        gateway_http = gateway_ports.http,
    );
    let agent = Sightline::start(&agent_config, ports).await;
    let channel = Channel::from_shared(agent.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    grpc_export(channel, 4).await.unwrap();
    assert!(
        down.wait_until(|r| r.span_count() == 2).await,
        "agent: {}\ngateway: {}",
        agent.logs(),
        gateway.logs()
    );
    assert_eq!(
        rejected(&gateway, "grpc", "tls_handshake_failed").await,
        0.0
    );
    assert_eq!(
        rejected(&gateway, "http", "tls_handshake_failed").await,
        0.0
    );
}
