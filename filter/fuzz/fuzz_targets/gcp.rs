//! `parse_cloud_trace_context` on any bytes: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::propagation::gcp::parse_cloud_trace_context;

fuzz_target!(|data: &[u8]| {
    let _ = parse_cloud_trace_context(data);
});
