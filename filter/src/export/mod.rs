//! The per-VM export pipeline: a buffer of finished spans bounded by count and bytes, cut into
//! batches, the export calls in flight, and what each answer does to its batch.
//!
//! ```text
//!  on_log ──push──▶ [ pending spans ]──next_batch──▶ dispatch_http_call ──▶ collector
//!                     │ full: dropped        ▲           │ ≤ max_calls_in_flight
//!                     ▼                      │           ▼
//!                  counted          [ kept batches ]◀── settle(answer): 2xx exported
//!                                    one later try,    (rejected_spans dropped), retryable
//!                                    room permitting   kept once, anything else dropped
//! ```
//!
//! Accounting: every span pushed is, at any moment, exactly one of pending or kept (together
//! "buffered"), in flight, exported, or dropped with one [`DropReason`]. The bounds
//! (`max_buffered_spans`, `max_buffered_bytes`) cover what is buffered; what is in flight is
//! bounded by `max_calls_in_flight` × `max_batch_bytes` on top. Nothing here blocks or reads a
//! clock: the caller passes the time and talks to the host.

pub mod answer;
pub mod batch;

use crate::config::ExporterConfig;
use answer::{Answer, FailureCause};
use batch::BatchTemplate;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Why spans were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// The buffer was full (spans or bytes) when the span ended.
    BufferFull,
    /// The span alone is larger than an export call may be.
    TooLarge,
    /// The collector accepted the call but rejected these spans (`partial_success`).
    Rejected,
    /// The call got a final (non-retryable) answer.
    ExportFailed,
    /// The call failed retryably a second time.
    RetryExhausted,
    /// The call failed retryably, but the buffer had no room to keep the batch.
    RetryNoRoom,
    /// The stream's context went away before the stream ended (the span never finished).
    Unfinished,
}

/// Outcome of offering a finished span to the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The span waits for a flush.
    Buffered,
    /// The span was dropped.
    Dropped(DropReason),
}

/// Which batches a flush sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Only full batches (a span just filled one, or a call slot freed up).
    Full,
    /// Everything that may go: kept batches whose wait is over, then all pending spans.
    All,
    /// Shutting down: everything, now, past the cap on calls in flight and any `Retry-After`
    /// (there is no later).
    Drain,
}

/// A batch on its way: its OTLP body and what it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The `ExportTraceServiceRequest`.
    pub body: Vec<u8>,
    /// Spans in it.
    pub spans: usize,
    /// Encoded bytes of those spans (what the buffer counted for them).
    pub span_bytes: usize,
    /// Earlier tries (0 or 1).
    tries: u8,
}

/// What settling a batch did, for the metrics and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// Spans the collector accepted.
    pub exported: usize,
    /// Spans dropped, and why.
    pub dropped: Option<(DropReason, usize)>,
    /// Whether the batch was kept for one later try.
    pub kept: bool,
    /// Why the call failed, if it did.
    pub failure: Option<FailureCause>,
    /// A partial success's error message.
    pub message: String,
}

/// Spans and bytes of one part of the pipeline, for the gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Level {
    /// Spans buffered (pending or kept).
    pub buffered_spans: usize,
    /// Their encoded bytes.
    pub buffered_bytes: usize,
    /// Spans in calls not answered yet.
    pub in_flight_spans: usize,
    /// Their encoded bytes.
    pub in_flight_bytes: usize,
    /// Calls not answered yet.
    pub in_flight_calls: usize,
}

/// The bounded span buffer of one VM, plus its calls in flight.
#[derive(Debug)]
pub struct SpanBuffer {
    max_buffered_spans: usize,
    max_buffered_bytes: usize,
    max_batch_spans: usize,
    max_batch_bytes: usize,
    max_in_flight: usize,
    max_retry_delay: Duration,
    template: BatchTemplate,
    /// Concatenated span fields, oldest first, and the length of each.
    pending: Vec<u8>,
    pending_lens: VecDeque<usize>,
    kept: VecDeque<Batch>,
    kept_spans: usize,
    kept_bytes: usize,
    in_flight: BTreeMap<u32, Batch>,
    /// No call before this host time (a `Retry-After`), in ns since the Unix epoch.
    not_before: u64,
}

