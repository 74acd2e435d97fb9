//! The exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0 text.
//!
//! Both write every family of the [`SeriesStore`] with `# HELP` (the OTLP description, or
//! the metric's name when it has none) and `# TYPE`, then its samples as
//! [`Point::for_each_sample`] lists them. OpenMetrics differs in what the specification
//! asks: a counter's family name has no `_total` (its sample has), `_created` lines give the
//! start time of counters, histograms and summaries, counters and buckets carry their
//! exemplars (`# {trace_id="...",span_id="..."} value timestamp`), `target_info` is an
//! `info` family, and the page ends with `# EOF`. Samples carry no timestamps: Prometheus
//! stamps them with the scrape time.

use crate::helper::prometheus::naming::{escape_help, escape_label_value, write_float};
use crate::helper::prometheus::{Exemplar, Kind, Labels, Point, Sample};

use super::store::{SeriesStore, om_family};

/// `Content-Type` of the 0.0.4 text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (Prometheus does, first), else text 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Writes the whole store.
pub(crate) fn render(store: &SeriesStore, format: Format) -> String {
    let om = format == Format::OpenMetrics;
    let mut out = String::with_capacity(store.series_count() * 96 + 256);
    let mut w = Writer { out: &mut out, om };
    for (name, family) in &store.families {
        let family_name = if om {
            om_family(name, family.kind)
        } else {
            name.as_str()
        };
        let help = if family.help.is_empty() {
            family_name
        } else {
            family.help.as_str()
        };
        w.header(family_name, family.kind.as_str(), help);
        for (labels, stored) in &family.series {
            w.point(family_name, family.kind, labels, &stored.point);
        }
    }
    if !store.targets.is_empty() {
        let kind = if om { "info" } else { "gauge" };
        let family = if om { "target" } else { "target_info" };
        w.header(family, kind, "Target metadata");
        for labels in store.targets.keys() {
            w.out.push_str("target_info");
            w.labels(labels, None);
            w.out.push_str(" 1\n");
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}

struct Writer<'a> {
    out: &'a mut String,
    om: bool,
}

impl Writer<'_> {
    fn header(&mut self, family: &str, kind: &str, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(family);
        self.out.push(' ');
        escape_help(self.out, help, self.om);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(family);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    fn labels(&mut self, labels: &Labels, extra: Option<(&str, f64)>) {
        if labels.is_empty() && extra.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (name, value) in labels {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.pair(name, value);
        }
        if let Some((name, v)) = extra {
            if !first {
                self.out.push(',');
            }
            self.out.push_str(name);
            self.out.push_str("=\"");
            write_float(self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn pair(&mut self, name: &str, value: &str) {
        self.out.push_str(name);
        self.out.push_str("=\"");
        escape_label_value(self.out, value);
        self.out.push('"');
    }

    fn point(&mut self, family: &str, kind: Kind, labels: &Labels, point: &Point) {
        point.for_each_sample(|s: Sample<'_>| {
            self.out.push_str(family);
            // In 0.0.4 a counter's family name is its sample name (with `_total`).
            if self.om && kind == Kind::Counter {
                self.out.push_str("_total");
            }
            self.out.push_str(s.suffix);
            self.labels(labels, s.extra);
            self.out.push(' ');
            write_float(self.out, s.value);
            if self.om
                && let Some(e) = s.exemplar
            {
                self.exemplar(e);
            }
            self.out.push('\n');
        });
        if self.om
            && kind != Kind::Gauge
            && let Some(created) = point.created_ms
        {
            self.out.push_str(family);
            self.out.push_str("_created");
            self.labels(labels, None);
            self.out.push(' ');
            write_float(self.out, created as f64 / 1000.0);
            self.out.push('\n');
        }
    }

    fn exemplar(&mut self, e: &Exemplar) {
        self.out.push_str(" # {");
        for (i, (name, value)) in e.labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.pair(name, value);
        }
        self.out.push_str("} ");
        write_float(self.out, e.value);
        if e.timestamp_ms > 0 {
            self.out.push(' ');
            write_float(self.out, e.timestamp_ms as f64 / 1000.0);
        }
    }
}
