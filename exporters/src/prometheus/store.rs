//! The series table behind `/metrics`: the latest point of every series, by family.
//!
//! Batches are folded in by [`SeriesStore::fold`] (delta points made cumulative first, then
//! translated); every scrape renders it with [`super::text`]. A family keeps the type it
//! was first seen with: points of another type under the same name (or under a name that
//! would repeat a family in OpenMetrics: a gauge `x` beside a counter `x_total`) are
//! dropped and counted (`name_conflict`), never mixed into a malformed page. At most `max_series`
//! series (including `target_info` ones) are held; points of new series beyond that are
//! dropped and counted (`max_series`). A series not updated for `metric_expiration`
//! disappears at the next scrape or fold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use pipeline_core::proto::tonic::metrics::v1::ResourceMetrics;

use crate::helper::prometheus::{
    DeltaToCumulative, Family, Kind, Labels, MAX_SERIES, NAME_CONFLICT, Point, Sink,
    TranslationConfig, translate,
};

/// The latest point of a series (its labels are the map key) and when it came.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) point: Point,
    seen: Instant,
}

/// One family's series.
#[derive(Debug)]
pub(crate) struct FamilyEntry {
    pub(crate) kind: Kind,
    pub(crate) help: String,
    pub(crate) series: HashMap<Labels, Stored>,
}

/// What a fold did with a batch's points.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FoldOutcome {
    /// Points now in the table.
    pub(crate) stored: usize,
    /// Points left out, by reason.
    pub(crate) dropped: BTreeMap<&'static str, usize>,
}

/// Most conflicting names remembered for one warning each.
const MAX_WARNED: usize = 1000;

/// The exporter's state.
#[derive(Debug)]
pub(crate) struct SeriesStore {
    pub(crate) families: BTreeMap<String, FamilyEntry>,
    pub(crate) targets: HashMap<Labels, Instant>,
    series: usize,
    max_series: usize,
    expiration: Duration,
    deltas: DeltaToCumulative,
    translation: TranslationConfig,
    warned: HashSet<String>,
    last_expiry: Instant,
}

/// A fold sweeps for expired series at most this often (a scrape always does).
const FOLD_EXPIRY_EVERY: Duration = Duration::from_secs(1);

impl SeriesStore {
    pub(crate) fn new(
        translation: TranslationConfig,
        max_series: usize,
        expiration: Duration,
    ) -> SeriesStore {
        SeriesStore {
            families: BTreeMap::new(),
            targets: HashMap::new(),
            series: 0,
            max_series,
            expiration,
            deltas: DeltaToCumulative::new(max_series, expiration),
            translation,
            warned: HashSet::new(),
            last_expiry: Instant::now(),
        }
    }

    /// Series held now (`target_info` included).
    pub(crate) fn series_count(&self) -> usize {
        self.series
    }

    /// Folds a metrics payload in: delta points become running totals, then every point
    /// replaces its series' previous one (unless it is older).
    pub(crate) fn fold(&mut self, payload: &mut [ResourceMetrics], now: Instant) -> FoldOutcome {
        // A full sweep per batch would cost O(series) each; once a second is enough to free
        // room for new series.
        if now.saturating_duration_since(self.last_expiry) >= FOLD_EXPIRY_EVERY {
            self.expire(now);
        }
        let mut outcome = FoldOutcome::default();
        let over = self.deltas.convert(payload);
        if over > 0 {
            *outcome.dropped.entry(MAX_SERIES).or_default() += over;
        }
        let translation = std::mem::take(&mut self.translation);
        let mut sink = Folding {
            store: self,
            now,
            outcome: &mut outcome,
        };
        translate(payload, &translation, &mut sink);
        self.translation = translation;
        outcome
    }

