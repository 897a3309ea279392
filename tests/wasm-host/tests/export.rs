//! The export path of the real filter `.wasm` (`make wasm`) under the wasmtime host, with the
//! clock and every answer in the test's hands (docs/export.md): batches cut by the tick and as
//! soon as one is full, the cap on calls in flight, every kind of answer classified, counted
//! and kept once or dropped, `Retry-After`, the buffer's bounds, partial success, the drain on
//! `on_done`, a reconfiguration, and the accounting equation under injected failures.

mod common;

use common::{
    assert_accounting, filter, get, hex, m, metric, spans, sum_prefixed, unsettled,
    upstream_traceparent,
};
use meshtrace_wasm_host::{CallOut, Host, Injection, LogLevel, Reply, Status};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue;
use prost::Message;
use std::collections::BTreeSet;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(100);

/// The filter with a 100 ms flush and `exporter` (JSON members, each after a comma) added.
fn exporter(extra: &str) -> Host {
    filter(&format!(
        r#"{{"service_name":"harness","exporter":{{"flush_interval_ms":100{extra}}}}}"#
    ))
}

/// `n` requests; the ids of the spans they started (hex), as the upstream saw them.
fn requests(host: &mut Host, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| upstream_traceparent(&host.request(get(&[]), 200).unwrap()).parent_id)
        .collect()
}

/// Span ids (hex) in `call`'s body.
fn span_ids(call: &CallOut) -> Vec<String> {
    spans(call).iter().map(|s| hex(&s.span_id)).collect()
}

/// A response with `status` and extra headers.
fn answer(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    Reply::Response {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body,
        trailers: Vec::new(),
    }
}

/// The one call pending; fails if there is not exactly one.
fn the_call(host: &Host) -> CallOut {
    let calls = host.pending_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls.into_iter().next().unwrap()
}

// === batching ===

