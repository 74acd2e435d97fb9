//! The compiled rules and how they apply to attribute lists, values and log bodies.
//!
//! A value is never scanned rule by rule. One prefilter decides which rules can match: a
//! single pass over the value's bytes counts the byte classes the built-in detectors need
//! (an email needs `@` and a dot, a card 13 digits, ...; see `detectors.rs`), and
//! one `RegexSet` holds every user pattern. Only the rules that pass run their own finder,
//! in a fixed order: `blocked_values` in config order, then the detectors
//! (`Detector::ALL` order). A value no rule can match costs one byte pass and, with user
//! patterns, one DFA pass. Key decisions (ignored, allowed, blocked) are cached per key,
//! since attribute keys repeat from record to record.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Mutex;

use pipeline_core::FieldError;
use pipeline_core::attributes::to_text;
use pipeline_core::proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use regex::{Regex, RegexSet, RegexSetBuilder};
use ring::hmac;

use super::config::{ALLOWED_KEYS_RULE, Action, Detector, PatternRule, RedactionConfig, Summary};
use super::detectors::{BuiltinFinder, Check, Scanner, bit, builtin, open_gates, rank};

/// What replaces a masked value or match.
pub const MASK: &str = "****";

/// Summary attribute: how many values were masked or hashed.
pub const MASKED_COUNT: &str = "redaction.masked.count";
/// Summary attribute: which keys had values masked or hashed, sorted, comma-separated.
pub const MASKED_KEYS: &str = "redaction.masked.keys";
/// Summary attribute (`debug`): how many attributes were removed.
pub const REMOVED_COUNT: &str = "redaction.removed.count";
/// Summary attribute (`debug`): which keys were removed, sorted, comma-separated.
pub const REMOVED_KEYS: &str = "redaction.removed.keys";

/// One rule as the self-metrics name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleInfo {
    pub(crate) name: String,
    pub(crate) action: Action,
}

struct KeyRule {
    rule: usize,
    regex: Regex,
    action: Action,
}

enum Finder {
    /// A regex, with the index of its `redact` capture group if it has one.
    Regex { regex: Regex, group: Option<usize> },
    /// A built-in detector's scanner.
    Scan(Scanner),
}

struct ValueRule {
    rule: usize,
    finder: Finder,
    action: Action,
    check: Check,
}

/// Most keys a cache remembers; past that, new keys are decided afresh each time.
const KEY_CACHE_LIMIT: usize = 4096;

/// Attribute positions remembered by [`KeyCache::recent`].
const RECENT_POSITIONS: usize = 64;

/// Longest value remembered as clean by a [`Recent`] slot.
const CLEAN_VALUE_LIMIT: usize = 256;

/// What an attribute position last held: its key and the key's decision, and the value last
/// found clean there (if short enough), since records of one kind repeat most values (the
/// method, the route, the host, the user agent) and a comparison is cheaper than a scan.
#[derive(Default)]
struct Recent {
    key: String,
    decision: KeyDecision,
    clean: Clean,
    clean_text: String,
}

/// The clean value a [`Recent`] slot remembers.
#[derive(Default, Clone, Copy)]
enum Clean {
    #[default]
    None,
    /// The string in `clean_text`.
    Str,
    Int(i64),
}

/// Decisions by key: one map for attribute keys, one for keys inside maps. In front of the
/// map, what each attribute position last held ([`Recent`]): records of one kind tend to
/// list the same keys in the same order, so most lookups are one string comparison.
#[derive(Default)]
struct KeyCache {
    recent: Vec<Recent>,
    attribute: HashMap<Box<str>, KeyDecision, foldhash::fast::RandomState>,
    nested: HashMap<Box<str>, KeyDecision, foldhash::fast::RandomState>,
}

/// The rules of one `redaction` processor, compiled.
pub(crate) struct Redactor {
    allow_all_keys: bool,
    allowed_keys: HashSet<String>,
    ignored_keys: HashSet<String>,
    key_rules: Vec<KeyRule>,
    key_set: Option<RegexSet>,
    value_rules: Vec<ValueRule>,
    user_set: Option<RegexSet>,
    /// The detectors switched on, as a gate mask.
    detectors: u16,
    /// The index in `value_rules` of each detector, by its rank in `Detector::ALL`.
    by_rank: [usize; Detector::ALL.len()],
    allowed_values: Option<RegexSet>,
    /// Every key gets [`KeyDecision::Values`]: no key rule, allow-list or ignore-list.
    keys_trivial: bool,
    /// Key caches and scratch buffers not in use by a pass (as many as passes ever ran at
    /// once), so a batch starts with warm caches and allocated buffers.
    reusable: Mutex<Vec<(KeyCache, Scratch)>>,
    hmac: Option<hmac::Key>,
    hash_length: usize,
    summary: Summary,
    span_names: bool,
    rules: Vec<RuleInfo>,
}

