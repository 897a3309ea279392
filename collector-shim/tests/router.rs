//! Router tests without sockets: `otlp_http_app(state).oneshot(request)` and the same for
//! `admin_app`, sharing one `AppState` so ingest is visible through the admin endpoints.

mod fixtures;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{Method, Request, Response, StatusCode};
use meshtrace_collector_shim::config::{QueueConfig, ShimConfig, StoreConfig};
use meshtrace_collector_shim::pipeline::Pipeline;
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

fn apps_with(config: &ShimConfig) -> Apps {
    apps_for(AppState::without_exporters(config).unwrap())
}

/// A pipeline feeding one exporter that never drains (no dispatcher runs in these tests).
fn apps_with_undrained_queue(queue: QueueConfig) -> (Apps, Arc<Pipeline>) {
    let metrics = Arc::new(Metrics::new(&["test".to_owned()]));
    let pipeline = Arc::new(Pipeline::new(
        &queue,
        None,
        Arc::clone(&metrics),
        vec!["test".to_owned()],
    ));
    let state = AppState::new(&ShimConfig::default(), metrics, Arc::clone(&pipeline)).unwrap();
    (apps_for(state), pipeline)
}

fn apps_for(state: AppState) -> Apps {
    Apps {
        otlp: otlp_http_app(state.clone()),
        admin: admin_app(state),
    }
}

fn apps() -> Apps {
    apps_with(&ShimConfig::default())
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
        metric_value(&text, "meshtrace_shim_accepted_spans_total"),
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
    let apps = apps_with(&config);
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
async fn unsupported_content_types_and_encodings_are_415() {
    let apps = apps();
    let response = send(&apps.otlp, post(Some("text/plain"), "hi")).await;
    let message = assert_rpc_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        rpc::code::INVALID_ARGUMENT,
    )
    .await;
    assert!(message.contains("text/plain"), "{message}");

    let response = send(&apps.otlp, post(None, Body::empty())).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut brotli = post(Some(PROTOBUF), Body::empty());
    brotli
        .headers_mut()
        .insert(CONTENT_ENCODING, "br".parse().unwrap());
    let response = send(&apps.otlp, brotli).await;
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

fn compressed(encoding: &str, data: &[u8]) -> Vec<u8> {
    use flate2::Compression;
    use std::io::Write;
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        other => panic!("{other}"),
    }
}

fn with_encoding(mut request: Request<Body>, encoding: &str) -> Request<Body> {
    request
        .headers_mut()
        .insert(CONTENT_ENCODING, encoding.parse().unwrap());
    request
}

