use super::*;
use crate::config::PropagationConfig;
use proptest::prelude::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const OURS: &str = "1111111111111111";

fn config(extract: &[Format], inject: &[Format]) -> PropagationConfig {
    PropagationConfig {
        extract: extract.to_vec(),
        inject: inject.to_vec(),
        ..PropagationConfig::default()
    }
}

fn all_formats() -> PropagationConfig {
    config(
        &Format::ALL,
        &[
            Format::Tracecontext,
            Format::Baggage,
            Format::B3,
            Format::B3multi,
            Format::Jaeger,
        ],
    )
}

/// Our span as `request::start_server_span` would make it: the parent's trace, a new id.
fn our_span(extracted: &Extracted) -> SpanContext {
    let parent = extracted.parent.expect("a parent");
    SpanContext {
        span_id: SpanId::from_hex(OURS.as_bytes()).unwrap(),
        ..parent
    }
}

fn sets(writes: &[HeaderWrite]) -> Vec<(String, String)> {
    writes
        .iter()
        .filter_map(|w| match w {
            HeaderWrite::Set(n, v) => Some((n.to_string(), v.clone())),
            HeaderWrite::Remove(_) => None,
        })
        .collect()
}

fn removes(writes: &[HeaderWrite]) -> Vec<String> {
    writes
        .iter()
        .filter_map(|w| match w {
            HeaderWrite::Remove(n) => Some(n.to_string()),
            HeaderWrite::Set(..) => None,
        })
        .collect()
}

#[rustfmt::skip]
#[test]
fn every_format_extracts_the_same_parent() {
    let cases: Vec<(Format, Vec<(&str, String)>)> = vec![
        (Format::Tracecontext, vec![("traceparent", format!("00-{TRACE}-{PARENT}-01"))]),
        (Format::B3, vec![("b3", format!("{TRACE}-{PARENT}-1"))]),
        (Format::B3multi, vec![("X-B3-TraceId", TRACE.into()), ("X-B3-SpanId", PARENT.into()), ("X-B3-Sampled", "1".into())]),
        (Format::Jaeger, vec![("uber-trace-id", format!("{TRACE}:{PARENT}:0:1"))]),
        (Format::Gcp, vec![("x-cloud-trace-context", format!("{TRACE}/{};o=1", u64::from_str_radix(PARENT, 16).unwrap()))]),
        (Format::Xray, vec![("X-Amzn-Trace-Id", format!("Root=1-{}-{};Parent={PARENT};Sampled=1", &TRACE[..8], &TRACE[8..]))]),
    ];
    for (format, headers) in cases {
        let extracted = extract(&headers[..], &all_formats());
        let parent = extracted.parent.unwrap_or_else(|| panic!("{format:?}: {extracted:?}"));
        assert_eq!((parent.trace_id.to_hex(), parent.span_id.to_hex()), (TRACE.to_owned(), PARENT.to_owned()), "{format:?}");
        assert!(parent.flags.is_sampled(), "{format:?}");
        assert_eq!(extracted.format, Some(format));
        assert_eq!(extracted.sampling, Sampling::Accept);
        assert!(extracted.malformed.is_empty(), "{format:?}: {:?}", extracted.malformed);
    }
}

#[test]
fn formats_not_configured_are_not_read() {
    let headers = [("b3", format!("{TRACE}-{PARENT}-1"))];
    let extracted = extract(&headers[..], &config(&[Format::Tracecontext], &[]));
    assert_eq!(extracted.parent, None);
    let headers = [("b3", "garbage")];
    let extracted = extract(&headers[..], &config(&[Format::Tracecontext], &[]));
    assert!(
        extracted.malformed.is_empty(),
        "not configured, not counted"
    );
}

