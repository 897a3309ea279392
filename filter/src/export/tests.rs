use super::answer::{Answer, FailureCause};
use super::batch::{BatchTemplate, span_field};
use super::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use proptest::prelude::*;
use prost::Message;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SECOND: u64 = 1_000_000_000;

fn config(buffered: (u32, u32), batch: (u32, u32), calls: u32) -> ExporterConfig {
    ExporterConfig {
        max_buffered_spans: buffered.0,
        max_buffered_bytes: buffered.1,
        max_batch_spans: batch.0,
        max_batch_bytes: batch.1,
        max_calls_in_flight: calls,
        ..ExporterConfig::default()
    }
}

fn string(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// A resource naming only the service.
pub(super) fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![string("service.name", service_name.to_owned())],
        ..Resource::default()
    }
}

fn template() -> BatchTemplate {
    BatchTemplate::new(&resource("test"))
}

fn buffer(buffered: (u32, u32), batch: (u32, u32), calls: u32) -> SpanBuffer {
    SpanBuffer::new(&config(buffered, batch, calls), template())
}

/// `buffer` after pushing spans 1 to `spans` (10-byte paths).
fn filled(mut buffer: SpanBuffer, spans: u8) -> SpanBuffer {
    for n in 1..=spans {
        buffer.push(field(n, 10));
    }
    buffer
}

/// Span number `n` (its span id is `n` in every byte), with a path of `path_len` bytes.
fn field(n: u8, path_len: usize) -> Vec<u8> {
    span_field(&span(n, path_len))
}

/// Span number `n` (its ids are `n` in every byte, 1 for 0), with a path of `path_len` bytes.
pub(super) fn span(n: u8, path_len: usize) -> Span {
    Span {
        trace_id: vec![n.max(1); 16],
        span_id: vec![n.max(1); 8],
        name: "GET".to_owned(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: vec![string("url.path", "x".repeat(path_len))],
        ..Span::default()
    }
}

/// The first byte of each span id in a batch's body.
fn span_numbers(batch: &Batch) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(batch.body.as_slice()).unwrap();
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.span_id[0])
        .collect()
}

fn accepted(rejected_spans: u64) -> Answer {
    Answer::Accepted {
        rejected_spans,
        message: String::new(),
    }
}

fn throttled(retry_after: Option<u64>) -> Answer {
    Answer::Retryable {
        cause: FailureCause::Throttled,
        retry_after: retry_after.map(Duration::from_secs),
    }
}

#[test]
fn the_buffer_is_bounded_by_spans_and_by_bytes() {
    let mut by_count = buffer((3, 1 << 20), (10, 1 << 20), 1);
    let pushes: Vec<Push> = (1..=5).map(|n| by_count.push(field(n, 10))).collect();
    assert_eq!(pushes[2], Push::Buffered);
    assert_eq!(pushes[3], Push::Dropped(DropReason::BufferFull));
    let size = field(1, 1000).len();
    let mut by_bytes = buffer((100, 3 * size as u32 + 200), (10, 1 << 20), 1);
    let pushes: Vec<Push> = (1..=4).map(|n| by_bytes.push(field(n, 1000))).collect();
    assert_eq!(pushes[2], Push::Buffered);
    assert_eq!(pushes[3], Push::Dropped(DropReason::BufferFull));
    assert_eq!(by_bytes.level().buffered_bytes, 3 * size);
    assert!(field(9, 1).len() < 200);
    assert_eq!(
        by_bytes.push(field(9, 1)),
        Push::Buffered,
        "a smaller span still fits"
    );
}

#[test]
fn a_span_larger_than_a_batch_is_dropped_as_too_large() {
    let mut buffer = buffer((100, 1 << 20), (10, 16 * 1024), 1);
    let mut large = span(1, 4000);
    large
        .attributes
        .extend((0..4).map(|_| string("a", "v".repeat(4000))));
    assert_eq!(
        buffer.push(span_field(&large)),
        Push::Dropped(DropReason::TooLarge)
    );
    assert!(buffer.is_empty());
}

