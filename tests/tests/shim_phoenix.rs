//! The collector shim in front of a real backend: Arize Phoenix 20.26.1, installed and started
//! by `shared/anchors/backend/start_backend.sh` (first run: a ~850 MB virtualenv in
//! `~/.cache/meshtrace-backend`, about a minute), on loopback.
//!
//! 1. Round trip: spans sent by the OpenTelemetry Python SDK to the shim (OTLP/HTTP), forwarded
//!    by the shim to Phoenix over OTLP/HTTP and over OTLP/gRPC, are read back by trace id with
//!    their names, parents and attributes. (Phoenix does not keep SpanKind, resource or scope:
//!    those are checked on the bytes in `shim_clients.rs`.)
//! 2. Retry on Phoenix's real overload signal: with `PHOENIX_MAX_SPANS_QUEUE_SIZE=100`, Phoenix
//!    answers 503 while its write queue is full; the shim retries until all 3 000 spans are in.

use std::collections::BTreeSet;
use std::time::Duration;

use meshtrace_collector_shim::Shim;
use meshtrace_collector_shim::config::{BatchConfig, ExportConfig, Protocol, RetryConfig};
use meshtrace_collector_shim::testing::{assert_accounting, metric_value, post_protobuf};
use meshtrace_tests::shim_e2e::{Phoenix, send_with_python_sdk, shim_config, wait_for_metric};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};

/// Phoenix writes asynchronously at ~190 spans/s (anchors/shim.md §1.6): generous waits.
const VISIBLE_LIMIT: Duration = Duration::from_secs(120);
const EXPORT_LIMIT: Duration = Duration::from_secs(120);

fn exported(exporter: &str) -> String {
    format!("meshtrace_shim_exported_spans_total{{exporter=\"{exporter}\"}}")
}

#[tokio::test]
async fn phoenix_round_trip_and_retry_on_its_503() {
    let phoenix = Phoenix::start(100).await.unwrap();
    round_trip(&phoenix).await;
    retry_on_overload(&phoenix).await;
}

async fn round_trip(phoenix: &Phoenix) {
    let http = ExportConfig {
        name: "phoenix-http".to_owned(),
        ..ExportConfig::new(phoenix.otlp_http_url.clone())
    };
    let grpc = ExportConfig {
        name: "phoenix-grpc".to_owned(),
        protocol: Protocol::Grpc,
        ..ExportConfig::new(phoenix.otlp_grpc_url.clone())
    };
    for exporter in [http, grpc] {
        let name = exporter.name.clone();
        let shim = Shim::start(shim_config(vec![exporter])).await.unwrap();
        let endpoint = format!("http://{}/v1/traces", shim.otlp_http_addr());
        let sent = send_with_python_sdk(&endpoint, "http/protobuf", "gzip")
            .await
            .unwrap();
        let text = wait_for_metric(&shim.metrics(), &exported(&name), sent.spans, EXPORT_LIMIT)
            .await
            .unwrap();
        assert_accounting(&text, &name);
        shim.shutdown().await;

        for trace_id in &sent.trace_ids {
            let expected: Vec<&Span> = sent
                .request
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .filter(|s| hex::encode(&s.trace_id) == *trace_id)
                .collect();
            let stored = phoenix
                .query(trace_id, expected.len(), VISIBLE_LIMIT)
                .await
                .unwrap();
            let spans = stored["spans"].as_array().unwrap();
            assert_eq!(spans.len(), expected.len(), "{name}: trace {trace_id}");
            for span in expected {
                let id = hex::encode(&span.span_id);
                let got = spans
                    .iter()
                    .find(|s| s["span_id"] == id)
                    .unwrap_or_else(|| panic!("{name}: span {id} missing in Phoenix: {stored}"));
                assert_eq!(got["name"], span.name, "{name}");
                assert_eq!(
                    got["parent_span_id"].as_str().unwrap_or(""),
                    hex::encode(&span.parent_span_id)
                );
                for attribute in &span.attributes {
                    assert_same_value(&got["attributes"][&attribute.key], attribute, &name);
                }
            }
        }
    }
}