impl SpanBuffer {
    /// An empty buffer with the configured bounds, for spans under `template`.
    pub fn new(config: &ExporterConfig, template: BatchTemplate) -> Self {
        let mut buffer = Self {
            max_buffered_spans: 0,
            max_buffered_bytes: 0,
            max_batch_spans: 0,
            max_batch_bytes: 0,
            max_in_flight: 0,
            max_retry_delay: Duration::ZERO,
            template: BatchTemplate::default(),
            pending: Vec::new(),
            pending_lens: VecDeque::new(),
            kept: VecDeque::new(),
            kept_spans: 0,
            kept_bytes: 0,
            in_flight: BTreeMap::new(),
            not_before: 0,
        };
        buffer.reconfigure(config, template);
        buffer
    }

    /// Applies new bounds and a new resource. What is buffered stays, even past a smaller
    /// bound: it was accepted, and leaves with the next flushes (pending spans under the new
    /// resource, kept batches as they were encoded).
    pub fn reconfigure(&mut self, config: &ExporterConfig, template: BatchTemplate) {
        self.max_buffered_spans = usize_of(config.max_buffered_spans);
        self.max_buffered_bytes = usize_of(config.max_buffered_bytes);
        self.max_batch_spans = usize_of(config.max_batch_spans).max(1);
        self.max_batch_bytes = usize_of(config.max_batch_bytes);
        self.max_in_flight = usize_of(config.max_calls_in_flight);
        self.max_retry_delay = config.max_retry_delay();
        self.template = template;
    }

    /// Offers a finished span's encoded field ([`batch::span_field`]).
    pub fn push(&mut self, span_field: Vec<u8>) -> Push {
        let len = span_field.len();
        if self.template.body_len(len) > self.max_batch_bytes {
            return Push::Dropped(DropReason::TooLarge);
        }
        let (spans, bytes) = self.buffered();
        if spans >= self.max_buffered_spans || bytes + len > self.max_buffered_bytes {
            return Push::Dropped(DropReason::BufferFull);
        }
        self.pending.extend_from_slice(&span_field);
        self.pending_lens.push_back(len);
        Push::Buffered
    }

    /// Whether the pending spans fill at least one batch (time to flush without waiting for
    /// the tick).
    pub fn batch_ready(&self) -> bool {
        self.pending_lens.len() >= self.max_batch_spans
            || self.template.body_len(self.pending.len()) >= self.max_batch_bytes
    }

    /// The next batch to send at host time `now` (ns), or `None`: the cap on calls in flight
    /// is reached, a `Retry-After` has not passed, or nothing (of what `flush` sends) waits.
    /// Kept batches go first, and only on [`Flush::All`] or [`Flush::Drain`].
    pub fn next_batch(&mut self, flush: Flush, now: u64) -> Option<Batch> {
        let held = self.in_flight.len() >= self.max_in_flight || now < self.not_before;
        if held && flush != Flush::Drain {
            return None;
        }
        if flush != Flush::Full
            && let Some(batch) = self.kept.pop_front()
        {
            self.kept_spans -= batch.spans;
            self.kept_bytes -= batch.span_bytes;
            return Some(batch);
        }
        if self.pending_lens.is_empty() || (flush == Flush::Full && !self.batch_ready()) {
            return None;
        }
        let (mut spans, mut bytes) = (0, 0);
        for &len in &self.pending_lens {
            let fits = self.template.body_len(bytes + len) <= self.max_batch_bytes;
            if spans == self.max_batch_spans || (spans > 0 && !fits) {
                break;
            }
            spans += 1;
            bytes += len;
        }
        let body = self
            .template
            .encode(self.pending.get(..bytes).unwrap_or_default());
        self.pending.drain(..bytes);
        self.pending_lens.drain(..spans);
        Some(Batch {
            body,
            spans,
            span_bytes: bytes,
            tries: 0,
        })
    }

