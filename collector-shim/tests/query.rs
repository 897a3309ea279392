//! The query API and the viewer's assets through the admin router (`oneshot`, no sockets),
//! fed through the real OTLP receiver of the same `AppState`.

mod fixtures;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use meshtrace_collector_shim::config::{ShimConfig, StoreConfig};
use meshtrace_collector_shim::pipeline::Pipeline;
use meshtrace_collector_shim::store::QUEUE_CAPACITY;
use meshtrace_collector_shim::{AppState, Metrics, admin_app, otlp_http_app};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Status, status};
use serde_json::{Value, json};
use tower::ServiceExt;

use fixtures::*;

struct Shim {
    otlp: Router,
    admin: Router,
}

impl Shim {
    fn new() -> Self {
        Self::with(&ShimConfig::default(), false).0
    }

    /// With `exporter`, the pipeline feeds one exporter that never drains (no dispatcher runs
    /// here); without, the store is where spans go.
    fn with(config: &ShimConfig, exporter: bool) -> (Self, AppState) {
        let state = if exporter {
            let names = vec!["test".to_owned()];
            let metrics = Arc::new(Metrics::new(&names));
            let pipeline = Pipeline::new(&config.queue, None, Arc::clone(&metrics), names);
            AppState::new(config, metrics, Arc::new(pipeline)).unwrap()
        } else {
            AppState::without_exporters(config).unwrap()
        };
        let shim = Self {
            otlp: otlp_http_app(state.clone()),
            admin: admin_app(state.clone()),
        };
        (shim, state)
    }

    async fn post(&self, request: &ExportTraceServiceRequest) {
        assert_eq!(self.try_post(request).await, StatusCode::OK);
    }

    async fn try_post(&self, request: &ExportTraceServiceRequest) -> StatusCode {
        self.post_answer(request).await.0
    }

    async fn post_answer(&self, request: &ExportTraceServiceRequest) -> (StatusCode, HeaderMap) {
        let post = Request::builder()
            .method(Method::POST)
            .uri("/v1/traces")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(Body::from(encoded(request)))
            .unwrap();
        let response = self.otlp.clone().oneshot(post).await.unwrap();
        (response.status(), response.headers().clone())
    }

    /// `GET uri` on the admin router: status, headers and body.
    async fn get(&self, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = self.admin.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.unwrap().to_vec();
        (parts.status, parts.headers, body)
    }

    async fn json(&self, uri: &str) -> (StatusCode, Value) {
        let (status, headers, body) = self.get(uri).await;
        assert_eq!(headers[CONTENT_TYPE], "application/json", "{uri}");
        (status, serde_json::from_slice(&body).unwrap())
    }
}

/// Three traces: `checkout` (2 spans), `search` (1 span, ERROR), `checkout` again (1 span),
/// posted in that order with start times one second apart.
async fn three_traces() -> Shim {
    let shim = Shim::new();
    for (n, service, spans) in [(1u8, "checkout", 2), (2, "search", 1), (3, "checkout", 1)] {
        let mut request = request(service, &[n; 16], spans);
        for span in &mut request.resource_spans[0].scope_spans[0].spans {
            span.start_time_unix_nano += u64::from(n) * 1_000_000_000;
            span.end_time_unix_nano += u64::from(n) * 1_000_000_000;
            if service == "search" {
                span.name = "GET /search".to_owned();
                span.end_time_unix_nano += 250_000_000;
                span.status = Some(Status {
                    code: status::StatusCode::Error as i32,
                    message: "upstream reset".to_owned(),
                });
            }
        }
        shim.post(&request).await;
    }
    shim
}

fn trace_ids(list: &Value) -> Vec<String> {
    list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceId"].as_str().unwrap()[..2].to_owned())
        .collect()
}

#[tokio::test]
async fn search_answers_the_documented_shape() {
    let shim = three_traces().await;
    let (status, list) = shim.json("/api/traces").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(trace_ids(&list), ["03", "02", "01"], "newest first");
    assert_eq!(list["nextCursor"], Value::Null);
    let start = START_NANOS + 1_000_000_000;
    assert_eq!(
        list["traces"][2],
        json!({
            "traceId": "01".repeat(16),
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + 1_500_000).to_string(),
            "durationNanos": "1500000",
            "spanCount": 2,
            "errorCount": 0,
            "services": ["checkout"],
            // Both spans have a parent that was never received: the earliest is shown.
            "root": {
                "spanId": "abcdef0000000001",
                "name": "GET /api/v1/users/{id}",
                "service": "checkout",
                "hasParent": true
            }
        })
    );
    assert_eq!(list["traces"][1]["errorCount"], 1);
}