#[tokio::test]
async fn gzip_and_deflate_bodies_are_accepted() {
    let apps = apps();
    let body = encoded(&request("checkout", &trace_id(), 2));
    for encoding in ["gzip", "deflate"] {
        let request = with_encoding(post(Some(PROTOBUF), compressed(encoding, &body)), encoding);
        let response = send(&apps.otlp, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{encoding}");
    }
    let text = metrics_text(&apps).await;
    assert_eq!(
        metric_value(&text, "meshtrace_shim_accepted_spans_total"),
        Some(4)
    );
    // Broken gzip is bad data (400), not a server error.
    let request = with_encoding(post(Some(PROTOBUF), &b"\x1f\x8b not really"[..]), "gzip");
    let response = send(&apps.otlp, request).await;
    assert_rpc_error(
        response,
        StatusCode::BAD_REQUEST,
        rpc::code::INVALID_ARGUMENT,
    )
    .await;
}

#[tokio::test]
async fn gzip_bomb_is_413_without_inflating_past_the_limit() {
    let config = ShimConfig {
        max_request_body_bytes: 1 << 20,
        ..ShimConfig::default()
    };
    let apps = apps_with(&config);
    // 64 MiB of zeros: about 64 KiB compressed, far under the 1 MiB body limit.
    let bomb = compressed("gzip", &vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let request = with_encoding(post(Some(PROTOBUF), bomb), "gzip");
    let response = send(&apps.otlp, request).await;
    let message = assert_rpc_error(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        rpc::code::RESOURCE_EXHAUSTED,
    )
    .await;
    assert!(message.contains("after decompression"), "{message}");
}

#[tokio::test]
async fn json_requests_get_json_answers() {
    let apps = apps();
    let json = serde_json::to_vec(&request("checkout", &trace_id(), 2)).unwrap();
    let response = send(&apps.otlp, post(Some("application/json"), json.clone())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/json");
    assert_eq!(body_bytes(response).await, b"{}");

    // Gzipped JSON, and the empty object.
    let request = with_encoding(
        post(Some("application/json"), compressed("gzip", &json)),
        "gzip",
    );
    assert_eq!(send(&apps.otlp, request).await.status(), StatusCode::OK);
    let response = send(&apps.otlp, post(Some("application/json"), "{}")).await;
    assert_eq!(response.status(), StatusCode::OK);

    // Bad JSON: 400 with a JSON google.rpc.Status.
    let response = send(
        &apps.otlp,
        post(
            Some("application/json"),
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&response), "application/json");
    let error: Value = serde_json::from_slice(&body_bytes(response).await).unwrap();
    assert_eq!(error["code"], rpc::code::INVALID_ARGUMENT);
    assert!(
        error["message"].as_str().unwrap().contains("OTLP/JSON"),
        "{error}"
    );

    let text = metrics_text(&apps).await;
    assert_eq!(
        metric_value(&text, "meshtrace_shim_accepted_spans_total"),
        Some(4)
    );
    // The stored spans are the same whatever the encoding.
    let response = send(&apps.admin, get(&format!("/api/traces/{TRACE_ID_HEX}"))).await;
    assert_eq!(response.status(), StatusCode::OK);
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
    let apps = apps_with(&config);
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
    assert_eq!(value("meshtrace_shim_accepted_spans_total"), Some(6));
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
}

#[tokio::test]
async fn healthz_is_ok() {
    let apps = apps();
    let response = send(&apps.admin, get("/healthz")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_bytes(response).await, b"ok");
}

#[tokio::test]
async fn readyz_is_ready_without_backpressure() {
    let apps = apps();
    let response = send(&apps.admin, get("/readyz")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn full_queue_is_429_retry_after_not_ready_and_nothing_is_kept() {
    let (apps, _pipeline) = apps_with_undrained_queue(QueueConfig {
        max_spans: 2,
        ..QueueConfig::default()
    });

    // The first request fills the queue (nobody drains it in this test).
    let first = encoded(&request("checkout", &[1; 16], 2));
    assert_eq!(
        send(&apps.otlp, post(Some(PROTOBUF), first)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&apps.admin, get("/readyz")).await.status(),
        StatusCode::OK
    );

    let second = encoded(&request("checkout", &trace_id(), 1));
    let response = send(&apps.otlp, post(Some(PROTOBUF), second)).await;
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_rpc_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        rpc::code::UNAVAILABLE,
    )
    .await;
    assert_eq!(
        send(&apps.admin, get("/readyz")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Not acknowledged, so not stored and not counted as accepted.
    let response = send(&apps.admin, get(&format!("/api/traces/{TRACE_ID_HEX}"))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let text = metrics_text(&apps).await;
    let value = |series: &str| metric_value(&text, series);
    assert_eq!(value("meshtrace_shim_accepted_spans_total"), Some(2));
    assert_eq!(
        value("meshtrace_shim_refused_spans_total{reason=\"queue_full\"}"),
        Some(1)
    );
    assert_eq!(value("meshtrace_shim_queue_spans"), Some(2));
    assert_eq!(value("meshtrace_shim_queue_capacity_spans"), Some(2));

    // More spans than the queue can ever hold: 413, not retryable.
    let huge = encoded(&request("checkout", &trace_id(), 3));
    let response = send(&apps.otlp, post(Some(PROTOBUF), huge)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn shutting_down_is_503_retry_after_and_not_ready() {
    let (apps, pipeline) = apps_with_undrained_queue(QueueConfig::default());
    pipeline.close();
    let body = encoded(&request("checkout", &trace_id(), 1));
    let response = send(&apps.otlp, post(Some(PROTOBUF), body)).await;
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_rpc_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        rpc::code::UNAVAILABLE,
    )
    .await;
    let response = send(&apps.admin, get("/readyz")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = metrics_text(&apps).await;
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_spans_total{reason=\"shutting_down\"}"
        ),
        Some(1)
    );
}
