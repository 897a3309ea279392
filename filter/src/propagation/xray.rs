//! AWS X-Ray `X-Amzn-Trace-Id`, read only.
//!
//! Implements <https://docs.aws.amazon.com/xray/latest/devguide/xray-concepts.html#xray-concepts-tracingheader>:
//! `;`-separated `Key=Value` fields in any order, of which `Root=1-{8 hex}-{24 hex}` (the trace
//! id: epoch seconds then 96 random bits), `Parent={16 hex}` and `Sampled={0|1|?}` are read
//! (`?` and a missing `Sampled` defer the decision); other fields (`Self`, `Lineage`, ...) are
//! skipped, empty fields tolerated. AWS load balancers add this header; the filter never writes
//! it.

use crate::trace::{Sampling, SpanId, TraceId};

/// The header name.
pub const X_AMZN_TRACE_ID: &str = "x-amzn-trace-id";

/// Longest value looked at (the three fields we read take 79 bytes; `Lineage` and `Self` add a
/// few dozen).
const MAX_LEN: usize = 512;
const ROOT_LEN: usize = 35;

/// Why an `X-Amzn-Trace-Id` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XrayError {
    /// Longer than [`MAX_LEN`].
    TooLong,
    /// A field is not `Key=Value`.
    Field,
    /// `Root` is missing, or is not `1-{8 hex}-{24 hex}`, or is zero.
    Root,
    /// `Parent` is missing, or is not 16 hex digits, or is zero.
    Parent,
    /// `Sampled` is not `0`, `1` or `?`.
    Sampled,
}

/// What an `X-Amzn-Trace-Id` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XrayContext {
    /// The caller's trace.
    pub trace_id: TraceId,
    /// The caller's segment (span).
    pub span_id: SpanId,
    /// From `Sampled`.
    pub sampling: Sampling,
}

// === impl XrayError ===

impl XrayError {
    /// Every reason, for defining one metric each.
    pub const ALL: [XrayError; 5] = [
        XrayError::TooLong,
        XrayError::Field,
        XrayError::Root,
        XrayError::Parent,
        XrayError::Sampled,
    ];

    /// The reason as a metric-name fragment.
    pub fn reason(self) -> &'static str {
        match self {
            XrayError::TooLong => "too_long",
            XrayError::Field => "field",
            XrayError::Root => "root",
            XrayError::Parent => "parent",
            XrayError::Sampled => "sampled",
        }
    }
}

/// Parses an `X-Amzn-Trace-Id` value.
pub fn parse_amzn_trace_id(value: &[u8]) -> Result<XrayContext, XrayError> {
    if value.len() > MAX_LEN {
        return Err(XrayError::TooLong);
    }
    let (mut trace_id, mut span_id, mut sampling) = (None, None, Sampling::Deferred);
    for field in value.split(|&b| b == b';') {
        let field = super::trim_ows(field);
        if field.is_empty() {
            continue;
        }
        let at = field
            .iter()
            .position(|&b| b == b'=')
            .ok_or(XrayError::Field)?;
        let key = super::trim_ows(field.get(..at).unwrap_or_default());
        let value = super::trim_ows(field.get(at + 1..).unwrap_or_default());
        match key {
            b"Root" => trace_id = Some(root(value).ok_or(XrayError::Root)?),
            b"Parent" => {
                let id = (value.len() == 16)
                    .then(|| SpanId::from_hex(value))
                    .flatten();
                span_id = Some(id.ok_or(XrayError::Parent)?);
            }
            b"Sampled" => {
                sampling = match value {
                    b"1" => Sampling::Accept,
                    b"0" => Sampling::Deny,
                    b"?" => Sampling::Deferred,
                    _ => return Err(XrayError::Sampled),
                }
            }
            _ => {}
        }
    }
    Ok(XrayContext {
        trace_id: trace_id.ok_or(XrayError::Root)?,
        span_id: span_id.ok_or(XrayError::Parent)?,
        sampling,
    })
}

/// `1-{8 hex}-{24 hex}` → the 128-bit trace id `{8 hex}{24 hex}`.
fn root(value: &[u8]) -> Option<TraceId> {
    if value.len() != ROOT_LEN || !value.starts_with(b"1-") || value.get(10) != Some(&b'-') {
        return None;
    }
    let digits = [value.get(2..10)?, value.get(11..)?].concat();
    TraceId::from_hex(&digits)
}

#[cfg(test)]
mod tests;
