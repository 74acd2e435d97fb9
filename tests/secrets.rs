//! Secrets stay secret: a numeric API key in `${env:...}` is read as the string it was
//! (sent exactly, in a header and a URL query) and its digits appear in no output: not in
//! `validate`, not in a start-up error, not in logs, not on `/health/ready`, also while the
//! `otlphttp` exporter's backend keeps failing and every retry is logged.

mod common;

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// All digits, so YAML would read the value alone as a number.
const SECRET: &str = "80417365092";
const VAR: &str = "SL_TEST_API_KEY";

/// What an OTLP/HTTP backend that answers 503 to everything was sent.
#[derive(Default)]
struct Seen {
    api_key_headers: Vec<String>,
    queries: Vec<String>,
}

/// Serves 503 on 127.0.0.1:0, recording each request's `x-api-key` and query string.
async fn failing_backend() -> (u16, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let mut seen = record.lock().unwrap();
                        if let Some(v) = req.headers().get("x-api-key") {
                            seen.api_key_headers
                                .push(v.to_str().unwrap_or_default().to_string());
                        }
                        seen.queries
                            .push(req.uri().query().unwrap_or_default().to_string());
                        let mut response = Response::new(Full::new(Bytes::from("overloaded")));
                        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

fn config(ports: Ports, backend: u16, exporter_extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:{http}"
exporters:
  otlphttp:
    endpoint: "http://127.0.0.1:{backend}/ingest?api_key=${{env:{VAR}}}"
    headers:
      x-api-key: "${{env:{VAR}}}"
    retry_on_failure:
      initial_interval: 20ms
      max_interval: 50ms
      max_elapsed_time: 1s
{exporter_extra}
service:
  telemetry:
    logs: {{ level: debug }}
    metrics: {{ endpoint: "127.0.0.1:{metrics}" }}
  health: {{ endpoint: "127.0.0.1:{health}" }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [otlphttp] }}
"#,
        http = ports.http,
        metrics = ports.metrics,
        health = ports.health,
    )
}

/// Runs the binary with `args` on `yaml` and the secret in the environment; returns the
/// exit code and everything it printed.
fn run_with_secret(tag: &str, yaml: &str, args: &[&str]) -> (Option<i32>, String) {
    let path = temp_dir(tag).join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut command = Command::new(bin());
    let o = command
        .args(args)
        .arg("--config")
        .arg(&path)
        .env(VAR, SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_api_key_is_sent_as_written_and_shown_nowhere() {
    let (backend, seen) = failing_backend().await;
    let ports = Ports::new();
    let yaml = config(ports, backend, "");

    let (code, printed) = run_with_secret("secrets-validate", &yaml, &["validate"]);
    assert_eq!(code, Some(0), "{printed}");
    assert!(
        !printed.contains(SECRET),
        "validate printed the key: {printed}"
    );

    let sl = Sightline::start_with_env(&yaml, ports, &[(VAR, SECRET)]).await;
    let logs = logs_request(1, 5);
    let body = serde_json::to_vec(&logs).unwrap();
    let (status, _, _) = http_post(
        &sl.http_url("/v1/logs"),
        &[("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(status, 200);
    // Retried until max_elapsed_time, each failure logged and reported to health.
    let ready = format!("http://127.0.0.1:{}/health/ready", ports.health);
    let deadline = Instant::now() + DEADLINE;
    let health = loop {
        let (_, health) = http_get(&ready).await.unwrap();
        let attempts = seen.lock().unwrap().queries.len();
        if attempts >= 3 && health.contains("503") {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "{attempts} attempts; health: {health}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.api_key_headers.iter().all(|h| h == SECRET),
            "the header was not sent as written"
        );
        assert!(!seen.api_key_headers.is_empty());
        assert!(
            seen.queries
                .iter()
                .all(|q| q == &format!("api_key={SECRET}")),
            "the query was not sent as written"
        );
    }
    assert!(
        health.contains(&format!("POST http://127.0.0.1:{backend}/ingest/v1/logs")),
        "{health}"
    );
    assert!(
        !health.contains(SECRET),
        "/health/ready shows the key: {health}"
    );
    let logs = sl.logs();
    assert!(logs.contains("503"), "the failures were not logged: {logs}");
    let leaked: Vec<&str> = logs.lines().filter(|l| l.contains(SECRET)).collect();
    assert!(leaked.is_empty(), "log lines with the key: {leaked:?}");
}

#[test]
fn a_config_error_about_the_key_names_the_variable_not_the_digits() {
    // The key lands in a field that takes no number: serde would quote it.
    let ports = Ports::new();
    let yaml = config(
        ports,
        free_port(),
        &format!("    compression: \"${{env:{VAR}}}\""),
    );
    for (tag, args) in [
        ("secrets-invalid-validate", &["validate"][..]),
        ("secrets-invalid-run", &[][..]),
    ] {
        let (code, printed) = run_with_secret(tag, &yaml, args);
        assert_eq!(code, Some(1), "{printed}");
        assert!(printed.contains("compression"), "{printed}");
        assert!(printed.contains(&format!("${{env:{VAR}}}")), "{printed}");
        assert!(!printed.contains(SECRET), "the key was printed: {printed}");
    }
}
