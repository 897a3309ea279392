//! Reading and writing trace context on HTTP headers, one module per format.
//!
//! Every parser is a plain function over the raw header bytes: Envoy hands us arbitrary bytes,
//! so nothing here assumes UTF-8, indexes untrusted input or panics. A value that does not parse
//! is reported as [`Malformed`] (format and reason) for the caller to count; the request then
//! continues the next valid context in the extract order, or starts a fresh trace.
//!
//! ```text
//!  request headers ──▶ extract(headers, config) ──▶ Extracted { parent, sampling, tracestate,
//!                      (one pass over the map,        baggage, malformed, which headers were
//!                       every configured format)      present }
//!                                                              │  request::start_server_span
//!  header writes ◀──── inject(our span, extracted, config, stop)◀┘
//!  (set / remove, applied by the glue)
//! ```
//!
//! Format names are those of `OTEL_PROPAGATORS`
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#general-sdk-configuration>)
//! plus `gcp`: `tracecontext`, `baggage`, `b3` (single header), `b3multi`, `jaeger`, `xray`.

pub mod b3;
pub mod baggage;
pub mod gcp;
pub mod jaeger;
pub mod tracestate;
pub mod w3c;
pub mod xray;

use crate::config::PropagationConfig;
use crate::trace::{Sampling, SpanContext, SpanId, TraceFlags, TraceId};
use baggage::{Baggage, BaggageError};
use percent_encoding::percent_decode;
use serde::Deserialize;
use std::borrow::Cow;
use tracestate::{TraceState, TracestateError};

/// A propagation format, named as in `OTEL_PROPAGATORS` (plus `gcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// W3C Trace Context: `traceparent` and `tracestate`.
    Tracecontext,
    /// W3C Baggage: `baggage`.
    Baggage,
    /// B3 single header: `b3`.
    B3,
    /// B3 multiple headers: `X-B3-*`.
    B3multi,
    /// Jaeger: `uber-trace-id` and `uberctx-*` baggage.
    Jaeger,
    /// AWS X-Ray: `X-Amzn-Trace-Id` (read only).
    Xray,
    /// Google Cloud: `X-Cloud-Trace-Context` (read only).
    Gcp,
}

/// A header (or header family) whose malformed values are counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// `traceparent`.
    Traceparent,
    /// `tracestate`.
    Tracestate,
    /// `baggage`.
    Baggage,
    /// `b3`.
    B3,
    /// `X-B3-*`.
    B3multi,
    /// `uber-trace-id`.
    Jaeger,
    /// `uberctx-*`.
    JaegerBaggage,
    /// `X-Cloud-Trace-Context`.
    Gcp,
    /// `X-Amzn-Trace-Id`.
    Xray,
}

/// One malformed-input finding: which header and why. Counted once per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Malformed {
    /// The header family.
    pub part: Part,
    /// The parser's reason (`trace_id`, `invalid_member`, ...).
    pub reason: &'static str,
}

/// Read access to a request's headers: every `(name, value)` pair in order, repeated names
/// repeated. Names may be in any case; values are raw bytes. Pseudo-headers (`:path`,
/// `:method`, `:authority`) are headers like any other. The one view of the request that
/// propagation and the sampling rules share.
pub trait Headers {
    /// The pairs.
    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])>;

    /// The first value of header `name` (compared ignoring ASCII case), if present.
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// What the request's headers said, as far as the configured extract formats read them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    /// The caller's span, from the first format in the extract order that had a valid one.
    /// Its flags carry the decision (sampled when accepted or debug) and `debug`.
    pub parent: Option<SpanContext>,
    /// The format [`Extracted::parent`] came from (or the sampling-only hint, for `b3: 0`).
    pub format: Option<Format>,
    /// The caller's sampling decision; with no parent, a sampling-only B3 header's.
    pub sampling: Sampling,
    /// The `tracestate` that goes with the parent (empty unless a valid `traceparent` of the
    /// parent's trace came with it).
    pub tracestate: TraceState,
    /// W3C baggage and Jaeger `uberctx-*` baggage, merged (W3C first).
    pub baggage: Baggage,
    /// What was malformed, each finding once.
    pub malformed: Vec<Malformed>,
    present: Present,
    uberctx_names: Vec<String>,
}

