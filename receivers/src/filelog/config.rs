//! The `filelog` receiver's config, with the OpenTelemetry Collector's key names.

use std::path::PathBuf;

use pipeline_core::config::HumanDuration;
pub use pipeline_core::config::{ByteSize, parse_byte_size};
use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

use super::glob::Glob;
use super::timestamp::Layout;

/// `receivers.filelog`.
///
/// ```yaml
/// receivers:
///   filelog/app:
///     include: [/var/log/app/*.log]
///     exclude: [/var/log/app/debug-*.log]
///     start_at: end
///     parser: { type: json }
///     multiline: { line_start_pattern: '^\S' }
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileLogConfig {
    /// Glob patterns of the files to read (`*`, `?`, `[a-z]`, `{a,b}`, `**`). Required.
    pub include: Vec<String>,
    /// Glob patterns of files never to read, even when included.
    pub exclude: Vec<String>,
    /// Where to start in files found at the first poll that have no checkpoint.
    pub start_at: StartAt,
    /// How often the globs are expanded and files checked for growth.
    pub poll_interval: HumanDuration,
    /// Most files held open at once.
    pub max_concurrent_files: usize,
    /// Add `log.file.name` to every record.
    pub include_file_name: bool,
    /// Add `log.file.path` to every record.
    pub include_file_path: bool,
    /// Bytes at the start of a file that identify it (`1KiB`).
    pub fingerprint_size: ByteSize,
    /// Longest record; a longer one is cut and marked `log.record.truncated`.
    pub max_log_size: ByteSize,
    /// How long a last line without its newline (or a pending multiline record) waits
    /// before it is emitted anyway.
    pub force_flush_period: HumanDuration,
    /// Most records handed to the pipeline and not yet released by it (delivered or
    /// dropped); past it the receiver waits. Bounds memory whatever the exporters' queues
    /// hold; keep it at least the batch processor's `send_batch_size`.
    pub max_in_flight_records: usize,
    /// Directory of the checkpoint file (default `<service.data_dir>/filelog/<id>`).
    pub storage: Option<PathBuf>,
    /// Records that span several lines.
    pub multiline: Option<MultilineConfig>,
    /// How each record is parsed.
    pub parser: ParserConfig,
}

impl Default for FileLogConfig {
    fn default() -> Self {
        FileLogConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            start_at: StartAt::End,
            poll_interval: HumanDuration::from_millis(200),
            max_concurrent_files: 1024,
            include_file_name: true,
            include_file_path: false,
            fingerprint_size: ByteSize(1024),
            max_log_size: ByteSize(1024 * 1024),
            force_flush_period: HumanDuration::from_millis(500),
            max_in_flight_records: 8192,
            storage: None,
            multiline: None,
            parser: ParserConfig::default(),
        }
    }
}

/// `start_at`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only lines written after start-up.
    #[default]
    End,
    /// Everything in the file.
    Beginning,
}

/// `multiline`: exactly one of the two patterns.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// A line matching this regex starts a new record (`^\d{4}-\d{2}-\d{2}`).
    pub line_start_pattern: Option<String>,
    /// A line matching this regex ends the current record.
    pub line_end_pattern: Option<String>,
}

/// `parser.type`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ParserKind {
    /// The line is the body.
    #[default]
    None,
    /// One JSON object per record (the seed guide's structured-log layout).
    Json,
    /// A regex with named captures.
    Regex,
}

/// `parser`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ParserConfig {
    /// `none`, `json` or `regex`.
    #[serde(rename = "type")]
    pub kind: ParserKind,
    /// The pattern, for `type: regex` (named captures: `(?P<level>\w+)`).
    pub regex: Option<String>,
    /// strptime layout of the timestamp (`%Y-%m-%d %H:%M:%S,%f`); without it ISO 8601 and
    /// epoch seconds or milliseconds are recognised.
    pub timestamp_layout: Option<String>,
    /// The field (or capture) holding the record's time.
    pub timestamp_field: String,
    /// The field holding the level, mapped to SeverityText and SeverityNumber.
    pub level_field: String,
    /// The field that becomes the body.
    pub message_field: String,
    /// The field that becomes the resource's `service.name`.
    pub service_field: String,
}

