//! Swapping a rebuilt graph in for the running one (a config reload) without closing the
//! ports of unchanged receivers and without losing data.
//!
//! [`Graph::build_next`] builds the new graph beside the running one, taking over every
//! receiver and exporter whose config did not change (same ID, same raw config, and for a
//! receiver the same signals fed) as the running instances. [`Graph::take_over`] then:
//!
//! 1. starts the new processors, connectors and exporters, downstream first; if one fails,
//!    stops them again and hands the old graph back, untouched;
//! 2. stops the old receivers that changed or are gone (their ports close, their requests in
//!    flight finish into the old pipelines);
//! 3. switches the outputs of the taken-over receivers to the new pipelines, and waits until
//!    the calls already running into the old pipelines have returned;
//! 4. starts the new receivers;
//! 5. shuts down the rest of the old graph in data-flow order: what its processors,
//!    connectors and changed exporters still hold drains out (into taken-over exporters,
//!    which keep their queues, or through the old exporters to the same backends).

use std::collections::BTreeSet;

use tokio::time::{Duration, Instant};

use super::{Graph, GraphError, Node};
use crate::component::{ComponentKind, Host};
use crate::health::ComponentStatus;

/// A reload that did not happen: the running graph, handed back, and why.
pub struct Rejected {
    /// The graph that was running and still is.
    pub running: Graph,
    /// What failed.
    pub error: GraphError,
}

impl Graph {
    /// Starts this graph, built by [`Graph::build_next`] from `old`, in place of `old` (see
    /// the module docs). `deadline` bounds the draining of `old`. A component of this graph
    /// that fails to start before the switch leaves `old` running and is returned as
    /// [`Rejected`]; a new receiver that fails to start after it is logged and reported
    /// unhealthy, and the rest runs on.
    pub async fn take_over(
        self,
        old: Graph,
        host: &Host,
        deadline: Instant,
    ) -> Result<Graph, Box<Rejected>> {
        let fresh = |n: &&Node| !self.adopted.contains(&n.key);
        // 1. Everything but receivers, downstream first.
        let inner: Vec<&Node> = self
            .nodes
            .iter()
            .filter(fresh)
            .filter(|n| n.kind != ComponentKind::Receiver)
            .collect();
        for (i, node) in inner.iter().enumerate().rev() {
            if let Err(e) = node.component.start(host).await {
                let stop = Instant::now() + Duration::from_secs(5);
                for started in &inner[i + 1..] {
                    let _ = tokio::time::timeout_at(stop, started.component.shutdown(stop)).await;
                }
                return Err(Box::new(Rejected {
                    running: old,
                    error: GraphError::Start {
                        component: node.key.clone(),
                        source: e,
                    },
                }));
            }
        }
        for node in &inner {
            node.health.report(ComponentStatus::Ok);
        }
        // 2. Old receivers that changed or are gone.
        for node in old
            .nodes
            .iter()
            .filter(|n| n.kind == ComponentKind::Receiver)
        {
            if !self.adopted.contains(&node.key) {
                stop(node, deadline).await;
            }
        }
        // 3. Taken-over receivers feed the new pipelines from now on.
        for (output, target) in &self.switches {
            if !output.switch_and_wait(target.clone(), deadline).await {
                tracing::warn!(
                    "a request into the old pipelines did not finish before the deadline"
                );
            }
        }
        // 4. New receivers.
        for node in self.nodes.iter().filter(fresh) {
            if node.kind != ComponentKind::Receiver {
                continue;
            }
            match node.component.start(host).await {
                Ok(()) => node.health.report(ComponentStatus::Ok),
                Err(e) => {
                    tracing::error!(component = %node.key, error = %e, "cannot start after reload");
                    node.health
                        .report(ComponentStatus::PermanentError(e.to_string()));
                }
            }
        }
        // 5. The rest of the old graph drains out.
        let keys: BTreeSet<&str> = self.nodes.iter().map(|n| n.health.key()).collect();
        for node in &old.nodes {
            if self.adopted.contains(&node.key) {
                continue;
            }
            if node.kind != ComponentKind::Receiver {
                stop(node, deadline).await;
            }
            if !keys.contains(node.health.key()) {
                self.health.remove(node.health.key());
            }
        }
        self.health.set_started(true);
        Ok(self)
    }

    /// What changed against `old`: node keys taken over as they run.
    pub fn adopted(&self) -> impl Iterator<Item = &str> {
        self.adopted.iter().map(String::as_str)
    }
}

/// Shuts one node down within `deadline` (plus a little grace to count its drops).
pub(super) async fn stop(node: &Node, deadline: Instant) {
    let hard = deadline.max(Instant::now()) + Duration::from_millis(500);
    match tokio::time::timeout_at(hard, node.component.shutdown(deadline)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(component = %node.key, error = %e, "shutdown failed"),
        Err(_) => {
            tracing::warn!(component = %node.key, "shutdown did not finish before the deadline")
        }
    }
}
