//! `b3::parse_multi` on any five header values (split on newlines): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::propagation::b3::{MultiHeaders, parse_multi};

fuzz_target!(|data: &[u8]| {
    let mut values = data.split(|&b| b == b'\n').map(|v| (!v.is_empty()).then_some(v));
    let headers = MultiHeaders {
        trace_id: values.next().flatten(),
        span_id: values.next().flatten(),
        parent_span_id: values.next().flatten(),
        sampled: values.next().flatten(),
        flags: values.next().flatten(),
    };
    let _ = parse_multi(&headers);
});
