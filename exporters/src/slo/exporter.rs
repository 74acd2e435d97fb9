//! The running evaluator: takes metric batches in, keeps the counts, evaluates on a timer,
//! publishes the figures and sends the alerts.
//!
//! `consume` is synchronous inside: the batch's points become increments that go into the
//! store (memory) or the bounded local buffer (Redis) before the batch is acknowledged, so a
//! dropped future loses nothing. One background task flushes to Redis, evaluates, writes
//! snapshots and resends firing alerts; one task per webhook sends; the HTTP server answers
//! from the latest evaluation.
//!
//! The same runtime is the `slo` exporter and the `slo` connector: given an `output` (the
//! connector's metrics pipelines), every evaluation also offers its `slo_*` gauges to a task
//! that emits them there as OTLP (`emit.rs`, `figures.rs`).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::health::{ComponentStatus, HealthReporter};
use pipeline_core::net::HttpServer;
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::time::now_unix_nanos;
use pipeline_core::{Batch, Component, ComponentError, ConsumeError, Consumer, Host, Payload};
use prometheus::IntCounterVec;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{SloDefinition, SloExporterConfig, StoreConfig};
use super::emit::Emitter;
use super::eval::{AlertStates, Rules, SloReport, Transition};
use super::figures::{families, metrics_text};
use super::increments::{ExtractContext, Increment, Selectors, SeriesTracker, reason};
use super::page::status_page;
use super::state::SloBuckets;
use super::store::memory::{self, Snapshot};
use super::store::redis::{Pending, RedisBackend};
use super::webhook::{AmAlert, Outcome, Webhook};

/// Where the counts are kept, under the core lock.
pub(crate) enum Local {
    /// `store: memory`: the buckets themselves.
    Memory(Vec<SloBuckets>),
    /// `store: redis`: increments not yet written.
    Redis(Pending),
}

/// State changed by every batch.
pub(crate) struct Core {
    pub(crate) tracker: SeriesTracker,
    /// The data clock: the newest point time seen (Unix nanoseconds).
    pub(crate) clock: u64,
    /// The latest problem with each SLO's data.
    pub(crate) problems: Vec<Option<String>>,
    pub(crate) local: Local,
}

/// The latest evaluation.
#[derive(Default)]
pub(crate) struct Published {
    pub(crate) reports: Vec<SloReport>,
    pub(crate) store: String,
}

pub(crate) struct Inner {
    id: String,
    config: SloExporterConfig,
    names: Vec<String>,
    windows: Vec<u64>,
    selectors: Selectors,
    rules: Rules,
    rule_labels: Vec<(String, String)>,
    watch_start: u64,
    telemetry: ComponentTelemetry,
    notifications: Option<IntCounterVec>,
    health: HealthReporter,
    pub(crate) core: Mutex<Core>,
    redis: Option<RedisBackend>,
    redis_view: Mutex<Option<Vec<SloBuckets>>>,
    store_status: Mutex<String>,
    published: RwLock<Arc<Published>>,
    alerts: Mutex<AlertStates>,
    webhooks: Vec<Arc<Webhook>>,
    generator_url: String,
    /// The connector's metrics pipelines, offered the gauges after every evaluation.
    emitter: Option<Arc<Emitter>>,
}

/// The `slo` exporter, and with an output the `slo` connector.
pub(crate) struct SloExporter {
    pub(crate) inner: Arc<Inner>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    server: Mutex<Option<Arc<HttpServer>>>,
}

fn defs(config: &SloExporterConfig) -> &[SloDefinition] {
    &config.slos
}

