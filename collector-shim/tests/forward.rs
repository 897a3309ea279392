//! The real `Shim::start` on `127.0.0.1:0`, forwarding to a backend.
//!
//! The backend here is a **stand-in**: a tiny in-test axum sink that records what it receives
//! and answers scripted status codes. It checks the shim's side of the protocol (bytes, headers,
//! retries, counters); a test against a real backend (Phoenix, see
//! `shared/anchors/shim.md` §3) comes later.
//!
//! No assertion depends on wall-clock time: waits poll `/metrics` until a counter reaches its
//! expected value, with a generous deadline that only turns a hang into a failure.

mod fixtures;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use meshtrace_collector_shim::config::{ExportConfig, RetryConfig, ShimConfig};
use meshtrace_collector_shim::{Metrics, Shim, StartError, export};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::net::TcpListener;

use fixtures::*;

/// Generous bound for the shim to reach an expected state (a hang guard, not a measurement).
const WAIT_LIMIT: Duration = Duration::from_secs(20);
const POLL_EVERY: Duration = Duration::from_millis(20);

/// What the stand-in backend saw, and the statuses it will answer: the script first, then
/// `fallback` (200 unless set).
#[derive(Default)]
struct Sink {
    received: Mutex<Vec<(HeaderMap, Bytes)>>,
    script: Mutex<VecDeque<StatusCode>>,
    fallback: StatusCode,
}

impl Sink {
    fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.received.lock().unwrap().clone()
    }
}

async fn sink_handler(
    State(sink): State<Arc<Sink>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    sink.received.lock().unwrap().push((headers, body));
    sink.script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(sink.fallback)
}

/// Starts the stand-in backend on 127.0.0.1:0 with a status script, then 200.
async fn start_sink(script: &[StatusCode]) -> (Arc<Sink>, SocketAddr) {
    start_sink_with(Sink {
        script: Mutex::new(script.iter().copied().collect()),
        ..Sink::default()
    })
    .await
}

async fn start_sink_with(sink: Sink) -> (Arc<Sink>, SocketAddr) {
    let sink = Arc::new(sink);
    let app = Router::new()
        .route("/v1/traces", post(sink_handler))
        .with_state(Arc::clone(&sink));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (sink, addr)
}

fn config_for(sink: SocketAddr) -> ShimConfig {
    ShimConfig {
        otlp_http_addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        export: Some(ExportConfig {
            headers: vec![("x-tenant".to_owned(), "team-a".to_owned())],
            // Short backoff keeps the test quick; correctness does not depend on it.
            retry: RetryConfig {
                max_attempts: 4,
                initial_backoff_ms: 5,
                max_backoff_ms: 20,
                max_elapsed_ms: 10_000,
            },
            ..ExportConfig::new(format!("http://{sink}/v1/traces"))
        }),
        ..ShimConfig::default()
    }
}

async fn post_otlp(shim: &Shim, request: &ExportTraceServiceRequest) -> Vec<u8> {
    let body = request.encode_to_vec();
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{}/v1/traces", shim.otlp_http_addr()))
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    body
}

