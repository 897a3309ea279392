//! What the filter does for one request, as pure functions of its headers: extract the caller's
//! context, start our SERVER span as its child (or a new trace), decide sampling, and say
//! which headers to write on the upstream request.
//!
//! ```text
//!  headers ─▶ propagation::extract ─▶ start_server_span ─▶ Sampler::decide ─▶ apply_sampling
//!               (caller's context,      (caller's flags)     (sampling_input)    (sampled, debug,
//!                decision, tracestate)                                            `ot` member)
//!                                                   header writes ◀── propagation::inject
//! ```
//!
//! The decision reaches every injected format through the span's flags (`sampled`, `debug`)
//! and the W3C `tracestate` through the extracted list, so each header is written once, by
//! [`crate::propagation::inject`].

use crate::config::PropagationConfig;
use crate::ids::IdGenerator;
use crate::propagation::tracestate::TraceState;
use crate::propagation::{self, Extracted, HeaderWrite, Headers};
use crate::sampling::consistent::OT_KEY;
use crate::sampling::{self, Decision, ParentSampling, Sampler, SamplingInput, SharedStore};
use crate::span::HttpSpan;
use crate::trace::{Sampling, SpanContext, TraceFlags};

/// Everything the filter decided about one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Handled {
    /// Our span, open until the stream ends.
    pub span: HttpSpan,
    /// What the request's trace headers said (for the metrics).
    pub extracted: Extracted,
    /// The sampling decision (for the metrics).
    pub decision: Decision,
    /// Whether `stop_propagation` matched: every trace header is removed.
    pub stop: bool,
    /// The changes to the upstream request headers.
    pub writes: Vec<HeaderWrite>,
}

/// Handles a request's headers: extract, start the span, sample, inject. `store` holds the
/// shared rate-limit buckets, `now_unix_nanos` is the host clock. Never fails: malformed
/// headers start a new trace and are listed in [`Extracted::malformed`].
pub fn handle<H: Headers + ?Sized>(
    headers: &H,
    config: &PropagationConfig,
    sampler: &Sampler,
    store: &dyn SharedStore,
    ids: &mut impl IdGenerator,
    now_unix_nanos: u64,
) -> Handled {
    let mut extracted = propagation::extract(headers, config);
    let mut span = start_server_span(&extracted, ids, now_unix_nanos);
    let decision = sampler.decide(
        &sampling_input(&span, &extracted, headers),
        now_unix_nanos,
        store,
    );
    apply_sampling(&mut span, &mut extracted.tracestate, &decision, sampler);
    let stop = config
        .stop_propagation
        .matches(headers.get(":authority").unwrap_or_default());
    let writes = propagation::inject(&span.context, span.parent_span_id, &extracted, config, stop);
    Handled {
        span,
        extracted,
        decision,
        stop,
        writes,
    }
}

/// Starts the server span for a request whose context was `extracted`: the caller's trace
/// and flags with a new span id, or a new trace. The caller's decision (and debug flag) stays
/// on the span until [`apply_sampling`] replaces it with ours.
pub fn start_server_span(
    extracted: &Extracted,
    ids: &mut impl IdGenerator,
    now_unix_nanos: u64,
) -> HttpSpan {
    let debug = extracted.sampling.is_debug();
    let context = match extracted.parent {
        Some(parent) => SpanContext {
            span_id: ids.new_span_id(),
            debug,
            ..parent
        },
        // Our trace ids are fully random, so the Level 2 `random` flag is true of them.
        None => SpanContext {
            trace_id: ids.new_trace_id(),
            span_id: ids.new_span_id(),
            flags: TraceFlags::from_wire(TraceFlags::RANDOM)
                .with_sampled(extracted.sampling.decision() == Some(true)),
            debug,
        },
    };
    HttpSpan::new(context, extracted.parent.map(|p| p.span_id), now_unix_nanos)
}

/// What the sampler needs to know about `span`'s request: the caller's decision (from its
/// context, or from a sampling-only B3 header), whether the trace id is the caller's, the
/// tracestate that came with it, and the headers for rules and forced traces.
pub fn sampling_input<'a, H: Headers + ?Sized>(
    span: &HttpSpan,
    extracted: &'a Extracted,
    headers: &'a H,
) -> SamplingInput<'a, H> {
    let said_something = extracted.parent.is_some() || extracted.sampling != Sampling::Deferred;
    SamplingInput {
        trace_id: span.context.trace_id,
        remote_trace_id: extracted.parent.is_some(),
        parent: said_something.then_some(ParentSampling {
            sampled: extracted.sampling.decision(),
            debug: extracted.sampling.is_debug(),
        }),
        tracestate: &extracted.tracestate,
        headers,
    }
}

/// Applies a sampling decision: the span's `sampled` flag (which every injected format
/// carries), its debug flag (kept only on a sampled span: debug means sampled in B3 and
/// Jaeger), the `ot` member of the `tracestate` to inject (only when it changed, moved to the
/// front as W3C asks of a modified member), and on sampled spans the reason (and rule)
/// attributes.
pub fn apply_sampling(
    span: &mut HttpSpan,
    tracestate: &mut TraceState,
    decision: &Decision,
    sampler: &Sampler,
) {
    let context = &mut span.context;
    context.flags = context.flags.with_sampled(decision.sampled);
    context.debug &= decision.sampled;
    if decision.ot_changed {
        let set = decision
            .ot_member
            .as_deref()
            .map(|value| tracestate.set(OT_KEY, value));
        // An `ot` value we could not write must not survive stale: remove it.
        if !matches!(set, Some(Ok(()))) {
            tracestate.remove(OT_KEY);
        }
    }
    if decision.sampled {
        let attributes = &mut span.extra_attributes;
        attributes.push((
            sampling::REASON_ATTRIBUTE,
            decision.reason.as_str().to_owned(),
        ));
        if let Some(name) = decision.rule.and_then(|i| sampler.rule_name(i)) {
            attributes.push((sampling::RULE_ATTRIBUTE, name.to_owned()));
        }
    }
}

/// Reads a `:status` header value.
pub fn parse_status(value: &[u8]) -> Option<u16> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