#[test]
fn batches_are_cut_by_spans_and_by_bytes_oldest_first() {
    let mut by_count = filled(buffer((100, 1 << 20), (2, 1 << 20), 8), 5);
    let cuts: Vec<Vec<u8>> = std::iter::from_fn(|| by_count.next_batch(Flush::All, 0))
        .map(|b| span_numbers(&b))
        .collect();
    assert_eq!(cuts, [vec![1, 2], vec![3, 4], vec![5]]);

    let size = field(1, 5000).len();
    let mut by_bytes = buffer((100, 1 << 20), (100, 16 * 1024), 8);
    for n in 1..=7 {
        by_bytes.push(field(n, 5000));
    }
    let batch = by_bytes.next_batch(Flush::All, 0).unwrap();
    assert_eq!(span_numbers(&batch), [1, 2, 3]);
    assert!(batch.body.len() <= 16 * 1024);
    assert_eq!(batch.span_bytes, 3 * size);
}

#[test]
fn full_flushes_wait_for_a_full_batch_and_the_cap_on_calls_holds() {
    let mut buffer = buffer((100, 1 << 20), (3, 1 << 20), 2);
    buffer.push(field(1, 10));
    buffer.push(field(2, 10));
    assert!(!buffer.batch_ready());
    assert_eq!(buffer.next_batch(Flush::Full, 0), None);
    buffer.push(field(3, 10));
    assert!(buffer.batch_ready());
    let first = buffer.next_batch(Flush::Full, 0).unwrap();
    buffer.dispatched(1, first);
    for n in 4..=9 {
        buffer.push(field(n, 10));
    }
    let second = buffer.next_batch(Flush::Full, 0).unwrap();
    buffer.dispatched(2, second);
    assert_eq!(
        buffer.next_batch(Flush::All, 0),
        None,
        "two calls in flight"
    );
    assert_eq!(buffer.level().in_flight_calls, 2);
    buffer.settle(1, accepted(0), 0);
    assert_eq!(buffer.next_batch(Flush::All, 0).map(|b| b.spans), Some(3));
}

#[test]
fn answers_export_drop_or_keep_the_batch_once() {
    let mut buffer = filled(buffer((100, 1 << 20), (4, 1 << 20), 4), 16);
    for token in 1..=4 {
        let batch = buffer.next_batch(Flush::All, 0).unwrap();
        buffer.dispatched(token, batch);
    }
    let ok = buffer.settle(1, accepted(1), 0).unwrap();
    assert_eq!(
        (ok.exported, ok.dropped),
        (3, Some((DropReason::Rejected, 1)))
    );
    assert_eq!(buffer.settle(1, accepted(0), 0), None, "settled once");
    let refused = Answer::Failed {
        cause: FailureCause::Refused,
    };
    let failed = buffer.settle(2, refused, 0).unwrap();
    assert_eq!(failed.dropped, Some((DropReason::ExportFailed, 4)));
    assert_eq!(failed.failure, Some(FailureCause::Refused));
    let kept = buffer.settle(3, throttled(None), 0).unwrap();
    assert!(kept.kept && kept.dropped.is_none());
    assert_eq!(buffer.level().buffered_spans, 4);
    let retry = buffer.next_batch(Flush::All, 0).unwrap();
    assert_eq!(
        span_numbers(&retry),
        [9, 10, 11, 12],
        "the same spans again"
    );
    buffer.dispatched(5, retry);
    let exhausted = buffer.settle(5, throttled(None), 0).unwrap();
    assert_eq!(exhausted.dropped, Some((DropReason::RetryExhausted, 4)));
    let partial = buffer.settle(4, accepted(99), 0).unwrap();
    assert_eq!(
        (partial.exported, partial.dropped),
        (0, Some((DropReason::Rejected, 4))),
        "rejected_spans is capped at the batch"
    );
    assert!(buffer.is_empty());
}

