//! Tests of the slo exporter: config, the seed's formulas, replayed scenarios, increments,
//! buckets, the local buffer, snapshots, the HTTP endpoint and webhooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use pipeline_core::model::Payload;
use pipeline_core::proto::tonic::common::v1::KeyValue;
use pipeline_core::proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use pipeline_core::testing::{check_connector_with, check_exporter};
use pipeline_core::{Batch, DynExporterFactory, Signal};
use serde_json::{Value, json};

use super::config::{SloDefinition, SloExporterConfig};
use super::eval::{AlertStates, Rules, error_budget};
use super::increments::{ExtractContext, Selectors, SeriesTracker, reason};
use super::state::{Counts, SloBuckets};
use super::store::memory;
use super::store::redis::Pending;
use super::{Factory, increments::Increment};

pub(crate) const NANOS: u64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z: replays start here.
pub(crate) const T0: u64 = 1_767_225_600;

fn config(v: Value) -> SloExporterConfig {
    <SloExporterConfig as pipeline_core::ComponentConfig>::parse(&v).unwrap()
}

fn config_error(v: Value) -> String {
    <SloExporterConfig as pipeline_core::ComponentConfig>::parse(&v)
        .unwrap_err()
        .to_string()
}

fn availability(objective: f64, window: &str) -> SloDefinition {
    config(json!({"slos": [{
        "name": "api-availability", "service": "api", "objective": objective, "window": window,
        "indicator": {"availability": {"matchers": {"service": "api"}}}
    }]}))
    .slos
    .remove(0)
}

fn default_rules() -> Rules {
    let c = config(json!({}));
    Rules {
        budget: c.budget_alerts,
        burn_rate: c.burn_rate_alerts,
    }
}

#[tokio::test]
async fn conformance() {
    check_exporter(&Factory, &json!({"endpoint": "127.0.0.1:0"})).await;
}

#[tokio::test]
async fn connector_conformance() {
    use pipeline_core::DynConnectorFactory as _;
    let c = super::ConnectorFactory;
    check_connector_with(&c, &json!({"endpoint": "127.0.0.1:0"})).await;
    assert_eq!(c.type_name(), "slo");
    assert_eq!(c.signal_pairs(), &[(Signal::Metrics, Signal::Metrics)]);
    assert_eq!(
        c.listen_addresses(&json!({"endpoint": "127.0.0.1:9999"})),
        vec!["127.0.0.1:9999"]
    );
    // The exporter's checks, the same messages.
    let e = c
        .validate(
            &json!({"slos": [{"name": "a", "service": "s", "objective": 99,
            "indicator": {"availabilty": {}}}]}),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("did you mean \"availability\""),
        "{e}"
    );
    let latency = json!({"slos": [{"name": "l", "service": "api", "objective": 99,
        "indicator": {"latency": {"threshold": "200ms"}}}]});
    let e = c
        .validate_upstream(&latency, &[("sli", &json!({}))])
        .unwrap_err();
    assert!(
        e.to_string().contains("200ms is not a bucket boundary"),
        "{e}"
    );
    // Without a metrics pipeline to emit into, it cannot be built.
    let none = pipeline_core::signal::PerSignal::from_fn(|_| None);
    let ctx =
        pipeline_core::CreateContext::for_tests(pipeline_core::ComponentKind::Connector, "slo");
    let e = c
        .create(ctx, &json!({"endpoint": "127.0.0.1:0"}), none)
        .err()
        .unwrap();
    assert!(e.to_string().contains("no metrics pipeline"), "{e}");
}

#[test]
fn issue_example_config_is_valid_and_names_its_port() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/slo.yaml"))
        .unwrap();
    assert!(text.contains("api-latency"));
    let value = json!({
        "endpoint": "127.0.0.1:8890",
        "store": {"type": "memory", "snapshot_path": "./data/slo.snapshot"},
        "webhooks": [{"url": "http://alertmanager:9093/api/v2/alerts"}],
        "slos": [
            {"name": "api-availability", "service": "api", "objective": 99.9, "window": "30d",
             "indicator": {"availability": {"total": "http.requests", "errors": "http.errors", "matchers": {"service": "api"}}}},
            {"name": "api-latency", "service": "api", "objective": 95, "window": "30d",
             "indicator": {"latency": {"histogram": "http.request.duration", "threshold": "500ms", "matchers": {"service": "api"}}}}
        ]
    });
    Factory.validate(&value).unwrap();
    assert_eq!(Factory.listen_addresses(&value), vec!["127.0.0.1:8890"]);
    assert_eq!(
        Factory.listen_addresses(&json!({})),
        vec![super::DEFAULT_ENDPOINT]
    );
}

