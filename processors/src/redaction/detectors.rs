//! The built-in detectors: each is a regex that finds candidates, a byte-level gate (a
//! condition every match needs, checked in the single prefilter pass over a value) and,
//! where a regex alone cannot tell, a check on the candidate (Luhn, octet ranges, an IPv6
//! parse, boundaries). Keeping the regexes free of `\b` and look-around lets them run on the
//! fast DFA engines; the checks look at the bytes around a match instead.

use std::net::Ipv6Addr;
use std::ops::Range;

use super::config::Detector;

/// A built-in detector, ready to compile.
pub(crate) struct Builtin {
    /// The candidate regex; a `redact` group limits what is replaced.
    pub(crate) pattern: String,
    /// What must hold of the value's bytes for any match to exist.
    pub(crate) gate: Gate,
    /// The check each candidate must pass.
    pub(crate) check: Check,
}

/// Counts of byte classes over one value, from one pass ([`Stats::of`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    len: usize,
    digits: u32,
    dots: u32,
    colons: u32,
    upper: u32,
    present: u16,
}

const AT: u16 = 1;
const SLASH: u16 = 1 << 1;
const EQUALS: u16 = 1 << 2;
const QUERY_SEP: u16 = 1 << 3;
const SPACE: u16 = 1 << 4;
const LETTER_B: u16 = 1 << 5;
const LETTER_J: u16 = 1 << 6;
const LETTER_A: u16 = 1 << 7;

static PRESENT: [u16; 256] = {
    let mut t = [0u16; 256];
    t[b'@' as usize] = AT;
    t[b'/' as usize] = SLASH;
    t[b'=' as usize] = EQUALS;
    t[b'?' as usize] = QUERY_SEP;
    t[b'&' as usize] = QUERY_SEP;
    t[b' ' as usize] = SPACE;
    t[b'\t' as usize] = SPACE;
    t[b'b' as usize] = LETTER_B;
    t[b'B' as usize] = LETTER_B;
    t[b'J' as usize] = LETTER_J;
    t[b'A' as usize] = LETTER_A;
    t
};

impl Stats {
    /// One pass over `s`.
    pub(crate) fn of(s: &str) -> Stats {
        let (mut digits, mut dots, mut colons, mut upper, mut present) =
            (0u32, 0u32, 0u32, 0u32, 0u16);
        for &b in s.as_bytes() {
            present |= PRESENT[b as usize];
            digits += u32::from(b.wrapping_sub(b'0') < 10);
            dots += u32::from(b == b'.');
            colons += u32::from(b == b':');
            upper += u32::from(b.wrapping_sub(b'A') < 26);
        }
        Stats {
            len: s.len(),
            digits,
            dots,
            colons,
            upper,
            present,
        }
    }

    fn has(&self, flags: u16) -> bool {
        self.present & flags == flags
    }
}

/// A necessary condition for a detector to match, on [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Email,
    CreditCard,
    Ipv4,
    Ipv6,
    Jwt,
    Auth,
    AwsKey,
    UrlCredentials,
    UrlQuery,
}

impl Gate {
    /// Whether a match is possible at all.
    pub(crate) fn open(self, s: &Stats) -> bool {
        match self {
            Gate::Email => s.has(AT) && s.dots >= 1 && s.len >= 6,
            Gate::CreditCard => s.digits >= 13,
            Gate::Ipv4 => s.dots >= 3 && s.digits >= 4,
            Gate::Ipv6 => s.colons >= 2,
            Gate::Jwt => s.dots >= 2 && s.has(LETTER_J) && s.len >= 10,
            Gate::Auth => s.has(SPACE | LETTER_B) && s.len >= 7,
            Gate::AwsKey => s.has(LETTER_A) && s.upper >= 4 && s.upper + s.digits >= 20,
            Gate::UrlCredentials => s.has(AT | SLASH) && s.colons >= 2,
            Gate::UrlQuery => s.has(EQUALS | QUERY_SEP),
        }
    }
}

/// What a candidate match must pass before it is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Any match counts.
    None,
    /// Not glued to an ASCII letter or digit on either side.
    Isolated,
    /// Not preceded by an ASCII letter or digit (`xbearer` is no scheme).
    LeftIsolated,
    /// Digit groups holding a Luhn-valid card number.
    CreditCard,
    /// Octets up to 255, not part of a longer dotted number.
    Ipv4,
    /// Parses as an IPv6 address and stands alone.
    Ipv6,
    /// `Bearer <token>`, or `Basic <base64 of user:password>`.
    Auth,
}

fn is_alnum(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_alphanumeric)
}

fn is_digit(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_digit)
}