/// Compiles `pattern`, reporting a syntax error with its position at `path`.
fn compile(pattern: &str, path: &str) -> Result<Regex, FieldError> {
    if let Err(e) = regex_syntax::Parser::new().parse(pattern) {
        let (span, kind) = match &e {
            regex_syntax::Error::Parse(e) => (*e.span(), e.kind().to_string()),
            regex_syntax::Error::Translate(e) => (*e.span(), e.kind().to_string()),
            other => {
                return Err(FieldError::new(
                    path,
                    format!("invalid regex {pattern:?}: {other}"),
                ));
            }
        };
        let at = if span.start.line > 1 {
            format!("line {}, column {}", span.start.line, span.start.column)
        } else {
            format!("position {}", span.start.column)
        };
        return Err(FieldError::new(
            path,
            format!("invalid regex {pattern:?}: {kind} at {at}"),
        ));
    }
    Regex::new(pattern)
        .map_err(|e| FieldError::new(path, format!("invalid regex {pattern:?}: {e}")))
}

fn set(patterns: &[&str], path: &str) -> Result<Option<RegexSet>, FieldError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    RegexSetBuilder::new(patterns)
        .build()
        .map(Some)
        .map_err(|e| FieldError::new(path, format!("the patterns do not compile together: {e}")))
}

