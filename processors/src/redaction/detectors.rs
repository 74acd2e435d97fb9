//! The built-in detectors and the prefilter that keeps them cheap.
//!
//! Each detector has a *gate*: a condition every match needs, read off [`Stats`] (byte-class
//! counts from one pass over the value). Only a value that gets through a detector's gate
//! meets its finder, on the text as the earlier rules left it. Most detectors have
//! hand-written scanners (one pass, no regex engine call: that cost dominates for the short
//! values telemetry carries). `ipv6` and `url_credentials` use a regex free of `\b` and
//! look-around (so it runs on the DFA engines) followed by a check on the match and the
//! bytes around it (an IPv6 parse, boundaries).

use std::net::Ipv6Addr;
use std::ops::Range;

use super::config::Detector;

/// A built-in detector, ready to compile.
pub(crate) struct Builtin {
    /// How candidates are found.
    pub(crate) finder: BuiltinFinder,
    /// The check each candidate must pass, and which part of it is replaced.
    pub(crate) check: Check,
}

/// How a built-in finds candidates.
pub(crate) enum BuiltinFinder {
    /// A regex; each match goes through the detector's [`Check`].
    Regex(String),
    /// A hand-written scanner.
    Scan(Scanner),
}

/// The hand-written scanners: one pass over the value, no regex engine call.
pub(crate) enum Scanner {
    /// [`url_query_values`], with the parameter names.
    UrlQuery(Vec<String>),
    /// [`emails`].
    Email,
    /// [`ipv4s`].
    Ipv4,
    /// [`card_numbers`].
    Cards,
    /// [`auth_credentials`].
    Auth,
    /// [`aws_keys`].
    AwsKeys,
    /// [`jwts`].
    Jwts,
}

impl Scanner {
    /// Pushes the ranges of `hay` to replace; `groups` is scratch space.
    pub(crate) fn find(
        &self,
        hay: &str,
        out: &mut Vec<Range<usize>>,
        groups: &mut Vec<Range<usize>>,
    ) {
        match self {
            Scanner::UrlQuery(names) => url_query_values(hay, names, out),
            Scanner::Email => emails(hay, out),
            Scanner::Ipv4 => ipv4s(hay, out),
            Scanner::Cards => card_numbers(hay, out, groups),
            Scanner::Auth => auth_credentials(hay, out),
            Scanner::AwsKeys => aws_keys(hay, out),
            Scanner::Jwts => jwts(hay, out),
        }
    }
}

// Byte classes counted by `Stats::of`: eight 8-bit counters in each of two u64s, so a byte
// costs one table load and two adds.
const DIGIT: usize = 0;
const DOT: usize = 1;
const COLON: usize = 2;
const UPPER: usize = 3;
const AT: usize = 4;
const SLASH: usize = 5;
const EQUALS: usize = 6;
const QUERY_SEP: usize = 7;
const SPACE: usize = 8;
const LETTER_B: usize = 9;
const LETTER_J: usize = 10;
const LETTER_A: usize = 11;

const fn classes(b: u8) -> [bool; 16] {
    let mut c = [false; 16];
    c[DIGIT] = b.is_ascii_digit();
    c[DOT] = b == b'.';
    c[COLON] = b == b':';
    c[UPPER] = b.is_ascii_uppercase();
    c[AT] = b == b'@';
    c[SLASH] = b == b'/';
    c[EQUALS] = b == b'=';
    c[QUERY_SEP] = b == b'?' || b == b'&';
    c[SPACE] = b == b' ' || b == b'\t';
    c[LETTER_B] = b == b'b' || b == b'B';
    c[LETTER_J] = b == b'J';
    c[LETTER_A] = b == b'A';
    c
}

const fn counter_table(half: usize) -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let c = classes(b as u8);
        let mut i = 0;
        while i < 8 {
            if c[half * 8 + i] {
                t[b] += 1 << (8 * i);
            }
            i += 1;
        }
        b += 1;
    }
    t
}

