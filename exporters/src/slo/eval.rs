//! From bucketed counts to figures and alerts: the SLI over the window, the error budget in
//! ratio and minutes (the seed's formulas), burn rates, the budget burn-down, and the alert
//! rules' state machine (fire when every condition holds, resolve when one stops holding).
//!
//! Pure functions of the buckets and the data clock (`now`, Unix nanoseconds), so tests
//! replay a month in milliseconds.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use super::config::{BudgetAlertRule, BurnRateRule, SloDefinition, window_label};
use super::state::{Counts, HOUR, SloBuckets};

/// The windows whose burn rates are always reported.
pub const REPORTED_WINDOWS: [u64; 5] = [300, 1800, 3600, 6 * 3600, 3 * 86_400];

/// Tolerance of the budget thresholds, so that exactly 50% consumed is 50%.
const EPSILON: f64 = 1e-9;

/// The error budget of one SLO over its window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBudget {
    /// The budget as a ratio (1 - objective).
    pub total_ratio: f64,
    /// The budget in minutes of the window (43.2 for 99.9% over 30 days).
    pub total_minutes: f64,
    /// Share of the budget spent (1 is all of it; above 1 is overspent).
    pub consumed_ratio: f64,
    /// Minutes of the window spent: the error rate times the window.
    pub consumed_minutes: f64,
    /// 1 - consumed (negative when overspent).
    pub remaining_ratio: f64,
    /// Budget minutes left (negative when overspent).
    pub remaining_minutes: f64,
}

/// One firing alert, as `GET /slo` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiringAlert {
    /// The `rule` label (`burn-rate-14.4x-1h-5m`, `budget-75%`).
    pub rule: String,
    /// The `severity` label.
    pub severity: String,
    /// Always `firing` here.
    pub state: &'static str,
    /// When it started firing, RFC 3339 (data time).
    pub since: String,
}

/// The figures of one SLO at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloReport {
    /// The SLO's name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// Its description.
    pub description: String,
    /// The objective as a ratio (0.999).
    pub objective: f64,
    /// The window in seconds.
    pub window_seconds: u64,
    /// The SLI over the window, a ratio (1 when there were no events).
    pub sli: f64,
    /// Events over the window.
    pub total_events: i64,
    /// Bad events over the window.
    pub bad_events: i64,
    /// The error budget.
    pub error_budget: ErrorBudget,
    /// Burn rate per window (`5m`, `30m`, `1h`, `6h`, `3d`, and the rules' windows).
    pub burn_rates: BTreeMap<String, f64>,
    /// The alerts firing now.
    pub alerts: Vec<FiringAlert>,
    /// The data clock the figures are for, RFC 3339.
    pub evaluated_at: String,
    /// A problem with the data (a latency threshold that is not a bucket boundary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Budget remaining (ratio) at each hour of the window, oldest first: the burn-down.
    #[serde(skip)]
    pub burndown: Vec<f64>,
}

/// What the evaluator needs of the config.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Budget thresholds, in any order.
    pub budget: Vec<BudgetAlertRule>,
    /// Burn-rate rules.
    pub burn_rate: Vec<BurnRateRule>,
}

/// Error rate over a window, 0 without events.
fn error_rate(c: Counts) -> f64 {
    if c.total <= 0 {
        0.0
    } else {
        c.bad_clamped() as f64 / c.total as f64
    }
}

/// The burn rate of `c`: its error rate over the budget.
pub fn burn_rate(c: Counts, budget_ratio: f64) -> f64 {
    error_rate(c) / budget_ratio
}

/// The seed's error budget for `window` events under `def`.
pub fn error_budget(def: &SloDefinition, window: Counts) -> ErrorBudget {
    let budget = def.budget_ratio();
    let window_minutes = def.window.get().as_secs_f64() / 60.0;
    let rate = error_rate(window);
    let total_minutes = budget * window_minutes;
    let consumed_minutes = rate * window_minutes;
    let consumed_ratio = rate / budget;
    ErrorBudget {
        total_ratio: budget,
        total_minutes,
        consumed_ratio,
        consumed_minutes,
        remaining_ratio: 1.0 - consumed_ratio,
        remaining_minutes: total_minutes - consumed_minutes,
    }
}

