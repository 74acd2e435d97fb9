//! What the endpoint serves, rendered from the latest evaluation: the status page (HTML with
//! one inline SVG burn-down chart per SLO; no scripts, fonts or anything fetched from
//! elsewhere). The `slo_*` gauges are in `figures.rs`.

use std::fmt::Write;

use pipeline_core::net::escape_html as html;

use super::config::window_label;
use super::eval::SloReport;

/// Chart size in SVG units.
const CHART_W: f64 = 600.0;
const CHART_H: f64 = 160.0;
/// Points drawn at most per chart.
const MAX_POINTS: usize = 240;

/// The burn-down chart of one SLO: budget remaining (100% at the top, 0 at the dashed line,
/// overspent below) over the window's hours.
fn chart(r: &SloReport) -> String {
    let values = &r.burndown;
    let n = values.len().max(1);
    let step = n.div_ceil(MAX_POINTS).max(1);
    let low = values.iter().copied().fold(0.0f64, f64::min).max(-1.0);
    let y = |v: f64| {
        let v = v.clamp(low, 1.0);
        ((1.0 - v) / (1.0 - low)) * (CHART_H - 20.0) + 10.0
    };
    let mut points = String::new();
    let last = values.len().saturating_sub(1);
    for (i, v) in values.iter().enumerate() {
        if i % step != 0 && i != last {
            continue;
        }
        let x = if last == 0 {
            0.0
        } else {
            i as f64 / last as f64 * CHART_W
        };
        let _ = write!(points, "{x:.1},{:.1} ", y(*v));
    }
    let remaining = r.error_budget.remaining_ratio;
    let colour = if remaining <= 0.0 {
        "#c0392b"
    } else if remaining < 0.5 {
        "#d68910"
    } else {
        "#1e8449"
    };
    let zero = y(0.0);
    format!(
        r##"<svg class="burndown" viewBox="0 0 {CHART_W} {CHART_H}" width="{CHART_W}" height="{CHART_H}" role="img" aria-label="error budget burn-down of {name}">
<rect x="0" y="0" width="{CHART_W}" height="{CHART_H}" fill="#f7f9fb" stroke="#ccd"/>
<line x1="0" y1="{top:.1}" x2="{CHART_W}" y2="{top:.1}" stroke="#9ab" stroke-width="1"/>
<line x1="0" y1="{zero:.1}" x2="{CHART_W}" y2="{zero:.1}" stroke="#c0392b" stroke-dasharray="6 4"/>
<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{points}"/>
<text x="6" y="{label_top:.1}" font-size="11" fill="#456">100% budget</text>
<text x="6" y="{label_zero:.1}" font-size="11" fill="#c0392b">0%</text>
</svg>"##,
        name = html(&r.name),
        top = y(1.0),
        label_top = y(1.0) + 12.0,
        label_zero = zero - 3.0,
    )
}

fn percent(v: f64) -> String {
    format!("{:.3}%", v * 100.0)
}

/// The status page.
pub(crate) fn status_page(reports: &[SloReport], store: &str) -> String {
    let mut body = String::new();
    for r in reports {
        let _ = write!(
            body,
            r#"<section class="slo" id="slo-{id}">
<h2>{name} <small>service {service}</small></h2>
<p class="desc">{description}</p>
<table class="figures"><tr><th>objective</th><td>{objective}</td><th>SLI ({window})</th><td>{sli}</td><th>events</th><td>{total} ({bad} bad)</td></tr>
<tr><th>budget</th><td>{budget_minutes:.1} min</td><th>consumed</th><td>{consumed}</td><th>remaining</th><td>{remaining} ({remaining_minutes:.1} min)</td></tr></table>
"#,
            id = html(&r.name),
            name = html(&r.name),
            service = html(&r.service),
            description = html(&r.description),
            objective = percent(r.objective),
            window = window_label(std::time::Duration::from_secs(r.window_seconds)),
            sli = if r.total_events > 0 {
                percent(r.sli)
            } else {
                "no data".into()
            },
            total = r.total_events,
            bad = r.bad_events,
            budget_minutes = r.error_budget.total_minutes,
            consumed = percent(r.error_budget.consumed_ratio),
            remaining = percent(r.error_budget.remaining_ratio),
            remaining_minutes = r.error_budget.remaining_minutes,
        );
        body.push_str(&chart(r));
        body.push_str("\n<table class=\"burn\"><tr><th>burn rate</th>");
        // Shortest window first (the JSON map is ordered by name).
        let mut rates: Vec<(&String, &f64)> = r.burn_rates.iter().collect();
        rates.sort_by_key(|(w, _)| pipeline_core::config::parse_duration(w).unwrap_or_default());
        for (w, _) in &rates {
            let _ = write!(body, "<th>{}</th>", html(w));
        }
        body.push_str("</tr><tr><td></td>");
        for &(_, &v) in &rates {
            let _ = write!(
                body,
                "<td class=\"{}\">{v:.2}x</td>",
                if v >= 1.0 { "hot" } else { "ok" }
            );
        }
        body.push_str("</tr></table>\n");
        if r.alerts.is_empty() {
            body.push_str("<p class=\"alerts none\">No alerts firing.</p>\n");
        } else {
            body.push_str("<ul class=\"alerts\">");
            for a in &r.alerts {
                let _ = write!(
                    body,
                    "<li class=\"alert {sev}\"><b>{sev}</b> {rule} firing since {since}</li>",
                    sev = html(&a.severity),
                    rule = html(&a.rule),
                    since = html(&a.since),
                );
            }
            body.push_str("</ul>\n");
        }
        if let Some(e) = &r.error {
            let _ = writeln!(body, "<p class=\"error\">{}</p>", html(e));
        }
        body.push_str("</section>\n");
    }
    if reports.is_empty() {
        body.push_str("<p>No SLOs are defined.</p>\n");
    }
    let evaluated = reports
        .first()
        .map(|r| r.evaluated_at.as_str())
        .unwrap_or("never");
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sightline SLOs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #223; background: #fff; }}
section.slo {{ border: 1px solid #ccd; border-radius: 6px; padding: 0.5em 1em 1em; margin-bottom: 1.5em; max-width: 640px; }}
h2 small {{ color: #678; font-weight: normal; font-size: 0.6em; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ padding: 2px 8px; text-align: left; font-size: 0.9em; }}
td.hot {{ color: #c0392b; font-weight: bold; }}
li.alert {{ color: #c0392b; }}
p.error {{ color: #c0392b; }}
</style></head>
<body><h1>Service level objectives</h1>
<p>Evaluated at {evaluated} (data time). Store: {store}. Also as <a href="slo">JSON</a> and <a href="metrics">metrics</a>.</p>
{body}</body></html>
"#,
        evaluated = html(evaluated),
        store = html(store),
    )
}

/// The windows always shown, as labels (for tests).
#[cfg(test)]
pub(crate) fn reported_window_labels() -> Vec<String> {
    super::eval::REPORTED_WINDOWS
        .iter()
        .map(|w| window_label(std::time::Duration::from_secs(*w)))
        .collect()
}