async fn metrics(shim: &Shim) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/metrics", shim.admin_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Polls `/metrics` until `series` equals `expected`; returns the exposition at that point.
async fn wait_for_metric(shim: &Shim, series: &str, expected: u64) -> String {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        let text = metrics(shim).await;
        if metric_value(&text, series) == Some(expected) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {expected}; last exposition:\n{text}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn failed(reason: &str) -> String {
    format!("meshtrace_shim_export_failed_spans_total{{reason=\"{reason}\"}}")
}

#[tokio::test]
async fn forwards_exactly_the_posted_spans() {
    let (sink, sink_addr) = start_sink(&[]).await;
    let shim = Shim::start(config_for(sink_addr)).await.unwrap();

    let first = request("checkout", &trace_id(), 3);
    let second = request("payments", &[7; 16], 2);
    let first_body = post_otlp(&shim, &first).await;
    let second_body = post_otlp(&shim, &second).await;

    let text = wait_for_metric(&shim, "meshtrace_shim_exported_spans_total", 5).await;
    assert_eq!(
        metric_value(&text, "meshtrace_shim_received_spans_total"),
        Some(5)
    );
    for reason in [
        "rejected",
        "retries_exhausted",
        "partial_success",
        "shutdown",
    ] {
        assert_eq!(metric_value(&text, &failed(reason)), Some(0), "{reason}");
    }

    let received = sink.received();
    assert_eq!(
        received.len(),
        2,
        "one backend request per accepted request, no retries"
    );
    // One request in flight at a time, in queue order: bodies are byte-identical, in order.
    assert_eq!(received[0].1, first_body);
    assert_eq!(received[1].1, second_body);
    assert_eq!(
        ExportTraceServiceRequest::decode(received[0].1.clone()).unwrap(),
        first
    );
    assert_eq!(
        ExportTraceServiceRequest::decode(received[1].1.clone()).unwrap(),
        second
    );
    for (headers, _) in &received {
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["x-tenant"], "team-a");
    }

    // The same spans are queryable from the store through the real admin listener.
    let url = format!("http://{}/api/traces/{TRACE_ID_HEX}", shim.admin_addr());
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(
        json["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    shim.shutdown().await;
}

#[tokio::test]
async fn retries_503_then_delivers_once() {
    let (sink, sink_addr) = start_sink(&[
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::SERVICE_UNAVAILABLE,
    ])
    .await;
    let shim = Shim::start(config_for(sink_addr)).await.unwrap();

    let body = post_otlp(&shim, &request("checkout", &trace_id(), 3)).await;
    let text = wait_for_metric(&shim, "meshtrace_shim_exported_spans_total", 3).await;

    let received = sink.received();
    assert_eq!(received.len(), 3, "two 503s, then the 200");
    assert!(
        received.iter().all(|(_, b)| *b == body),
        "every attempt resends the same bytes"
    );
    assert_eq!(
        metric_value(&text, "meshtrace_shim_received_spans_total"),
        Some(3)
    );
    assert_eq!(metric_value(&text, &failed("retries_exhausted")), Some(0));
    assert_eq!(metric_value(&text, &failed("rejected")), Some(0));

    shim.shutdown().await;
}

#[tokio::test]
async fn non_retryable_400_is_dropped_counted_and_not_retried() {
    let (sink, sink_addr) = start_sink(&[StatusCode::BAD_REQUEST]).await;
    let shim = Shim::start(config_for(sink_addr)).await.unwrap();

    post_otlp(&shim, &request("checkout", &trace_id(), 4)).await;
    // The failure is counted only after the retry decision, so at this point any retry would
    // already have reached the sink.
    let text = wait_for_metric(&shim, &failed("rejected"), 4).await;

    assert_eq!(sink.received().len(), 1, "400 must not be retried");
    assert_eq!(
        metric_value(&text, "meshtrace_shim_exported_spans_total"),
        Some(0)
    );
    assert_eq!(
        metric_value(&text, "meshtrace_shim_received_spans_total"),
        Some(4)
    );

    shim.shutdown().await;
}

#[tokio::test]
async fn retries_stop_at_max_attempts_and_are_counted() {
    let (sink, sink_addr) = start_sink_with(Sink {
        fallback: StatusCode::BAD_GATEWAY,
        ..Sink::default()
    })
    .await;
    let shim = Shim::start(config_for(sink_addr)).await.unwrap();

    post_otlp(&shim, &request("checkout", &trace_id(), 2)).await;
    let text = wait_for_metric(&shim, &failed("retries_exhausted"), 2).await;

    assert_eq!(sink.received().len(), 4, "max_attempts = 4");
    assert_eq!(
        metric_value(&text, "meshtrace_shim_exported_spans_total"),
        Some(0)
    );

    shim.shutdown().await;
}

#[tokio::test]
async fn without_a_backend_spans_are_stored_only() {
    let config = ShimConfig {
        otlp_http_addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        ..ShimConfig::default()
    };
    let shim = Shim::start(config).await.unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 2)).await;
    // The store writes on its own thread: wait for its gauge.
    let text = wait_for_metric(&shim, "meshtrace_shim_stored_spans", 2).await;
    assert_eq!(
        metric_value(&text, "meshtrace_shim_received_spans_total"),
        Some(2)
    );
    assert_eq!(
        metric_value(&text, "meshtrace_shim_exported_spans_total"),
        Some(0)
    );
    shim.shutdown().await;
}

