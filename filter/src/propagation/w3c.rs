//! W3C Trace Context `traceparent`.
//!
//! Implements <https://www.w3.org/TR/trace-context/#traceparent-header>: version `00` is parsed
//! strictly (exactly 55 characters); a higher version is parsed by its first four fields, as §
//! "Versioning of traceparent" asks; version `ff`, upper-case hex and all-zero ids are invalid.

use crate::trace::{SpanContext, SpanId, TraceFlags, TraceId};

/// The header name (lower case, as HTTP/2 and Envoy's header maps use it).
pub const TRACEPARENT: &str = "traceparent";

/// The Trace Context Level 2 response header naming the callee's span
/// (<https://w3c.github.io/trace-context/#traceresponse-header>); same value format.
pub const TRACERESPONSE: &str = "traceresponse";

/// Length of a version-00 `traceparent`, and the minimum length of any version.
const TRACEPARENT_LEN: usize = 55;

/// Longest value we look at. Longer values (only legal for future versions, which add fields) are
/// rejected without being read, so a hostile header costs nothing.
pub const MAX_TRACEPARENT_LEN: usize = 512;

/// Why a `traceparent` value was rejected. Each reason is a separate malformed-input class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceparentError {
    /// Shorter than 55 bytes, or version 00 with anything after the flags.
    Length,
    /// Longer than [`MAX_TRACEPARENT_LEN`].
    TooLong,
    /// The version is not two lower-case hex digits, or is the forbidden `ff`.
    Version,
    /// A `-` is missing between fields, or a future version's flags are followed by something
    /// other than `-`.
    Delimiter,
    /// The trace id is not 32 lower-case hex digits, or is all zeros.
    TraceId,
    /// The parent id is not 16 lower-case hex digits, or is all zeros.
    ParentId,
    /// The flags are not two lower-case hex digits.
    Flags,
}

// === impl TraceparentError ===

impl TraceparentError {
    /// Every reason, for defining one metric each.
    pub const ALL: [TraceparentError; 7] = [
        TraceparentError::Length,
        TraceparentError::TooLong,
        TraceparentError::Version,
        TraceparentError::Delimiter,
        TraceparentError::TraceId,
        TraceparentError::ParentId,
        TraceparentError::Flags,
    ];

    /// The reason as a metric-name fragment.
    pub fn reason(self) -> &'static str {
        match self {
            TraceparentError::Length => "length",
            TraceparentError::TooLong => "too_long",
            TraceparentError::Version => "version",
            TraceparentError::Delimiter => "delimiter",
            TraceparentError::TraceId => "trace_id",
            TraceparentError::ParentId => "parent_id",
            TraceparentError::Flags => "flags",
        }
    }
}

/// Parses a `traceparent` header value into the remote parent's span context (never `debug`).
pub fn parse_traceparent(value: &[u8]) -> Result<SpanContext, TraceparentError> {
    if value.len() > MAX_TRACEPARENT_LEN {
        return Err(TraceparentError::TooLong);
    }
    if value.len() < TRACEPARENT_LEN {
        return Err(TraceparentError::Length);
    }
    let version = lower_hex::<1>(value.get(0..2)).ok_or(TraceparentError::Version)?;
    match (version, value.get(TRACEPARENT_LEN..)) {
        ([0xff], _) => return Err(TraceparentError::Version),
        ([0x00], Some(rest)) if !rest.is_empty() => return Err(TraceparentError::Length),
        (_, Some(rest)) if !rest.is_empty() && !rest.starts_with(b"-") => {
            return Err(TraceparentError::Delimiter);
        }
        _ => {}
    }
    for at in [2, 35, 52] {
        if value.get(at) != Some(&b'-') {
            return Err(TraceparentError::Delimiter);
        }
    }
    let trace_id = lower_hex::<16>(value.get(3..35))
        .and_then(TraceId::from_bytes)
        .ok_or(TraceparentError::TraceId)?;
    let span_id = lower_hex::<8>(value.get(36..52))
        .and_then(SpanId::from_bytes)
        .ok_or(TraceparentError::ParentId)?;
    let [flags] = lower_hex::<1>(value.get(53..55)).ok_or(TraceparentError::Flags)?;
    Ok(SpanContext {
        trace_id,
        span_id,
        flags: TraceFlags::from_wire(flags),
        debug: false,
    })
}

/// Formats a version-00 `traceparent` naming `context.span_id` as the parent of the next hop
/// (also the `traceresponse` value, where the span id is the callee's).
pub fn format_traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id.to_hex(),
        context.span_id.to_hex(),
        context.flags.to_wire()
    )
}