#[test]
fn config_errors_are_clear() {
    // Against the sli connector feeding it: its default buckets, or the ones it was given.
    let latency = |buckets: Value| {
        let mut l = json!({"threshold": "200ms"});
        if !buckets.is_null() {
            l["buckets"] = buckets;
        }
        json!({"slos": [{"name": "l", "service": "api", "objective": 99, "indicator": {"latency": l}}]})
    };
    let sli_default = json!({});
    let e = Factory
        .validate_upstream(&latency(Value::Null), &[("sli", &sli_default)])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("slos[0].indicator.latency.threshold"), "{e}");
    assert!(
        e.contains("200ms is not a bucket boundary of http.request.duration; the boundaries (the sli connector's histogram.buckets) are 10ms, 50ms, 100ms, 500ms, 1s, 2.5s, 5s, 10s"),
        "{e}"
    );
    let sli_custom = json!({"histogram": {"buckets": [0.1, 0.2, 0.4]}});
    Factory
        .validate_upstream(&latency(Value::Null), &[("sli", &sli_custom)])
        .unwrap();
    // Not fed by sli: checked at run time.
    Factory
        .validate_upstream(&latency(Value::Null), &[])
        .unwrap();
    // Explicit buckets are checked on their own; `[]` leaves the check to run time.
    let e = config_error(latency(json!([0.1, 0.25])));
    assert!(
        e.contains("the boundaries (its `buckets`) are 100ms, 250ms"),
        "{e}"
    );
    config(latency(json!([0.1, 0.2, 0.4])));
    config(latency(json!([])));
    let e = config_error(
        json!({"slos": [{"name": "a", "service": "api", "objective": 100,
        "indicator": {"availability": {}}}]}),
    );
    assert!(e.contains("slos[0].objective"), "{e}");
    let e = config_error(
        json!({"slos": [{"name": "a", "service": "s", "objective": 99,
        "indicator": {"availabilty": {}}}]}),
    );
    assert!(e.contains("did you mean \"availability\""), "{e}");
    let a =
        json!({"name": "a", "service": "s", "objective": 99, "indicator": {"availability": {}}});
    let e = config_error(json!({"slos": [a, a]}));
    assert!(e.contains("defined twice"), "{e}");
    let e = config_error(json!({"store": {"type": "redis", "url": "redis://x", "prefix": "p"}}));
    assert!(
        e.contains("unknown key \"prefix\"") && e.contains("key_prefix"),
        "{e}"
    );
    let e = config_error(json!({"store": {"type": "redis", "url": "http://x"}}));
    assert!(e.starts_with("store.url"), "{e}");
    let e = config_error(
        json!({"slos": [{"name": "a", "service": "s", "objective": 99,
        "window": "2h", "indicator": {"availability": {}}}]}),
    );
    assert!(e.contains("shorter than the alert window"), "{e}");
    let e = config_error(json!({"webhooks": [{"url": "alertmanager:9093"}]}));
    assert!(e.starts_with("webhooks[0].url"), "{e}");
    let e = config_error(json!({"burn_rate_alerts": [{"severity": "page", "rate": 10,
        "long_window": "7h30m", "short_window": "5m"}]}));
    assert!(e.contains("whole hours"), "{e}");
}

#[test]
fn seed_budget_formulas() {
    // 99.9% leaves 0.1%: 43.2 minutes over 30 days.
    let d = availability(99.9, "30d");
    let b = error_budget(&d, Counts::default());
    assert_eq!(b.total_ratio, 0.001);
    assert!((b.total_minutes - 43.2).abs() < 1e-9, "{}", b.total_minutes);
    assert_eq!(b.remaining_ratio, 1.0);
    // 99.95% over 28 days: 0.05% of 40,320 minutes.
    let d = availability(99.95, "28d");
    let b = error_budget(&d, Counts::default());
    assert!(
        (b.total_minutes - 20.16).abs() < 1e-9,
        "{}",
        b.total_minutes
    );
    // Half the budget spent: 0.05% errors.
    let b = error_budget(
        &d,
        Counts {
            total: 1_000_000,
            bad: 250,
        },
    );
    assert!((b.consumed_ratio - 0.5).abs() < 1e-9);
    assert!((b.remaining_minutes - 10.08).abs() < 1e-9);
}

#[test]
fn budget_thresholds_fire_at_exactly_50_75_100_percent() {
    let d = availability(99.9, "30d");
    let rules = default_rules();
    let now = T0 + 3600;
    let cases = [
        (499, None),
        (500, Some(("budget-50%", "warning"))),
        (749, Some(("budget-50%", "warning"))),
        (750, Some(("budget-75%", "critical"))),
        (999, Some(("budget-75%", "critical"))),
        (1000, Some(("budget-100%", "page"))),
        (5000, Some(("budget-100%", "page"))),
    ];
    for (bad, expected) in cases {
        let mut b = SloBuckets::new(d.window.get().as_secs());
        // Spread over the window so no burn-rate rule fires alongside.
        b.add(
            now - 10 * 86_400,
            Counts {
                total: 1_000_000,
                bad,
            },
        );
        let mut alerts = AlertStates::default();
        let e = alerts.evaluate(std::slice::from_ref(&d), &[b], &[None], &rules, now * NANOS);
        let firing: Vec<_> = e.reports[0]
            .alerts
            .iter()
            .map(|a| (a.rule.as_str(), a.severity.as_str()))
            .collect();
        assert_eq!(
            firing,
            expected.into_iter().collect::<Vec<_>>(),
            "bad={bad}"
        );
    }
}

/// Replays `minutes` minutes from `start` (Unix seconds) of `requests` a minute with
/// `errors(minute)` errors, evaluating at the end of every `every`th minute. Returns, per
/// evaluation, (minute, firing rules).
#[allow(clippy::too_many_arguments)]
fn replay(
    def: &SloDefinition,
    start: u64,
    minutes: u64,
    every: u64,
    requests: i64,
    errors: impl Fn(u64) -> i64,
    b: &mut SloBuckets,
    alerts: &mut AlertStates,
) -> Vec<(u64, Vec<String>)> {
    let rules = default_rules();
    let mut out = Vec::new();
    for m in 0..minutes {
        let t = start + m * 60;
        b.add(
            t + 30,
            Counts {
                total: requests,
                bad: errors(m),
            },
        );
        if m % every == every - 1 {
            let e = alerts.evaluate(
                std::slice::from_ref(def),
                std::slice::from_ref(b),
                &[None],
                &rules,
                (t + 59) * NANOS,
            );
            let firing = e.reports[0].alerts.iter().map(|a| a.rule.clone()).collect();
            out.push((m, firing));
        }
    }
    out
}

const PAGE_FAST: &str = "burn-rate-14.4x-1h-5m";
const PAGE_SLOW: &str = "burn-rate-6x-6h-30m";
const TICKET: &str = "burn-rate-1x-3d-6h";