    /// Records that `batch` is in flight under `token`.
    pub fn dispatched(&mut self, token: u32, batch: Batch) {
        self.in_flight.insert(token, batch);
    }

    /// Settles call `token` with its answer at host time `now` (ns); `None` for a token this
    /// buffer never dispatched (or already settled).
    pub fn settle(&mut self, token: u32, answer: Answer, now: u64) -> Option<Settled> {
        let batch = self.in_flight.remove(&token)?;
        Some(self.resolve(batch, answer, now))
    }

    /// Settles a batch the host refused to dispatch: a retryable failure.
    pub fn dispatch_failed(&mut self, batch: Batch, now: u64) -> Settled {
        let answer = Answer::Retryable {
            cause: FailureCause::Dispatch,
            retry_after: None,
        };
        self.resolve(batch, answer, now)
    }

    /// Spans and bytes buffered and in flight.
    pub fn level(&self) -> Level {
        let (buffered_spans, buffered_bytes) = self.buffered();
        Level {
            buffered_spans,
            buffered_bytes,
            in_flight_spans: self.in_flight.values().map(|b| b.spans).sum(),
            in_flight_bytes: self.in_flight.values().map(|b| b.span_bytes).sum(),
            in_flight_calls: self.in_flight.len(),
        }
    }

    /// Whether nothing is buffered or in flight.
    pub fn is_empty(&self) -> bool {
        self.pending_lens.is_empty() && self.kept.is_empty() && self.in_flight.is_empty()
    }

    fn buffered(&self) -> (usize, usize) {
        (
            self.pending_lens.len() + self.kept_spans,
            self.pending.len() + self.kept_bytes,
        )
    }

    fn resolve(&mut self, mut batch: Batch, answer: Answer, now: u64) -> Settled {
        let spans = batch.spans;
        let mut settled = Settled {
            exported: 0,
            dropped: None,
            kept: false,
            failure: None,
            message: String::new(),
        };
        match answer {
            Answer::Accepted {
                rejected_spans,
                message,
            } => {
                let rejected = usize::try_from(rejected_spans).map_or(spans, |r| r.min(spans));
                settled.exported = spans - rejected;
                settled.dropped = (rejected > 0).then_some((DropReason::Rejected, rejected));
                settled.message = message;
            }
            Answer::Retryable { cause, retry_after } => {
                settled.failure = Some(cause);
                let (buffered_spans, buffered_bytes) = self.buffered();
                let room = buffered_spans + spans <= self.max_buffered_spans
                    && buffered_bytes + batch.span_bytes <= self.max_buffered_bytes;
                if batch.tries > 0 {
                    settled.dropped = Some((DropReason::RetryExhausted, spans));
                } else if !room {
                    settled.dropped = Some((DropReason::RetryNoRoom, spans));
                } else {
                    if let Some(wait) = retry_after {
                        let wait = wait.min(self.max_retry_delay);
                        let until =
                            now.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
                        self.not_before = self.not_before.max(until);
                    }
                    batch.tries += 1;
                    self.kept_spans += spans;
                    self.kept_bytes += batch.span_bytes;
                    self.kept.push_back(batch);
                    settled.kept = true;
                }
            }
            Answer::Failed { cause } => {
                settled.failure = Some(cause);
                settled.dropped = Some((DropReason::ExportFailed, spans));
            }
        }
        settled
    }
}

impl DropReason {
    /// Every reason, in metric order.
    pub const ALL: [DropReason; 7] = [
        DropReason::BufferFull,
        DropReason::TooLarge,
        DropReason::Rejected,
        DropReason::ExportFailed,
        DropReason::RetryExhausted,
        DropReason::RetryNoRoom,
        DropReason::Unfinished,
    ];

    /// Name used in metric names.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::TooLarge => "too_large",
            DropReason::Rejected => "rejected",
            DropReason::ExportFailed => "export_failed",
            DropReason::RetryExhausted => "retry_exhausted",
            DropReason::RetryNoRoom => "retry_no_room",
            DropReason::Unfinished => "unfinished",
        }
    }
}

fn usize_of(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests;
