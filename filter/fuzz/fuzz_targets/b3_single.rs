//! `b3::parse_single` on any bytes: never panics; ids that parse come back from the formatter.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::propagation::b3::{format_single, parse_single};
use meshtrace_filter::trace::{SpanContext, TraceFlags};

fuzz_target!(|data: &[u8]| {
    if let Ok(b3) = parse_single(data)
        && let Some((trace_id, span_id)) = b3.ids
    {
        let sampled = b3.sampling.decision().unwrap_or(true);
        let context = SpanContext {
            trace_id,
            span_id,
            flags: TraceFlags::from_wire(u8::from(sampled)),
            debug: b3.sampling.is_debug(),
        };
        let again = parse_single(format_single(&context).as_bytes()).map(|b| b.ids);
        assert_eq!(again, Ok(Some((trace_id, span_id))));
    }
});
