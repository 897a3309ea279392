//! What the filter does for one request, as pure functions of the header bytes: extract the
//! incoming context, start our SERVER span, and say what to write on the upstream request.
//!
//! The span starts with the parent's flags (or sampled, for a new trace); the sampling decision
//! ([`crate::sampling`]) is then applied with [`apply_sampling`].

use crate::ids::IdGenerator;
use crate::propagation::w3c::{self, TraceparentError};
use crate::sampling::{self, Decision, ParentSampling, Sampler};
use crate::span::ServerSpan;
use crate::trace::{SpanContext, TraceFlags};

/// What the request's `traceparent` gave us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extraction {
    /// No `traceparent` header: a new trace starts.
    Missing,
    /// A valid context: our span is its child.
    Valid,
    /// An invalid header, ignored: a new trace starts.
    Malformed(TraceparentError),
}

/// A started request span and the header value that carries it upstream.
#[derive(Clone, Debug, PartialEq)]
pub struct Started {
    /// Our span, open until the stream ends.
    pub span: ServerSpan,
    /// `traceparent` for the upstream request: our span as the parent.
    pub traceparent: String,
    /// How the incoming context was read.
    pub extraction: Extraction,
}

/// Starts the server span for a request whose `traceparent` header is `traceparent`.
pub fn start_server_span(
    traceparent: Option<&[u8]>,
    ids: &mut impl IdGenerator,
    now_unix_nanos: u64,
) -> Started {
    let parsed = traceparent.map(w3c::parse_traceparent);
    let (parent, extraction) = match parsed {
        None => (None, Extraction::Missing),
        Some(Ok(parent)) => (Some(parent), Extraction::Valid),
        Some(Err(reason)) => (None, Extraction::Malformed(reason)),
    };
    let context = match parent {
        Some(parent) => SpanContext {
            span_id: ids.new_span_id(),
            ..parent
        },
        // Our trace ids are fully random, so the Level 2 `random` flag is true of them.
        None => SpanContext {
            trace_id: ids.new_trace_id(),
            span_id: ids.new_span_id(),
            flags: TraceFlags::from_wire(TraceFlags::SAMPLED | TraceFlags::RANDOM),
        },
    };
    let span = ServerSpan {
        context,
        parent_span_id: parent.map(|p| p.span_id),
        start_unix_nanos: now_unix_nanos,
        end_unix_nanos: now_unix_nanos,
        method: String::new(),
        path: String::new(),
        status_code: None,
        extra_attributes: Vec::new(),
    };
    Started {
        traceparent: w3c::format_traceparent(&context),
        span,
        extraction,
    }
}

/// The incoming parent's sampling flags, for [`Sampler::decide`]; `None` for a new trace.
pub fn parent_sampling(started: &Started) -> Option<ParentSampling> {
    (started.extraction == Extraction::Valid).then(|| ParentSampling {
        sampled: started.span.context.flags.is_sampled(),
        // The B3/Jaeger debug flag is carried by the multi-format propagation; W3C has none.
        debug: false,
    })
}

/// Applies a sampling decision: the `sampled` flag of our span and of the upstream
/// `traceparent`, and on sampled spans the reason (and rule) attributes.
pub fn apply_sampling(started: &mut Started, decision: &Decision, sampler: &Sampler) {
    let context = &mut started.span.context;
    context.flags = context.flags.with_sampled(decision.sampled);
    started.traceparent = w3c::format_traceparent(context);
    if decision.sampled {
        let attributes = &mut started.span.extra_attributes;
        attributes.push((
            sampling::REASON_ATTRIBUTE,
            decision.reason.as_str().to_owned(),
        ));
        if let Some(name) = decision.rule.and_then(|i| sampler.rule_name(i)) {
            attributes.push((sampling::RULE_ATTRIBUTE, name.to_owned()));
        }
    }
}

/// The upstream `tracestate` after a decision: `None` to leave the header as it came,
/// `Some(None)` to remove it, `Some(Some(value))` to write `value`. Only the `ot` member
/// changes; for a new trace the incoming header (which has no valid `traceparent` to belong
/// to) is not carried into a rewritten one.
pub fn upstream_tracestate(
    started: &Started,
    decision: &Decision,
    incoming: Option<&[u8]>,
) -> Option<Option<String>> {
    if !decision.ot_changed {
        return None;
    }
    let incoming = incoming.filter(|_| started.extraction == Extraction::Valid);
    Some(sampling::tracestate::with_ot_member(
        incoming,
        decision.ot_member.as_deref(),
    ))
}

