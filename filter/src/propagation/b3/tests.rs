use super::*;
use crate::trace::TraceFlags;
use proptest::prelude::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE64: &str = "a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const PARENT: &str = "b7ad6b7169203331";

type Ids = Option<(TraceId, SpanId)>;

fn ids(trace: &str, span: &str) -> Ids {
    Some((
        TraceId::from_hex(trace.as_bytes())?,
        SpanId::from_hex(span.as_bytes())?,
    ))
}

#[rustfmt::skip]
#[test]
fn valid_single_headers() {
    use Sampling::*;
    let cases: Vec<(String, Ids, Sampling)> = vec![
        (format!("{TRACE}-{SPAN}"), ids(TRACE, SPAN), Deferred),
        (format!("{TRACE}-{SPAN}-1"), ids(TRACE, SPAN), Accept),
        (format!("{TRACE}-{SPAN}-0"), ids(TRACE, SPAN), Deny),
        (format!("{TRACE}-{SPAN}-d"), ids(TRACE, SPAN), Debug),
        (format!("{TRACE}-{SPAN}-1-{PARENT}"), ids(TRACE, SPAN), Accept),
        (format!("{TRACE64}-{SPAN}-1"), ids(TRACE64, SPAN), Accept),
        (format!("{}-{SPAN}-1", TRACE.to_uppercase()), ids(TRACE, SPAN), Accept),
        ("0".into(), None, Deny),
        ("1".into(), None, Accept),
        ("d".into(), None, Debug),
    ];
    for (value, expected_ids, sampling) in cases {
        let parsed = parse_single(value.as_bytes());
        assert_eq!(parsed, Ok(B3Context { ids: expected_ids, sampling, ignored: None }), "{value}");
    }
    // A 64-bit trace id is left-padded.
    let (trace, _) = parse_single(format!("{TRACE64}-{SPAN}").as_bytes()).unwrap().ids.unwrap();
    assert_eq!(trace.to_hex(), format!("{}{TRACE64}", "0".repeat(16)));
}

#[rustfmt::skip]
#[test]
fn invalid_single_headers_carry_their_reason() {
    use B3Error::*;
    let cases: Vec<(String, B3Error)> = vec![
        ("true".into(), Sampling),                                   // sampling-only, not 0/1/d
        ("2".into(), Sampling),
        (format!("{TRACE}-{SPAN}-"), Sampling),                       // empty sampling state
        (format!("{TRACE}-{SPAN}-true"), Sampling),                   // legacy value: multi only
        (format!("{TRACE}-{SPAN}-x"), Sampling),
        (format!("{TRACE}-{SPAN}-1-"), ParentSpanId),                 // empty parent
        (format!("{TRACE}-{SPAN}-1-{}", "0".repeat(16)), ParentSpanId),
        (format!("{TRACE}-{SPAN}-1-abc"), ParentSpanId),
        (format!("{TRACE}-{SPAN}-1-{PARENT}-x"), TooLong),
        (format!("{TRACE64}-{SPAN}-1-{PARENT}-x"), Fields),
        (format!("{}-{SPAN}-1", "0".repeat(32)), TraceId),             // zero trace id
        (format!("{}-{SPAN}", &TRACE[..31]), TraceId),                  // 31 digits
        (format!("{}-{SPAN}", &TRACE[..20]), TraceId),                  // neither 16 nor 32
        (format!("g{}-{SPAN}", &TRACE[1..]), TraceId),
        (format!("-{SPAN}"), TraceId),
        (format!("{TRACE}-{}", "0".repeat(16)), SpanId),
        (format!("{TRACE}-{}", &SPAN[..15]), SpanId),
        (format!("{TRACE}-"), SpanId),
        (format!("{TRACE}-{SPAN}-1-{PARENT}{}", "0".repeat(60)), TooLong),
    ];
    for (value, reason) in cases {
        assert_eq!(parse_single(value.as_bytes()), Err(reason), "{value}");
    }
}

fn multi<'a>(
    trace: Option<&'a str>,
    span: Option<&'a str>,
    sampled: Option<&'a str>,
    flags: Option<&'a str>,
    parent: Option<&'a str>,
) -> MultiHeaders<'a> {
    MultiHeaders {
        trace_id: trace.map(str::as_bytes),
        span_id: span.map(str::as_bytes),
        parent_span_id: parent.map(str::as_bytes),
        sampled: sampled.map(str::as_bytes),
        flags: flags.map(str::as_bytes),
    }
}

