//! What the filter does for one request, as pure functions of the extracted context: start our
//! SERVER span as the child of the caller's span, or a new trace.
//!
//! Sampling in this slice is parent-based with an always-on root: the caller's decision is
//! kept (debug forces sampled); a deferred decision, or a new trace, is sampled unless a
//! sampling-only header (`b3: 0`) denied it.

use crate::ids::IdGenerator;
use crate::propagation::Extracted;
use crate::span::ServerSpan;
use crate::trace::{Sampling, SpanContext, TraceFlags};

/// Starts the server span for a request whose context was `extracted`.
pub fn start_server_span(
    extracted: &Extracted,
    ids: &mut impl IdGenerator,
    now_unix_nanos: u64,
) -> ServerSpan {
    let sampled = extracted.sampling != Sampling::Deny;
    let debug = extracted.sampling.is_debug();
    let context = match extracted.parent {
        Some(parent) => SpanContext {
            span_id: ids.new_span_id(),
            flags: parent.flags.with_sampled(sampled),
            debug,
            ..parent
        },
        // Our trace ids are fully random, so the Level 2 `random` flag is true of them.
        None => SpanContext {
            trace_id: ids.new_trace_id(),
            span_id: ids.new_span_id(),
            flags: TraceFlags::from_wire(TraceFlags::RANDOM).with_sampled(sampled),
            debug,
        },
    };
    ServerSpan {
        context,
        parent_span_id: extracted.parent.map(|p| p.span_id),
        start_unix_nanos: now_unix_nanos,
        end_unix_nanos: now_unix_nanos,
        method: String::new(),
        path: String::new(),
        status_code: None,
    }
}

/// Reads a `:status` header value.
pub fn parse_status(value: &[u8]) -> Option<u16> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PropagationConfig;
    use crate::propagation::{self, Format};
    use crate::trace::{SpanId, TraceId};

    /// Ids counting up from 1, so tests can name them.
    pub(crate) struct SequentialIds(pub(crate) u8);

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

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn start(headers: &[(&str, &str)]) -> ServerSpan {
        let extracted = propagation::extract(headers, &PropagationConfig::default());
        start_server_span(&extracted, &mut SequentialIds(0), 5)
    }

    #[test]
    fn valid_parent_keeps_trace_and_flags_with_our_span_as_parent() {
        let span = start(&[("traceparent", &format!("00-{TRACE}-{PARENT}-01"))]);
        assert_eq!(span.context.trace_id.to_hex(), TRACE);
        assert_eq!(span.context.span_id.to_hex(), "0101010101010101");
        assert_eq!(span.context.flags.to_wire(), 0x01);
        assert_eq!(
            span.parent_span_id.map(SpanId::to_hex).as_deref(),
            Some(PARENT)
        );
        assert_eq!(span.start_unix_nanos, 5);
    }

    #[test]
    fn unsampled_parent_stays_unsampled_and_random_flag_is_kept() {
        let span = start(&[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))]);
        assert!(!span.context.flags.is_sampled());
        let span = start(&[("traceparent", &format!("00-{TRACE}-{PARENT}-03"))]);
        assert_eq!(span.context.flags.to_wire(), 0x03);
    }

    #[test]
    fn missing_or_malformed_parent_starts_a_sampled_root() {
        for headers in [&[][..], &[("traceparent", "00-xyz")]] {
            let span = start(headers);
            assert_eq!(span.parent_span_id, None);
            assert_eq!(span.context.trace_id.to_hex(), "01".repeat(16));
            assert_eq!(span.context.flags.to_wire(), 0x03);
            assert!(!span.context.debug);
        }
    }

    #[test]
    fn debug_forces_sampled_and_is_kept() {
        let span = start(&[("b3", &format!("{TRACE}-{PARENT}-d"))]);
        assert!(span.context.debug && span.context.flags.is_sampled());
        let span = start(&[("uber-trace-id", &format!("{TRACE}:{PARENT}:0:2"))]);
        assert!(span.context.debug && span.context.flags.is_sampled());
        // A sampling-only debug header forces a new trace.
        let span = start(&[("b3", "d")]);
        assert!(span.context.debug && span.context.flags.is_sampled());
        assert_eq!(span.parent_span_id, None);
    }

    #[test]
    fn deferred_is_sampled_and_deny_is_respected() {
        let span = start(&[("b3", &format!("{TRACE}-{PARENT}"))]);
        assert!(span.context.flags.is_sampled());
        let span = start(&[("b3", "0")]);
        assert!(!span.context.flags.is_sampled() && span.parent_span_id.is_none());
        let span = start(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", PARENT),
            ("x-b3-sampled", "0"),
        ]);
        assert!(!span.context.flags.is_sampled());
        assert_eq!(span.context.trace_id.to_hex(), TRACE);
        // B3 and Jaeger parents do not claim a random trace id.
        assert!(!span.context.flags.is_random());
    }

    #[test]
    fn extract_order_decides_between_formats() {
        let other = "0af7651916cd43dd8448eb211c80319c";
        let headers = [
            ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
            ("b3", format!("{other}-b7ad6b7169203331-1")),
        ];
        let mut config = PropagationConfig::default();
        let extracted = propagation::extract(&headers[..], &config);
        assert_eq!(extracted.format, Some(Format::Tracecontext));
        config.extract = vec![Format::B3, Format::Tracecontext];
        let span = start_server_span(
            &propagation::extract(&headers[..], &config),
            &mut SequentialIds(0),
            0,
        );
        assert_eq!(span.context.trace_id.to_hex(), other);
    }

    #[test]
    fn status_parsing_is_total() {
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b""), None);
        assert_eq!(parse_status(b"99999"), None);
        assert_eq!(parse_status(b"\xff"), None);
    }
}
