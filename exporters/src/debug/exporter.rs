//! Writing batches to stderr (or, in tests, to a buffer).

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline_core::model::Payload;
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::{Batch, Component, ComponentError, ConsumeError, Consumer};
use tokio::time::Instant;

use super::config::{DebugConfig, Verbosity};
use crate::helper::WRITE_FAILED;
use crate::helper::codec::write_json;

/// Where the text goes.
pub(crate) type Output = Arc<Mutex<dyn Write + Send>>;

/// Writes each batch it is given; keeps nothing.
pub(crate) struct DebugExporter {
    id: String,
    verbosity: Verbosity,
    telemetry: ComponentTelemetry,
    out: Output,
}

impl DebugExporter {
    pub(crate) fn new(
        id: String,
        config: &DebugConfig,
        telemetry: ComponentTelemetry,
        out: Output,
    ) -> DebugExporter {
        DebugExporter {
            id,
            verbosity: config.verbosity,
            telemetry,
            out,
        }
    }

    fn render(&self, batch: &Batch) -> Result<Vec<u8>, ConsumeError> {
        let mut text = summary(&self.id, &batch.payload).into_bytes();
        text.push(b'\n');
        if self.verbosity == Verbosity::Detailed {
            write_json(&batch.payload, &mut text).map_err(ConsumeError::permanent)?;
            text.push(b'\n');
        }
        Ok(text)
    }
}

/// `debug: traces: 1 resource spans, 3 spans`, in the OpenTelemetry Collector's words.
pub(crate) fn summary(id: &str, payload: &Payload) -> String {
    let signal = payload.signal();
    let items = payload.item_count();
    match payload {
        Payload::Traces(rs) => {
            format!("{id}: {signal}: {} resource spans, {items} spans", rs.len())
        }
        Payload::Metrics(rm) => {
            let metrics: usize = rm
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum();
            format!(
                "{id}: {signal}: {} resource metrics, {metrics} metrics, {items} data points",
                rm.len()
            )
        }
        Payload::Logs(rl) => {
            format!(
                "{id}: {signal}: {} resource logs, {items} log records",
                rl.len()
            )
        }
        _ => format!("{id}: {signal}: {items} items"),
    }
}

#[async_trait]
impl Consumer for DebugExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let signal = batch.signal();
        let items = batch.item_count();
        let text = self.render(&batch)?;
        let written = {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            out.write_all(&text).and_then(|()| out.flush())
        };
        match written {
            Ok(()) => self.telemetry.sent(signal, items),
            Err(e) => {
                // Accepted but not shown: count it rather than push it back upstream, where
                // a retry would meet the same broken stream.
                tracing::warn!(exporter = %self.id, error = %e, "cannot write to stderr");
                self.telemetry.dropped(signal, items, WRITE_FAILED);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Component for DebugExporter {
    async fn shutdown(&self, _deadline: Instant) -> Result<(), ComponentError> {
        let _ = self.out.lock().unwrap_or_else(|p| p.into_inner()).flush();
        Ok(())
    }
}
