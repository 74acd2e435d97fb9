//! Test helpers shared by the exporters' tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use pipeline_core::config::HumanDuration;
use pipeline_core::factory::ConsumerComponent;
use pipeline_core::health::HealthRegistry;
use pipeline_core::telemetry::Telemetry;
use pipeline_core::{ComponentId, ComponentKind, CreateContext, ExporterFactory, Host};
use tokio::time::Instant;

use super::config::{ExporterSettings, QueueConfig, RetryConfig};

/// A context whose telemetry and health the test can read.
pub(crate) struct TestCtx {
    pub(crate) ctx: CreateContext,
    pub(crate) telemetry: Telemetry,
    pub(crate) health: HealthRegistry,
}

impl TestCtx {
    pub(crate) fn new(id: &str) -> TestCtx {
        let telemetry = Telemetry::new();
        let health = HealthRegistry::default();
        let mut ctx = CreateContext::for_tests(ComponentKind::Exporter, id);
        let cid = ComponentId::parse(id).unwrap();
        ctx.telemetry = telemetry.component(ComponentKind::Exporter, &cid);
        ctx.health = health.reporter(&cid);
        TestCtx {
            ctx,
            telemetry,
            health,
        }
    }

    /// The value of a metric series whose labels include all of `labels`; 0 if absent.
    pub(crate) fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        pipeline_core::testing::metric_sum(&self.telemetry.render(), name, labels)
    }

    pub(crate) fn sent(&self, signal: &str) -> f64 {
        self.metric(
            "sightline_component_items_sent_total",
            &[("signal", signal)],
        )
    }

    pub(crate) fn dropped(&self, signal: &str, reason: &str) -> f64 {
        self.metric(
            "sightline_component_items_dropped_total",
            &[("signal", signal), ("reason", reason)],
        )
    }

    pub(crate) fn send_attempts(&self, outcome: &str) -> f64 {
        self.metric(
            "sightline_exporter_send_duration_seconds_count",
            &[("outcome", outcome)],
        )
    }

    /// The health line of the component.
    pub(crate) fn health(&self) -> String {
        self.health
            .readiness()
            .checks
            .values()
            .next()
            .cloned()
            .unwrap_or_default()
    }
}

/// Retries that fit in a test: 20ms, 30ms, ... up to 100ms, for at most `max_elapsed`.
pub(crate) fn fast_retry(max_elapsed: Duration) -> RetryConfig {
    RetryConfig {
        enabled: true,
        initial_interval: HumanDuration::from_millis(20),
        randomization_factor: 0.0,
        multiplier: 1.5,
        max_interval: HumanDuration::from_millis(100),
        max_elapsed_time: HumanDuration(max_elapsed),
    }
}

/// Settings with fast retries and a small queue.
pub(crate) fn fast_settings() -> ExporterSettings {
    ExporterSettings {
        timeout: HumanDuration::from_secs(5),
        retry_on_failure: fast_retry(Duration::from_secs(10)),
        sending_queue: QueueConfig {
            enabled: true,
            num_consumers: 2,
            queue_size: 100,
            block_on_overflow: true,
        },
    }
}

/// Builds an exporter of `factory` on `t`'s context and starts it.
pub(crate) async fn start_exporter(
    factory: &dyn ExporterFactory,
    t: &TestCtx,
    config: serde_json::Value,
) -> std::sync::Arc<dyn ConsumerComponent> {
    let x = factory.create(t.ctx.clone(), &config).unwrap();
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    x
}

/// `config` with retries that fit in a test (10ms to 50ms, for at most 10s).
pub(crate) fn fast_retries(mut config: serde_json::Value) -> serde_json::Value {
    config["retry_on_failure"] = serde_json::json!({
        "initial_interval": "10ms", "max_interval": "50ms", "max_elapsed_time": "10s"
    });
    config
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A deadline `secs` from now.
pub(crate) fn in_secs(secs: f64) -> Instant {
    Instant::now() + Duration::from_secs_f64(secs)
}

/// A self-signed certificate for `localhost`, its key, and the certificate written to a
/// file under `dir` (to use as `tls.ca_file`).
pub(crate) struct TestCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) ca_file: std::path::PathBuf,
}

impl TestCert {
    pub(crate) fn new(name: &str) -> TestCert {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert_pem = certified.cert.pem();
        let key_pem = certified.signing_key.serialize_pem();
        let dir = std::env::temp_dir().join(format!(
            "sightline-exporters-tls-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &cert_pem).unwrap();
        TestCert {
            cert_pem,
            key_pem,
            ca_file,
        }
    }
}

/// What became of the acknowledgement tokens of the batches made by [`Acks::track`]: one
/// entry per token, `true` for delivered, in the order they were resolved.
#[derive(Clone, Default)]
pub(crate) struct Acks(std::sync::Arc<std::sync::Mutex<Vec<bool>>>);

impl Acks {
    /// `batch` with one more token, reporting here.
    pub(crate) fn track(&self, mut batch: pipeline_core::Batch) -> pipeline_core::Batch {
        let outcomes = self.0.clone();
        batch.ctx.acks.push(pipeline_core::AckToken::new(move |ok| {
            outcomes.lock().unwrap().push(ok);
        }));
        batch
    }

    /// The outcomes so far.
    pub(crate) fn outcomes(&self) -> Vec<bool> {
        self.0.lock().unwrap().clone()
    }
}
