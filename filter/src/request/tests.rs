//! The whole request pipeline: extraction feeding the sampler, the decision reaching every
//! injected format, and the `ot` member written through the propagation `tracestate`.

use super::*;
use crate::config::FilterConfig;
use crate::propagation::{Format, Malformed, Part};
use crate::sampling::Reason;
use crate::sampling::rate_limit::tests::MemoryStore;
use crate::trace::{SpanId, TraceId};
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
/// Our span id for a request with a parent (the first id drawn).
const OURS: &str = "0101010101010101";
/// The trace and span of a new trace (the first two ids drawn).
const NEW_TRACE: &str = "01010101010101010101010101010101";
const NEW_SPAN: &str = "0202020202020202";
/// Every injectable format.
const INJECT_ALL: &str = r#"{"inject": ["tracecontext", "baggage", "b3", "b3multi", "jaeger"]}"#;

/// A configuration from its `propagation` and `sampling` sections (`{}` for defaults).
fn config(propagation: &str, sampling: &str) -> FilterConfig {
    let json = format!(r#"{{"propagation": {propagation}, "sampling": {sampling}}}"#);
    FilterConfig::parse(Some(json.as_bytes())).unwrap()
}

fn handle_with(headers: &[(&str, &str)], config: &FilterConfig) -> Handled {
    let sampler = config.sampling.build().unwrap();
    let mut request = vec![(":method", "GET"), (":path", "/api")];
    request.extend_from_slice(headers);
    let store = MemoryStore::default();
    handle(
        &request[..],
        &config.propagation,
        &sampler,
        &store,
        &mut SequentialIds(0),
        5,
    )
}

fn handle_default(headers: &[(&str, &str)]) -> Handled {
    handle_with(headers, &FilterConfig::default())
}

/// The value `handled` sets on header `name` upstream, if any.
fn written<'a>(handled: &'a Handled, name: &str) -> Option<&'a str> {
    handled.writes.iter().find_map(|w| match w {
        HeaderWrite::Set(n, v) if n == name => Some(v.as_str()),
        _ => None,
    })
}

/// The upstream request: the writes applied to `incoming`.
fn upstream(incoming: &[(&str, &str)], handled: &Handled) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = incoming
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
        .collect();
    for write in &handled.writes {
        let (HeaderWrite::Set(name, _) | HeaderWrite::Remove(name)) = write;
        headers.retain(|(n, _)| n != name);
        if let HeaderWrite::Set(name, value) = write {
            headers.push((name.to_string(), value.clone()));
        }
    }
    headers
}

/// What each injected format says about sampling on the upstream request.
fn sampling_by_format(incoming: &[(&str, &str)], handled: &Handled) -> Vec<(Format, Sampling)> {
    let upstream = upstream(incoming, handled);
    [
        Format::Tracecontext,
        Format::B3,
        Format::B3multi,
        Format::Jaeger,
    ]
    .into_iter()
    .map(|format| {
        let only = PropagationConfig {
            extract: vec![format],
            ..PropagationConfig::default()
        };
        let again = propagation::extract(&upstream[..], &only);
        assert_eq!(
            again.parent.map(|p| p.span_id),
            Some(handled.span.context.span_id),
            "{format:?} names our span"
        );
        (format, again.sampling)
    })
    .collect()
}

#[test]
fn valid_parent_keeps_trace_and_flags_with_our_span_as_parent() {
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let handled = handle_default(&[("traceparent", &traceparent)]);
    assert_eq!(handled.extracted.format, Some(Format::Tracecontext));
    assert_eq!(
        written(&handled, "traceparent"),
        Some(format!("00-{TRACE}-{OURS}-01").as_str())
    );
    let span = &handled.span;
    assert_eq!(span.context.flags.to_wire(), 0x01);
    assert_eq!(
        span.parent_span_id.map(SpanId::to_hex).as_deref(),
        Some(PARENT)
    );
    assert_eq!(span.start_unix_nanos, 5);
    // The request summary is the content module's, for sampled spans only.
    assert_eq!(span.request, Default::default());
    assert_eq!(handled.decision.reason, Reason::ParentSampled);
}

