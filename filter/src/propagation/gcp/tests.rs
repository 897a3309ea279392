use super::*;
use proptest::prelude::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[rustfmt::skip]
#[test]
fn valid_values() {
    use Sampling::*;
    let cases = vec![
        (format!("{TRACE}/1;o=1"), 1, Accept),
        (format!("{TRACE}/18446744073709551615;o=0"), u64::MAX, Deny),
        (format!("{TRACE}/123"), 123, Deferred),
        (format!("{TRACE}/0123;o=3"), 123, Accept),       // only bit 0 counts
        (format!("{TRACE}/5;o=2"), 5, Deny),
        (format!("{TRACE}/5;o=00000000000000000000000001"), 5, Accept),
    ];
    for (value, span, sampling) in cases {
        let parsed = parse_cloud_trace_context(value.as_bytes()).unwrap();
        assert_eq!(parsed.trace_id.to_hex(), TRACE, "{value}");
        assert_eq!(parsed.span_id.to_u64(), span, "{value}");
        assert_eq!(parsed.sampling, sampling, "{value}");
    }
}

#[rustfmt::skip]
#[test]
fn invalid_values_carry_their_reason() {
    use GcpError::*;
    let cases: Vec<(String, GcpError)> = vec![
        (TRACE.to_owned(), Delimiter),
        (format!("{TRACE}/1;o"), Delimiter),
        (format!("{TRACE}/1;x=1"), Delimiter),
        (format!("{TRACE}/1 ;o=1"), SpanId),
        (format!("{}/1", TRACE.to_uppercase()), TraceId),  // lower case only
        (format!("{}/1", &TRACE[..30]), TraceId),
        (format!("{}/1", "0".repeat(32)), TraceId),
        (format!("{TRACE}/"), SpanId),
        (format!("{TRACE}/0"), SpanId),
        (format!("{TRACE}/18446744073709551616"), SpanId),   // u64::MAX + 1
        (format!("{TRACE}/{}", "1".repeat(21)), SpanId),
        (format!("{TRACE}/abc"), SpanId),
        (format!("{TRACE}/-1"), SpanId),
        (format!("{TRACE}/1;o="), Options),
        (format!("{TRACE}/1;o=x"), Options),
        (format!("{TRACE}/1;o=1;o=1"), Options),
        (format!("{TRACE}/1;o={}", "1".repeat(100)), TooLong),
    ];
    for (value, reason) in cases {
        assert_eq!(parse_cloud_trace_context(value.as_bytes()), Err(reason), "{value}");
    }
}

proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        let _ = parse_cloud_trace_context(&bytes);
    }

    #[test]
    fn parses_what_google_writes(trace in any::<u128>(), span in any::<u64>(), o in 0u8..2) {
        prop_assume!(trace != 0 && span != 0);
        let value = format!("{trace:032x}/{span};o={o}");
        let parsed = parse_cloud_trace_context(value.as_bytes()).unwrap();
        prop_assert_eq!(parsed.trace_id.to_hex(), format!("{trace:032x}"));
        prop_assert_eq!(parsed.span_id.to_u64(), span);
        prop_assert_eq!(parsed.sampling.decision(), Some(o == 1));
    }
}
