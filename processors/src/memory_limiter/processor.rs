//! The gate: a task measures resident memory every `check_interval` (and `consume` measures
//! again when the last reading is older than a tenth of it, so a flood is seen quickly);
//! above the soft limit every batch is refused with a retryable error, below it every batch
//! goes on to `next` untouched.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pipeline_core::consumer::SharedConsumer;
use pipeline_core::memory::{MemoryPressure, Registration};
use pipeline_core::telemetry::ComponentTelemetry;
use pipeline_core::{Batch, Capabilities, Component, ComponentError, ConsumeError, Consumer, Host};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::Limits;

/// What a refused sender is asked to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Reads the process's resident memory in bytes.
pub(crate) type MemoryProbe = pipeline_core::memory::ResidentProbe;
pub(crate) use pipeline_core::memory::resident_bytes;

struct Gate {
    limits: Limits,
    probe: MemoryProbe,
    refusing: AtomicBool,
    /// Milliseconds since `epoch` of the last reading.
    last_check_ms: AtomicU64,
    epoch: Instant,
    refusing_gauge: Option<prometheus::IntGauge>,
    resident_gauge: Option<prometheus::IntGauge>,
}

impl Gate {
    /// Measures once and opens or closes the gate.
    fn check(&self) {
        self.last_check_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let Some(resident) = (self.probe)() else {
            return;
        };
        if let Some(g) = &self.resident_gauge {
            g.set(resident as i64);
        }
        let over = resident > self.limits.soft_bytes;
        let was = self.refusing.swap(over, Ordering::AcqRel);
        if over != was {
            if over {
                tracing::warn!(
                    resident_mib = resident >> 20,
                    soft_limit_mib = self.limits.soft_bytes >> 20,
                    hard_limit_mib = self.limits.hard_bytes >> 20,
                    "memory usage above the soft limit: refusing data until it falls"
                );
            } else {
                tracing::info!(
                    resident_mib = resident >> 20,
                    "memory usage back below the soft limit: taking data again"
                );
            }
            if let Some(g) = &self.refusing_gauge {
                g.set(i64::from(over));
            }
        }
    }

    /// Measures again when the last reading is older than a tenth of the check interval.
    fn refresh(&self) {
        let fresh_ms = (self.limits.check_interval.as_millis() as u64 / 10).max(1);
        let now = self.epoch.elapsed().as_millis() as u64;
        if now.saturating_sub(self.last_check_ms.load(Ordering::Relaxed)) >= fresh_ms {
            self.check();
        }
    }
}

/// The `memory_limiter` processor of one pipeline.
pub struct MemoryLimiter {
    gate: Arc<Gate>,
    next: SharedConsumer,
    checker: Mutex<Option<JoinHandle<()>>>,
    /// The process's memory limits, where the soft limit is registered while running so
    /// receivers refuse bodies before reading them.
    pressure: MemoryPressure,
    registration: Mutex<Option<Registration>>,
}

impl MemoryLimiter {
    /// A limiter with `limits`, measuring with `probe`, passing data to `next`.
    pub(crate) fn new(
        limits: Limits,
        probe: MemoryProbe,
        next: SharedConsumer,
        telemetry: ComponentTelemetry,
    ) -> MemoryLimiter {
        let gauge = |name: &str, help: &str| {
            telemetry
                .gauge_family(name, help, &[])
                .ok()
                .map(|f| f.with_label_values(&[telemetry.id().as_str()]))
        };
        let refusing_gauge = gauge(
            "sightline_memory_limiter_refusing",
            "1 while the memory limiter refuses data (resident memory above the soft limit).",
        );
        let resident_gauge = gauge(
            "sightline_memory_limiter_resident_bytes",
            "Resident memory at the memory limiter's last check.",
        );
        if let Some(g) = &refusing_gauge {
            g.set(0);
        }
        MemoryLimiter {
            gate: Arc::new(Gate {
                limits,
                probe,
                refusing: AtomicBool::new(false),
                last_check_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                refusing_gauge,
                resident_gauge,
            }),
            next,
            checker: Mutex::new(None),
            pressure: telemetry.memory_pressure().clone(),
            registration: Mutex::new(None),
        }
    }

    /// Whether data is refused now.
    pub fn is_refusing(&self) -> bool {
        self.gate.refusing.load(Ordering::Acquire)
    }
}

#[async_trait]
impl Consumer for MemoryLimiter {
    /// Never looks inside the data.
    fn capabilities(&self) -> Capabilities {
        Capabilities::MOVES_DATA
    }

    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.gate.refresh();
        if self.is_refusing() {
            // Refused: the sender keeps the data and tries again later (the graph counts
            // the refusal).
            batch.dropped();
            return Err(ConsumeError::Retryable {
                error: "memory usage is above the memory_limiter's soft limit; try again later"
                    .into(),
                retry_after: Some(RETRY_AFTER),
            });
        }
        self.next.consume(batch).await
    }
}

#[async_trait]
impl Component for MemoryLimiter {
    async fn start(&self, _host: &Host) -> Result<(), ComponentError> {
        let gate = Arc::clone(&self.gate);
        gate.check();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(gate.limits.check_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                gate.check();
            }
        });
        *self.checker.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        *self.registration.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(self.pressure.register(self.gate.limits.soft_bytes));
        Ok(())
    }

    async fn shutdown(&self, _deadline: Instant) -> Result<(), ComponentError> {
        let task = self
            .checker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            task.abort();
        }
        self.registration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Ok(())
    }
}
