//! [`LoadBalancer`]: routes each batch's items to the backend owning their key, one `otlp`
//! exporter (queue, retries) per backend, and moves data between backends as they come,
//! go and fail.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::health::{ComponentStatus, HealthRegistry};
use pipeline_core::telemetry::{ComponentTelemetry, reason};
use pipeline_core::{
    Batch, Capabilities, Component, ComponentError, ConsumeError, Consumer, CreateContext, Host,
    WaitingBatch,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::LoadBalancingConfig;
use super::resolver::{Lookup, Resolver};
use super::ring::Ring;
use super::route::KeyReader;
use crate::helper::{Fallback, QueuedExporter};
use crate::otlp::GrpcSender;

/// Drop reason for items no backend could take: none resolved, or every one failing.
pub const NO_BACKEND: &str = "no_backend";

/// One backend: its endpoint and its `otlp` exporter.
struct Backend {
    endpoint: String,
    exporter: QueuedExporter<GrpcSender>,
}

/// The backends now, and the rings over them.
#[derive(Default)]
struct State {
    backends: BTreeMap<String, Arc<Backend>>,
    /// Backends out of the ring until the given time (their data ran out of retries).
    down: BTreeMap<String, Instant>,
    /// The backends not down: where keys go.
    healthy: Ring<Arc<Backend>>,
    /// Every backend: where keys go while all of them are down.
    all: Ring<Arc<Backend>>,
}

impl State {
    fn rebuild(&mut self) {
        fn named(b: &Arc<Backend>) -> (&str, Arc<Backend>) {
            (b.endpoint.as_str(), Arc::clone(b))
        }
        self.all = Ring::new(self.backends.values().map(named));
        self.healthy = Ring::new(
            self.backends
                .values()
                .filter(|b| !self.down.contains_key(&b.endpoint))
                .map(named),
        );
    }

    /// The earliest time a down backend comes back.
    fn next_revival(&self) -> Option<Instant> {
        self.down.values().min().copied()
    }
}

/// The `loadbalancing` exporter's runtime.
pub(crate) struct LoadBalancer {
    shared: Arc<Shared>,
}

struct Shared {
    this: Weak<Shared>,
    id: String,
    telemetry: ComponentTelemetry,
    health: pipeline_core::health::HealthReporter,
    /// The context members are built with: the component's telemetry, a private health
    /// registry (a failing backend shows in the component's status, summarised).
    member_ctx: CreateContext,
    config: LoadBalancingConfig,
    keys: KeyReader,
    resolver: Resolver,
    state: RwLock<State>,
    data_dir: std::sync::Mutex<Option<std::path::PathBuf>>,
    closing: AtomicBool,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// What a backend's exporter could not deliver comes back here.
struct TakeBack {
    shared: Weak<Shared>,
    telemetry: ComponentTelemetry,
    endpoint: String,
}

impl Fallback for TakeBack {
    fn take_back(&self, batch: Batch, why: &'static str) {
        match self.shared.upgrade() {
            Some(shared) => shared.take_back(&self.endpoint, batch, why),
            None => drop_counted(&self.telemetry, batch, why),
        }
    }
}

/// The routed parts, each held so that dropping the list refuses the parts not taken yet.
fn waiting(parts: Vec<(Arc<Backend>, Batch)>) -> Vec<(Arc<Backend>, WaitingBatch)> {
    parts
        .into_iter()
        .map(|(backend, part)| (backend, WaitingBatch::new(part)))
        .collect()
}

/// `batches` held so that dropping the list refuses those not taken yet.
fn held(batches: Vec<Batch>) -> Vec<WaitingBatch> {
    batches.into_iter().map(WaitingBatch::new).collect()
}

/// Counts `batch` as dropped with `why` and fails its handles.
fn drop_counted(telemetry: &ComponentTelemetry, batch: Batch, why: &str) {
    telemetry.dropped(batch.signal(), batch.item_count(), why);
    batch.dropped();
}

/// Which ring a batch may go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Targets {
    /// Healthy backends, or every backend while none is healthy (new data waits in a queue).
    Any,
    /// Healthy backends only (data that already ran out of retries somewhere).
    HealthyOnly,
}

impl LoadBalancer {
    pub(crate) fn new(
        ctx: &CreateContext,
        config: LoadBalancingConfig,
        lookup: Arc<dyn Lookup>,
    ) -> LoadBalancer {
        let member_health = HealthRegistry::default();
        let mut member_ctx = ctx.clone();
        member_ctx.health = member_health.reporter(&ctx.id);
        let keys = KeyReader::new(config.routing_key, config.request_id_attributes.clone());
        let resolver = Resolver::new(&config.resolver, lookup);
        LoadBalancer {
            shared: Arc::new_cyclic(|this| Shared {
                this: this.clone(),
                id: ctx.id.to_string(),
                telemetry: ctx.telemetry.clone(),
                health: ctx.health.clone(),
                member_ctx,
                config,
                keys,
                resolver,
                state: RwLock::new(State::default()),
                data_dir: std::sync::Mutex::new(None),
                closing: AtomicBool::new(false),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// The endpoints of the backends now, and of those of them that are down.
    #[cfg(test)]
    pub(crate) fn backends(&self) -> (Vec<String>, Vec<String>) {
        let state = self.shared.read_state();
        (
            state.backends.keys().cloned().collect(),
            state.down.keys().cloned().collect(),
        )
    }
}

impl Drop for LoadBalancer {
    /// Dropped without `shutdown` (tests, tools): the resolver loop, which holds the shared
    /// state, stops; what the backends hold is counted by their own exporters' drop.
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.stop.cancel();
    }
}

#[async_trait]
impl Consumer for LoadBalancer {
    fn capabilities(&self) -> Capabilities {
        // Reads trace IDs and attributes; never changes the data.
        Capabilities::default()
    }

    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let shared = &self.shared;
        if shared.closing.load(Ordering::SeqCst) {
            batch.dropped();
            return Err(ConsumeError::ShuttingDown);
        }
        if batch.item_count() == 0 {
            batch.delivered();
            return Ok(());
        }
        let parts = match shared.route(batch, Targets::Any) {
            Ok(parts) => parts,
            Err(batch) => {
                batch.dropped();
                return Err(ConsumeError::retryable(
                    "loadbalancing: no backend resolved yet",
                ));
            }
        };
        // Parts not handed on yet are refused (resolved as dropped) if this future is
        // dropped; a part a backend refuses makes the whole call refused, so the caller
        // sends it again (at least once, never lost).
        let mut refused = None;
        for (backend, part) in waiting(parts) {
            let Some(part) = part.take() else { continue };
            if let Err(e) = backend.exporter.consume(part).await {
                refused.get_or_insert(e);
            }
        }
        refused.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl Component for LoadBalancer {
    async fn start(&self, host: &Host) -> Result<(), ComponentError> {
        let shared = &self.shared;
        *shared.data_dir.lock().unwrap_or_else(|p| p.into_inner()) = Some(host.data_dir.clone());
        // The first resolution before data flows, so the first batches have somewhere to go.
        shared.resolve_once().await;
        if let Some(interval) = shared.resolver.interval() {
            let this = Arc::clone(shared);
            shared.tasks.spawn(async move {
                loop {
                    tokio::select! {
                        () = this.stop.cancelled() => return,
                        () = tokio::time::sleep(interval) => {}
                    }
                    this.resolve_once().await;
                }
            });
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let shared = &self.shared;
        shared.closing.store(true, Ordering::SeqCst);
        shared.stop.cancel();
        let backends: Vec<Arc<Backend>> = shared.read_state().backends.values().cloned().collect();
        let mut stopping = tokio::task::JoinSet::new();
        for backend in backends {
            stopping.spawn(async move { backend.exporter.shutdown(deadline).await });
        }
        while stopping.join_next().await.is_some() {}
        // Re-routing and retiring tasks end once every backend refuses data.
        shared.tasks.close();
        let _ =
            tokio::time::timeout_at(deadline + Duration::from_secs(1), shared.tasks.wait()).await;
        shared.health.report(ComponentStatus::Stopped);
        Ok(())
    }
}

impl Shared {
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings back the down backends whose cooldown has passed.
    fn revive(&self) {
        let now = Instant::now();
        if self.read_state().next_revival().is_none_or(|t| t > now) {
            return;
        }
        let mut state = self.write_state();
        let before = state.down.len();
        state.down.retain(|endpoint, until| {
            let keep = *until > now;
            if !keep {
                tracing::info!(exporter = %self.id, backend = %endpoint, "backend back in the ring");
            }
            keep
        });
        if state.down.len() != before {
            state.rebuild();
            drop(state);
            self.report_health();
        }
    }

    /// Splits `batch` into parts per owning backend; the batch back if there is none. Every
    /// part but the last carries clones of the batch's handles, the last the handles
    /// themselves.
    fn route(&self, batch: Batch, targets: Targets) -> Result<Vec<(Arc<Backend>, Batch)>, Batch> {
        self.revive();
        let state = self.read_state();
        let ring = if !state.healthy.is_empty() || targets == Targets::HealthyOnly {
            &state.healthy
        } else {
            &state.all
        };
        if ring.is_empty() {
            return Err(batch);
        }
        let (payload, ctx) = batch.into_parts();
        let owner = |hash: u64| ring.owner_index(hash).unwrap_or_default();
        let parts = self.keys.split(payload, &owner);
        let last = parts.len().saturating_sub(1);
        let mut ctx = Some(ctx);
        let routed = parts
            .into_iter()
            .enumerate()
            .map(|(i, (index, payload))| {
                let part_ctx = if i == last {
                    ctx.take().unwrap_or_default()
                } else {
                    ctx.clone().unwrap_or_default()
                };
                (
                    Arc::clone(&ring.members()[index]),
                    Batch::with_context(payload, part_ctx),
                )
            })
            .collect();
        if let Some(ctx) = ctx {
            // Nothing to route (no item): delivered.
            ctx.delivered();
        }
        Ok(routed)
    }

    /// A backend's exporter gave `batch` up: send it to the backends owning its keys now.
    fn take_back(&self, endpoint: &str, batch: Batch, why: &'static str) {
        if self.closing.load(Ordering::SeqCst) {
            drop_counted(&self.telemetry, batch, why);
            return;
        }
        let targets = if why == reason::RETRIES_EXHAUSTED {
            self.mark_down(endpoint);
            Targets::HealthyOnly
        } else {
            Targets::Any
        };
        let Some(this) = self.this.upgrade() else {
            drop_counted(&self.telemetry, batch, why);
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            drop_counted(&self.telemetry, batch, why);
            return;
        }
        self.tasks
            .spawn(async move { this.reroute(batch, targets, why).await });
    }

    /// Sends `batch` again, to the backends owning its keys now; counts what none takes.
    async fn reroute(&self, batch: Batch, targets: Targets, why: &'static str) {
        let signal = batch.signal();
        let items = batch.item_count();
        let parts = match self.route(batch, targets) {
            Ok(parts) => parts,
            Err(batch) => {
                tracing::error!(
                    exporter = %self.id, %signal, items,
                    "no healthy backend left to take data another backend gave up; dropping it"
                );
                let why = if why == reason::RETRIES_EXHAUSTED {
                    why
                } else {
                    NO_BACKEND
                };
                drop_counted(&self.telemetry, batch, why);
                return;
            }
        };
        tracing::info!(exporter = %self.id, %signal, items, "re-routing data another backend gave up");
        // Held as waiting: a part not handed on when this task is cut off is refused
        // (resolved as dropped), never dropped unresolved.
        for (backend, part) in waiting(parts) {
            let Some(part) = part.take() else { continue };
            let items = part.item_count();
            // A refusal has resolved the part's handles; what remains is to count it.
            if let Err(e) = backend.exporter.consume(part).await {
                let why = if matches!(e, ConsumeError::ShuttingDown) {
                    reason::SHUTDOWN_TIMEOUT
                } else {
                    reason::REFUSED_DOWNSTREAM
                };
                tracing::warn!(
                    exporter = %self.id, backend = %backend.endpoint, %signal, items, error = %e,
                    "backend refused re-routed data; dropping it"
                );
                self.telemetry.dropped(signal, items, why);
            }
        }
    }

    /// Takes `endpoint` out of the ring for the cooldown and sends what waits in its queue
    /// to the backends that own those keys now.
    fn mark_down(&self, endpoint: &str) {
        let until = Instant::now() + self.config.unhealthy_cooldown.get();
        let backend = {
            let mut state = self.write_state();
            let Some(backend) = state.backends.get(endpoint).cloned() else {
                return;
            };
            if state.down.insert(endpoint.to_string(), until).is_some() {
                return;
            }
            state.rebuild();
            backend
        };
        tracing::warn!(
            exporter = %self.id, backend = %endpoint,
            "backend ran out of retries; its keys go to the others for {}",
            self.config.unhealthy_cooldown
        );
        self.report_health();
        let Some(this) = self.this.upgrade() else {
            return;
        };
        self.tasks.spawn(async move {
            for batch in held(backend.exporter.take_queued()) {
                let Some(batch) = batch.take() else { continue };
                this.reroute(batch, Targets::HealthyOnly, reason::RETRIES_EXHAUSTED)
                    .await;
            }
        });
    }

    /// Resolves the backends and applies the result; a failure keeps the last list.
    async fn resolve_once(&self) {
        match self.resolver.resolve().await {
            Ok(endpoints) => self.set_backends(endpoints).await,
            Err(e) => {
                tracing::warn!(exporter = %self.id, error = %e, "keeping the last backends");
                if self.read_state().backends.is_empty() {
                    self.health
                        .report(ComponentStatus::RecoverableError(format!(
                            "no backends: {e}"
                        )));
                }
            }
        }
    }

    /// Makes `endpoints` the backends: starts exporters for new ones, retires the ones gone.
    async fn set_backends(&self, endpoints: Vec<String>) {
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        let mut added = Vec::new();
        let mut removed = Vec::new();
        {
            let mut state = self.write_state();
            let keep: std::collections::BTreeSet<&String> = endpoints.iter().collect();
            let gone: Vec<String> = state
                .backends
                .keys()
                .filter(|e| !keep.contains(e))
                .cloned()
                .collect();
            for endpoint in gone {
                state.down.remove(&endpoint);
                if let Some(b) = state.backends.remove(&endpoint) {
                    removed.push(b);
                }
            }
            for endpoint in &endpoints {
                if state.backends.contains_key(endpoint) {
                    continue;
                }
                match self.build_backend(endpoint) {
                    Ok(backend) => {
                        state
                            .backends
                            .insert(endpoint.clone(), Arc::clone(&backend));
                        added.push(backend);
                    }
                    Err(e) => tracing::error!(
                        exporter = %self.id, backend = %endpoint, error = %e,
                        "cannot build an exporter for this backend; leaving it out"
                    ),
                }
            }
            if added.is_empty() && removed.is_empty() {
                return;
            }
            state.rebuild();
        }
        let host = Host::new(
            self.data_dir
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default(),
        );
        for backend in &added {
            tracing::info!(exporter = %self.id, backend = %backend.endpoint, "backend added");
            if let Err(e) = backend.exporter.start(&host).await {
                tracing::error!(exporter = %self.id, backend = %backend.endpoint, error = %e, "backend exporter failed to start");
            }
        }
        for backend in removed {
            tracing::info!(exporter = %self.id, backend = %backend.endpoint, "backend removed; moving its data");
            let Some(this) = self.this.upgrade() else {
                break;
            };
            self.tasks.spawn(async move { this.retire(backend).await });
        }
        self.report_health();
    }

    fn build_backend(&self, endpoint: &str) -> Result<Arc<Backend>, String> {
        let config = self
            .config
            .otlp_config(endpoint)
            .map_err(|e| e.to_string())?;
        let sender = GrpcSender::new(&config).map_err(|e| e.to_string())?;
        let fallback = Arc::new(TakeBack {
            shared: self.this.clone(),
            telemetry: self.telemetry.clone(),
            endpoint: endpoint.to_string(),
        });
        Ok(Arc::new(Backend {
            endpoint: endpoint.to_string(),
            exporter: QueuedExporter::member(
                &self.member_ctx,
                endpoint,
                config.settings(),
                sender,
                fallback,
            ),
        }))
    }

    /// A backend left the list: its queue goes to the new owners at once; what it has in
    /// flight gets one timeout to finish, then comes back through [`TakeBack`] too.
    async fn retire(&self, backend: Arc<Backend>) {
        for batch in held(backend.exporter.take_queued()) {
            let Some(batch) = batch.take() else { continue };
            self.reroute(batch, Targets::Any, reason::SHUTDOWN_TIMEOUT)
                .await;
        }
        let grace = self
            .config
            .otlp_config(&backend.endpoint)
            .map(|c| c.timeout.get())
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        let _ = backend.exporter.shutdown(Instant::now() + grace).await;
    }

    fn report_health(&self) {
        let state = self.read_state();
        let status = if state.backends.is_empty() {
            ComponentStatus::RecoverableError("no backends".into())
        } else if state.down.is_empty() {
            ComponentStatus::Ok
        } else {
            let down: Vec<&str> = state.down.keys().map(String::as_str).collect();
            ComponentStatus::RecoverableError(format!(
                "backends out of the ring after failing: {}",
                down.join(", ")
            ))
        };
        self.health.report(status);
    }
}