#[test]
fn kept_batches_go_only_on_full_flushes_of_everything() {
    let mut buffer = filled(buffer((100, 1 << 20), (2, 1 << 20), 4), 4);
    let batch = buffer.next_batch(Flush::All, 0).unwrap();
    buffer.dispatched(1, batch);
    buffer.settle(1, throttled(None), 0);
    let full = buffer.next_batch(Flush::Full, 0).unwrap();
    assert_eq!(
        span_numbers(&full),
        [3, 4],
        "new spans first on a full flush"
    );
    let all = buffer.next_batch(Flush::All, 0).unwrap();
    assert_eq!(span_numbers(&all), [1, 2]);
}

#[test]
fn a_batch_is_kept_only_while_the_buffer_has_room() {
    let mut buffer = buffer((4, 1 << 20), (2, 1 << 20), 4);
    buffer.push(field(1, 10));
    buffer.push(field(2, 10));
    let batch = buffer.next_batch(Flush::All, 0).unwrap();
    buffer.dispatched(1, batch);
    for n in 3..=5 {
        buffer.push(field(n, 10));
    }
    let settled = buffer.settle(1, throttled(None), 0).unwrap();
    assert_eq!(settled.dropped, Some((DropReason::RetryNoRoom, 2)));
    assert!(!settled.kept);
}

#[test]
fn retry_after_holds_every_call_until_it_passes_capped() {
    let mut cfg = config((100, 1 << 20), (1, 1 << 20), 4);
    cfg.max_retry_delay_ms = 5_000;
    let mut buffer = SpanBuffer::new(&cfg, template());
    for n in 1..=3 {
        buffer.push(field(n, 10));
    }
    let batch = buffer.next_batch(Flush::All, 0).unwrap();
    buffer.dispatched(1, batch);
    buffer.settle(1, throttled(Some(2)), 10 * SECOND);
    assert_eq!(buffer.next_batch(Flush::All, 12 * SECOND - 1), None);
    let retry = buffer.next_batch(Flush::All, 12 * SECOND).unwrap();
    assert_eq!(span_numbers(&retry), [1]);
    buffer.dispatched(2, retry);
    let batch = buffer.next_batch(Flush::All, 12 * SECOND).unwrap();
    buffer.dispatched(3, batch);
    buffer.settle(3, throttled(Some(3600)), 20 * SECOND);
    assert_eq!(buffer.next_batch(Flush::All, 25 * SECOND - 1), None);
    assert!(
        buffer.next_batch(Flush::All, 25 * SECOND).is_some(),
        "capped at 5 s"
    );
}

#[test]
fn a_drain_sends_everything_at_once() {
    let mut buffer = filled(buffer((100, 1 << 20), (2, 1 << 20), 1), 6);
    let batch = buffer.next_batch(Flush::All, 0).unwrap();
    buffer.dispatched(1, batch);
    buffer.settle(1, throttled(Some(60)), 0);
    assert_eq!(buffer.next_batch(Flush::All, 0), None, "Retry-After holds");
    let mut drained = Vec::new();
    let mut token = 10;
    while let Some(batch) = buffer.next_batch(Flush::Drain, 0) {
        drained.push(span_numbers(&batch));
        buffer.dispatched(token, batch);
        token += 1;
    }
    assert_eq!(drained, [vec![1, 2], vec![3, 4], vec![5, 6]]);
}

#[test]
fn dispatch_refusals_are_retryable_failures() {
    let mut buffer = buffer((100, 1 << 20), (2, 1 << 20), 4);
    buffer.push(field(1, 10));
    let batch = buffer.next_batch(Flush::All, 0).unwrap();
    let settled = buffer.dispatch_failed(batch, 0);
    assert!(settled.kept);
    assert_eq!(settled.failure, Some(FailureCause::Dispatch));
    assert_eq!(buffer.level().buffered_spans, 1);
}