/// A change to the upstream request headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderWrite {
    /// Replace every value of the header with this one.
    Set(Cow<'static, str>, String),
    /// Remove every value of the header.
    Remove(Cow<'static, str>),
}

/// The trace headers the filter knows by name, one bit each in [`Present`].
const KNOWN: [&str; 12] = [
    w3c::TRACEPARENT,
    tracestate::TRACESTATE,
    baggage::BAGGAGE,
    b3::B3,
    b3::X_B3_TRACE_ID,
    b3::X_B3_SPAN_ID,
    b3::X_B3_PARENT_SPAN_ID,
    b3::X_B3_SAMPLED,
    b3::X_B3_FLAGS,
    jaeger::UBER_TRACE_ID,
    gcp::X_CLOUD_TRACE_CONTEXT,
    xray::X_AMZN_TRACE_ID,
];

/// Which [`KNOWN`] headers a request carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Present(u16);

/// The headers of interest, found in one pass over the map (values trimmed of OWS; for
/// single-valued headers the first line, empty values counting as absent).
#[derive(Default)]
struct Found<'a> {
    present: Present,
    traceparent: Option<&'a [u8]>,
    tracestate: Vec<&'a [u8]>,
    baggage: Vec<&'a [u8]>,
    b3: Option<&'a [u8]>,
    multi: b3::MultiHeaders<'a>,
    uber_trace_id: Option<&'a [u8]>,
    uberctx: Vec<(&'a str, &'a [u8])>,
    gcp: Option<&'a [u8]>,
    xray: Option<&'a [u8]>,
}

/// A parent candidate from one format: ids (absent for sampling-only B3) and decision.
#[derive(Default)]
struct Candidate {
    ids: Option<(TraceId, SpanId)>,
    sampling: Sampling,
    /// W3C flags other than sampled (the Level 2 `random` bit); zero for other formats.
    w3c_flags: u8,
    /// A B3 multi auxiliary header that was ignored.
    ignored: Option<Malformed>,
}

// === impl Format ===

impl Format {
    /// Every format.
    pub const ALL: [Format; 7] = [
        Format::Tracecontext,
        Format::Baggage,
        Format::B3,
        Format::B3multi,
        Format::Jaeger,
        Format::Xray,
        Format::Gcp,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tracecontext => "tracecontext",
            Format::Baggage => "baggage",
            Format::B3 => "b3",
            Format::B3multi => "b3multi",
            Format::Jaeger => "jaeger",
            Format::Xray => "xray",
            Format::Gcp => "gcp",
        }
    }

    /// Whether the format carries a trace context (all but `baggage`).
    pub fn carries_context(self) -> bool {
        self != Format::Baggage
    }

    /// Whether the filter only reads the format (`xray`, `gcp`).
    pub fn is_read_only(self) -> bool {
        matches!(self, Format::Xray | Format::Gcp)
    }

    /// The fixed header names of the format (`uberctx-*` comes on top for `jaeger`).
    fn headers(self) -> &'static [&'static str] {
        match self {
            Format::Tracecontext => &[w3c::TRACEPARENT, tracestate::TRACESTATE],
            Format::Baggage => &[baggage::BAGGAGE],
            Format::B3 => &[b3::B3],
            Format::B3multi => &b3::MULTI_HEADERS,
            Format::Jaeger => &[jaeger::UBER_TRACE_ID],
            Format::Xray => &[xray::X_AMZN_TRACE_ID],
            Format::Gcp => &[gcp::X_CLOUD_TRACE_CONTEXT],
        }
    }
}

// === impl Part ===

impl Part {
    /// Every part.
    pub const ALL: [Part; 9] = [
        Part::Traceparent,
        Part::Tracestate,
        Part::Baggage,
        Part::B3,
        Part::B3multi,
        Part::Jaeger,
        Part::JaegerBaggage,
        Part::Gcp,
        Part::Xray,
    ];

