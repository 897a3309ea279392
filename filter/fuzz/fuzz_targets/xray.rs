//! `parse_amzn_trace_id` on any bytes: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::propagation::xray::parse_amzn_trace_id;

fuzz_target!(|data: &[u8]| {
    let _ = parse_amzn_trace_id(data);
});