/// The highest budget rule reached by `consumed_ratio` (the seed checks 100, then 75, then
/// 50, and raises only the first that holds).
pub fn budget_rule_reached(rules: &[BudgetAlertRule], consumed_ratio: f64) -> Option<usize> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| consumed_ratio * 100.0 >= r.consumed - EPSILON * r.consumed.max(1.0))
        .max_by(|a, b| a.1.consumed.total_cmp(&b.1.consumed))
        .map(|(i, _)| i)
}

/// One alert's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    /// The SLO's name.
    pub slo: String,
    /// The `rule` label.
    pub rule: String,
}

/// A rule's state change.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Which alert.
    pub key: AlertKey,
    /// The SLO's service.
    pub service: String,
    /// `SloBurnRateHigh` or `SloErrorBudgetConsumed`.
    pub alertname: &'static str,
    /// The `severity` label.
    pub severity: String,
    /// A one-line summary.
    pub summary: String,
    /// When it started firing (data time, Unix nanoseconds).
    pub starts_at: u64,
    /// When it resolved; `None` while firing.
    pub ends_at: Option<u64>,
}

/// Alerts firing, with their start time.
#[derive(Debug, Default)]
pub struct AlertStates {
    active: HashMap<AlertKey, u64>,
}

/// The evaluation of every SLO at one instant.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// One report per SLO, in config order.
    pub reports: Vec<SloReport>,
    /// Alerts that fired or resolved in this evaluation.
    pub transitions: Vec<Transition>,
    /// Every alert firing after it (for resending).
    pub firing: Vec<Transition>,
}

/// Alert names (the `alertname` label).
pub const BURN_RATE_ALERT: &str = "SloBurnRateHigh";
/// See [`BURN_RATE_ALERT`].
pub const BUDGET_ALERT: &str = "SloErrorBudgetConsumed";

