//! Hands each batch to the pipelines of the same signal on the receiving side.

use async_trait::async_trait;
use pipeline_core::{Batch, Component, ConsumeError, Consumer, SignalConsumers};

/// The `forward` connector.
pub struct ForwardConnector {
    pub(crate) next: SignalConsumers,
}

#[async_trait]
impl Consumer for ForwardConnector {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        match self.next.get(batch.signal()) {
            Some(next) => next.consume(batch).await,
            None => {
                let signal = batch.signal();
                batch.dropped();
                Err(ConsumeError::permanent(format!(
                    "no {signal} pipeline receives from this connector"
                )))
            }
        }
    }
}

impl Component for ForwardConnector {}
