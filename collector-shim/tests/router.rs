//! Router tests without sockets: `otlp_http_app(state).oneshot(request)` and the same for
//! `admin_app`, sharing one `AppState` so ingest is visible through the admin endpoints.

mod fixtures;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{Method, Request, Response, StatusCode};
use meshtrace_collector_shim::config::{ShimConfig, StoreConfig};
use meshtrace_collector_shim::export::{self, ExportReceiver};
use meshtrace_collector_shim::{AppState, Metrics, admin_app, otlp_http_app, rpc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tower::ServiceExt;

use fixtures::*;

const PROTOBUF: &str = "application/x-protobuf";

struct Apps {
    otlp: Router,
    admin: Router,
}

fn apps_with(config: &ShimConfig, queue: Option<export::ExportQueue>) -> Apps {
    let state = AppState::new(config, Arc::new(Metrics::new()), queue).unwrap();
    Apps {
        otlp: otlp_http_app(state.clone()),
        admin: admin_app(state),
    }
}

fn apps() -> Apps {
    apps_with(&ShimConfig::default(), None)
}

fn post(content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::builder().method(Method::POST).uri("/v1/traces");
    if let Some(content_type) = content_type {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    builder.body(body.into()).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::builder().uri(uri).body(Body::empty()).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> Response<Body> {
    app.clone().oneshot(request).await.unwrap()
}

async fn body_bytes(response: Response<Body>) -> Vec<u8> {
    to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

fn content_type(response: &Response<Body>) -> &str {
    response.headers()[CONTENT_TYPE].to_str().unwrap()
}

/// Asserts an OTLP error response: status, protobuf `google.rpc.Status` body with `code`.
async fn assert_rpc_error(response: Response<Body>, status: StatusCode, code: i32) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(content_type(&response), PROTOBUF);
    let rpc_status = rpc::Status::decode(body_bytes(response).await.as_slice()).unwrap();
    assert_eq!(rpc_status.code, code);
    assert!(!rpc_status.message.is_empty());
    rpc_status.message
}

async fn metrics_text(apps: &Apps) -> String {
    let response = send(&apps.admin, get("/metrics")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(content_type(&response).starts_with("application/openmetrics-text"));
    String::from_utf8(body_bytes(response).await).unwrap()
}

#[tokio::test]
async fn valid_protobuf_is_accepted_with_an_empty_export_response() {
    let apps = apps();
    let body = encoded(&request("checkout", &trace_id(), 3));
    let response = send(&apps.otlp, post(Some(PROTOBUF), body)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), PROTOBUF);
    let decoded =
        ExportTraceServiceResponse::decode(body_bytes(response).await.as_slice()).unwrap();
    assert_eq!(decoded.partial_success, None);
}

#[tokio::test]
async fn content_type_matching_ignores_case_and_parameters() {
    let apps = apps();
    let body = encoded(&request("checkout", &trace_id(), 1));
    let response = send(
        &apps.otlp,
        post(Some("Application/X-Protobuf; proto=x"), body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn empty_body_is_success() {
    let apps = apps();
    let response = send(&apps.otlp, post(Some(PROTOBUF), Body::empty())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), PROTOBUF);
    let text = metrics_text(&apps).await;
    assert_eq!(
        metric_value(&text, "meshtrace_shim_received_spans_total"),
        Some(0)
    );
}

#[tokio::test]
async fn garbage_is_400_with_invalid_argument_status() {
    let apps = apps();
    let response = send(
        &apps.otlp,
        post(Some(PROTOBUF), &b"\xff\xff\xff not protobuf"[..]),
    )
    .await;
    let message = assert_rpc_error(
        response,
        StatusCode::BAD_REQUEST,
        rpc::code::INVALID_ARGUMENT,
    )
    .await;
    assert!(message.contains("ExportTraceServiceRequest"), "{message}");
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let config = ShimConfig {
        max_request_body_bytes: 16,
        ..ShimConfig::default()
    };
    let apps = apps_with(&config, None);
    let body = encoded(&request("checkout", &trace_id(), 1));
    assert!(body.len() > 16);
    let response = send(&apps.otlp, post(Some(PROTOBUF), body)).await;
    assert_rpc_error(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        rpc::code::RESOURCE_EXHAUSTED,
    )
    .await;

    // A body of exactly the limit is read (and then refused for being garbage, not for size).
    let at_limit = vec![0u8; 16];
    let response = send(&apps.otlp, post(Some(PROTOBUF), at_limit)).await;
    assert_ne!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let text = metrics_text(&apps).await;
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_requests_total{reason=\"too_large\"}"
        ),
        Some(1)
    );
}

#[tokio::test]
async fn bodies_above_axums_default_limit_are_accepted_when_under_ours() {
    let apps = apps();
    let mut big = request("checkout", &trace_id(), 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(3 * 1024 * 1024);
    let response = send(&apps.otlp, post(Some(PROTOBUF), encoded(&big))).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn json_missing_content_type_and_gzip_are_415() {
    let apps = apps();
    let json = r#"{"resourceSpans":[]}"#;
    let response = send(&apps.otlp, post(Some("application/json"), json)).await;
    let message = assert_rpc_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        rpc::code::INVALID_ARGUMENT,
    )
    .await;
    assert!(message.contains("application/json"), "{message}");

    let response = send(&apps.otlp, post(None, Body::empty())).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut gzip = post(Some(PROTOBUF), Body::empty());
    gzip.headers_mut()
        .insert(CONTENT_ENCODING, "gzip".parse().unwrap());
    let response = send(&apps.otlp, gzip).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let text = metrics_text(&apps).await;
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_requests_total{reason=\"unsupported_media_type\"}"
        ),
        Some(3)
    );
}

#[tokio::test]
async fn wrong_method_is_405() {
    let apps = apps();
    let response = send(&apps.otlp, get("/v1/traces")).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn arbitrary_bytes_never_panic() {
    let apps = apps();
    let valid = encoded(&request("checkout", &trace_id(), 2));
    // Every prefix of a valid request, then seeded random byte strings.
    let mut bodies: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let len = rng.random_range(0..64);
        bodies.push((0..len).map(|_| rng.random()).collect());
    }
    for body in bodies {
        let response = send(&apps.otlp, post(Some(PROTOBUF), body.clone())).await;
        assert!(
            matches!(response.status(), StatusCode::OK | StatusCode::BAD_REQUEST),
            "{body:?} → {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn stored_trace_is_served_as_otlp_json() {
    let apps = apps();
    let body = encoded(&request("checkout", &trace_id(), 2));
    assert_eq!(
        send(&apps.otlp, post(Some(PROTOBUF), body)).await.status(),
        StatusCode::OK
    );

    // Upper-case ids are accepted in the path.
    let uri = format!("/api/traces/{}", TRACE_ID_HEX.to_uppercase());
    let response = send(&apps.admin, get(&uri)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/json");
    let json: Value = serde_json::from_slice(&body_bytes(response).await).unwrap();

    let top: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(top, ["resourceSpans"]);
    let resource_spans = json["resourceSpans"].as_array().unwrap();
    assert_eq!(resource_spans.len(), 1);
    let resource_attr = &resource_spans[0]["resource"]["attributes"][0];
    assert_eq!(resource_attr["key"], "service.name");
    assert_eq!(resource_attr["value"]["stringValue"], "checkout");
    let scope_spans = &resource_spans[0]["scopeSpans"][0];
    assert_eq!(scope_spans["scope"]["name"], "meshtrace-filter");
    let spans = scope_spans["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);

    let span = &spans[0];
    // Ids: lower-case hex, not base64.
    assert_eq!(span["traceId"], TRACE_ID_HEX);
    assert_eq!(span["spanId"], "abcdef0000000001");
    assert_eq!(span["parentSpanId"], PARENT_SPAN_ID_HEX);
    // Enums as integers.
    assert_eq!(span["kind"], Value::from(2));
    assert_eq!(span["status"]["code"], Value::from(1));
    // 64-bit integers as decimal strings.
    assert_eq!(
        span["startTimeUnixNano"],
        Value::from(START_NANOS.to_string())
    );
    assert_eq!(
        span["endTimeUnixNano"],
        Value::from((START_NANOS + 1_500_000).to_string())
    );
    let status_attr = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv["key"] == "http.response.status_code")
        .unwrap();
    assert_eq!(status_attr["value"]["intValue"], "200");
    assert_eq!(span["name"], "GET /api/v1/users/{id}");

    // Keys are lowerCamelCase everywhere (no snake_case original field names).
    let mut keys = Vec::new();
    collect_keys(&json, &mut keys);
    assert!(keys.contains(&"droppedAttributesCount".to_owned()));
    for key in &keys {
        let attribute_key = key.contains('.');
        assert!(
            attribute_key
                || (!key.contains('_') && key.starts_with(|c: char| c.is_ascii_lowercase())),
            "key {key:?} is not lowerCamelCase"
        );
    }
}

fn collect_keys(value: &Value, keys: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                keys.push(key.clone());
                collect_keys(child, keys);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_keys(item, keys)),
        _ => {}
    }
}

#[tokio::test]
async fn unknown_trace_is_404_and_bad_ids_are_400_with_json_errors() {
    let apps = apps();
    let response = send(&apps.admin, get(&format!("/api/traces/{TRACE_ID_HEX}"))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&response), "application/json");
    let json: Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
    assert!(json["error"].as_str().unwrap().contains(TRACE_ID_HEX));

    for bad in [
        "abc",
        "4bf92f3577b34da6a3ce929d0e0e473",   // 31
        "4bf92f3577b34da6a3ce929d0e0e47360", // 33
        "zzf92f3577b34da6a3ce929d0e0e4736",
        "4bf92f3577b34da6a3ce929d0e0e473%C3%A9",
    ] {
        let response = send(&apps.admin, get(&format!("/api/traces/{bad}"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let json: Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
        assert!(json["error"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn metrics_count_received_refused_and_stored_spans() {
    let config = ShimConfig {
        store: StoreConfig {
            max_spans: 4,
            ..StoreConfig::default()
        },
        ..ShimConfig::default()
    };
    let apps = apps_with(&config, None);
    for spans in [3, 3] {
        let body = encoded(&request("checkout", &trace_id(), spans));
        assert_eq!(
            send(&apps.otlp, post(Some(PROTOBUF), body)).await.status(),
            StatusCode::OK
        );
    }
    send(&apps.otlp, post(Some(PROTOBUF), &b"\xff"[..])).await;
    // The store writes on its own thread; a query returns once earlier writes are done.
    let barrier = send(&apps.admin, get("/api/services")).await;
    assert_eq!(barrier.status(), StatusCode::OK);

    let text = metrics_text(&apps).await;
    let value = |series: &str| metric_value(&text, series);
    assert_eq!(value("meshtrace_shim_received_spans_total"), Some(6));
    assert_eq!(value("meshtrace_shim_stored_spans"), Some(4));
    assert_eq!(
        value("meshtrace_shim_store_evicted_spans_total{reason=\"max_spans\"}"),
        Some(2)
    );
    assert_eq!(
        value("meshtrace_shim_refused_requests_total{reason=\"malformed\"}"),
        Some(1)
    );
    assert_eq!(
        value("meshtrace_shim_refused_spans_total{reason=\"malformed\"}"),
        Some(0)
    );
    assert_eq!(value("meshtrace_shim_exported_spans_total"), Some(0));
    assert!(text.contains("# TYPE meshtrace_shim_export_failed_spans counter"));
}

#[tokio::test]
async fn healthz_is_ok() {
    let apps = apps();
    let response = send(&apps.admin, get("/healthz")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_bytes(response).await, b"ok");
}

#[tokio::test]
async fn full_export_queue_is_503_retry_after_and_nothing_is_kept() {
    let (queue, receiver): (_, ExportReceiver) = export::queue(1);
    let apps = apps_with(&ShimConfig::default(), Some(queue));

    // First request fills the queue (nobody drains it in this test).
    let first = encoded(&request("checkout", &[1; 16], 1));
    assert_eq!(
        send(&apps.otlp, post(Some(PROTOBUF), first)).await.status(),
        StatusCode::OK
    );

    let second = encoded(&request("checkout", &trace_id(), 2));
    let response = send(&apps.otlp, post(Some(PROTOBUF), second)).await;
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_rpc_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        rpc::code::UNAVAILABLE,
    )
    .await;

    // Not acknowledged, so not stored and not counted as received.
    let response = send(&apps.admin, get(&format!("/api/traces/{TRACE_ID_HEX}"))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let text = metrics_text(&apps).await;
    assert_eq!(
        metric_value(&text, "meshtrace_shim_received_spans_total"),
        Some(1)
    );
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_spans_total{reason=\"export_queue_full\"}"
        ),
        Some(2)
    );
    drop(receiver);

    // Once the forwarder is gone (shutdown), requests are refused the same retryable way.
    let third = encoded(&request("checkout", &trace_id(), 1));
    let response = send(&apps.otlp, post(Some(PROTOBUF), third)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
}
