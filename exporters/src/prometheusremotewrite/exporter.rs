//! The running `prometheusremotewrite` exporter: delta points made cumulative, then the
//! exporter helper's queue, retries and counting around [`RemoteWriteSender`].

use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::{
    Batch, Component, ComponentError, ConsumeError, Consumer, CreateContext, Host, Payload, Signal,
};
use tokio::sync::Mutex;

use super::config::RemoteWriteConfig;
use super::sender::RemoteWriteSender;
use crate::helper::QueuedExporter;
use crate::helper::prometheus::{DeltaToCumulative, MAX_SERIES};

/// Most delta series whose running totals are kept.
pub const MAX_DELTA_SERIES: usize = 100_000;
/// A delta series without a point for this long starts over.
pub const DELTA_EXPIRY: Duration = Duration::from_secs(300);

/// The `prometheusremotewrite` exporter.
pub struct RemoteWriteExporter {
    /// Running totals of delta series. Held across the push into the queue, so batches
    /// enter the queue in the order their totals were computed.
    deltas: Mutex<DeltaToCumulative>,
    telemetry: ComponentTelemetry,
    queued: QueuedExporter<RemoteWriteSender>,
}

impl RemoteWriteExporter {
    pub(crate) fn new(
        ctx: &CreateContext,
        config: &RemoteWriteConfig,
    ) -> Result<RemoteWriteExporter, pipeline_core::FieldError> {
        let sender = RemoteWriteSender::new(config)?;
        Ok(RemoteWriteExporter {
            deltas: Mutex::new(DeltaToCumulative::new(MAX_DELTA_SERIES, DELTA_EXPIRY)),
            telemetry: ctx.telemetry.clone(),
            queued: QueuedExporter::new(ctx, config.settings(), sender),
        })
    }
}

#[async_trait]
impl Consumer for RemoteWriteExporter {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        let mut deltas = self.deltas.lock().await;
        if let Payload::Metrics(resource_metrics) = batch.payload_mut() {
            let over = deltas.convert(resource_metrics);
            self.telemetry.dropped(Signal::Metrics, over, MAX_SERIES);
            if over > 0 && batch.item_count() == 0 {
                // Nothing left to send: the batch ends here, counted.
                batch.dropped();
                return Ok(());
            }
        }
        self.queued.consume(batch).await
    }
}

#[async_trait]
impl Component for RemoteWriteExporter {
    async fn start(&self, host: &Host) -> Result<(), ComponentError> {
        self.queued.start(host).await
    }

    async fn shutdown(&self, deadline: tokio::time::Instant) -> Result<(), ComponentError> {
        self.queued.shutdown(deadline).await
    }
}