impl AlertStates {
    /// Evaluates every SLO at `now` (Unix nanoseconds of the data clock). `buckets[i]` and
    /// `errors[i]` belong to `defs[i]`.
    pub fn evaluate(
        &mut self,
        defs: &[SloDefinition],
        buckets: &[SloBuckets],
        errors: &[Option<String>],
        rules: &Rules,
        now: u64,
    ) -> Evaluation {
        let now_secs = now / 1_000_000_000;
        let evaluated_at = pipeline_core::time::rfc3339_micros(now);
        let mut out = Evaluation::default();
        // Names and windows are the same for every SLO: made once per evaluation.
        let burn_names: Vec<String> = rules.burn_rate.iter().map(|r| r.rule_name()).collect();
        let budget_names: Vec<String> = rules.budget.iter().map(|r| r.rule_name()).collect();
        let mut windows: Vec<(u64, String)> = Vec::new();
        for w in REPORTED_WINDOWS
            .iter()
            .copied()
            .chain(rules.burn_rate.iter().flat_map(|r| {
                [
                    r.long_window.get().as_secs(),
                    r.short_window.get().as_secs(),
                ]
            }))
        {
            if !windows.iter().any(|(x, _)| *x == w) {
                windows.push((w, window_label(Duration::from_secs(w))));
            }
        }
        for (i, (def, b)) in defs.iter().zip(buckets).enumerate() {
            let budget = def.budget_ratio();
            let window_secs = def.window.get().as_secs();
            let window = b.window(now_secs, window_secs);
            let mut rates: HashMap<u64, f64> = HashMap::new();
            let mut rate = |w: u64| {
                *rates
                    .entry(w)
                    .or_insert_with(|| burn_rate(b.window(now_secs, w), budget))
            };
            let mut burn_rates = BTreeMap::new();
            for (w, label) in &windows {
                burn_rates.insert(label.clone(), rate(*w));
            }
            let error_budget = error_budget(def, window);
            // What holds now: (rule, alertname, severity, summary).
            let mut holding: Vec<(String, &'static str, &str, String)> = Vec::new();
            for (r, name) in rules.burn_rate.iter().zip(&burn_names) {
                let (long, short) = (
                    rate(r.long_window.get().as_secs()),
                    rate(r.short_window.get().as_secs()),
                );
                if long > r.rate && short > r.rate {
                    holding.push((
                        name.clone(),
                        BURN_RATE_ALERT,
                        &r.severity,
                        format!(
                            "SLO {} is burning its error budget at {long:.1}x over {} and {short:.1}x over {} (threshold {}x)",
                            def.name, r.long_window, r.short_window, r.rate
                        ),
                    ));
                }
            }
            if window.total > 0
                && let Some(j) = budget_rule_reached(&rules.budget, error_budget.consumed_ratio)
            {
                let r = &rules.budget[j];
                holding.push((
                    budget_names[j].clone(),
                    BUDGET_ALERT,
                    &r.severity,
                    format!(
                        "SLO {}: {:.0}% of the error budget consumed ({:.1} min remaining)",
                        def.name,
                        error_budget.consumed_ratio * 100.0,
                        error_budget.remaining_minutes
                    ),
                ));
            }
            let mut alerts = Vec::new();
            let all_rules = rules
                .burn_rate
                .iter()
                .zip(&burn_names)
                .map(|(r, name)| (name.clone(), BURN_RATE_ALERT, r.severity.as_str()))
                .chain(
                    rules
                        .budget
                        .iter()
                        .zip(&budget_names)
                        .map(|(r, name)| (name.clone(), BUDGET_ALERT, r.severity.as_str())),
                );
            for (rule, alertname, severity) in all_rules {
                let key = AlertKey {
                    slo: def.name.clone(),
                    rule: rule.clone(),
                };
                let now_holding = holding.iter().find(|h| h.0 == rule);
                let transition = |starts_at, ends_at, summary: String| Transition {
                    key: key.clone(),
                    service: def.service.clone(),
                    alertname,
                    severity: severity.to_string(),
                    summary,
                    starts_at,
                    ends_at,
                };
                match (now_holding, self.active.get(&key).copied()) {
                    (Some(h), None) => {
                        self.active.insert(key.clone(), now);
                        let t = transition(now, None, h.3.clone());
                        out.transitions.push(t.clone());
                        out.firing.push(t);
                        alerts.push(firing(&rule, severity, now));
                    }
                    (Some(h), Some(since)) => {
                        out.firing.push(transition(since, None, h.3.clone()));
                        alerts.push(firing(&rule, severity, since));
                    }
                    (None, Some(since)) => {
                        self.active.remove(&key);
                        out.transitions.push(transition(
                            since,
                            Some(now.max(since)),
                            format!("SLO {}: {rule} resolved", def.name),
                        ));
                    }
                    (None, None) => {}
                }
            }
            out.reports.push(SloReport {
                name: def.name.clone(),
                service: def.service.clone(),
                description: def.description.clone(),
                objective: def.objective_ratio(),
                window_seconds: window_secs,
                sli: 1.0 - error_rate(window),
                total_events: window.total.max(0),
                bad_events: window.bad_clamped(),
                error_budget,
                burn_rates,
                alerts,
                evaluated_at: evaluated_at.clone(),
                error: errors.get(i).cloned().flatten(),
                burndown: burndown(b, now_secs, window_secs, budget, window),
            });
        }
        out
    }

    /// Alerts firing now (tests).
    #[cfg(test)]
    pub fn firing_count(&self) -> usize {
        self.active.len()
    }
}

fn firing(rule: &str, severity: &str, since: u64) -> FiringAlert {
    FiringAlert {
        rule: rule.to_string(),
        severity: severity.to_string(),
        state: "firing",
        since: pipeline_core::time::rfc3339_micros(since),
    }
}

/// Budget remaining at the end of each hour of the window: bad events so far in the window
/// against the budget of all the window's events, so the line ends at today's figure.
fn burndown(b: &SloBuckets, now: u64, window_secs: u64, budget: f64, window: Counts) -> Vec<f64> {
    let last = (now / HOUR) as i64;
    let n = window_secs.div_ceil(HOUR) as i64;
    let allowed = budget * window.total.max(0) as f64;
    let mut bad = 0i64;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    b.hours.for_each(last - n + 1, last, |c| {
        bad = bad.saturating_add(c.bad);
        out.push(if allowed <= 0.0 {
            1.0
        } else {
            1.0 - bad.clamp(0, window.total.max(0)) as f64 / allowed
        });
    });
    out
}