#[test]
fn steady_error_rate_of_a_twentieth_percent_fires_no_burn_rate_alert() {
    let d = availability(99.9, "30d");
    let mut b = SloBuckets::new(d.window.get().as_secs());
    let mut alerts = AlertStates::default();
    // Four days of 2,000 requests a minute with one error: 0.05%, burn rate 0.5.
    let evals = replay(&d, T0, 4 * 1440, 10, 2000, |_| 1, &mut b, &mut alerts);
    for (m, firing) in &evals {
        assert!(
            firing.iter().all(|r| !r.starts_with("burn-rate")),
            "minute {m}: {firing:?}"
        );
    }
    // 0.05% is exactly half of a 0.1% budget: the seed's 50% warning line, and nothing more.
    let (_, last) = evals.last().unwrap();
    assert_eq!(last, &vec!["budget-50%".to_string()]);
}

#[test]
fn a_two_percent_burst_pages_within_five_minutes_and_resolves_after() {
    let d = availability(99.9, "30d");
    let mut b = SloBuckets::new(d.window.get().as_secs());
    let mut alerts = AlertStates::default();
    // A fresh service: 10 minutes at 2% errors (burn rate 20), then an hour without errors.
    let evals = replay(
        &d,
        T0,
        70,
        1,
        1000,
        |m| if m < 10 { 20 } else { 0 },
        &mut b,
        &mut alerts,
    );
    let fired = evals
        .iter()
        .find(|(_, f)| f.iter().any(|r| r == PAGE_FAST))
        .map(|(m, _)| *m)
        .unwrap();
    assert!(fired < 5, "fired at minute {fired}");
    let resolved = evals
        .iter()
        .find(|(m, f)| *m > fired && !f.iter().any(|r| r == PAGE_FAST))
        .map(|(m, _)| *m)
        .unwrap();
    // Resolves when the 5m window's burn rate falls to 14.4x or below: at minute 11 three of
    // its five minutes are burst minutes (12x).
    assert_eq!(resolved, 11, "{evals:?}");
    assert!(
        evals[resolved as usize..]
            .iter()
            .all(|(_, f)| !f.iter().any(|r| r == PAGE_FAST))
    );
}

#[test]
fn a_two_percent_burst_after_a_healthy_day_pages_when_the_hour_has_burned_enough() {
    let d = availability(99.9, "30d");
    let mut b = SloBuckets::new(d.window.get().as_secs());
    let mut alerts = AlertStates::default();
    replay(&d, T0, 1440, 60, 2000, |_| 1, &mut b, &mut alerts);
    let evals = replay(&d, T0 + 86_400, 60, 1, 2000, |_| 40, &mut b, &mut alerts);
    let fired = evals
        .iter()
        .find(|(_, f)| f.iter().any(|r| r == PAGE_FAST))
        .map(|(m, _)| *m)
        .unwrap();
    // The SRE workbook's detection time: 1h x 14.4 / 20 = 43.2 minutes (less a little for
    // the healthy 0.5x minutes still in the hour).
    assert!((41..=44).contains(&fired), "fired at minute {fired}");
}

#[test]
fn a_slow_burn_of_a_fifth_percent_files_a_ticket_and_does_not_page() {
    let d = availability(99.9, "30d");
    let mut b = SloBuckets::new(d.window.get().as_secs());
    let mut alerts = AlertStates::default();
    // 0.2% errors (burn rate 2) for eight hours.
    let evals = replay(&d, T0, 8 * 60, 1, 1000, |_| 2, &mut b, &mut alerts);
    assert!(evals.iter().any(|(_, f)| f.iter().any(|r| r == TICKET)));
    assert!(
        evals
            .iter()
            .all(|(_, f)| !f.iter().any(|r| r == PAGE_FAST || r == PAGE_SLOW)),
        "{evals:?}"
    );
    let (_, last) = evals.last().unwrap();
    assert!(last.contains(&TICKET.to_string()));
}

#[test]
fn transitions_carry_start_and_end() {
    let d = availability(99.9, "30d");
    let rules = default_rules();
    let mut b = SloBuckets::new(d.window.get().as_secs());
    let mut alerts = AlertStates::default();
    b.add(
        T0,
        Counts {
            total: 100,
            bad: 50,
        },
    );
    let mut evaluate = |b: &SloBuckets, at: u64| {
        alerts.evaluate(
            std::slice::from_ref(&d),
            std::slice::from_ref(b),
            &[None],
            &rules,
            at * NANOS,
        )
    };
    let e = evaluate(&b, T0);
    let fired: Vec<_> = e.transitions.iter().map(|t| t.key.rule.as_str()).collect();
    assert!(fired.contains(&PAGE_FAST), "{fired:?}");
    assert!(e.transitions.iter().all(|t| t.ends_at.is_none()));
    // Seven hours later nothing is left in the short windows: the burn-rate alerts resolve.
    let later = T0 + 7 * 3600;
    b.add(
        later,
        Counts {
            total: 1_000_000,
            bad: 0,
        },
    );
    let e = evaluate(&b, later);
    let resolved = e
        .transitions
        .iter()
        .find(|t| t.key.rule == PAGE_FAST)
        .unwrap();
    assert_eq!(resolved.starts_at, T0 * NANOS);
    assert_eq!(resolved.ends_at, Some(later * NANOS));
    assert_eq!(alerts.firing_count(), 0);
}

