//! Jaeger: `uber-trace-id` and `uberctx-{key}` baggage.
//!
//! Implements <https://www.jaegertracing.io/docs/1.65/architecture/client-libraries/#propagation-format>:
//! `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}`, ids in hex of either case
//! with leading zeros optional (trace ids of up to 128 bits, left-padded; span ids 64), the
//! deprecated parent id may be `0`, flags are one byte in hex: `0x01` sampled, `0x02` debug
//! (debug forces sampled). The URL-encoded form, `%3A` for every `:`, is accepted.
//! `uberctx-{key}: {value}` carries baggage with URL-encoded values; it is mapped to and from
//! W3C baggage by [`crate::propagation`].
//!
//! On inject the trace id is written in 16 digits when it fits in 64 bits (what 64-bit Jaeger
//! clients read), the parent field is the caller's span id or `0`, flags are `01`, `03` or `00`.

use crate::trace::{Sampling, SpanContext, SpanId, TraceId};

/// The trace header.
pub const UBER_TRACE_ID: &str = "uber-trace-id";
/// Prefix of the baggage headers.
pub const UBERCTX_PREFIX: &str = "uberctx-";

/// Longest value looked at: 32 + 16 + 16 + 2 digits and three `%3A` separators.
const MAX_LEN: usize = 75;
const SAMPLED: u8 = 0x01;
const DEBUG: u8 = 0x02;

/// Why an `uber-trace-id` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JaegerError {
    /// Longer than any valid value.
    TooLong,
    /// Not exactly four `:`-separated fields.
    Fields,
    /// The trace id is not 1 to 32 hex digits, or is zero.
    TraceId,
    /// The span id is not 1 to 16 hex digits, or is zero.
    SpanId,
    /// The parent span id is not 1 to 16 hex digits.
    ParentSpanId,
    /// The flags are not 1 or 2 hex digits.
    Flags,
}

/// What an `uber-trace-id` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JaegerContext {
    /// The caller's trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub span_id: SpanId,
    /// The caller's parent (`None` for `0`).
    pub parent_span_id: Option<SpanId>,
    /// Accept, deny or debug: Jaeger always decides.
    pub sampling: Sampling,
}

// === impl JaegerError ===

impl JaegerError {
    /// Every reason, for defining one metric each.
    pub const ALL: [JaegerError; 6] = [
        JaegerError::TooLong,
        JaegerError::Fields,
        JaegerError::TraceId,
        JaegerError::SpanId,
        JaegerError::ParentSpanId,
        JaegerError::Flags,
    ];

    /// The reason as a metric-name fragment.
    pub fn reason(self) -> &'static str {
        match self {
            JaegerError::TooLong => "too_long",
            JaegerError::Fields => "fields",
            JaegerError::TraceId => "trace_id",
            JaegerError::SpanId => "span_id",
            JaegerError::ParentSpanId => "parent_span_id",
            JaegerError::Flags => "flags",
        }
    }
}

/// Parses an `uber-trace-id` value.
pub fn parse_uber_trace_id(value: &[u8]) -> Result<JaegerContext, JaegerError> {
    if value.len() > MAX_LEN {
        return Err(JaegerError::TooLong);
    }
    let [trace, span, parent, flags] = fields(value).ok_or(JaegerError::Fields)?;
    let trace_id = TraceId::from_hex(trace).ok_or(JaegerError::TraceId)?;
    let span_id = SpanId::from_hex(span).ok_or(JaegerError::SpanId)?;
    let parent_span_id = if parent.iter().all(|&b| b == b'0') && !parent.is_empty() {
        None
    } else {
        Some(SpanId::from_hex(parent).ok_or(JaegerError::ParentSpanId)?)
    };
    let flags = flags_byte(flags).ok_or(JaegerError::Flags)?;
    let sampling = if flags & DEBUG != 0 {
        Sampling::Debug
    } else if flags & SAMPLED != 0 {
        Sampling::Accept
    } else {
        Sampling::Deny
    };
    Ok(JaegerContext {
        trace_id,
        span_id,
        parent_span_id,
        sampling,
    })
}

/// The `uber-trace-id` for the next hop: our span, with `parent` (the caller's span) as its
/// parent field.
pub fn format_uber_trace_id(context: &SpanContext, parent: Option<SpanId>) -> String {
    let flags = match (context.debug, context.flags.is_sampled()) {
        (true, _) => SAMPLED | DEBUG,
        (false, true) => SAMPLED,
        (false, false) => 0,
    };
    let parent = parent.map_or_else(|| "0".to_owned(), SpanId::to_hex);
    format!(
        "{}:{}:{parent}:{flags:02x}",
        context.trace_id.to_short_hex(),
        context.span_id.to_hex()
    )
}

/// The baggage key of an `uberctx-{key}` header name (names compared in lower case), if the
/// name has the prefix.
pub fn baggage_key(header_name: &str) -> Option<&str> {
    let prefix = header_name.get(..UBERCTX_PREFIX.len())?;
    prefix
        .eq_ignore_ascii_case(UBERCTX_PREFIX)
        .then(|| header_name.get(UBERCTX_PREFIX.len()..))
        .flatten()
}

/// One or two hex digits.
fn flags_byte(digits: &[u8]) -> Option<u8> {
    if !matches!(digits.len(), 1 | 2) {
        return None;
    }
    digits.iter().try_fold(0u8, |acc, &b| {
        let digit = u8::try_from(char::from(b).to_digit(16)?).ok()?;
        Some(acc << 4 | digit)
    })
}

/// Splits on `:`, or on `%3A` when the value has no `:`; `None` unless exactly four fields.
fn fields(value: &[u8]) -> Option<[&[u8]; 4]> {
    let mut out: [&[u8]; 4] = [&[]; 4];
    let mut count = 0;
    let mut push = |field| {
        let slot = out.get_mut(count)?;
        *slot = field;
        count += 1;
        Some(())
    };
    if value.contains(&b':') {
        for field in value.split(|&b| b == b':') {
            push(field)?;
        }
    } else {
        let mut rest = value;
        while let Some(at) = rest.windows(3).position(|w| w.eq_ignore_ascii_case(b"%3A")) {
            push(rest.get(..at)?)?;
            rest = rest.get(at + 3..)?;
        }
        push(rest)?;
    }
    (count == 4).then_some(out)
}

#[cfg(test)]
mod tests;
