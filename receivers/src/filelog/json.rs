//! A small, fast JSON reader that builds OTLP values directly: objects become key-value
//! lists, arrays array values, integers `int`, other numbers `double`, `null` an empty
//! value. No intermediate tree, one allocation per string. Nesting is limited.

use std::borrow::Cow;

use pipeline_core::proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};

const MAX_DEPTH: usize = 64;

/// Why a line is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    /// Byte position.
    pub(crate) at: usize,
    /// What was wrong.
    pub(crate) what: &'static str,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.at, self.what)
    }
}

struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Parses `text`, which must hold one JSON object, into its fields in order.
#[cfg(test)]
pub(crate) fn parse_object(text: &str) -> Result<Vec<(String, AnyValue)>, JsonError> {
    let mut fields = Vec::new();
    visit_object(text, |k, v| fields.push((k.into_owned(), v)))?;
    Ok(fields)
}

/// Parses `text`, which must hold one JSON object, handing each top-level field to `f` in
/// order; keys without escapes are borrowed from `text`. On an error some fields may
/// already have been handed over.
pub(crate) fn visit_object<'t>(
    text: &'t str,
    mut f: impl FnMut(Cow<'t, str>, AnyValue),
) -> Result<(), JsonError> {
    let mut r = Reader {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    r.ws();
    if r.peek() != Some(b'{') {
        return Err(r.err("expected an object"));
    }
    r.i += 1;
    r.ws();
    if r.peek() == Some(b'}') {
        r.i += 1;
    } else {
        loop {
            r.ws();
            if r.peek() != Some(b'"') {
                return Err(r.err("expected a key in quotes"));
            }
            let key = r.key()?;
            r.expect(b':', "expected ':' after a key")?;
            let value = r.value(1)?;
            f(key, value);
            r.ws();
            match r.peek() {
                Some(b',') => r.i += 1,
                Some(b'}') => {
                    r.i += 1;
                    break;
                }
                _ => return Err(r.err("expected ',' or '}' in an object")),
            }
        }
    }
    r.ws();
    if r.i != r.b.len() {
        return Err(r.err("trailing characters after the object"));
    }
    Ok(())
}

impl<'a> Reader<'a> {
    /// At `"`: a key, borrowed when it has no escapes.
    fn key(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let start = self.i + 1;
        if let Some(n) = memchr::memchr2(b'"', b'\\', &self.b[start..])
            && self.b[start + n] == b'"'
        {
            self.i = start + n + 1;
            return Ok(Cow::Borrowed(&self.text[start..start + n]));
        }
        self.string().map(Cow::Owned)
    }

    fn err(&self, what: &'static str) -> JsonError {
        JsonError { at: self.i, what }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), JsonError> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// At `{`: the fields up to the matching `}`.
    fn object_fields(&mut self, depth: usize) -> Result<Vec<(String, AnyValue)>, JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.i += 1;
        let mut fields = Vec::with_capacity(16);
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(fields);
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a key in quotes"));
            }
            let key = self.string()?;
            self.expect(b':', "expected ':' after a key")?;
            let value = self.value(depth + 1)?;
            fields.push((key, value));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(fields);
                }
                _ => return Err(self.err("expected ',' or '}' in an object")),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<AnyValue, JsonError> {
        self.ws();
        let v = match self.peek() {
            Some(b'"') => Some(Value::StringValue(self.string()?)),
            Some(b'{') => {
                let values = self
                    .object_fields(depth)?
                    .into_iter()
                    .map(|(key, value)| KeyValue {
                        key,
                        value: Some(value),
                        ..Default::default()
                    })
                    .collect();
                Some(Value::KvlistValue(KeyValueList { values }))
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.err("nested too deeply"));
                }
                self.i += 1;
                let mut values = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        values.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.err("expected ',' or ']' in an array")),
                        }
                    }
                }
                Some(Value::ArrayValue(ArrayValue { values }))
            }
            Some(b't') => {
                self.literal(b"true")?;
                Some(Value::BoolValue(true))
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Some(Value::BoolValue(false))
            }
            Some(b'n') => {
                self.literal(b"null")?;
                None
            }
            Some(b'-' | b'0'..=b'9') => Some(self.number()?),
            _ => return Err(self.err("expected a value")),
        };
        Ok(AnyValue { value: v })
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), JsonError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("unknown literal"))
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        let mut float = false;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' => {}
                b'.' | b'e' | b'E' | b'+' | b'-' => float = true,
                _ => break,
            }
            self.i += 1;
        }
        let s = &self.text[start..self.i];
        if !float && let Ok(v) = s.parse::<i64>() {
            return Ok(Value::IntValue(v));
        }
        s.parse::<f64>()
            .map(Value::DoubleValue)
            .map_err(|_| JsonError {
                at: start,
                what: "invalid number",
            })
    }

    /// At `"`: the unescaped string.
    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let start = self.i;
        match memchr::memchr2(b'"', b'\\', &self.b[self.i..]) {
            Some(n) if self.b[self.i + n] == b'"' => {
                self.i += n + 1;
                return Ok(self.text[start..start + n].to_string());
            }
            None => return Err(self.err("unterminated string")),
            Some(_) => {}
        }
        let mut out = String::new();
        loop {
            let Some(n) = memchr::memchr2(b'"', b'\\', &self.b[self.i..]) else {
                return Err(self.err("unterminated string"));
            };
            out.push_str(&self.text[self.i..self.i + n]);
            self.i += n;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Ok(out);
            }
            self.i += 1;
            let Some(e) = self.peek() else {
                return Err(self.err("unterminated escape"));
            };
            self.i += 1;
            match e {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let hi = self.hex4()?;
                    let c = if (0xD800..0xDC00).contains(&hi) {
                        if self.b[self.i..].starts_with(b"\\u") {
                            self.i += 2;
                            let lo = self.hex4()?;
                            if (0xDC00..0xE000).contains(&lo) {
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                            } else {
                                None
                            }
                        } else {
                            None
                        }
                    } else {
                        char::from_u32(hi)
                    };
                    out.push(c.unwrap_or('\u{FFFD}'));
                }
                _ => return Err(self.err("invalid escape")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let mut v = 0u32;
        for d in digits {
            v = v * 16
                + (*d as char)
                    .to_digit(16)
                    .ok_or_else(|| self.err("invalid \\u escape"))?;
        }
        self.i += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &AnyValue) -> &str {
        match &v.value {
            Some(Value::StringValue(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_types_and_escapes() {
        let f = parse_object(
            r#" {"a": "x\"y\\n\u00e9\ud83d\ude00", "i": -12, "d": 0.5, "e": 1e3, "t": true, "n": null,
                "o": {"k": [1, "two", {}]}, "big": 123456789012345678901} "#,
        )
        .unwrap();
        assert_eq!(f[0].0, "a");
        assert_eq!(s(&f[0].1), "x\"y\\né😀");
        assert_eq!(f[1].1.value, Some(Value::IntValue(-12)));
        assert_eq!(f[2].1.value, Some(Value::DoubleValue(0.5)));
        assert_eq!(f[3].1.value, Some(Value::DoubleValue(1000.0)));
        assert_eq!(f[4].1.value, Some(Value::BoolValue(true)));
        assert_eq!(f[5].1.value, None);
        let Some(Value::KvlistValue(o)) = &f[6].1.value else {
            panic!()
        };
        let Some(Value::ArrayValue(a)) = &o.values[0].value.as_ref().unwrap().value else {
            panic!()
        };
        assert_eq!(a.values.len(), 3);
        assert!(matches!(f[7].1.value, Some(Value::DoubleValue(_))));
    }

    #[test]
    fn rejects_what_is_not_one_object() {
        for bad in [
            "",
            "[1]",
            "\"x\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} x",
            "{\"a\":tru}",
            "{\"a\":\"\\q\"}",
            "{\"a\":\"open}",
        ] {
            assert!(parse_object(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(100);
        assert!(parse_object(&format!("{{\"a\":{deep}}}")).is_err());
    }
}
