//! Run with: cargo run --release -p meshtrace-collector-shim --example load -- --help
//!
//! Load generator and sink for measuring the shim (not a test; see `scripts/shim-bench.sh` and
//! docs/shim.md "Measurements"). Two modes:
//!
//! - `sink ADDR`: an OTLP/HTTP backend on ADDR that answers 200 and counts spans.
//! - `send URL SECONDS CONCURRENCY SPANS_PER_REQUEST`: posts OTLP/HTTP protobuf requests of
//!   Envoy-like server spans (10 attributes, as in shared/anchors/shim.md §1.1) as fast as the
//!   shim accepts them, for SECONDS, then prints accepted / refused counts and rates as JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn s(text: &str) -> any_value::Value {
    any_value::Value::StringValue(text.to_owned())
}

fn request(seed: u64, spans: u64) -> ExportTraceServiceRequest {
    let spans = (0..spans)
        .map(|i| {
            let n = seed.wrapping_mul(1_000_003).wrapping_add(i);
            Span {
                trace_id: [n.to_be_bytes(), (!n).to_be_bytes()].concat(),
                span_id: (n | 1).to_be_bytes().to_vec(),
                parent_span_id: (n ^ 0xff).to_be_bytes().to_vec(),
                flags: 0x301,
                name: "GET /api/v1/users/{id}".to_owned(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: 1_760_000_000_000_000_000 + n,
                end_time_unix_nano: 1_760_000_000_001_500_000 + n,
                attributes: vec![
                    kv("http.request.method", s("GET")),
                    kv("url.path", s(&format!("/api/v1/users/{n}"))),
                    kv("url.scheme", s("http")),
                    kv("http.response.status_code", any_value::Value::IntValue(200)),
                    kv("http.route", s("/api/v1/users/{id}")),
                    kv("server.address", s("users.default.svc.cluster.local")),
                    kv("server.port", any_value::Value::IntValue(8080)),
                    kv("network.protocol.version", s("1.1")),
                    kv("client.address", s(&format!("10.0.{}.{}", n % 256, (n / 256) % 256))),
                    kv("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36")),
                ],
                ..Span::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("users")),
                    kv("k8s.namespace.name", s("default")),
                    kv("k8s.pod.name", s("users-7d9f8b6c4-x2x9z")),
                    kv("service.version", s("1.4.2")),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            schema_url: String::new(),
        }],
    }
}

async fn sink(addr: String) {
    let spans = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(spans): State<Arc<AtomicU64>>, body: Bytes| async move {
                    if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                        let n: usize = request
                            .resource_spans
                            .iter()
                            .flat_map(|r| &r.scope_spans)
                            .map(|s| s.spans.len())
                            .sum();
                        spans.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    ""
                },
            ),
        )
        .route(
            "/count",
            axum::routing::get(|State(spans): State<Arc<AtomicU64>>| async move {
                spans.load(Ordering::Relaxed).to_string()
            }),
        )
        .with_state(spans);
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}

async fn send(url: String, seconds: u64, concurrency: u64, spans_per_request: u64) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        let (accepted, refused, failed) = (accepted.clone(), refused.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut seed = worker << 40;
            while Instant::now() < deadline {
                seed += 1;
                let body = request(seed, spans_per_request).encode_to_vec();
                let result = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                match result.map(|r| r.status().as_u16()) {
                    Ok(200) => accepted.fetch_add(spans_per_request, Ordering::Relaxed),
                    Ok(429 | 503) => {
                        // A well-behaved sender backs off (the shim says Retry-After: 1; we
                        // retry sooner to keep the pressure on).
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        refused.fetch_add(spans_per_request, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(spans_per_request, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = accepted.load(Ordering::Relaxed);
    println!(
        "{{\"seconds\":{elapsed:.1},\"accepted_spans\":{accepted},\"accepted_per_s\":{:.0},\"refused_spans\":{},\"failed_spans\":{}}}",
        accepted as f64 / elapsed,
        refused.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let num = |i: usize| arg(i).parse::<u64>().expect("a number");
    match arg(0).as_str() {
        "sink" => sink(arg(1)).await,
        "send" => send(arg(1), num(2), num(3), num(4)).await,
        _ => {
            eprintln!("usage: load sink ADDR | load send URL SECONDS CONCURRENCY SPANS_PER_REQUEST")
        }
    }
}