#[tokio::test]
async fn start_reports_the_field_it_cannot_bind_or_validate() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ShimConfig {
        otlp_http_addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: taken.local_addr().unwrap(),
        ..ShimConfig::default()
    };
    let error = Shim::start(config).await.unwrap_err();
    assert!(
        matches!(
            error,
            StartError::Bind {
                field: "admin_addr",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().starts_with("admin_addr: "), "{error}");

    let config = ShimConfig {
        max_request_body_bytes: 0,
        ..ShimConfig::default()
    };
    let error = Shim::start(config).await.unwrap_err();
    assert!(
        error.to_string().contains("max_request_body_bytes"),
        "{error}"
    );
}

/// Drives the forwarder directly (no listeners) so its counters can be read after shutdown.
async fn forwarder_with(
    sink: SocketAddr,
    retry: RetryConfig,
) -> (Arc<Metrics>, export::ExportQueue, export::ForwarderHandle) {
    let metrics = Arc::new(Metrics::new());
    let config = ExportConfig {
        retry,
        ..ExportConfig::new(format!("http://{sink}/v1/traces"))
    };
    let forwarder = export::Forwarder::new(&config, Arc::clone(&metrics)).unwrap();
    let (queue, receiver) = export::queue(8);
    (metrics, queue, forwarder.spawn(receiver))
}

fn batch(spans: u8) -> export::ExportBatch {
    export::ExportBatch {
        body: request("checkout", &trace_id(), spans)
            .encode_to_vec()
            .into(),
        spans: u64::from(spans),
    }
}

#[tokio::test]
async fn drain_delivers_what_was_queued_before_shutdown() {
    let (sink, sink_addr) = start_sink(&[]).await;
    let (metrics, queue, handle) = forwarder_with(sink_addr, RetryConfig::default()).await;
    for spans in [1, 2, 3] {
        queue.try_push(batch(spans)).unwrap();
    }
    handle.drain(WAIT_LIMIT).await;

    let text = metrics.encode().unwrap();
    assert_eq!(
        metric_value(&text, "meshtrace_shim_exported_spans_total"),
        Some(6)
    );
    assert_eq!(metric_value(&text, &failed("shutdown")), Some(0));
    assert_eq!(sink.received().len(), 3);
    assert!(
        matches!(queue.try_push(batch(1)), Err(export::PushError::Closed(_))),
        "a drained forwarder takes no more work"
    );
}

#[tokio::test]
async fn drain_deadline_counts_undeliverable_spans_as_shutdown_drops() {
    // The backend is always unavailable and the retry budget is far beyond the drain deadline:
    // the in-flight batch and the queued ones must all be counted, none silently lost.
    let (_sink, sink_addr) = start_sink_with(Sink {
        fallback: StatusCode::SERVICE_UNAVAILABLE,
        ..Sink::default()
    })
    .await;
    let retry = RetryConfig {
        max_attempts: u32::MAX,
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        max_elapsed_ms: 3_600_000,
    };
    let (metrics, queue, handle) = forwarder_with(sink_addr, retry).await;
    for spans in [1, 2, 3] {
        queue.try_push(batch(spans)).unwrap();
    }
    handle.drain(Duration::from_millis(200)).await;

    let text = metrics.encode().unwrap();
    assert_eq!(metric_value(&text, &failed("shutdown")), Some(6), "{text}");
    assert_eq!(
        metric_value(&text, "meshtrace_shim_exported_spans_total"),
        Some(0)
    );
}
