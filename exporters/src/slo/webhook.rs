//! Alert notifications in Alertmanager's v2 format: `POST <url>` with a JSON array of alerts,
//! each with `labels` (`alertname`, `slo`, `service`, `severity`, `rule`), `annotations`
//! (`summary`, `description`), `startsAt`, `endsAt` (set when resolved) and `generatorURL`.
//!
//! Each webhook has an outbox keyed by the alert's identity (SLO and rule): a newer state of
//! an alert replaces an older one not yet sent, so retries never send a stale state and a
//! flapping alert does not pile up. A sender task posts the whole outbox, retrying failures
//! with the exporters' backoff (`retry_on_failure`); what was sent is removed unless it
//! changed meanwhile. Firing alerts are sent again every `resend_interval`, as Prometheus does,
//! so Alertmanager keeps them active.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Uri};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::WebhookConfig;
use super::eval::{AlertKey, Transition};
use crate::helper::http::HttpPoster;
use crate::helper::{Backoff, RetryConfig, TlsConfig, redact_url};

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AmAlert {
    /// Identity labels.
    pub(crate) labels: BTreeMap<String, String>,
    /// Human text.
    pub(crate) annotations: BTreeMap<String, String>,
    /// RFC 3339.
    #[serde(rename = "startsAt")]
    pub(crate) starts_at: String,
    /// RFC 3339; set when resolved.
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    pub(crate) ends_at: Option<String>,
    /// The status page.
    #[serde(rename = "generatorURL")]
    pub(crate) generator_url: String,
}

impl AmAlert {
    /// The Alertmanager form of a transition.
    pub(crate) fn from_transition(t: &Transition, generator_url: &str) -> AmAlert {
        let labels = [
            ("alertname", t.alertname),
            ("slo", t.key.slo.as_str()),
            ("service", t.service.as_str()),
            ("severity", t.severity.as_str()),
            ("rule", t.key.rule.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let annotations = [
            ("summary".to_string(), t.summary.clone()),
            (
                "description".to_string(),
                format!(
                    "SLO {} of service {}: rule {} ({})",
                    t.key.slo, t.service, t.key.rule, t.severity
                ),
            ),
        ]
        .into_iter()
        .collect();
        AmAlert {
            labels,
            annotations,
            starts_at: pipeline_core::time::rfc3339_micros(t.starts_at),
            ends_at: t.ends_at.map(pipeline_core::time::rfc3339_micros),
            generator_url: generator_url.to_string(),
        }
    }
}

/// One webhook: its outbox and how to reach it.
pub(crate) struct Webhook {
    url: Uri,
    /// `url` as logs show it: scheme, host and port only (webhook URLs often carry a token
    /// in the user info, the path or the query).
    shown: String,
    timeout: Duration,
    retry: RetryConfig,
    /// The shared HTTP client of the exporters (reads at most 64 KiB of an answer).
    poster: HttpPoster,
    outbox: Mutex<BTreeMap<AlertKey, AmAlert>>,
    notify: Notify,
}

/// What happened to one POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx.
    Sent,
    /// Failed; will retry.
    Failed,
    /// Failed and retries ran out; the alerts were dropped.
    GaveUp,
}

impl Webhook {
    pub(crate) fn new(config: &WebhookConfig) -> Result<Webhook, String> {
        let url: Uri = config
            .url
            .parse()
            .map_err(|e| format!("{}: {e}", redact_url(&config.url)))?;
        let mut headers = config
            .headers
            .to_header_map("headers")
            .map_err(|e| e.to_string())?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let redacted = redact_url(&url.to_string());
        let shown = match redacted.find("://") {
            Some(s) => match redacted[s + 3..].find('/') {
                Some(p) => redacted[..s + 3 + p].to_string(),
                None => redacted,
            },
            None => redacted,
        };
        Ok(Webhook {
            url,
            shown,
            timeout: config.timeout.get(),
            retry: config.retry_on_failure.clone(),
            poster: HttpPoster::new(headers, TlsConfig::default()),
            outbox: Mutex::new(BTreeMap::new()),
            notify: Notify::new(),
        })
    }

    /// Queues alerts, replacing older states of the same alerts.
    pub(crate) fn enqueue(&self, alerts: impl IntoIterator<Item = (AlertKey, AmAlert)>) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        let before = outbox.len();
        let mut changed = false;
        for (k, a) in alerts {
            if outbox.get(&k) != Some(&a) {
                outbox.insert(k, a);
                changed = true;
            }
        }
        drop(outbox);
        if changed || before > 0 {
            self.notify.notify_one();
        }
    }

    pub(crate) fn pending(&self) -> Vec<(AlertKey, AmAlert)> {
        self.outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect()
    }

    /// Removes what was sent, unless it changed since.
    fn sent(&self, batch: &[(AlertKey, AmAlert)]) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        for (k, a) in batch {
            if outbox.get(k) == Some(a) {
                outbox.remove(k);
            }
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), String> {
        let answer = tokio::time::timeout(self.timeout, self.poster.post(&self.url, body))
            .await
            .map_err(|_| format!("timed out after {:?}", self.timeout))?
            // The poster shows the path, where webhooks often carry a token: show the host.
            .map_err(|e| {
                e.to_string()
                    .replace(&redact_url(&self.url.to_string()), &self.shown)
            })?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", answer.status))
        }
    }

    /// Posts the outbox until it is empty, retrying with backoff; `report` hears of every
    /// attempt. Returns when the outbox is empty, retries ran out, or `cancel` fired.
    async fn drain(&self, cancel: &CancellationToken, report: &(dyn Fn(Outcome, &str) + Sync)) {
        let mut backoff = Backoff::new(&self.retry);
        let first = Instant::now();
        loop {
            let batch = self.pending();
            if batch.is_empty() {
                return;
            }
            let alerts: Vec<&AmAlert> = batch.iter().map(|(_, a)| a).collect();
            let body = match serde_json::to_vec(&alerts) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode alerts");
                    self.sent(&batch);
                    return;
                }
            };
            match self.post(body).await {
                Ok(()) => {
                    report(Outcome::Sent, "");
                    self.sent(&batch);
                    backoff = Backoff::new(&self.retry);
                }
                Err(e) => {
                    let delay = if self.retry.enabled {
                        backoff.next_delay(first.elapsed(), None)
                    } else {
                        None
                    };
                    let Some(delay) = delay else {
                        tracing::error!(url = %self.shown, error = %e, alerts = batch.len(), "alert webhook failed; retries exhausted, alerts dropped");
                        report(Outcome::GaveUp, &e);
                        self.sent(&batch);
                        return;
                    };
                    tracing::warn!(url = %self.shown, error = %e, retry_in = ?delay, "alert webhook failed");
                    report(Outcome::Failed, &e);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    /// The sender task: drains the outbox whenever something is queued.
    pub(crate) async fn run(
        &self,
        cancel: CancellationToken,
        report: impl Fn(Outcome, &str) + Sync,
    ) {
        loop {
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = cancel.cancelled() => return,
            }
            self.drain(&cancel, &report).await;
        }
    }

    /// One last attempt at what is queued, until `deadline`.
    pub(crate) async fn flush_until(&self, deadline: Instant) {
        let batch = self.pending();
        if batch.is_empty() {
            return;
        }
        let alerts: Vec<&AmAlert> = batch.iter().map(|(_, a)| a).collect();
        if let Ok(body) = serde_json::to_vec(&alerts)
            && let Ok(Ok(())) =
                tokio::time::timeout_at(deadline, self.post(Bytes::from(body))).await
        {
            self.sent(&batch);
        }
    }
}