impl Check {
    /// Pushes the parts of `whole` (a regex match of `hay`) to replace; `target` is the
    /// `redact` group's range, or `whole` when there is none.
    pub(crate) fn accept(
        self,
        hay: &str,
        whole: Range<usize>,
        target: Range<usize>,
        out: &mut Vec<Range<usize>>,
    ) {
        let b = hay.as_bytes();
        let before = whole.start.checked_sub(1).and_then(|i| b.get(i));
        let after = b.get(whole.end);
        let ok = match self {
            Check::None => true,
            Check::Isolated => !is_alnum(before) && !is_alnum(after),
            Check::LeftIsolated => !is_alnum(before),
            Check::CreditCard => {
                credit_cards(b, whole, out);
                return;
            }
            Check::Ipv4 => {
                // `1.2.3.4.5` and `v1.2.3.4` are versions, not addresses.
                let dotted_before =
                    before == Some(&b'.') && whole.start >= 2 && is_digit(b.get(whole.start - 2));
                let dotted_after = after == Some(&b'.') && is_digit(b.get(whole.end + 1));
                !is_alnum(before)
                    && !is_alnum(after)
                    && !dotted_before
                    && !dotted_after
                    && hay[whole.clone()].split('.').all(octet)
            }
            Check::Ipv6 => {
                let text = &hay[whole.clone()];
                let addr = text.split_once('%').map_or(text, |(a, _)| a);
                !is_alnum(before)
                    && before != Some(&b':')
                    && !is_alnum(after)
                    && addr.parse::<Ipv6Addr>().is_ok()
            }
            Check::Auth => {
                let basic = b
                    .get(whole.start)
                    .is_some_and(|c| c.eq_ignore_ascii_case(&b'b'))
                    && b.get(whole.start + 1)
                        .is_some_and(|c| c.eq_ignore_ascii_case(&b'a'));
                !is_alnum(before) && (!basic || base64_has_colon(&b[target.clone()]))
            }
        };
        if ok && !target.is_empty() {
            out.push(target);
        }
    }
}

fn octet(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.parse::<u16>().is_ok_and(|n| n <= 255)
}

/// Whether standard base64 `text` decodes to something holding a ':' (HTTP Basic
/// credentials are base64 of `user:password`).
fn base64_has_colon(text: &[u8]) -> bool {
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return false,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if (acc >> bits) & 0xff == u32::from(b':') {
                return true;
            }
            acc &= (1 << bits) - 1;
        }
    }
    false
}

/// Finds card numbers in a run of digit groups (`whole`, separated by single spaces or
/// dashes): the longest stretch of whole groups with 13 to 19 digits that starts with 2-6
/// and passes Luhn, then again after it. A run glued to more digits is not a card.
fn credit_cards(b: &[u8], whole: Range<usize>, out: &mut Vec<Range<usize>>) {
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut i = whole.start;
    while i < whole.end {
        let start = i;
        while i < whole.end && b[i].is_ascii_digit() {
            i += 1;
        }
        groups.push(start..i);
        i += 1; // the separator
    }
    if whole.start > 0 && b[whole.start - 1].is_ascii_digit() {
        groups.remove(0);
    }
    if b.get(whole.end).is_some_and(u8::is_ascii_digit) {
        groups.pop();
    }
    let mut first = 0;
    'outer: while first < groups.len() {
        let mut best = None;
        let mut digits = 0;
        for (last, g) in groups.iter().enumerate().skip(first) {
            digits += g.len();
            if digits > 19 {
                break;
            }
            if digits >= 13 && card_number(b, &groups[first..=last]) {
                best = Some(last);
            }
        }
        if let Some(last) = best {
            out.push(groups[first].start..groups[last].end);
            first = last + 1;
            continue 'outer;
        }
        first += 1;
    }
}

fn card_number(b: &[u8], groups: &[Range<usize>]) -> bool {
    let digits = || groups.iter().flat_map(|g| b[g.clone()].iter());
    if !digits().next().is_some_and(|d| (b'2'..=b'6').contains(d)) {
        return false;
    }
    let n = digits().count();
    let sum: u32 = digits()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            // Double every second digit from the right.
            if (n - i) % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// The regex, gate and check of `detector`; `url_query_params` feeds `url_query`.
pub(crate) fn builtin(detector: Detector, url_query_params: &[String]) -> Builtin {
    let (pattern, gate, check) = match detector {
        Detector::Email => (
            // Letters of any script in the local part and domain; the top-level domain must
            // be letters, so `user@localhost` and `a@10.0.0.1` are not addresses.
            r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.\p{L}{2,}".to_string(),
            Gate::Email,
            Check::None,
        ),
        Detector::CreditCard => (r"[0-9](?:[ \-]?[0-9]){12,}".to_string(), Gate::CreditCard, Check::CreditCard),
        Detector::Ipv4 => (r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}".to_string(), Gate::Ipv4, Check::Ipv4),
        Detector::Ipv6 => (
            r"[0-9A-Fa-f:]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%[0-9A-Za-z]+)?".to_string(),
            Gate::Ipv6,
            Check::Ipv6,
        ),
        Detector::Jwt => (
            r"eyJ[A-Za-z0-9_\-]{2,}\.eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*".to_string(),
            Gate::Jwt,
            Check::LeftIsolated,
        ),
        Detector::BearerToken => (
            r"(?i:bearer|basic)[ \t]+(?P<redact>[A-Za-z0-9\-._~+/]+=*)".to_string(),
            Gate::Auth,
            Check::Auth,
        ),
        Detector::AwsAccessKey => (
            r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}"
                .to_string(),
            Gate::AwsKey,
            Check::Isolated,
        ),
        Detector::UrlCredentials => (
            r"://(?P<redact>[^\s/?#@:]*:[^\s/?#@]*)@".to_string(),
            Gate::UrlCredentials,
            Check::None,
        ),
        Detector::UrlQuery => {
            let names: Vec<String> = url_query_params.iter().map(|p| regex::escape(p)).collect();
            (
                format!(r#"[?&](?i:{})=(?P<redact>[^&#\s"'<>]+)"#, names.join("|")),
                Gate::UrlQuery,
                Check::None,
            )
        }
    };
    Builtin {
        pattern,
        gate,
        check,
    }
}
