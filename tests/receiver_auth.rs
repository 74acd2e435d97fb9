//! Bearer tokens on the `otlp` receiver: the right token is served on gRPC and HTTP, a
//! wrong or missing one gets UNAUTHENTICATED / 401 and is counted; the tokens appear neither
//! in Sightline's logs (at debug level) nor in `sightline validate` output.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::transport::Channel;

/// From the environment.
const ENV_TOKEN: &str = "env-token-5f1c9a7e";
/// Written in the config.
const LITERAL_TOKEN: &str = "literal-token-b83d20c4";
const VAR: &str = "SL_TEST_BEARER";

fn config(ports: Ports, downstream: &str) -> String {
    receiver_config(
        ports,
        downstream,
        "",
        "",
        &format!("auth: {{ bearer_tokens: [\"${{env:{VAR}}}\", \"{LITERAL_TOKEN}\"] }}"),
    )
}

async fn grpc_export(channel: &Channel, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(traces_request(1, 1));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", token.parse().unwrap());
    }
    TraceServiceClient::new(channel.clone())
        .export(request)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_let_in_the_right_clients_only() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl =
        Sightline::start_with_env(&config(ports, &down.url()), ports, &[(VAR, ENV_TOKEN)]).await;

    // gRPC: either token, any case of the scheme.
    let channel = Channel::from_shared(sl.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    grpc_export(&channel, Some(&format!("Bearer {ENV_TOKEN}")))
        .await
        .unwrap();
    grpc_export(&channel, Some(&format!("bearer {LITERAL_TOKEN}")))
        .await
        .unwrap();
    for wrong in [
        None,
        Some("Bearer nope"),
        Some(&format!("Basic {ENV_TOKEN}")[..]),
        Some(&format!("Bearer {ENV_TOKEN}x")[..]),
    ] {
        let status = grpc_export(&channel, wrong).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong:?}");
        assert!(!status.message().contains(ENV_TOKEN), "{status:?}");
    }

    // HTTP, protobuf and JSON.
    let url = sl.http_url("/v1/traces");
    let body = traces_request(2, 3).encode_to_vec();
    let auth = format!("Bearer {LITERAL_TOKEN}");
    let proto = ("content-type", "application/x-protobuf");
    let (status, _, _) = http_post(&url, &[proto, ("authorization", &auth)], body.clone()).await;
    assert_eq!(status, 200);
    let (status, headers, answer) = http_post(&url, &[proto], body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert!(!answer.is_empty());
    let (status, _, answer) = http_post(
        &url,
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer wrong"),
        ],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        String::from_utf8_lossy(&answer).contains("\"code\":16"),
        "{answer:?}"
    );

    // 1 + 1 spans by gRPC, 3 by HTTP; the refusals counted.
    assert!(
        down.wait_until(|r| r.span_count() == 5).await,
        "{}",
        sl.logs()
    );
    assert!(wait_rejected(&sl, "grpc", "unauthenticated", 4.0).await);
    assert!(wait_rejected(&sl, "http", "unauthenticated", 2.0).await);
    assert_eq!(rejected(&sl, "grpc", "unauthenticated").await, 4.0);

    // No token in any log line (debug level), nor on the metrics page.
    let logs = sl.logs();
    for token in [ENV_TOKEN, LITERAL_TOKEN] {
        assert!(!logs.contains(token), "a token was logged: {logs}");
        assert!(!sl.metrics().await.contains(token));
    }
}

#[test]
fn validate_masks_tokens_and_rejects_empty_lists() {
    let ports = Ports::new();
    // Valid: nothing printed but the verdict.
    let good = config(ports, "http://127.0.0.1:1");
    let path = temp_dir("auth-validate").join("config.yaml");
    std::fs::write(&path, &good).unwrap();
    let out = std::process::Command::new(bin())
        .args(["validate", "--config"])
        .arg(&path)
        .env(VAR, ENV_TOKEN)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(!printed.contains(ENV_TOKEN) && !printed.contains(LITERAL_TOKEN));

    // A token where a list belongs: the error names the field, not the token.
    let bad = receiver_config(
        ports,
        "http://127.0.0.1:1",
        "",
        "",
        &format!("auth: {{ bearer_tokens: \"{LITERAL_TOKEN}\" }}"),
    );
    let (code, printed) = validate_yaml("auth-validate-bad", &bad);
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("bearer_tokens"), "{printed}");
    assert!(!printed.contains(LITERAL_TOKEN), "{printed}");

    // An unknown key next to the tokens: the same.
    let typo = receiver_config(
        ports,
        "http://127.0.0.1:1",
        "",
        "",
        &format!("auth: {{ bearer_token: [\"{LITERAL_TOKEN}\"] }}"),
    );
    let (code, printed) = validate_yaml("auth-validate-typo", &typo);
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("bearer_token"), "{printed}");
    assert!(!printed.contains(LITERAL_TOKEN), "{printed}");

    let empty = receiver_config(
        ports,
        "http://127.0.0.1:1",
        "",
        "",
        "auth: { bearer_tokens: [] }",
    );
    let (code, printed) = validate_yaml("auth-validate-empty", &empty);
    assert_eq!(code, Some(1), "{printed}");
    assert!(printed.contains("auth.bearer_tokens"), "{printed}");
}