#[rustfmt::skip]
#[test]
fn multi_headers_table() {
    use Sampling::*;
    let t = Some(TRACE);
    let s = Some(SPAN);
    let ok = |sampling, ignored| Ok(Some(B3Context { ids: ids(TRACE, SPAN), sampling, ignored }));
    let cases = vec![
        (multi(t, s, None, None, None), ok(Deferred, None)),
        (multi(t, s, Some("1"), None, None), ok(Accept, None)),
        (multi(t, s, Some("0"), None, None), ok(Deny, None)),
        (multi(t, s, Some("true"), None, None), ok(Accept, None)),
        (multi(t, s, Some("False"), None, None), ok(Deny, None)),
        (multi(t, s, Some("0"), Some("1"), None), ok(Debug, None)),
        (multi(t, s, None, Some("1"), Some(PARENT)), ok(Debug, None)),
        (multi(t, s, Some("1"), Some("0"), None), ok(Accept, None)),
        // Auxiliary headers that are bad are ignored and reported.
        (multi(t, s, Some("yes"), None, None), ok(Deferred, Some(B3Error::Sampling))),
        (multi(t, s, Some("1"), Some("2"), None), ok(Accept, Some(B3Error::Flags))),
        (multi(t, s, Some("1"), None, Some("xyz")), ok(Accept, Some(B3Error::ParentSpanId))),
        // Sampling only.
        (multi(None, None, Some("0"), None, None), Ok(Some(B3Context { ids: None, sampling: Deny, ignored: None }))),
        (multi(None, None, None, Some("1"), None), Ok(Some(B3Context { ids: None, sampling: Debug, ignored: None }))),
        (multi(None, None, None, None, None), Ok(None)),
        // Ids decide validity.
        (multi(t, None, Some("1"), None, None), Err(B3Error::SpanId)),
        (multi(None, s, Some("1"), None, None), Err(B3Error::TraceId)),
        (multi(Some("xyz"), s, None, None, None), Err(B3Error::TraceId)),
        (multi(t, Some(&TRACE[..16]), None, None, None), ok(Deferred, None).map(|o| o.map(|c| B3Context { ids: ids(TRACE, &TRACE[..16]), ..c }))),
        (multi(t, Some("0000000000000000"), None, None, None), Err(B3Error::SpanId)),
    ];
    for (headers, expected) in cases {
        assert_eq!(parse_multi(&headers), expected, "{headers:?}");
    }
}

fn context(sampled: bool, debug: bool) -> SpanContext {
    SpanContext {
        trace_id: TraceId::from_hex(TRACE.as_bytes()).unwrap(),
        span_id: SpanId::from_hex(SPAN.as_bytes()).unwrap(),
        flags: TraceFlags::from_wire(u8::from(sampled)),
        debug,
    }
}

#[test]
fn inject_writes_our_span_and_decision() {
    assert_eq!(
        format_single(&context(true, false)),
        format!("{TRACE}-{SPAN}-1")
    );
    assert_eq!(
        format_single(&context(false, false)),
        format!("{TRACE}-{SPAN}-0")
    );
    assert_eq!(
        format_single(&context(true, true)),
        format!("{TRACE}-{SPAN}-d")
    );
    let mut short = context(true, false);
    short.trace_id = TraceId::from_hex(TRACE64.as_bytes()).unwrap();
    assert_eq!(format_single(&short), format!("{TRACE64}-{SPAN}-1"));
    assert_eq!(
        format_multi(&context(true, true)),
        [
            (X_B3_TRACE_ID, TRACE.to_owned()),
            (X_B3_SPAN_ID, SPAN.to_owned()),
            (X_B3_FLAGS, "1".to_owned())
        ]
    );
    assert_eq!(
        format_multi(&context(false, false))[2],
        (X_B3_SAMPLED, "0".to_owned())
    );
}

fn arb_context() -> impl Strategy<Value = SpanContext> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 8]>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_filter_map("non-zero ids", |(trace, span, sampled, debug, short)| {
            let trace = if short {
                [[0; 8], *trace.first_chunk::<8>()?].concat()
            } else {
                trace.to_vec()
            };
            Some(SpanContext {
                trace_id: TraceId::from_bytes(trace.try_into().ok()?)?,
                span_id: SpanId::from_bytes(span)?,
                flags: TraceFlags::from_wire(u8::from(sampled || debug)),
                debug,
            })
        })
}

proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = parse_single(&bytes);
        let headers = MultiHeaders { trace_id: Some(&bytes), span_id: Some(&bytes), parent_span_id: Some(&bytes), sampled: Some(&bytes), flags: Some(&bytes) };
        let _ = parse_multi(&headers);
    }

    #[test]
    fn single_and_multi_round_trip(context in arb_context()) {
        let single = parse_single(format_single(&context).as_bytes()).unwrap();
        let expected = if context.debug { Sampling::Debug } else if context.flags.is_sampled() { Sampling::Accept } else { Sampling::Deny };
        prop_assert_eq!(single, B3Context { ids: Some((context.trace_id, context.span_id)), sampling: expected, ignored: None });
        let values = format_multi(&context);
        let get = |name: &str| values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes());
        let headers = MultiHeaders { trace_id: get(X_B3_TRACE_ID), span_id: get(X_B3_SPAN_ID), parent_span_id: None, sampled: get(X_B3_SAMPLED), flags: get(X_B3_FLAGS) };
        prop_assert_eq!(parse_multi(&headers).unwrap(), Some(single));
        // format(parse(x)) == x for what we write.
        let value = format_single(&context);
        let parsed = parse_single(value.as_bytes()).unwrap();
        let (trace_id, span_id) = parsed.ids.unwrap();
        let again = SpanContext { trace_id, span_id, flags: TraceFlags::from_wire(u8::from(parsed.sampling.decision() == Some(true))), debug: parsed.sampling.is_debug() };
        prop_assert_eq!(format_single(&again), value);
    }
}
