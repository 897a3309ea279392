//! `TraceIdRatioBased`, decided exactly as the OpenTelemetry Go and Rust SDKs decide it.
//!
//! The specification never fixed the algorithm
//! (<https://github.com/open-telemetry/opentelemetry-specification/blob/main/specification/trace/sdk.md#traceidratiobased>),
//! so "consistent with the SDKs" means "the same arithmetic as their source":
//!
//! - Rust `opentelemetry_sdk` 0.33.1 `trace/sampler.rs` `sample_based_on_probability`, and the Go
//!   SDK's `sdk/trace/sampling.go` `TraceIDRatioBased`: a ratio `>= 1` always samples; otherwise
//!   `bound = (max(ratio, 0) · 2⁶³) as u64` (truncated), and a trace is sampled when
//!   `u64::from_be_bytes(trace_id[8..16]) >> 1 < bound`.
//! - Python `opentelemetry-sdk` 1.45.2 `trace/sampling.py`: sampled when
//!   `trace_id & (2⁶⁴ − 1) < round(ratio · 2⁶⁴)`. Up to rounding this is the same test; the two
//!   differ only for at most two low-64-bit values per ratio, and only when `ratio · 2⁶³` has a
//!   fractional part (ratios below 2⁻¹¹). `docs/sampling.md` has the measured table.
//!
//! We implement the Go/Rust form bit for bit.

use crate::trace::TraceId;

/// A trace-id ratio sampler: sampled iff the trace id's low 63 bits (after dropping bit 0 of
/// the low 64) fall below `ratio · 2⁶³`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceIdRatio {
    /// `None` when the ratio is `>= 1` (always sample).
    upper_bound: Option<u64>,
}

impl TraceIdRatio {
    /// The sampler for `ratio`. Ratios below 0 (and NaN) sample nothing; ratios of 1 or more
    /// sample everything, like the SDKs. Configuration refuses such ratios before they get here.
    pub fn new(ratio: f64) -> Self {
        if ratio >= 1.0 {
            return Self { upper_bound: None };
        }
        // `as` saturates and truncates toward zero, exactly like the SDKs' float→int casts;
        // `f64::max` turns NaN into 0.
        let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
        Self {
            upper_bound: Some(bound),
        }
    }

    /// The SDKs' decision for `trace_id`.
    pub fn should_sample(self, trace_id: TraceId) -> bool {
        match self.upper_bound {
            None => true,
            Some(bound) => (low_u64(trace_id) >> 1) < bound,
        }
    }
}

/// The trace id's low 8 bytes as a big-endian integer.
pub fn low_u64(trace_id: TraceId) -> u64 {
    let [_, _, _, _, _, _, _, _, low @ ..] = trace_id.to_bytes();
    u64::from_be_bytes(low)
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn id(low: u64) -> TraceId {
        let mut bytes = [0xab; 16];
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        TraceId::from_bytes(bytes).unwrap()
    }

    #[test]
    fn boundary_is_exclusive_and_uses_the_low_half() {
        // 0.5 · 2⁶³ = 2⁶²: low64 >> 1 must be < 2⁶², i.e. low64 < 2⁶³.
        let half = TraceIdRatio::new(0.5);
        assert!(half.should_sample(id(0)));
        assert!(half.should_sample(id((1 << 63) - 1)));
        assert!(!half.should_sample(id(1 << 63)));
        assert!(!half.should_sample(id(u64::MAX)));
        // The high 8 bytes never matter.
        let mut bytes = [0u8; 16];
        bytes[0] = 0xff;
        assert!(half.should_sample(TraceId::from_bytes(bytes).unwrap()));
    }

    #[test]
    fn extremes() {
        for low in [0, 1, 1 << 63, u64::MAX] {
            assert!(TraceIdRatio::new(1.0).should_sample(id(low)));
            assert!(TraceIdRatio::new(7.0).should_sample(id(low)));
            assert!(!TraceIdRatio::new(0.0).should_sample(id(low)));
            assert!(!TraceIdRatio::new(-1.0).should_sample(id(low)));
            assert!(!TraceIdRatio::new(f64::NAN).should_sample(id(low)));
        }
    }

    #[test]
    fn truncation_not_rounding() {
        // 0.0001 · 2⁶³ = 922337203685477.625 (exactly, in f64): the bound is ...477.
        let r = TraceIdRatio::new(0.0001);
        assert_eq!(r.upper_bound, Some(922_337_203_685_477));
        assert!(r.should_sample(id(2 * 922_337_203_685_476 + 1)));
        assert!(!r.should_sample(id(2 * 922_337_203_685_477)));
    }
}
