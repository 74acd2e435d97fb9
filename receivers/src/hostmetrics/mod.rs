//! # `hostmetrics` receiver
//!
//! The USE method for the node an agent runs on: every `collection_interval` it reads CPU,
//! load, memory, paging, file systems, disks, network and processes straight from /proc,
//! /sys and statvfs (under `root_path`, `/hostfs` in a DaemonSet), builds OTLP metrics named
//! by the OpenTelemetry semantic conventions, and hands them to the metrics pipelines that
//! name this receiver. A scraper that fails reports what it could read; the error is logged
//! once and counted (`sightline_hostmetrics_scrape_errors_total`), and scraping goes on.
//!
//! Files: `config.rs` (keys), `emit.rs` (OTLP metric building), `scrapers/` (one file per
//! area), `scraper.rs` (one full scrape), `tests.rs`.

mod config;
mod emit;
mod scraper;
mod scrapers;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::{
    Batch, BuildError, Component, ComponentError, CreateContext, Host, Payload, ReceiverFactory,
    Signal, SignalConsumers,
};
use prometheus::IntCounterVec;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{
    DiskOptions, FilesystemOptions, HostMetricsConfig, NetworkOptions, NoOptions, PSEUDO_FS_TYPES,
    Scrapers,
};
pub use scraper::{HostScraper, ScrapeProblem};

/// Builds `hostmetrics` receivers.
pub struct Factory;

impl ReceiverFactory for Factory {
    type Config = HostMetricsConfig;
    const TYPE_NAME: &'static str = "hostmetrics";
    const SIGNALS: &'static [Signal] = &[Signal::Metrics];

    fn build(
        &self,
        ctx: CreateContext,
        config: HostMetricsConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Component>, BuildError> {
        let errors = ctx
            .telemetry
            .counter_family(
                "sightline_hostmetrics_scrape_errors_total",
                "Problems a hostmetrics scraper met (unreadable or malformed files, failed statvfs).",
                &["scraper"],
            )
            .map_err(|e| BuildError::Other(e.to_string()))?;
        let (stop, _) = watch::channel(false);
        Ok(Arc::new(HostMetricsReceiver {
            config,
            next: next.get(Signal::Metrics).clone(),
            telemetry: ctx.telemetry,
            errors,
            stop,
            task: Mutex::new(None),
        }))
    }
}

/// A running (or not yet started) host metrics receiver.
pub struct HostMetricsReceiver {
    config: HostMetricsConfig,
    next: Option<SharedConsumer>,
    telemetry: ComponentTelemetry,
    errors: IntCounterVec,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Loop {
    config: HostMetricsConfig,
    next: SharedConsumer,
    telemetry: ComponentTelemetry,
    errors: IntCounterVec,
    logged: HashSet<String>,
}

impl Loop {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut scraper = Some(HostScraper::new(&self.config));
        let mut next_tick = Instant::now() + self.config.initial_delay.get();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_tick) => {}
                _ = stop.changed() => return,
            }
            next_tick += self.config.collection_interval.get();
            let Some(mut s) = scraper.take() else { return };
            // File reads and statvfs can block (a hung network mount): keep them off the
            // async workers.
            let Ok((s, (rm, problems))) = tokio::task::spawn_blocking(move || {
                let r = s.scrape();
                (s, r)
            })
            .await
            else {
                return;
            };
            scraper = Some(s);
            self.report(&problems);
            let batch = Batch::new(Payload::Metrics(vec![rm]));
            let items = batch.item_count();
            if let Err(e) = self.next.consume(batch).await {
                // The next scrape carries fresh values; this one is counted as lost.
                tracing::warn!(error = %e, items, "hostmetrics: the pipeline refused a scrape");
                self.telemetry
                    .dropped(Signal::Metrics, items, "refused_downstream");
            }
            if Instant::now() > next_tick {
                next_tick = Instant::now();
            }
        }
    }

    fn report(&mut self, problems: &[ScrapeProblem]) {
        for p in problems {
            self.errors
                .with_label_values(&[self.telemetry.id().as_str(), p.scraper()])
                .inc();
            if self.logged.insert(p.to_string()) {
                tracing::warn!(problem = %p, "hostmetrics: scraper problem (logged once; counted every time)");
            }
        }
    }
}

#[async_trait]
impl Component for HostMetricsReceiver {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let Some(next) = self.next.clone() else {
            return Ok(());
        };
        let task = Loop {
            config: self.config.clone(),
            next,
            telemetry: self.telemetry.clone(),
            errors: self.errors.clone(),
            logged: HashSet::new(),
        };
        let handle = tokio::spawn(task.run(self.stop.subscribe()));
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) -> Result<(), ComponentError> {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        pipeline_core::component::join_until(task, deadline).await;
        Ok(())
    }
}
