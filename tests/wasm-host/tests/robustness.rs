//! Robustness of the real filter `.wasm` under load: random header sets of every propagation
//! format (valid, mutated, random bytes, empty, oversized) never trap it nor leave a host error
//! unhandled, every written format names the one span, and its linear memory stops growing.
//!
//! Counts: `MESHTRACE_FUZZ_REQUESTS` (default 100,000) random header sets, and
//! `MESHTRACE_SOAK_REQUESTS` (default 100,000 in `make test`; `make soak` runs 1,000,000)
//! requests for the memory bound. The seed is printed; `MESHTRACE_FUZZ_SEED` replays a run.

mod common;

use common::{assert_accounting, filter, m, metric, sum_prefixed, written};
use meshtrace_wasm_host::{HeaderMap, Host, Reply};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// Every format read, every writable format written.
const CONFIG: &str = r#"{"exporter":{"flush_interval_ms":100},"propagation":{
    "extract":["tracecontext","baggage","b3","b3multi","jaeger","xray","gcp"],
    "inject":["tracecontext","baggage","b3","b3multi","jaeger"]}}"#;
/// Header names of every format (some in other cases), and two ordinary ones.
const HEADER_NAMES: [&str; 17] = [
    "traceparent",
    "TraceParent",
    "tracestate",
    "baggage",
    "b3",
    "B3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "uber-trace-id",
    "uberctx-user",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
    ":method",
    ":path",
];

fn count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex_id(rng: &mut StdRng, digits: usize) -> String {
    // Few distinct ids, so that contexts often agree or collide across headers.
    let pool = [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00000000000000000000000000000000",
        "a3ce929d0e0e4736b7ad6b7169203331",
    ];
    pool[rng.random_range(0..pool.len())][..digits].to_owned()
}

/// A well-formed value of `name`'s format, with random ids and sampling fields.
fn valid(rng: &mut StdRng, name: &str) -> String {
    let (trace, span, parent) = (hex_id(rng, 32), hex_id(rng, 16), hex_id(rng, 16));
    let flag = rng.random_range(0..2u8);
    match name.to_ascii_lowercase().as_str() {
        "traceparent" => format!("00-{trace}-{span}-{:02x}", rng.random::<u8>()),
        "tracestate" => format!(
            "congo=t61rcWkgMzE,ot=th:{:x};rv:{trace:.14}",
            rng.random_range(0..16u8)
        ),
        "baggage" | "uberctx-user" => format!("user=alice;p=1,tenant=a%20b,n{flag}=v"),
        "b3" => match rng.random_range(0..4) {
            0 => ["0", "1", "d"][rng.random_range(0..3)].to_owned(),
            1 => format!("{}-{span}", &trace[16..]),
            2 => format!(
                "{trace}-{span}-{}-{parent}",
                ["0", "1", "d"][rng.random_range(0..3)]
            ),
            _ => format!("{trace}-{span}-{flag}"),
        },
        "x-b3-traceid" => trace,
        "x-b3-spanid" | "x-b3-parentspanid" => span,
        "x-b3-sampled" => ["0", "1", "true", "false"][rng.random_range(0..4)].to_owned(),
        "x-b3-flags" => flag.to_string(),
        "uber-trace-id" => format!("{trace}:{span}:{parent}:{:x}", rng.random_range(0..8u8)),
        "x-amzn-trace-id" => format!(
            "Root=1-{}-{};Parent={span};Sampled={flag}",
            &trace[..8],
            &trace[8..]
        ),
        "x-cloud-trace-context" => format!("{trace}/{};o={flag}", rng.random::<u64>()),
        ":method" => "GET".to_owned(),
        _ => format!("/{span}?q={flag}"),
    }
}

/// A value for header `name`: valid, a valid one mutated, random bytes (often not UTF-8),
/// empty, or oversized.
fn value(rng: &mut StdRng, name: &str) -> Vec<u8> {
    let valid = valid(rng, name);
    match rng.random_range(0..10) {
        0..=2 => valid.into_bytes(),
        3..=5 => {
            let mut bytes = valid.into_bytes();
            for _ in 0..rng.random_range(1..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] = rng.random(),
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, rng.random()),
                }
            }
            bytes
        }
        6 | 7 => (0..rng.random_range(0..80)).map(|_| rng.random()).collect(),
        8 => Vec::new(),
        _ => vec![b'0' + rng.random_range(0..10); rng.random_range(512..70_000)],
    }
}

fn headers(rng: &mut StdRng) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..rng.random_range(0..8))
        .map(|_| {
            let name = HEADER_NAMES[rng.random_range(0..HEADER_NAMES.len())];
            (name.to_ascii_lowercase().into_bytes(), value(rng, name))
        })
        .collect()
}