#[test]
fn buckets_keep_six_hours_of_minutes_and_the_window_in_hours() {
    let mut b = SloBuckets::new(30 * 86_400);
    assert_eq!(b.minutes.len(), 360);
    assert_eq!(b.hours.len(), 721);
    let now = T0 + 40 * 86_400;
    for d in 0..40u64 {
        // The hour ring reaches 720 hours back (30 days) from the newest bucket.
        assert_eq!(
            b.add(now - d * 86_400, Counts { total: 10, bad: 1 }),
            d <= 30,
            "day {d}"
        );
    }
    // 30 days of hours hold 30 (today's and 29 before, plus the partial edge: the window is
    // the last 721 hour buckets' 720).
    assert_eq!(b.window(now, 30 * 86_400).total, 300);
    assert_eq!(b.window(now, 300).total, 10);
    // An event older than the window is not taken.
    assert!(!b.add(now - 35 * 86_400, Counts { total: 1, bad: 0 }));
    // A late event within six hours lands in its minute.
    b.add(now - 3600, Counts { total: 5, bad: 5 });
    assert_eq!(b.window(now, 3600).total, 10);
    assert_eq!(b.window(now, 2 * 3600).total, 15);
    assert_eq!(b.window(now, 2 * 3600).bad, 6);
    let resized = b.resized(7 * 86_400);
    assert_eq!(resized.hours.len(), 169);
    assert_eq!(resized.window(now, 7 * 86_400).total, 75);
}

fn kv(k: &str, v: &str) -> KeyValue {
    pipeline_core::attributes::string(k, v)
}