#[test]
fn the_first_valid_context_wins_and_every_malformed_one_is_counted() {
    let headers = [
        ("traceparent", "00-garbage".to_owned()),
        ("b3", format!("{TRACE}-{PARENT}-0")),
        ("uber-trace-id", "bad".to_owned()),
        ("x-b3-traceid", "x".to_owned()),
    ];
    let extracted = extract(&headers[..], &all_formats());
    assert_eq!(extracted.format, Some(Format::B3));
    assert_eq!(extracted.sampling, Sampling::Deny);
    assert_eq!(
        extracted.malformed,
        vec![
            Malformed {
                part: Part::Traceparent,
                reason: "length"
            },
            Malformed {
                part: Part::B3multi,
                reason: "trace_id"
            },
            Malformed {
                part: Part::Jaeger,
                reason: "fields"
            },
        ]
    );
}

#[test]
fn sampling_only_b3_is_a_hint_not_a_parent() {
    let headers = [
        ("b3", "0".to_owned()),
        ("uber-trace-id", format!("{TRACE}:{PARENT}:0:1")),
    ];
    let extracted = extract(&headers[..], &all_formats());
    assert_eq!(
        extracted.format,
        Some(Format::Jaeger),
        "a context beats a hint"
    );
    let headers = [("b3", "d")];
    let extracted = extract(&headers[..], &all_formats());
    assert_eq!(
        (extracted.parent, extracted.sampling),
        (None, Sampling::Debug)
    );
}

#[test]
fn empty_values_are_absent_and_ows_is_trimmed() {
    let headers = [
        ("traceparent", "  ".to_owned()),
        ("b3", format!(" \t{TRACE}-{PARENT}-1 ")),
    ];
    let extracted = extract(&headers[..], &all_formats());
    assert!(extracted.malformed.is_empty());
    assert_eq!(extracted.format, Some(Format::B3));
}

#[test]
fn tracestate_goes_with_a_traceparent_of_the_same_trace_only() {
    let tp = ("traceparent", format!("00-{TRACE}-{PARENT}-01"));
    let ts = |v: &str| ("tracestate", v.to_owned());
    let extracted = extract(
        &[tp.clone(), ts("a=1"), ts("b=2,Bad=3")][..],
        &all_formats(),
    );
    assert_eq!(extracted.tracestate.to_header().as_deref(), Some("a=1,b=2"));
    assert_eq!(
        extracted.malformed,
        vec![Malformed {
            part: Part::Tracestate,
            reason: "invalid_member"
        }]
    );
    // Invalid traceparent: tracestate is not parsed (W3C), and is removed on inject.
    let headers = [
        ("traceparent", "00-x".to_owned()),
        ts("a=1"),
        ("b3", format!("{TRACE}-{PARENT}-1")),
    ];
    let extracted = extract(&headers[..], &all_formats());
    assert!(extracted.tracestate.is_empty());
    let writes = inject(
        &our_span(&extracted),
        None,
        &extracted,
        &all_formats(),
        false,
    );
    assert!(removes(&writes).contains(&"tracestate".to_owned()));
    // A B3 parent of another trace wins over the traceparent: its tracestate is not ours.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let headers = [("b3", format!("{other}-{PARENT}-1")), tp.clone(), ts("a=1")];
    let extracted = extract(
        &headers[..],
        &config(&[Format::B3, Format::Tracecontext], &[]),
    );
    assert!(extracted.tracestate.is_empty());
    // Same trace: kept.
    let headers = [("b3", format!("{TRACE}-{PARENT}-1")), tp, ts("a=1")];
    let extracted = extract(
        &headers[..],
        &config(&[Format::B3, Format::Tracecontext], &[]),
    );
    assert_eq!(extracted.tracestate.to_header().as_deref(), Some("a=1"));
}