/// Decodes exactly `2 * N` lower-case hex digits. W3C forbids upper case, so it is rejected
/// here rather than accepted by `hex::decode`, which takes both.
fn lower_hex<const N: usize>(digits: Option<&[u8]>) -> Option<[u8; N]> {
    let digits = digits?;
    if !digits
        .iter()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn ok(value: &str) -> SpanContext {
        match parse_traceparent(value.as_bytes()) {
            Ok(context) => context,
            Err(e) => panic!("{value:?} should parse, got {e:?}"),
        }
    }

    #[test]
    fn parses_the_spec_example() {
        let context = ok(&format!("00-{TRACE}-{SPAN}-01"));
        assert_eq!(context.trace_id.to_hex(), TRACE);
        assert_eq!(context.span_id.to_hex(), SPAN);
        assert!(context.flags.is_sampled());
        assert!(!ok(&format!("00-{TRACE}-{SPAN}-00")).flags.is_sampled());
    }

    #[test]
    fn future_versions_are_parsed_by_their_first_four_fields() {
        let context = ok(&format!("cc-{TRACE}-{SPAN}-01-what-the-future-holds"));
        assert_eq!(context.trace_id.to_hex(), TRACE);
        assert!(context.flags.is_sampled());
        ok(&format!("01-{TRACE}-{SPAN}-09"));
    }

    #[rustfmt::skip]
    #[test]
    fn invalid_values_carry_their_reason() {
        use TraceparentError::*;
        let cases: Vec<(String, TraceparentError)> = vec![
            (String::new(), Length),
            ("00".into(), Length),
            (format!("00-{TRACE}-{SPAN}-"), Length), // empty flags
            (format!("00-{TRACE}-{SPAN}-0"), Length), // one flags digit
            (format!("00-{TRACE}-{SPAN}-01-"), Length),
            (format!("00-{TRACE}-{SPAN}-010"), Length),
            (format!("ff-{TRACE}-{SPAN}-01"), Version),
            (format!("0g-{TRACE}-{SPAN}-01"), Version),
            (format!("AA-{TRACE}-{SPAN}-01"), Version),
            (format!("cc-{TRACE}-{SPAN}-01.what"), Delimiter),
            (format!("00_{TRACE}-{SPAN}-01"), Delimiter),
            (format!("00-{TRACE}_{SPAN}-01"), Delimiter),
            (format!("00-{TRACE}-{SPAN}_01"), Delimiter),
            (format!("00-{}-{SPAN}-01", "0".repeat(32)), TraceId),
            (format!("00-{}-{SPAN}-01", TRACE.to_uppercase()), TraceId),
            (format!("00-{}x-{SPAN}-01", &TRACE[..31]), TraceId),
            (format!("00-{TRACE}-{}-01", "0".repeat(16)), ParentId),
            (format!("00-{TRACE}-{}-01", SPAN.to_uppercase()), ParentId),
            (format!("00-{TRACE}-{SPAN}-0G"), Flags),
            (format!("00-{TRACE}-{SPAN}-.1"), Flags),
            (format!("cc-{TRACE}-{SPAN}-{}", "1".repeat(600)), TooLong),
        ];
        for (value, reason) in cases {
            assert_eq!(parse_traceparent(value.as_bytes()), Err(reason), "{value:?}");
        }
    }

    #[test]
    fn non_utf8_bytes_are_rejected_not_panicked_on() {
        let mut value = format!("00-{TRACE}-{SPAN}-01").into_bytes();
        if let Some(b) = value.get_mut(10) {
            *b = 0xff;
        }
        assert_eq!(parse_traceparent(&value), Err(TraceparentError::TraceId));
        assert_eq!(
            parse_traceparent(b"00-\xff\xfe"),
            Err(TraceparentError::Length)
        );
        assert_eq!(
            parse_traceparent(&[0xc3; 55]),
            Err(TraceparentError::Version)
        );
    }

    #[test]
    fn format_round_trips_and_keeps_only_known_flags() {
        let value = format!("00-{TRACE}-{SPAN}-01");
        assert_eq!(format_traceparent(&ok(&value)), value);
        let context = ok(&format!("00-{TRACE}-{SPAN}-ff"));
        assert_eq!(
            format_traceparent(&context),
            format!("00-{TRACE}-{SPAN}-03")
        );
    }

    #[test]
    fn any_bytes_never_panic() {
        // A cheap deterministic sweep over mutations of a valid header; the property tests of
        // the propagation issue widen this.
        let base = format!("00-{TRACE}-{SPAN}-01").into_bytes();
        for at in 0..base.len() {
            for byte in [0u8, b'-', b'0', b'f', b'g', b'F', 0x7f, 0x80, 0xff] {
                let mut value = base.clone();
                if let Some(b) = value.get_mut(at) {
                    *b = byte;
                }
                let _ = parse_traceparent(&value);
                let _ = parse_traceparent(value.get(..at).unwrap_or_default());
            }
        }
    }
}
