use super::*;
use crate::trace::TraceFlags;
use proptest::prelude::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const PARENT: &str = "b7ad6b7169203331";

fn ctx(trace: &str, span: &str, parent: Option<&str>, sampling: Sampling) -> JaegerContext {
    JaegerContext {
        trace_id: TraceId::from_hex(trace.as_bytes()).unwrap(),
        span_id: SpanId::from_hex(span.as_bytes()).unwrap(),
        parent_span_id: parent.map(|p| SpanId::from_hex(p.as_bytes()).unwrap()),
        sampling,
    }
}

#[rustfmt::skip]
#[test]
fn valid_values() {
    use Sampling::*;
    let cases = vec![
        (format!("{TRACE}:{SPAN}:0:1"), ctx(TRACE, SPAN, None, Accept)),
        (format!("{TRACE}:{SPAN}:{PARENT}:01"), ctx(TRACE, SPAN, Some(PARENT), Accept)),
        (format!("{TRACE}:{SPAN}:0:0"), ctx(TRACE, SPAN, None, Deny)),
        (format!("{TRACE}:{SPAN}:0:3"), ctx(TRACE, SPAN, None, Debug)),
        (format!("{TRACE}:{SPAN}:0:2"), ctx(TRACE, SPAN, None, Debug)), // debug forces sampled
        (format!("{TRACE}:{SPAN}:0:05"), ctx(TRACE, SPAN, None, Accept)), // firehose bit ignored
        (format!("{TRACE}:{SPAN}:0000:ff"), ctx(TRACE, SPAN, None, Debug)),
        ("1f:a:0:1".to_owned(), ctx("1f", "a", None, Accept)),        // leading zeros optional
        (format!("{}:{SPAN}:0:1", TRACE.to_uppercase()), ctx(TRACE, SPAN, None, Accept)),
        (format!("{TRACE}%3A{SPAN}%3A0%3A1"), ctx(TRACE, SPAN, None, Accept)), // URL-encoded
        (format!("{TRACE}%3a{SPAN}%3a{PARENT}%3a1"), ctx(TRACE, SPAN, Some(PARENT), Accept)),
    ];
    for (value, expected) in cases {
        assert_eq!(parse_uber_trace_id(value.as_bytes()), Ok(expected), "{value}");
    }
}

#[rustfmt::skip]
#[test]
fn invalid_values_carry_their_reason() {
    use JaegerError::*;
    let cases: Vec<(String, JaegerError)> = vec![
        (format!("{TRACE}:{SPAN}:0"), Fields),
        (format!("{TRACE}:{SPAN}:0:1:x"), Fields),
        (format!("{TRACE}%3A{SPAN}%3A0"), Fields),
        ("".to_owned(), Fields),
        (format!("{TRACE}:{SPAN}:0%3A1"), Fields),                    // mixed separators
        (format!(":{SPAN}:0:1"), TraceId),
        (format!("{}:{SPAN}:0:1", "0".repeat(32)), TraceId),
        (format!("{TRACE}0:{SPAN}:0:1"), TraceId),                    // 33 digits
        (format!("0x1f:{SPAN}:0:1"), TraceId),
        (format!(" 1f:{SPAN}:0:1"), TraceId),
        (format!("+1f:{SPAN}:0:1"), TraceId),
        (format!("1_f:{SPAN}:0:1"), TraceId),
        (format!("{TRACE}:0:0:1"), SpanId),
        (format!("{TRACE}:{SPAN}0:0:1"), SpanId),
        (format!("{TRACE}::0:1"), SpanId),
        (format!("{TRACE}:{SPAN}::1"), ParentSpanId),
        (format!("{TRACE}:{SPAN}:xyz:1"), ParentSpanId),
        (format!("{TRACE}:{SPAN}:0:"), Flags),
        (format!("{TRACE}:{SPAN}:0:100"), Flags),
        (format!("{TRACE}:{SPAN}:0:+1"), Flags),
        (format!("{TRACE}:{SPAN}:0:g"), Flags),
        (format!("{TRACE}:{SPAN}:{PARENT}:01{}", "0".repeat(10)), TooLong),
    ];
    for (value, reason) in cases {
        assert_eq!(parse_uber_trace_id(value.as_bytes()), Err(reason), "{value}");
    }
}

#[test]
fn inject_writes_our_span_its_parent_and_flags() {
    let mut context = SpanContext {
        trace_id: TraceId::from_hex(TRACE.as_bytes()).unwrap(),
        span_id: SpanId::from_hex(SPAN.as_bytes()).unwrap(),
        flags: TraceFlags::from_wire(1),
        debug: false,
    };
    let parent = SpanId::from_hex(PARENT.as_bytes());
    assert_eq!(
        format_uber_trace_id(&context, parent),
        format!("{TRACE}:{SPAN}:{PARENT}:01")
    );
    assert_eq!(
        format_uber_trace_id(&context, None),
        format!("{TRACE}:{SPAN}:0:01")
    );
    context.debug = true;
    assert_eq!(
        format_uber_trace_id(&context, None),
        format!("{TRACE}:{SPAN}:0:03")
    );
    context.debug = false;
    context.flags = TraceFlags::from_wire(0);
    context.trace_id = TraceId::from_hex(b"1f").unwrap();
    assert_eq!(
        format_uber_trace_id(&context, None),
        format!("000000000000001f:{SPAN}:0:00")
    );
}

#[test]
fn baggage_keys_come_from_the_header_name() {
    assert_eq!(baggage_key("uberctx-user"), Some("user"));
    assert_eq!(baggage_key("UberCtx-User"), Some("User"));
    assert_eq!(baggage_key("uberctx-"), Some(""));
    assert_eq!(baggage_key("uberctx"), None);
    assert_eq!(baggage_key("x-uberctx-a"), None);
    assert_eq!(baggage_key("é"), None);
}

proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = parse_uber_trace_id(&bytes);
    }

    #[test]
    fn round_trips(trace in any::<u128>(), span in any::<u64>(), parent in any::<u64>(), flags in 0u8..4) {
        prop_assume!(trace != 0 && span != 0);
        let context = SpanContext {
            trace_id: TraceId::from_bytes(trace.to_be_bytes()).unwrap(),
            span_id: SpanId::from_u64(span).unwrap(),
            flags: TraceFlags::from_wire(u8::from(flags != 0)),
            debug: flags & 2 != 0,
        };
        let parent = SpanId::from_u64(parent);
        let value = format_uber_trace_id(&context, parent);
        let parsed = parse_uber_trace_id(value.as_bytes()).unwrap();
        prop_assert_eq!(parsed.trace_id, context.trace_id);
        prop_assert_eq!(parsed.span_id, context.span_id);
        prop_assert_eq!(parsed.parent_span_id, parent);
        prop_assert_eq!(parsed.sampling.decision(), Some(context.flags.is_sampled()));
        prop_assert_eq!(parsed.sampling.is_debug(), context.debug);
    }
}
