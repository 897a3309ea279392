//! The per-VM export pipeline: a bounded buffer of finished spans, cut into batches, with the
//! export calls in flight tracked until the host answers.
//!
//! ```text
//!  on_log ──push──▶ [ buffer ≤ max_buffered ] ──next_batch──▶ dispatch_http_call ──▶ shim
//!                      │ full: Dropped                         │ in flight ≤ max_calls
//!                      ▼                                        ▼
//!                   counted                      on_http_call_response: complete(token)
//! ```
//!
//! Accounting: every span pushed is, at any moment, buffered, in flight, exported or dropped
//! (each drop with a reason). Nothing here blocks; time and the host are the caller's business.

use crate::config::ExporterConfig;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::collections::{BTreeMap, VecDeque};

/// Outcome of offering a finished span to the buffer.
#[derive(Debug, PartialEq)]
pub enum Push {
    /// The span waits for the next flush.
    Buffered,
    /// The buffer was full: the span was dropped.
    Dropped,
}

/// How an export call ended, as far as the filter can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The shim answered 2xx.
    Accepted,
    /// Any other answer, a timeout or a connection failure (Envoy reports those as 503/504).
    Failed,
}

/// A batch that left the buffer: the spans count and the call that carries them.
#[derive(Debug, PartialEq)]
pub struct Completed {
    /// Spans in the finished call.
    pub spans: usize,
    /// How it ended.
    pub outcome: CallOutcome,
}

/// Bounded span buffer plus the set of export calls in flight.
#[derive(Debug)]
pub struct SpanBuffer {
    spans: VecDeque<Span>,
    max_buffered: usize,
    max_batch: usize,
    max_in_flight: usize,
    in_flight: BTreeMap<u32, usize>,
}

impl SpanBuffer {
    /// An empty buffer with the configured bounds.
    pub fn new(config: &ExporterConfig) -> Self {
        let mut buffer = Self {
            spans: VecDeque::new(),
            max_buffered: 1,
            max_batch: 1,
            max_in_flight: 1,
            in_flight: BTreeMap::new(),
        };
        buffer.reconfigure(config);
        buffer
    }

    /// Applies new bounds and keeps the spans already buffered, even past a smaller bound: they
    /// were accepted, and leave with the next flushes.
    pub fn reconfigure(&mut self, config: &ExporterConfig) {
        self.max_buffered = usize_of(config.max_buffered_spans);
        self.max_batch = usize_of(config.max_batch_spans);
        self.max_in_flight = usize_of(config.max_calls_in_flight);
    }

    /// Offers a finished span; drops it when the buffer is full.
    pub fn push(&mut self, span: Span) -> Push {
        if self.spans.len() >= self.max_buffered {
            return Push::Dropped;
        }
        self.spans.push_back(span);
        Push::Buffered
    }

    /// The next batch to send, oldest spans first, or `None` when the buffer is empty or the
    /// cap on calls in flight is reached.
    pub fn next_batch(&mut self) -> Option<Vec<Span>> {
        if self.spans.is_empty() || self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        let take = self.spans.len().min(self.max_batch);
        Some(self.spans.drain(..take).collect())
    }

    /// Records that a batch of `spans` spans is in flight under `token`.
    pub fn dispatched(&mut self, token: u32, spans: usize) {
        self.in_flight.insert(token, spans);
    }

    /// Records the answer to call `token`; `None` for a token this buffer never dispatched.
    pub fn complete(&mut self, token: u32, outcome: CallOutcome) -> Option<Completed> {
        let spans = self.in_flight.remove(&token)?;
        Some(Completed { spans, outcome })
    }

    /// Spans waiting for a flush.
    pub fn buffered(&self) -> usize {
        self.spans.len()
    }

    /// Spans in export calls that have not been answered yet.
    pub fn in_flight_spans(&self) -> usize {
        self.in_flight.values().sum()
    }
}

