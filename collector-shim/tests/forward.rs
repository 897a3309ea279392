//! The real `Shim::start` on `127.0.0.1:0`, forwarding to recording sinks (see
//! `fixtures/sink.rs`): batching, fan-out, protocols, retries, partial success, shutdown drain,
//! back-pressure, and the accounting invariant on every test.
//!
//! No assertion depends on wall-clock time: waits poll `/metrics` until a counter reaches its
//! expected value, with a generous deadline that only turns a hang into a failure.

mod fixtures;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use meshtrace_collector_shim::config::{
    BatchConfig, Compression, ExportConfig, HeaderConfig, Protocol, QueueConfig, RetryConfig,
    ShimConfig,
};
use meshtrace_collector_shim::{Shim, StartError};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::net::TcpListener;

use fixtures::*;
use meshtrace_collector_shim::testing::{Reply, Sink, post_protobuf};

/// Generous bound for the shim to reach an expected state (a hang guard, not a measurement).
const WAIT_LIMIT: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(20);

fn fast_retry() -> RetryConfig {
    RetryConfig {
        max_attempts: 4,
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        max_elapsed_ms: 10_000,
    }
}

fn exporter(name: &str, protocol: Protocol, sink: SocketAddr) -> ExportConfig {
    let endpoint = match protocol {
        Protocol::Grpc => format!("http://{sink}"),
        _ => format!("http://{sink}/v1/traces"),
    };
    ExportConfig {
        name: name.to_owned(),
        protocol,
        headers: vec![HeaderConfig::literal("x-tenant", "team-a")],
        retry: fast_retry(),
        ..ExportConfig::new(endpoint)
    }
}

fn config(exporters: Vec<ExportConfig>) -> ShimConfig {
    ShimConfig {
        otlp_http_addr: "127.0.0.1:0".parse().unwrap(),
        otlp_grpc_addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        batch: BatchConfig {
            timeout_ms: 20,
            ..BatchConfig::default()
        },
        exporters,
        ..ShimConfig::default()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post_otlp_status(shim: &Shim, request: &ExportTraceServiceRequest) -> StatusCode {
    StatusCode::from_u16(post_protobuf(shim.otlp_http_addr(), request).await).unwrap()
}

async fn post_otlp(shim: &Shim, request: &ExportTraceServiceRequest) {
    assert_eq!(post_otlp_status(shim, request).await, StatusCode::OK);
}

async fn metrics(shim: &Shim) -> String {
    let url = format!("http://{}/metrics", shim.admin_addr());
    client()
        .get(url)
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

fn exported(exporter: &str) -> String {
    format!("meshtrace_shim_exported_spans_total{{exporter=\"{exporter}\"}}")
}

fn dropped(exporter: &str, reason: &str) -> String {
    format!("meshtrace_shim_dropped_spans_total{{exporter=\"{exporter}\",reason=\"{reason}\"}}")
}

#[tokio::test]
async fn forwards_exactly_the_posted_spans_merged_across_sources() {
    let sink = Sink::new(vec![], Reply::Status(200));
    let addr = sink.serve_http().await;
    let mut config = config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]);
    // Five spans fill a batch at once: the two requests below share one export, whatever the timing.
    config.batch = BatchConfig {
        max_spans: 5,
        timeout_ms: 60_000,
        ..BatchConfig::default()
    };
    let shim = Shim::start(config).await.unwrap();

    let first = request("checkout", &trace_id(), 3);
    let second = request("payments", &[7; 16], 2);
    post_otlp(&shim, &first).await;
    post_otlp(&shim, &second).await;

    let text = wait_for_metric(&shim, &exported("otlp"), 5).await;
    assert_accounting(&text, "otlp");
    let received = sink.received();
    assert_eq!(received.len(), 1, "one batch for both senders");
    let batch = &received[0].request;
    assert_eq!(
        batch.resource_spans.len(),
        2,
        "one ResourceSpans per resource"
    );
    assert_eq!(
        flatten(std::slice::from_ref(batch)),
        flatten(&[first.clone(), second.clone()]),
        "every field of every span, resource and scope"
    );
    assert_eq!(
        received[0].headers["content-type"],
        "application/x-protobuf"
    );
    assert_eq!(received[0].headers["x-tenant"], "team-a");
    assert_eq!(
        ExportTraceServiceRequest::decode(received[0].raw.clone()).unwrap(),
        *batch
    );

    // The same spans are queryable from the store through the admin listener.
    let url = format!("http://{}/api/traces/{TRACE_ID_HEX}", shim.admin_addr());
    let body = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let spans = &json["resourceSpans"][0]["scopeSpans"][0]["spans"];
    assert_eq!(spans.as_array().unwrap().len(), 3);
    shim.shutdown().await;
}

#[tokio::test]
async fn merges_requests_of_one_resource_into_one_resource_spans() {
    let sink = Sink::new(vec![], Reply::Status(200));
    let addr = sink.serve_http().await;
    let mut config = config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]);
    config.batch = BatchConfig {
        max_spans: 4,
        timeout_ms: 60_000,
        ..BatchConfig::default()
    };
    let shim = Shim::start(config).await.unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 2)).await;
    post_otlp(&shim, &request("checkout", &[9; 16], 2)).await;
    wait_for_metric(&shim, &exported("otlp"), 4).await;
    let batch = &sink.received()[0].request;
    assert_eq!(batch.resource_spans.len(), 1);
    assert_eq!(batch.resource_spans[0].scope_spans.len(), 1);
    assert_eq!(batch.resource_spans[0].scope_spans[0].spans.len(), 4);
    shim.shutdown().await;
}