#[test]
fn full_batches_leave_at_once_and_the_rest_on_the_tick_under_the_cap_on_calls() {
    let mut host = exporter(r#","max_batch_spans":3,"max_calls_in_flight":2,"timeout_ms":700"#);
    let mut propagated = requests(&mut host, 2);
    assert!(host.pending_calls().is_empty(), "no batch is full yet");
    propagated.extend(requests(&mut host, 1));
    assert_eq!(
        host.pending_calls().len(),
        1,
        "the span that filled a batch sent it, without waiting for the tick"
    );
    propagated.extend(requests(&mut host, 5));
    let calls = host.pending_calls();
    assert_eq!(
        calls.iter().map(CallOut::span_count).collect::<Vec<_>>(),
        [3, 3],
        "2 calls in flight at most; 2 spans wait"
    );
    assert_eq!(
        (m(&host, metric::BUFFERED), m(&host, metric::IN_FLIGHT)),
        (2, 6)
    );
    assert_accounting(&host);

    let call = &calls[0];
    assert_eq!(call.cluster, "meshtrace_shim");
    assert_eq!(call.headers.get_str(":method").as_deref(), Some("POST"));
    assert_eq!(call.headers.get_str(":path").as_deref(), Some("/v1/traces"));
    assert_eq!(
        call.headers.get_str("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(call.timeout, Some(Duration::from_millis(700)));
    let resource = call.export_request().unwrap().resource_spans[0]
        .resource
        .clone()
        .unwrap();
    let service = resource
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name");
    let service = service.and_then(|kv| kv.value.clone()?.value);
    assert_eq!(service, Some(StringValue("harness".into())));

    for call in &calls {
        host.reply(call.token, Reply::ok()).unwrap();
    }
    assert!(
        host.pending_calls().is_empty(),
        "a freed slot sends full batches only"
    );
    host.advance(TICK).unwrap();
    let last = the_call(&host);
    assert_eq!(last.span_count(), 2, "the tick sends what is left");
    host.reply(last.token, Reply::ok()).unwrap();

    let mut exported: Vec<String> = calls.iter().chain([&last]).flat_map(span_ids).collect();
    exported.sort();
    propagated.sort();
    assert_eq!(exported, propagated, "every propagated span exported once");
    assert_eq!(
        (m(&host, metric::EXPORTED), m(&host, metric::CALLS_OK)),
        (8, 3)
    );
    assert_eq!(unsettled(&host), 0);
    assert_accounting(&host);
}

// === answers ===

/// What each answer does, Envoy's own local replies included: the cause counted, and the
/// batch kept for one more try (sent again whole on the next tick) or dropped at once.
#[test]
fn every_answer_is_classified_counted_and_the_batch_kept_once_or_dropped() {
    #[rustfmt::skip]
    let table: Vec<(Reply, &str, bool)> = vec![
        (Reply::ConnectFailure,   "connect",   true),
        (Reply::Timeout,          "timeout",   true),
        (Reply::Reset,            "reset",     true),
        (Reply::status(503),      "throttled", true),
        (Reply::status(429),      "throttled", true),
        (Reply::status(502),      "gateway",   true),
        (Reply::status(504),      "gateway",   true),
        (Reply::status(400),      "refused",   false),
        (Reply::status(413),      "refused",   false),
        (Reply::status(500),      "refused",   false),
        (Reply::status(301),      "refused",   false),
    ];
    for (reply, cause, kept) in table {
        let mut host = exporter("");
        requests(&mut host, 3);
        host.advance(TICK).unwrap();
        let first = the_call(&host);
        host.reply(first.token, reply.clone()).unwrap();
        let failed = (
            m(&host, metric::CALLS_FAILED),
            m(&host, &metric::calls_failed(cause)),
            m(&host, metric::CALLS_OK),
        );
        assert_eq!(failed, (1, 1, 0), "{reply:?}");
        assert_accounting(&host);
        host.advance(TICK).unwrap();
        if kept {
            assert_eq!(m(&host, metric::RETRIED), 1, "{reply:?}");
            let again = the_call(&host);
            assert_eq!(again.body, first.body, "{reply:?}: the same batch, whole");
            host.reply(again.token, Reply::ok()).unwrap();
            assert_eq!(m(&host, metric::EXPORTED), 3, "{reply:?}");
            assert_eq!(sum_prefixed(&host, metric::DROPPED), 0, "{reply:?}");
        } else {
            assert!(host.pending_calls().is_empty(), "{reply:?}: not retried");
            assert_eq!(m(&host, metric::RETRIED), 0, "{reply:?}");
            assert_eq!(m(&host, metric::DROPPED_EXPORT_FAILED), 3, "{reply:?}");
        }
        assert_eq!(unsettled(&host), 0, "{reply:?}");
        assert_accounting(&host);
    }
}

#[test]
fn a_second_failure_drops_the_batch_and_failures_are_logged_rate_limited() {
    let mut host = exporter("");
    for round in 0..5 {
        requests(&mut host, 2);
        host.advance(TICK).unwrap();
        for call in host.pending_calls() {
            host.reply(call.token, Reply::ConnectFailure).unwrap();
        }
        assert_accounting(&host);
        assert!(round > 0 || m(&host, metric::BUFFERED) == 2);
    }
    host.advance(TICK).unwrap();
    for call in host.pending_calls() {
        host.reply(call.token, Reply::ConnectFailure).unwrap();
    }
    assert_eq!(m(&host, metric::DROPPED_RETRY_EXHAUSTED), 10);
    assert_eq!(m(&host, metric::RETRIED), 5);
    assert_eq!(unsettled(&host), 0);
    // 10 failed calls and 5 drops within 600 ms of host time: one line of each.
    let warnings: Vec<_> = host
        .logs()
        .iter()
        .filter(|l| l.level >= LogLevel::Warn)
        .map(|l| l.message.clone())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].contains("export call failed (connect"),
        "{warnings:#?}"
    );
    assert!(
        warnings[1].contains("2 spans dropped (retry_exhausted)"),
        "{warnings:#?}"
    );
    let info: Vec<_> = host
        .logs()
        .iter()
        .filter(|l| l.level == LogLevel::Info)
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        info,
        ["root context 1 configured"],
        "nothing per request at info"
    );
    // Ten seconds later, the next failure is logged with the count of those not logged.
    host.advance(Duration::from_secs(10)).unwrap();
    requests(&mut host, 1);
    host.advance(TICK).unwrap();
    let call = the_call(&host);
    host.reply(call.token, Reply::ConnectFailure).unwrap();
    let summary = host.logs_containing(LogLevel::Warn, "similar failures not logged");
    assert!(
        summary.last().unwrap().message.contains("(9 similar"),
        "{summary:#?}"
    );
    assert_accounting(&host);
}

