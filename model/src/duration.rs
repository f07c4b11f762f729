//! Durations as Kuma writes them: Go `time.ParseDuration` strings (`10s`,
//! `1m30s`, `500ms`, `1.5h`, `0`).
//!
//! The parser is hand-written because `humantime` rejects some Go forms (no
//! fractional values such as `1.5s`) and accepts non-Go ones (`1 min`). It
//! also accepts `d` (24h) and `y` (365d), which Kuma's CA settings use
//! (`expiration: 10y`, `dpCert.rotation.expiration: 1d`). Negative durations
//! are rejected: no Kuma setting takes one. The original text is kept so a
//! document round-trips byte for byte.

use std::fmt;
use std::str::FromStr;

/// A validated, non-negative duration that remembers how it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Duration {
    raw: String,
    value: std::time::Duration,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (expected a Go duration such as \"10s\", \"1m30s\" or \"500ms\")"
)]
pub struct DurationError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Go's limit: an int64 of nanoseconds (about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

impl Duration {
    /// Parses a Go duration string.
    pub fn parse(s: &str) -> Result<Self, DurationError> {
        let err = |reason| DurationError {
            input: s.to_owned(),
            reason,
        };
        let body = s.strip_prefix('+').unwrap_or(s);
        if body.starts_with('-') {
            return Err(err("must not be negative"));
        }
        if body.is_empty() {
            return Err(err("empty"));
        }
        if body == "0" {
            return Ok(Self {
                raw: s.to_owned(),
                value: std::time::Duration::ZERO,
            });
        }
        let mut total: u128 = 0;
        let mut rest = body;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, after) = rest.split_at(int_len);
            let (frac_part, after) = match after.strip_prefix('.') {
                Some(a) => {
                    let n = a.bytes().take_while(u8::is_ascii_digit).count();
                    a.split_at(n)
                }
                None => ("", after),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err("expected a number"));
            }
            let unit_len = after
                .char_indices()
                .find(|&(_, c)| c.is_ascii_digit() || c == '.')
                .map_or(after.len(), |(i, _)| i);
            let (unit, next) = after.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60 * 1_000_000_000,
                "h" => 3_600 * 1_000_000_000,
                "d" => 86_400 * 1_000_000_000,
                "y" => 365 * 86_400 * 1_000_000_000,
                "" => return Err(err("missing unit")),
                _ => return Err(err("unknown unit")),
            };
            let whole: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| err("number too large"))?
            };
            // Fraction digits past 18 cannot change a nanosecond count of these units.
            let frac_digits = &frac_part[..frac_part.len().min(18)];
            let frac_value: u128 = if frac_digits.is_empty() {
                0
            } else {
                frac_digits.parse().map_err(|_| err("invalid fraction"))?
            };
            let scale = 10u128.pow(frac_digits.len() as u32);
            let nanos = whole
                .checked_mul(unit_nanos)
                .and_then(|w| w.checked_add(frac_value * unit_nanos / scale))
                .ok_or_else(|| err("too large"))?;
            total = total.checked_add(nanos).ok_or_else(|| err("too large"))?;
            if total > MAX_NANOS {
                return Err(err("too large"));
            }
            rest = next;
        }
        let secs = (total / 1_000_000_000) as u64;
        let sub = (total % 1_000_000_000) as u32;
        Ok(Self {
            raw: s.to_owned(),
            value: std::time::Duration::new(secs, sub),
        })
    }

    /// The duration.
    pub fn as_duration(&self) -> std::time::Duration {
        self.value
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Duration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A Go duration string, e.g. \"10s\", \"1m30s\", \"500ms\".",
            ))
            .examples(["10s"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Duration {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as D;

    #[test]
    fn parses_go_forms() {
        let cases = [
            ("10s", D::from_secs(10)),
            ("1m30s", D::from_secs(90)),
            ("500ms", D::from_millis(500)),
            ("1h", D::from_secs(3600)),
            ("0s", D::ZERO),
            ("0", D::ZERO),
            ("1.5s", D::from_millis(1500)),
            (".5s", D::from_millis(500)),
            ("2h45m", D::from_secs(2 * 3600 + 45 * 60)),
            ("300us", D::from_micros(300)),
            ("300µs", D::from_micros(300)),
            ("7ns", D::from_nanos(7)),
            ("+5s", D::from_secs(5)),
            ("1d", D::from_secs(86_400)),
            ("10y", D::from_secs(10 * 365 * 86_400)),
        ];
        for (s, want) in cases {
            let d = Duration::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(d.as_duration(), want, "{s}");
            assert_eq!(d.as_str(), s);
        }
    }

    #[test]
    fn rejects_bad_forms() {
        let cases = [
            ("", "empty"),
            ("10", "missing unit"),
            ("10x", "unknown unit"),
            ("-1s", "must not be negative"),
            ("s", "expected a number"),
            ("1 s", "unknown unit"),
            ("1.s.", "expected a number"),
            (
                "99999999999999999999999999999999999999999h",
                "number too large",
            ),
            ("300y", "too large"),
        ];
        for (s, reason) in cases {
            let e = Duration::parse(s).expect_err(s);
            assert_eq!(e.reason, reason, "{s}");
        }
    }

    #[test]
    fn serde_keeps_text() {
        let d: Duration = serde_json::from_value(serde_json::json!("1m30s")).expect("parse");
        assert_eq!(
            serde_json::to_value(&d).expect("ser"),
            serde_json::json!("1m30s")
        );
        let e = serde_json::from_value::<Duration>(serde_json::json!("ten")).expect_err("bad");
        assert!(e.to_string().contains("invalid duration \"ten\""), "{e}");
    }
}