impl SloExporter {
    /// `output`: where a connector emits the gauges; `None` for the exporter.
    pub(crate) fn new(
        id: String,
        config: SloExporterConfig,
        telemetry: ComponentTelemetry,
        health: HealthReporter,
        output: Option<SharedConsumer>,
    ) -> Result<SloExporter, String> {
        let defs = defs(&config);
        let windows: Vec<u64> = defs.iter().map(|d| d.window.get().as_secs()).collect();
        let mut core = Core {
            tracker: SeriesTracker::default(),
            clock: 0,
            problems: vec![None; defs.len()],
            local: Local::Memory(Vec::new()),
        };
        let (redis, store_status) = match &config.store {
            StoreConfig::Memory(m) => {
                let mut buckets: Vec<SloBuckets> =
                    windows.iter().map(|w| SloBuckets::new(*w)).collect();
                if let Some(path) = &m.snapshot_path {
                    match memory::load(path) {
                        Ok(Some(mut snap)) => {
                            buckets = snap.buckets_for(defs);
                            core.tracker = std::mem::take(&mut snap.tracker);
                            core.clock = snap.clock;
                            tracing::info!(exporter = %id, path = %path.display(), "SLO snapshot restored");
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(exporter = %id, error = %e, "SLO snapshot not restored; starting empty")
                        }
                    }
                }
                core.local = Local::Memory(buckets);
                let status = match &m.snapshot_path {
                    Some(p) => format!("memory, snapshot {}", p.display()),
                    None => "memory (not kept across restarts)".into(),
                };
                (None, status)
            }
            StoreConfig::Redis(r) => {
                core.local = Local::Redis(Pending::new(defs.len(), r.max_buffered_buckets));
                if let Some(path) = &r.series_path {
                    // Written at the last clean shutdown; removed once read, so that after a
                    // crash the series start from a baseline rather than from stale values.
                    match memory::load(path) {
                        Ok(Some(snap)) => {
                            core.tracker = snap.tracker;
                            let _ = std::fs::remove_file(path);
                            tracing::info!(exporter = %id, path = %path.display(), series = core.tracker.len(), "series tracker restored");
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(exporter = %id, error = %e, "series tracker not restored")
                        }
                    }
                }
                (
                    Some(RedisBackend::new(r)?),
                    format!(
                        "redis {} (prefix {})",
                        crate::helper::redact_url(&r.url),
                        r.key_prefix
                    ),
                )
            }
        };
        let webhooks = config
            .webhooks
            .iter()
            .map(|w| Webhook::new(w).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let rules = Rules {
            budget: config.budget_alerts.clone(),
            burn_rate: config.burn_rate_alerts.clone(),
        };
        let rule_labels = rules
            .burn_rate
            .iter()
            .map(|r| (r.rule_name(), r.severity.clone()))
            .chain(
                rules
                    .budget
                    .iter()
                    .map(|r| (r.rule_name(), r.severity.clone())),
            )
            .collect();
        let notifications = telemetry
            .counter_family(
                "sightline_slo_notifications_total",
                "Alert webhook POSTs by outcome (sent, failed, gave_up).",
                &["outcome"],
            )
            .ok();
        let generator_url = format!("http://{}/", config.endpoint);
        let emitter = output.map(|o| Arc::new(Emitter::new(o, telemetry.clone())));
        Ok(SloExporter {
            inner: Arc::new(Inner {
                id,
                names: defs.iter().map(|d| d.name.clone()).collect(),
                windows,
                selectors: Selectors::new(defs),
                rules,
                rule_labels,
                watch_start: now_unix_nanos(),
                telemetry,
                notifications,
                health,
                core: Mutex::new(core),
                redis,
                redis_view: Mutex::new(None),
                store_status: Mutex::new(store_status),
                published: RwLock::new(Arc::new(Published::default())),
                alerts: Mutex::new(AlertStates::default()),
                webhooks,
                generator_url,
                emitter,
                config,
            }),
            cancel: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            server: Mutex::new(None),
        })
    }

    /// The bound address of the endpoint, once started.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.local_addr())
    }
}