/// Per byte, the increments of both halves' counters, side by side so one 16-byte load
/// fetches them.
static COUNTERS: [[u64; 2]; 256] = {
    let (low, high) = (counter_table(0), counter_table(1));
    let mut t = [[0u64; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = [low[b], high[b]];
        b += 1;
    }
    t
};

/// Counts of the byte classes the gates look at, over one value.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    len: usize,
    n: [u32; 16],
}

impl Stats {
    /// One pass over `s`.
    pub(crate) fn of(s: &str) -> Stats {
        let mut n = [0u32; 16];
        // 255 bytes at most per block, so no 8-bit counter overflows.
        for block in s.as_bytes().chunks(255) {
            let (mut low, mut high) = (0u64, 0u64);
            for &b in block {
                let [l, h] = COUNTERS[usize::from(b)];
                low += l;
                high += h;
            }
            for i in 0..8 {
                n[i] += ((low >> (8 * i)) & 0xff) as u32;
                n[8 + i] += ((high >> (8 * i)) & 0xff) as u32;
            }
        }
        Stats { len: s.len(), n }
    }
}

/// The bit of `d` in a gate mask: its position in [`Detector::ALL`], the order detectors
/// run in, so a mask's set bits, lowest first, are the detectors to run in order.
pub(crate) const fn bit(d: Detector) -> u16 {
    1 << rank(d)
}

/// The position of `d` in [`Detector::ALL`].
pub(crate) const fn rank(d: Detector) -> u32 {
    let mut i = 0;
    while i < Detector::ALL.len() {
        if Detector::ALL[i] as u8 == d as u8 {
            return i as u32;
        }
        i += 1;
    }
    0
}

/// Which of the `enabled` detectors (a mask of [`bit`]s) can match `text` at all: the
/// prefilter, from the counts of one pass ([`Stats`]). Only the finders of open detectors
/// run, each on the text as the earlier rules left it (a token masked by `bearer_token`
/// costs `credit_card` nothing).
pub(crate) fn open_gates(text: &str, enabled: u16) -> u16 {
    use Detector::*;
    let s = Stats::of(text);
    let n = &s.n;
    let gate = |d: Detector, open: bool| if open { bit(d) } else { 0 };
    (gate(Email, n[AT] >= 1 && n[DOT] >= 1 && s.len >= 6)
        | gate(CreditCard, n[DIGIT] >= 13)
        | gate(Ipv4, n[DOT] >= 3 && n[DIGIT] >= 4)
        | gate(Ipv6, n[COLON] >= 2)
        | gate(Jwt, n[DOT] >= 2 && n[LETTER_J] >= 2 && s.len >= 10)
        | gate(BearerToken, n[SPACE] >= 1 && n[LETTER_B] >= 1)
        | gate(
            AwsAccessKey,
            // `A3T` and 17 digits has the fewest capitals: two.
            n[LETTER_A] >= 1 && n[UPPER] >= 2 && n[UPPER] + n[DIGIT] >= 20,
        )
        | gate(UrlCredentials, n[AT] >= 1 && n[SLASH] >= 2 && n[COLON] >= 2)
        | gate(UrlQuery, n[EQUALS] >= 1 && n[QUERY_SEP] >= 1))
        & enabled
}

/// What a candidate must pass before it is replaced, and which part of it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Any match counts.
    None,
    /// Parses as an IPv6 address and stands alone.
    Ipv6,
    /// `://user:password@`: the `user:password` part is replaced.
    UrlUserinfo,
}

fn is_alnum(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_alphanumeric)
}

fn is_digit(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_digit)
}