/// Classifies an export call's `:status`. A missing or unreadable status is a failure.
pub fn call_outcome(status: Option<&[u8]>) -> CallOutcome {
    let code = status
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    match code {
        Some(200..=299) => CallOutcome::Accepted,
        _ => CallOutcome::Failed,
    }
}

fn usize_of(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn config(max_buffered: u32, max_batch: u32, max_calls: u32) -> ExporterConfig {
        ExporterConfig {
            max_buffered_spans: max_buffered,
            max_batch_spans: max_batch,
            max_calls_in_flight: max_calls,
            ..ExporterConfig::default()
        }
    }

    fn span(n: u8) -> Span {
        Span {
            trace_id: vec![n.max(1); 16],
            span_id: vec![n.max(1); 8],
            name: "GET".into(),
            ..Span::default()
        }
    }

    #[test]
    fn full_buffer_drops_and_batches_are_bounded() {
        let mut buffer = SpanBuffer::new(&config(5, 2, 2));
        let pushes: Vec<Push> = (0..7).map(|n| buffer.push(span(n))).collect();
        assert_eq!(pushes.iter().filter(|p| **p == Push::Dropped).count(), 2);
        let first = buffer.next_batch().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], span(0), "oldest first");
        buffer.dispatched(10, first.len());
        let second = buffer.next_batch().unwrap();
        buffer.dispatched(11, second.len());
        assert_eq!(buffer.next_batch(), None, "two calls in flight is the cap");
        assert_eq!((buffer.buffered(), buffer.in_flight_spans()), (1, 4));
        let done = buffer.complete(10, CallOutcome::Accepted);
        assert_eq!(
            done,
            Some(Completed {
                spans: 2,
                outcome: CallOutcome::Accepted
            })
        );
        assert_eq!(
            buffer.complete(10, CallOutcome::Accepted),
            None,
            "answered once"
        );
        assert_eq!(buffer.next_batch().map(|b| b.len()), Some(1));
    }

    #[test]
    fn accounting_holds_through_any_sequence() {
        let mut buffer = SpanBuffer::new(&config(8, 3, 2));
        let (mut pushed, mut dropped, mut settled, mut token) = (0usize, 0usize, 0usize, 0u32);
        for step in 0u8..200 {
            match step % 5 {
                0..=2 => {
                    pushed += 1;
                    if buffer.push(span(step)) == Push::Dropped {
                        dropped += 1;
                    }
                }
                3 => {
                    if let Some(batch) = buffer.next_batch() {
                        token += 1;
                        buffer.dispatched(token, batch.len());
                    }
                }
                _ => {
                    if let Some(done) = buffer.complete(token, CallOutcome::Failed) {
                        settled += done.spans;
                    }
                }
            }
            assert_eq!(
                pushed,
                dropped + settled + buffer.buffered() + buffer.in_flight_spans(),
                "step {step}"
            );
        }
    }

    #[test]
    fn reconfigure_keeps_buffered_spans() {
        let mut buffer = SpanBuffer::new(&config(4, 4, 1));
        for n in 0..4 {
            buffer.push(span(n));
        }
        buffer.reconfigure(&config(2, 2, 1));
        assert_eq!(buffer.buffered(), 4);
        assert_eq!(buffer.push(span(9)), Push::Dropped);
        assert_eq!(buffer.next_batch().map(|b| b.len()), Some(2));
    }

    #[test]
    fn only_2xx_is_accepted() {
        assert_eq!(call_outcome(Some(b"200")), CallOutcome::Accepted);
        assert_eq!(call_outcome(Some(b"204")), CallOutcome::Accepted);
        for status in [&b"503"[..], b"504", b"400", b"", b"2x0", b"\xff"] {
            assert_eq!(call_outcome(Some(status)), CallOutcome::Failed);
        }
        assert_eq!(call_outcome(None), CallOutcome::Failed);
    }
}
