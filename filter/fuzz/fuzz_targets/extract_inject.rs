//! The whole request pipeline on an arbitrary header map: `request::handle` extracts every
//! format, samples (consistent probability, so the `ot` tracestate member is read and
//! rewritten), and injects every writable format. Never panics; every written value is a valid
//! header value; what is written extracts to our span and our decision in every format.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::config::{FilterConfig, PropagationConfig};
use meshtrace_filter::ids::IdGenerator;
use meshtrace_filter::propagation::{self, Format, HeaderWrite};
use meshtrace_filter::request;
use meshtrace_filter::sampling::{Sampler, SharedStore, StoreError};
use meshtrace_filter::trace::{SpanId, TraceId};
use std::sync::OnceLock;

const NAMES: [&str; 16] = [
    "traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid",
    "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "uber-trace-id", "uberctx-a",
    "uberctx-b", "x-cloud-trace-context", "x-amzn-trace-id", "UberCtx-C", "other",
];

const CONFIG: &str = r#"{
  "propagation": {
    "extract": ["tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "gcp"],
    "inject": ["tracecontext", "baggage", "b3", "b3multi", "jaeger"]
  },
  "sampling": {"algorithm": "consistent_probability", "root": {"ratio": 0.5},
               "remote_parent_sampled": {"ratio": 0.5}}
}"#;

/// The configuration and its sampler, built once.
fn pipeline() -> &'static (FilterConfig, Sampler) {
    static PIPELINE: OnceLock<(FilterConfig, Sampler)> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let config = FilterConfig::parse(Some(CONFIG.as_bytes())).unwrap();
        let sampler = config.sampling.build().unwrap();
        (config, sampler)
    })
}

/// Fixed ids: the fuzzer explores the headers, not the generator.
struct FixedIds;

impl IdGenerator for FixedIds {
    fn new_trace_id(&mut self) -> TraceId {
        TraceId::from_bytes([7; 16]).unwrap()
    }
    fn new_span_id(&mut self) -> SpanId {
        SpanId::from_bytes([9; 8]).unwrap()
    }
}

/// The configuration has no rate limits, so shared data is never read.
struct NoSharedData;

impl SharedStore for NoSharedData {
    fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Err(StoreError::Unavailable)
    }
    fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
}

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
    let (config, sampler) = pipeline();
    let handled =
        request::handle(&headers, &config.propagation, sampler, &NoSharedData, &mut FixedIds, 0);
    let span = handled.span.context;
    let upstream: Vec<(String, String)> = handled
        .writes
        .iter()
        .filter_map(|w| match w {
            HeaderWrite::Set(n, v) => Some((n.to_string(), v.clone())),
            HeaderWrite::Remove(_) => None,
        })
        .collect();
    for (name, value) in &upstream {
        assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{value:?}");
        if name == "tracestate" {
            assert!(value.split(',').count() <= 32, "{value:?}");
        }
    }
    assert_eq!(span.flags.is_sampled(), handled.decision.sampled);
    assert!(!span.debug || span.flags.is_sampled(), "debug is only written on sampled spans");
    for format in [Format::Tracecontext, Format::B3, Format::B3multi, Format::Jaeger] {
        let only = PropagationConfig { extract: vec![format], ..config.propagation.clone() };
        let again = propagation::extract(&upstream, &only);
        assert_eq!(again.parent.map(|p| (p.trace_id, p.span_id)), Some((span.trace_id, span.span_id)));
        assert_eq!(again.sampling.decision(), Some(span.flags.is_sampled()), "{format:?}");
    }
});