/// One request with random request headers and a random response `:status`; flush and answer
/// every 500 requests so the buffer keeps moving.
fn random_request(host: &mut Host, rng: &mut StdRng, n: u64) -> HeaderMap {
    let stream = host.open_stream().unwrap();
    host.request_headers(stream, headers(rng), true)
        .unwrap_or_else(|e| panic!("request {n}: {e}"));
    let upstream = host.upstream_request_headers(stream).unwrap().clone();
    let status = value(rng, ":status");
    host.response_headers(stream, [(":status", status)], true)
        .unwrap_or_else(|e| panic!("request {n}: {e}"));
    host.end_stream(stream)
        .unwrap_or_else(|e| panic!("request {n}: {e}"));
    if n % 500 == 499 {
        host.advance(Duration::from_millis(100))
            .unwrap_or_else(|e| panic!("request {n}: {e}"));
    }
    upstream
}

/// Every written format once, naming one span, and only the `x-b3-*` headers the filter
/// writes: stale ones (a parent span id, the other of sampled/flags) are removed.
fn assert_one_span_in_every_format(upstream: &HeaderMap, n: u64) {
    let written = written(upstream);
    let names: Vec<&str> = written.iter().map(|w| w.0).collect();
    assert_eq!(
        names,
        ["traceparent", "b3", "x-b3-*", "uber-trace-id"],
        "request {n}: {upstream:?}"
    );
    assert!(
        written
            .iter()
            .all(|w| (&w.1, &w.2) == (&written[0].1, &written[0].2)),
        "request {n}: formats name different spans: {written:?}"
    );
    let decisions = ["x-b3-sampled", "x-b3-flags"].map(|h| upstream.get_all(h).len());
    assert_eq!(
        decisions.iter().sum::<usize>(),
        1,
        "request {n}: {upstream:?}"
    );
    assert_eq!(
        upstream.get("x-b3-parentspanid"),
        None,
        "request {n}: {upstream:?}"
    );
}

#[test]
fn random_header_sets_of_every_format_never_trap_and_yield_one_span_in_every_format() {
    let requests = count("MESHTRACE_FUZZ_REQUESTS", 100_000);
    let seed = count("MESHTRACE_FUZZ_SEED", rand::random());
    eprintln!("fuzz: {requests} requests, MESHTRACE_FUZZ_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut host = filter(CONFIG);
    host.auto_reply(|_| (Duration::from_millis(5), Reply::ok()));
    let started = Instant::now();
    for n in 0..requests {
        let upstream = random_request(&mut host, &mut rng, n);
        // Strict host: a violation or a trap already failed the request above.
        assert_one_span_in_every_format(&upstream, n);
    }
    host.advance(Duration::from_secs(2)).unwrap();
    eprintln!(
        "fuzz: {:?} ({:.1} µs/request, {} wasm operators/request)",
        started.elapsed(),
        started.elapsed().as_secs_f64() * 1e6 / requests as f64,
        host.fuel_used() / requests
    );
    assert_eq!(m(&host, metric::STARTED), i128::from(requests));
    assert!(m(&host, metric::MALFORMED) > 0 && m(&host, metric::EXTRACTED) > 0);
    // Every format was read and found malformed at some point.
    for format in ["tracecontext", "b3", "b3multi", "jaeger", "xray", "gcp"] {
        let extracted = format!("meshtrace_context_extracted_{format}_total");
        let malformed = format!("meshtrace_context_malformed_{format}_");
        assert!(m(&host, &extracted) > 0, "{extracted}");
        assert!(sum_prefixed(&host, &malformed) > 0, "{malformed}*");
    }
    for part in ["tracestate", "baggage", "jaeger_baggage"] {
        let malformed = format!("meshtrace_context_malformed_{part}_");
        assert!(sum_prefixed(&host, &malformed) > 0, "{malformed}*");
    }
    assert!(host.violations().is_empty(), "{:?}", host.violations());
    assert_accounting(&host);
}

/// Linear memory never shrinks, so it is its high-water mark: it may still rise a page when a
/// rare combination of large random headers first appears, but a leak of even a few bytes per
/// request would exceed the slack over the run.
const MEMORY_SLACK: usize = 4 * 64 * 1024;

#[test]
fn linear_memory_stops_growing_under_sustained_load() {
    let requests = count("MESHTRACE_SOAK_REQUESTS", 100_000);
    let mut rng = StdRng::seed_from_u64(20);
    let mut host = filter(CONFIG);
    // Answers arrive after 20 ms; every 500 requests 100 ms pass and the buffer is flushed.
    host.auto_reply(|_| (Duration::from_millis(20), Reply::ok()));
    let started = Instant::now();
    let mut samples = Vec::new();
    for n in 0..requests {
        random_request(&mut host, &mut rng, n);
        if (n + 1) % (requests / 10) == 0 {
            samples.push(host.memory_bytes() / 1024);
        }
    }
    host.advance(Duration::from_secs(2)).unwrap();
    eprintln!(
        "soak: {requests} requests in {:?}; memory (KiB) at each tenth: {samples:?}",
        started.elapsed()
    );
    let (warm, end) = (samples[0] * 1024, host.memory_bytes());
    assert!(
        end <= warm + MEMORY_SLACK,
        "linear memory grew after the warm-up: {samples:?} KiB"
    );
    assert_eq!(m(&host, metric::STARTED), i128::from(requests));
    assert_eq!(m(&host, metric::PENDING), 0, "everything settled");
    assert_accounting(&host);
}
