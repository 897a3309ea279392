//! The real filter `.wasm` (`make wasm`) under the wasmtime host: configuration, propagation,
//! accounting, failure injection, determinism, several VMs. The export path is `export.rs`.

mod common;

use common::{
    assert_accounting, filter, get, hex, m, metric, spans, sum_prefixed, upstream_traceparent,
    written,
};
use meshtrace_tests::w3c::Traceparent;
use meshtrace_wasm_host::{
    HeaderMap, Host, HostError, HostOptions, Injection, Process, Reply, Status, StreamId,
    filter_module,
};
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

/// Request headers, as `(name, value)`.
type Headers = Vec<(&'static str, Vec<u8>)>;

/// A propagation format as the tests see it, written independently of the filter's code: one
/// table entry per format, and every propagation test below runs each entry.
struct Format {
    /// Its name in `propagation.extract` / `inject` (and in the filter's metric names).
    name: &'static str,
    /// Request headers carrying `TRACE`/`PARENT` with the sampled flag.
    parent: fn(sampled: bool) -> Headers,
    /// Malformed header sets of this format, each with why it is malformed.
    malformed: fn() -> Vec<(Headers, &'static str)>,
}

/// Every format that carries a context. X-Ray and GCP are read only; the others are also
/// written, and every test configures all four written formats, so each checks that they all
/// describe the same span whatever came in.
const FORMATS: [Format; 6] = [
    Format {
        name: "tracecontext",
        parent: w3c_parent,
        malformed: w3c_malformed,
    },
    Format {
        name: "b3",
        parent: b3_parent,
        malformed: b3_malformed,
    },
    Format {
        name: "b3multi",
        parent: b3multi_parent,
        malformed: b3multi_malformed,
    },
    Format {
        name: "jaeger",
        parent: jaeger_parent,
        malformed: jaeger_malformed,
    },
    Format {
        name: "xray",
        parent: xray_parent,
        malformed: xray_malformed,
    },
    Format {
        name: "gcp",
        parent: gcp_parent,
        malformed: gcp_malformed,
    },
];
/// The formats the filter writes, as `meshtrace_tests::injected` names their headers.
const WRITTEN: [&str; 4] = ["traceparent", "b3", "x-b3-*", "uber-trace-id"];

fn one(name: &'static str, value: impl Into<Vec<u8>>) -> Headers {
    vec![(name, value.into())]
}

fn w3c_parent(sampled: bool) -> Headers {
    one(
        "traceparent",
        format!("00-{TRACE}-{PARENT}-0{}", u8::from(sampled)),
    )
}

#[rustfmt::skip]
fn w3c_malformed() -> Vec<(Headers, &'static str)> {
    let h = |v: &[u8]| one("traceparent", v);
    vec![
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

fn b3_parent(sampled: bool) -> Headers {
    one("b3", format!("{TRACE}-{PARENT}-{}", u8::from(sampled)))
}

#[rustfmt::skip]
fn b3_malformed() -> Vec<(Headers, &'static str)> {
    let h = |v: &[u8]| one("b3", v);
    vec![
        (h(b"xyz"), "not ids"),
        (h(format!("{}-{PARENT}-1", "0".repeat(32)).as_bytes()), "zero trace id"),
        (h(format!("{TRACE}-{PARENT}-x").as_bytes()), "bad sampling state"),
        (h(format!("{TRACE}-{}-1", &PARENT[..10]).as_bytes()), "short span id"),
        (h(b"\xff\xfe-\x80"), "not UTF-8"),
        (h(&[b'a'; 70_000]), "70 kB"),
    ]
}

fn b3multi_parent(sampled: bool) -> Headers {
    vec![
        ("x-b3-traceid", TRACE.into()),
        ("x-b3-spanid", PARENT.into()),
        ("x-b3-sampled", if sampled { "1" } else { "0" }.into()),
    ]
}

#[rustfmt::skip]
fn b3multi_malformed() -> Vec<(Headers, &'static str)> {
    let ids = |trace: &[u8], span: &[u8]| vec![("x-b3-traceid", trace.to_vec()), ("x-b3-spanid", span.to_vec())];
    vec![
        (ids(b"xyz", PARENT.as_bytes()), "trace id not hex"),
        (ids(TRACE.as_bytes(), b"0000000000000000"), "zero span id"),
        (ids(TRACE.as_bytes(), b"\xff\xfe"), "span id not UTF-8"),
        (ids(&[b'a'; 70_000], PARENT.as_bytes()), "70 kB trace id"),
    ]
}

fn jaeger_parent(sampled: bool) -> Headers {
    one(
        "uber-trace-id",
        format!("{TRACE}:{PARENT}:0:{}", u8::from(sampled)),
    )
}

#[rustfmt::skip]
fn jaeger_malformed() -> Vec<(Headers, &'static str)> {
    let h = |v: &[u8]| one("uber-trace-id", v);
    vec![
        (h(format!("{TRACE}:{PARENT}:0").as_bytes()), "three fields"),
        (h(format!("{TRACE}:0:0:1").as_bytes()), "zero span id"),
        (h(format!("{TRACE}:{PARENT}:0:zz").as_bytes()), "flags not hex"),
        (h(b"\xff:\xfe:0:1"), "not UTF-8"),
        (h(&[b':'; 70_000]), "70 kB"),
    ]
}

fn xray_parent(sampled: bool) -> Headers {
    let root = format!("1-{}-{}", &TRACE[..8], &TRACE[8..]);
    let value = format!("Root={root};Parent={PARENT};Sampled={}", u8::from(sampled));
    one("x-amzn-trace-id", value)
}

#[rustfmt::skip]
fn xray_malformed() -> Vec<(Headers, &'static str)> {
    let h = |v: &[u8]| one("x-amzn-trace-id", v);
    vec![
        (h(format!("Root=1-xyz;Parent={PARENT};Sampled=1").as_bytes()), "bad root"),
        (h(format!("Root=1-{}-{};Parent=xyz", &TRACE[..8], &TRACE[8..]).as_bytes()), "bad parent"),
        (h(b"Root=\xff\xfe"), "not UTF-8"),
    ]
}

fn gcp_parent(sampled: bool) -> Headers {
    let span = u64::from_str_radix(PARENT, 16).unwrap();
    one(
        "x-cloud-trace-context",
        format!("{TRACE}/{span};o={}", u8::from(sampled)),
    )
}

#[rustfmt::skip]
fn gcp_malformed() -> Vec<(Headers, &'static str)> {
    let h = |v: &[u8]| one("x-cloud-trace-context", v);
    vec![
        (h(b"xyz/1;o=1"), "trace id not hex"),
        (h(format!("{TRACE}/notanumber;o=1").as_bytes()), "span id not decimal"),
        (h(format!("{TRACE}/18446744073709551616;o=1").as_bytes()), "span id over 64 bits"),
        (h(b"\xff\xfe/1"), "not UTF-8"),
    ]
}

/// Extracts only `format` and writes every written format; `baggage` also extracts the two
/// contexts that carry baggage and writes it.
fn propagation_config(format: &str) -> String {
    let (extract, inject) = match format {
        "baggage" => (
            r#""tracecontext","baggage","jaeger""#.to_owned(),
            r#","baggage""#,
        ),
        _ => (format!(r#""{format}""#), ""),
    };
    format!(
        r#"{{"service_name":"harness","exporter":{{"flush_interval_ms":100}},"propagation":{{"extract":[{extract}],"inject":["tracecontext","b3","b3multi","jaeger"{inject}]}}}}"#
    )
}

fn as_refs(headers: &Headers) -> Vec<(&str, &[u8])> {
    headers.iter().map(|(k, v)| (*k, v.as_slice())).collect()
}

/// Checks that every written format is present and names the same span in trace `trace`,
/// with `sampled`; returns that span id.
fn same_span_everywhere(
    upstream: &HeaderMap,
    trace: Option<&str>,
    sampled: bool,
    why: &str,
) -> String {
    let written = written(upstream);
    let names: Vec<&str> = written.iter().map(|w| w.0).collect();
    assert_eq!(names, WRITTEN, "{why}: {upstream:?}");
    let (_, first_trace, span, _) = &written[0];
    if let Some(trace) = trace {
        assert_eq!(first_trace, trace, "{why}: the trace continues");
    }
    for (header, t, s, state) in &written {
        assert_eq!(
            (t, s),
            (first_trace, span),
            "{why}: {header} names another span"
        );
        let says_sampled = match *header {
            "traceparent" | "uber-trace-id" => {
                u8::from_str_radix(state, 16).is_ok_and(|f| f & 1 == 1)
            }
            _ => matches!(state.as_str(), "1" | "d"),
        };
        assert_eq!(
            says_sampled, sampled,
            "{why}: {header} sampling field {state}"
        );
    }
    span.clone()
}

/// Sends `format`'s parent context through a fresh filter; checks the trace and the sampled
/// flag are continued under one new span id in every written format, which is returned.
fn continued(format: &Format, sampled: bool) -> (Host, String) {
    let mut host = filter(&propagation_config(format.name));
    let parent = (format.parent)(sampled);
    let upstream = host.request(get(&as_refs(&parent)), 200).unwrap();
    let ours = same_span_everywhere(&upstream, Some(TRACE), sampled, format.name);
    assert_ne!(ours, PARENT, "{}: our span is new", format.name);
    let uber = upstream.get_str("uber-trace-id").unwrap();
    assert_eq!(
        uber.split(':').nth(2),
        Some(PARENT),
        "{}: Jaeger's parent field is the caller's span",
        format.name
    );
    let extracted = format!("meshtrace_context_extracted_{}_total", format.name);
    assert_eq!(
        (m(&host, metric::EXTRACTED), m(&host, &extracted)),
        (1, 1),
        "{}",
        format.name
    );
    (host, ours)
}

#[test]
fn a_sampled_parent_is_continued_in_every_written_format_and_exported() {
    for format in &FORMATS {
        let (mut host, ours) = continued(format, true);
        host.advance(Duration::from_millis(100)).unwrap();
        let calls = host.pending_calls();
        assert_eq!(calls.len(), 1, "{}", format.name);
        let span = &spans(&calls[0])[0];
        assert_eq!(hex(&span.trace_id), TRACE);
        assert_eq!(
            hex(&span.span_id),
            ours,
            "{}: the exported span is the propagated one",
            format.name
        );
        assert_eq!(hex(&span.parent_span_id), PARENT, "{}", format.name);
        assert_eq!(span.name, "GET");
        assert_accounting(&host);
    }
}

#[test]
fn an_unsampled_parent_stays_unsampled_everywhere_and_is_not_exported() {
    for format in &FORMATS {
        let (mut host, _) = continued(format, false);
        host.advance(Duration::from_secs(1)).unwrap();
        assert!(host.pending_calls().is_empty(), "{}", format.name);
        assert_eq!(m(&host, metric::NOT_SAMPLED), 1);
        assert_eq!(
            m(
                &host,
                "meshtrace_sampling_not_sampled_parent_not_sampled_total"
            ),
            1
        );
        assert_accounting(&host);
    }
}

#[test]
fn no_or_malformed_context_starts_a_new_sampled_trace_counted_by_format() {
    for format in &FORMATS {
        let mut host = filter(&propagation_config(format.name));
        let upstream = host.request(get(&[]), 200).unwrap();
        same_span_everywhere(&upstream, None, true, "no context");
        let cases = (format.malformed)();
        for (headers, why) in &cases {
            let why = format!("{}: {why}", format.name);
            let upstream = host
                .request(get(&as_refs(headers)), 200)
                .unwrap_or_else(|e| panic!("{why}: {e}"));
            let ours = same_span_everywhere(&upstream, None, true, &why);
            let trace = &written(&upstream)[0].1;
            assert!(trace != TRACE && ours != PARENT, "{why}: fresh ids");
        }
        let counted = (
            m(&host, metric::MALFORMED),
            sum_prefixed(
                &host,
                &format!("meshtrace_context_malformed_{}_", format.name),
            ),
        );
        assert_eq!(
            counted,
            (cases.len() as i128, cases.len() as i128),
            "{}: {:#?}",
            format.name,
            host.metrics()
        );
        host.advance(Duration::from_millis(100)).unwrap();
        let exported: Vec<_> = host.pending_calls().iter().flat_map(spans).collect();
        assert_eq!(exported.len(), cases.len() + 1);
        assert!(
            exported.iter().all(|s| s.parent_span_id.is_empty()),
            "all roots"
        );
        assert_accounting(&host);
    }
}

/// W3C baggage and Jaeger `uberctx-*` carry the same entries: what comes in one way goes out
/// both ways, next to the context; `tracestate` passes on with a W3C parent.
#[test]
fn baggage_and_tracestate_pass_on_in_every_form() {
    let mut host = filter(&propagation_config("baggage"));
    let mut parent = w3c_parent(true);
    parent.push((
        "tracestate",
        b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".to_vec(),
    ));
    parent.push(("baggage", b"user=alice,tenant=a%20b".to_vec()));
    let upstream = host.request(get(&as_refs(&parent)), 200).unwrap();
    same_span_everywhere(&upstream, Some(TRACE), true, "baggage");
    assert_eq!(
        upstream.get_str("baggage").as_deref(),
        Some("user=alice,tenant=a%20b")
    );
    assert_eq!(upstream.get_str("uberctx-user").as_deref(), Some("alice"));
    assert_eq!(upstream.get_str("uberctx-tenant").as_deref(), Some("a%20b"));
    assert_eq!(
        upstream.get_str("tracestate").as_deref(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );

    let mut parent = jaeger_parent(true);
    parent.push(("uberctx-user", b"bob".to_vec()));
    let upstream = host.request(get(&as_refs(&parent)), 200).unwrap();
    same_span_everywhere(&upstream, Some(TRACE), true, "uberctx");
    assert_eq!(upstream.get_str("baggage").as_deref(), Some("user=bob"));
    assert_eq!(upstream.get_str("uberctx-user").as_deref(), Some("bob"));

    // A malformed baggage member is counted; the context still continues.
    let mut parent = w3c_parent(true);
    parent.push(("baggage", b"=novalue,\xff".to_vec()));
    let upstream = host.request(get(&as_refs(&parent)), 200).unwrap();
    same_span_everywhere(&upstream, Some(TRACE), true, "bad baggage");
    assert_eq!(
        sum_prefixed(&host, "meshtrace_context_malformed_baggage_"),
        1,
        "{:#?}",
        host.metrics()
    );
    assert_accounting(&host);
}

// === accounting ===

/// Random interleavings of requests (a sampled or unsampled parent in any format, none, a
/// health probe, over a global rate limit), ticks and every kind of answer: the accounting of
/// `assert_accounting`, not-sampled spans included, holds after every step.
#[test]
fn the_accounting_invariant_holds_through_random_interleavings() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(10);
    let config = r#"{"exporter":{"flush_interval_ms":50,"max_buffered_spans":16,"max_batch_spans":5,"max_calls_in_flight":2,"timeout_ms":200},
        "propagation":{"extract":["tracecontext","b3","b3multi","jaeger","xray","gcp"]},
        "sampling":{"rate_limit":{"traces_per_second":60,"burst":20}}}"#;
    let mut host = filter(config);
    for step in 0..3_000 {
        match rng.random_range(0..10) {
            0..=5 => {
                let format = &FORMATS[rng.random_range(0..FORMATS.len())];
                let parent = (format.parent)(rng.random_bool(0.7));
                let mut headers = get(&as_refs(&parent));
                match rng.random_range(0..4) {
                    0 => headers.truncate(4),
                    1 => headers[1].1 = b"/healthz".to_vec(),
                    _ => {}
                }
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
    let retries_dropped =
        m(&host, metric::DROPPED_RETRY_EXHAUSTED) + m(&host, metric::DROPPED_RETRY_NO_ROOM);
    assert!(m(&host, metric::EXPORTED) > 0 && retries_dropped > 0);
    assert!(m(&host, metric::DROPPED_BUFFER_FULL) > 0 && m(&host, metric::NOT_SAMPLED) > 0);
    for reason in ["parent_not_sampled", "health_probe", "global_rate_limited"] {
        let name = format!("{}{reason}_total", metric::DECIDED_NOT_SAMPLED);
        assert!(m(&host, &name) > 0, "no {name}: {:#?}", host.metrics());
    }
}

// === sampling ===

/// Two traces a second, bursts of three, over every VM of the process.
const RATE_LIMITED: &str = r#"{"exporter":{"flush_interval_ms":100},"sampling":{"rate_limit":{"traces_per_second":2,"burst":3}}}"#;

/// Whether a new request (no parent) through `host` is sampled.
fn root_sampled(host: &mut Host) -> bool {
    let upstream = host
        .request(get(&[]), 200)
        .unwrap_or_else(|e| panic!("{e}"));
    upstream_traceparent(&upstream).sampled()
}

/// Two worker VMs of one process, as Envoy runs them, exports answered at once.
fn workers(config: &str) -> (Process, Vec<Host>) {
    let module = filter_module().unwrap();
    let process = Process::new();
    let workers = (1..=2)
        .map(|seed| {
            let options = HostOptions::default()
                .config(config)
                .seed(seed)
                .in_process(&process);
            let mut vm = Host::start(&module, options).unwrap();
            vm.auto_reply(|_| (Duration::ZERO, Reply::ok()));
            vm
        })
        .collect();
    (process, workers)
}

/// Each VM has its own clock: they move together.
fn advance_all(vms: &mut [Host], by: Duration) {
    for vm in vms {
        vm.advance(by).unwrap();
    }
}

#[test]
fn the_global_rate_limit_holds_across_two_vms_over_the_controlled_clock() {
    let (process, mut vms) = workers(RATE_LIMITED);
    // One bucket in shared data for both: the burst of 3 goes to the first three requests,
    // whichever VM serves them.
    let burst: Vec<bool> = (0..6).map(|i| root_sampled(&mut vms[i % 2])).collect();
    assert_eq!(burst, [true, true, true, false, false, false]);
    // 2 per second: 499 ms refill less than a token, 500 ms exactly one.
    advance_all(&mut vms, Duration::from_millis(499));
    assert!(!root_sampled(&mut vms[0]));
    advance_all(&mut vms, Duration::from_millis(1));
    assert_eq!(
        [root_sampled(&mut vms[1]), root_sampled(&mut vms[0])],
        [true, false]
    );
    // A long pause refills up to the burst, no further.
    advance_all(&mut vms, Duration::from_secs(60));
    let refilled: Vec<bool> = (0..5).map(|i| root_sampled(&mut vms[i % 2])).collect();
    assert_eq!(refilled, [true, true, true, false, false]);
    // A sampled parent is capped too; forced and unsampled parents are not.
    let parent = format!("00-{TRACE}-{PARENT}-01");
    let upstream = vms[0]
        .request(get(&[("traceparent", parent.as_bytes())]), 200)
        .unwrap();
    assert!(!upstream_traceparent(&upstream).sampled());
    let host = &vms[0];
    assert_eq!(
        (
            m(host, "meshtrace_sampling_sampled_root_total"),
            m(
                host,
                "meshtrace_sampling_not_sampled_global_rate_limited_total"
            ),
            m(host, metric::CAS_CONFLICTS),
        ),
        (7, 8, 0)
    );
    assert_accounting(host);
    // One key, under the plugins' vm_id: created once (cas 1), then one write per token.
    let keys = process.shared_data_keys("");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(
        process.shared_data("", &keys[0]).map(|(_, cas)| cas),
        Some(1 + 7)
    );
    // Shared data is scoped by vm_id, as in Envoy: another plugin VM has its own bucket.
    let options = HostOptions {
        vm_id: "other".into(),
        ..HostOptions::default()
            .config(RATE_LIMITED)
            .in_process(&process)
    };
    let mut other = Host::start(&filter_module().unwrap(), options).unwrap();
    let burst: Vec<bool> = (0..4).map(|_| root_sampled(&mut other)).collect();
    assert_eq!(burst, [true, true, true, false]);
}

/// A compare-and-swap conflict (another worker wrote the bucket between our read and write:
/// Envoy answers `CasMismatch`) is retried and counted; a bucket that keeps conflicting gives
/// up after 8 attempts and decides "not sampled" with its own reason. Never a trap.
#[test]
fn rate_limit_cas_conflicts_are_retried_counted_and_bounded() {
    let (_process, mut vms) = workers(RATE_LIMITED);
    vms[0]
        .inject(Injection::new("proxy_set_shared_data", Status::CasMismatch).times(3))
        .unwrap();
    assert!(
        root_sampled(&mut vms[0]),
        "the fourth attempt takes the token"
    );
    assert_eq!(m(&vms[0], metric::CAS_CONFLICTS), 3);
    // The token was taken once: two are left for the other VM, then none.
    let rest: Vec<bool> = (0..3).map(|_| root_sampled(&mut vms[1])).collect();
    assert_eq!(rest, [true, true, false]);

    advance_all(&mut vms, Duration::from_secs(10));
    vms[1]
        .inject(Injection::new("proxy_set_shared_data", Status::CasMismatch))
        .unwrap();
    assert!(!root_sampled(&mut vms[1]));
    let host = &vms[1];
    let unavailable = "meshtrace_sampling_not_sampled_rate_limit_unavailable_total";
    assert_eq!(
        (m(host, metric::CAS_CONFLICTS), m(host, unavailable)),
        (3 + 8, 1)
    );
    assert!(root_sampled(&mut vms[0]), "the other VM is unaffected");
    assert_accounting(&vms[0]);
}

/// Shared-data failures other than a CAS conflict, which Envoy does not answer to these calls.
/// The filter's store maps them to "rate limit unavailable" (not sampled, counted), but the
/// proxy-wasm SDK 0.2.5 panics on them first (`get_shared_data`: only Ok and NotFound;
/// `set_shared_data`: only Ok and CasMismatch), so they trap: the table pins exactly where.
#[test]
fn shared_data_failures_degrade_or_trap_exactly_where_the_sdk_panics() {
    let mut outcomes = Vec::new();
    for call in ["proxy_get_shared_data", "proxy_set_shared_data"] {
        for status in [
            Status::NotFound,
            Status::BadArgument,
            Status::InternalFailure,
        ] {
            let mut host = filter(RATE_LIMITED);
            host.inject(Injection::new(call, status)).unwrap();
            let outcome = match host.request(get(&[]), 200) {
                Ok(upstream) => format!("sampled {}", upstream_traceparent(&upstream).sampled()),
                Err(HostError::Trap { callback, .. }) => format!("trap in {callback}"),
                Err(e) => panic!("{call} {status:?}: {e}"),
            };
            outcomes.push(format!("{call} {status:?}: {outcome}"));
        }
    }
    let expected = [
        // The SDK reads NotFound as "no bucket yet", which the filter treats as a full one.
        "proxy_get_shared_data NotFound: sampled true",
        "proxy_get_shared_data BadArgument: trap in proxy_on_request_headers",
        "proxy_get_shared_data InternalFailure: trap in proxy_on_request_headers",
        "proxy_set_shared_data NotFound: trap in proxy_on_request_headers",
        "proxy_set_shared_data BadArgument: trap in proxy_on_request_headers",
        "proxy_set_shared_data InternalFailure: trap in proxy_on_request_headers",
    ];
    assert_eq!(outcomes, expected);
}

// === failure injection ===

/// Every host call the filter makes on the request and export paths (with a stale `b3` to
/// remove, so the removal path runs too), made to answer each failure status in turn. A trap happens exactly where the proxy-wasm SDK 0.2.5 panics on a
/// status it does not expect (`hostcalls.rs`: `panic!("unexpected status")`), or where rand
/// panics. Envoy itself never answers these statuses to these calls in these phases (the one
/// Envoy does answer, `BadArgument` on a reset call-out's headers, is handled: see
/// `a_reset_call_out_is_a_counted_failure_not_a_trap`); the table pins the behaviour so that
/// a change in the filter or the SDK shows up.
#[test]
fn injected_host_failures_degrade_or_trap_exactly_where_the_sdk_panics() {
    let calls = [
        "proxy_get_header_map_pairs",
        "proxy_get_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_get_current_time_nanoseconds",
        "proxy_increment_metric",
        "proxy_http_call",
        "proxy_log",
        "proxy_set_property",
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
            let mut host = filter(
                r#"{"exporter":{"flush_interval_ms":100},"propagation":{"remove_uninjected":true}}"#,
            );
            host.tolerate("proxy_increment_metric");
            host.inject(Injection::new(call, status)).unwrap();
            let run = (|| -> Result<(), HostError> {
                let parent = format!("00-{TRACE}-{PARENT}-01");
                let stale = format!("{TRACE}-{PARENT}-1");
                let headers = [("traceparent", parent.as_bytes()), ("b3", stale.as_bytes())];
                let upstream = host.request(get(&headers), 200)?;
                assert_eq!(upstream.get("b3"), None, "the stale b3 is removed");
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
        // The glue reads the whole request map at once; `get_map_bytes` panics on any status
        // but Ok, so its "a failed read is no headers" fallback never runs.
        "proxy_get_header_map_pairs NotFound: trap in proxy_on_request_headers",
        "proxy_get_header_map_pairs BadArgument: trap in proxy_on_request_headers",
        "proxy_get_header_map_pairs InternalFailure: trap in proxy_on_request_headers",
        // Single values: the response `:status` (and a call-out's, read only with headers).
        "proxy_get_header_map_value NotFound: ok",
        "proxy_get_header_map_value BadArgument: trap in proxy_on_response_headers",
        "proxy_get_header_map_value InternalFailure: trap in proxy_on_response_headers",
        // Writes and removals: `set_map_value_bytes` panics on any status but Ok, so the
        // `header_write_failed` counter can never count.
        "proxy_replace_header_map_value NotFound: trap in proxy_on_request_headers",
        "proxy_replace_header_map_value BadArgument: trap in proxy_on_request_headers",
        "proxy_replace_header_map_value InternalFailure: trap in proxy_on_request_headers",
        "proxy_remove_header_map_value NotFound: trap in proxy_on_request_headers",
        "proxy_remove_header_map_value BadArgument: trap in proxy_on_request_headers",
        "proxy_remove_header_map_value InternalFailure: trap in proxy_on_request_headers",
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
        // Correlation properties: `hostcalls::set_property` panics on any status but Ok. Envoy
        // answers NotFound only to a context without a stream (the filter writes them from
        // the request-headers callback, where the stream exists) and BadArgument only for a
        // typed property prototype, which the filter never declares.
        "proxy_set_property NotFound: trap in proxy_on_request_headers",
        "proxy_set_property BadArgument: trap in proxy_on_request_headers",
        "proxy_set_property InternalFailure: trap in proxy_on_request_headers",
        // rand's ThreadRng panics when getrandom fails (WASI answers EIO here), but it is
        // seeded in `on_configure` (the name of the root context's flush queue), before the
        // injection, and does not ask again for the next 64 KiB of ids.
        "random_get NotFound: ok",
        "random_get BadArgument: ok",
        "random_get InternalFailure: ok",
    ];
    assert_eq!(outcomes, expected);
}

#[test]
fn a_trap_names_the_host_call_and_the_panic_and_leaves_the_vm_dead() {
    let mut host = filter(FAST);
    host.inject(
        Injection::new("proxy_get_header_map_value", Status::BadArgument).when_key(":status"),
    )
    .unwrap();
    let error = host.request(get(&[]), 200).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("proxy_on_response_headers"), "{text}");
    assert!(
        text.contains("proxy_get_header_map_value(\":status\") → BadArgument (injected)"),
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
    assert_eq!(
        process.metric(metric::IN_FLIGHT).map(|v| v.value()),
        Some(3)
    );
}

// === correlation (filter state) ===

/// The documented property names (docs/correlation.md), written out here rather than taken
/// from the filter: they are an interface, and a rename must fail this test.
const PUBLISHED: [&str; 4] = [
    "meshtrace.trace_id",
    "meshtrace.span_id",
    "meshtrace.sampled",
    "meshtrace.sampling_reason",
];

/// The span identity the filter published on `stream` (`set_property`, Envoy filter state
/// `wasm.meshtrace.*`): trace id, span id, sampled, reason; `None` for a missing property.
fn published(host: &Host, stream: StreamId) -> [Option<String>; 4] {
    PUBLISHED.map(|property| {
        host.filter_state(stream, property)
            .unwrap()
            .map(|value| String::from_utf8_lossy(value).into_owned())
    })
}

/// One request through the filter; returns the upstream `traceparent` and what the filter
/// published, read before the stream ends (Envoy's access log runs at that point too).
fn request_publishing(
    host: &mut Host,
    headers: &[(&str, &[u8])],
) -> (Traceparent, [Option<String>; 4]) {
    let stream = host.open_stream().unwrap();
    host.request_headers(stream, get(headers), true).unwrap();
    let upstream = upstream_traceparent(host.upstream_request_headers(stream).unwrap());
    host.response_headers(stream, [(":status", "200")], true)
        .unwrap();
    let state = published(host, stream);
    host.end_stream(stream).unwrap();
    (upstream, state)
}

#[test]
fn the_published_ids_are_the_propagated_and_exported_span_for_every_context() {
    let mut host = filter(FAST);
    let parent = |flags: &str| format!("00-{TRACE}-{PARENT}-{flags}");
    let b3 = format!("{TRACE}-{PARENT}-1");
    let mut cases: Vec<(Headers, String, Option<&str>, &str)> = vec![
        (vec![], "no context".into(), None, "root"),
        (
            one("traceparent", parent("01")),
            "sampled".into(),
            Some(TRACE),
            "parent_sampled",
        ),
        (
            one("traceparent", parent("00")),
            "unsampled".into(),
            Some(TRACE),
            "parent_not_sampled",
        ),
        (one("b3", b3), "b3".into(), Some(TRACE), "parent_sampled"),
    ];
    for (headers, why) in w3c_malformed() {
        cases.push((headers, format!("malformed: {why}"), None, "root"));
    }
    let mut sampled = Vec::new();
    for (headers, why, trace, reason) in &cases {
        let (upstream, state) = request_publishing(&mut host, &as_refs(headers));
        let want_sampled = *reason != "parent_not_sampled";
        assert_eq!(
            state,
            [
                Some(upstream.trace_id.clone()),
                Some(upstream.parent_id.clone()),
                Some(want_sampled.to_string()),
                Some((*reason).to_owned()),
            ],
            "{why}: the published ids are the upstream's parent span"
        );
        assert_eq!(upstream.sampled(), want_sampled, "{why}");
        match trace {
            Some(trace) => assert_eq!(upstream.trace_id, *trace, "{why}: continued"),
            None => assert_ne!(upstream.trace_id, TRACE, "{why}: a fresh trace"),
        }
        if want_sampled {
            sampled.push((upstream.trace_id, upstream.parent_id));
        }
    }
    host.advance(Duration::from_millis(100)).unwrap();
    let mut exported: Vec<(String, String)> = host
        .pending_calls()
        .iter()
        .flat_map(spans)
        .map(|span| (hex(&span.trace_id), hex(&span.span_id)))
        .collect();
    exported.sort();
    sampled.sort();
    assert_eq!(
        exported, sampled,
        "the exported spans are the published ones"
    );
    assert_eq!(
        host.host_call_count("proxy_set_property"),
        4 * cases.len() as u64,
        "four properties per request"
    );
}

#[test]
fn turned_off_nothing_is_published_and_tracing_goes_on() {
    let mut host =
        filter(r#"{"exporter":{"flush_interval_ms":100},"correlation":{"filter_state":false}}"#);
    let parent = format!("00-{TRACE}-{PARENT}-01");
    let (upstream, state) = request_publishing(&mut host, &[("traceparent", parent.as_bytes())]);
    assert_eq!(state, [None, None, None, None]);
    assert_eq!(upstream.trace_id, TRACE);
    assert_eq!(host.host_call_count("proxy_set_property"), 0);
    host.advance(Duration::from_millis(100)).unwrap();
    assert_eq!(host.pending_calls().len(), 1);
}
