//! `parse_traceparent` on any bytes: never panics; what parses formats back to a version-00
//! value that parses to the same context.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::propagation::w3c::{format_traceparent, parse_traceparent};

fuzz_target!(|data: &[u8]| {
    if let Ok(context) = parse_traceparent(data) {
        let again = parse_traceparent(format_traceparent(&context).as_bytes());
        assert_eq!(again, Ok(context));
    }
});
