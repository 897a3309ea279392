//! Trace identity: the ids and flags every propagation format and the span builder share.
//!
//! Names follow the OpenTelemetry API (`TraceId`, `SpanId`, `TraceFlags`, `SpanContext`) because
//! readers already know them. See <https://www.w3.org/TR/trace-context/#trace-id>.

use std::fmt;

/// A 16-byte trace id. The all-zero id is invalid everywhere and is never constructed by
/// [`TraceId::from_bytes`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id. The all-zero id is invalid and is never constructed by
/// [`SpanId::from_bytes`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

/// The W3C trace flags byte. Only the bits this crate understands are kept: `sampled` (0x01) and
/// the Trace Context Level 2 `random` flag (0x02).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

/// The identity of one span as it crosses a process boundary.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SpanContext {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// The span itself.
    pub span_id: SpanId,
    /// Sampling and randomness flags.
    pub flags: TraceFlags,
    /// A debug (forced) trace: B3 `d` / `X-B3-Flags: 1`, Jaeger flag `0x02`. W3C has no such
    /// flag, so it only survives hops that speak B3 or Jaeger. Debug implies sampled.
    pub debug: bool,
}

/// A sampling decision as the propagation formats carry it. The names are B3's, the format
/// that has all four states (<https://github.com/openzipkin/b3-propagation#sampling-state>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sampling {
    /// No decision was passed on: the receiver decides (B3 without a sampling state, Jaeger
    /// and X-Ray headers that leave it open).
    #[default]
    Deferred,
    /// The caller decided not to sample.
    Deny,
    /// The caller sampled the trace.
    Accept,
    /// The caller forced the trace: sampled, and marked debug downstream.
    Debug,
}

// === impl TraceId ===

impl TraceId {
    /// Wraps 16 bytes; `None` for the invalid all-zero id.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        (bytes != [0; 16]).then_some(Self(bytes))
    }

    /// The raw big-endian bytes, as OTLP carries them.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// Lower-case hex, 32 characters.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Parses 1 to 32 hex digits of either case, left-padded with zeros to 128 bits (B3 and
    /// Jaeger send 64-bit ids, Jaeger without leading zeros). `None` for anything else or zero.
    pub fn from_hex(digits: &[u8]) -> Option<Self> {
        hex_value(digits, 32).and_then(|v| Self::from_bytes(v.to_be_bytes()))
    }

    /// The high 64 bits, zero for a 64-bit id.
    pub fn high(self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_be_bytes([a, b, c, d, e, f, g, h])
    }

    /// The low 64 bits.
    pub fn low(self) -> u64 {
        let [.., a, b, c, d, e, f, g, h] = self.0;
        u64::from_be_bytes([a, b, c, d, e, f, g, h])
    }

    /// Lower-case hex, 16 characters when the id fits in 64 bits, else 32: the width B3 and
    /// Jaeger peers that only know 64-bit ids can read.
    pub fn to_short_hex(self) -> String {
        if self.high() == 0 {
            format!("{:016x}", self.low())
        } else {
            self.to_hex()
        }
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

// === impl SpanId ===

impl SpanId {
    /// Wraps 8 bytes; `None` for the invalid all-zero id.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        (bytes != [0; 8]).then_some(Self(bytes))
    }

    /// The raw big-endian bytes, as OTLP carries them.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// Lower-case hex, 16 characters.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Parses 1 to 16 hex digits of either case, left-padded with zeros. `None` for anything
    /// else or zero.
    pub fn from_hex(digits: &[u8]) -> Option<Self> {
        hex_value(digits, 16)
            .and_then(|v| u64::try_from(v).ok())
            .and_then(Self::from_u64)
    }

    /// The id as a number (GCP sends span ids in decimal).
    pub fn from_u64(value: u64) -> Option<Self> {
        Self::from_bytes(value.to_be_bytes())
    }

    /// The id as a number.
    pub fn to_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", self.to_hex())
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

// === impl TraceFlags ===

impl TraceFlags {
    /// The `sampled` bit.
    pub const SAMPLED: u8 = 0x01;
    /// The W3C Trace Context Level 2 `random` bit: the trace id's low 56 bits are random.
    pub const RANDOM: u8 = 0x02;
    const KNOWN: u8 = Self::SAMPLED | Self::RANDOM;

    /// Keeps the known bits of a wire flags byte and clears the rest, as W3C asks of a
    /// participant that forwards flags it does not understand.
    pub fn from_wire(byte: u8) -> Self {
        Self(byte & Self::KNOWN)
    }

    /// The flags byte to write on the wire.
    pub fn to_wire(self) -> u8 {
        self.0
    }

    /// Whether the `sampled` bit is set.
    pub fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED != 0
    }

    /// The same flags with `sampled` set or cleared.
    pub fn with_sampled(self, sampled: bool) -> Self {
        if sampled {
            Self(self.0 | Self::SAMPLED)
        } else {
            Self(self.0 & !Self::SAMPLED)
        }
    }

    /// Whether the Level 2 `random` bit is set.
    pub fn is_random(self) -> bool {
        self.0 & Self::RANDOM != 0
    }
}

