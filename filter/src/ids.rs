//! Id generation behind a trait, so tests can pin ids while production draws them at random.
//!
//! In Envoy the randomness comes from WASI `random_get`, which Envoy implements for every VM.

use crate::trace::{SpanId, TraceId};
use rand::Rng;

/// Source of new trace and span ids. Implementations never return the invalid all-zero id.
pub trait IdGenerator {
    /// A fresh, random 128-bit trace id.
    fn new_trace_id(&mut self) -> TraceId;
    /// A fresh, random 64-bit span id.
    fn new_span_id(&mut self) -> SpanId;
}

/// Ids from the thread-local CSPRNG (`rand::rng()`, seeded by the host).
#[derive(Debug, Default)]
pub struct RandomIdGenerator;

impl IdGenerator for RandomIdGenerator {
    fn new_trace_id(&mut self) -> TraceId {
        let mut rng = rand::rng();
        loop {
            if let Some(id) = TraceId::from_bytes(rng.random()) {
                return id;
            }
        }
    }

    fn new_span_id(&mut self) -> SpanId {
        let mut rng = rand::rng();
        loop {
            if let Some(id) = SpanId::from_bytes(rng.random()) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn random_ids_are_distinct() {
        let mut ids = RandomIdGenerator;
        let traces: HashSet<_> = (0..1000).map(|_| ids.new_trace_id()).collect();
        let spans: HashSet<_> = (0..1000).map(|_| ids.new_span_id()).collect();
        assert_eq!(traces.len(), 1000);
        assert_eq!(spans.len(), 1000);
    }
}