pub(crate) fn sum_metric(
    name: &str,
    points: Vec<(Vec<KeyValue>, u64, u64, i64)>,
    temporality: AggregationTemporality,
) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points
                .into_iter()
                .map(|(attributes, start, time, v)| NumberDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    value: Some(number_data_point::Value::AsInt(v)),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

pub(crate) fn histogram_metric(
    name: &str,
    attributes: Vec<KeyValue>,
    start: u64,
    time: u64,
    bounds: Vec<f64>,
    counts: Vec<u64>,
) -> Metric {
    Metric {
        name: name.into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count: counts.iter().sum(),
                bucket_counts: counts,
                explicit_bounds: bounds,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    }
}

pub(crate) fn resource_metrics(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

pub(crate) fn metrics_batch(metrics: Vec<Metric>) -> Batch {
    Batch::new(Payload::Metrics(resource_metrics(metrics)))
}

fn extract_ctx(watch_start: u64) -> ExtractContext {
    ExtractContext {
        clock: 0,
        wall: (T0 + 86_400) * NANOS,
        watch_start,
        max_series: 3,
    }
}

#[test]
fn cumulative_points_become_increments_per_series() {
    let defs = config(
        json!({"slos": [{"name": "a", "service": "api", "objective": 99,
        "indicator": {"availability": {"matchers": {"service": "api"}}}}]}),
    )
    .slos;
    let sel = Selectors::new(&defs);
    let mut tracker = SeriesTracker::default();
    let api = || vec![kv("service", "api"), kv("endpoint", "/a")];
    let t = |m: u64| (T0 + m * 60) * NANOS;
    let started = T0 * NANOS;
    // Watching since before the series started: its first value counts in full.
    let ctx = extract_ctx(started - NANOS);
    let batch = |req: i64, err: i64, m: u64, start: u64| {
        resource_metrics(vec![
            sum_metric(
                "http.requests",
                vec![(api(), start, t(m), req)],
                AggregationTemporality::Cumulative,
            ),
            sum_metric(
                "http.errors",
                vec![(api(), start, t(m), err)],
                AggregationTemporality::Cumulative,
            ),
            // Another service's series is not selected.
            sum_metric(
                "http.requests",
                vec![(vec![kv("service", "web")], start, t(m), 99)],
                AggregationTemporality::Cumulative,
            ),
        ])
    };
    let sums = |e: &super::increments::Extracted| {
        e.increments.iter().fold(Counts::default(), |mut c, i| {
            c.add(i.counts);
            c
        })
    };
    let e = sel.extract(&batch(100, 2, 1, started), &mut tracker, &ctx);
    assert_eq!(sums(&e), Counts { total: 100, bad: 2 });
    let e = sel.extract(&batch(150, 3, 2, started), &mut tracker, &ctx);
    assert_eq!(sums(&e), Counts { total: 50, bad: 1 });
    assert_eq!(e.increments[0].time, T0 + 120);
    // A repeat adds nothing; an older point adds nothing.
    let e = sel.extract(&batch(150, 3, 2, started), &mut tracker, &ctx);
    assert_eq!(sums(&e), Counts::default());
    // A restart of the source (new start time, smaller value) counts from zero.
    let e = sel.extract(&batch(10, 1, 3, t(3) - NANOS), &mut tracker, &ctx);
    assert_eq!(sums(&e), Counts { total: 10, bad: 1 });
    // A series that started before this exporter: its first point is the baseline.
    let mut tracker2 = SeriesTracker::default();
    let ctx2 = extract_ctx(t(100));
    let e = sel.extract(&batch(1000, 10, 1, started), &mut tracker2, &ctx2);
    assert_eq!(sums(&e), Counts::default());
    let e = sel.extract(&batch(1100, 11, 2, started), &mut tracker2, &ctx2);
    assert_eq!(sums(&e), Counts { total: 100, bad: 1 });
}

#[test]
fn the_series_tracker_is_bounded_and_counts_what_it_refuses() {
    let defs = config(
        json!({"slos": [{"name": "a", "service": "api", "objective": 99,
        "indicator": {"availability": {}}}]}),
    )
    .slos;
    let sel = Selectors::new(&defs);
    let mut tracker = SeriesTracker::default();
    let ctx = extract_ctx(0);
    let five_series = |start: u64, temporality| {
        let points: Vec<_> = (0..5)
            .map(|i| {
                let attributes = vec![kv("endpoint", &format!("/{i}"))];
                (attributes, start, (T0 + 60) * NANOS, 10)
            })
            .collect();
        resource_metrics(vec![sum_metric("http.requests", points, temporality)])
    };
    let rm = five_series(T0 * NANOS, AggregationTemporality::Cumulative);
    let e = sel.extract(&rm, &mut tracker, &ctx);
    assert_eq!(tracker.len(), 3);
    assert_eq!(e.dropped, vec![(reason::SERIES_LIMIT, 2)]);
    // Delta points need no tracking.
    let rm = five_series(0, AggregationTemporality::Delta);
    let e = sel.extract(&rm, &mut tracker, &ctx);
    assert!(e.dropped.is_empty());
    assert_eq!(e.increments.iter().map(|i| i.counts.total).sum::<i64>(), 50);
}

#[test]
fn latency_counts_requests_above_the_threshold_as_bad() {
    let defs = config(json!({"slos": [
        {"name": "fast", "service": "api", "objective": 95,
         "indicator": {"latency": {"threshold": "500ms"}}},
        {"name": "fast2", "service": "api", "objective": 99,
         "indicator": {"latency": {"threshold": "500ms"}}},
        {"name": "odd", "service": "api", "objective": 99,
         "indicator": {"latency": {"threshold": "300ms"}}}
    ]}))
    .slos;
    let sel = Selectors::new(&defs);
    let mut tracker = SeriesTracker::default();
    let ctx = extract_ctx(0);
    let bounds = vec![0.1, 0.5, 1.0];
    let rm = resource_metrics(vec![histogram_metric(
        "http.request.duration",
        vec![kv("service", "api")],
        T0 * NANOS,
        (T0 + 60) * NANOS,
        bounds,
        vec![60, 30, 8, 2],
    )]);
    let e = sel.extract(&rm, &mut tracker, &ctx);
    let by_slo = |slo| {
        e.increments
            .iter()
            .filter(|i| i.slo == slo)
            .map(|i| i.counts)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by_slo(0),
        vec![Counts {
            total: 100,
            bad: 10
        }]
    );
    assert_eq!(
        by_slo(1),
        vec![Counts {
            total: 100,
            bad: 10
        }],
        "shared series, both counted"
    );
    assert!(by_slo(2).is_empty());
    let (slo, problem) = &e.problems[0];
    assert_eq!(*slo, 2);
    assert!(
        problem.contains("threshold 300ms is not a bucket boundary of http.request.duration; its boundaries are 100ms, 500ms, 1s"),
        "{problem}"
    );
}

#[test]
fn the_redis_buffer_is_bounded_and_overlays_figures() {
    let mut p = Pending::new(2, 4);
    let inc = |slo, time, total| Increment {
        slo,
        time,
        counts: Counts { total, bad: 1 },
    };
    assert!(p.add(&inc(0, T0, 10)));
    assert!(
        p.add(&inc(0, T0 + 1, 10)),
        "same minute and hour: no new bucket"
    );
    assert!(p.add(&inc(1, T0, 5)));
    assert_eq!(p.buckets(), 4);
    assert!(
        !p.add(&inc(0, T0 + 60, 1)),
        "a new minute bucket does not fit"
    );
    p.seal();
    let first = p.front().unwrap();
    let mut view = vec![SloBuckets::new(86_400), SloBuckets::new(86_400)];
    p.overlay(&mut view);
    assert_eq!(view[0].window(T0, 300), Counts { total: 20, bad: 2 });
    assert_eq!(view[1].window(T0, 86_400), Counts { total: 5, bad: 1 });
    p.written(first.seq());
    assert_eq!(p.buckets(), 2);
    // Room again.
    assert!(p.add(&inc(0, T0 + 60, 1)));
}

#[test]
fn snapshots_are_written_atomically_and_a_corrupt_one_is_set_aside() {
    let dir = std::env::temp_dir().join(format!("slo-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("sub/slo.snapshot");
    let defs = vec![availability(99.9, "30d")];
    let mut b = SloBuckets::new(30 * 86_400);
    b.add(T0, Counts { total: 7, bad: 1 });
    let snap = memory::Snapshot::new(
        &defs,
        std::slice::from_ref(&b),
        &SeriesTracker::default(),
        T0 * NANOS,
    );
    memory::write_atomically(&path, &serde_json::to_vec(&snap).unwrap()).unwrap();
    let mut loaded = memory::load(&path).unwrap().unwrap();
    assert_eq!(loaded.clock, T0 * NANOS);
    assert_eq!(loaded.buckets_for(&defs), vec![b]);
    std::fs::write(&path, b"{not json").unwrap();
    let e = memory::load(&path).unwrap_err().to_string();
    assert!(e.contains("not a readable SLO snapshot"), "{e}");
    assert!(!path.exists());
    assert!(dir.join("sub/slo.snapshot.corrupt").exists());
    assert!(memory::load(&path).unwrap().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn window_labels() {
    assert_eq!(
        super::page::reported_window_labels(),
        vec!["5m", "30m", "1h", "6h", "3d"]
    );
}

/// An Alertmanager stand-in: records every POST (path and JSON body); answers 500 to the
/// first `fail_first` requests.
#[derive(Default)]
pub(crate) struct AlertSink {
    pub(crate) posts: std::sync::Mutex<Vec<(String, Value)>>,
    fail_first: std::sync::atomic::AtomicUsize,
}

impl AlertSink {
    pub(crate) async fn serve(fail_first: usize) -> (std::sync::Arc<AlertSink>, String) {
        use http_body_util::BodyExt;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let sink = std::sync::Arc::new(AlertSink {
            fail_first: fail_first.into(),
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let s = sink.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let fail = s
                                .fail_first
                                .fetch_update(
                                    std::sync::atomic::Ordering::SeqCst,
                                    std::sync::atomic::Ordering::SeqCst,
                                    |n| n.checked_sub(1),
                                )
                                .is_ok();
                            let status = if fail {
                                500
                            } else {
                                let v: Value = serde_json::from_slice(&body).unwrap();
                                s.posts.lock().unwrap().push((path, v));
                                200
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (sink, format!("http://{addr}/api/v2/alerts"))
    }

    /// Every alert posted, in order.
    pub(crate) fn alerts(&self) -> Vec<Value> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_default())
            .collect()
    }
}

pub(crate) async fn http_get(url: &str) -> (u16, String, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn serves_figures_page_metrics_and_sends_alertmanager_alerts() {
    use crate::helper::testutil::{TestCtx, eventually, in_secs};
    use pipeline_core::{Component, Consumer, Host};
    let (sink, url) = AlertSink::serve(1).await;
    let t = TestCtx::new("slo");
    let cfg = config(json!({
        "endpoint": "127.0.0.1:0",
        "evaluation_interval": "20ms",
        "webhooks": [{"url": url, "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms"}}],
        "slos": [
            {"name": "api-availability", "service": "api", "objective": 99.9, "description": "<b>requests</b> that succeed",
             "indicator": {"availability": {"matchers": {"service": "api"}}}},
            {"name": "api-latency", "service": "api", "objective": 95,
             "indicator": {"latency": {"threshold": "500ms", "matchers": {"service": "api"}}}}
        ]
    }));
    let x = super::exporter::SloExporter::new(
        "slo".into(),
        cfg,
        t.ctx.telemetry.clone(),
        t.ctx.health.clone(),
        None,
    )
    .unwrap();
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let base = format!("http://{}", x.local_addr().unwrap());
    let now = pipeline_core::time::now_unix_nanos();
    let start = now + 1;
    let attrs = || vec![kv("service", "api")];
    let batch = |t: u64, req: i64, err: i64, buckets: Vec<u64>| {
        metrics_batch(vec![
            sum_metric(
                "http.requests",
                vec![(attrs(), start, t, req)],
                AggregationTemporality::Cumulative,
            ),
            sum_metric(
                "http.errors",
                vec![(attrs(), start, t, err)],
                AggregationTemporality::Cumulative,
            ),
            histogram_metric(
                "http.request.duration",
                attrs(),
                start,
                t,
                connectors::sli::DEFAULT_BUCKETS.to_vec(),
                buckets,
            ),
        ])
    };
    // 5% errors: a burn rate of 50, every page fires.
    x.consume(batch(
        now + 2,
        1000,
        50,
        vec![0, 0, 500, 450, 50, 0, 0, 0, 0],
    ))
    .await
    .unwrap();
    let slo = || async {
        serde_json::from_str::<Value>(&http_get(&format!("{base}/slo")).await.2).unwrap()
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            slo().await[0]["total_events"] == 1000
        })
        .await
    );
    let v = slo().await;
    let a = &v[0];
    assert_eq!(a["name"], "api-availability");
    assert_eq!(a["objective"], 0.999);
    assert_eq!(a["window_seconds"], 30 * 86_400);
    assert_eq!(a["bad_events"], 50);
    assert!((a["sli"].as_f64().unwrap() - 0.95).abs() < 1e-12);
    let eb = &a["error_budget"];
    assert!((eb["total_minutes"].as_f64().unwrap() - 43.2).abs() < 1e-9);
    assert!((eb["consumed_ratio"].as_f64().unwrap() - 50.0).abs() < 1e-9);
    assert!((eb["remaining_ratio"].as_f64().unwrap() + 49.0).abs() < 1e-9);
    assert!(eb["remaining_minutes"].is_number());
    for w in ["5m", "30m", "1h", "6h", "3d"] {
        assert!(
            (a["burn_rates"][w].as_f64().unwrap() - 50.0).abs() < 1e-9,
            "{w}: {a}"
        );
    }
    let rules: Vec<&str> = a["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&PAGE_FAST) && rules.contains(&"budget-100%"),
        "{rules:?}"
    );
    assert!(
        a["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["state"] == "firing" && x["severity"].is_string())
    );
    // 50 of 1000 above 500ms: latency SLI 95%, exactly on the objective.
    let l = &v[1];
    assert_eq!(
        (l["total_events"].as_i64(), l["bad_events"].as_i64()),
        (Some(1000), Some(50))
    );
    assert!((l["sli"].as_f64().unwrap() - 0.95).abs() < 1e-12);
    // Alertmanager got the firing alerts after one failed POST (retried).
    assert!(
        eventually(Duration::from_secs(10), || async {
            sink.alerts()
                .iter()
                .any(|a| a["labels"]["rule"] == PAGE_FAST)
        })
        .await
    );
    let alerts = sink.alerts();
    let page = alerts
        .iter()
        .find(|a| a["labels"]["rule"] == PAGE_FAST && a["labels"]["slo"] == "api-availability")
        .unwrap();
    assert_eq!(page["labels"]["alertname"], "SloBurnRateHigh");
    assert_eq!(page["labels"]["service"], "api");
    assert_eq!(page["labels"]["severity"], "page");
    assert!(
        page["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("14.4x")
    );
    assert!(page["startsAt"].as_str().unwrap().ends_with('Z'));
    assert!(page.get("endsAt").is_none());
    assert_eq!(sink.posts.lock().unwrap()[0].0, "/api/v2/alerts");
    // The page: one panel and chart per SLO, escaped text, no external resources.
    let (status, ctype, html) = http_get(&format!("{base}/")).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    for name in ["api-availability", "api-latency"] {
        assert!(
            html.contains(&format!("<section class=\"slo\" id=\"slo-{name}\">")),
            "{html}"
        );
    }
    assert_eq!(html.matches("<svg class=\"burndown\"").count(), 2);
    assert!(html.contains("&lt;b&gt;requests&lt;/b&gt;"));
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    assert!(html.contains(PAGE_FAST));
    // The metrics.
    let (_, ctype, metrics) = http_get(&format!("{base}/metrics")).await;
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    for line in [
        "slo_sli_ratio{slo=\"api-availability\",service=\"api\"} 0.95",
        "slo_objective_ratio{slo=\"api-availability\",service=\"api\"} 0.999",
        "slo_burn_rate{slo=\"api-availability\",service=\"api\",window=\"5m\"} 50",
        "slo_alert_active{slo=\"api-availability\",service=\"api\",severity=\"page\",rule=\"burn-rate-14.4x-1h-5m\"} 1",
        "slo_alert_active{slo=\"api-availability\",service=\"api\",severity=\"ticket\",rule=\"burn-rate-1x-3d-6h\"} 1",
        "# TYPE slo_error_budget_remaining_minutes gauge",
        "# TYPE slo_error_budget_remaining_ratio gauge",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    // Ten minutes later (data time) with 100,000 good requests: the 5m window is clean, the
    // fast page resolves and Alertmanager hears it with endsAt.
    x.consume(batch(
        now + 600 * NANOS,
        101_000,
        50,
        vec![0, 0, 100_500, 450, 50, 0, 0, 0, 0],
    ))
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            sink.alerts()
                .iter()
                .any(|a| a["labels"]["rule"] == PAGE_FAST && a.get("endsAt").is_some())
        })
        .await
    );
    let resolved = sink
        .alerts()
        .into_iter()
        .find(|a| a["labels"]["rule"] == PAGE_FAST && a.get("endsAt").is_some())
        .unwrap();
    assert_eq!(resolved["startsAt"], page["startsAt"]);
    assert!(resolved["endsAt"].as_str().unwrap() > resolved["startsAt"].as_str().unwrap());
    assert_eq!(t.sent("metrics"), 6.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[test]
fn the_webhook_outbox_keeps_the_newest_state_of_each_alert() {
    use super::eval::{AlertKey, Transition};
    use super::webhook::{AmAlert, Webhook};
    let w = Webhook::new(
        &config(json!({"webhooks": [{"url": "http://127.0.0.1:9/api/v2/alerts"}]})).webhooks[0],
    )
    .unwrap();
    let transition = |rule: &str, ends_at| Transition {
        key: AlertKey {
            slo: "a".into(),
            rule: rule.into(),
        },
        service: "api".into(),
        alertname: "SloBurnRateHigh",
        severity: "page".into(),
        summary: "s".into(),
        starts_at: T0 * NANOS,
        ends_at,
    };
    let item = |t: &Transition| (t.key.clone(), AmAlert::from_transition(t, "http://x/"));
    let firing = transition(PAGE_FAST, None);
    let resolved = transition(PAGE_FAST, Some((T0 + 60) * NANOS));
    let other = transition(PAGE_SLOW, None);
    w.enqueue([item(&firing), item(&other)]);
    w.enqueue([item(&firing)]);
    w.enqueue([item(&resolved)]);
    let pending = w.pending();
    assert_eq!(pending.len(), 2, "one entry per alert");
    let fast = pending.iter().find(|(k, _)| k.rule == PAGE_FAST).unwrap();
    assert_eq!(
        fast.1.ends_at.as_deref(),
        Some("2026-01-01T00:01:00.000000Z")
    );
    let body = serde_json::to_value(&fast.1).unwrap();
    assert_eq!(body["startsAt"], "2026-01-01T00:00:00.000000Z");
    assert_eq!(body["labels"]["alertname"], "SloBurnRateHigh");
}

/// A translated point as `name{sorted labels} value`, as the `prometheus` exporter writes it.
fn sample_line(name: &str, labels: &[(String, String)], value: f64) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    labels.sort();
    format!("{name}{{{}}} {value}", labels.join(","))
}

/// The sample lines of a Prometheus text page, labels sorted, comments left out.
fn sample_lines(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap();
            let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
            labels.sort();
            format!("{name}{{{}}} {value}", labels.join(","))
        })
        .collect()
}

#[tokio::test]
async fn the_connector_emits_the_endpoint_figures_as_gauges_prometheus_names_alike() {
    use crate::helper::prometheus::{Family, Point, Sink, TranslationConfig, Value as PV};
    use crate::helper::testutil::{TestCtx, eventually, in_secs};
    use pipeline_core::testing::CollectingConsumer;
    use pipeline_core::{Component, Consumer, Host};
    let t = TestCtx::new("slo");
    let out = CollectingConsumer::new();
    let cfg = config(json!({
        "endpoint": "127.0.0.1:0",
        "evaluation_interval": "20ms",
        "slos": [{"name": "api-availability", "service": "api", "objective": 99.9,
                  "indicator": {"availability": {"matchers": {"service": "api"}}}}]
    }));
    let x = super::exporter::SloExporter::new(
        "slo".into(),
        cfg,
        t.ctx.telemetry.clone(),
        t.ctx.health.clone(),
        Some(out.clone()),
    )
    .unwrap();
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let base = format!("http://{}", x.local_addr().unwrap());
    let now = pipeline_core::time::now_unix_nanos();
    let attrs = || vec![kv("service", "api")];
    let mut input = metrics_batch(vec![
        sum_metric(
            "http.requests",
            vec![(attrs(), now + 1, now + 2, 1000)],
            AggregationTemporality::Cumulative,
        ),
        sum_metric(
            "http.errors",
            vec![(attrs(), now + 1, now + 2, 50)],
            AggregationTemporality::Cumulative,
        ),
    ]);
    let probe = pipeline_core::testing::AckProbe::new();
    input = probe.track(input);
    x.consume(input).await.unwrap();
    assert_eq!(probe.count(pipeline_core::model::AckOutcome::Delivered), 1);
    // The newest emitted batch that has counted the input.
    let newest = || {
        out.batches()
            .into_iter()
            .rev()
            .find_map(|b| match &*b.payload_view() {
                Payload::Metrics(rm) => Some(rm.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let sli = |rm: &[ResourceMetrics]| {
        rm.iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .find(|m| m.name == "slo_sli_ratio")
            .and_then(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.first().and_then(|p| p.value),
                _ => None,
            })
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            sli(&newest()) == Some(number_data_point::Value::AsDouble(0.95))
        })
        .await,
        "no slo_sli_ratio 0.95 emitted"
    );
    // Emitted batches carry no acknowledgement of their own.
    assert!(out.batches().iter().all(|b| b.ctx.acks.is_empty()));
    let emitted = newest();
    assert!(
        emitted
            .iter()
            .all(|r| r.resource.as_ref().is_none_or(|r| r.attributes.is_empty()))
    );
    // Translated as the prometheus exporter does, with and without unit suffixes, the
    // gauges are the lines of the endpoint's own /metrics, name for name.
    #[derive(Default)]
    struct Lines(std::collections::BTreeSet<String>);
    impl Sink for Lines {
        fn target_info(&mut self, _: crate::helper::prometheus::Labels, _: i64) {
            panic!("the SLO gauges have no resource attributes");
        }
        fn point(&mut self, family: &Family, point: Point) {
            let PV::Number(v) = point.value else {
                panic!("{} is not a gauge", family.name)
            };
            self.0.insert(sample_line(&family.name, &point.labels, v));
        }
        fn skipped(&mut self, points: usize, reason: &'static str) {
            panic!("{points} skipped: {reason}");
        }
    }
    // The endpoint serves the same evaluation (the loop may have run again since; the data
    // clock has not moved, so the figures are the same).
    let page = sample_lines(&http_get(&format!("{base}/metrics")).await.2);
    for add_metric_suffixes in [true, false] {
        let mut lines = Lines::default();
        crate::helper::prometheus::translate(
            &emitted,
            &TranslationConfig {
                namespace: None,
                add_metric_suffixes,
                resource_to_telemetry_conversion: false,
                const_labels: Vec::new(),
            },
            &mut lines,
        );
        assert_eq!(lines.0, page, "suffixes {add_metric_suffixes}");
    }
    for line in [
        "slo_sli_ratio{service=\"api\",slo=\"api-availability\"} 0.95",
        "slo_burn_rate{service=\"api\",slo=\"api-availability\",window=\"5m\"} 50",
        "slo_alert_active{rule=\"burn-rate-14.4x-1h-5m\",service=\"api\",severity=\"page\",slo=\"api-availability\"} 1",
    ] {
        assert!(page.contains(line), "{line} missing from {page:#?}");
    }
    assert!(page.iter().any(|l| {
        l.starts_with("slo_objective_ratio{service=\"api\",slo=\"api-availability\"} 0.999")
    }));
    assert!(
        page.iter()
            .any(|l| l.starts_with("slo_error_budget_remaining_minutes{"))
    );
    assert!(
        page.iter()
            .any(|l| l.starts_with("slo_error_budget_remaining_ratio{"))
    );
    x.shutdown(in_secs(5.0)).await.unwrap();
}

/// Refuses every batch, permanently.
struct Refusing;

#[async_trait::async_trait]
impl pipeline_core::Consumer for Refusing {
    async fn consume(&self, batch: Batch) -> Result<(), pipeline_core::ConsumeError> {
        batch.dropped();
        Err(pipeline_core::ConsumeError::permanent("no"))
    }
}

/// Never answers; counts the batches offered.
#[derive(Default)]
struct Stuck {
    offered: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl pipeline_core::Consumer for Stuck {
    async fn consume(&self, _batch: Batch) -> Result<(), pipeline_core::ConsumeError> {
        self.offered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending().await
    }
}

fn connector_with(
    t: &crate::helper::testutil::TestCtx,
    output: pipeline_core::consumer::SharedConsumer,
) -> super::exporter::SloExporter {
    let cfg = config(json!({
        "endpoint": "127.0.0.1:0",
        "evaluation_interval": "20ms",
        "slos": [{"name": "api-availability", "service": "api", "objective": 99.9,
                  "indicator": {"availability": {"matchers": {"service": "api"}}}}]
    }));
    super::exporter::SloExporter::new(
        "slo".into(),
        cfg,
        t.ctx.telemetry.clone(),
        t.ctx.health.clone(),
        Some(output),
    )
    .unwrap()
}

#[tokio::test]
async fn gauges_the_pipeline_refuses_are_counted_as_dropped() {
    use crate::helper::testutil::{TestCtx, eventually, in_secs};
    use pipeline_core::{Component, Host};
    let t = TestCtx::new("slo");
    let x = connector_with(&t, std::sync::Arc::new(Refusing));
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    // One SLO: 4 single-point gauges, 5 burn-rate windows and 6 alert rules.
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.dropped("metrics", "rejected") >= 2.0 * 15.0
        })
        .await,
        "{}",
        t.telemetry.render()
    );
    assert_eq!(t.dropped("metrics", "rejected") % 15.0, 0.0);
    x.shutdown(in_secs(5.0)).await.unwrap();
}

#[tokio::test]
async fn a_stuck_pipeline_holds_neither_evaluations_nor_shutdown() {
    use crate::helper::testutil::{TestCtx, eventually, in_secs};
    use pipeline_core::{Component, Consumer, Host};
    let t = TestCtx::new("slo");
    let stuck = std::sync::Arc::new(Stuck::default());
    let x = connector_with(&t, stuck.clone());
    x.start(&Host::new(std::env::temp_dir())).await.unwrap();
    let base = format!("http://{}", x.local_addr().unwrap());
    let now = pipeline_core::time::now_unix_nanos();
    let attrs = || vec![kv("service", "api")];
    x.consume(metrics_batch(vec![sum_metric(
        "http.requests",
        vec![(attrs(), now + 1, now + 2, 1000)],
        AggregationTemporality::Cumulative,
    )]))
    .await
    .unwrap();
    // Evaluations go on while the first emission hangs; the gauges they replace are counted.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let v: Value = serde_json::from_str(&http_get(&format!("{base}/slo")).await.2).unwrap();
            v[0]["total_events"] == 1000 && t.dropped("metrics", super::emit::SUPERSEDED) > 0.0
        })
        .await
    );
    assert_eq!(stuck.offered.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Shutdown ends by its deadline and counts the hung batch and the pending one.
    let started = std::time::Instant::now();
    x.shutdown(in_secs(0.3)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(t.dropped("metrics", "shutdown_timeout"), 30.0);
}
