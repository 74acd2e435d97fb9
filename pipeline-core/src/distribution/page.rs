//! The live pipeline page (`GET /` on the self-telemetry endpoint): every pipeline of the
//! running graph as a server-rendered SVG diagram (receivers, processors in order,
//! exporters), each component with its items per second in, out, refused and dropped, and
//! each queue's fill level. It refreshes itself every two seconds; no script, no front-end
//! build.
//!
//! Rates come from the self-metrics: a task samples [`Telemetry::totals`] every second
//! ([`LiveView::sample`]) and the page shows the change over the last interval, for the
//! pipeline's signal (a receiver serving every signal shows in each pipeline what it feeds
//! that one). The layout follows reloads ([`LiveView::set_layout`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::component::{ComponentId, ComponentKind};
use crate::graph::PipelineLayout;
use crate::net::escape_html as escape;
use crate::telemetry::{ComponentTotals, Telemetry, Totals};

/// How often rates are sampled.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Box geometry of the diagram, in pixels.
const BOX_W: u32 = 230;
const BOX_H: u32 = 92;
const GAP_X: u32 = 56;
const GAP_Y: u32 = 14;
const MARGIN: u32 = 8;

/// Items per second over the last sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Rates {
    received: f64,
    sent: f64,
    refused: f64,
    dropped: f64,
}

#[derive(Default)]
struct Sampled {
    last: Option<(Instant, Totals)>,
    rates: BTreeMap<(String, String, String), Rates>,
}

/// What the page shows: the running graph's layout and the latest rates.
pub(crate) struct LiveView {
    pub(crate) telemetry: Telemetry,
    layout: Mutex<Vec<PipelineLayout>>,
    sampled: Mutex<Sampled>,
}

impl LiveView {
    pub(crate) fn new(telemetry: Telemetry) -> Arc<LiveView> {
        Arc::new(LiveView {
            telemetry,
            layout: Mutex::new(Vec::new()),
            sampled: Mutex::new(Sampled::default()),
        })
    }

    /// Shows the pipelines of a newly running graph.
    pub(crate) fn set_layout(&self, layout: &[PipelineLayout]) {
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = layout.to_vec();
    }

    /// The kind of the running component `id` (`kind` when given, to choose between a
    /// receiver and an exporter of one ID), or what is wrong.
    pub(crate) fn find(
        &self,
        id: &str,
        kind: Option<ComponentKind>,
    ) -> Result<(ComponentKind, ComponentId), String> {
        let layout = self.layout.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<(ComponentKind, ComponentId)> = Vec::new();
        let mut all: Vec<String> = Vec::new();
        for p in layout.iter() {
            let ends = p.receivers.iter().chain(&p.exporters).cloned();
            let processors = p
                .processors
                .iter()
                .map(|id| (ComponentKind::Processor, id.clone()));
            for (k, c) in ends.chain(processors) {
                all.push(format!("{k} {c}"));
                if c.as_str() == id
                    && kind.is_none_or(|want| want == k)
                    && !found.contains(&(k, c.clone()))
                {
                    found.push((k, c));
                }
            }
        }
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => {
                all.sort();
                all.dedup();
                Err(format!(
                    "no component {id:?}{} in the running pipelines; there are: {}",
                    kind.map(|k| format!(" of kind {k}")).unwrap_or_default(),
                    all.join(", ")
                ))
            }
            many => Err(format!(
                "{id:?} names a {}: choose one with --kind",
                many.iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" and a ")
            )),
        }
    }

    /// Takes a sample of the counters and updates the rates.
    pub(crate) fn sample(&self) {
        let now = Instant::now();
        let totals = self.telemetry.totals();
        let mut s = self.sampled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, before)) = &s.last {
            let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
            let rates = totals
                .components
                .iter()
                .map(|(key, t)| {
                    let b = before.components.get(key).copied().unwrap_or_default();
                    let r = Rates {
                        received: rate(t.received, b.received),
                        sent: rate(t.sent, b.sent),
                        refused: rate(t.refused, b.refused),
                        dropped: rate(t.dropped, b.dropped),
                    };
                    (key.clone(), r)
                })
                .collect();
            s.rates = rates;
        }
        s.last = Some((now, totals));
    }

    /// Samples every [`SAMPLE_INTERVAL`] until the task is aborted.
    pub(crate) async fn run_sampler(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        loop {
            tick.tick().await;
            self.sample();
        }
    }

    /// The page.
    pub(crate) fn render(&self) -> String {
        let layout = self
            .layout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let s = self.sampled.lock().unwrap_or_else(|p| p.into_inner());
        let queues = s
            .last
            .as_ref()
            .map(|(_, t)| t.queues.clone())
            .unwrap_or_default();
        let totals = s.last.as_ref().map(|(_, t)| t.components.clone());
        let mut stats = Stats {
            rates: &s.rates,
            totals: totals.as_ref(),
            queues: &queues,
            signal: "",
        };
        let mut out = String::with_capacity(16 * 1024);
        out.push_str(HEAD);
        let _ = write!(
            out,
            "<p class=\"note\">{} pipeline(s). Items per second over the last {} s; \
             totals since start in the tooltip. Refreshes every 2 s. \
             <a href=\"/metrics\">/metrics</a></p>",
            layout.len(),
            SAMPLE_INTERVAL.as_secs()
        );
        for p in &layout {
            let _ = write!(
                out,
                "<section class=\"pipeline\" data-pipeline=\"{id}\"><h2>{id}</h2>",
                id = escape(&p.id)
            );
            // Rates of the pipeline's signal: a receiver serving every signal shows in each
            // pipeline what it feeds that one.
            stats.signal = p.id.split('/').next().unwrap_or_default();
            pipeline_svg(&mut out, p, &stats);
            out.push_str("</section>");
        }
        out.push_str("</body></html>\n");
        out
    }
}

