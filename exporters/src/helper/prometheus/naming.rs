//! Prometheus names from OpenTelemetry names, per the OpenTelemetry specification's
//! "Prometheus and OpenMetrics Compatibility" rules: metric names, unit suffixes, `_total`,
//! label names, and the escaping of label values and help text.

use std::fmt::Write as _;

use super::Kind;

/// A valid Prometheus metric name from an OpenTelemetry one: every character outside
/// `[a-zA-Z0-9_:]` becomes `_`, runs of `_` become one, and a leading digit gets a `_` before
/// it. An empty name becomes `_`.
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// A valid Prometheus label name from an attribute key, as the OpenTelemetry Collector makes
/// it: every character outside `[a-zA-Z0-9_]` becomes `_` (runs are kept); a leading digit
/// gets `key_` before it and a single leading `_` gets `key` (names starting with `__` are
/// Prometheus's own and kept).
pub fn sanitize_label_name(key: &str) -> String {
    let bytes = key.as_bytes();
    let valid = bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && (bytes[0] != b'_' || bytes.get(1) == Some(&b'_'))
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if valid {
        return key.to_string();
    }
    let mut out: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// `[a-zA-Z0-9_]` (and `:` when allowed) kept, everything else `_`, runs of `_` as one.
fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':');
        let c = if ok { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('_');
    }
    if allow_colon && out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The full unit words of the UCUM units OpenTelemetry uses.
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

/// The singular words for the denominator of a "per" unit (`m/s` -> `meters_per_second`).
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The suffix a unit adds to a metric name of `kind`, without the leading `_`; empty for
/// none. Annotations in braces (`{request}`) add nothing, `1` adds `ratio` to gauges only,
/// known UCUM units are spelled out (`s` -> `seconds`, `By` -> `bytes`), `a/b` becomes
/// `a_per_b`, and any other unit is sanitised and used as it is.
pub fn unit_suffix(unit: &str, kind: Kind) -> String {
    let unit = strip_annotations(unit);
    let unit = unit.trim();
    if unit.is_empty() {
        return String::new();
    }
    if unit == "1" {
        return if kind == Kind::Gauge {
            "ratio".into()
        } else {
            String::new()
        };
    }
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit, None),
    };
    let mut out = String::new();
    if !main.is_empty() && main != "1" {
        out.push_str(&word_or_sanitized(main, unit_word));
    }
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str("per_");
        out.push_str(&word_or_sanitized(per, per_unit_word));
    }
    out.trim_matches('_').to_string()
}

fn word_or_sanitized(unit: &str, words: fn(&str) -> Option<&'static str>) -> String {
    match words(unit) {
        Some(w) => w.to_string(),
        None => sanitize(unit, false).trim_matches('_').to_string(),
    }
}

/// `unit` without the `{...}` annotations.
fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The Prometheus name of an OpenTelemetry metric: `namespace_` prefixed, sanitised, with
/// the unit suffix (unless the name already ends with it) and `_total` for counters when
/// `add_suffixes` is on.
pub fn metric_name(
    namespace: Option<&str>,
    name: &str,
    unit: &str,
    kind: Kind,
    add_suffixes: bool,
) -> String {
    let mut out = match namespace.filter(|n| !n.is_empty()) {
        Some(ns) => sanitize_metric_name(&format!("{ns}_{name}")),
        None => sanitize_metric_name(name),
    };
    if !add_suffixes {
        return out;
    }
    let suffix = unit_suffix(unit, kind);
    if !suffix.is_empty() && !ends_with_word(&out, &suffix) {
        out = out.trim_end_matches('_').to_string();
        out.push('_');
        out.push_str(&suffix);
    }
    if kind == Kind::Counter && !ends_with_word(&out, "total") {
        out = out.trim_end_matches('_').to_string();
        out.push_str("_total");
    }
    out
}

/// Whether `name` ends with `_word` (or is `word`).
fn ends_with_word(name: &str, word: &str) -> bool {
    name == word
        || name
            .strip_suffix(word)
            .is_some_and(|head| head.ends_with('_'))
}

/// Appends `value` escaped for a label value: `\`, `"` and newline.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `text` escaped for a `# HELP` line: `\` and newline (and `"` in OpenMetrics).
pub fn escape_help(out: &mut String, text: &str, open_metrics: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if open_metrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Appends a sample value the way Prometheus parses it: `+Inf`, `-Inf`, `NaN`, or the
/// shortest decimal that reads back as the same float.
pub fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v != 0.0 && !(1e-5..1e16).contains(&v.abs()) {
        // Display never uses an exponent: 1e300 would be 301 digits.
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A float as [`write_float`] writes it, for label values such as `le` and `quantile`.
pub fn float_label(v: f64) -> String {
    let mut s = String::new();
    write_float(&mut s, v);
    s
}
