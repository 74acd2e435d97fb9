//! Hands each batch to the pipelines of the same signal on the receiving side.

use async_trait::async_trait;
use pipeline_core::{Batch, Capabilities, Component, ConsumeError, Consumer, SignalConsumers};

/// The `forward` connector.
pub struct ForwardConnector {
    pub(crate) next: SignalConsumers,
}

#[async_trait]
impl Consumer for ForwardConnector {
    /// Reads only if every pipeline it feeds reads: it passes the data on as it is.
    fn capabilities(&self) -> Capabilities {
        let mut reads = true;
        let mut mutates = false;
        for (_, next) in self.next.iter() {
            if let Some(next) = next {
                let c = next.capabilities();
                reads &= c.reads_data;
                mutates |= c.mutates_data;
            }
        }
        Capabilities {
            mutates_data: mutates,
            reads_data: reads,
        }
    }

    /// Durable when every pipeline it feeds is.
    fn acks_durably(&self) -> bool {
        self.next
            .iter()
            .all(|(_, next)| next.as_ref().is_none_or(|n| n.acks_durably()))
    }

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
