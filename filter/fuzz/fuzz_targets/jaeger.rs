//! `parse_uber_trace_id` on any bytes: never panics; what parses formats back to the same ids.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::propagation::jaeger::{format_uber_trace_id, parse_uber_trace_id};
use meshtrace_filter::trace::{SpanContext, TraceFlags};

fuzz_target!(|data: &[u8]| {
    if let Ok(j) = parse_uber_trace_id(data) {
        let context = SpanContext {
            trace_id: j.trace_id,
            span_id: j.span_id,
            flags: TraceFlags::from_wire(u8::from(j.sampling.decision() == Some(true))),
            debug: j.sampling.is_debug(),
        };
        let again = parse_uber_trace_id(format_uber_trace_id(&context, j.parent_span_id).as_bytes());
        assert_eq!(again, Ok(j));
    }
});
