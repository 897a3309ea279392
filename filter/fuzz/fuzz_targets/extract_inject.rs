//! The whole pipeline on an arbitrary header map: `extract` with every format, then `inject`
//! in every writable format. Never panics; every written value is a valid header value; what
//! is written extracts to our span in every format.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::config::PropagationConfig;
use meshtrace_filter::propagation::{self, Format, HeaderWrite};
use meshtrace_filter::trace::{SpanContext, SpanId, TraceFlags, TraceId};

const NAMES: [&str; 16] = [
    "traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid",
    "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "uber-trace-id", "uberctx-a",
    "uberctx-b", "x-cloud-trace-context", "x-amzn-trace-id", "UberCtx-C", "other",
];

fuzz_target!(|data: &[u8]| {
    // Each line is a header: its first byte picks the name, the rest is the value.
    let headers: Vec<(String, Vec<u8>)> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let (&pick, value) = line.split_first()?;
            let name = NAMES.get(usize::from(pick) % NAMES.len())?;
            Some(((*name).to_owned(), value.to_vec()))
        })
        .collect();
    let config = PropagationConfig {
        extract: Format::ALL.to_vec(),
        inject: vec![Format::Tracecontext, Format::Baggage, Format::B3, Format::B3multi, Format::Jaeger],
        ..PropagationConfig::default()
    };
    let extracted = propagation::extract(&headers, &config);
    let span = SpanContext {
        trace_id: extracted.parent.map_or(TraceId::from_bytes([7; 16]).unwrap(), |p| p.trace_id),
        span_id: SpanId::from_bytes([9; 8]).unwrap(),
        flags: TraceFlags::from_wire(1),
        debug: extracted.sampling.is_debug(),
    };
    let writes = propagation::inject(&span, extracted.parent.map(|p| p.span_id), &extracted, &config, false);
    let upstream: Vec<(String, String)> = writes
        .iter()
        .filter_map(|w| match w {
            HeaderWrite::Set(n, v) => Some((n.to_string(), v.clone())),
            HeaderWrite::Remove(_) => None,
        })
        .collect();
    for (_, value) in &upstream {
        assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{value:?}");
    }
    for format in [Format::Tracecontext, Format::B3, Format::B3multi, Format::Jaeger] {
        let only = PropagationConfig { extract: vec![format], ..config.clone() };
        let again = propagation::extract(&upstream, &only);
        assert_eq!(again.parent.map(|p| (p.trace_id, p.span_id)), Some((span.trace_id, span.span_id)));
    }
});