// === impl Sampling ===

impl Sampling {
    /// The decision, if one was made: debug counts as sampled.
    pub fn decision(self) -> Option<bool> {
        match self {
            Sampling::Deferred => None,
            Sampling::Deny => Some(false),
            Sampling::Accept | Sampling::Debug => Some(true),
        }
    }

    /// Whether the trace is forced.
    pub fn is_debug(self) -> bool {
        self == Sampling::Debug
    }
}

/// The value of 1 to `max_digits` hex digits of either case; `None` if empty, too long or not
/// hex. No indexing, no overflow: at most 32 digits fit in a `u128`.
fn hex_value(digits: &[u8], max_digits: usize) -> Option<u128> {
    if digits.is_empty() || digits.len() > max_digits.min(32) {
        return None;
    }
    digits.iter().try_fold(0u128, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(acc << 4 | u128::from(digit))
    })
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn zero_ids_are_rejected() {
        assert_eq!(TraceId::from_bytes([0; 16]), None);
        assert_eq!(SpanId::from_bytes([0; 8]), None);
        assert!(TraceId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_some());
    }

    #[test]
    fn hex_is_lower_case_and_full_width() {
        let id = TraceId::from_bytes([0xAB; 16]).map(TraceId::to_hex);
        assert_eq!(id.as_deref(), Some("abababababababababababababababab"));
        let id = SpanId::from_bytes([0, 0, 0, 0, 0, 0, 0, 1]).map(SpanId::to_hex);
        assert_eq!(id.as_deref(), Some("0000000000000001"));
    }

    #[test]
    fn padded_hex_ids() {
        let id = TraceId::from_hex(b"1f").unwrap();
        assert_eq!(id.to_hex(), format!("{}1f", "0".repeat(30)));
        assert_eq!(id.to_short_hex(), "000000000000001f");
        assert_eq!((id.high(), id.low()), (0, 0x1f));
        let full = TraceId::from_hex(b"4BF92F3577B34DA6A3CE929D0E0E4736").unwrap();
        assert_eq!(full.to_short_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [&b""[..], b"0", b"000", b"x1", b"+1", b" 1", &[b'1'; 33]] {
            assert_eq!(TraceId::from_hex(bad), None, "{bad:?}");
        }
        assert_eq!(SpanId::from_hex(b"ff").map(SpanId::to_u64), Some(255));
        assert_eq!(SpanId::from_hex(&[b'f'; 17]), None);
        assert_eq!(SpanId::from_u64(0), None);
    }

    #[test]
    fn sampling_decisions() {
        assert_eq!(Sampling::Deferred.decision(), None);
        assert_eq!(Sampling::Deny.decision(), Some(false));
        assert_eq!(Sampling::Accept.decision(), Some(true));
        assert_eq!(Sampling::Debug.decision(), Some(true));
        assert!(Sampling::Debug.is_debug() && !Sampling::Accept.is_debug());
    }

    #[test]
    fn unknown_flag_bits_are_cleared() {
        let flags = TraceFlags::from_wire(0xff);
        assert_eq!(flags.to_wire(), 0x03);
        assert!(flags.is_sampled() && flags.is_random());
        assert_eq!(flags.with_sampled(false).to_wire(), 0x02);
        assert!(!TraceFlags::from_wire(0x00).is_sampled());
    }
}
