//! Zipkin B3, single header (`b3`) and multiple headers (`X-B3-*`).
//!
//! Implements <https://github.com/openzipkin/b3-propagation>:
//! - single: `{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`, or the sampling state
//!   alone (`0`, `1`, `d`); trace ids are 16 or 32 hex digits (64-bit ids are left-padded),
//!   span ids 16; the state is `1` accept, `0` deny, `d` debug; absent means deferred.
//! - multi: `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-ParentSpanId`, `X-B3-Sampled` (`1`/`0`, and the
//!   legacy `true`/`false`), `X-B3-Flags: 1` (debug, which implies accept).
//!
//! Hex digits of either case are accepted, as the OpenTelemetry propagators do. In the multi
//! form the ids decide validity; a bad `X-B3-Sampled`, `X-B3-Flags` or `X-B3-ParentSpanId` is
//! reported and ignored (the sampling becomes deferred), since each header stands alone.
//!
//! On inject we follow the OpenTelemetry B3 requirements
//! (<https://opentelemetry.io/docs/specs/otel/context/api-propagators/#b3-requirements>): no
//! parent span id; debug is written as `d` / `X-B3-Flags: 1` (without `X-B3-Sampled`).

use crate::trace::{Sampling, SpanContext, SpanId, TraceId};

/// The single header.
pub const B3: &str = "b3";
/// Multi-header trace id.
pub const X_B3_TRACE_ID: &str = "x-b3-traceid";
/// Multi-header span id.
pub const X_B3_SPAN_ID: &str = "x-b3-spanid";
/// Multi-header parent span id (read, validated, never written).
pub const X_B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
/// Multi-header sampling decision.
pub const X_B3_SAMPLED: &str = "x-b3-sampled";
/// Multi-header debug flag.
pub const X_B3_FLAGS: &str = "x-b3-flags";
/// Every multi header, in the order they are written.
pub const MULTI_HEADERS: [&str; 5] = [
    X_B3_TRACE_ID,
    X_B3_SPAN_ID,
    X_B3_PARENT_SPAN_ID,
    X_B3_SAMPLED,
    X_B3_FLAGS,
];

/// Longest single header: 32 + 16 + 1 + 16 digits and three dashes.
const MAX_SINGLE_LEN: usize = 68;

/// Why a B3 header was rejected (or, for multi's auxiliary headers, ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum B3Error {
    /// The single header is longer than any valid one.
    TooLong,
    /// The single header has more than four fields, or an empty one.
    Fields,
    /// The trace id is not 16 or 32 hex digits, or is zero.
    TraceId,
    /// The span id is not 16 hex digits, is zero, or is missing next to a trace id.
    SpanId,
    /// The parent span id is not 16 hex digits, or is zero.
    ParentSpanId,
    /// The sampling state is not one the format defines.
    Sampling,
    /// `X-B3-Flags` is neither `0` nor `1`.
    Flags,
}

/// What a B3 header said: the caller's ids (absent for a sampling-only header) and decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct B3Context {
    /// Trace and span id of the caller, when sent.
    pub ids: Option<(TraceId, SpanId)>,
    /// The caller's sampling decision.
    pub sampling: Sampling,
    /// A multi-format auxiliary header that was ignored.
    pub ignored: Option<B3Error>,
}

/// The multi-header values of one request (the first line of each), as found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MultiHeaders<'a> {
    /// `X-B3-TraceId`.
    pub trace_id: Option<&'a [u8]>,
    /// `X-B3-SpanId`.
    pub span_id: Option<&'a [u8]>,
    /// `X-B3-ParentSpanId`.
    pub parent_span_id: Option<&'a [u8]>,
    /// `X-B3-Sampled`.
    pub sampled: Option<&'a [u8]>,
    /// `X-B3-Flags`.
    pub flags: Option<&'a [u8]>,
}

// === impl B3Error ===

impl B3Error {
    /// Every reason, for defining one metric each.
    pub const ALL: [B3Error; 7] = [
        B3Error::TooLong,
        B3Error::Fields,
        B3Error::TraceId,
        B3Error::SpanId,
        B3Error::ParentSpanId,
        B3Error::Sampling,
        B3Error::Flags,
    ];

    /// The reason as a metric-name fragment.
    pub fn reason(self) -> &'static str {
        match self {
            B3Error::TooLong => "too_long",
            B3Error::Fields => "fields",
            B3Error::TraceId => "trace_id",
            B3Error::SpanId => "span_id",
            B3Error::ParentSpanId => "parent_span_id",
            B3Error::Sampling => "sampling",
            B3Error::Flags => "flags",
        }
    }
}

// === impl MultiHeaders ===

impl MultiHeaders<'_> {
    /// Whether any multi header was present.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Parses a `b3` single-header value.
