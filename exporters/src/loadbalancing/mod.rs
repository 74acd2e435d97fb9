//! The `loadbalancing` exporter: spreads data over several OTLP backends (gateways) so that
//! everything sharing a routing key lands on the same one.
//!
//! Batches come from every pipeline that names the exporter. Each batch is split by routing
//! key ([`RoutingKey`]: trace ID, request ID, service or resource) and each part goes to the
//! backend that owns its key on a consistent-hash ring (`ring.rs`), so adding or removing one
//! of N backends moves only about 1/N of the keys, and every agent with the same backends
//! sends a key to the same one. Each backend has its own `otlp` exporter, built from
//! `protocol.otlp` on the shared exporter helper (its own queue, workers, retries).
//!
//! The backends come from the resolver (`resolver.rs`): a static list, or a DNS name (a Kubernetes
//! headless Service) resolved again every `interval`. Data is moved, not dropped, when:
//!
//! * a backend leaves the list: what waits in its queue goes to the new owners of its keys
//!   at once, and what it has in flight gets one timeout to finish before following;
//! * a backend's exporter runs out of retries on a batch: the backend leaves the ring for
//!   `unhealthy_cooldown`, and that batch and its queue go to the new owners. Only when no
//!   other backend is healthy is the batch dropped, counted as `retries_exhausted`.
//!
//! A batch is split into clones of its acknowledgement handles, one per part, so its
//! source hears "delivered" only when every part was accepted by some backend. Items
//! accepted by backends count as `sent` of this exporter, drops under its ID with their
//! reason; each backend's queue shows as `sightline_queue_size{component_id="<id>/<backend>"}`.

mod config;
mod exporter;
mod resolver;
pub(crate) mod ring;
mod route;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use pipeline_core::factory::ConsumerComponent;
use pipeline_core::{BuildError, CreateContext, ExporterFactory, Signal};

pub use config::{
    DnsResolver, LoadBalancingConfig, Protocol, ResolverConfig, RoutingKey, StaticResolver,
};
pub use exporter::NO_BACKEND;
pub use resolver::{HostsFileLookup, Lookup, SystemLookup};

/// Builds `loadbalancing` exporters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl ExporterFactory for Factory {
    type Config = LoadBalancingConfig;
    const TYPE_NAME: &'static str = "loadbalancing";
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        &self,
        ctx: CreateContext,
        config: LoadBalancingConfig,
    ) -> Result<Arc<dyn ConsumerComponent>, BuildError> {
        Ok(Arc::new(exporter::LoadBalancer::new(
            &ctx,
            config,
            Arc::new(SystemLookup),
        )))
    }
}