    /// Removes series not updated within `metric_expiration`, and emptied families.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.last_expiry = now;
        if self.expiration.is_zero() {
            return;
        }
        let expiration = self.expiration;
        let fresh = |seen: &Instant| now.saturating_duration_since(*seen) < expiration;
        let before = self.targets.len();
        self.targets.retain(|_, seen| fresh(seen));
        let mut removed = before - self.targets.len();
        self.families.retain(|_, f| {
            let before = f.series.len();
            f.series.retain(|_, s| fresh(&s.seen));
            removed += before - f.series.len();
            !f.series.is_empty()
        });
        self.series -= removed;
    }

    /// The kind of an existing family that a new `family` would clash with on a page: in
    /// OpenMetrics a counter `x_total` is the family `x`, so a gauge `x` beside it would
    /// repeat `# TYPE x`; `target_info` (OpenMetrics family `target`) is ours.
    fn clash(&self, family: &Family) -> Option<Kind> {
        let om = om_family(&family.name, family.kind);
        if family.name == "target_info" || om == "target" {
            return Some(Kind::Gauge);
        }
        if family.kind == Kind::Counter && om != family.name {
            return self.families.get(om).map(|e| e.kind);
        }
        if family.kind != Kind::Counter {
            return self
                .families
                .get(&format!("{}_total", family.name))
                .filter(|e| e.kind == Kind::Counter)
                .map(|e| e.kind);
        }
        None
    }

    fn conflict(&mut self, name: &str, had: Kind, got: Kind) {
        if self.warned.len() < MAX_WARNED && self.warned.insert(name.to_string()) {
            tracing::warn!(
                metric = name,
                kept = had.as_str(),
                dropped = got.as_str(),
                "two metrics share a Prometheus name with different types; dropping the \
                 points of the later one (counted as dropped, reason name_conflict)"
            );
        }
    }
}

/// The OpenMetrics family name of a metric: a counter's without `_total`.
pub(crate) fn om_family(name: &str, kind: Kind) -> &str {
    if kind == Kind::Counter {
        name.strip_suffix("_total").unwrap_or(name)
    } else {
        name
    }
}

struct Folding<'a> {
    store: &'a mut SeriesStore,
    now: Instant,
    outcome: &'a mut FoldOutcome,
}

impl Folding<'_> {
    fn drop_points(&mut self, points: usize, reason: &'static str) {
        *self.outcome.dropped.entry(reason).or_default() += points;
    }
}

impl Sink for Folding<'_> {
    fn target_info(&mut self, labels: Labels, _timestamp_ms: i64) {
        let store = &mut *self.store;
        if let Some(seen) = store.targets.get_mut(&labels) {
            *seen = self.now;
        } else if store.series < store.max_series {
            store.targets.insert(labels, self.now);
            store.series += 1;
        }
        // A resource whose target_info does not fit is not a data point: nothing to count.
    }

    fn point(&mut self, family: &Family, mut point: Point) {
        let store = &mut *self.store;
        let full = store.series >= store.max_series;
        if !store.families.contains_key(&family.name)
            && let Some(had) = store.clash(family)
        {
            store.conflict(&family.name, had, family.kind);
            self.drop_points(1, NAME_CONFLICT);
            return;
        }
        let entry = match store.families.get_mut(&family.name) {
            Some(entry) if entry.kind != family.kind => {
                let had = entry.kind;
                store.conflict(&family.name, had, family.kind);
                self.drop_points(1, NAME_CONFLICT);
                return;
            }
            Some(entry) => entry,
            None if full => {
                self.drop_points(1, MAX_SERIES);
                return;
            }
            None => store
                .families
                .entry(family.name.clone())
                .or_insert_with(|| FamilyEntry {
                    kind: family.kind,
                    help: family.help.clone(),
                    series: HashMap::new(),
                }),
        };
        if entry.help.is_empty() && !family.help.is_empty() {
            entry.help.clone_from(&family.help);
        }
        match entry.series.get_mut(&point.labels) {
            Some(stored) => {
                // An older point than the one held does not turn a total back.
                if point.timestamp_ms >= stored.point.timestamp_ms {
                    point.labels = Labels::new();
                    stored.point = point;
                }
                stored.seen = self.now;
            }
            None if full => {
                self.drop_points(1, MAX_SERIES);
                return;
            }
            None => {
                // The labels live in the key only.
                let labels = std::mem::take(&mut point.labels);
                entry.series.insert(
                    labels,
                    Stored {
                        point,
                        seen: self.now,
                    },
                );
                store.series += 1;
            }
        }
        self.outcome.stored += 1;
    }

    fn skipped(&mut self, points: usize, reason: &'static str) {
        self.drop_points(points, reason);
    }
}
