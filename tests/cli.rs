//! The command line: `validate` on every shipped config and on broken ones, `components`,
//! `--version`, `--help`, and the exit codes.

mod common;

use std::process::{Command, Output};

use common::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sightline")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_shipped_config_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let o = run(&["validate", "--config", path.to_str().unwrap()], &[]);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
        checked += 1;
    }
    assert!(
        checked >= 3,
        "configs/ should hold default, agent and gateway"
    );
}

#[test]
fn embedded_default_validates() {
    let o = run(&["validate"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("valid"));
}

fn validate_text(yaml: &str) -> (bool, String) {
    let (code, stderr) = validate_yaml("validate", yaml);
    assert_ne!(code, Some(101), "panicked: {stderr}");
    (code == Some(0), stderr)
}

const GOOD_TAIL: &str = "
service:
  pipelines:
    traces: { receivers: [otlp], processors: [batch], exporters: [debug] }
";

#[test]
fn broken_configs_print_every_error() {
    let cases: &[(&str, &[&str])] = &[
        (
            "receivers: { otlpp: {} }\nprocessors: { batch: {} }\nexporters: { debug: {} }\nservice: { pipelines: { traces: { receivers: [otlpp], exporters: [debug] } } }",
            &[
                "broken.yaml: receivers::otlpp",
                "unknown receiver type \"otlpp\"",
                "did you mean \"otlp\"",
            ],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: { endpont: 'x:1' } } } }\nprocessors: { batch: {} }\nexporters: { debug: {} }",
            &[
                "receivers::otlp: protocols.grpc.endpont",
                "did you mean \"endpoint\"",
            ],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: {} } } }\nprocessors: { batch: { send_batch_size: lots } }\nexporters: { debug: {} }",
            &["processors::batch: send_batch_size", "invalid type"],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: {} } } }\nprocessors: { batch: {} }\nexporters: { debug: {} }\nservice: { pipelines: { traces: { receivers: [otlp], exporters: [nope] } } }",
            &[
                "service::pipelines::traces: exporters[0]",
                "\"nope\" is not defined",
            ],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: {} } } }\nexporters: { debug: {} }\nservice: { pipelines: { traces: { receivers: [otlp], exporters: [] } } }",
            &["a pipeline needs at least one exporter"],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: {} } } }\nexporters: { debug: {} }\nservice: { pipelines: { trace: { receivers: [otlp], exporters: [debug] } } }",
            &["did you mean \"traces\""],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: {} } } }\nexporters: { debug: {} }\nconnectors: { forward: {} }\nservice: { pipelines: { traces: { receivers: [otlp], exporters: [debug, forward] } } }",
            &["connectors::forward", "never used as an receiver"],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: {} } } }\nexporters: { debug: {} }\nconnectors: { forward: {} }\nservice: { pipelines: { traces: { receivers: [otlp], exporters: [forward] }, metrics: { receivers: [forward], exporters: [debug] } } }",
            &["cannot connect traces (pipeline traces) to metrics (pipeline metrics)"],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: {} } } }\nexporters: { debug: {} }\nconnectors: { forward/a: {}, forward/b: {} }\nservice: { pipelines: {\n  traces: { receivers: [otlp], exporters: [debug] },\n  traces/a: { receivers: [forward/b], exporters: [forward/a] },\n  traces/b: { receivers: [forward/a], exporters: [forward/b] } } }",
            &["cycle through connectors", "traces/a", "traces/b"],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: { endpoint: '127.0.0.1:5555' } } }, otlp/2: { protocols: { http: { endpoint: 'localhost:5555' } } } }\nexporters: { debug: {} }\nservice: { pipelines: { traces: { receivers: [otlp, otlp/2], exporters: [debug] } } }",
            &["two listeners cannot share a port"],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: { endpoint: '0.0.0.0:8889' } } } }\nexporters: { prometheus: {} }\nservice: { pipelines: { metrics: { receivers: [otlp], exporters: [prometheus] } } }",
            &["two listeners cannot share a port"],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: {} } } }\nexporters: { debug: {} }\nservice: { pipelines: { traces: { receivers: [otlp], exporters: [debug] } }, telemetri: {} }",
            &["service", "did you mean \"telemetry\""],
        ),
        (
            "receivers: { otlp: { protocols: { grpc: { endpoint: '${env:SIGHTLINE_TEST_UNSET_VAR}' } } } }\nexporters: { debug: {} }",
            &["SIGHTLINE_TEST_UNSET_VAR is not set"],
        ),
        ("receivers: [unclosed", &["invalid YAML"]),
    ];
    for (yaml, expected) in cases {
        let text = if yaml.contains("service:") {
            yaml.to_string()
        } else {
            format!("{yaml}\n{GOOD_TAIL}")
        };
        let (ok, err) = validate_text(&text);
        assert!(!ok, "should fail:\n{text}");
        for e in *expected {
            assert!(err.contains(e), "expected {e:?} in:\n{err}\nfor:\n{text}");
        }
    }
}

#[test]
fn several_errors_are_reported_at_once() {
    let (ok, err) = validate_text(
        &("receivers: { otlp: { protocols: { grpc: { endpont: 'x:1' } } } }\nprocessors: { batch: { timeout: soon } }\nexporters: { debug: { verbosity: loud } }\n".to_owned() + GOOD_TAIL),
    );
    assert!(!ok);
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn unused_component_is_a_warning() {
    let (ok, err) = validate_text(&format!(
        "receivers: {{ otlp: {{ protocols: {{ grpc: {{}} }} }} }}\nprocessors: {{ batch: {{}} }}\nexporters: {{ debug: {{}}, debug/unused: {{}} }}\n{GOOD_TAIL}"
    ));
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: exporters::debug/unused is defined but not used"),
        "{err}"
    );
}

#[test]
fn later_files_merge_over_earlier_and_env_substitutes() {
    let dir = temp_dir("merge");
    let a = dir.join("a.yaml");
    let b = dir.join("b.yaml");
    std::fs::write(&a, format!("receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: '127.0.0.1:${{env:SL_TEST_PORT:-4317}}' }} }} }} }}\nprocessors: {{ batch: {{}} }}\nexporters: {{ debug: {{ verbosity: nope }} }}\n{GOOD_TAIL}")).unwrap();
    std::fs::write(&b, "exporters: { debug: { verbosity: detailed } }\n").unwrap();
    let o = run(&["validate", "--config", a.to_str().unwrap()], &[]);
    assert!(!o.status.success(), "a.yaml alone has a bad verbosity");
    let o = run(
        &[
            "validate",
            "--config",
            a.to_str().unwrap(),
            "--config",
            b.to_str().unwrap(),
        ],
        &[("SL_TEST_PORT", "5317")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn components_lists_every_family() {
    let o = run(&["components"], &[]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "receiver",
        "otlp",
        "processor",
        "batch",
        "exporter",
        "otlphttp",
        "debug",
        "file",
        "prometheus",
        "prometheusremotewrite",
        "connector",
        "forward",
        "traces->traces",
    ] {
        assert!(out.contains(line), "{line} missing from:\n{out}");
    }
}

#[test]
fn version_help_and_usage_errors() {
    let o = run(&["--version"], &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("sightline "));
    let o = run(&["--help"], &[]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("validate") && help.contains("components") && help.contains("--config"),
        "{help}"
    );
    let o = run(&["--bogus"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["--config", "/nonexistent/sightline.yaml"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}
