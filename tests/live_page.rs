//! The live pipeline page: `GET /` on the self-telemetry endpoint of the real binary shows
//! every configured pipeline and component with live rates and queue fill, refreshes
//! itself, and renders in headless Chromium.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The page's `<g>` element of component `id` (of `kind`) in pipeline `pipeline`.
fn component<'a>(page: &'a str, pipeline: &str, kind: &str, id: &str) -> Option<&'a str> {
    let section = page
        .split("<section ")
        .find(|s| s.starts_with(&format!("class=\"pipeline\" data-pipeline=\"{pipeline}\"")))?;
    let tag = format!("data-kind=\"{kind}\" data-id=\"{id}\"");
    section
        .split("<g ")
        .find(|g| g.starts_with(&format!("class=\"component\" {tag}")))
}

fn attribute(element: &str, name: &str) -> Option<f64> {
    let start = element.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + element[start..].find('"')?;
    element[start..end].parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_component_with_live_rates_and_renders_in_chromium() {
    let down = Downstream::start().await;
    let ports = Ports::new();
    let config = pipeline_config(ports, &down.url(), "", "")
        .replace(
            "exporters:\n",
            "connectors:\n  forward: {}\nexporters:\n  debug: { verbosity: basic }\n",
        )
        .replace(
            "traces:  { receivers: [otlp], processors: [batch], exporters: [otlp] }",
            "traces:  { receivers: [otlp], processors: [batch], exporters: [otlp, forward] }\n    \
             traces/copy: { receivers: [forward], exporters: [debug] }",
        );
    let sl = Sightline::start(&config, ports).await;
    let url = format!("http://127.0.0.1:{}/", ports.metrics);

    let expected = [
        ("traces", "receiver", "otlp"),
        ("traces", "processor", "batch"),
        ("traces", "exporter", "otlp"),
        ("traces", "connector", "forward"),
        ("traces/copy", "connector", "forward"),
        ("traces/copy", "exporter", "debug"),
        ("metrics", "receiver", "otlp"),
        ("metrics", "processor", "batch"),
        ("metrics", "exporter", "otlp"),
        ("logs", "receiver", "otlp"),
        ("logs", "processor", "batch"),
        ("logs", "exporter", "otlp"),
    ];
    // Traffic until the page shows it: rates are sampled every second.
    let deadline = Instant::now() + DEADLINE;
    let mut seed = 1;
    let page = loop {
        export_traces(&sl.grpc_url(), traces_request(seed, 50)).await;
        seed += 1;
        let (status, page) = http_get(&url).await.unwrap();
        assert_eq!(status, 200);
        let flowing = component(&page, "traces", "receiver", "otlp")
            .and_then(|g| attribute(g, "data-out"))
            .is_some_and(|r| r > 0.0)
            && component(&page, "traces", "exporter", "otlp")
                .and_then(|g| attribute(g, "data-in"))
                .is_some_and(|r| r > 0.0);
        if flowing {
            break page;
        }
        assert!(Instant::now() < deadline, "no rates on the page: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
    assert!(page.contains("<svg"));
    for (pipeline, kind, id) in expected {
        let g = component(&page, pipeline, kind, id)
            .unwrap_or_else(|| panic!("{kind} {id} of {pipeline} is not on the page: {page}"));
        assert!(g.contains("/s"), "{g}");
    }
    // The OTLP exporter's queue is drawn with its fill level.
    let exporter = component(&page, "traces", "exporter", "otlp").unwrap();
    assert!(exporter.contains("data-queue=\""), "{exporter}");
    assert!(exporter.contains("% "), "{exporter}");
    // Rates are per pipeline signal: only traces were sent.
    let logs_receiver = component(&page, "logs", "receiver", "otlp").unwrap();
    assert_eq!(
        attribute(logs_receiver, "data-out"),
        Some(0.0),
        "{logs_receiver}"
    );
    // The receiver refused and dropped nothing.
    let receiver = component(&page, "traces", "receiver", "otlp").unwrap();
    assert_eq!(attribute(receiver, "data-dropped"), Some(0.0));
    assert_eq!(attribute(receiver, "data-refused"), Some(0.0));

    let png = screenshot_is_not_blank(&url).await;
    if let Some(png) = png {
        eprintln!("live page screenshot: {}", png.display());
    }
}
