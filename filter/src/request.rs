//! What the filter does for one request, as pure functions of the header bytes: extract the
//! incoming context, start our SERVER span, and say what to write on the upstream request.
//!
//! Sampling in this slice is parent-based with an always-on root: a valid parent's `sampled`
//! flag is kept; a new trace is sampled.

use crate::ids::IdGenerator;
use crate::propagation::w3c::{self, TraceparentError};
use crate::span::ServerSpan;
use crate::trace::{SpanContext, TraceFlags};

/// What the request's `traceparent` gave us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extraction {
    /// No `traceparent` header: a new trace starts.
    Missing,
    /// A valid context: our span is its child.
    Valid,
    /// An invalid header, ignored: a new trace starts.
    Malformed(TraceparentError),
}

/// A started request span and the header value that carries it upstream.
#[derive(Clone, Debug, PartialEq)]
pub struct Started {
    /// Our span, open until the stream ends.
    pub span: ServerSpan,
    /// `traceparent` for the upstream request: our span as the parent.
    pub traceparent: String,
    /// How the incoming context was read.
    pub extraction: Extraction,
}

/// Starts the server span for a request whose `traceparent` header is `traceparent`.
pub fn start_server_span(
    traceparent: Option<&[u8]>,
    ids: &mut impl IdGenerator,
    now_unix_nanos: u64,
) -> Started {
    let parsed = traceparent.map(w3c::parse_traceparent);
    let (parent, extraction) = match parsed {
        None => (None, Extraction::Missing),
        Some(Ok(parent)) => (Some(parent), Extraction::Valid),
        Some(Err(reason)) => (None, Extraction::Malformed(reason)),
    };
    let context = match parent {
        Some(parent) => SpanContext {
            span_id: ids.new_span_id(),
            ..parent
        },
        // Our trace ids are fully random, so the Level 2 `random` flag is true of them.
        None => SpanContext {
            trace_id: ids.new_trace_id(),
            span_id: ids.new_span_id(),
            flags: TraceFlags::from_wire(TraceFlags::SAMPLED | TraceFlags::RANDOM),
        },
    };
    let span = ServerSpan {
        context,
        parent_span_id: parent.map(|p| p.span_id),
        start_unix_nanos: now_unix_nanos,
        end_unix_nanos: now_unix_nanos,
        method: String::new(),
        path: String::new(),
        status_code: None,
    };
    Started {
        traceparent: w3c::format_traceparent(&context),
        span,
        extraction,
    }
}

/// Reads a `:status` header value.
pub fn parse_status(value: &[u8]) -> Option<u16> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    use crate::trace::{SpanId, TraceId};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Ids counting up from 1, so tests can name them.
    struct SequentialIds(u8);

    impl IdGenerator for SequentialIds {
        fn new_trace_id(&mut self) -> TraceId {
            self.0 += 1;
            TraceId::from_bytes([self.0; 16]).unwrap()
        }
        fn new_span_id(&mut self) -> SpanId {
            self.0 += 1;
            SpanId::from_bytes([self.0; 8]).unwrap()
        }
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_parent_keeps_trace_and_flags_with_our_span_as_parent() {
        let started = start_server_span(Some(PARENT.as_bytes()), &mut SequentialIds(0), 5);
        assert_eq!(started.extraction, Extraction::Valid);
        assert_eq!(
            started.traceparent,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-01"
        );
        assert_eq!(
            started.span.parent_span_id.map(SpanId::to_hex).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_eq!(started.span.start_unix_nanos, 5);
    }

    #[test]
    fn unsampled_parent_stays_unsampled() {
        let parent = PARENT.replace("-01", "-00");
        let started = start_server_span(Some(parent.as_bytes()), &mut SequentialIds(0), 0);
        assert!(!started.span.context.flags.is_sampled());
        assert!(started.traceparent.ends_with("-00"));
    }

    #[test]
    fn missing_or_malformed_parent_starts_a_sampled_root() {
        for (header, extraction) in [
            (None, Extraction::Missing),
            (
                Some(&b"00-xyz"[..]),
                Extraction::Malformed(TraceparentError::Length),
            ),
        ] {
            let started = start_server_span(header, &mut SequentialIds(0), 0);
            assert_eq!(started.extraction, extraction);
            assert_eq!(started.span.parent_span_id, None);
            assert_eq!(
                started.traceparent,
                "00-01010101010101010101010101010101-0202020202020202-03"
            );
        }
    }

    #[test]
    fn status_parsing_is_total() {
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b""), None);
        assert_eq!(parse_status(b"99999"), None);
        assert_eq!(parse_status(b"\xff"), None);
    }
}