#[tokio::test]
async fn fans_out_to_grpc_and_gzipped_json_exporters() {
    let grpc_sink = Sink::new(vec![], Reply::Status(200));
    let json_sink = Sink::new(vec![], Reply::Status(200));
    let grpc_addr = grpc_sink.serve_grpc().await;
    let json_addr = json_sink.serve_http().await;
    let mut json_exporter = exporter("json", Protocol::HttpJson, json_addr);
    json_exporter.compression = Compression::Gzip;
    let mut grpc_exporter = exporter("grpc", Protocol::Grpc, grpc_addr);
    grpc_exporter.compression = Compression::Gzip;
    let shim = Shim::start(config(vec![grpc_exporter, json_exporter]))
        .await
        .unwrap();

    let sent = request("checkout", &trace_id(), 3);
    post_otlp(&shim, &sent).await;
    wait_for_metric(&shim, &exported("grpc"), 3).await;
    let text = wait_for_metric(&shim, &exported("json"), 3).await;
    assert_accounting(&text, "grpc");
    assert_accounting(&text, "json");

    assert_eq!(
        flatten(&grpc_sink.requests()),
        flatten(std::slice::from_ref(&sent))
    );
    assert_eq!(flatten(&json_sink.requests()), flatten(&[sent]));
    let grpc = &grpc_sink.received()[0];
    assert_eq!(grpc.headers["x-tenant"], "team-a");
    assert_eq!(grpc.headers["grpc-encoding"], "gzip");
    let json = &json_sink.received()[0];
    assert_eq!(json.headers["content-type"], "application/json");
    assert_eq!(json.headers["content-encoding"], "gzip");
    shim.shutdown().await;
}

#[tokio::test]
async fn otlp_grpc_receiver_accepts_gzip_and_forwards() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let sink = Sink::new(vec![], Reply::Status(200));
    let addr = sink.serve_http().await;
    let shim = Shim::start(config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]))
        .await
        .unwrap();
    let mut client = TraceServiceClient::connect(format!("http://{}", shim.otlp_grpc_addr()))
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let sent = request("checkout", &trace_id(), 2);
    let response = client.export(sent.clone()).await.unwrap().into_inner();
    assert_eq!(response.partial_success, None);
    // An empty request succeeds.
    client
        .export(ExportTraceServiceRequest::default())
        .await
        .unwrap();
    let text = wait_for_metric(&shim, &exported("otlp"), 2).await;
    assert_accounting(&text, "otlp");
    assert_eq!(flatten(&sink.requests()), flatten(&[sent]));
    shim.shutdown().await;
}