    /// The metric-name fragment.
    pub fn name(self) -> &'static str {
        match self {
            Part::Traceparent => "tracecontext",
            Part::Tracestate => "tracestate",
            Part::Baggage => "baggage",
            Part::B3 => "b3",
            Part::B3multi => "b3multi",
            Part::Jaeger => "jaeger",
            Part::JaegerBaggage => "jaeger_baggage",
            Part::Gcp => "gcp",
            Part::Xray => "xray",
        }
    }

    /// Every reason the part's parser can report.
    pub fn reasons(self) -> Vec<&'static str> {
        match self {
            Part::Traceparent => w3c::TraceparentError::ALL.map(|e| e.reason()).to_vec(),
            Part::Tracestate => TracestateError::ALL.map(|e| e.reason()).to_vec(),
            Part::Baggage | Part::JaegerBaggage => BaggageError::ALL.map(|e| e.reason()).to_vec(),
            Part::B3 | Part::B3multi => b3::B3Error::ALL.map(|e| e.reason()).to_vec(),
            Part::Jaeger => jaeger::JaegerError::ALL.map(|e| e.reason()).to_vec(),
            Part::Gcp => gcp::GcpError::ALL.map(|e| e.reason()).to_vec(),
            Part::Xray => xray::XrayError::ALL.map(|e| e.reason()).to_vec(),
        }
    }
}

// === impl Headers ===

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for [(N, V)] {
    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(N, V)> {
    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.as_slice().pairs()
    }
}

// === impl Present ===

impl Present {
    fn insert(&mut self, index: usize) {
        self.0 |= 1 << index;
    }

    fn contains(self, name: &str) -> bool {
        KNOWN
            .iter()
            .position(|&known| known == name)
            .is_some_and(|index| self.0 & (1 << index) != 0)
    }
}

// === impl Found ===

impl<'a> Found<'a> {
    fn collect<H: Headers + ?Sized>(headers: &'a H) -> Self {
        let mut found = Found::default();
        for (name, value) in headers.pairs() {
            let value = trim_ows(value);
            if let Some(index) = KNOWN.iter().position(|k| k.eq_ignore_ascii_case(name)) {
                found.present.insert(index);
                found.record(index, value);
            } else if jaeger::baggage_key(name).is_some() {
                found.uberctx.push((name, value));
            }
        }
        found
    }

    fn record(&mut self, index: usize, value: &'a [u8]) {
        let first = |slot: &mut Option<&'a [u8]>| {
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value);
            }
        };
        match KNOWN.get(index).copied().unwrap_or_default() {
            w3c::TRACEPARENT => first(&mut self.traceparent),
            tracestate::TRACESTATE => self.tracestate.push(value),
            baggage::BAGGAGE => self.baggage.push(value),
            b3::B3 => first(&mut self.b3),
            b3::X_B3_TRACE_ID => first(&mut self.multi.trace_id),
            b3::X_B3_SPAN_ID => first(&mut self.multi.span_id),
            b3::X_B3_PARENT_SPAN_ID => first(&mut self.multi.parent_span_id),
            b3::X_B3_SAMPLED => first(&mut self.multi.sampled),
            b3::X_B3_FLAGS => first(&mut self.multi.flags),
            jaeger::UBER_TRACE_ID => first(&mut self.uber_trace_id),
            gcp::X_CLOUD_TRACE_CONTEXT => first(&mut self.gcp),
            xray::X_AMZN_TRACE_ID => first(&mut self.xray),
            _ => {}
        }
    }

    /// Parses one context format: `Ok(None)` when its headers are absent.
    fn candidate(&self, format: Format) -> Result<Option<Candidate>, Malformed> {
        let ids = |trace_id, span_id, sampling| Candidate {
            ids: Some((trace_id, span_id)),
            sampling,
            ..Candidate::default()
        };
        let b3 = |b3: b3::B3Context, part| Candidate {
            ids: b3.ids,
            sampling: b3.sampling,
            ignored: b3.ignored.map(|e| malformed(part, e.reason())),
            ..Candidate::default()
        };
        let parsed = match format {
            Format::Tracecontext => self.traceparent.map(|v| {
                let c = w3c::parse_traceparent(v)
                    .map_err(|e| malformed(Part::Traceparent, e.reason()))?;
                let sampling = if c.flags.is_sampled() {
                    Sampling::Accept
                } else {
                    Sampling::Deny
                };
                Ok(Candidate {
                    w3c_flags: c.flags.with_sampled(false).to_wire(),
                    ..ids(c.trace_id, c.span_id, sampling)
                })
            }),
            Format::B3 => self.b3.map(|v| {
                b3::parse_single(v)
                    .map(|c| b3(c, Part::B3))
                    .map_err(|e| malformed(Part::B3, e.reason()))
            }),
            Format::B3multi => b3::parse_multi(&self.multi)
                .map(|c| c.map(|c| b3(c, Part::B3multi)))
                .map_err(|e| malformed(Part::B3multi, e.reason()))
                .transpose(),
            Format::Jaeger => self.uber_trace_id.map(|v| {
                jaeger::parse_uber_trace_id(v)
                    .map(|c| ids(c.trace_id, c.span_id, c.sampling))
                    .map_err(|e| malformed(Part::Jaeger, e.reason()))
            }),
            Format::Gcp => self.gcp.map(|v| {
                gcp::parse_cloud_trace_context(v)
                    .map(|c| ids(c.trace_id, c.span_id, c.sampling))
                    .map_err(|e| malformed(Part::Gcp, e.reason()))
            }),
            Format::Xray => self.xray.map(|v| {
                xray::parse_amzn_trace_id(v)
                    .map(|c| ids(c.trace_id, c.span_id, c.sampling))
                    .map_err(|e| malformed(Part::Xray, e.reason()))
            }),
            Format::Baggage => None,
        };
        parsed.transpose()
    }
}

