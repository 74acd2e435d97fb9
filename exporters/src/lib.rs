//! # exporters: Sightline's built-in exporters
//!
//! Exporters are the leaves of the graph: every pipeline that names one hands it the
//! [`Batch`](pipeline_core::Batch)es that made it through the processors, and the exporter
//! delivers them somewhere outside the process.
//!
//! | type       | where the data goes                                  | module             |
//! |------------|------------------------------------------------------|--------------------|
//! | `otlp`     | an OTLP/gRPC backend                                 | [`otlp`]           |
//! | `otlphttp` | an OTLP/HTTP backend (protobuf or JSON)              | [`otlphttp`]       |
//! | `prometheus` | a `/metrics` endpoint Prometheus scrapes           | [`prometheus`]     |
//! | `prometheusremotewrite` | a Prometheus remote-write endpoint      | [`prometheusremotewrite`] |
//! | `debug`    | stderr, one line per batch or the batch as OTLP/JSON | [`debug`]          |
//! | `file`     | a file, one OTLP/JSON export request per line        | [`file`](mod@file) |
//! | `slo`      | SLO figures, alerts to webhooks, a status page (also a connector emitting the figures as metrics) | [`slo`] |
//! | `jaeger`   | Jaeger: OTLP/gRPC, OTLP/HTTP or its api_v2 gRPC      | [`jaeger`]         |
//! | `loki`     | Loki's push API (protobuf + snappy, or JSON)         | [`loki`]           |
//! | `loadbalancing` | several OTLP backends, each key (trace, request, service) on one | [`loadbalancing`] |
//!
//! The network exporters share [`helper`]: the `timeout`, `retry_on_failure` and
//! `sending_queue` settings of the OpenTelemetry Collector's exporter helper, the queue
//! workers, the retry loop, health reporting and the OTLP encoding. A plugin crate can build
//! its own exporter on [`helper::QueuedExporter`] by implementing [`helper::Sender`]. The two
//! Prometheus exporters share the OpenTelemetry-to-Prometheus translation in
//! [`helper::prometheus`].
//!
//! [`testing`] holds the test kits: a strict Loki push server and a Jaeger collector
//! (api_v2 `PostSpans` and OTLP), for tests where the real backends cannot run.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod debug;
pub mod file;
pub mod helper;
pub mod jaeger;
pub mod loadbalancing;
pub mod loki;
pub mod otlp;
pub mod otlphttp;
pub mod prometheus;
pub mod prometheusremotewrite;
pub mod slo;
pub mod testing;

use pipeline_core::{Registry, RegistryError};

/// Registers every built-in exporter: `otlp`, `otlphttp`, `debug`, `file`, `prometheus`,
/// `prometheusremotewrite`, `slo`, `jaeger`, `loki` and `loadbalancing`; and the `slo`
/// connector.
pub fn register(reg: &mut Registry) -> Result<(), RegistryError> {
    reg.add_exporter(otlp::Factory)?;
    reg.add_exporter(otlphttp::Factory)?;
    reg.add_exporter(debug::Factory)?;
    reg.add_exporter(file::Factory)?;
    reg.add_exporter(prometheus::Factory)?;
    reg.add_exporter(prometheusremotewrite::Factory)?;
    reg.add_exporter(slo::Factory)?;
    reg.add_exporter(jaeger::Factory)?;
    reg.add_exporter(loki::Factory)?;
    reg.add_exporter(loadbalancing::Factory)?;
    // The SLO evaluator as a connector lives with the exporter it shares its runtime with
    // (the connectors crate cannot depend on this one).
    reg.add_connector(slo::ConnectorFactory)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn registers_all() {
        let mut reg = Registry::new();
        register(&mut reg).unwrap();
        for name in [
            "otlp",
            "otlphttp",
            "debug",
            "file",
            "prometheus",
            "prometheusremotewrite",
            "slo",
            "jaeger",
            "loki",
            "loadbalancing",
        ] {
            assert!(reg.exporter(name).is_some(), "{name} missing");
        }
        assert!(reg.connector("slo").is_some(), "slo connector missing");
        assert!(register(&mut reg).is_err(), "registering twice must fail");
    }
}