impl Redactor {
    /// Compiles a validated config.
    pub(crate) fn new(c: &RedactionConfig) -> Result<Redactor, FieldError> {
        let mut rules = vec![RuleInfo {
            name: ALLOWED_KEYS_RULE.to_string(),
            action: Action::Remove,
        }];
        let mut add_rule = |name: String, action: Action| {
            rules.push(RuleInfo { name, action });
            rules.len() - 1
        };
        let action_of = |r: &PatternRule| r.action.unwrap_or(c.action);

        let mut key_rules = Vec::new();
        for (i, r) in c.blocked_keys.iter().enumerate() {
            let path = format!("blocked_keys[{i}]");
            let regex = compile(&r.pattern, &path)?;
            let name = r.name.clone().unwrap_or(path);
            key_rules.push(KeyRule {
                rule: add_rule(name, action_of(r)),
                regex,
                action: action_of(r),
            });
        }
        let key_patterns: Vec<&str> = c.blocked_keys.iter().map(|r| r.pattern.as_str()).collect();
        let key_set = set(&key_patterns, "blocked_keys")?;

        let mut value_rules = Vec::new();
        for (i, r) in c.blocked_values.iter().enumerate() {
            let path = format!("blocked_values[{i}]");
            let regex = compile(&r.pattern, &path)?;
            let name = r.name.clone().unwrap_or(path);
            value_rules.push(ValueRule {
                rule: add_rule(name, action_of(r)),
                finder: Finder::Regex {
                    group: redact_group(&regex),
                    regex,
                },
                action: action_of(r),
                check: Check::None,
            });
        }
        let user_patterns: Vec<&str> = c
            .blocked_values
            .iter()
            .map(|r| r.pattern.as_str())
            .collect();
        let user_set = set(&user_patterns, "blocked_values")?;

        let mut detectors = 0u16;
        let mut by_rank = [usize::MAX; Detector::ALL.len()];
        for d in Detector::ALL {
            let Some((i, on)) = c.detectors.iter().enumerate().find(|(_, r)| r.name == d) else {
                continue;
            };
            let b = builtin(d, &c.url_query_params);
            let finder = match b.finder {
                BuiltinFinder::Regex(p) => Finder::Regex {
                    regex: compile(&p, &format!("detectors[{i}]"))?,
                    group: None,
                },
                BuiltinFinder::Scan(scanner) => Finder::Scan(scanner),
            };
            let action = on.action.unwrap_or(c.action);
            value_rules.push(ValueRule {
                rule: add_rule(d.as_str().to_string(), action),
                finder,
                action,
                check: b.check,
            });
            by_rank[rank(d) as usize] = value_rules.len() - 1;
            detectors |= bit(d);
        }

        for (i, p) in c.allowed_values.iter().enumerate() {
            compile(p, &format!("allowed_values[{i}]"))?;
        }
        let allowed: Vec<&str> = c.allowed_values.iter().map(String::as_str).collect();
        let allowed_values = set(&allowed, "allowed_values")?;

        let keys_trivial = c.allow_all_keys && c.ignored_keys.is_empty() && key_set.is_none();
        Ok(Redactor {
            allow_all_keys: c.allow_all_keys,
            allowed_keys: c.allowed_keys.iter().cloned().collect(),
            ignored_keys: c.ignored_keys.iter().cloned().collect(),
            key_rules,
            key_set,
            value_rules,
            user_set,
            detectors,
            by_rank,
            allowed_values,
            keys_trivial,
            reusable: Mutex::new(Vec::new()),
            hmac: c
                .hash_key
                .as_ref()
                .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.as_bytes())),
            hash_length: c.hash_length,
            summary: c.summary,
            span_names: c.redact_span_names,
            rules,
        })
    }

    /// Every rule, indexed as the counts of a [`Pass`].
    pub(crate) fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// A pass for one batch, with key caches and buffers from an earlier one when free.
    pub(crate) fn pass(&self) -> Pass<'_> {
        let (cache, scratch) = self
            .reusable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        Pass {
            r: self,
            counts: vec![0; self.rules.len()],
            cache,
            scratch,
            masked: KeyList::default(),
            removed: KeyList::default(),
            masked_n: 0,
            removed_n: 0,
        }
    }

    /// What happens to an entry with `key`; `attribute` is false for keys inside maps,
    /// where `allowed_keys` does not apply.
    fn key_decision(&self, key: &str, attribute: bool) -> KeyDecision {
        if self.ignored_keys.contains(key) {
            return KeyDecision::Ignore;
        }
        if attribute && !self.allow_all_keys && !self.allowed_keys.contains(key) {
            return KeyDecision::Whole(0, Action::Remove);
        }
        if let Some(set) = &self.key_set
            && set.is_match(key)
            && let Some(r) = self.key_rules.iter().find(|r| r.regex.is_match(key))
        {
            return KeyDecision::Whole(r.rule, r.action);
        }
        KeyDecision::Values
    }

    /// Appends the pseudonym of `data` to `out`: a hex prefix of its HMAC-SHA256.
    fn push_hash(&self, data: &[u8], out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let Some(key) = &self.hmac else {
            // validate() requires a key for every hashing rule.
            out.push_str(MASK);
            return;
        };
        let tag = hmac::sign(key, data);
        out.extend(
            tag.as_ref()
                .iter()
                .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
                .take(self.hash_length)
                .map(char::from),
        );
    }

    /// Appends the pseudonym of `matched` to `out`, from `memo` when it was computed lately.
    fn push_pseudonym(
        &self,
        matched: &str,
        out: &mut String,
        memo: &mut HashMap<Box<str>, Box<str>>,
    ) {
        if let Some(p) = memo.get(matched) {
            out.push_str(p);
            return;
        }
        let start = out.len();
        self.push_hash(matched.as_bytes(), out);
        if memo.len() >= HASH_CACHE_LIMIT {
            memo.clear();
        }
        memo.insert(matched.into(), out[start..].into());
    }

    /// The pseudonym of `data`.
    fn hash(&self, data: &[u8]) -> String {
        let mut out = String::with_capacity(self.hash_length);
        self.push_hash(data, &mut out);
        out
    }

    /// Applies the value rules to `s`, adding what each did to `counts`. A changed value is
    /// left in one of `scratch`'s buffers, which live as long as the pass: redacting a value
    /// allocates nothing.
    fn redact_into(&self, s: &str, scratch: &mut Scratch, counts: &mut [u64]) -> Redacted {
        if self.value_rules.is_empty() {
            return Redacted::Keep;
        }
        let open = if self.detectors != 0 {
            open_gates(s, self.detectors)
        } else {
            0
        };
        let user_hit = self.user_set.as_ref().is_some_and(|set| set.is_match(s));
        if open == 0 && !user_hit {
            return Redacted::Keep;
        }
        if self.allowed_values.as_ref().is_some_and(|a| a.is_match(s)) {
            return Redacted::Keep;
        }
        let user_matches = match (&self.user_set, user_hit) {
            (Some(set), true) => Some(set.matches(s)),
            _ => None,
        };
        let Scratch {
            ranges,
            groups,
            bufs,
            pseudonyms,
        } = scratch;
        // The rules to run, in order: the user patterns that matched (they come first in
        // `value_rules`), then the detectors whose gates are open (their bits, lowest first).
        let mut users = user_matches.iter().flat_map(|m| m.iter());
        let mut pending = open;
        // Which buffer holds the current text; `None` while it is still `s`.
        let mut current: Option<usize> = None;
        loop {
            let index = match users.next() {
                Some(i) => i,
                None if pending != 0 => {
                    let rank = pending.trailing_zeros();
                    pending &= pending - 1;
                    self.by_rank[rank as usize]
                }
                None => break,
            };
            let Some(rule) = self.value_rules.get(index) else {
                continue;
            };
            let (text, out) = match current {
                None => (s, &mut bufs[0]),
                Some(i) => {
                    let [a, b] = bufs;
                    if i == 0 {
                        (a.as_str(), b)
                    } else {
                        (b.as_str(), a)
                    }
                }
            };
            ranges.clear();
            rule.find(text, ranges, groups);
            if ranges.is_empty() {
                continue;
            }
            if rule.action == Action::Remove {
                counts[rule.rule] += 1;
                return Redacted::Remove;
            }
            counts[rule.rule] += ranges.len() as u64;
            out.clear();
            let mut last = 0;
            for r in ranges.iter() {
                out.push_str(&text[last..r.start]);
                match rule.action {
                    Action::Hash => self.push_pseudonym(&text[r.clone()], out, pseudonyms),
                    _ => out.push_str(MASK),
                }
                last = r.end;
            }
            out.push_str(&text[last..]);
            if pending != 0 {
                // What a rule replaced no later detector needs to look at: a masked bearer
                // token no longer opens the JWT or card gates.
                pending &= open_gates(out, pending);
            }
            current = Some(match current {
                None | Some(1) => 0,
                Some(_) => 1,
            });
        }
        match current {
            Some(i) => Redacted::Changed(i),
            None => Redacted::Keep,
        }
    }

    /// [`Self::redact_into`] with a fresh scratch, returning the new text.
    #[cfg(test)]
    pub(crate) fn redact_str(&self, s: &str, counts: &mut [u64]) -> StrOutcome {
        let mut scratch = Scratch::default();
        match self.redact_into(s, &mut scratch, counts) {
            Redacted::Keep => StrOutcome::Keep,
            Redacted::Changed(i) => StrOutcome::Replace(std::mem::take(&mut scratch.bufs[i])),
            Redacted::Remove => StrOutcome::Remove,
        }
    }

    /// The replacement of a whole value a key rule matched.
    fn whole_value(&self, action: Action, v: &Value) -> Value {
        if action != Action::Hash {
            return Value::StringValue(MASK.to_string());
        }
        let hashed = match v {
            Value::BytesValue(b) => self.hash(b),
            other => match to_text(other) {
                Some(text) => self.hash(text.as_bytes()),
                None => self.hash(&serde_json::to_vec(other).unwrap_or_default()),
            },
        };
        Value::StringValue(hashed)
    }
}