#[test]
fn baggage_merges_w3c_and_jaeger() {
    let headers = [
        ("baggage", "user=alice,shared=w3c".to_owned()),
        ("uberctx-shared", "jaeger".to_owned()),
        ("UberCtx-Tenant", "a%20b".to_owned()),
        ("uberctx-", "no key".to_owned()),
    ];
    let extracted = extract(&headers[..], &all_formats());
    let got: Vec<_> = extracted
        .baggage
        .iter()
        .map(|m| (m.key().to_owned(), m.value()))
        .collect();
    assert_eq!(
        got,
        [("user", "alice"), ("shared", "w3c"), ("tenant", "a b")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(
        extracted.malformed,
        vec![Malformed {
            part: Part::JaegerBaggage,
            reason: "invalid_member"
        }]
    );
    let only_w3c = extract(&headers[..], &config(&[Format::Baggage], &[]));
    assert_eq!(only_w3c.baggage.len(), 2);
}

#[test]
fn every_injected_format_describes_our_span() {
    let headers = [
        ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
        ("tracestate", "vendor=x".to_owned()),
        ("baggage", "user=alice,Mixed=1".to_owned()),
    ];
    let extracted = extract(&headers[..], &all_formats());
    let span = our_span(&extracted);
    let parent = SpanId::from_hex(PARENT.as_bytes());
    let writes = inject(&span, parent, &extracted, &all_formats(), false);
    let got = sets(&writes);
    let expected: Vec<(String, String)> = [
        ("traceparent", format!("00-{TRACE}-{OURS}-01")),
        ("tracestate", "vendor=x".to_owned()),
        ("baggage", "user=alice,Mixed=1".to_owned()),
        ("b3", format!("{TRACE}-{OURS}-1")),
        ("x-b3-traceid", TRACE.to_owned()),
        ("x-b3-spanid", OURS.to_owned()),
        ("x-b3-sampled", "1".to_owned()),
        ("uber-trace-id", format!("{TRACE}:{OURS}:{PARENT}:01")),
        ("uberctx-user", "alice".to_owned()), // `Mixed` is not a lower-case header name
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect();
    assert_eq!(got, expected);
    // Re-extracting what we wrote, every format gives our span.
    let upstream: Vec<(String, String)> = got;
    for format in [
        Format::Tracecontext,
        Format::B3,
        Format::B3multi,
        Format::Jaeger,
    ] {
        let again = extract(&upstream[..], &config(&[format], &[]));
        assert_eq!(
            again.parent.map(|p| (p.trace_id, p.span_id)),
            Some((span.trace_id, span.span_id)),
            "{format:?}"
        );
        assert_eq!(again.sampling, Sampling::Accept, "{format:?}");
    }
}

#[test]
fn debug_is_preserved_in_every_format() {
    let headers = [("b3", format!("{TRACE}-{PARENT}-d"))];
    let extracted = extract(&headers[..], &all_formats());
    let mut span = our_span(&extracted);
    assert!(span.debug);
    span.flags = span.flags.with_sampled(true);
    let writes = inject(&span, None, &extracted, &all_formats(), false);
    let upstream = sets(&writes);
    assert!(upstream.contains(&("x-b3-flags".to_owned(), "1".to_owned())));
    assert!(
        !upstream.iter().any(|(n, _)| n == "x-b3-sampled"),
        "debug implies accept"
    );
    for format in [Format::B3, Format::B3multi, Format::Jaeger] {
        let again = extract(&upstream[..], &config(&[format], &[]));
        assert_eq!(again.sampling, Sampling::Debug, "{format:?}");
    }
}

#[test]
fn stale_b3_is_never_passed_on_when_b3_is_injected() {
    let headers = [
        ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
        ("b3", format!("{TRACE}-{PARENT}-1")),
        ("x-b3-traceid", TRACE.to_owned()),
        ("x-b3-spanid", PARENT.to_owned()),
        ("x-b3-parentspanid", "b7ad6b7169203331".to_owned()),
        ("x-b3-sampled", "1".to_owned()),
    ];
    let extracted = extract(&headers[..], &all_formats());
    let span = our_span(&extracted);
    // Only multi injected: the stale single header (which readers prefer) goes, and so does
    // the parent span id we never write.
    let writes = inject(
        &span,
        None,
        &extracted,
        &config(&Format::ALL, &[Format::B3multi]),
        false,
    );
    assert_eq!(removes(&writes), ["b3", "x-b3-parentspanid"]);
    // Only single injected: it is rewritten and the multi headers go.
    let writes = inject(
        &span,
        None,
        &extracted,
        &config(&Format::ALL, &[Format::B3]),
        false,
    );
    assert_eq!(
        sets(&writes),
        [("b3".to_owned(), format!("{TRACE}-{OURS}-1"))]
    );
    assert_eq!(
        removes(&writes),
        b3::MULTI_HEADERS
            .map(str::to_owned)
            .to_vec()
            .into_iter()
            .filter(|n| n != "x-b3-flags")
            .collect::<Vec<_>>()
    );
    // Neither injected, remove_uninjected off: B3 passes unchanged.
    let writes = inject(
        &span,
        None,
        &extracted,
        &config(&Format::ALL, &[Format::Tracecontext]),
        false,
    );
    assert!(removes(&writes).is_empty());
}

#[test]
fn remove_uninjected_strips_other_formats() {
    let headers = [
        ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
        ("uber-trace-id", format!("{TRACE}:{PARENT}:0:1")),
        ("uberctx-k", "v".to_owned()),
        (
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8".to_owned(),
        ),
        ("baggage", "k=v".to_owned()),
    ];
    let mut cfg = config(&Format::ALL, &[Format::Tracecontext]);
    cfg.remove_uninjected = true;
    let extracted = extract(&headers[..], &cfg);
    let writes = inject(&our_span(&extracted), None, &extracted, &cfg, false);
    assert_eq!(
        removes(&writes),
        ["baggage", "uber-trace-id", "uberctx-k", "x-amzn-trace-id"]
    );
    assert_eq!(sets(&writes).len(), 1);
}

#[test]
fn stop_propagation_strips_every_trace_header() {
    let headers = [
        ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
        ("tracestate", "a=1".to_owned()),
        ("baggage", "k=v".to_owned()),
        ("b3", "1".to_owned()),
        ("x-b3-sampled", "1".to_owned()),
        ("uberctx-k", "v".to_owned()),
        ("x-cloud-trace-context", "x".to_owned()),
        ("content-type", "text/plain".to_owned()),
    ];
    let extracted = extract(&headers[..], &all_formats());
    let writes = inject(
        &our_span(&extracted),
        None,
        &extracted,
        &all_formats(),
        true,
    );
    assert!(sets(&writes).is_empty());
    assert_eq!(
        removes(&writes),
        [
            "traceparent",
            "tracestate",
            "baggage",
            "b3",
            "x-b3-sampled",
            "x-cloud-trace-context",
            "uberctx-k"
        ]
    );
}

#[test]
fn helpers() {
    assert_eq!(trim_ows(b" \t a b \t"), b"a b");
    assert_eq!(trim_ows(b"   "), b"");
    assert_eq!(trim_ows(b""), b"");
    assert!(is_lower_hex(b"09af") && !is_lower_hex(b"0A"));
    assert!(is_header_name("user-id") && !is_header_name("User") && !is_header_name("a b"));
}

proptest! {
    #[test]
    fn any_headers_never_panic_and_writes_stay_bounded(
        headers in proptest::collection::vec(
            (prop::sample::select(KNOWN.to_vec().into_iter().chain(["uberctx-a", "UBERCTX-B", "other"]).collect::<Vec<_>>()),
             proptest::collection::vec(any::<u8>(), 0..120)),
            0..12),
    ) {
        let headers: Vec<(String, Vec<u8>)> = headers.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
        let extracted = extract(&headers, &all_formats());
        let span = SpanContext {
            trace_id: TraceId::from_hex(TRACE.as_bytes()).unwrap(),
            span_id: SpanId::from_hex(OURS.as_bytes()).unwrap(),
            flags: TraceFlags::from_wire(1),
            debug: extracted.sampling.is_debug(),
        };
        let writes = inject(&span, extracted.parent.map(|p| p.span_id), &extracted, &all_formats(), false);
        // Every written value is a valid header value (visible ASCII and spaces).
        for (_, value) in sets(&writes) {
            prop_assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{value:?}");
        }
        // What we wrote extracts to our span in each format.
        let upstream = sets(&writes);
        for format in [Format::Tracecontext, Format::B3, Format::B3multi, Format::Jaeger] {
            let again = extract(&upstream, &config(&[format], &[]));
            prop_assert_eq!(again.parent.map(|p| p.span_id), Some(span.span_id));
            prop_assert!(again.malformed.is_empty());
        }
    }
}
