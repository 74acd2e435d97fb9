//! The `loki` scenario: seed-style request logs over OTLP/gRPC through
//! `otlp -> batch -> loki` (push protobuf + snappy, default labels and structured metadata)
//! against `otlp -> batch -> otlp` (gzip, the exporter's default), in the same run, in
//! interleaved rounds (median reported). The Loki sink in the bench process decompresses
//! and decodes every push and counts its entries, as Loki's distributor would read them.
//!
//! The records are `exporters::loki::testing::request_logs`: the seed's Flask "Request
//! completed" with request ID, status, duration, method, path, user ID and trace context,
//! 100 per request, two streams (INFO and ERROR) per service.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use bytes::Bytes;
use exporters::loki::proto::PushRequest;
use exporters::loki::testing::request_logs;
use exporters::testing::{HttpHandler, serve_http, text_response};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use pipeline_core::Payload;
use prost::Message;

use crate::Options;
use crate::harness::{Sink, config, print_header_for, run_loads, serve_sink};

/// Interleaved rounds per load; rows report the median.
const ROUNDS: usize = 3;

/// Counts the entries of every push into the shared sink's log count.
struct LokiSink(Sink);

impl HttpHandler for LokiSink {
    async fn handle(
        self: Arc<Self>,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let Ok(body) = request.into_body().collect().await.map(|b| b.to_bytes()) else {
            return text_response(400, "unreadable body");
        };
        let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
            return text_response(400, "bad snappy");
        };
        let Ok(push) = PushRequest::decode(&raw[..]) else {
            return text_response(400, "bad protobuf");
        };
        let entries: usize = push.streams.iter().map(|s| s.entries.len()).sum();
        self.0.logs.fetch_add(entries as u64, Ordering::Relaxed);
        text_response(204, "")
    }
}

fn request(i: u64) -> ExportLogsServiceRequest {
    let batch = request_logs(100, 1_705_314_600_000_000_000 + i * 100_000_000);
    let Payload::Logs(resource_logs) = batch.into_parts().0 else {
        unreachable!("request_logs makes logs")
    };
    ExportLogsServiceRequest { resource_logs }
}

/// Runs the scenario and prints its table.
pub(crate) async fn run(o: &Options) -> Result<()> {
    let rounds = o.rounds.unwrap_or(ROUNDS);
    let sink = Sink::default();
    let sink_addr = serve_sink(sink.clone()).await?;
    let loki = Arc::new(LokiSink(sink.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let loki_addr = listener.local_addr()?;
    serve_http(listener, Arc::downgrade(&loki));
    let requests = Arc::new((0..64).map(request).collect::<Vec<_>>());
    let pipeline = |exporter: &str| {
        format!("    logs: {{ receivers: [otlp], processors: [batch], exporters: [{exporter}] }}")
    };
    let targets = [
        (
            "sightline (otlp -> batch -> otlp, gzip)".to_string(),
            config(
                "processors: { batch: {} }\nexporters: { otlp: { endpoint: 'http://{SINK}' } }",
                &pipeline("otlp"),
            ),
        ),
        (
            "sightline (otlp -> batch -> loki, protobuf + snappy)".to_string(),
            config(
                &format!(
                    "processors: {{ batch: {{}} }}\nexporters: {{ loki: {{ endpoint: 'http://{loki_addr}' }} }}"
                ),
                &pipeline("loki"),
            ),
        ),
    ];
    print_header_for("log records");
    run_loads(
        o,
        &targets,
        &sink,
        sink_addr,
        requests.clone(),
        rounds,
        "log records",
    )
    .await?;
    drop(loki);
    Ok(())
}