fn redact_group(regex: &Regex) -> Option<usize> {
    regex.capture_names().position(|n| n == Some("redact"))
}

impl ValueRule {
    /// Pushes the ranges of `hay` this rule replaces; `groups` is scratch space.
    fn find(&self, hay: &str, out: &mut Vec<Range<usize>>, groups: &mut Vec<Range<usize>>) {
        match &self.finder {
            Finder::Regex {
                regex,
                group: Some(g),
            } => {
                for caps in regex.captures_iter(hay) {
                    let Some(whole) = caps.get(0) else { continue };
                    let target = caps.get(*g).map_or(whole.range(), |m| m.range());
                    self.check.accept(hay, whole.range(), target, out);
                }
            }
            Finder::Regex { regex, group: None } => {
                for m in regex.find_iter(hay) {
                    self.check.accept(hay, m.range(), m.range(), out);
                }
            }
            Finder::Scan(scanner) => scanner.find(hay, out, groups),
        }
    }
}

/// Most pseudonyms a [`Scratch`] remembers before it starts over.
const HASH_CACHE_LIMIT: usize = 4096;

/// Reusable buffers for redacting values, and the pseudonyms computed lately: the same
/// users, addresses and tokens recur from record to record, and a lookup costs a fraction
/// of an HMAC.
#[derive(Default)]
pub(crate) struct Scratch {
    ranges: Vec<Range<usize>>,
    groups: Vec<Range<usize>>,
    bufs: [String; 2],
    pseudonyms: HashMap<Box<str>, Box<str>>,
}