#[test]
fn unsampled_parent_stays_unsampled_and_random_flag_is_kept() {
    let handled = handle_default(&[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))]);
    assert!(!handled.span.context.flags.is_sampled());
    assert!(written(&handled, "traceparent").unwrap().ends_with("-00"));
    let handled = handle_default(&[("traceparent", &format!("00-{TRACE}-{PARENT}-03"))]);
    assert_eq!(handled.span.context.flags.to_wire(), 0x03);
}

#[test]
fn missing_or_malformed_parent_starts_a_sampled_root() {
    let length = Malformed {
        part: Part::Traceparent,
        reason: "length",
    };
    for (headers, malformed) in [
        (&[][..], vec![]),
        (&[("traceparent", "00-xyz")][..], vec![length]),
    ] {
        let handled = handle_default(headers);
        assert_eq!(handled.extracted.malformed, malformed);
        assert_eq!(handled.span.parent_span_id, None);
        assert_eq!(handled.span.context.trace_id.to_hex(), NEW_TRACE);
        assert_eq!(
            written(&handled, "traceparent"),
            Some(format!("00-{NEW_TRACE}-{NEW_SPAN}-03").as_str())
        );
        assert!(!handled.span.context.debug);
        assert_eq!(handled.decision.reason, Reason::Root);
    }
}

#[test]
fn debug_forces_sampled_and_is_kept() {
    let deny_all = config(
        "{}",
        r#"{"root": {"ratio": 0}, "remote_parent_sampled": "always_off"}"#,
    );
    for headers in [
        [("b3", format!("{TRACE}-{PARENT}-d"))],
        [("uber-trace-id", format!("{TRACE}:{PARENT}:0:2"))],
        // A sampling-only debug header forces a new trace.
        [("b3", "d".to_owned())],
    ] {
        let headers = [(headers[0].0, headers[0].1.as_str())];
        let handled = handle_with(&headers, &deny_all);
        let context = handled.span.context;
        assert!(context.debug && context.flags.is_sampled(), "{headers:?}");
        assert_eq!(handled.decision.reason, Reason::Debug, "{headers:?}");
        assert_eq!(
            handled.span.extra_attributes,
            vec![("meshtrace.sampling.reason", "debug".to_owned())]
        );
        assert_eq!(
            handled.span.parent_span_id.is_none(),
            headers[0].1 == "d",
            "{headers:?}"
        );
    }
}

#[test]
fn debug_reaches_every_injected_format_even_at_ratio_0() {
    let deny_all = config(
        INJECT_ALL,
        r#"{"root": {"ratio": 0}, "remote_parent_sampled": {"ratio": 0}}"#,
    );
    let b3 = format!("{TRACE}-{PARENT}-d");
    let jaeger = format!("{TRACE}:{PARENT}:0:2");
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("X-B3-TraceId", TRACE),
            ("X-B3-SpanId", PARENT),
            ("X-B3-Flags", "1"),
        ],
        &[("uber-trace-id", &jaeger)],
        &[("b3", &b3)],
    ];
    for incoming in cases {
        let handled = handle_with(incoming, &deny_all);
        assert_eq!(
            (handled.decision.sampled, handled.decision.reason),
            (true, Reason::Debug)
        );
        assert!(written(&handled, "traceparent").unwrap().ends_with("-01"));
        assert!(written(&handled, "b3").unwrap().ends_with("-d"));
        assert_eq!(written(&handled, "x-b3-flags"), Some("1"));
        assert_eq!(
            written(&handled, "x-b3-sampled"),
            None,
            "debug implies accept"
        );
        assert!(written(&handled, "uber-trace-id").unwrap().ends_with(":03"));
        for (format, sampling) in sampling_by_format(incoming, &handled) {
            let want = if format == Format::Tracecontext {
                Sampling::Accept // W3C has no debug flag
            } else {
                Sampling::Debug
            };
            assert_eq!(sampling, want, "{format:?} for {incoming:?}");
        }
    }
}