pub fn parse_single(value: &[u8]) -> Result<B3Context, B3Error> {
    if value.len() > MAX_SINGLE_LEN {
        return Err(B3Error::TooLong);
    }
    let mut fields = value.split(|&b| b == b'-');
    let first = fields.next().unwrap_or_default();
    let Some(span) = fields.next() else {
        let sampling = single_sampling(first).ok_or(B3Error::Sampling)?;
        return Ok(B3Context {
            ids: None,
            sampling,
            ignored: None,
        });
    };
    let trace_id = parse_trace_id(first).ok_or(B3Error::TraceId)?;
    let span_id = parse_span_id(span).ok_or(B3Error::SpanId)?;
    let sampling = match fields.next() {
        None => Sampling::Deferred,
        Some(state) => single_sampling(state).ok_or(B3Error::Sampling)?,
    };
    if let Some(parent) = fields.next() {
        parse_span_id(parent).ok_or(B3Error::ParentSpanId)?;
    }
    if fields.next().is_some() {
        return Err(B3Error::Fields);
    }
    Ok(B3Context {
        ids: Some((trace_id, span_id)),
        sampling,
        ignored: None,
    })
}

/// Parses the multi headers; `Ok(None)` when none is present.
pub fn parse_multi(headers: &MultiHeaders<'_>) -> Result<Option<B3Context>, B3Error> {
    if headers.is_empty() {
        return Ok(None);
    }
    let mut ignored = None;
    let mut sampling = match headers.sampled.map(multi_sampling) {
        None => Sampling::Deferred,
        Some(Some(sampling)) => sampling,
        Some(None) => {
            ignored = Some(B3Error::Sampling);
            Sampling::Deferred
        }
    };
    match headers.flags {
        None | Some(b"0") => {}
        Some(b"1") => sampling = Sampling::Debug,
        Some(_) => ignored = ignored.or(Some(B3Error::Flags)),
    }
    if let Some(parent) = headers.parent_span_id
        && parse_span_id(parent).is_none()
    {
        ignored = ignored.or(Some(B3Error::ParentSpanId));
    }
    let ids = match (headers.trace_id, headers.span_id) {
        (None, None) => None,
        (Some(trace), span) => {
            let trace_id = parse_trace_id(trace).ok_or(B3Error::TraceId)?;
            let span_id = span.and_then(parse_span_id).ok_or(B3Error::SpanId)?;
            Some((trace_id, span_id))
        }
        (None, Some(_)) => return Err(B3Error::TraceId),
    };
    Ok(Some(B3Context {
        ids,
        sampling,
        ignored,
    }))
}

/// The `b3` value for the next hop: our span, no parent, `1`/`0`/`d`.
pub fn format_single(context: &SpanContext) -> String {
    format!(
        "{}-{}-{}",
        context.trace_id.to_short_hex(),
        context.span_id.to_hex(),
        sampling_state(context)
    )
}

/// The multi headers for the next hop: trace id, span id, and either `X-B3-Flags: 1` (debug)
/// or `X-B3-Sampled`. Headers of [`MULTI_HEADERS`] not returned must be removed.
pub fn format_multi(context: &SpanContext) -> [(&'static str, String); 3] {
    let decision = if context.debug {
        (X_B3_FLAGS, "1".to_owned())
    } else {
        (X_B3_SAMPLED, sampling_state(context).to_owned())
    };
    [
        (X_B3_TRACE_ID, context.trace_id.to_short_hex()),
        (X_B3_SPAN_ID, context.span_id.to_hex()),
        decision,
    ]
}

fn sampling_state(context: &SpanContext) -> &'static str {
    match (context.debug, context.flags.is_sampled()) {
        (true, _) => "d",
        (false, true) => "1",
        (false, false) => "0",
    }
}

fn single_sampling(state: &[u8]) -> Option<Sampling> {
    match state {
        b"0" => Some(Sampling::Deny),
        b"1" => Some(Sampling::Accept),
        b"d" => Some(Sampling::Debug),
        _ => None,
    }
}

/// `X-B3-Sampled`: `1`/`0`, legacy `true`/`false` in any case, and `d` as some clients send.
fn multi_sampling(value: &[u8]) -> Option<Sampling> {
    if value == b"1" || value.eq_ignore_ascii_case(b"true") {
        Some(Sampling::Accept)
    } else if value == b"0" || value.eq_ignore_ascii_case(b"false") {
        Some(Sampling::Deny)
    } else if value == b"d" {
        Some(Sampling::Debug)
    } else {
        None
    }
}

fn parse_trace_id(digits: &[u8]) -> Option<TraceId> {
    matches!(digits.len(), 16 | 32)
        .then(|| TraceId::from_hex(digits))
        .flatten()
}

fn parse_span_id(digits: &[u8]) -> Option<SpanId> {
    (digits.len() == 16)
        .then(|| SpanId::from_hex(digits))
        .flatten()
}

#[cfg(test)]
mod tests;