impl Check {
    /// Pushes the parts of `whole` (a match in `hay`) to replace; `target` is the part a
    /// user pattern's `redact` group selected, or `whole`.
    pub(crate) fn accept(
        self,
        hay: &str,
        whole: Range<usize>,
        target: Range<usize>,
        out: &mut Vec<Range<usize>>,
    ) {
        let b = hay.as_bytes();
        let before = whole.start.checked_sub(1).and_then(|i| b.get(i));
        let target = match self {
            Check::None => target,
            Check::Ipv6 => {
                let (mut start, mut end) = (whole.start, whole.end);
                // Punctuation after the address: a full stop, or a lone colon (an address
                // may end in `::`).
                while end > start
                    && (b[end - 1] == b'.'
                        || (b[end - 1] == b':' && (end - start < 2 || b[end - 2] != b':')))
                {
                    end -= 1;
                }
                // `ip:2001:db8::1`: a lone colon after a word separates a label.
                let mut before = before;
                if end > start + 1 && b[start] == b':' && b[start + 1] != b':' && is_alnum(before) {
                    start += 1;
                    before = None;
                }
                let after = b.get(end);
                let text = &hay[start..end];
                let addr = text.split_once('%').map_or(text, |(a, _)| a);
                if is_alnum(before)
                    || before == Some(&b':')
                    || is_alnum(after)
                    || addr.parse::<Ipv6Addr>().is_err()
                {
                    return;
                }
                if target == whole { start..end } else { target }
            }
            // `://` and `@` around the credentials.
            Check::UrlUserinfo => whole.start + 3..whole.end - 1,
        };
        if !target.is_empty() {
            out.push(target);
        }
    }
}

/// The index of the first ASCII digit of `b` at or after `i`, or `b.len()`.
fn next_digit(b: &[u8], i: usize) -> usize {
    b.get(i..)
        .and_then(|rest| rest.iter().position(u8::is_ascii_digit))
        .map_or(b.len(), |p| i + p)
}