/// Reads a `:status` header value.
pub fn parse_status(value: &[u8]) -> Option<u16> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{SpanId, TraceId};

    /// Ids counting up from 1, so tests can name them.
    struct SequentialIds(u8);

    impl IdGenerator for SequentialIds {
        fn new_trace_id(&mut self) -> TraceId {
            self.0 += 1;
            TraceId::from_bytes([self.0; 16]).unwrap()
        }
        fn new_span_id(&mut self) -> SpanId {
            self.0 += 1;
            SpanId::from_bytes([self.0; 8]).unwrap()
        }
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_parent_keeps_trace_and_flags_with_our_span_as_parent() {
        let started = start_server_span(Some(PARENT.as_bytes()), &mut SequentialIds(0), 5);
        assert_eq!(started.extraction, Extraction::Valid);
        assert_eq!(
            started.traceparent,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-01"
        );
        assert_eq!(
            started.span.parent_span_id.map(SpanId::to_hex).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(started.span.start_unix_nanos, 5);
    }

    #[test]
    fn unsampled_parent_stays_unsampled() {
        let parent = PARENT.replace("-01", "-00");
        let started = start_server_span(Some(parent.as_bytes()), &mut SequentialIds(0), 0);
        assert!(!started.span.context.flags.is_sampled());
        assert!(started.traceparent.ends_with("-00"));
    }

    #[test]
    fn missing_or_malformed_parent_starts_a_sampled_root() {
        for (header, extraction) in [
            (None, Extraction::Missing),
            (
                Some(&b"00-xyz"[..]),
                Extraction::Malformed(TraceparentError::Length),
            ),
        ] {
            let started = start_server_span(header, &mut SequentialIds(0), 0);
            assert_eq!(started.extraction, extraction);
            assert_eq!(started.span.parent_span_id, None);
            assert_eq!(
                started.traceparent,
                "00-01010101010101010101010101010101-0202020202020202-03"
            );
        }
    }

    fn decide(started: &Started, sampling: &str, tracestate: Option<&[u8]>) -> (Sampler, Decision) {
        let json = format!(r#"{{"sampling":{sampling}}}"#);
        let config = crate::config::FilterConfig::parse(Some(json.as_bytes())).unwrap();
        let sampler = config.sampling.build().unwrap();
        let headers = crate::sampling::rules::tests::Request::new(&[(":path", "/api")]);
        let input = crate::sampling::SamplingInput {
            trace_id: started.span.context.trace_id,
            parent: parent_sampling(started),
            tracestate,
            headers: &headers,
        };
        let store = crate::sampling::rate_limit::tests::MemoryStore::default();
        let decision = sampler.decide(&input, 0, &store);
        (sampler, decision)
    }

    #[test]
    fn a_not_sampled_decision_clears_the_flag_upstream_and_adds_no_attribute() {
        let mut started = start_server_span(None, &mut SequentialIds(0), 0);
        assert_eq!(parent_sampling(&started), None);
        let (sampler, decision) = decide(&started, r#"{"root": "always_off"}"#, None);
        apply_sampling(&mut started, &decision, &sampler);
        assert_eq!(
            started.traceparent,
            "00-01010101010101010101010101010101-0202020202020202-02"
        );
        assert!(started.span.extra_attributes.is_empty());
        assert_eq!(upstream_tracestate(&started, &decision, None), None);
    }

    #[test]
    fn a_rule_decision_is_recorded_on_the_span() {
        let mut started = start_server_span(None, &mut SequentialIds(0), 0);
        let rules = r#"{"root": "always_off", "rules": [{"name": "api", "match": {"path": {"exact": "/api"}}, "sample": "always_on"}]}"#;
        let (sampler, decision) = decide(&started, rules, None);
        apply_sampling(&mut started, &decision, &sampler);
        assert!(started.traceparent.ends_with("-03"));
        assert_eq!(
            started.span.extra_attributes,
            vec![
                ("meshtrace.sampling.reason", "rule".to_owned()),
                ("meshtrace.sampling.rule", "api".to_owned())
            ]
        );
    }

    #[test]
    fn tracestate_keeps_other_members_only_for_a_valid_parent() {
        let incoming = Some(&b"vendor=1,ot=th:f"[..]);
        let parent = start_server_span(Some(PARENT.as_bytes()), &mut SequentialIds(0), 0);
        assert_eq!(
            parent_sampling(&parent),
            Some(ParentSampling {
                sampled: true,
                debug: false
            })
        );
        // A sampled parent whose `th:f` is inconsistent with its randomness (0xce929d0e0e4736).
        let (_, decision) = decide(&parent, "{}", incoming);
        assert_eq!(
            upstream_tracestate(&parent, &decision, incoming),
            Some(Some("vendor=1".to_owned()))
        );
        let root = start_server_span(None, &mut SequentialIds(0), 0);
        let (_, decision) = decide(&root, "{}", incoming);
        assert!(!decide(&parent, "{}", Some(b"ot=th:c")).1.ot_changed);
        assert_eq!(
            upstream_tracestate(&root, &decision, incoming),
            Some(Some("ot=th:0".to_owned()))
        );
    }

    #[test]
    fn status_parsing_is_total() {
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b""), None);
        assert_eq!(parse_status(b"99999"), None);
        assert_eq!(parse_status(b"\xff"), None);
    }
}