#[test]
fn an_unhonoured_debug_flag_is_dropped_with_the_sample() {
    let strict = config(
        INJECT_ALL,
        r#"{"honor_debug_flag": false, "remote_parent_sampled": {"ratio": 0}}"#,
    );
    let incoming = [("b3", format!("{TRACE}-{PARENT}-d"))];
    let incoming = [("b3", incoming[0].1.as_str())];
    let handled = handle_with(&incoming, &strict);
    assert_eq!(
        (handled.decision.sampled, handled.decision.reason),
        (false, Reason::ParentSampled)
    );
    assert!(!handled.span.context.debug);
    for (format, sampling) in sampling_by_format(&incoming, &handled) {
        assert_eq!(sampling, Sampling::Deny, "{format:?}");
    }
}

#[test]
fn b3_0_is_not_sampled_in_every_injected_format() {
    let all = config(INJECT_ALL, "{}");
    let incoming = [("b3", "0")];
    let handled = handle_with(&incoming, &all);
    assert_eq!(
        (handled.decision.sampled, handled.decision.reason),
        (false, Reason::ParentNotSampled)
    );
    assert_eq!(handled.span.parent_span_id, None);
    assert!(handled.span.extra_attributes.is_empty());
    assert_eq!(
        written(&handled, "traceparent"),
        Some(format!("00-{NEW_TRACE}-{NEW_SPAN}-02").as_str())
    );
    assert_eq!(
        written(&handled, "b3"),
        Some(format!("{NEW_TRACE}-{NEW_SPAN}-0").as_str())
    );
    assert_eq!(written(&handled, "x-b3-sampled"), Some("0"));
    assert!(written(&handled, "uber-trace-id").unwrap().ends_with(":00"));
    for (format, sampling) in sampling_by_format(&incoming, &handled) {
        assert_eq!(sampling, Sampling::Deny, "{format:?}");
    }
}

#[test]
fn deferred_is_decided_by_the_root_policy_and_deny_is_respected() {
    // Default sampler: `root` is always on, so a deferred parent is sampled.
    let deferred = format!("{TRACE}-{PARENT}");
    let handled = handle_default(&[("b3", &deferred)]);
    assert!(handled.span.context.flags.is_sampled());
    assert_eq!(handled.decision.reason, Reason::ParentDeferred);
    // The root policy decides, not the parent-sampled slot, and the trace id is kept.
    let root_off = config("{}", r#"{"root": "always_off"}"#);
    let handled = handle_with(&[("b3", &deferred)], &root_off);
    assert!(!handled.span.context.flags.is_sampled());
    assert_eq!(handled.span.context.trace_id.to_hex(), TRACE);
    assert_eq!(handled.decision.reason, Reason::ParentDeferred);
    let handled = handle_default(&[("b3", "0")]);
    assert!(!handled.span.context.flags.is_sampled() && handled.span.parent_span_id.is_none());
    let handled = handle_default(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", PARENT),
        ("x-b3-sampled", "0"),
    ]);
    assert!(!handled.span.context.flags.is_sampled());
    assert_eq!(handled.span.context.trace_id.to_hex(), TRACE);
    // B3 and Jaeger parents do not claim a random trace id.
    assert!(!handled.span.context.flags.is_random());
}

