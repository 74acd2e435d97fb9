//! The filelog JSON parser driven for the fuzz targets (`fuzz/`, feature `fuzzing`).

use super::config::{ParserConfig, ParserKind};
use super::json;
use super::parser::RecordBuilder;

/// Parses `line` as the `json` parser does (record, attributes, severity, time, IDs) and
/// checks the reader against serde_json: what serde_json reads as an object of modest
/// nesting, this reader must read too, with the same top-level keys in the same order.
pub fn filelog_json_line(line: &str) {
    let config = ParserConfig {
        kind: ParserKind::Json,
        ..ParserConfig::default()
    };
    if let Ok(builder) = RecordBuilder::new(&config) {
        let _ = builder.build(line, Vec::new(), 1);
    }
    let mut keys = Vec::new();
    let ours = json::visit_object(line, |k, _| keys.push(k.into_owned()));
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(line)
        && depth(&serde_json::Value::Object(map.clone())) < 60
    {
        assert!(
            ours.is_ok(),
            "serde_json reads {line:?}, the filelog reader: {ours:?}"
        );
        // serde_json keeps the last of duplicate keys; compare the distinct keys.
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        let mut theirs: Vec<&String> = map.keys().collect();
        theirs.sort();
        assert_eq!(distinct.iter().collect::<Vec<_>>(), theirs, "{line:?}");
    }
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