#[test]
fn retry_after_holds_every_call_until_it_has_passed_within_the_cap() {
    let mut host = exporter(r#","max_retry_delay_ms":5000"#);
    let first = requests(&mut host, 2);
    host.advance(TICK).unwrap();
    let call = the_call(&host);
    host.reply(call.token, answer(503, &[("retry-after", "2")], Vec::new()))
        .unwrap();
    let later = requests(&mut host, 3);
    // Answered at 100 ms: the ticks up to 2,000 ms find it holding.
    host.advance(Duration::from_millis(1999)).unwrap();
    assert!(
        host.pending_calls().is_empty(),
        "no call of this VM before Retry-After"
    );
    assert_eq!(m(&host, metric::BUFFERED), 5);
    host.advance(Duration::from_millis(1)).unwrap();
    let calls = host.pending_calls();
    assert_eq!(
        calls.iter().map(span_ids).collect::<Vec<_>>(),
        [first, later],
        "the kept batch goes first, then the spans that waited"
    );
    for call in calls {
        host.reply(call.token, Reply::ok()).unwrap();
    }
    assert_eq!(m(&host, metric::EXPORTED), 5);

    // An hour is capped at max_retry_delay_ms; an HTTP date is read too.
    for retry_after in ["3600", "Fri, 01 Jan 2100 00:00:00 GMT"] {
        requests(&mut host, 1);
        host.advance(TICK).unwrap();
        let call = the_call(&host);
        host.reply(
            call.token,
            answer(429, &[("retry-after", retry_after)], Vec::new()),
        )
        .unwrap();
        host.advance(Duration::from_millis(4900)).unwrap();
        assert!(host.pending_calls().is_empty(), "{retry_after}");
        host.advance(TICK).unwrap();
        let again = the_call(&host);
        host.reply(again.token, Reply::ok()).unwrap();
    }
    assert_eq!(m(&host, metric::EXPORTED), 7);
    assert_eq!(m(&host, &metric::calls_failed("throttled")), 3);
    assert_accounting(&host);
}

#[test]
fn partial_success_counts_the_rejected_spans_and_retries_nothing() {
    let mut host = exporter("");
    requests(&mut host, 5);
    host.advance(TICK).unwrap();
    let call = the_call(&host);
    let body = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "2 spans too old".into(),
        }),
    };
    host.reply(call.token, answer(200, &[], body.encode_to_vec()))
        .unwrap();
    host.advance(TICK).unwrap();
    assert!(host.pending_calls().is_empty(), "nothing retried");
    assert_eq!(
        (
            m(&host, metric::CALLS_OK),
            m(&host, metric::EXPORTED),
            m(&host, metric::DROPPED_REJECTED),
        ),
        (1, 3, 2)
    );
    assert_eq!(
        host.logs_containing(LogLevel::Warn, "2 spans too old")
            .len(),
        1
    );
    assert_accounting(&host);
}

// === bounds ===

