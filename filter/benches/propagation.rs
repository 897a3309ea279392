//! Extract + inject per format, on a realistic request header map (a dozen ordinary headers
//! plus the format's own). Run with:
//!
//!     make bench-propagation   # = cargo bench -p meshtrace-filter --bench propagation
//!
//! `baseline/skeleton_traceparent` is what the walking skeleton did per request (parse one
//! traceparent, format one); the write-up in docs/propagation.md reports every other case as
//! a ratio to it, measured in the same run. Full write-up: docs/propagation.md.
//!
//! 2026-11-25, 2 vCPU Intel Xeon shared with other builds (load 3.6–4.7), Rust 1.95.0, medians:
//!
//! | case                          | median  | × baseline |
//! |-------------------------------|---------|------------|
//! | baseline/skeleton_traceparent | 0.80 µs | 1.0        |
//! | no_context                    | 1.14 µs | 1.4        |
//! | tracecontext                  | 1.94 µs | 2.4        |
//! | baggage                       | 2.65 µs | 3.3        |
//! | b3                            | 1.33 µs | 1.7        |
//! | b3multi                       | 1.38 µs | 1.7        |
//! | jaeger                        | 2.33 µs | 2.9        |
//! | gcp                           | 1.52 µs | 1.9        |
//! | xray                          | 1.36 µs | 1.7        |
//! | tracecontext_to_all_formats   | 3.40 µs | 4.2        |

use criterion::{Criterion, criterion_group, criterion_main};
use meshtrace_filter::config::PropagationConfig;
use meshtrace_filter::propagation::{self, Format, w3c};
use meshtrace_filter::trace::{SpanContext, SpanId};
use std::hint::black_box;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Headers every request has, whatever the trace format.
fn ordinary() -> Vec<(String, Vec<u8>)> {
    [
        (":authority", "checkout.shop.svc.cluster.local"),
        (":path", "/api/v1/orders/12345?expand=items"),
        (":method", "POST"),
        (":scheme", "http"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("content-type", "application/json"),
        ("content-length", "348"),
        ("x-request-id", "6b3e5e2a-4c1d-4e7e-9b1e-5f2c9a7d0e11"),
        ("x-forwarded-proto", "https"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec()))
    .collect()
}

/// A benchmark case: its name, the format's headers, the formats injected.
type Case = (&'static str, Vec<(&'static str, String)>, Vec<Format>);

fn cases() -> Vec<Case> {
    let w3c_and_baggage = vec![Format::Tracecontext, Format::Baggage];
    vec![
        ("no_context", vec![], w3c_and_baggage.clone()),
        (
            "tracecontext",
            vec![
                ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
                ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned()),
            ],
            vec![Format::Tracecontext],
        ),
        (
            "baggage",
            vec![
                ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
                ("baggage", "userId=alice,serverNode=DF%2028,isProduction=false,tenant=acme;ttl=60,region=eu-west-1".to_owned()),
            ],
            w3c_and_baggage.clone(),
        ),
        ("b3", vec![("b3", format!("{TRACE}-{PARENT}-1"))], vec![Format::B3]),
        (
            "b3multi",
            vec![
                ("x-b3-traceid", TRACE.to_owned()),
                ("x-b3-spanid", PARENT.to_owned()),
                ("x-b3-parentspanid", "b7ad6b7169203331".to_owned()),
                ("x-b3-sampled", "1".to_owned()),
            ],
            vec![Format::B3multi],
        ),
        (
            "jaeger",
            vec![
                ("uber-trace-id", format!("{TRACE}:{PARENT}:0:1")),
                ("uberctx-user", "alice".to_owned()),
                ("uberctx-tenant", "acme".to_owned()),
            ],
            vec![Format::Jaeger],
        ),
        (
            "gcp",
            vec![("x-cloud-trace-context", format!("{TRACE}/67667974448284343;o=1"))],
            vec![Format::Tracecontext],
        ),
        (
            "xray",
            vec![("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".to_owned())],
            vec![Format::Tracecontext],
        ),
        (
            "tracecontext_to_all_formats",
            vec![
                ("traceparent", format!("00-{TRACE}-{PARENT}-01")),
                ("baggage", "userId=alice,tenant=acme".to_owned()),
            ],
            vec![Format::Tracecontext, Format::Baggage, Format::B3, Format::B3multi, Format::Jaeger],
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let ours = SpanId::from_hex(b"1111111111111111").unwrap();
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    c.bench_function("baseline/skeleton_traceparent", |b| {
        b.iter(|| {
            let parent = w3c::parse_traceparent(black_box(traceparent.as_bytes())).unwrap();
            black_box(w3c::format_traceparent(&SpanContext {
                span_id: ours,
                ..parent
            }))
        })
    });
    let mut group = c.benchmark_group("extract_inject");
    for (name, trace_headers, inject) in cases() {
        let mut headers = ordinary();
        headers.extend(
            trace_headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.into_bytes())),
        );
        let config = PropagationConfig {
            extract: Format::ALL.to_vec(),
            inject,
            ..PropagationConfig::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let extracted = propagation::extract(black_box(&headers), &config);
                let span = extracted.parent.map_or(
                    SpanContext {
                        trace_id: meshtrace_filter::trace::TraceId::from_hex(TRACE.as_bytes())
                            .unwrap(),
                        span_id: ours,
                        flags: Default::default(),
                        debug: false,
                    },
                    |p| SpanContext { span_id: ours, ..p },
                );
                black_box(propagation::inject(
                    &span,
                    extracted.parent.map(|p| p.span_id),
                    &extracted,
                    &config,
                    false,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