/// What the value rules made of a value, in [`Redactor::redact_into`].
enum Redacted {
    /// Nothing matched.
    Keep,
    /// The new text is in this scratch buffer.
    Changed(usize),
    /// A `remove` rule matched: the holder goes.
    Remove,
}

/// What the value rules made of a string.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StrOutcome {
    /// Nothing matched.
    Keep,
    /// Parts were masked or hashed.
    Replace(String),
    /// A `remove` rule matched: the holder goes.
    Remove,
}

#[derive(Debug, Clone, Copy, Default)]
enum KeyDecision {
    /// `ignored_keys`: not touched at all.
    Ignore,
    /// A key rule (or the allow-list, rule 0) decides for the whole value.
    Whole(usize, Action),
    /// The value rules decide.
    #[default]
    Values,
}

/// Where a value sits inside its record, for the summary; rendered only when a value there
/// changed.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    /// The record's own attributes (or, with a name, `body` or `name`).
    Root(&'static str),
    /// An entry of a map or attribute list.
    Key(&'a Path<'a>, &'a str),
    /// An element of a list (`events[2]`, a body array element).
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self, out: &mut String) {
        match self {
            Path::Root(s) => out.push_str(s),
            Path::Key(parent, key) => {
                parent.render(out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Path::Index(parent, i) => {
                parent.render(out);
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
}

/// Applies the rules across one batch: counts what each rule did, and tallies what changed
/// in the current record for its summary.
pub(crate) struct Pass<'r> {
    r: &'r Redactor,
    /// Redactions per rule, indexed like [`Redactor::rules`].
    pub(crate) counts: Vec<u64>,
    cache: KeyCache,
    scratch: Scratch,
    masked: KeyList,
    removed: KeyList,
    masked_n: i64,
    removed_n: i64,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let reusable = (
            std::mem::take(&mut self.cache),
            std::mem::take(&mut self.scratch),
        );
        self.r
            .reusable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reusable);
    }
}

/// The keys of one record's changes, reusing its strings from record to record.
#[derive(Default)]
struct KeyList {
    items: Vec<String>,
    len: usize,
}

impl KeyList {
    fn push(&mut self, path: Path<'_>) {
        if self.len == self.items.len() {
            self.items.push(String::new());
        }
        let slot = &mut self.items[self.len];
        slot.clear();
        path.render(slot);
        self.len += 1;
    }

    /// Sorted, without repeats, comma-separated; then empty.
    fn take_joined(&mut self) -> String {
        let keys = &mut self.items[..self.len];
        // Insertion sort: a record has few changed keys, too few for the general sort's
        // setup to pay (it cost more than the comparisons in the benchmark's profile).
        for i in 1..keys.len() {
            let mut j = i;
            while j > 0 && keys[j - 1] > keys[j] {
                keys.swap(j - 1, j);
                j -= 1;
            }
        }
        let mut out = String::with_capacity(keys.iter().map(|k| k.len() + 1).sum());
        let mut previous: Option<&str> = None;
        for k in keys.iter() {
            if previous == Some(k.as_str()) {
                continue;
            }
            if previous.is_some() {
                out.push(',');
            }
            out.push_str(k);
            previous = Some(k);
        }
        self.len = 0;
        out
    }
}

impl Pass<'_> {
    fn masked(&mut self, path: Path<'_>) {
        self.masked_n += 1;
        if self.r.summary != Summary::Silent {
            self.masked.push(path);
        }
    }

    fn removed(&mut self, path: Path<'_>) {
        self.removed_n += 1;
        if self.r.summary == Summary::Debug {
            self.removed.push(path);
        }
    }

    /// [`Redactor::key_decision`], remembered per key; `position` is the entry's index in
    /// its attribute list when `attribute`. Afterwards the position's [`Recent`] slot, if
    /// any, is this key's.
    fn key_decision(&mut self, key: &str, attribute: bool, position: usize) -> KeyDecision {
        let recent = attribute && position < RECENT_POSITIONS;
        if recent
            && let Some(slot) = self.cache.recent.get(position)
            && slot.key == key
        {
            return slot.decision;
        }
        let d = if self.r.keys_trivial {
            KeyDecision::Values
        } else {
            let map = if attribute {
                &mut self.cache.attribute
            } else {
                &mut self.cache.nested
            };
            match map.get(key) {
                Some(d) => *d,
                None => {
                    let d = self.r.key_decision(key, attribute);
                    if map.len() < KEY_CACHE_LIMIT {
                        map.insert(key.into(), d);
                    }
                    d
                }
            }
        };
        if recent {
            let slots = &mut self.cache.recent;
            if slots.len() <= position {
                slots.resize_with(position + 1, Recent::default);
            }
            let slot = &mut slots[position];
            slot.key.clear();
            slot.key.push_str(key);
            slot.decision = d;
            slot.clean = Clean::None;
        }
        d
    }

    /// Whether `v` is the value last found clean at attribute `position` (whose slot is
    /// this key's): the same bytes give the same (empty) result, so it is not scanned again.
    fn known_clean(&self, position: usize, v: Option<&AnyValue>) -> bool {
        let Some(slot) = self.cache.recent.get(position) else {
            return false;
        };
        match (&slot.clean, v.and_then(|v| v.value.as_ref())) {
            (Clean::Str, Some(Value::StringValue(s))) => slot.clean_text == *s,
            (Clean::Int(a), Some(Value::IntValue(b))) => a == b,
            _ => false,
        }
    }

    /// Remembers `v` as clean at attribute `position`.
    fn remember_clean(&mut self, position: usize, v: Option<&AnyValue>) {
        let Some(slot) = self.cache.recent.get_mut(position) else {
            return;
        };
        slot.clean = match v.and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) if s.len() <= CLEAN_VALUE_LIMIT => {
                slot.clean_text.clear();
                slot.clean_text.push_str(s);
                Clean::Str
            }
            Some(Value::IntValue(i)) => Clean::Int(*i),
            _ => Clean::None,
        };
    }

    /// Applies the key and value rules to an attribute list; `at` is where the list sits
    /// (the record itself, `events[0]`, ...).
    pub(crate) fn attributes(&mut self, attrs: &mut Vec<KeyValue>, at: Path<'_>) {
        self.entries(attrs, at, true);
    }

    fn entries(&mut self, entries: &mut Vec<KeyValue>, at: Path<'_>, attribute: bool) {
        let mut position = 0;
        entries.retain_mut(|kv| {
            if !attribute {
                // A map inside a value (a log body) holds data in its keys too.
                self.map_key(&mut kv.key, &at);
            }
            let path = Path::Key(&at, &kv.key);
            position += 1;
            match self.key_decision(&kv.key, attribute, position - 1) {
                KeyDecision::Ignore => true,
                KeyDecision::Whole(rule, Action::Remove) => {
                    self.counts[rule] += 1;
                    self.removed(path);
                    false
                }
                KeyDecision::Whole(rule, action) => {
                    self.counts[rule] += 1;
                    let old = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    let new = match old {
                        Some(v) => self.r.whole_value(action, v),
                        None => Value::StringValue(MASK.to_string()),
                    };
                    kv.value = Some(AnyValue { value: Some(new) });
                    self.masked(path);
                    true
                }
                KeyDecision::Values => {
                    let slot = position - 1;
                    let memo = attribute && slot < RECENT_POSITIONS;
                    if memo && self.known_clean(slot, kv.value.as_ref()) {
                        return true;
                    }
                    let changes = self.masked_n + self.removed_n;
                    let keep = match kv.value.as_mut() {
                        Some(v) => self.value(v, path),
                        None => true,
                    };
                    if memo && self.masked_n + self.removed_n == changes {
                        self.remember_clean(slot, kv.value.as_ref());
                    }
                    keep
                }
            }
        });
    }

    /// Applies the value rules to the key of a map entry inside a value (`at` is the map):
    /// what they find is masked or hashed in the key, which stays; a `remove` rule masks
    /// the whole key.
    fn map_key(&mut self, key: &mut String, at: &Path<'_>) {
        if self.mask_in_place(key) {
            self.masked(Path::Key(at, key));
        }
    }

    /// Applies the value rules to a string that must stay (a map key, a span name): what
    /// they find is replaced in place, and a `remove` rule masks the whole string. True
    /// when it changed.
    fn mask_in_place(&mut self, s: &mut String) -> bool {
        match self.r.redact_into(s, &mut self.scratch, &mut self.counts) {
            Redacted::Keep => return false,
            Redacted::Changed(i) => {
                s.clear();
                s.push_str(&self.scratch.bufs[i]);
            }
            Redacted::Remove => {
                s.clear();
                s.push_str(MASK);
            }
        }
        true
    }

    /// Applies the value rules to `v` (and the key rules to maps inside it); false when
    /// the value must go.
    fn value(&mut self, v: &mut AnyValue, path: Path<'_>) -> bool {
        let r = self.r;
        match &mut v.value {
            Some(Value::StringValue(s)) => {
                match r.redact_into(s, &mut self.scratch, &mut self.counts) {
                    Redacted::Keep => return true,
                    Redacted::Changed(i) => {
                        // In place: a masked value is rarely longer than the original.
                        s.clear();
                        s.push_str(&self.scratch.bufs[i]);
                    }
                    Redacted::Remove => {
                        self.removed(path);
                        return false;
                    }
                }
            }
            Some(Value::IntValue(i)) => {
                let mut buf = itoa_buf();
                match r.redact_into(itoa(*i, &mut buf), &mut self.scratch, &mut self.counts) {
                    Redacted::Keep => return true,
                    Redacted::Changed(i) => {
                        v.value = Some(Value::StringValue(self.scratch.bufs[i].clone()));
                    }
                    Redacted::Remove => {
                        self.removed(path);
                        return false;
                    }
                }
            }
            Some(Value::ArrayValue(a)) => {
                let mut i = 0;
                a.values.retain_mut(|elem| {
                    let keep = self.value(elem, Path::Index(&path, i));
                    i += 1;
                    keep
                });
                return true;
            }
            Some(Value::KvlistValue(m)) => {
                self.entries(&mut m.values, path, false);
                return true;
            }
            _ => return true,
        }
        self.masked(path);
        true
    }

    /// Applies the rules to a log body: strings, and strings inside maps and arrays at any
    /// depth. A `remove` rule matching a string body removes the body.
    pub(crate) fn body(&mut self, body: &mut Option<AnyValue>) {
        if let Some(v) = body
            && !self.value(v, Path::Root("body"))
        {
            *body = None;
        }
    }

    /// Applies the value rules to a span name when `redact_span_names` is on; a `remove`
    /// rule masks the whole name (a span keeps a name).
    pub(crate) fn span_name(&mut self, name: &mut String) {
        if self.r.span_names && self.mask_in_place(name) {
            self.masked(Path::Root("name"));
        }
    }

    /// Ends a record: writes its summary into `attrs` (per the `summary` level) when
    /// something changed, and starts the next record's tally.
    pub(crate) fn finish_record(&mut self, attrs: &mut Vec<KeyValue>) {
        if self.masked_n == 0 && self.removed_n == 0 {
            return;
        }
        let masked = self.r.summary != Summary::Silent && self.masked_n > 0;
        let removed = self.r.summary == Summary::Debug && self.removed_n > 0;
        // Exactly the room needed: a doubled list would copy more than it saves.
        attrs.reserve_exact(2 * usize::from(masked) + 2 * usize::from(removed));
        if masked {
            upsert(attrs, MASKED_COUNT, Value::IntValue(self.masked_n));
            let keys = self.masked.take_joined();
            upsert(attrs, MASKED_KEYS, Value::StringValue(keys));
        }
        if removed {
            upsert(attrs, REMOVED_COUNT, Value::IntValue(self.removed_n));
            let keys = self.removed.take_joined();
            upsert(attrs, REMOVED_KEYS, Value::StringValue(keys));
        }
        self.masked.len = 0;
        self.removed.len = 0;
        self.masked_n = 0;
        self.removed_n = 0;
    }
}

fn upsert(attrs: &mut Vec<KeyValue>, key: &str, value: Value) {
    let value = Some(AnyValue { value: Some(value) });
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = value,
        None => attrs.push(KeyValue {
            key: key.to_string(),
            value,
            ..Default::default()
        }),
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// `i` in decimal, written into `buf` (an i64 needs at most 20 bytes).
fn itoa(i: i64, buf: &mut [u8; 20]) -> &str {
    let mut n = i.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("")
}
