//! Record times: ISO 8601 (with or without a zone; a time without one is UTC), epoch
//! seconds / milliseconds / microseconds / nanoseconds, and strptime layouts for the regex
//! parser. All results are Unix nanoseconds.

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm; the inverse of
/// `pipeline_core::time::civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
    offset_secs: i64,
}

impl Parts {
    fn to_unix_nanos(&self) -> Option<u64> {
        if !(1..=12).contains(&self.month)
            || !(1..=31).contains(&self.day)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - self.offset_secs;
        let secs = u64::try_from(secs).ok()?;
        secs.checked_mul(1_000_000_000)?
            .checked_add(u64::from(self.nanos))
    }
}

/// A number of seconds, milliseconds, microseconds or nanoseconds since the epoch, told
/// apart by magnitude (as the OpenTelemetry Collector's `epoch` layouts would be chosen).
pub(crate) fn from_epoch(value: f64) -> Option<u64> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let nanos = if value < 1e11 {
        value * 1e9
    } else if value < 1e14 {
        value * 1e6
    } else if value < 1e17 {
        value * 1e3
    } else {
        value
    };
    (nanos < 1.8e19).then_some(nanos as u64)
}

/// An integer epoch value, without float rounding for nanoseconds.
pub(crate) fn from_epoch_int(value: i64) -> Option<u64> {
    let v = u64::try_from(value).ok()?;
    if v < 100_000_000_000 {
        v.checked_mul(1_000_000_000)
    } else if v < 100_000_000_000_000 {
        v.checked_mul(1_000_000)
    } else if v < 100_000_000_000_000_000 {
        v.checked_mul(1_000)
    } else {
        Some(v)
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, min: usize, max: usize) -> Option<u64> {
        let start = self.i;
        let mut v = 0u64;
        while self.i < self.s.len() && self.i - start < max && self.s[self.i].is_ascii_digit() {
            v = v * 10 + u64::from(self.s[self.i] - b'0');
            self.i += 1;
        }
        (self.i - start >= min).then_some(v)
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn fraction(&mut self) -> Option<u32> {
        let start = self.i;
        let mut nanos = 0u64;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            if self.i - start < 9 {
                nanos = nanos * 10 + u64::from(c - b'0');
            }
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
        u32::try_from(nanos).ok()
    }
    /// `Z`, `UTC`, `GMT`, `+hh:mm`, `+hhmm`, `+hh`.
    fn zone(&mut self) -> Option<i64> {
        match self.peek() {
            Some(b'Z') | Some(b'z') => {
                self.i += 1;
                Some(0)
            }
            Some(b'+') | Some(b'-') => {
                let sign = if self.s[self.i] == b'-' { -1 } else { 1 };
                self.i += 1;
                let h = self.digits(2, 2)? as i64;
                self.eat(b':');
                let m = self.digits(0, 2).unwrap_or(0) as i64;
                Some(sign * (h * 3600 + m * 60))
            }
            _ => {
                let rest = &self.s[self.i..];
                for name in [&b"UTC"[..], b"GMT"] {
                    if rest.starts_with(name) {
                        self.i += 3;
                        return Some(0);
                    }
                }
                None
            }
        }
    }
}

/// ISO 8601 / RFC 3339 (`2024-01-15T10:30:00.123456`, `...Z`, `...+02:00`, a space instead
/// of `T`, a comma before the fraction) or a number of epoch seconds or milliseconds.
pub(crate) fn parse_auto(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return from_epoch_int(t.parse().ok()?);
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return from_epoch(t.parse().ok()?);
    }
    let mut c = Cursor {
        s: t.as_bytes(),
        i: 0,
    };
    let year = c.digits(4, 4)? as i64;
    if !c.eat(b'-') {
        return None;
    }
    let month = c.digits(2, 2)? as u32;
    if !c.eat(b'-') {
        return None;
    }
    let day = c.digits(2, 2)? as u32;
    let mut p = Parts {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset_secs: 0,
    };
    if c.i == c.s.len() {
        return p.to_unix_nanos();
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return None;
    }
    p.hour = c.digits(2, 2)? as u32;
    if !c.eat(b':') {
        return None;
    }
    p.minute = c.digits(2, 2)? as u32;
    if c.eat(b':') {
        p.second = c.digits(2, 2)? as u32;
        if c.eat(b'.') || c.eat(b',') {
            p.nanos = c.fraction()?;
        }
    }
    c.eat(b' ');
    if c.i < c.s.len() {
        p.offset_secs = c.zone()?;
    }
    if c.i != c.s.len() {
        return None;
    }
    p.to_unix_nanos()
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Literal(u8),
    Space,
    Directive(u8),
}

