//! Google Cloud `X-Cloud-Trace-Context`, read only.
//!
//! Implements <https://cloud.google.com/trace/docs/trace-context#legacy-http-header>:
//! `{TRACE_ID}/{SPAN_ID}[;o={OPTIONS}]`, the trace id in 32 lower-case hex digits, the span id
//! in decimal (1 to 20 digits, a non-zero `u64`), the options a decimal whose bit 0 means
//! sampled. Without `;o=` the decision is deferred. Google's load balancers add this header, so
//! reading it lets the mesh join the load balancer's trace; the filter never writes it.

use crate::trace::{Sampling, SpanId, TraceId};

/// The header name.
pub const X_CLOUD_TRACE_CONTEXT: &str = "x-cloud-trace-context";

/// Longest value looked at: 32 + 1 + 20 digits and `;o=` with a generous option field.
const MAX_LEN: usize = 128;
const MAX_SPAN_ID_DIGITS: usize = 20;

/// Why an `X-Cloud-Trace-Context` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcpError {
    /// Longer than any sensible value.
    TooLong,
    /// No `/` after the trace id, or something other than `;o=` after the span id.
    Delimiter,
    /// The trace id is not 32 lower-case hex digits, or is zero.
    TraceId,
    /// The span id is not a decimal `u64` of 1 to 20 digits, or is zero.
    SpanId,
    /// The options are not decimal digits.
    Options,
}

/// What an `X-Cloud-Trace-Context` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcpContext {
    /// The caller's trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub span_id: SpanId,
    /// Accept or deny from `o=`, else deferred.
    pub sampling: Sampling,
}

// === impl GcpError ===

impl GcpError {
    /// Every reason, for defining one metric each.
    pub const ALL: [GcpError; 5] = [
        GcpError::TooLong,
        GcpError::Delimiter,
        GcpError::TraceId,
        GcpError::SpanId,
        GcpError::Options,
    ];

    /// The reason as a metric-name fragment.
    pub fn reason(self) -> &'static str {
        match self {
            GcpError::TooLong => "too_long",
            GcpError::Delimiter => "delimiter",
            GcpError::TraceId => "trace_id",
            GcpError::SpanId => "span_id",
            GcpError::Options => "options",
        }
    }
}

/// Parses an `X-Cloud-Trace-Context` value.
pub fn parse_cloud_trace_context(value: &[u8]) -> Result<GcpContext, GcpError> {
    if value.len() > MAX_LEN {
        return Err(GcpError::TooLong);
    }
    let slash = value
        .iter()
        .position(|&b| b == b'/')
        .ok_or(GcpError::Delimiter)?;
    let trace = value.get(..slash).unwrap_or_default();
    let rest = value.get(slash + 1..).unwrap_or_default();
    let trace_id = (trace.len() == 32 && super::is_lower_hex(trace))
        .then(|| TraceId::from_hex(trace))
        .flatten()
        .ok_or(GcpError::TraceId)?;
    let (span, options) = match rest.iter().position(|&b| b == b';') {
        Some(at) => (rest.get(..at).unwrap_or_default(), rest.get(at..)),
        None => (rest, None),
    };
    let span_id = decimal_u64(span)
        .and_then(SpanId::from_u64)
        .ok_or(GcpError::SpanId)?;
    let sampling = match options {
        None => Sampling::Deferred,
        Some(options) => {
            let digits = options.strip_prefix(b";o=").ok_or(GcpError::Delimiter)?;
            match digits.last() {
                Some(last) if digits.iter().all(u8::is_ascii_digit) => {
                    // Only bit 0 matters, and it is the parity of the last decimal digit.
                    if last % 2 == 1 {
                        Sampling::Accept
                    } else {
                        Sampling::Deny
                    }
                }
                _ => return Err(GcpError::Options),
            }
        }
    };
    Ok(GcpContext {
        trace_id,
        span_id,
        sampling,
    })
}

/// 1 to 20 decimal digits that fit in a `u64`.
fn decimal_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > MAX_SPAN_ID_DIGITS {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = u64::from(char::from(b).to_digit(10)?);
        acc.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests;