#[test]
fn the_buffer_is_bounded_by_spans_and_by_bytes_and_drops_are_counted() {
    // By spans: 4 buffered at most, one batch of 4 in flight on top.
    let mut host =
        exporter(r#","max_buffered_spans":4,"max_batch_spans":4,"max_calls_in_flight":1"#);
    requests(&mut host, 10);
    assert_eq!(
        (
            m(&host, metric::IN_FLIGHT),
            m(&host, metric::BUFFERED),
            m(&host, metric::DROPPED_BUFFER_FULL)
        ),
        (4, 4, 2)
    );
    assert_accounting(&host);
    // A retryable failure finds no room for the batch: dropped, counted apart.
    let call = the_call(&host);
    host.reply(call.token, Reply::ConnectFailure).unwrap();
    assert_eq!(m(&host, metric::DROPPED_RETRY_NO_ROOM), 4);
    assert_eq!(m(&host, metric::RETRIED), 0);
    assert_accounting(&host);

    // By bytes: 16 KiB buffered at most, whatever the span count.
    let mut host = exporter(
        r#","max_buffered_bytes":16384,"max_batch_bytes":16384,"max_buffered_spans":10000,"max_batch_spans":10000,"max_calls_in_flight":1"#,
    );
    requests(&mut host, 400);
    let (buffered, bytes) = (m(&host, metric::BUFFERED), m(&host, metric::BUFFERED_BYTES));
    assert!(bytes <= 16384, "{bytes} bytes buffered");
    // Full: a span is under 400 bytes, so one more would not have fitted.
    assert!(bytes > 16384 - 400, "full: {buffered} spans, {bytes} bytes");
    assert_eq!(host.pending_calls().len(), 1, "the cap holds the rest");
    assert_eq!(
        m(&host, metric::DROPPED_BUFFER_FULL),
        400 - buffered - m(&host, metric::IN_FLIGHT)
    );
    assert_accounting(&host);
}

// === the end of a configuration ===

#[test]
fn on_done_sends_everything_at_once_and_finishes_when_every_answer_came() {
    let mut host = exporter(r#","max_batch_spans":2,"max_calls_in_flight":1"#);
    let sent: BTreeSet<String> = requests(&mut host, 2).into_iter().collect();
    let call = the_call(&host);
    host.reply(
        call.token,
        answer(503, &[("retry-after", "60")], Vec::new()),
    )
    .unwrap();
    let mut all = sent.clone();
    all.extend(requests(&mut host, 5));
    assert!(host.pending_calls().is_empty(), "Retry-After holds");

    assert!(!host.done().unwrap(), "spans left: the root context waits");
    let calls = host.pending_calls();
    assert_eq!(
        calls.iter().map(CallOut::span_count).collect::<Vec<_>>(),
        [2, 2, 2, 1],
        "everything at once, past Retry-After and the cap"
    );
    assert!(
        !host
            .logs_containing(LogLevel::Info, "7 in flight; draining")
            .is_empty(),
        "{:#?}",
        host.logs()
    );
    // A retryable failure while draining gets its one retry at once.
    host.reply(calls[1].token, Reply::ConnectFailure).unwrap();
    let retried = host
        .pending_calls()
        .into_iter()
        .find(|c| c.body == calls[1].body)
        .expect("retried at once");
    for call in host.pending_calls() {
        assert!(!host.root_done());
        host.reply(call.token, Reply::ok()).unwrap();
    }
    assert!(host.root_done(), "proxy_done once every span settled");
    assert_eq!(host.logs_containing(LogLevel::Info, "drained").len(), 1);
    let exported: BTreeSet<String> = calls
        .iter()
        .filter(|c| c.token != calls[1].token)
        .chain([&retried])
        .flat_map(span_ids)
        .collect();
    assert_eq!(exported, all);
    assert_eq!(m(&host, metric::EXPORTED), 7);
    assert_accounting(&host);

    let mut idle = exporter("");
    assert!(idle.done().unwrap(), "nothing left: done at once");
}

#[test]
fn a_reconfiguration_keeps_every_span_and_sends_the_pending_ones_under_the_new_resource() {
    let mut host = exporter(r#","max_batch_spans":2"#);
    let in_flight = requests(&mut host, 2);
    let pending = requests(&mut host, 1);
    let first = the_call(&host);
    host.reconfigure(r#"{"service_name":"renamed","exporter":{"flush_interval_ms":100}}"#)
        .unwrap();
    let calls = host.pending_calls();
    assert_eq!(calls.len(), 2, "the pending span left at once");
    let second = calls.iter().find(|c| c.token != first.token).unwrap();
    assert_eq!(span_ids(second), pending);
    let service = |call: &CallOut| {
        let resource = call.export_request().unwrap().resource_spans[0]
            .resource
            .clone()
            .unwrap();
        resource
            .attributes
            .into_iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value?.value)
    };
    assert_eq!(service(&first), Some(StringValue("harness".into())));
    assert_eq!(service(second), Some(StringValue("renamed".into())));
    for call in calls {
        host.reply(call.token, Reply::ok()).unwrap();
    }
    assert_eq!(span_ids(&first), in_flight);
    assert_eq!(m(&host, metric::EXPORTED), 3);
    assert_accounting(&host);
}

// === accounting under injected failures ===

/// Random schedules of requests, ticks, every kind of answer, refused dispatches (injected
/// `proxy_http_call` failures: Envoy's circuit-breaker overflow), reconfigurations and a final
/// `on_done`: the equation holds after every step, and at the end every span is exported or
/// dropped with a reason, none left anywhere.
#[test]
fn the_equation_holds_under_injected_failures_and_every_span_settles() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    for seed in 0..4 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut host = exporter(
            r#","max_buffered_spans":12,"max_batch_spans":4,"max_calls_in_flight":2,"timeout_ms":250"#,
        );
        for step in 0..1_500 {
            let result = match rng.random_range(0..12) {
                0..=4 => host.request(get(&[]), 200).map(drop),
                5 | 6 => host.advance(Duration::from_millis(rng.random_range(1..120))),
                7 => host.inject(Injection::new("proxy_http_call", Status::InternalFailure).times(1)),
                8 if step % 50 == 0 => host.reconfigure(format!(
                    r#"{{"service_name":"s{step}","exporter":{{"flush_interval_ms":100,"max_buffered_spans":12,"max_batch_spans":4,"max_calls_in_flight":2}}}}"#
                )),
                _ => match host.pending_calls().first() {
                    Some(call) => {
                        let reply = match rng.random_range(0..8) {
                            0 | 1 => Reply::ok(),
                            2 => Reply::ConnectFailure,
                            3 => Reply::Reset,
                            4 => answer(503, &[("retry-after", "1")], Vec::new()),
                            5 => Reply::status(400),
                            6 => answer(
                                200,
                                &[],
                                ExportTraceServiceResponse {
                                    partial_success: Some(ExportTracePartialSuccess {
                                        rejected_spans: 1,
                                        error_message: String::new(),
                                    }),
                                }
                                .encode_to_vec(),
                            ),
                            _ => Reply::Never,
                        };
                        host.reply(call.token, reply)
                    }
                    None => Ok(()),
                },
            };
            result.unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            assert_accounting(&host);
        }
        // The end: every answer comes, and the configuration goes away.
        host.auto_reply(|_| (Duration::from_millis(5), Reply::ok()));
        for call in host.pending_calls() {
            host.reply_after(call.token, Duration::from_millis(5), Reply::ok())
                .unwrap();
        }
        let done = host.done().unwrap();
        host.advance(Duration::from_secs(2)).unwrap();
        assert!(done || host.root_done(), "seed {seed}: the drain finished");
        assert_eq!(unsettled(&host), 0, "seed {seed}");
        assert_accounting(&host);
        for reason in [
            metric::DROPPED_BUFFER_FULL,
            metric::DROPPED_EXPORT_FAILED,
            metric::DROPPED_REJECTED,
        ] {
            assert!(m(&host, reason) > 0, "seed {seed}: no {reason}");
        }
        assert!(
            m(&host, &metric::calls_failed("dispatch")) > 0,
            "seed {seed}"
        );
        assert!(m(&host, metric::EXPORTED) > 0, "seed {seed}");
    }
}