impl Default for ParserConfig {
    fn default() -> Self {
        ParserConfig {
            kind: ParserKind::None,
            regex: None,
            timestamp_layout: None,
            timestamp_field: "timestamp".into(),
            level_field: "level".into(),
            message_field: "message".into(),
            service_field: "service".into(),
        }
    }
}

fn check_regex(path: &str, pattern: &str) -> Result<(), FieldError> {
    regex::Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| FieldError::new(path, format!("invalid regex: {e}")))
}

impl ComponentConfig for FileLogConfig {
    /// `include` is required; the default reads `*.log` under `/var/log/app`.
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "include": ["/var/log/app/*.log"] })
    }

    /// Checks what serde cannot: patterns compile, sizes and periods are sane, the parser's
    /// keys fit its type.
    fn validate(&self) -> Result<(), FieldError> {
        if self.include.is_empty() {
            return Err(FieldError::new(
                "include",
                "name at least one glob pattern of files to read",
            ));
        }
        for (key, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, p) in patterns.iter().enumerate() {
                Glob::new(p).map_err(|e| FieldError::new(format!("{key}[{i}]"), e))?;
            }
        }
        if self.poll_interval.get().is_zero() {
            return Err(FieldError::new("poll_interval", "must be greater than 0"));
        }
        if self.max_concurrent_files < 2 {
            return Err(FieldError::new(
                "max_concurrent_files",
                "must be at least 2",
            ));
        }
        if !(16..=1024 * 1024).contains(&self.fingerprint_size.0) {
            return Err(FieldError::new(
                "fingerprint_size",
                "must be between 16 bytes and 1MiB",
            ));
        }
        if !(64..=1 << 30).contains(&self.max_log_size.0) {
            return Err(FieldError::new(
                "max_log_size",
                "must be between 64 bytes and 1GiB",
            ));
        }
        if self.force_flush_period.get().is_zero() {
            return Err(FieldError::new(
                "force_flush_period",
                "must be greater than 0",
            ));
        }
        if self.max_in_flight_records == 0 {
            return Err(FieldError::new(
                "max_in_flight_records",
                "must be at least 1",
            ));
        }
        if let Some(s) = &self.storage
            && s.as_os_str().is_empty()
        {
            return Err(FieldError::new("storage", "must not be empty"));
        }
        if let Some(m) = &self.multiline {
            match (&m.line_start_pattern, &m.line_end_pattern) {
                (Some(p), None) => check_regex("multiline.line_start_pattern", p)?,
                (None, Some(p)) => check_regex("multiline.line_end_pattern", p)?,
                _ => {
                    return Err(FieldError::new(
                        "multiline",
                        "set exactly one of line_start_pattern and line_end_pattern",
                    ));
                }
            }
        }
        self.parser.validate()
    }
}

impl ParserConfig {
    fn validate(&self) -> Result<(), FieldError> {
        match (self.kind, &self.regex) {
            (ParserKind::Regex, None) => {
                return Err(FieldError::new(
                    "parser.regex",
                    "type: regex needs a regex with named captures",
                ));
            }
            (ParserKind::Regex, Some(p)) => {
                let re = regex::Regex::new(p)
                    .map_err(|e| FieldError::new("parser.regex", format!("invalid regex: {e}")))?;
                if re.capture_names().flatten().next().is_none() {
                    return Err(FieldError::new(
                        "parser.regex",
                        "needs at least one named capture such as (?P<message>.*)",
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(FieldError::new(
                    "parser.regex",
                    "only used with type: regex",
                ));
            }
            _ => {}
        }
        if self.kind == ParserKind::None && self.timestamp_layout.is_some() {
            return Err(FieldError::new(
                "parser.timestamp_layout",
                "only used with type: json or regex",
            ));
        }
        if let Some(layout) = &self.timestamp_layout {
            Layout::parse(layout).map_err(|e| FieldError::new("parser.timestamp_layout", e))?;
        }
        for (key, value) in [
            ("parser.timestamp_field", &self.timestamp_field),
            ("parser.level_field", &self.level_field),
            ("parser.message_field", &self.message_field),
            ("parser.service_field", &self.service_field),
        ] {
            if value.is_empty() {
                return Err(FieldError::new(key, "must not be empty"));
            }
        }
        Ok(())
    }
}