/// A strptime layout (`%Y-%m-%d %H:%M:%S,%f`): `%Y %y %m %d %e %H %I %p %M %S %f %L %z %Z
/// %b %h %a %j %T %F %s %%`. A layout without a zone reads the time as UTC.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    items: Vec<Item>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

impl Layout {
    /// Compiles a layout; an unknown directive is an error.
    pub(crate) fn parse(layout: &str) -> Result<Layout, String> {
        let b = layout.as_bytes();
        let mut items = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let Some(&d) = b.get(i + 1) else {
                    return Err("layout ends with a lone %".into());
                };
                match d {
                    b'T' => items.extend(Layout::parse("%H:%M:%S")?.items),
                    b'F' => items.extend(Layout::parse("%Y-%m-%d")?.items),
                    b'%' => items.push(Item::Literal(b'%')),
                    b'Y' | b'y' | b'm' | b'd' | b'e' | b'H' | b'I' | b'p' | b'M' | b'S' | b'f'
                    | b'L' | b'z' | b'Z' | b'b' | b'h' | b'a' | b'j' | b's' => {
                        items.push(Item::Directive(d))
                    }
                    other => {
                        return Err(format!(
                            "unknown directive %{}; known: %Y %y %m %d %e %H %I %p %M %S %f %L %z %Z %b %h %a %j %T %F %s %%",
                            other as char
                        ));
                    }
                }
                i += 2;
            } else {
                items.push(if b[i] == b' ' {
                    Item::Space
                } else {
                    Item::Literal(b[i])
                });
                i += 1;
            }
        }
        Ok(Layout { items })
    }

    /// Unix nanoseconds of `text` read with this layout.
    pub(crate) fn apply(&self, text: &str) -> Option<u64> {
        let mut c = Cursor {
            s: text.trim().as_bytes(),
            i: 0,
        };
        let mut p = Parts {
            year: 1970,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            nanos: 0,
            offset_secs: 0,
        };
        let mut pm: Option<bool> = None;
        let mut day_of_year: Option<u32> = None;
        for item in &self.items {
            match item {
                Item::Literal(l) => {
                    if !c.eat(*l) {
                        return None;
                    }
                }
                Item::Space => {
                    if !c.eat(b' ') {
                        return None;
                    }
                    while c.eat(b' ') {}
                }
                Item::Directive(d) => match d {
                    b'Y' => p.year = c.digits(4, 4)? as i64,
                    b'y' => p.year = 2000 + c.digits(2, 2)? as i64,
                    b'm' => p.month = c.digits(1, 2)? as u32,
                    b'd' => p.day = c.digits(1, 2)? as u32,
                    b'e' => {
                        c.eat(b' ');
                        p.day = c.digits(1, 2)? as u32;
                    }
                    b'H' | b'I' => p.hour = c.digits(1, 2)? as u32,
                    b'M' => p.minute = c.digits(1, 2)? as u32,
                    b'S' => p.second = c.digits(1, 2)? as u32,
                    b'f' | b'L' => p.nanos = c.fraction()?,
                    b'j' => day_of_year = Some(c.digits(1, 3)? as u32),
                    b'p' => {
                        let rest = c.s.get(c.i..c.i + 2)?.to_ascii_lowercase();
                        pm = Some(match rest.as_slice() {
                            b"am" => false,
                            b"pm" => true,
                            _ => return None,
                        });
                        c.i += 2;
                    }
                    b'z' | b'Z' => p.offset_secs = c.zone()?,
                    b'b' | b'h' => {
                        let rest = c.s.get(c.i..c.i + 3)?.to_ascii_lowercase();
                        let m = MONTHS
                            .iter()
                            .position(|m| m.as_bytes() == rest.as_slice())?;
                        p.month = m as u32 + 1;
                        c.i += 3;
                        // Full month names: skip the remaining letters.
                        while c.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                            c.i += 1;
                        }
                    }
                    b'a' => {
                        while c.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                            c.i += 1;
                        }
                    }
                    b's' => {
                        let secs = c.digits(1, 12)?;
                        let days = (secs / 86_400) as i64;
                        let (y, m, d) = pipeline_core::time::civil_from_days(days);
                        let rem = secs % 86_400;
                        p.year = y;
                        p.month = m;
                        p.day = d;
                        p.hour = (rem / 3600) as u32;
                        p.minute = (rem % 3600 / 60) as u32;
                        p.second = (rem % 60) as u32;
                    }
                    _ => return None,
                },
            }
        }
        if c.i != c.s.len() {
            return None;
        }
        if let Some(is_pm) = pm {
            if p.hour == 0 || p.hour > 12 {
                return None;
            }
            p.hour = match (is_pm, p.hour) {
                (false, 12) => 0,
                (true, 12) => 12,
                (true, h) => h + 12,
                (false, h) => h,
            };
        }
        if let Some(doy) = day_of_year {
            let start = days_from_civil(p.year, 1, 1) + i64::from(doy) - 1;
            let (y, m, d) = pipeline_core::time::civil_from_days(start);
            p.year = y;
            p.month = m;
            p.day = d;
        }
        p.to_unix_nanos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_705_314_600_000_000_000; // 2024-01-15T10:30:00Z

    #[test]
    fn iso_8601_variants() {
        assert_eq!(parse_auto("2024-01-15T10:30:00"), Some(T));
        assert_eq!(
            parse_auto("2024-01-15T10:30:00.123456"),
            Some(T + 123_456_000)
        );
        assert_eq!(parse_auto("2024-01-15T10:30:00Z"), Some(T));
        assert_eq!(parse_auto("2024-01-15T12:30:00+02:00"), Some(T));
        assert_eq!(
            parse_auto("2024-01-15T05:30:00.5-0500"),
            Some(T + 500_000_000)
        );
        assert_eq!(parse_auto("2024-01-15 10:30:00,250"), Some(T + 250_000_000));
        assert_eq!(parse_auto("2024-01-15"), Some(T - 37_800_000_000_000));
        assert_eq!(parse_auto("2024-13-15T10:30:00"), None);
        assert_eq!(parse_auto("yesterday"), None);
        assert_eq!(parse_auto("2024-01-15T10:30:00 garbage"), None);
    }

    #[test]
    fn epochs() {
        assert_eq!(parse_auto("1705314600"), Some(T));
        assert_eq!(parse_auto("1705314600123"), Some(T + 123_000_000));
        assert_eq!(from_epoch_int(1_705_314_600_123_456), Some(T + 123_456_000));
        assert_eq!(from_epoch(1_705_314_600.5), Some(T + 500_000_000));
        assert_eq!(from_epoch(-1.0), None);
    }

    #[test]
    fn strptime_layouts() {
        let l = Layout::parse("%Y-%m-%d %H:%M:%S,%f").unwrap();
        assert_eq!(l.apply("2024-01-15 10:30:00,123"), Some(T + 123_000_000));
        let l = Layout::parse("%d/%b/%Y:%H:%M:%S %z").unwrap();
        assert_eq!(l.apply("15/Jan/2024:12:30:00 +0200"), Some(T));
        let l = Layout::parse("%b %e %I:%M:%S %p").unwrap();
        assert_eq!(
            l.apply("Jan 15 10:30:00 AM")
                .map(|t| t % 86_400_000_000_000),
            Some(T % 86_400_000_000_000)
        );
        let l = Layout::parse("%s").unwrap();
        assert_eq!(l.apply("1705314600"), Some(T));
        assert!(Layout::parse("%Q").is_err());
        assert_eq!(
            Layout::parse("%F %T").unwrap().apply("2024-01-15 10:30:00"),
            Some(T)
        );
        assert_eq!(Layout::parse("%F").unwrap().apply("2024-01-15x"), None);
    }
}
