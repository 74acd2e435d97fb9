//! The fuzz targets' bodies (`fuzz/src/lib.rs`) over their seed corpus and every crash input
//! found so far (`fuzz/corpus/<target>/seed-*`, `fuzz/regressions/<target>/*`), as ordinary
//! tests: the properties the fuzzers check hold for these inputs on every CI run, without
//! libFuzzer.

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if dir.ends_with(target)
                && dir.parent().is_some_and(|p| p.ends_with("corpus"))
                && !name.starts_with("seed-")
            {
                continue;
            }
            out.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    out.sort();
    out
}

fn run(target: &str, f: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no seeds for {target}");
    for (name, data) in inputs {
        let outcome = std::panic::catch_unwind(|| f(&data));
        assert!(outcome.is_ok(), "{target}: input {name} fails");
    }
}

#[test]
fn wire_scan_seeds() {
    run("wire_scan", targets::wire_scan);
}

#[test]
fn otlp_json_seeds() {
    run("otlp_json", targets::otlp_json);
}

#[test]
fn otlp_http_seeds() {
    run("otlp_http", targets::otlp_http);
}

#[test]
fn filelog_json_seeds() {
    run("filelog_json", targets::filelog_json);
}

#[test]
fn config_seeds() {
    run("config", targets::config);
}

#[test]
fn persistent_queue_seeds() {
    run("persistent_queue", targets::persistent_queue);
}