#[test]
fn extract_order_decides_between_formats() {
    let other = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let b3 = format!("{other}-b7ad6b7169203331-1");
    let headers = [("traceparent", traceparent.as_str()), ("b3", b3.as_str())];
    let handled = handle_default(&headers);
    assert_eq!(handled.extracted.format, Some(Format::Tracecontext));
    let b3_first = config(r#"{"extract": ["b3", "tracecontext", "baggage"]}"#, "{}");
    let handled = handle_with(&headers, &b3_first);
    assert_eq!(handled.span.context.trace_id.to_hex(), other);
}

#[test]
fn a_not_sampled_decision_clears_the_flag_upstream_and_adds_no_attribute() {
    let handled = handle_with(&[], &config("{}", r#"{"root": "always_off"}"#));
    assert_eq!(
        sampling_input(&handled.span, &handled.extracted, &[("a", "b")][..]).parent,
        None
    );
    assert_eq!(
        written(&handled, "traceparent"),
        Some(format!("00-{NEW_TRACE}-{NEW_SPAN}-02").as_str())
    );
    assert!(handled.span.extra_attributes.is_empty());
    assert!(!handled.decision.ot_changed);
    assert_eq!(written(&handled, "tracestate"), None);
}

#[test]
fn a_rule_decision_is_recorded_on_the_span() {
    let rules = r#"{"root": "always_off", "rules": [{"name": "api", "match": {"path": {"exact": "/api"}}, "sample": "always_on"}]}"#;
    let handled = handle_with(&[], &config("{}", rules));
    assert!(written(&handled, "traceparent").unwrap().ends_with("-03"));
    assert_eq!(
        handled.span.extra_attributes,
        vec![
            ("meshtrace.sampling.reason", "rule".to_owned()),
            ("meshtrace.sampling.rule", "api".to_owned())
        ]
    );
}

#[test]
fn tracestate_keeps_other_members_only_for_a_valid_parent() {
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    // A sampled parent whose `th:f` is inconsistent with its randomness (0xce929d0e0e4736).
    let parent = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "vendor=1,ot=th:f"),
    ];
    let handled = handle_default(&parent);
    let input = sampling_input(&handled.span, &handled.extracted, &parent[..]);
    assert_eq!(
        input.parent,
        Some(ParentSampling {
            sampled: Some(true),
            debug: false
        })
    );
    assert_eq!(written(&handled, "tracestate"), Some("vendor=1"));
    // Without a valid traceparent the incoming tracestate belongs to nothing.
    let handled = handle_default(&[("tracestate", "vendor=1,ot=th:f")]);
    assert_eq!(written(&handled, "tracestate"), Some("ot=th:0"));
    // A consistent `th:c` is kept where it was.
    let handled = handle_default(&[
        ("traceparent", traceparent.as_str()),
        ("tracestate", "vendor=1,ot=th:c"),
    ]);
    assert!(!handled.decision.ot_changed);
    assert_eq!(written(&handled, "tracestate"), Some("vendor=1,ot=th:c"));
}

#[test]
fn an_incoming_threshold_is_honoured_and_written_back_through_the_tracestate() {
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let tracestate = "vendor=1,ot=th:c;rv:e0000000000000";
    let incoming = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", tracestate),
    ];
    // ParentBased follows the sampled parent and keeps its (consistent) threshold.
    let consistent = config("{}", r#"{"algorithm": "consistent_probability"}"#);
    let handled = handle_with(&incoming, &consistent);
    assert_eq!(written(&handled, "tracestate"), Some(tracestate));
    // A ratio slot decides on `rv` (not the trace id) and writes its own threshold first.
    let half = config(
        "{}",
        r#"{"algorithm": "consistent_probability", "remote_parent_sampled": {"ratio": 0.5}}"#,
    );
    let handled = handle_with(&incoming, &half);
    assert!(handled.decision.sampled);
    assert_eq!(
        written(&handled, "tracestate"),
        Some("ot=th:8;rv:e0000000000000,vendor=1")
    );
}

#[test]
fn our_member_respects_the_tracestate_limits() {
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let full: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
    let full = full.join(",");
    let incoming = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", full.as_str()),
    ];
    // Following the parent adds nothing: the 32 members pass unchanged.
    let follow = handle_default(&incoming);
    assert!(!follow.decision.ot_changed);
    assert_eq!(written(&follow, "tracestate"), Some(full.as_str()));
    // An independent decision writes `th:0`: ours goes first, the right-most member goes.
    let always = config("{}", r#"{"remote_parent_sampled": {"ratio": 1}}"#);
    let handled = handle_with(&incoming, &always);
    let members: Vec<&str> = written(&handled, "tracestate")
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(members.len(), 32);
    assert_eq!(members.first(), Some(&"ot=th:0"));
    assert_eq!(members.last(), Some(&"k30=v"));
}

#[test]
fn status_parsing_is_total() {
    assert_eq!(parse_status(b"200"), Some(200));
    assert_eq!(parse_status(b""), None);
    assert_eq!(parse_status(b"99999"), None);
    assert_eq!(parse_status(b"\xff"), None);
}
