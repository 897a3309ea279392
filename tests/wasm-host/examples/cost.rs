//! Per-request cost of the filter under wasmtime, against an empty pass-through filter built
//! the same way (`tests/fixtures/passthrough`). Run with `make bench`; see docs/wasm-host.md.
//!
//! Fuel is wasmtime's count of executed wasm operators: deterministic, and only the module's
//! own work. Wall time includes the host's side of every host call, the same for both.

use meshtrace_wasm_host::{Host, HostOptions, Reply, filter_module, passthrough_module};
use std::time::{Duration, Instant};

const WARM_UP: u32 = 2_000;
const REQUESTS: u32 = 50_000;

struct Cost {
    fuel: f64,
    request_path_fuel: f64,
    nanos: f64,
}

fn measure(module: &wasmtime::Module) -> Cost {
    let mut host = Host::start(module, HostOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    host.auto_reply(|_| (Duration::from_millis(1), Reply::ok()));
    let headers = [
        (":method", "GET"),
        (":path", "/api/v1/items?page=2"),
        (":authority", "shop.example"),
        (":scheme", "https"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    let run = |host: &mut Host, n: u32| {
        for i in 0..n {
            host.request(headers, 200).unwrap_or_else(|e| panic!("{e}"));
            // One flush per 1,000 requests: the export's cost is spread over the requests.
            if i % 1_000 == 999 {
                host.advance(Duration::from_secs(1))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    };
    run(&mut host, WARM_UP);
    let (fuel_before, by_callback_before) = (host.fuel_used(), host.fuel_by_callback().clone());
    let started = Instant::now();
    run(&mut host, REQUESTS);
    let nanos = started.elapsed().as_nanos() as f64 / f64::from(REQUESTS);
    let fuel = (host.fuel_used() - fuel_before) as f64 / f64::from(REQUESTS);
    let stream_fuel: u64 = host
        .fuel_by_callback()
        .iter()
        .filter(|(name, _)| !matches!(**name, "proxy_on_tick" | "proxy_on_http_call_response"))
        .map(|(name, (_, f))| f - by_callback_before.get(name).map_or(0, |(_, f)| *f))
        .sum();
    Cost {
        fuel,
        request_path_fuel: stream_fuel as f64 / f64::from(REQUESTS),
        nanos,
    }
}

fn main() {
    let filter = measure(&filter_module().unwrap_or_else(|e| panic!("{e}")));
    let baseline = measure(&passthrough_module().unwrap_or_else(|e| panic!("{e}")));
    println!("{REQUESTS} requests after {WARM_UP} warm-up, one flush per 1,000 requests");
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "", "meshtrace", "pass-through", "ratio"
    );
    let row = |name: &str, ours: f64, base: f64| {
        println!("{name:<34} {ours:>14.0} {base:>14.0} {:>8.2}", ours / base);
    };
    row(
        "fuel per request (all callbacks)",
        filter.fuel,
        baseline.fuel,
    );
    row(
        "fuel per request (stream only)",
        filter.request_path_fuel,
        baseline.request_path_fuel,
    );
    row("wall ns per request", filter.nanos, baseline.nanos);
}