#[tokio::test]
async fn search_filters_and_pages() {
    let shim = three_traces().await;
    for (query, expected) in [
        ("service=checkout", vec!["03", "01"]),
        ("service=search", vec!["02"]),
        ("service=checkout&name=GET%20%2Fsearch", vec![]),
        ("name=GET%20%2Fsearch", vec!["02"]),
        ("status=error", vec!["02"]),
        ("status=ok", vec!["03", "01"]),
        ("min_duration_ms=200", vec!["02"]),
        ("min_duration_ms=1.5", vec!["03", "02", "01"]),
        ("service=&name=&status=", vec!["03", "02", "01"]),
    ] {
        let (status, list) = shim.json(&format!("/api/traces?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}");
        assert_eq!(trace_ids(&list), expected, "{query}");
    }
    let two = START_NANOS + 2_000_000_000;
    let (_, list) = shim
        .json(&format!(
            "/api/traces?start_unix_nano={two}&end_unix_nano={}",
            two + 1
        ))
        .await;
    assert_eq!(trace_ids(&list), ["02"]);

    let mut seen = Vec::new();
    let mut uri = "/api/traces?limit=2".to_owned();
    loop {
        let (status, list) = shim.json(&uri).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(trace_ids(&list));
        match list["nextCursor"].as_str() {
            Some(cursor) => uri = format!("/api/traces?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["03", "02", "01"]);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let shim = three_traces().await;
    for (query, needle) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=many", "limit"),
        ("status=failed", "status"),
        ("min_duration_ms=-1", "min_duration_ms"),
        ("min_duration_ms=slow", "min_duration_ms"),
        ("start_unix_nano=yesterday", "start_unix_nano"),
        ("cursor=zz", "cursor"),
        ("servce=checkout", "servce"),
    ] {
        let (status, body) = shim.json(&format!("/api/traces?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }
}

#[tokio::test]
async fn services_and_span_names_are_listed() {
    let shim = three_traces().await;
    let (status, services) = shim.json("/api/services").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(services, json!({"services": ["checkout", "search"]}));
    let (_, names) = shim.json("/api/span-names?service=search").await;
    assert_eq!(names, json!({"names": ["GET /search"]}));
    let (_, names) = shim.json("/api/span-names").await;
    assert_eq!(
        names,
        json!({"names": ["GET /api/v1/users/{id}", "GET /search"]})
    );
}

#[tokio::test]
async fn the_viewer_is_served_from_the_binary_with_a_strict_policy() {
    let shim = Shim::new();
    let mut bodies = String::new();
    for (uri, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/viewer.js", "text/javascript; charset=utf-8"),
        ("/viewer.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = shim.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers[CONTENT_TYPE], content_type, "{uri}");
        let policy = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            policy.starts_with("default-src 'none'; script-src 'self'"),
            "{policy}"
        );
        assert!(!body.is_empty(), "{uri}");
        bodies.push_str(&String::from_utf8(body).unwrap());
    }
    let (_, _, page) = shim.get("/").await;
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(r#"<script src="viewer.js" defer></script>"#));
    assert!(page.contains(r#"<link rel="stylesheet" href="viewer.css">"#));
    // Nothing is loaded from elsewhere (no CDN, no web fonts).
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
        "//fonts.",
    ] {
        assert!(!bodies.contains(external), "{external}");
    }
}

#[tokio::test]
async fn without_a_backend_a_full_store_refuses_before_acknowledging() {
    let (shim, state) = Shim::with(&ShimConfig::default(), false);
    // Hold the store's writer, as a long write would.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, inside) = tokio::sync::oneshot::channel();
    let store = state.store().clone();
    let holder = tokio::spawn(async move {
        store
            .read(move |_| {
                let _ = entered.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
    });
    inside.await.unwrap();
    for n in 0..QUEUE_CAPACITY {
        let id = u32::try_from(n).unwrap().to_be_bytes();
        let trace = [id.as_slice(), &[9; 12]].concat();
        assert_eq!(
            shim.try_post(&request("a", &trace, 1)).await,
            StatusCode::OK
        );
    }
    // The same retryable answer as a full queue: 429 with Retry-After.
    let (status, headers) = shim.post_answer(&request("a", &[7; 16], 1)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[RETRY_AFTER], "1");
    release.send(()).unwrap();
    holder.await.unwrap().unwrap();

    let (_, _, body) = shim.get("/metrics").await;
    let text = String::from_utf8(body).unwrap();
    let count = u64::try_from(QUEUE_CAPACITY).unwrap();
    assert_eq!(
        metric_value(&text, "meshtrace_shim_accepted_spans_total"),
        Some(count)
    );
    assert_eq!(
        metric_value(
            &text,
            "meshtrace_shim_refused_spans_total{reason=\"store_queue_full\"}"
        ),
        Some(1)
    );
    let (status, _, _) = shim.get(&format!("/api/traces/{}", "07".repeat(16))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "refused, so not stored");
    let (_, list) = shim.json("/api/traces?limit=100").await;
    assert_eq!(list["traces"].as_array().unwrap().len(), 100);
    let (_, services) = shim.json("/api/services").await;
    assert_eq!(services, json!({"services": ["a"]}));
}

#[tokio::test]
async fn while_forwarding_the_copy_is_kept_only_when_configured() {
    for keep in [true, false] {
        let config = ShimConfig {
            store: StoreConfig {
                while_forwarding: keep,
                ..StoreConfig::default()
            },
            ..ShimConfig::default()
        };
        let (shim, _) = Shim::with(&config, true);
        shim.post(&request("a", &trace_id(), 1)).await;
        let (status, _, _) = shim.get(&format!("/api/traces/{TRACE_ID_HEX}")).await;
        let expected = if keep {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, expected, "while_forwarding = {keep}");
    }
}