#[tokio::test]
async fn retries_503_then_delivers_once() {
    let sink = Sink::new(
        vec![Reply::Status(503), Reply::Status(503)],
        Reply::Status(200),
    );
    let addr = sink.serve_http().await;
    let shim = Shim::start(config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]))
        .await
        .unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 3)).await;
    let text = wait_for_metric(&shim, &exported("otlp"), 3).await;
    let received = sink.received();
    assert_eq!(received.len(), 3, "two 503s, then the 200");
    assert!(
        received.iter().all(|r| r.raw == received[0].raw),
        "same bytes each attempt"
    );
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_export_retries_total{exporter=\"otlp\"}"
        ),
        Some(2)
    );
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_export_requests_total{exporter=\"otlp\",outcome=\"retryable_error\"}"
        ),
        Some(2)
    );
    assert_accounting(&text, "otlp");
    shim.shutdown().await;
}

#[tokio::test]
async fn grpc_exporter_follows_the_code_table() {
    // UNAVAILABLE and RESOURCE_EXHAUSTED with RetryInfo are retried; INVALID_ARGUMENT drops.
    let sink = Sink::new(
        vec![
            Reply::Grpc(tonic::Code::Unavailable, None),
            Reply::Grpc(
                tonic::Code::ResourceExhausted,
                Some(Duration::from_millis(10)),
            ),
            Reply::Status(200),
            Reply::Grpc(tonic::Code::InvalidArgument, None),
            Reply::Grpc(tonic::Code::ResourceExhausted, None),
        ],
        Reply::Status(200),
    );
    let addr = sink.serve_grpc().await;
    let mut config = config(vec![exporter("otlp", Protocol::Grpc, addr)]);
    config.exporters[0].max_in_flight = 1;
    let shim = Shim::start(config).await.unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 2)).await;
    wait_for_metric(&shim, &exported("otlp"), 2).await;
    post_otlp(&shim, &request("checkout", &trace_id(), 3)).await;
    wait_for_metric(&shim, &dropped("otlp", "rejected"), 3).await;
    post_otlp(&shim, &request("checkout", &trace_id(), 4)).await;
    let text = wait_for_metric(&shim, &dropped("otlp", "rejected"), 7).await;
    assert_eq!(
        sink.received().len(),
        5,
        "3 attempts, then one each for the permanent errors"
    );
    assert_accounting(&text, "otlp");
    shim.shutdown().await;
}

#[tokio::test]
async fn non_retryable_400_is_dropped_counted_and_not_retried() {
    let sink = Sink::new(vec![Reply::Status(400)], Reply::Status(200));
    let addr = sink.serve_http().await;
    let shim = Shim::start(config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]))
        .await
        .unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 4)).await;
    let text = wait_for_metric(&shim, &dropped("otlp", "rejected"), 4).await;
    assert_eq!(sink.received().len(), 1, "400 must not be retried");
    assert_eq!(metric_value(&text, &exported("otlp")), Some(0));
    assert_accounting(&text, "otlp");
    shim.shutdown().await;
}

#[tokio::test]
async fn partial_success_is_counted_and_not_retried() {
    let sink = Sink::new(vec![Reply::PartialSuccess(2)], Reply::Status(200));
    let addr = sink.serve_http().await;
    let shim = Shim::start(config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]))
        .await
        .unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 5)).await;
    let text = wait_for_metric(&shim, &dropped("otlp", "partial_success"), 2).await;
    assert_eq!(metric_value(&text, &exported("otlp")), Some(3));
    assert_eq!(sink.received().len(), 1);
    assert_accounting(&text, "otlp");
    shim.shutdown().await;
}

#[tokio::test]
async fn retries_stop_at_max_attempts_and_are_counted() {
    let sink = Sink::new(vec![], Reply::Status(502));
    let addr = sink.serve_http().await;
    let shim = Shim::start(config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]))
        .await
        .unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 2)).await;
    let text = wait_for_metric(&shim, &dropped("otlp", "retries_exhausted"), 2).await;
    assert_eq!(sink.received().len(), 4, "max_attempts = 4");
    assert_accounting(&text, "otlp");
    shim.shutdown().await;
}