const HEAD: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"2\"><title>Sightline: live pipelines</title><style>\
body{font-family:system-ui,sans-serif;margin:16px;background:#f6f7f9;color:#1d2330}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:14px 0 4px;font-family:monospace}\
.note{color:#5b6475;font-size:12px;margin:0 0 8px}\
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:4px 10px;margin:0 0 10px}\
svg text{font-family:ui-monospace,monospace;font-size:11px;fill:#1d2330}\
svg .kind{font-size:10px;fill:#5b6475;text-transform:uppercase}\
svg .id{font-size:13px;font-weight:bold}svg .bad{fill:#c62828;font-weight:bold}\
</style></head><body><h1>Sightline: live pipelines</h1>";

struct Stats<'a> {
    rates: &'a BTreeMap<(String, String, String), Rates>,
    totals: Option<&'a BTreeMap<(String, String, String), ComponentTotals>>,
    /// The signal of the pipeline drawn.
    signal: &'a str,
    queues: &'a BTreeMap<String, (i64, i64)>,
}

impl Stats<'_> {
    fn key(&self, kind: ComponentKind, id: &ComponentId) -> (String, String, String) {
        (
            kind.as_str().to_string(),
            id.to_string(),
            self.signal.to_string(),
        )
    }

    fn rates(&self, kind: ComponentKind, id: &ComponentId) -> Rates {
        self.rates
            .get(&self.key(kind, id))
            .copied()
            .unwrap_or_default()
    }

    fn totals(&self, kind: ComponentKind, id: &ComponentId) -> ComponentTotals {
        self.totals
            .and_then(|t| t.get(&self.key(kind, id)))
            .copied()
            .unwrap_or_default()
    }
}

fn x_of(column: u32) -> u32 {
    MARGIN + column * (BOX_W + GAP_X)
}

fn y_of(row: u32, rows: u32, of: u32) -> u32 {
    // Center a column of `of` boxes in a diagram `rows` boxes high.
    MARGIN + (rows - of) * (BOX_H + GAP_Y) / 2 + row * (BOX_H + GAP_Y)
}

/// One pipeline: receivers | processors... | exporters, with arrows between columns.
fn pipeline_svg(out: &mut String, p: &PipelineLayout, stats: &Stats<'_>) {
    let mut columns: Vec<Vec<(ComponentKind, &ComponentId)>> = Vec::new();
    columns.push(p.receivers.iter().map(|(k, id)| (*k, id)).collect());
    for id in &p.processors {
        columns.push(vec![(ComponentKind::Processor, id)]);
    }
    columns.push(p.exporters.iter().map(|(k, id)| (*k, id)).collect());
    let rows = columns.iter().map(Vec::len).max().unwrap_or(1).max(1) as u32;
    let width = x_of(columns.len() as u32) - GAP_X + MARGIN;
    let height = 2 * MARGIN + rows * (BOX_H + GAP_Y) - GAP_Y;
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\"><defs><marker id=\"arrow\" \
         viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" \
         orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#7a8396\"/></marker></defs>"
    );
    // Arrows first, under the boxes.
    for (c, pair) in columns.windows(2).enumerate() {
        let (from, to) = (&pair[0], &pair[1]);
        for i in 0..from.len() as u32 {
            for j in 0..to.len() as u32 {
                let x1 = x_of(c as u32) + BOX_W;
                let y1 = y_of(i, rows, from.len() as u32) + BOX_H / 2;
                let x2 = x_of(c as u32 + 1);
                let y2 = y_of(j, rows, to.len() as u32) + BOX_H / 2;
                let _ = write!(
                    out,
                    "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#7a8396\" \
                     stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>"
                );
            }
        }
    }
    for (c, column) in columns.iter().enumerate() {
        for (i, (kind, id)) in column.iter().enumerate() {
            let x = x_of(c as u32);
            let y = y_of(i as u32, rows, column.len() as u32);
            component_box(out, x, y, *kind, id, stats);
        }
    }
    out.push_str("</svg>");
}

fn colour(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Receiver => "#e3f0ff",
        ComponentKind::Processor => "#eef7e8",
        ComponentKind::Exporter => "#fff3e0",
        ComponentKind::Connector => "#f3e8fb",
    }
}

