//! Component health, as the probes report it.
//!
//! Each component gets a [`HealthReporter`] at build time and reports its status; the
//! service's `/health/ready` is ready when the graph has started and no component is in
//! permanent failure, `/health/startup` once the graph has started, `/health/live` whenever
//! the runtime answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::component::ComponentId;

/// A component's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentStatus {
    /// Built, not yet started.
    Starting,
    /// Working.
    Ok,
    /// Failing, but expected to recover on its own (a backend that is down; retries go on).
    RecoverableError(String),
    /// Failing until someone acts (credentials rejected, endpoint does not exist).
    PermanentError(String),
    /// Shut down.
    Stopped,
}

impl ComponentStatus {
    /// A short word for the probe body.
    pub fn describe(&self) -> String {
        match self {
            ComponentStatus::Starting => "starting".into(),
            ComponentStatus::Ok => "ok".into(),
            ComponentStatus::RecoverableError(m) => format!("recoverable error: {m}"),
            ComponentStatus::PermanentError(m) => format!("permanent error: {m}"),
            ComponentStatus::Stopped => "stopped".into(),
        }
    }
}

#[derive(Default)]
struct Inner {
    statuses: Mutex<BTreeMap<String, ComponentStatus>>,
    started: AtomicBool,
}

/// Every component's status, shared by the service and the probes.
#[derive(Clone, Default)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

/// What a probe answers: ready or not, and a line per component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Whether traffic may be routed here.
    pub ready: bool,
    /// Component key (`exporter/otlp`) -> status.
    pub checks: BTreeMap<String, String>,
}

impl HealthRegistry {
    /// The reporter for one component.
    pub fn reporter(&self, id: &ComponentId) -> HealthReporter {
        self.reporter_for_key(id.as_str().to_string())
    }

    /// A reporter under an explicit key (`exporter/otlp`).
    pub fn reporter_for_key(&self, key: String) -> HealthReporter {
        self.set(&key, ComponentStatus::Starting);
        HealthReporter {
            registry: self.clone(),
            key,
        }
    }

    /// A reporter under `key` that leaves the current status as it is until it reports: for
    /// a graph built beside a running one (a reload).
    pub fn reporter_quiet(&self, key: String) -> HealthReporter {
        HealthReporter {
            registry: self.clone(),
            key,
        }
    }

    /// Forgets a component that is gone (removed by a reload).
    pub fn remove(&self, key: &str) {
        let mut s = self
            .inner
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.remove(key);
    }

    fn set(&self, key: &str, status: ComponentStatus) {
        let mut s = self
            .inner
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.insert(key.to_string(), status);
    }

    /// Marks the whole graph started (or not).
    pub fn set_started(&self, started: bool) {
        self.inner.started.store(started, Ordering::Release);
    }

    /// Whether the whole graph has started.
    pub fn started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// Ready when started and nothing is in permanent failure.
    pub fn readiness(&self) -> Readiness {
        let statuses = self
            .inner
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let permanent = statuses
            .values()
            .any(|s| matches!(s, ComponentStatus::PermanentError(_)));
        Readiness {
            ready: self.started() && !permanent,
            checks: statuses
                .iter()
                .map(|(k, v)| (k.clone(), v.describe()))
                .collect(),
        }
    }
}

/// One component's handle for reporting its status.
#[derive(Clone)]
pub struct HealthReporter {
    registry: HealthRegistry,
    key: String,
}

impl HealthReporter {
    /// The key it reports under (`exporter/otlp`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reports a new status.
    pub fn report(&self, status: ComponentStatus) {
        self.registry.set(&self.key, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_error_makes_unready() {
        let reg = HealthRegistry::default();
        let r = reg.reporter(&ComponentId::parse("otlp").unwrap());
        assert!(!reg.readiness().ready);
        reg.set_started(true);
        r.report(ComponentStatus::Ok);
        assert!(reg.readiness().ready);
        r.report(ComponentStatus::RecoverableError("down".into()));
        assert!(reg.readiness().ready);
        r.report(ComponentStatus::PermanentError("401".into()));
        let rd = reg.readiness();
        assert!(!rd.ready);
        assert!(rd.checks["otlp"].contains("401"));
    }
}