/// Phoenix returns attribute values as plain JSON (query_spans.py normalises them).
fn assert_same_value(got: &serde_json::Value, attribute: &KeyValue, exporter: &str) {
    let expected = match attribute.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => serde_json::json!(s),
        Some(any_value::Value::IntValue(i)) => serde_json::json!(i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::json!(d),
        Some(any_value::Value::BoolValue(b)) => serde_json::json!(b),
        // Arrays are stored too, but their normalised shape is Phoenix's business.
        _ => return,
    };
    assert_eq!(*got, expected, "{exporter}: attribute {}", attribute.key);
}

/// 6 requests of 500 spans, one trace each; Phoenix's queue holds 100.
fn burst() -> Vec<ExportTraceServiceRequest> {
    (0..6u8)
        .map(|t| {
            let trace_id = vec![0xfe, t, 0xed, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let spans = (0..500u16)
                .map(|i| Span {
                    trace_id: trace_id.clone(),
                    span_id: [0xab, t, 0, 0, 0, 0, (i >> 8) as u8, i as u8].to_vec(),
                    name: format!("burst-{t}-{i}"),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: 1_760_000_000_000_000_000 + u64::from(i),
                    end_time_unix_nano: 1_760_000_000_000_500_000 + u64::from(i),
                    attributes: vec![KeyValue {
                        key: "burst.index".to_owned(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::IntValue(i64::from(i))),
                        }),
                        ..KeyValue::default()
                    }],
                    ..Span::default()
                })
                .collect();
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                }],
            }
        })
        .collect()
}

async fn retry_on_overload(phoenix: &Phoenix) {
    let mut config = shim_config(vec![ExportConfig {
        name: "phoenix".to_owned(),
        // One at a time: Phoenix checks its queue before enqueueing, so concurrent requests
        // would all pass the check; sequential ones meet the full queue.
        max_in_flight: 1,
        retry: RetryConfig {
            max_attempts: 1_000,
            initial_backoff_ms: 200,
            max_backoff_ms: 2_000,
            max_elapsed_ms: 600_000,
        },
        ..ExportConfig::new(phoenix.otlp_http_url.clone())
    }]);
    config.batch = BatchConfig {
        max_spans: 500,
        timeout_ms: 20,
        ..BatchConfig::default()
    };
    let shim = Shim::start(config).await.unwrap();
    let requests = burst();
    for request in &requests {
        assert_eq!(post_protobuf(shim.otlp_http_addr(), request).await, 200);
    }
    let text = wait_for_metric(&shim.metrics(), &exported("phoenix"), 3_000, EXPORT_LIMIT)
        .await
        .unwrap();
    assert_accounting(&text, "phoenix");
    let retried = metric_value(
        &text,
        "meshtrace_shim_export_requests_total{exporter=\"phoenix\",outcome=\"retryable_error\"}",
    )
    .unwrap();
    assert!(
        retried > 0,
        "Phoenix never answered 503; the retry path was not exercised:\n{text}"
    );
    for reason in [
        "rejected",
        "retries_exhausted",
        "partial_success",
        "queue_full",
        "shutdown",
    ] {
        let series = format!(
            "meshtrace_shim_dropped_spans_total{{exporter=\"phoenix\",reason=\"{reason}\"}}"
        );
        assert_eq!(metric_value(&text, &series), Some(0), "{reason}");
    }
    shim.shutdown().await;

    // Every span of every trace is stored, once.
    for request in &requests {
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        let trace_id = hex::encode(&spans[0].trace_id);
        let stored = phoenix
            .query(&trace_id, spans.len(), VISIBLE_LIMIT)
            .await
            .unwrap();
        let ids: BTreeSet<&str> = stored["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["span_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), spans.len(), "trace {trace_id}");
    }
    println!("phoenix answered 503 to {retried} export attempts; all 3000 spans stored");
}