#[tokio::test]
async fn slow_backend_fills_the_queue_then_refuses_with_429_and_recovers() {
    // A backend that always answers 503: batches stay in flight (retrying), the budget fills,
    // the receiver refuses (retryable), /readyz says not ready, and nothing is lost.
    let sink = Sink::new(vec![], Reply::Status(503));
    let addr = sink.serve_http().await;
    let mut config = config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]);
    config.queue = QueueConfig {
        max_spans: 10,
        ..QueueConfig::default()
    };
    config.exporters[0].retry = RetryConfig {
        max_attempts: u32::MAX,
        initial_backoff_ms: 5,
        max_backoff_ms: 20,
        max_elapsed_ms: 3_600_000,
    };
    config.shutdown_timeout_ms = 200;
    let shim = Shim::start(config).await.unwrap();
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..6 {
        match post_otlp_status(&shim, &request("checkout", &trace_id(), 3)).await {
            StatusCode::OK => accepted += 3,
            StatusCode::TOO_MANY_REQUESTS => refused += 3,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted, 9, "three requests fit in 10 spans");
    assert_eq!(refused, 9);
    let ready = client()
        .get(format!("http://{}/readyz", shim.admin_addr()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    let text = metrics(&shim).await;
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_spans_total{reason=\"queue_full\"}"
        ),
        Some(9)
    );
    assert_accounting(&text, "otlp");

    // Shutdown with the backend still down: the deadline passes, every span is counted.
    let metrics = shim.metrics();
    shim.shutdown().await;
    let text = metrics.encode().unwrap();
    assert_eq!(
        metric_value(&text, &dropped("otlp", "shutdown")),
        Some(9),
        "{text}"
    );
    assert_accounting(&text, "otlp");
}

#[tokio::test]
async fn shutdown_drains_what_was_accepted() {
    let sink = Sink::new(vec![], Reply::Status(200));
    let addr = sink.serve_http().await;
    let mut config = config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]);
    // Long batch timeout: only the shutdown flush can send these.
    config.batch.timeout_ms = 3_600_000;
    let shim = Shim::start(config).await.unwrap();
    for spans in [1, 2, 3] {
        post_otlp(&shim, &request("checkout", &trace_id(), spans)).await;
    }
    let metrics = shim.metrics();
    shim.shutdown().await;
    let text = metrics.encode().unwrap();
    assert_eq!(metric_value(&text, &exported("otlp")), Some(6));
    assert_eq!(metric_value(&text, &dropped("otlp", "shutdown")), Some(0));
    assert_accounting(&text, "otlp");
    assert_eq!(flatten(&sink.requests()).len(), 6);
}

#[tokio::test]
async fn without_an_exporter_spans_are_stored_only() {
    let shim = Shim::start(config(vec![])).await.unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 2)).await;
    // The store writes on its own thread: wait for its gauge.
    let text = wait_for_metric(&shim, "meshtrace_shim_stored_spans", 2).await;
    assert_eq!(
        metric_value(&text, "meshtrace_shim_accepted_spans_total"),
        Some(2)
    );
    assert!(
        !text.contains("meshtrace_shim_exported_spans_total{"),
        "nothing to export to:\n{text}"
    );
    shim.shutdown().await;
}

#[tokio::test]
async fn start_reports_the_field_it_cannot_bind_or_validate() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut bad = config(vec![]);
    bad.admin_addr = taken.local_addr().unwrap();
    let error = Shim::start(bad).await.unwrap_err();
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

    let mut bad = config(vec![]);
    bad.max_request_body_bytes = 0;
    let error = Shim::start(bad).await.unwrap_err();
    assert!(
        error.to_string().contains("max_request_body_bytes"),
        "{error}"
    );

    // A header secret from an unset variable: named, never shown.
    let mut bad = config(vec![ExportConfig::new("http://127.0.0.1:1/v1/traces")]);
    bad.exporters[0].headers = vec![HeaderConfig {
        name: "authorization".to_owned(),
        value_from_env: Some("MESHTRACE_TEST_UNSET_TOKEN".to_owned()),
        ..HeaderConfig::default()
    }];
    let error = Shim::start(bad).await.unwrap_err();
    assert!(
        error.to_string().contains("MESHTRACE_TEST_UNSET_TOKEN"),
        "{error}"
    );
}

