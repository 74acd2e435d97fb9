//! `sightline tap`: the real binary taps a component of another running `sightline` process
//! through its self-telemetry endpoint and prints OTLP/JSON lines of what passes it, while
//! everything still reaches the downstream; unknown and ambiguous components are clear
//! errors.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use pipeline_core::testing::metric_sum;

/// A running `sightline tap`: the process, its stderr lines as they come, and its whole
/// stdout once it exits (read all along, so a full pipe never blocks it).
struct Tap {
    child: Child,
    stderr: mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<String>,
}

fn start_tap(args: &[&str]) -> Tap {
    let mut child = Command::new(bin())
        .arg("tap")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sightline tap");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stdout = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    Tap {
        child,
        stderr: rx,
        stdout,
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "sightline tap did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_prints_samples_of_a_components_output_as_otlp_json_lines() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let endpoint = format!("127.0.0.1:{}", ports.metrics);

    let mut tap = start_tap(&["--endpoint", &endpoint, "batch", "--limit", "3"]);
    let opened = tap.stderr.recv_timeout(DEADLINE).expect("tap opened");
    assert!(opened.contains("sampling the output of batch"), "{opened}");

    let mut sent = 0;
    while tap.child.try_wait().unwrap().is_none() {
        export_traces(&sl.grpc_url(), traces_request(sent as u64 + 1, 20)).await;
        sent += 20;
        assert!(sent < 100_000, "the tap printed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = wait_exit(&mut tap.child);
    let out = tap.stdout.join().unwrap();
    assert!(status.success(), "{status}: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "--limit 3: {out}");
    for line in lines {
        let json: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let spans = &json["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert!(spans.as_array().is_some_and(|s| !s.is_empty()), "{line}");
        // OTLP/JSON: hex IDs, the attributes as sent.
        assert_eq!(
            spans[0]["spanId"].as_str().map(str::len),
            Some(16),
            "{line}"
        );
        assert_eq!(
            json["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "api-service"
        );
    }
    // Tapping took nothing away.
    assert!(
        down.wait_until(|r| r.span_count() == sent).await,
        "{} of {sent} spans arrived: {}",
        down.received.span_count(),
        sl.logs()
    );
    assert!(
        metric_sum(
            &sl.metrics().await,
            "sightline_tap_samples_total",
            &[("component_id", "batch"), ("outcome", "sent")]
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_ambiguous_components_are_clear_errors() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let sl = Sightline::start(&pipeline_config(ports, &down.url(), "", ""), ports).await;
    let endpoint = format!("127.0.0.1:{}", ports.metrics);
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("tap")
            .args(["--endpoint", &endpoint])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    let (code, err) = run(&["batch/missing"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no component \"batch/missing\"") && err.contains("processor batch"),
        "{err}"
    );
    let (code, err) = run(&["otlp"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--kind"),
        "otlp is a receiver and an exporter: {err}"
    );

    // With the kind, the exporter's input is tapped.
    let mut tap = start_tap(&[
        "--endpoint",
        &endpoint,
        "otlp",
        "--kind",
        "exporter",
        "--limit",
        "1",
    ]);
    tap.stderr.recv_timeout(DEADLINE).expect("tap opened");
    let mut seed = 1;
    while tap.child.try_wait().unwrap().is_none() {
        export_logs(&sl.grpc_url(), logs_request(seed, 5)).await;
        seed += 1;
        assert!(seed < 5_000, "the tap printed nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wait_exit(&mut tap.child).success());
    let out = tap.stdout.join().unwrap();
    assert!(out.starts_with("{\"resourceLogs\":["), "{out}");

    let out = Command::new(bin())
        .args(["tap", "--endpoint", "127.0.0.1:1", "batch"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}
