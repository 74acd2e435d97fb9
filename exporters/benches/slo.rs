//! Micro-benchmark of the `slo` exporter's evaluation cycle: 1,000 SLOs with 30-day windows,
//! every minute of the 30 days holding events (so every bucket is filled), evaluated at once:
//! SLI, error budget, burn rates over 5m/30m/1h/6h/3d, the three burn-rate rules, the budget
//! rules and the burn-down series of the status page. The baseline, in the same run, is what
//! a flat layout of 43,200 one-minute buckets per SLO costs just to sum each window once.
//!
//! Besides criterion's timings it prints, once, the process CPU seconds per evaluation cycle
//! (over 20 cycles, from /proc) and the resident memory the 1,000 SLOs' buckets add.
//!
//! `cargo bench -p exporters --bench slo`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use exporters::slo::eval::{AlertStates, Rules};
use exporters::slo::state::{Counts, SloBuckets};
use exporters::slo::{SloDefinition, SloExporterConfig};
use pipeline_core::time::process_usage;
use serde_json::json;

/// The allocator of the `sightline` binary, so memory figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SLOS: usize = 1_000;
const MINUTES: u64 = 30 * 1440;
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600;

fn setup() -> (Vec<SloDefinition>, Rules) {
    let slos: Vec<_> = (0..SLOS)
        .map(|i| {
            json!({"name": format!("slo-{i}"), "service": format!("svc-{}", i % 50),
                   "objective": 99.9, "window": "30d",
                   "indicator": {"availability": {"matchers": {"service": format!("svc-{}", i % 50)}}}})
        })
        .collect();
    let config: SloExporterConfig =
        <SloExporterConfig as pipeline_core::ComponentConfig>::parse(&json!({ "slos": slos }))
            .unwrap();
    let rules = Rules {
        budget: config.budget_alerts.clone(),
        burn_rate: config.burn_rate_alerts.clone(),
    };
    (config.slos, rules)
}

/// 30 days of minutes with 1,000 requests and 0-3 errors each.
fn filled(window: u64) -> SloBuckets {
    let mut b = SloBuckets::new(window);
    for m in 0..MINUTES {
        b.add(
            T0 + m * 60,
            Counts {
                total: 1000,
                bad: (m % 4) as i64,
            },
        );
    }
    b
}

fn slo(c: &mut Criterion) {
    let (defs, rules) = setup();
    let before = process_usage().map(|u| u.resident_bytes).unwrap_or(0);
    let buckets: Vec<SloBuckets> = defs
        .iter()
        .map(|d| filled(d.window.get().as_secs()))
        .collect();
    let after = process_usage().map(|u| u.resident_bytes).unwrap_or(0);
    let problems = vec![None; defs.len()];
    let now = (T0 + MINUTES * 60 - 1) * 1_000_000_000;
    let mut alerts = AlertStates::default();
    // Warm up, then CPU per cycle from /proc over 20 cycles.
    let e = alerts.evaluate(&defs, &buckets, &problems, &rules, now);
    assert_eq!(e.reports.len(), SLOS);
    let cycles = 20;
    let cpu0 = process_usage().map(|u| u.cpu_seconds).unwrap_or(0.0);
    for _ in 0..cycles {
        std::hint::black_box(alerts.evaluate(&defs, &buckets, &problems, &rules, now));
    }
    let cpu1 = process_usage().map(|u| u.cpu_seconds).unwrap_or(0.0);
    eprintln!(
        "slo: {SLOS} SLOs x 30d: {:.1} ms CPU per evaluation cycle ({cycles} cycles); buckets add {:.1} MiB RSS ({:.1} KiB per SLO)",
        (cpu1 - cpu0) * 1000.0 / cycles as f64,
        after.saturating_sub(before) as f64 / (1024.0 * 1024.0),
        after.saturating_sub(before) as f64 / 1024.0 / SLOS as f64,
    );
    let mut group = c.benchmark_group("slo");
    group.sample_size(20);
    group.bench_function("evaluate 1,000 SLOs over 30d (tiered buckets)", |b| {
        b.iter(|| alerts.evaluate(&defs, &buckets, &problems, &rules, now))
    });
    // Baseline: flat minute buckets, 100 SLOs (a tenth: 1,000 would take 690 MB), summing
    // each 30-day window once; multiply by 10 to compare.
    let flat: Vec<Vec<Counts>> = (0..SLOS / 10)
        .map(|_| {
            (0..MINUTES)
                .map(|m| Counts {
                    total: 1000,
                    bad: (m % 4) as i64,
                })
                .collect()
        })
        .collect();
    group.bench_function("baseline: sum 100 flat 43,200-minute windows", |b| {
        b.iter(|| {
            flat.iter()
                .map(|slo| {
                    slo.iter().fold(Counts::default(), |mut acc, c| {
                        acc.add(*c);
                        acc
                    })
                })
                .collect::<Vec<_>>()
        })
    });
    group.finish();
}

criterion_group!(benches, slo);
criterion_main!(benches);
