//! Health that follows the backend: ok after a success, recoverable while it fails
//! retryably, permanent when it refuses us for good.

use std::sync::Mutex;

use pipeline_core::health::{ComponentStatus, HealthReporter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Other,
    Ok,
    Failing,
}

/// Reports status transitions only, so the success path costs one uncontended lock.
pub(crate) struct HealthTracker {
    reporter: HealthReporter,
    state: Mutex<State>,
}

impl HealthTracker {
    pub(crate) fn new(reporter: HealthReporter) -> HealthTracker {
        HealthTracker {
            reporter,
            state: Mutex::new(State::Other),
        }
    }

    fn set(&self, state: State, status: ComponentStatus) {
        // Report under the lock so that concurrent workers leave the last word in place.
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s = state;
        self.reporter.report(status);
    }

    pub(crate) fn ok(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *s != State::Ok {
            *s = State::Ok;
            self.reporter.report(ComponentStatus::Ok);
        }
    }

    pub(crate) fn recoverable(&self, reason: &str) {
        self.set(
            State::Failing,
            ComponentStatus::RecoverableError(reason.to_string()),
        );
    }

    pub(crate) fn permanent(&self, reason: &str) {
        self.set(
            State::Failing,
            ComponentStatus::PermanentError(reason.to_string()),
        );
    }

    pub(crate) fn stopped(&self) {
        self.set(State::Other, ComponentStatus::Stopped);
    }
}
