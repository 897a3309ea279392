//! Consistent probability sampling: the OpenTelemetry TraceState `th` (rejection threshold) and
//! `rv` (explicit randomness) sub-keys of the `ot` tracestate member.
//!
//! Specs (the newest versions stored in the search index, read for this module):
//! `specification/trace/tracestate-probability-sampling.md` @ `01f0569` (decision rule, erase
//! rules, the float→threshold algorithm and its table) and `specification/trace/tracestate-handling.md`
//! @ `0524a3d` (`th` encoding, the `ot` list syntax, 256-character limit) and @ `ffebc0a` (`rv`).
//!
//! - Randomness `R`: 56 bits, from `ot=rv:<14 hex>` when present, else the trace id's low 56
//!   bits (W3C Trace Context Level 2).
//! - Threshold `T = (1 − p) · 2⁵⁶`, rounded to a few hex digits. Keep iff `R >= T`.
//! - `th` is written with trailing zeros removed; `th:0` means 100 %.

use super::ratio::low_u64;
use crate::trace::TraceId;

/// The OpenTelemetry `tracestate` member key.
pub const OT_KEY: &str = "ot";
/// 2⁵⁶: the number of distinct randomness values.
pub const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
/// Hex digits of precision the OpenTelemetry SDKs use by default for `th`.
pub const DEFAULT_PRECISION: u32 = 4;
/// Most hex digits of precision: the spec algorithm clamps to 12 so one digit survives rounding.
pub const MAX_PRECISION: u32 = 12;
/// Most characters of the whole `ot` member value (tracestate-handling.md).
pub const MAX_OT_VALUE_LEN: usize = 256;

/// The smallest probability that is probability sampling: 2⁻⁵⁶.
const MIN_PROBABILITY: f64 = 1.0 / MAX_ADJUSTED_COUNT as f64;
const LOW_56_BITS: u64 = MAX_ADJUSTED_COUNT - 1;

/// A 56-bit rejection threshold: spans whose randomness is below it are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Threshold(u64);

/// A 56-bit randomness value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Randomness(u64);

// === impl Threshold ===

impl Threshold {
    /// Sample everything (`th:0`).
    pub const ALWAYS: Self = Self(0);

    /// The threshold for probability `p` with `precision` hex digits, by the spec's reference
    /// algorithm ("Converting floating-point probability to threshold value"), which works on
    /// the IEEE-754 representation of `2 − p`; precision grows by one digit per leading `f`.
    /// `None` for probabilities below 2⁻⁵⁶ (including 0 and NaN): "never" is not probability
    /// sampling.
    pub fn from_probability(p: f64, precision: u32) -> Option<Self> {
        // NaN compares as `None`: not probability sampling either.
        if p.partial_cmp(&MIN_PROBABILITY).is_none_or(|o| o.is_lt()) {
            return None;
        }
        if p >= 1.0 {
            return Some(Self::ALWAYS);
        }
        // frexp: p = m · 2^exp with m in [0.5, 1). p >= 2⁻⁵⁶ is a normal float.
        let biased = (p.to_bits() >> 52) & 0x7ff;
        let exp = i64::try_from(biased).unwrap_or(0) - 1022;
        let extra = u32::try_from(-exp / 4).unwrap_or(0); // Python's `exp // -4`, exp <= 0
        let precision = precision.saturating_add(extra).clamp(1, 12);
        let half_digit = f64::powi(2.0, -4 * i32::try_from(precision).unwrap_or(12) - 1);
        let rejection = 2.0 - p + half_digit;
        let digits = if rejection >= 2.0 {
            0xf_ffff_ffff_ffff // 13 digits of `f`
        } else {
            rejection.to_bits() & ((1 << 52) - 1)
        };
        // Keep `precision` of the 13 mantissa digits, as a 14-digit (56-bit) value.
        let kept = digits >> (4 * (13 - precision));
        Some(Self(kept << (4 * (14 - precision))))
    }

    /// Parses a `th` value: 1 to 14 hex digits, extended with trailing zeros to 14.
    pub fn parse(th: &str) -> Option<Self> {
        if th.is_empty() || th.len() > 14 || !th.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let value = u64::from_str_radix(th, 16).ok()?;
        let shift = 4 * (14 - u32::try_from(th.len()).ok()?);
        Some(Self(value << shift))
    }

    /// The `th` value: lower-case hex without trailing zeros; `0` for [`Threshold::ALWAYS`].
    pub fn to_th(self) -> String {
        if self.0 == 0 {
            return "0".to_owned();
        }
        let hex = format!("{:014x}", self.0);
        hex.trim_end_matches('0').to_owned()
    }

    /// Whether a span with randomness `r` is kept: `R >= T`.
    pub fn samples(self, r: Randomness) -> bool {
        r.0 >= self.0
    }

    /// The sampling probability `(2⁵⁶ − T) / 2⁵⁶`.
    pub fn probability(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// The raw 56-bit value.
    pub fn value(self) -> u64 {
        self.0
    }
}

// === impl Randomness ===

impl Randomness {
    /// The trace id's least-significant 56 bits (W3C Trace Context Level 2 randomness).
    pub fn from_trace_id(trace_id: TraceId) -> Self {
        Self(low_u64(trace_id) & LOW_56_BITS)
    }

    /// Parses an `rv` value: exactly 14 lower-case hex digits.
    pub fn parse_rv(rv: &str) -> Option<Self> {
        let valid = rv.len() == 14 && rv.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| u64::from_str_radix(rv, 16).ok().map(Self))?
    }
}

/// The sub-keys of the OpenTelemetry `ot` tracestate member (`ot=th:c;rv:…;other:x`).
///
/// Parsing keeps well-formed `key:value` entries (key `[a-z][a-z0-9]*`, value
/// `[A-Za-z0-9._-]*`) and drops the rest; a value longer than [`MAX_OT_VALUE_LEN`] is ignored
/// whole. Unknown keys are kept so other OpenTelemetry concerns survive our update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtValue {
    entries: Vec<(String, String)>,
}

impl OtValue {
    /// Parses an `ot` member value (the part after `ot=`).
    pub fn parse(value: &str) -> Self {
        if value.len() > MAX_OT_VALUE_LEN {
            return Self::default();
        }
        let entries = value
            .split(';')
            .filter_map(|entry| entry.split_once(':'))
            .filter(|(k, v)| valid_key(k) && valid_value(v))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self { entries }
    }

    /// The value of sub-key `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The incoming threshold: `Some(None)` for a present but malformed `th`.
    pub fn threshold(&self) -> Option<Option<Threshold>> {
        self.get("th").map(Threshold::parse)
    }

    /// The explicit randomness, if a well-formed `rv` is present.
    pub fn randomness(&self) -> Option<Randomness> {
        self.get("rv").and_then(Randomness::parse_rv)
    }

    /// Sets or erases `th`, keeping every other sub-key. A `th` that would push the value past
    /// [`MAX_OT_VALUE_LEN`] is not written (the old one is erased): the spec asks to abort
    /// such an update, and a stale threshold would be wrong.
    pub fn with_threshold(mut self, threshold: Option<Threshold>) -> Self {
        self.entries.retain(|(k, _)| k != "th");
        if let Some(t) = threshold {
            self.entries.insert(0, ("th".to_owned(), t.to_th()));
            if self.encode().is_some_and(|v| v.len() > MAX_OT_VALUE_LEN) {
                self.entries.remove(0);
            }
        }
        self
    }

    /// The member value, or `None` when there is nothing to write.
    pub fn encode(&self) -> Option<String> {
        if self.entries.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        Some(parts.join(";"))
    }
}

fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests;
