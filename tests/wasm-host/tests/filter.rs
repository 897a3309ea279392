//! The real filter `.wasm` (`make wasm`) under the wasmtime host: configuration, propagation,
//! batching, export outcomes, accounting, failure injection, determinism, several VMs.

mod common;

use common::{assert_accounting, filter, get, hex, m, metric, spans, upstream_traceparent};
use meshtrace_wasm_host::{
    HeaderMap, Host, HostError, HostOptions, Injection, LogLevel, Process, Reply, Status,
    filter_module,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue;
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
/// Flush every 100 ms, so tests advance the clock in small steps.
const FAST: &str = r#"{"service_name":"harness","exporter":{"flush_interval_ms":100}}"#;

// === configuration ===

#[rustfmt::skip]
#[test]
fn a_bad_configuration_is_refused_naming_the_field() {
    let module = filter_module().unwrap();
    let cases = [
        (r#"{"exporter":{"timeout_ms":0}}"#, "exporter.timeout_ms"),
        (r#"{"exporter":{"max_batch_spans":5000}}"#, "exporter.max_batch_spans"),
        (r#"{"servce_name":"x"}"#, "servce_name"),
        (r#"{"exporter":{"path":"v1"}}"#, "exporter.path"),
        ("not json", "`.`"),
    ];
    for (config, field) in cases {
        match Host::start(&module, HostOptions::default().config(config)) {
            Err(HostError::Refused { callback, log }) => {
                assert_eq!(callback, "proxy_on_configure");
                let line = log.iter().find(|l| l.contains("invalid plugin configuration"));
                let line = line.unwrap_or_else(|| panic!("{config}: no error logged: {log:?}"));
                assert!(line.starts_with("[Error]") && line.contains(field), "{config}: {line}");
            }
            other => panic!("{config} should be refused, got {other:?}"),
        }
    }
}

#[test]
fn a_good_configuration_sets_the_flush_tick() {
    let host = filter(r#"{"exporter":{"flush_interval_ms":250}}"#);
    assert_eq!(host.tick_period(), Some(Duration::from_millis(250)));
    let defaults = filter("");
    assert_eq!(defaults.tick_period(), Some(Duration::from_secs(1)));
}

// === propagation ===

/// Request headers of one format, as `(name, value)`.
type Headers = Vec<(&'static str, Vec<u8>)>;

/// A propagation format as the tests see it, written independently of the filter's code.
/// Issue 4 adds B3 and Jaeger: one more implementation each, and every test below covers them.
trait Format {
    fn name(&self) -> &'static str;
    /// Request headers carrying a parent context.
    fn parent(&self, trace: &str, span: &str, sampled: bool) -> Headers;
    /// Malformed values of this format's headers, each with why it is malformed.
    fn malformed(&self) -> Vec<(Headers, &'static str)>;
    /// `(trace id, our span id, sampled)` from the upstream request.
    fn read(&self, upstream: &HeaderMap) -> (String, String, bool);
}

struct W3c;

impl Format for W3c {
    fn name(&self) -> &'static str {
        "w3c"
    }
    fn parent(&self, trace: &str, span: &str, sampled: bool) -> Headers {
        let flags = if sampled { "01" } else { "00" };
        vec![(
            "traceparent",
            format!("00-{trace}-{span}-{flags}").into_bytes(),
        )]
    }
    #[rustfmt::skip]
    fn malformed(&self) -> Vec<(Headers, &'static str)> {
        let h = |v: &[u8]| vec![("traceparent", v.to_vec())];
        vec![
            (h(b""), "empty"),
            (h(b"00-xyz"), "too short"),
            (h(format!("00-{}-{PARENT}-01", "0".repeat(32)).as_bytes()), "zero trace id"),
            (h(format!("00-{TRACE}-0000000000000000-01").as_bytes()), "zero span id"),
            (h(format!("ff-{TRACE}-{PARENT}-01").as_bytes()), "version ff"),
            (h(format!("00-{}-{PARENT}-01", TRACE.to_uppercase()).as_bytes()), "upper case"),
            (h(b"00-\xff\xfe-\x80"), "not UTF-8"),
            (h(format!("00-{TRACE}-{PARENT}-01-extra").as_bytes()), "version 00 with extra field"),
            (h(&[b'0'; 70_000]), "70 kB"),
        ]
    }
    fn read(&self, upstream: &HeaderMap) -> (String, String, bool) {
        let tp = upstream_traceparent(upstream);
        (tp.trace_id.clone(), tp.parent_id.clone(), tp.sampled())
    }
}

const FORMATS: &[&dyn Format] = &[&W3c];

/// Sends `format`'s parent context through a fresh filter; checks the trace and the sampled
/// flag are continued under a new span id, which is returned.
fn continued(format: &dyn Format, sampled: bool) -> (Host, String) {
    let mut host = filter(FAST);
    let parent = format.parent(TRACE, PARENT, sampled);
    let headers: Vec<(&str, &[u8])> = parent.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let upstream = host.request(get(&headers), 200).unwrap();
    let (trace, ours, flag) = format.read(&upstream);
    assert_eq!(
        (trace.as_str(), flag),
        (TRACE, sampled),
        "{}",
        format.name()
    );
    assert_ne!(ours, PARENT, "{}: our span is new", format.name());
    (host, ours)
}

#[test]
fn a_sampled_parent_is_continued_and_its_span_exported() {
    for format in FORMATS {
        let (mut host, ours) = continued(*format, true);
        host.advance(Duration::from_millis(100)).unwrap();
        let calls = host.pending_calls();
        assert_eq!(calls.len(), 1, "{}", format.name());
        let span = &spans(&calls[0])[0];
        assert_eq!(hex(&span.trace_id), TRACE);
        assert_eq!(
            hex(&span.span_id),
            ours,
            "{}: the exported span is the propagated one",
            format.name()
        );
        assert_eq!(hex(&span.parent_span_id), PARENT);
        assert_eq!(span.name, "GET");
        assert_eq!(m(&host, metric::EXTRACTED), 1);
    }
}

#[test]
fn an_unsampled_parent_stays_unsampled_and_is_not_exported() {
    for format in FORMATS {
        let (mut host, _) = continued(*format, false);
        host.advance(Duration::from_secs(1)).unwrap();
        assert!(host.pending_calls().is_empty(), "{}", format.name());
        assert_eq!(m(&host, metric::NOT_SAMPLED), 1);
        assert_accounting(&host);
    }
}

#[test]
fn no_or_malformed_context_starts_a_new_sampled_trace() {
    for format in FORMATS {
        let mut host = filter(FAST);
        let upstream = host.request(get(&[]), 200).unwrap();
        let (trace, _, sampled) = format.read(&upstream);
        assert!(sampled && trace != TRACE, "{}: new root", format.name());
        for (headers, why) in format.malformed() {
            let headers: Vec<(&str, &[u8])> =
                headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let upstream = host
                .request(get(&headers), 200)
                .unwrap_or_else(|e| panic!("{why}: {e}"));
            let (trace, ours, sampled) = format.read(&upstream);
            assert!(sampled, "{}: {why}", format.name());
            assert!(
                trace != TRACE && ours != PARENT,
                "{}: {why}: fresh ids",
                format.name()
            );
        }
        let malformed = format.malformed().len() as i128;
        assert_eq!(m(&host, metric::MALFORMED), malformed, "{}", format.name());
        host.advance(Duration::from_millis(100)).unwrap();
        let exported: Vec<_> = host.pending_calls().iter().flat_map(spans).collect();
        assert_eq!(exported.len() as i128, malformed + 1);
        assert!(
            exported.iter().all(|s| s.parent_span_id.is_empty()),
            "all roots"
        );
    }
}

// === batching and export ===

#[test]
fn spans_are_batched_and_flushed_by_the_tick() {
    let config = r#"{"service_name":"harness","exporter":{"flush_interval_ms":100,"max_batch_spans":3,"max_calls_in_flight":2,"timeout_ms":700}}"#;
    let mut host = filter(config);
    let mut propagated = Vec::new();
    for _ in 0..8 {
        propagated.push(upstream_traceparent(&host.request(get(&[]), 200).unwrap()).parent_id);
    }
    host.advance(Duration::from_millis(99)).unwrap();
    assert!(
        host.pending_calls().is_empty(),
        "nothing before the first tick"
    );
    host.advance(Duration::from_millis(1)).unwrap();
    let calls = host.pending_calls();
    assert_eq!(
        calls.iter().map(|c| c.span_count()).collect::<Vec<_>>(),
        [3, 3],
        "2 calls in flight at most"
    );
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
    host.advance(Duration::from_millis(100)).unwrap();
    let last = host.pending_calls();
    assert_eq!(last.iter().map(|c| c.span_count()).collect::<Vec<_>>(), [2]);
    host.reply(last[0].token, Reply::ok()).unwrap();

    let mut exported: Vec<String> = calls
        .iter()
        .chain(&last)
        .flat_map(spans)
        .map(|s| hex(&s.span_id))
        .collect();
    exported.sort();
    propagated.sort();
    assert_eq!(exported, propagated, "every propagated span exported once");
    assert_eq!(
        (
            m(&host, metric::EXPORTED),
            m(&host, metric::CALLS_OK),
            m(&host, metric::PENDING)
        ),
        (8, 3, 0)
    );
    assert_accounting(&host);
}

#[test]
fn a_failed_export_drops_and_counts_its_spans_and_logs_once() {
    // Envoy's own answers for a refused connection (503) and a timeout (504), and a plain 500.
    for reply in [Reply::ConnectFailure, Reply::Timeout, Reply::status(500)] {
        let mut host = filter(FAST);
        for _ in 0..3 {
            host.request(get(&[]), 200).unwrap();
        }
        host.advance(Duration::from_millis(100)).unwrap();
        let token = host.pending_calls()[0].token;
        host.reply(token, reply.clone()).unwrap();
        assert_eq!(m(&host, metric::DROPPED_EXPORT_FAILED), 3, "{reply:?}");
        assert_eq!(m(&host, metric::CALLS_FAILED), 1, "{reply:?}");
        assert_eq!(
            host.logs_containing(LogLevel::Warn, "3 spans dropped")
                .len(),
            1,
            "{reply:?}"
        );
        assert_accounting(&host);
    }
}

#[test]
fn an_unanswered_call_times_out_at_its_deadline() {
    let mut host = filter(r#"{"exporter":{"flush_interval_ms":100,"timeout_ms":300}}"#);
    host.request(get(&[]), 200).unwrap();
    host.advance(Duration::from_millis(100)).unwrap();
    host.advance(Duration::from_millis(299)).unwrap();
    assert_eq!(m(&host, metric::PENDING), 1, "in flight until the deadline");
    host.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(m(&host, metric::DROPPED_EXPORT_FAILED), 1);
    let (_, reply) = host.answered_calls().last().unwrap();
    assert_eq!(*reply, Reply::Timeout);
    assert_accounting(&host);
}

#[test]
fn a_reply_slower_than_the_timeout_loses_to_it() {
    let mut host = filter(r#"{"exporter":{"flush_interval_ms":100,"timeout_ms":300}}"#);
    host.auto_reply(|_| (Duration::from_millis(500), Reply::ok()));
    host.request(get(&[]), 200).unwrap();
    host.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(
        (
            m(&host, metric::EXPORTED),
            m(&host, metric::DROPPED_EXPORT_FAILED)
        ),
        (0, 1)
    );
}

/// Envoy's `onHttpCallFailure` (stream reset after the response began, or a response over the
/// buffer limit) calls back with no headers; reading `:status` then answers `BadArgument`,
/// which the proxy-wasm SDK's `get_map_value_bytes` turns into a panic. The filter must not
/// read the map when `num_headers` is 0.
#[test]
fn a_reset_call_out_is_a_counted_failure_not_a_trap() {
    let mut host = filter(FAST);
    host.request(get(&[]), 200).unwrap();
    host.advance(Duration::from_millis(100)).unwrap();
    let token = host.pending_calls()[0].token;
    host.reply(token, Reply::Reset)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m(&host, metric::DROPPED_EXPORT_FAILED), 1);
    assert_accounting(&host);
}

#[test]
fn a_refused_dispatch_is_a_counted_failure() {
    // Unknown cluster (Envoy: BadArgument at once) and a circuit-breaker overflow
    // (InternalFailure, injected).
    let mut unknown =
        filter(r#"{"exporter":{"flush_interval_ms":100,"cluster":"not_configured"}}"#);
    unknown.request(get(&[]), 200).unwrap();
    unknown.advance(Duration::from_millis(100)).unwrap();
    assert_eq!(m(&unknown, metric::DROPPED_EXPORT_FAILED), 1);
    assert_eq!(
        unknown.logs_containing(LogLevel::Warn, "BadArgument").len(),
        1
    );

    let mut overflow = filter(FAST);
    overflow
        .inject(Injection::new("proxy_http_call", Status::InternalFailure).times(1))
        .unwrap();
    for _ in 0..2 {
        overflow.request(get(&[]), 200).unwrap();
        overflow.advance(Duration::from_millis(100)).unwrap();
    }
    assert_eq!(m(&overflow, metric::DROPPED_EXPORT_FAILED), 1);
    assert_eq!(
        overflow.pending_calls().len(),
        1,
        "the next flush goes through"
    );
    assert_accounting(&overflow);
}

#[test]
fn a_full_buffer_drops_and_counts() {
    let mut host = filter(
        r#"{"exporter":{"flush_interval_ms":100,"max_buffered_spans":4,"max_batch_spans":4}}"#,
    );
    for _ in 0..6 {
        host.request(get(&[]), 200).unwrap();
    }
    assert_eq!(
        (
            m(&host, metric::DROPPED_BUFFER_FULL),
            m(&host, metric::PENDING)
        ),
        (2, 4)
    );
    assert_accounting(&host);
}

/// Random interleavings of requests (sampled, unsampled, new), ticks and every kind of answer:
/// `spans_started = not_sampled + exported + dropped_* + pending` after every step.
#[test]
fn the_accounting_invariant_holds_through_random_interleavings() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(10);
    let config = r#"{"exporter":{"flush_interval_ms":50,"max_buffered_spans":16,"max_batch_spans":5,"max_calls_in_flight":2,"timeout_ms":200}}"#;
    let mut host = filter(config);
    for step in 0..3_000 {
        match rng.random_range(0..10) {
            0..=5 => {
                let flags = if rng.random_bool(0.3) { "00" } else { "01" };
                let parent = format!("00-{TRACE}-{PARENT}-{flags}");
                let headers = if rng.random_bool(0.5) {
                    get(&[("traceparent", parent.as_bytes())])
                } else {
                    get(&[])
                };
                host.request(headers, 200).unwrap();
            }
            6 | 7 => host
                .advance(Duration::from_millis(rng.random_range(1..80)))
                .unwrap(),
            _ => {
                if let Some(call) = host.pending_calls().first() {
                    let reply = match rng.random_range(0..4) {
                        0 => Reply::ok(),
                        1 => Reply::status(503),
                        2 => Reply::ConnectFailure,
                        _ => Reply::Reset,
                    };
                    host.reply(call.token, reply)
                        .unwrap_or_else(|e| panic!("step {step}: {e}"));
                }
            }
        }
        assert_accounting(&host);
    }
    assert!(m(&host, metric::EXPORTED) > 0 && m(&host, metric::DROPPED_EXPORT_FAILED) > 0);
    assert!(m(&host, metric::DROPPED_BUFFER_FULL) > 0 && m(&host, metric::NOT_SAMPLED) > 0);
}

// === failure injection ===

/// Every host call the filter makes on the request and export paths, made to answer each
/// failure status in turn. A trap happens exactly where the proxy-wasm SDK 0.2.5 panics on a
/// status it does not expect (`hostcalls.rs`: `panic!("unexpected status")`), or where rand
/// panics. Envoy itself never answers these statuses to these calls in these phases (the one
/// Envoy does answer, `BadArgument` on a reset call-out's headers, is handled: see
/// `a_reset_call_out_is_a_counted_failure_not_a_trap`); the table pins the behaviour so that
/// a change in the filter or the SDK shows up.
#[test]
fn injected_host_failures_degrade_or_trap_exactly_where_the_sdk_panics() {
    let calls = [
        "proxy_get_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_get_current_time_nanoseconds",
        "proxy_increment_metric",
        "proxy_http_call",
        "proxy_log",
        "random_get",
    ];
    let statuses = [
        Status::NotFound,
        Status::BadArgument,
        Status::InternalFailure,
    ];
    let mut outcomes = Vec::new();
    for call in calls {
        for status in statuses {
            let mut host = filter(FAST);
            host.tolerate("proxy_increment_metric");
            host.inject(Injection::new(call, status)).unwrap();
            let run = (|| -> Result<(), HostError> {
                host.request(
                    get(&[("traceparent", format!("00-{TRACE}-{PARENT}-01").as_bytes())]),
                    200,
                )?;
                host.advance(Duration::from_millis(100))?;
                // A failed export makes the filter log a warning.
                for call in host.pending_calls() {
                    host.reply(call.token, Reply::status(503))?;
                }
                Ok(())
            })();
            let outcome = match run {
                Ok(()) => "ok".to_owned(),
                Err(HostError::Trap { callback, .. }) => format!("trap in {callback}"),
                Err(e) => panic!("{call} {status:?}: {e}"),
            };
            outcomes.push(format!("{call} {status:?}: {outcome}"));
        }
    }
    let expected = [
        "proxy_get_header_map_value NotFound: ok",
        "proxy_get_header_map_value BadArgument: trap in proxy_on_request_headers",
        "proxy_get_header_map_value InternalFailure: trap in proxy_on_request_headers",
        "proxy_replace_header_map_value NotFound: trap in proxy_on_request_headers",
        "proxy_replace_header_map_value BadArgument: trap in proxy_on_request_headers",
        "proxy_replace_header_map_value InternalFailure: trap in proxy_on_request_headers",
        "proxy_get_current_time_nanoseconds NotFound: trap in proxy_on_request_headers",
        "proxy_get_current_time_nanoseconds BadArgument: trap in proxy_on_request_headers",
        "proxy_get_current_time_nanoseconds InternalFailure: trap in proxy_on_request_headers",
        "proxy_increment_metric NotFound: ok",
        "proxy_increment_metric BadArgument: ok",
        "proxy_increment_metric InternalFailure: trap in proxy_on_request_headers",
        "proxy_http_call NotFound: trap in proxy_on_tick",
        "proxy_http_call BadArgument: ok",
        "proxy_http_call InternalFailure: ok",
        // `log::warn!` on the failed export goes through the SDK's `hostcalls::log`.
        "proxy_log NotFound: trap in proxy_on_http_call_response",
        "proxy_log BadArgument: trap in proxy_on_http_call_response",
        "proxy_log InternalFailure: trap in proxy_on_http_call_response",
        // rand's ThreadRng panics when getrandom fails (WASI answers EIO here).
        "random_get NotFound: trap in proxy_on_request_headers",
        "random_get BadArgument: trap in proxy_on_request_headers",
        "random_get InternalFailure: trap in proxy_on_request_headers",
    ];
    assert_eq!(outcomes, expected);
}

#[test]
fn a_trap_names_the_host_call_and_the_panic_and_leaves_the_vm_dead() {
    let mut host = filter(FAST);
    host.inject(
        Injection::new("proxy_get_header_map_value", Status::BadArgument).when_key(":path"),
    )
    .unwrap();
    let error = host.request(get(&[]), 200).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("proxy_on_request_headers"), "{text}");
    assert!(
        text.contains("proxy_get_header_map_value(\":path\") → BadArgument (injected)"),
        "{text}"
    );
    assert!(text.contains("unexpected status: 2"), "{text}");
    assert!(matches!(
        host.request(get(&[]), 200),
        Err(HostError::Dead(_))
    ));
}

#[test]
fn non_utf8_and_oversized_request_lines_are_recorded_lossily() {
    let mut host = filter(FAST);
    let long_path = format!("/{}", "a".repeat(100_000));
    host.request(
        [(":method", &b"G\xffT"[..]), (":path", b"/caf\xe9?q=\xff")],
        200,
    )
    .unwrap();
    host.request(
        [
            (":method", b"GET".as_slice()),
            (":path", long_path.as_bytes()),
        ],
        200,
    )
    .unwrap();
    host.request([(":status", b"x".as_slice())], 200).unwrap();
    let stream = host.open_stream().unwrap();
    host.request_headers(stream, get(&[]), true).unwrap();
    host.response_headers(stream, [(":status", &b"\xff\xfe"[..])], true)
        .unwrap();
    host.end_stream(stream).unwrap();
    host.advance(Duration::from_millis(100)).unwrap();
    let exported: Vec<_> = host.pending_calls().iter().flat_map(spans).collect();
    assert_eq!(exported.len(), 4);
    assert!(exported.iter().all(|s| s.name.len() <= 4_096));
}

// === determinism and VMs ===

#[test]
fn the_same_seed_gives_the_same_ids_and_bodies() {
    let run = |seed: u64| {
        let module = filter_module().unwrap();
        let mut host =
            Host::start(&module, HostOptions::default().config(FAST).seed(seed)).unwrap();
        let ids: Vec<String> = (0..5)
            .map(|_| upstream_traceparent(&host.request(get(&[]), 200).unwrap()).parent_id)
            .collect();
        host.advance(Duration::from_millis(100)).unwrap();
        (ids, host.pending_calls()[0].body.clone())
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}

#[test]
fn metrics_are_summed_over_the_vms_of_a_process_and_ticks_are_per_vm() {
    let module = filter_module().unwrap();
    let process = Process::new();
    let mut workers: Vec<Host> = (0..2)
        .map(|seed| {
            Host::start(
                &module,
                HostOptions::default()
                    .config(FAST)
                    .seed(seed)
                    .in_process(&process),
            )
            .unwrap()
        })
        .collect();
    for (i, worker) in workers.iter_mut().enumerate() {
        for _ in 0..=i {
            worker.request(get(&[]), 200).unwrap();
        }
        worker.advance(Duration::from_millis(100)).unwrap();
        assert_eq!(
            worker.pending_calls().len(),
            1,
            "each VM flushes its own buffer"
        );
    }
    assert_eq!(process.metric(metric::STARTED).map(|v| v.value()), Some(3));
    assert_eq!(process.metric(metric::PENDING).map(|v| v.value()), Some(3));
}
