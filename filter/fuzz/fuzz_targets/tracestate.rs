//! `parse_tracestate` on any lines: never panics, stays within the limits, and what it keeps
//! re-parses to itself without a problem.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::propagation::tracestate::{MAX_LEN, MAX_MEMBERS, parse_tracestate};

fuzz_target!(|data: &[u8]| {
    let (state, _) = parse_tracestate(data.split(|&b| b == b'\n'));
    assert!(state.len() <= MAX_MEMBERS);
    if let Some(header) = state.to_header() {
        assert!(header.len() <= MAX_LEN);
        let (again, problems) = parse_tracestate([header.as_bytes()]);
        assert_eq!(again, state);
        assert!(problems.is_empty());
    }
});
