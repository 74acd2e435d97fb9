//! The `attributes` processor's config: otelcol's keys (`key`, `pattern`, `value`,
//! `from_attribute`, `action`) and their checks.

use pipeline_core::{ComponentConfig, FieldError};
use serde::Deserialize;

/// `processors.attributes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// The actions, applied in order to every record.
    pub actions: Vec<ActionConfig>,
}

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Adds `key` where it is missing.
    Insert,
    /// Replaces the value of `key` where it is present.
    Update,
    /// Adds or replaces `key`.
    Upsert,
    /// Removes `key`, or every key matching `pattern`.
    Delete,
    /// Replaces the value of `key` (or of every key matching `pattern`) by the lowercase hex
    /// SHA-256 of it.
    Hash,
}

impl Action {
    /// The name in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Insert => "insert",
            Action::Update => "update",
            Action::Upsert => "upsert",
            Action::Delete => "delete",
            Action::Hash => "hash",
        }
    }

    fn sets_a_value(self) -> bool {
        matches!(self, Action::Insert | Action::Update | Action::Upsert)
    }
}

/// One action.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute acted on.
    #[serde(default)]
    pub key: Option<String>,
    /// `delete` and `hash`: a regular expression; every key matching it is acted on.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `insert`, `update`, `upsert`: the value to set (a string, number, boolean, list or
    /// map; `${env:VAR}` works as everywhere in the config).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// `insert`, `update`, `upsert`: take the value from this attribute of the same record
    /// instead (no change where the record lacks it).
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// What to do.
    pub action: Action,
}

impl ActionConfig {
    fn check(&self, path: &str) -> Result<(), FieldError> {
        let action = self.action.as_str();
        if self.key.as_deref() == Some("") {
            return Err(FieldError::new(format!("{path}.key"), "must not be empty"));
        }
        if self.action.sets_a_value() {
            if self.key.is_none() {
                return Err(FieldError::new(
                    path,
                    format!("\"key\" is required for the {action} action"),
                ));
            }
            if self.pattern.is_some() {
                return Err(FieldError::new(
                    format!("{path}.pattern"),
                    format!("not supported by the {action} action (only delete and hash)"),
                ));
            }
            if self.value.is_some() == self.from_attribute.is_some() {
                return Err(FieldError::new(
                    path,
                    format!(
                        "exactly one of \"value\" or \"from_attribute\" is required for the {action} action"
                    ),
                ));
            }
            if matches!(self.value, Some(serde_json::Value::Null)) {
                return Err(FieldError::new(format!("{path}.value"), "must not be null"));
            }
        } else {
            if self.key.is_some() == self.pattern.is_some() {
                return Err(FieldError::new(
                    path,
                    format!(
                        "exactly one of \"key\" or \"pattern\" is required for the {action} action"
                    ),
                ));
            }
            if self.value.is_some() || self.from_attribute.is_some() {
                return Err(FieldError::new(
                    path,
                    format!("\"value\" and \"from_attribute\" are not used by the {action} action"),
                ));
            }
            if let Some(p) = &self.pattern {
                regex::Regex::new(p).map_err(|e| {
                    FieldError::new(format!("{path}.pattern"), format!("invalid regex: {e}"))
                })?;
            }
        }
        Ok(())
    }
}

impl ComponentConfig for AttributesConfig {
    fn default_config() -> serde_json::Value {
        serde_json::json!({ "actions": [
            { "key": "deployment.environment", "value": "prod", "action": "insert" }
        ] })
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.actions.is_empty() {
            return Err(FieldError::new(
                "actions",
                "at least one action is required",
            ));
        }
        for (i, a) in self.actions.iter().enumerate() {
            a.check(&format!("actions.{i}"))?;
        }
        Ok(())
    }
}