#[test]
fn reconfigure_keeps_everything_buffered_and_in_flight() {
    let mut buffer = filled(buffer((4, 1 << 20), (4, 1 << 20), 1), 4);
    let batch = buffer.next_batch(Flush::All, 0).unwrap();
    buffer.dispatched(1, batch);
    for n in 5..=8 {
        buffer.push(field(n, 10));
    }
    buffer.reconfigure(&config((2, 1 << 20), (2, 1 << 20), 1), template());
    assert_eq!(buffer.level().buffered_spans, 4);
    assert_eq!(buffer.level().in_flight_spans, 4);
    assert_eq!(
        buffer.push(field(9, 10)),
        Push::Dropped(DropReason::BufferFull)
    );
    assert_eq!(
        buffer.settle(1, accepted(0), 0).map(|s| s.exported),
        Some(4)
    );
    assert_eq!(buffer.next_batch(Flush::All, 0).map(|b| b.spans), Some(2));
}

/// One step of a random schedule.
#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    Flush(bool),
    Answer(u8, u8),
    Refuse,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3000).prop_map(Op::Push),
        2 => any::<bool>().prop_map(Op::Flush),
        3 => (any::<u8>(), 0u8..6).prop_map(|(pick, kind)| Op::Answer(pick, kind)),
        1 => Just(Op::Refuse),
    ]
}

proptest! {
    /// Whatever happens, every span pushed is buffered, in flight, exported or dropped, and
    /// the buffer never holds more than its bounds.
    #[test]
    fn every_span_is_accounted_for(ops in prop::collection::vec(op(), 1..200)) {
        let mut buffer = buffer((20, 40_000), (6, 16 * 1024), 3);
        let (mut pushed, mut exported, mut dropped) = (0usize, 0usize, 0usize);
        let (mut token, mut now) = (0u32, 0u64);
        let mut tokens: Vec<u32> = Vec::new();
        for op in ops {
            now += SECOND / 10;
            let settled = match op {
                Op::Push(path) => {
                    pushed += 1;
                    if let Push::Dropped(_) = buffer.push(field(1, path)) {
                        dropped += 1;
                    }
                    None
                }
                Op::Flush(all) => {
                    let flush = if all { Flush::All } else { Flush::Full };
                    while let Some(batch) = buffer.next_batch(flush, now) {
                        prop_assert!(batch.body.len() <= 16 * 1024);
                        token += 1;
                        tokens.push(token);
                        buffer.dispatched(token, batch);
                    }
                    None
                }
                Op::Answer(pick, kind) if !tokens.is_empty() => {
                    let t = tokens.remove(usize::from(pick) % tokens.len());
                    let answer = match kind {
                        0 => accepted(0),
                        1 => accepted(u64::from(pick % 4)),
                        2 => throttled(Some(u64::from(pick % 3))),
                        3 => Answer::Retryable { cause: FailureCause::Reset, retry_after: None },
                        4 => Answer::Failed { cause: FailureCause::Refused },
                        _ => throttled(None),
                    };
                    buffer.settle(t, answer, now)
                }
                Op::Answer(..) => None,
                Op::Refuse => buffer
                    .next_batch(Flush::All, now)
                    .map(|batch| buffer.dispatch_failed(batch, now)),
            };
            if let Some(settled) = settled {
                exported += settled.exported;
                dropped += settled.dropped.map_or(0, |(_, n)| n);
            }
            let level = buffer.level();
            prop_assert_eq!(
                pushed,
                exported + dropped + level.buffered_spans + level.in_flight_spans
            );
            prop_assert!(level.buffered_spans <= 20 && level.buffered_bytes <= 40_000);
            prop_assert!(level.in_flight_calls <= 3);
        }
    }
}
