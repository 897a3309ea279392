//! The collector shim with real OTLP clients: the OpenTelemetry Python SDK exporters
//! (http/protobuf and grpc, gzip on and off) and Envoy's own OpenTelemetry tracer
//! (`envoy.tracers.opentelemetry` over gRPC). The shim forwards to a recording sink
//! (`meshtrace_collector_shim::testing::Sink`, an in-process OTLP/HTTP backend that keeps the
//! raw bytes); the spans it forwarded must equal the spans the client sent, every field
//! included (SpanKind, resource, scope, attributes, events, links, status).

use std::time::Duration;

use meshtrace_collector_shim::Shim;
use meshtrace_collector_shim::config::ExportConfig;
use meshtrace_collector_shim::testing::{Reply, Sink, assert_accounting, flatten};
use meshtrace_tests::envoy::{Envoy, OtelTracer};
use meshtrace_tests::shim_e2e::{send_with_python_sdk, shim_config, wait_for_metric};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

const LIMIT: Duration = Duration::from_secs(30);
const EXPORTED: &str = "meshtrace_shim_exported_spans_total{exporter=\"otlp\"}";

async fn shim_to_sink() -> (Shim, std::sync::Arc<Sink>) {
    let sink = Sink::new(vec![], Reply::Status(200));
    let addr = sink.serve_http().await;
    let exporter = ExportConfig::new(format!("http://{addr}/v1/traces"));
    (
        Shim::start(shim_config(vec![exporter])).await.unwrap(),
        sink,
    )
}

#[tokio::test]
async fn python_sdk_exporters_spans_arrive_unchanged() {
    for (protocol, compression) in [
        ("http/protobuf", "none"),
        ("http/protobuf", "gzip"),
        ("grpc", "none"),
        ("grpc", "gzip"),
    ] {
        let (shim, sink) = shim_to_sink().await;
        let endpoint = match protocol {
            "grpc" => format!("http://{}", shim.otlp_grpc_addr()),
            _ => format!("http://{}/v1/traces", shim.otlp_http_addr()),
        };
        let sent = send_with_python_sdk(&endpoint, protocol, compression)
            .await
            .unwrap();
        assert_eq!(sent.spans, 10, "2 rounds of 5 spans");
        assert_eq!(
            sent.trace_ids.len(),
            4,
            "the consumer span starts its own trace (linked)"
        );
        let text = wait_for_metric(&shim.metrics(), EXPORTED, sent.spans, LIMIT)
            .await
            .unwrap();
        assert_accounting(&text, "otlp");

        let forwarded = flatten(&sink.requests());
        let expected = flatten(std::slice::from_ref(&sent.request));
        assert_eq!(forwarded.len(), expected.len(), "{protocol} {compression}");
        assert_eq!(
            forwarded, expected,
            "{protocol} {compression}: forwarded != sent"
        );
        // The comparison covers every kind, typed attributes, links and two scopes.
        let kinds: Vec<i32> = forwarded.iter().map(|f| f.span.kind).collect();
        for kind in [
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
            SpanKind::Internal,
        ] {
            assert!(kinds.contains(&(kind as i32)), "{kind:?} missing");
        }
        assert!(forwarded.iter().any(|f| !f.span.links.is_empty()));
        assert!(forwarded.iter().any(|f| !f.scope_schema_url.is_empty()));
        let scopes: std::collections::BTreeSet<_> = forwarded
            .iter()
            .map(|f| f.scope.as_ref().unwrap().name.clone())
            .collect();
        assert_eq!(scopes.len(), 2);
        // Raw bytes on the wire decode to what was recorded.
        for recording in sink.received() {
            assert_eq!(
                ExportTraceServiceRequest::decode(recording.raw.clone()).unwrap(),
                recording.request
            );
        }
        shim.shutdown().await;
    }
}

/// Envoy with only its OpenTelemetry tracer (no wasm filter): every request through the
/// listener becomes a SERVER span sent over OTLP/gRPC to the shim.
fn envoy_tracer_config(shim_grpc: std::net::SocketAddr) -> String {
    OtelTracer {
        shim_grpc,
        service_name: "envoy-edge",
        preamble: "",
        custom_tags: "",
        upstream: None,
    }
    .config()
}

#[tokio::test]
async fn envoy_opentelemetry_tracer_spans_arrive_unchanged() {
    let (shim, sink) = shim_to_sink().await;
    let envoy = Envoy::start(&envoy_tracer_config(shim.otlp_grpc_addr()))
        .await
        .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/hello", envoy.listener))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = wait_for_metric(&shim.metrics(), EXPORTED, 1, LIMIT)
        .await
        .unwrap();
    assert_accounting(&text, "otlp");

    // What Envoy sent, as the shim received and stored it (before batching and export)…
    let url = format!("http://{}/api/traces/{trace_id}", shim.admin_addr());
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    let stored: TracesData = serde_json::from_slice(&body).unwrap();
    let received = flatten(&[ExportTraceServiceRequest {
        resource_spans: stored.resource_spans,
    }]);
    // …equals what the shim forwarded, field by field.
    let forwarded: Vec<_> = flatten(&sink.requests())
        .into_iter()
        .filter(|f| hex::encode(&f.span.trace_id) == trace_id)
        .collect();
    assert_eq!(forwarded, received);
    assert_eq!(forwarded.len(), 1);
    let (resource, span) = (&forwarded[0].resource, &forwarded[0].span);
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(hex::encode(&span.parent_span_id), parent);
    let service = resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.clone())
        .unwrap();
    assert_eq!(
        service.value,
        Some(
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                "envoy-edge".to_owned()
            )
        )
    );
    shim.shutdown().await;
}