// === impl Extracted ===

impl Extracted {
    fn note(&mut self, finding: Malformed) {
        if !self.malformed.contains(&finding) {
            self.malformed.push(finding);
        }
    }

    /// Reads `baggage` lines and, for Jaeger, `uberctx-*` headers into one list.
    fn read_baggage(&mut self, found: &Found<'_>, config: &PropagationConfig) {
        if config.extract.contains(&Format::Baggage) {
            let (baggage, problems) = Baggage::parse(found.baggage.iter().copied());
            self.baggage = baggage;
            for problem in problems {
                self.note(malformed(Part::Baggage, problem.reason()));
            }
        }
        if config.extract.contains(&Format::Jaeger) {
            for &(name, value) in &found.uberctx {
                let key = jaeger::baggage_key(name)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let value = percent_decode(value).decode_utf8_lossy();
                if let Err(problem) = self.baggage.insert_decoded(&key, value.trim()) {
                    self.note(malformed(Part::JaegerBaggage, problem.reason()));
                    if matches!(
                        problem,
                        BaggageError::TooManyMembers | BaggageError::TooLong
                    ) {
                        break;
                    }
                }
            }
        }
    }
}

/// Reads the request's trace context in the configured extract order. The first format with a
/// valid parent wins; every configured format is still parsed so that malformed headers are
/// counted. Never fails: bad input gives no parent and [`Extracted::malformed`] findings.
pub fn extract<H: Headers + ?Sized>(headers: &H, config: &PropagationConfig) -> Extracted {
    let found = Found::collect(headers);
    let mut extracted = Extracted {
        present: found.present,
        uberctx_names: found
            .uberctx
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect(),
        ..Extracted::default()
    };
    let mut winner: Option<(Format, Candidate)> = None;
    let mut hint: Option<(Format, Sampling)> = None;
    let mut traceparent_trace = None;
    for &format in config.extract.iter().filter(|f| f.carries_context()) {
        match found.candidate(format) {
            Ok(None) => {}
            Ok(Some(candidate)) => {
                if let Some(finding) = candidate.ignored {
                    extracted.note(finding);
                }
                if let Some((trace_id, _)) = candidate.ids {
                    if format == Format::Tracecontext {
                        traceparent_trace = Some(trace_id);
                    }
                    if winner.is_none() {
                        winner = Some((format, candidate));
                    }
                } else if hint.is_none() {
                    hint = Some((format, candidate.sampling));
                }
            }
            Err(finding) => extracted.note(finding),
        }
    }
    match winner {
        Some((
            format,
            Candidate {
                ids: Some((trace_id, span_id)),
                sampling,
                w3c_flags,
                ..
            },
        )) => {
            let sampled = if sampling.decision() == Some(true) {
                TraceFlags::SAMPLED
            } else {
                0
            };
            extracted.parent = Some(SpanContext {
                trace_id,
                span_id,
                flags: TraceFlags::from_wire(w3c_flags | sampled),
                debug: sampling.is_debug(),
            });
            extracted.format = Some(format);
            extracted.sampling = sampling;
            // W3C: tracestate is only read with a valid traceparent, and only belongs to our
            // parent if that traceparent is of the same trace.
            if traceparent_trace == Some(trace_id) {
                let (state, problems) =
                    tracestate::parse_tracestate(found.tracestate.iter().copied());
                extracted.tracestate = state;
                for problem in problems {
                    extracted.note(malformed(Part::Tracestate, problem.reason()));
                }
            }
        }
        _ => {
            if let Some((format, sampling)) = hint {
                extracted.format = Some(format);
                extracted.sampling = sampling;
            }
        }
    }
    extracted.read_baggage(&found, config);
    extracted
}

