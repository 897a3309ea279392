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
    fn unknown_flag_bits_are_cleared() {
        let flags = TraceFlags::from_wire(0xff);
        assert_eq!(flags.to_wire(), 0x03);
        assert!(flags.is_sampled() && flags.is_random());
        assert_eq!(flags.with_sampled(false).to_wire(), 0x02);
        assert!(!TraceFlags::from_wire(0x00).is_sampled());
    }
}