/// IPv4 addresses: four groups of 1 to 3 digits joined by dots, each at most 255, not glued
/// to letters or digits and not part of a longer dotted number (`1.2.3.4.5` and `v1.2.3.4`
/// are versions).
fn ipv4s(hay: &str, out: &mut Vec<Range<usize>>) {
    let b = hay.as_bytes();
    let mut i = 0;
    loop {
        i = next_digit(b, i);
        if i >= b.len() {
            break;
        }
        let start = i;
        let before = start.checked_sub(1).and_then(|j| b.get(j));
        let dotted_before = before == Some(&b'.') && start >= 2 && is_digit(b.get(start - 2));
        let mut end = start;
        let mut ok = !is_alnum(before) && !dotted_before;
        for octet in 0..4 {
            if octet > 0 {
                if b.get(end) != Some(&b'.') {
                    ok = false;
                    break;
                }
                end += 1;
            }
            let digits_start = end;
            let mut value = 0u32;
            while end < b.len() && b[end].is_ascii_digit() && end - digits_start < 4 {
                value = value * 10 + u32::from(b[end] - b'0');
                end += 1;
            }
            let len = end - digits_start;
            if len == 0 || len > 3 || value > 255 {
                ok = false;
                break;
            }
        }
        let after = b.get(end);
        let dotted_after = after == Some(&b'.') && is_digit(b.get(end + 1));
        if ok && !is_alnum(after) && !dotted_after {
            out.push(start..end);
            i = end;
        } else {
            // Skip the rest of this number: an address never starts inside one.
            i = start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
}

/// The char starting at byte `i`, if `i` is a char boundary inside `hay`.
fn char_at(hay: &str, i: usize) -> Option<char> {
    match hay.as_bytes().get(i) {
        // An ASCII byte is a whole char (no other char's bytes are below 0x80).
        Some(&b) if b.is_ascii() => Some(char::from(b)),
        _ => hay.get(i..).and_then(|s| s.chars().next()),
    }
}

/// The char ending at byte `i`.
fn char_before(hay: &str, i: usize) -> Option<char> {
    match i.checked_sub(1).and_then(|j| hay.as_bytes().get(j)) {
        Some(&b) if b.is_ascii() => Some(char::from(b)),
        _ => hay.get(..i).and_then(|s| s.chars().next_back()),
    }
}

/// A letter or digit of any script, or a combining accent (a decomposed `é`).
fn is_word(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    c.is_alphanumeric() || ('\u{300}'..='\u{36f}').contains(&c)
}

/// Email addresses: a local part of letters and digits of any script and `._%+-`, `@`, a
/// domain of such labels joined by dots, ending in a top-level domain of at least two
/// letters. `user@localhost` and `root@10.0.0.1` have none, so they are kept.
fn emails(hay: &str, out: &mut Vec<Range<usize>>) {
    let b = hay.as_bytes();
    let mut floor = 0;
    let mut from = 0;
    while let Some(at) = b[from..].iter().position(|&c| c == b'@').map(|p| p + from) {
        from = at + 1;
        let mut start = at;
        while start > floor {
            match char_before(hay, start) {
                Some(c) if is_word(c) || matches!(c, '.' | '%' | '+' | '-') => {
                    start -= c.len_utf8();
                }
                _ => break,
            }
        }
        if start == at {
            continue;
        }
        let mut end = None;
        let mut j = at + 1;
        loop {
            let label = j;
            let mut letters = 0;
            let mut only_letters = true;
            while let Some(c) = char_at(hay, j) {
                if !(is_word(c) || c == '-') {
                    break;
                }
                if only_letters && c.is_alphabetic() {
                    letters = j + c.len_utf8();
                } else {
                    only_letters = false;
                }
                j += c.len_utf8();
            }
            if j == label {
                break;
            }
            // A label after a dot whose first two or more chars are letters can end the
            // address (the last such label does).
            if label > at + 1 && letters > 0 && hay[label..letters].chars().nth(1).is_some() {
                end = Some(letters);
            }
            if b.get(j) != Some(&b'.') {
                break;
            }
            j += 1;
        }
        if let Some(end) = end {
            out.push(start..end);
            floor = end;
            from = end;
        }
    }
}

/// Whether standard or URL-safe base64 `text` decodes to something holding a ':' (HTTP
/// Basic credentials are base64 of `user:password`).
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
/// and passes Luhn, then again after it. Digits glued to the run are not part of a card.
fn credit_cards(
    b: &[u8],
    whole: Range<usize>,
    out: &mut Vec<Range<usize>>,
    groups: &mut Vec<Range<usize>>,
) {
    groups.clear();
    let mut i = whole.start;
    while i < whole.end {
        let start = i;
        while i < whole.end && b[i].is_ascii_digit() {
            i += 1;
        }
        groups.push(start..i);
        i += 1; // the separator
    }
    if whole.start > 0 && b[whole.start - 1].is_ascii_digit() && !groups.is_empty() {
        groups.remove(0);
    }
    if b.get(whole.end).is_some_and(u8::is_ascii_digit) {
        groups.pop();
    }
    // Every stretch of whole groups that is a card number is covered, overlapping ones
    // too: a leading group (a date, a phone number) can form a valid stretch with the first
    // half of the card, and stopping there would leave the card's last groups in clear.
    let mut small = [false; 64];
    let mut large;
    let covered: &mut [bool] = if groups.len() <= small.len() {
        &mut small[..groups.len()]
    } else {
        large = vec![false; groups.len()];
        &mut large
    };
    for first in 0..groups.len() {
        let mut digits = 0;
        for last in first..groups.len() {
            digits += groups[last].len();
            if digits > 19 {
                break;
            }
            if digits >= 13 && card_number(b, &groups[first..=last]) {
                covered[first..=last].fill(true);
            }
        }
    }
    let mut i = 0;
    while i < groups.len() {
        if !covered[i] {
            i += 1;
            continue;
        }
        let first = i;
        while i + 1 < groups.len() && covered[i + 1] {
            i += 1;
        }
        out.push(groups[first].start..groups[i].end);
        i += 1;
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
            // Double every second digit counting from the check digit on the right.
            if (n - i) % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Card numbers: each run of digits joined by single spaces or dashes that holds 13 or more
/// digits goes to [`credit_cards`] (issuer range and Luhn). `groups` is scratch space.
fn card_numbers(hay: &str, out: &mut Vec<Range<usize>>, groups: &mut Vec<Range<usize>>) {
    let b = hay.as_bytes();
    let mut i = 0;
    loop {
        i = next_digit(b, i);
        if i >= b.len() {
            break;
        }
        let start = i;
        let mut digits = 0;
        let mut end;
        loop {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
                digits += 1;
            }
            end = i;
            // One separator, then more digits, continues the run.
            if i + 1 < b.len() && matches!(b[i], b' ' | b'-') && b[i + 1].is_ascii_digit() {
                i += 1;
            } else {
                break;
            }
        }
        if digits >= 13 {
            credit_cards(b, start..end, out, groups);
        }
        i = end;
    }
}

/// Authorization credentials: after the word `Bearer` or `Basic` (any case, not glued to a
/// letter or digit before it) and spaces or tabs, the token (`[A-Za-z0-9-._~+/]+` and `=`
/// padding). A Basic token must decode to `user:password`. The scheme word is kept.
fn auth_credentials(hay: &str, out: &mut Vec<Range<usize>>) {
    let b = hay.as_bytes();
    let token_char =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    let mut i = 0;
    while i < b.len() {
        if (b[i] | 0x20) != b'b'
            || i.checked_sub(1)
                .is_some_and(|p| b[p].is_ascii_alphanumeric())
        {
            i += 1;
            continue;
        }
        let word = [&b"bearer"[..], b"basic"].into_iter().find(|w| {
            b.get(i..i + w.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(w))
        });
        let Some(word) = word else {
            i += 1;
            continue;
        };
        let mut j = i + word.len();
        let spaces = j;
        while j < b.len() && matches!(b[j], b' ' | b'\t') {
            j += 1;
        }
        let token = j;
        while j < b.len() && token_char(b[j]) {
            j += 1;
        }
        while j < b.len() && b[j] == b'=' {
            j += 1;
        }
        let valid = j > spaces
            && token > spaces
            && j > token
            && (word.len() == 6 || base64_has_colon(&b[token..j]));
        if valid {
            out.push(token..j);
        }
        i = j.max(i + 1);
    }
}

/// JSON Web Tokens: `eyJ` and 2+ base64url characters (the header), `.`, the same for the
/// payload, `.`, and the signature (possibly empty), not preceded by an ASCII letter or digit.
fn jwts(hay: &str, out: &mut Vec<Range<usize>>) {
    let b = hay.as_bytes();
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    // The end of a `eyJ...` segment starting at `i` with 2+ characters after `eyJ`.
    let segment = |i: usize| -> Option<usize> {
        if b.get(i..i + 3).is_none_or(|s| s != b"eyJ") {
            return None;
        }
        let mut j = i + 3;
        while j < b.len() && b64(b[j]) {
            j += 1;
        }
        (j >= i + 5).then_some(j)
    };
    let mut i = 0;
    while i + 3 <= b.len() {
        if b[i] != b'e' || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let token = segment(i)
            .filter(|&h| b.get(h) == Some(&b'.'))
            .and_then(|h| segment(h + 1))
            .filter(|&p| b.get(p) == Some(&b'.'))
            .map(|p| {
                let mut j = p + 1;
                while j < b.len() && b64(b[j]) {
                    j += 1;
                }
                j
            });
        match token {
            Some(end) => {
                out.push(i..end);
                i = end;
            }
            None => i += 1,
        }
    }
}

/// The 4-character prefixes of AWS access key IDs (`A3T` plus any capital or digit too).
const AWS_PREFIXES: [&[u8; 4]; 12] = [
    b"AKIA", b"ASIA", b"ABIA", b"ACCA", b"AGPA", b"AIDA", b"AIPA", b"ANPA", b"ANVA", b"AROA",
    b"APKA", b"ASCA",
];

/// AWS access key IDs: a known prefix and 16 more capitals or digits, 20 in all, not glued
/// to an ASCII letter or digit on either side.
fn aws_keys(hay: &str, out: &mut Vec<Range<usize>>) {
    let b = hay.as_bytes();
    let key_char = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    let mut i = 0;
    while i + 20 <= b.len() {
        if b[i] != b'A' || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let prefix = &b[i..i + 4];
        let known = AWS_PREFIXES.iter().any(|p| prefix == &p[..])
            || (prefix.starts_with(b"A3T") && key_char(&prefix[3]));
        let end = i + 20;
        if known
            && b[i + 4..end].iter().all(key_char)
            && !b.get(end).is_some_and(u8::is_ascii_alphanumeric)
        {
            out.push(i..end);
            i = end;
        } else {
            i += 1;
        }
    }
}

/// Finds the values of the named query parameters: after `?` or `&`, a name equal to one of
/// `names` (ASCII case-insensitive), `=`, then the value up to `&`, `#`, whitespace, a quote
/// or an angle bracket.
fn url_query_values(hay: &str, names: &[String], out: &mut Vec<Range<usize>>) {
    let b = hay.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !matches!(b[i], b'?' | b'&') {
            i += 1;
            continue;
        }
        let name_start = i + 1;
        let mut j = name_start;
        while j < b.len()
            && !matches!(b[j], b'=' | b'&' | b'?' | b'#')
            && !b[j].is_ascii_whitespace()
        {
            j += 1;
        }
        if j >= b.len() || b[j] != b'=' {
            i = j;
            continue;
        }
        let name = &b[name_start..j];
        let value_start = j + 1;
        let mut k = value_start;
        while k < b.len()
            && !matches!(b[k], b'&' | b'#' | b'"' | b'\'' | b'<' | b'>')
            && !b[k].is_ascii_whitespace()
        {
            k += 1;
        }
        if k > value_start
            && names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
        {
            out.push(value_start..k);
        }
        i = k;
    }
}

/// The finder, gate and check of `detector`; `url_query_params` feeds `url_query`.
pub(crate) fn builtin(detector: Detector, url_query_params: &[String]) -> Builtin {
    let regex = |p: &str| BuiltinFinder::Regex(p.to_string());
    let (finder, check) = match detector {
        Detector::Email => (BuiltinFinder::Scan(Scanner::Email), Check::None),
        Detector::CreditCard => (BuiltinFinder::Scan(Scanner::Cards), Check::None),
        Detector::Ipv4 => (BuiltinFinder::Scan(Scanner::Ipv4), Check::None),
        Detector::Ipv6 => (
            regex(r"[0-9A-Fa-f:]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%[0-9A-Za-z]+)?"),
            Check::Ipv6,
        ),
        Detector::Jwt => (BuiltinFinder::Scan(Scanner::Jwts), Check::None),
        Detector::BearerToken => (BuiltinFinder::Scan(Scanner::Auth), Check::None),
        Detector::AwsAccessKey => (BuiltinFinder::Scan(Scanner::AwsKeys), Check::None),
        Detector::UrlCredentials => (
            // The password runs to the last `@` before the path: an unencoded `@` in it
            // (`u:p@ss@host`) stays inside the match.
            regex(r"://[^\s/?#@:]*:[^\s/?#]*@"),
            Check::UrlUserinfo,
        ),
        Detector::UrlQuery => (
            BuiltinFinder::Scan(Scanner::UrlQuery(url_query_params.to_vec())),
            Check::None,
        ),
    };
    Builtin { finder, check }
}