#[tokio::test]
async fn secrets_reach_the_backend_but_never_the_logs_or_metrics() {
    let sink = Sink::new(vec![], Reply::Status(200));
    let addr = sink.serve_http().await;
    let mut exporter = exporter("otlp", Protocol::HttpProtobuf, addr);
    exporter.headers.push(HeaderConfig {
        name: "authorization".to_owned(),
        value_from_env: Some("BACKEND_TOKEN".to_owned()),
        ..HeaderConfig::default()
    });
    let env: std::collections::HashMap<&str, &str> = [("BACKEND_TOKEN", "Bearer s3cr3t")].into();
    let shim = Shim::start_with_env(config(vec![exporter]), &env)
        .await
        .unwrap();
    post_otlp(&shim, &request("checkout", &trace_id(), 1)).await;
    let text = wait_for_metric(&shim, &exported("otlp"), 1).await;
    assert_eq!(sink.received()[0].headers["authorization"], "Bearer s3cr3t");
    assert!(!text.contains("s3cr3t"));
    assert!(!format!("{shim:?}").contains("s3cr3t"));
    shim.shutdown().await;
}

#[tokio::test]
async fn concurrent_senders_lose_nothing() {
    let sink = Sink::new(vec![], Reply::Status(200));
    let addr = sink.serve_http().await;
    let shim = Arc::new(
        Shim::start(config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]))
            .await
            .unwrap(),
    );
    let mut senders = Vec::new();
    for sender in 0..8u8 {
        let shim = Arc::clone(&shim);
        senders.push(tokio::spawn(async move {
            for i in 0..10u8 {
                let request = request(
                    &format!("svc-{sender}"),
                    &[sender, i, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                    5,
                );
                post_otlp(&shim, &request).await;
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let text = wait_for_metric(&shim, &exported("otlp"), 400).await;
    assert_accounting(&text, "otlp");
    assert_eq!(flatten(&sink.requests()).len(), 400);
    Arc::into_inner(shim).unwrap().shutdown().await;
}

/// A raw gRPC call (HTTP/2, one length-prefixed message), for bodies tonic's client would not
/// send: returns the `grpc-status`.
async fn raw_grpc(shim: &Shim, compressed: bool, message: &[u8]) -> String {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    let mut request = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!(
            "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            shim.otlp_grpc_addr()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if compressed {
        request = request.header("grpc-encoding", "gzip");
    }
    let response = request.body(frame).send().await.unwrap();
    // Refusals before the handler are trailers-only answers: the status is in the headers.
    response.headers()["grpc-status"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn grpc_receiver_status_codes_follow_the_otlp_spec() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let sink = Sink::new(vec![], Reply::Status(503));
    let addr = sink.serve_http().await;
    let mut config = config(vec![exporter("otlp", Protocol::HttpProtobuf, addr)]);
    config.max_request_body_bytes = 64 * 1024;
    config.queue = QueueConfig {
        max_spans: 2,
        ..QueueConfig::default()
    };
    config.exporters[0].retry.max_attempts = u32::MAX;
    config.exporters[0].retry.max_elapsed_ms = 3_600_000;
    config.shutdown_timeout_ms = 100;
    let shim = Shim::start(config).await.unwrap();

    // Undecodable: INVALID_ARGUMENT (3).
    assert_eq!(raw_grpc(&shim, false, b"\xff\xff\xff\xff").await, "3");
    // Over the limit uncompressed, and a gzip bomb over it once inflated: RESOURCE_EXHAUSTED (8).
    assert_eq!(raw_grpc(&shim, false, &vec![0u8; 100 * 1024]).await, "8");
    let mut bomb = GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![0u8; 4 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 64 * 1024);
    assert_eq!(raw_grpc(&shim, true, &bomb).await, "8");
    // Accepted, then the queue is full: UNAVAILABLE with RetryInfo.
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use tonic_types::StatusExt;
    let mut client = TraceServiceClient::connect(format!("http://{}", shim.otlp_grpc_addr()))
        .await
        .unwrap();
    client
        .export(request("checkout", &trace_id(), 2))
        .await
        .unwrap();
    let status = client
        .export(request("checkout", &trace_id(), 2))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    let metrics = shim.metrics();
    shim.shutdown().await;
    let text = metrics.encode().unwrap();
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_requests_total{reason=\"malformed\"}"
        ),
        Some(1)
    );
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_requests_total{reason=\"too_large\"}"
        ),
        Some(2)
    );
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_spans_total{reason=\"queue_full\"}"
        ),
        Some(2)
    );
    assert_accounting(&text, "otlp");
}

/// A private CA and a `localhost` server certificate it signed: `(ca_pem, cert_pem, key_pem)`.
fn private_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

#[tokio::test]
async fn tls_exporters_trust_a_custom_ca_and_only_with_it() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        tls_exporter_case(protocol).await;
    }
}

async fn tls_exporter_case(protocol: Protocol) {
    let (ca, cert, key) = private_ca();
    let sink = Sink::new(vec![], Reply::Status(200));
    let (addr, path) = match protocol {
        Protocol::Grpc => (sink.serve_grpc_tls(&cert, &key).await, ""),
        _ => (sink.serve_https(&cert, &key).await, "/v1/traces"),
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let endpoint = format!("https://localhost:{}{path}", addr.port());

    // With the CA: delivered over TLS.
    let mut trusted = exporter("otlp", protocol, addr);
    trusted.endpoint = endpoint.clone();
    trusted.tls.ca_file = Some(ca_file);
    let shim = Shim::start(config(vec![trusted])).await.unwrap();
    let sent = request("checkout", &trace_id(), 2);
    post_otlp(&shim, &sent).await;
    let text = wait_for_metric(&shim, &exported("otlp"), 2).await;
    assert_accounting(&text, "otlp");
    assert_eq!(
        flatten(&sink.requests()),
        flatten(std::slice::from_ref(&sent))
    );
    shim.shutdown().await;

    // Without it (system roots only): the handshake fails, nothing reaches the sink.
    let mut untrusted = exporter("otlp", protocol, addr);
    untrusted.endpoint = endpoint;
    untrusted.retry.max_attempts = 2;
    let shim = Shim::start(config(vec![untrusted])).await.unwrap();
    post_otlp(&shim, &sent).await;
    let text = wait_for_metric(&shim, &dropped("otlp", "retries_exhausted"), 2).await;
    assert_accounting(&text, "otlp");
    assert_eq!(
        sink.received().len(),
        1,
        "only the trusted shim got through"
    );
    shim.shutdown().await;
}

#[tokio::test]
async fn an_attempt_over_the_timeout_is_abandoned_and_retried() {
    for protocol in [Protocol::HttpProtobuf, Protocol::Grpc] {
        let sink = Sink::new(
            vec![Reply::Hang(Duration::from_secs(5))],
            Reply::Status(200),
        );
        let addr = match protocol {
            Protocol::Grpc => sink.serve_grpc().await,
            _ => sink.serve_http().await,
        };
        let mut exporter = exporter("otlp", protocol, addr);
        exporter.timeout_ms = 200;
        let shim = Shim::start(config(vec![exporter])).await.unwrap();
        post_otlp(&shim, &request("checkout", &trace_id(), 2)).await;
        let text = wait_for_metric(&shim, &exported("otlp"), 2).await;
        let retryable =
            "meshtrace_shim_export_requests_total{exporter=\"otlp\",outcome=\"retryable_error\"}";
        assert_eq!(metric_value(&text, retryable), Some(1), "{protocol:?}");
        assert_eq!(
            sink.received().len(),
            2,
            "{protocol:?}: the hung attempt, then the retry"
        );
        assert_accounting(&text, "otlp");
        shim.shutdown().await;
    }
}
