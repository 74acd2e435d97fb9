//! Sizes written the way operators write them: `512MiB`, `1GiB`, `64KiB`, `100MB`, or bytes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes that reads as a number of bytes or as `512MiB`, `1GiB`, `64KiB` (binary
/// units) or `100MB`, `1GB`, `10KB` (decimal units), `B` for bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// From mebibytes.
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }

    /// The size in bytes.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The size in bytes as usize (saturating).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// Parses `1024`, `16KiB`, `512MiB`, `1 GiB`, `100MB`, `16kb`: units are case-insensitive;
/// `KiB`, `MiB`, `GiB`, `TiB` and `k`, `m`, `g` are powers of 1024, `kB`, `MB`, `GB`, `TB`
/// powers of 1000.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write e.g. 1024, 16KiB or 512MiB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "t" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}: use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB"
            ));
        }
    };
    let bytes = number * factor;
    if !bytes.is_finite() || bytes > 1e15 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", b >> 30)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", b >> 10)
        } else {
            write!(f, "{b}B")
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 512MiB, 1GiB or a number of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_byte_size(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_byte_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_byte_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_byte_size("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_byte_size("4096").unwrap(), 4096);
        assert_eq!(parse_byte_size("1.5KiB").unwrap(), 1536);
        assert!(parse_byte_size("12 parsecs").is_err());
        assert!(parse_byte_size("MiB").is_err());
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        let v: ByteSize = serde_json::from_str("\"64KiB\"").unwrap();
        assert_eq!(v, ByteSize(65536));
        assert!(serde_json::from_str::<ByteSize>("-1").is_err());
    }
}
