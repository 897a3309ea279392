//! Robustness of the real filter `.wasm` under load: random header sets never trap it nor
//! leave a host error unhandled, and its linear memory stops growing.
//!
//! Counts: `MESHTRACE_FUZZ_REQUESTS` (default 100,000) random header sets, and
//! `MESHTRACE_SOAK_REQUESTS` (default 100,000 in `make test`; `make soak` runs 1,000,000)
//! requests for the memory bound. The seed is printed; `MESHTRACE_FUZZ_SEED` replays a run.

mod common;

use common::{assert_accounting, filter, m, metric, upstream_traceparent};
use meshtrace_wasm_host::{HeaderMap, Host, Reply};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"{"exporter":{"flush_interval_ms":100}}"#;
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const HEADER_NAMES: [&str; 8] = [
    "traceparent",
    "tracestate",
    "TraceParent",
    ":method",
    ":path",
    "baggage",
    "x-b3-traceid",
    "uber-trace-id",
];

fn count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A value for a propagation header: valid, a valid one mutated, random bytes (often not
/// UTF-8), empty, or oversized.
fn value(rng: &mut StdRng) -> Vec<u8> {
    let valid = format!("00-{TRACE}-00f067aa0ba902b7-{:02x}", rng.random::<u8>());
    match rng.random_range(0..10) {
        0..=2 => valid.into_bytes(),
        3..=5 => {
            let mut bytes = valid.into_bytes();
            for _ in 0..rng.random_range(1..4) {
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
    (0..rng.random_range(0..6))
        .map(|_| {
            let name = HEADER_NAMES[rng.random_range(0..HEADER_NAMES.len())];
            (name.as_bytes().to_vec(), value(rng))
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
    let status = value(rng);
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

#[test]
fn random_header_sets_never_trap_and_always_yield_one_valid_traceparent() {
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
        upstream_traceparent(&upstream);
    }
    host.advance(Duration::from_secs(2)).unwrap();
    eprintln!(
        "fuzz: {:?} ({:.1} µs/request)",
        started.elapsed(),
        started.elapsed().as_secs_f64() * 1e6 / requests as f64
    );
    assert_eq!(m(&host, metric::STARTED), i128::from(requests));
    assert!(m(&host, metric::MALFORMED) > 0 && m(&host, metric::EXTRACTED) > 0);
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