impl Inner {
    fn lock_core(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a batch's points; returns (points dropped by reason, whether the local buffer
    /// refused some).
    pub(crate) fn count(&self, payload: &Payload) -> (Vec<(&'static str, usize)>, bool) {
        let Payload::Metrics(rm) = payload else {
            return (Vec::new(), false);
        };
        let wall = now_unix_nanos();
        let mut core = self.lock_core();
        let ctx = ExtractContext {
            clock: if core.clock == 0 { wall } else { core.clock },
            wall,
            watch_start: self.watch_start,
            max_series: self.config.max_series,
        };
        let mut extracted = self.selectors.extract(rm, &mut core.tracker, &ctx);
        core.clock = core.clock.max(extracted.newest);
        for inc in &extracted.increments {
            if let Some(p) = core.problems.get_mut(inc.slo) {
                *p = None;
            }
        }
        for (slo, message) in extracted.problems.drain(..) {
            if let Some(p) = core.problems.get_mut(slo) {
                if p.as_deref() != Some(message.as_str()) {
                    let name = self.names.get(slo).map(String::as_str).unwrap_or_default();
                    tracing::error!(exporter = %self.id, slo = %name, "{message}");
                }
                *p = Some(message);
            }
        }
        let mut refused = 0usize;
        match &mut core.local {
            Local::Memory(buckets) => {
                for Increment { slo, time, counts } in &extracted.increments {
                    if let Some(b) = buckets.get_mut(*slo) {
                        b.add(*time, *counts);
                    }
                }
            }
            Local::Redis(pending) => {
                for inc in &extracted.increments {
                    if !pending.add(inc) {
                        refused += 1;
                    }
                }
            }
        }
        drop(core);
        let mut dropped = extracted.dropped;
        if refused > 0 {
            dropped.push((reason::BUFFER_FULL, refused));
        }
        (dropped, refused > 0)
    }

    /// Writes what is buffered to Redis, oldest first, stopping at the first failure.
    async fn flush_redis(&self) {
        let Some(backend) = &self.redis else { return };
        let mut failure = None;
        loop {
            let next = {
                let mut core = self.lock_core();
                let Local::Redis(pending) = &mut core.local else {
                    return;
                };
                pending.seal();
                pending.front()
            };
            let Some(write) = next else { break };
            match backend.write(&self.names, &self.windows, &write).await {
                Ok(()) => {
                    let mut core = self.lock_core();
                    if let Local::Redis(pending) = &mut core.local {
                        pending.written(write_seq(&write));
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        self.report_store(failure);
    }

    fn report_store(&self, failure: Option<String>) {
        let buffered = match &self.lock_core().local {
            Local::Redis(p) => p.buckets(),
            Local::Memory(_) => 0,
        };
        let mut status = self.store_status.lock().unwrap_or_else(|p| p.into_inner());
        let base = status.split(" — ").next().unwrap_or_default().to_string();
        match failure {
            Some(e) => {
                let message =
                    format!("redis store unreachable ({e}); {buffered} buckets buffered locally");
                if !status.contains("unreachable") {
                    tracing::warn!(exporter = %self.id, "{message}");
                }
                self.health
                    .report(ComponentStatus::RecoverableError(message.clone()));
                *status = format!("{base} — degraded: {message}");
            }
            None => {
                if status.contains("unreachable") {
                    tracing::info!(exporter = %self.id, "redis store reachable again; buffered increments written");
                }
                self.health.report(ComponentStatus::Ok);
                *status = base;
            }
        }
    }

    /// Evaluates every SLO now and publishes the result; returns the alert transitions and
    /// the alerts firing.
    async fn evaluate(&self) -> (Vec<Transition>, Vec<Transition>) {
        let clock = {
            let c = self.lock_core().clock;
            if c == 0 { now_unix_nanos() } else { c }
        };
        let defs = defs(&self.config);
        if let Some(backend) = &self.redis {
            match backend
                .read(&self.names, &self.windows, clock / 1_000_000_000)
                .await
            {
                Ok(view) => {
                    *self.redis_view.lock().unwrap_or_else(|p| p.into_inner()) = Some(view);
                }
                Err(e) => self.report_store(Some(e)),
            }
        }
        let evaluation = {
            let core = self.lock_core();
            let mut alerts = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
            match &core.local {
                Local::Memory(buckets) => {
                    alerts.evaluate(defs, buckets, &core.problems, &self.rules, clock)
                }
                Local::Redis(pending) => {
                    let mut view = self
                        .redis_view
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                        .unwrap_or_else(|| {
                            self.windows.iter().map(|w| SloBuckets::new(*w)).collect()
                        });
                    pending.overlay(&mut view);
                    alerts.evaluate(defs, &view, &core.problems, &self.rules, clock)
                }
            }
        };
        let store = self
            .store_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let published = Arc::new(Published {
            reports: evaluation.reports,
            store,
        });
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = published.clone();
        if let Some(emitter) = &self.emitter {
            emitter.offer(&published.reports, &self.rule_labels);
        }
        (evaluation.transitions, evaluation.firing)
    }

    fn notify(&self, alerts: &[Transition]) {
        if self.webhooks.is_empty() || alerts.is_empty() {
            return;
        }
        let am: Vec<_> = alerts
            .iter()
            .map(|t| {
                (
                    t.key.clone(),
                    AmAlert::from_transition(t, &self.generator_url),
                )
            })
            .collect();
        for w in &self.webhooks {
            w.enqueue(am.iter().cloned());
        }
    }

    fn log_transitions(&self, transitions: &[Transition]) {
        for t in transitions {
            let since = pipeline_core::time::rfc3339_micros(t.starts_at);
            match t.ends_at {
                None => tracing::warn!(
                    exporter = %self.id, alertname = t.alertname, slo = %t.key.slo, service = %t.service,
                    severity = %t.severity, rule = %t.key.rule, starts_at = %since, "SLO alert firing: {}", t.summary
                ),
                Some(end) => tracing::info!(
                    exporter = %self.id, alertname = t.alertname, slo = %t.key.slo, service = %t.service,
                    severity = %t.severity, rule = %t.key.rule, starts_at = %since,
                    ends_at = %pipeline_core::time::rfc3339_micros(end), "SLO alert resolved"
                ),
            }
        }
    }

    fn snapshot_bytes(&self) -> Option<Vec<u8>> {
        let core = self.lock_core();
        let Local::Memory(buckets) = &core.local else {
            return None;
        };
        let snap = Snapshot::new(defs(&self.config), buckets, &core.tracker, core.clock);
        serde_json::to_vec(&snap).ok()
    }

    async fn write_snapshot(self: &Arc<Self>) {
        let StoreConfig::Memory(m) = &self.config.store else {
            return;
        };
        let Some(path) = m.snapshot_path.clone() else {
            return;
        };
        let Some(bytes) = self.snapshot_bytes() else {
            return;
        };
        let id = self.id.clone();
        let written =
            tokio::task::spawn_blocking(move || memory::write_atomically(&path, &bytes)).await;
        if let Ok(Err(e)) = written {
            tracing::error!(exporter = %id, error = %e, "cannot write the SLO snapshot");
            self.health
                .report(ComponentStatus::RecoverableError(format!("snapshot: {e}")));
        }
    }

    /// With `store: redis` and `series_path`: writes the series tracker (at shutdown, once
    /// everything it accounts for is in Redis).
    async fn write_series(&self) {
        let StoreConfig::Redis(r) = &self.config.store else {
            return;
        };
        let Some(path) = r.series_path.clone() else {
            return;
        };
        let bytes = {
            let core = self.lock_core();
            serde_json::to_vec(&Snapshot::new(&[], &[], &core.tracker, core.clock))
        };
        let Ok(bytes) = bytes else { return };
        let id = self.id.clone();
        let written =
            tokio::task::spawn_blocking(move || memory::write_atomically(&path, &bytes)).await;
        if let Ok(Err(e)) = written {
            tracing::error!(exporter = %id, error = %e, "cannot write the series tracker");
        }
    }

    /// The background loop: Redis flushes, evaluations, snapshots, resends.
    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let eval_every = self.config.evaluation_interval.get();
        let flush_every = match &self.config.store {
            StoreConfig::Redis(r) => r.flush_interval.get(),
            StoreConfig::Memory(m) => m.snapshot_interval.get(),
        };
        let resend_every = self.config.resend_interval.get();
        let tick = eval_every.min(flush_every).min(Duration::from_secs(1));
        let (mut next_eval, mut next_flush, mut next_resend) = (
            Instant::now(),
            Instant::now() + flush_every,
            Instant::now() + resend_every,
        );
        loop {
            let now = Instant::now();
            if now >= next_flush {
                next_flush = now + flush_every;
                if self.redis.is_some() {
                    self.flush_redis().await;
                } else {
                    self.write_snapshot().await;
                }
            }
            if now >= next_eval {
                next_eval = now + eval_every;
                if self.redis.is_some() {
                    self.flush_redis().await;
                }
                let (transitions, firing) = self.evaluate().await;
                self.log_transitions(&transitions);
                if now >= next_resend {
                    next_resend = now + resend_every;
                    let resolved: Vec<_> = transitions
                        .into_iter()
                        .filter(|t| t.ends_at.is_some())
                        .collect();
                    self.notify(&firing);
                    self.notify(&resolved);
                } else {
                    self.notify(&transitions);
                }
            }
            let wake = next_eval.min(next_flush).min(Instant::now() + tick);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    fn count_notification(&self, outcome: Outcome) {
        if let Some(c) = &self.notifications {
            let label = match outcome {
                Outcome::Sent => "sent",
                Outcome::Failed => "failed",
                Outcome::GaveUp => "gave_up",
            };
            c.with_label_values(&[self.telemetry.id().as_str(), label])
                .inc();
        }
    }

    fn published(&self) -> Arc<Published> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn write_seq(w: &super::store::redis::SealedWrite) -> u64 {
    w.seq()
}

async fn get_slo(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    let body = serde_json::to_vec(&inner.published().reports).unwrap_or_else(|_| b"[]".to_vec());
    ([(CONTENT_TYPE, "application/json")], body)
}

async fn get_page(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    let p = inner.published();
    Html(status_page(&p.reports, &p.store))
}

async fn get_metrics(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    let p = inner.published();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics_text(&families(&p.reports, &inner.rule_labels)),
    )
}

#[async_trait]
impl Consumer for SloExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let signal = batch.signal();
        let items = batch.item_count();
        let (dropped, refused) = self.inner.count(&batch.payload_view());
        let mut lost = 0;
        for (why, n) in &dropped {
            self.inner.telemetry.dropped(signal, *n, why);
            lost += n;
        }
        self.inner
            .telemetry
            .sent(signal, items.saturating_sub(lost));
        if refused {
            batch.dropped();
        } else {
            batch.delivered();
        }
        Ok(())
    }
}

#[async_trait]
impl Component for SloExporter {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let inner = self.inner.clone();
        let router = Router::new()
            .route("/", get(get_page))
            .route("/slo", get(get_slo))
            .route("/metrics", get(get_metrics))
            .with_state(inner.clone());
        let server = HttpServer::start(&inner.config.endpoint, None, router).await?;
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(server));
        // A first evaluation, so the endpoint never answers an empty list for defined SLOs.
        inner.evaluate().await;
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.push(tokio::spawn(inner.clone().run(self.cancel.clone())));
        if let Some(emitter) = &inner.emitter {
            let (emitter, cancel) = (emitter.clone(), self.cancel.clone());
            tasks.push(tokio::spawn(async move { emitter.run(cancel).await }));
        }
        for w in &inner.webhooks {
            let (w, cancel, inner) = (w.clone(), self.cancel.clone(), inner.clone());
            tasks.push(tokio::spawn(async move {
                w.run(cancel, |outcome, _| inner.count_notification(outcome))
                    .await;
            }));
        }
        if inner.redis.is_none() {
            inner.health.report(ComponentStatus::Ok);
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        self.cancel.cancel();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            pipeline_core::component::join_until(Some(t), deadline).await;
        }
        let inner = &self.inner;
        if inner.redis.is_some() {
            let _ = tokio::time::timeout_at(deadline, inner.flush_redis()).await;
            let left = match &inner.lock_core().local {
                Local::Redis(p) => p.buckets(),
                Local::Memory(_) => 0,
            };
            if left > 0 {
                tracing::error!(exporter = %inner.id, buckets = left, "redis unreachable at shutdown; buffered SLO increments lost");
            } else {
                inner.write_series().await;
            }
        } else {
            let _ = tokio::time::timeout_at(deadline, inner.write_snapshot()).await;
        }
        // A last evaluation, so alerts that resolved with the last data are sent.
        if let Ok((transitions, _)) = tokio::time::timeout_at(deadline, inner.evaluate()).await {
            inner.log_transitions(&transitions);
            inner.notify(&transitions);
        }
        // And its figures, into the connector's pipelines (they shut down after it).
        if let Some(emitter) = &inner.emitter {
            emitter.finish(deadline).await;
        }
        for w in &inner.webhooks {
            w.flush_until(deadline).await;
        }
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = server {
            s.shutdown(deadline).await;
        }
        inner.health.report(ComponentStatus::Stopped);
        Ok(())
    }
}