fn component_box(
    out: &mut String,
    x: u32,
    y: u32,
    kind: ComponentKind,
    id: &ComponentId,
    stats: &Stats<'_>,
) {
    let r = stats.rates(kind, id);
    let t = stats.totals(kind, id);
    let queue = matches!(kind, ComponentKind::Exporter | ComponentKind::Connector)
        .then(|| stats.queues.get(id.as_str()).copied())
        .flatten();
    let id_text = escape(id.as_str());
    let _ = write!(
        out,
        "<g class=\"component\" data-kind=\"{kind}\" data-id=\"{id_text}\" \
         data-in=\"{:.1}\" data-out=\"{:.1}\" data-refused=\"{:.1}\" data-dropped=\"{:.1}\"",
        r.received, r.sent, r.refused, r.dropped
    );
    if let Some((size, capacity)) = queue {
        let _ = write!(out, " data-queue=\"{size}/{capacity}\"");
    }
    let _ = write!(
        out,
        "><title>{kind} {id_text}: totals received {}, sent {}, refused {}, dropped {}</title>\
         <rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\" \
         fill=\"{}\" stroke=\"#9aa3b5\"/>\
         <text class=\"kind\" x=\"{tx}\" y=\"{}\">{kind}</text>\
         <text class=\"id\" x=\"{tx}\" y=\"{}\">{id_text}</text>\
         <text x=\"{tx}\" y=\"{}\">in {}/s  out {}/s</text>",
        t.received,
        t.sent,
        t.refused,
        t.dropped,
        colour(kind),
        y + 14,
        y + 30,
        y + 48,
        rate(r.received),
        rate(r.sent),
        tx = x + 8,
    );
    let bad = |v: f64| if v > 0.0 { " class=\"bad\"" } else { "" };
    let _ = write!(
        out,
        "<text x=\"{tx}\" y=\"{}\">refused <tspan{}>{}/s</tspan>  dropped <tspan{}>{}/s</tspan></text>",
        y + 64,
        bad(r.refused),
        rate(r.refused),
        bad(r.dropped),
        rate(r.dropped),
        tx = x + 8,
    );
    if let Some((size, capacity)) = queue {
        let fill = if capacity > 0 {
            (size as f64 / capacity as f64).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let bar = BOX_W - 170;
        let colour = if fill > 0.8 {
            "#c62828"
        } else if fill > 0.5 {
            "#ef8f00"
        } else {
            "#2e7d32"
        };
        let _ = write!(
            out,
            "<text x=\"{tx}\" y=\"{ty}\">queue</text>\
             <rect x=\"{bx}\" y=\"{by}\" width=\"{bar}\" height=\"8\" fill=\"#e6e8ee\"/>\
             <rect x=\"{bx}\" y=\"{by}\" width=\"{:.0}\" height=\"8\" fill=\"{colour}\"/>\
             <text x=\"{px}\" y=\"{ty}\">{:.0}% {size}/{capacity}</text>",
            fill * f64::from(bar),
            fill * 100.0,
            tx = x + 8,
            ty = y + 82,
            bx = x + 50,
            by = y + 75,
            px = x + 54 + bar,
        );
    }
    out.push_str("</g>");
}

/// A rate for people: `0`, `3.5`, `120`, `12.3k`, `4.56M`.
fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_well() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(3.49), "3.5");
        assert_eq!(rate(120.2), "120");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(4_560_000.0), "4.56M");
    }

    #[test]
    fn every_component_of_every_pipeline_is_drawn_with_its_rates() {
        let telemetry = Telemetry::new();
        let view = LiveView::new(telemetry.clone());
        let id = |s: &str| ComponentId::parse(s).unwrap();
        view.set_layout(&[PipelineLayout {
            id: "traces".into(),
            receivers: vec![(ComponentKind::Receiver, id("otlp"))],
            processors: vec![id("batch"), id("redaction/pii")],
            exporters: vec![
                (ComponentKind::Exporter, id("otlp/backend")),
                (ComponentKind::Connector, id("forward")),
            ],
        }]);
        let exporter = telemetry.component(ComponentKind::Exporter, &id("otlp/backend"));
        view.sample();
        exporter.received(crate::Signal::Traces, 500);
        exporter.dropped(crate::Signal::Traces, 5, "rejected");
        view.sample();
        let page = view.render();
        for needle in [
            "http-equiv=\"refresh\"",
            "data-pipeline=\"traces\"",
            "data-kind=\"receiver\" data-id=\"otlp\"",
            "data-kind=\"processor\" data-id=\"batch\"",
            "data-kind=\"processor\" data-id=\"redaction/pii\"",
            "data-kind=\"connector\" data-id=\"forward\"",
            "marker-end",
        ] {
            assert!(page.contains(needle), "{needle} missing: {page}");
        }
        let exporter_box = page
            .split("<g ")
            .find(|g| g.contains("data-id=\"otlp/backend\""))
            .unwrap();
        assert!(!exporter_box.contains("data-in=\"0.0\""), "{exporter_box}");
        assert!(
            exporter_box.contains("class=\"bad\""),
            "drops are red: {exporter_box}"
        );
        assert!(exporter_box.contains("dropped 5"), "{exporter_box}");
    }
}