/// The header writes that carry `span` (our span, child of `parent_span_id`) upstream in every
/// injected format, with the extracted tracestate and baggage. Headers of formats not injected
/// are removed when `remove_uninjected` is set; the other B3 variant is always removed when
/// one is injected (readers prefer the single header, so a stale one would win). With `stop`,
/// every trace header the request carried is removed and nothing is written.
pub fn inject(
    span: &SpanContext,
    parent_span_id: Option<SpanId>,
    extracted: &Extracted,
    config: &PropagationConfig,
    stop: bool,
) -> Vec<HeaderWrite> {
    let mut writes = Vec::new();
    let present = extracted.present;
    let remove = |writes: &mut Vec<HeaderWrite>, name: &'static str| {
        if present.contains(name) {
            writes.push(HeaderWrite::Remove(Cow::Borrowed(name)));
        }
    };
    let remove_uberctx = |writes: &mut Vec<HeaderWrite>| {
        for name in &extracted.uberctx_names {
            writes.push(HeaderWrite::Remove(Cow::Owned(name.clone())));
        }
    };
    if stop {
        for name in KNOWN {
            remove(&mut writes, name);
        }
        remove_uberctx(&mut writes);
        return writes;
    }
    let injected = |format| config.inject.contains(&format);
    for format in Format::ALL {
        if injected(format) {
            continue;
        }
        let b3_family = matches!(format, Format::B3 | Format::B3multi)
            && (injected(Format::B3) || injected(Format::B3multi));
        if config.remove_uninjected || b3_family {
            for &name in format.headers() {
                remove(&mut writes, name);
            }
            if format == Format::Jaeger {
                remove_uberctx(&mut writes);
            }
        }
    }
    let set = |writes: &mut Vec<HeaderWrite>, name: &'static str, value: String| {
        writes.push(HeaderWrite::Set(Cow::Borrowed(name), value));
    };
    for &format in &config.inject {
        match format {
            Format::Tracecontext => {
                set(&mut writes, w3c::TRACEPARENT, w3c::format_traceparent(span));
                match extracted.tracestate.to_header() {
                    Some(value) => set(&mut writes, tracestate::TRACESTATE, value),
                    None => remove(&mut writes, tracestate::TRACESTATE),
                }
            }
            Format::Baggage => match extracted.baggage.to_header() {
                Some(value) => set(&mut writes, baggage::BAGGAGE, value),
                None => remove(&mut writes, baggage::BAGGAGE),
            },
            Format::B3 => set(&mut writes, b3::B3, b3::format_single(span)),
            Format::B3multi => {
                let values = b3::format_multi(span);
                for name in b3::MULTI_HEADERS {
                    if !values.iter().any(|(n, _)| *n == name) {
                        remove(&mut writes, name);
                    }
                }
                for (name, value) in values {
                    set(&mut writes, name, value);
                }
            }
            Format::Jaeger => {
                set(
                    &mut writes,
                    jaeger::UBER_TRACE_ID,
                    jaeger::format_uber_trace_id(span, parent_span_id),
                );
                remove_uberctx(&mut writes);
                for member in extracted.baggage.iter().filter(|m| is_header_name(m.key())) {
                    writes.push(HeaderWrite::Set(
                        Cow::Owned(format!("{}{}", jaeger::UBERCTX_PREFIX, member.key())),
                        member.raw_value().to_owned(),
                    ));
                }
            }
            Format::Xray | Format::Gcp => {}
        }
    }
    writes
}

/// A baggage key that can be written as an `uberctx-{key}` header name: Envoy and HTTP/2 keep
/// names in lower case, so keys with upper-case letters are not mapped (they would come back
/// changed).
fn is_header_name(key: &str) -> bool {
    is_token(key.as_bytes()) && !key.bytes().any(|b| b.is_ascii_uppercase())
}

fn malformed(part: Part, reason: &'static str) -> Malformed {
    Malformed { part, reason }
}

/// Strips the optional white space (SP, HTAB) HTTP allows around values and list members.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// An HTTP `token` (RFC 9110 §5.6.2): one or more `tchar`. What header names, methods and
/// baggage keys are made of.
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// Whether every byte is a lower-case hex digit.
pub(crate) fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests;
