//! `Baggage::parse` on any lines: never panics, stays within the limits, and what it keeps
//! re-parses to itself without a problem.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshtrace_filter::propagation::baggage::{Baggage, MAX_LEN, MAX_MEMBERS};

fuzz_target!(|data: &[u8]| {
    let (baggage, _) = Baggage::parse(data.split(|&b| b == b'\n'));
    assert!(baggage.len() <= MAX_MEMBERS);
    if let Some(header) = baggage.to_header() {
        assert!(header.len() <= MAX_LEN);
        let (again, problems) = Baggage::parse([header.as_bytes()]);
        assert_eq!(again, baggage);
        assert!(problems.is_empty());
    }
    for member in baggage.iter() {
        let _ = member.value();
    }
});
