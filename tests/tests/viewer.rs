//! End-to-end: the trace viewer in real headless Chromium, against the `make run` stack on
//! ephemeral ports (real Envoy with the filter, the shim, the demo upstream).
//!
//! A client sends requests through Envoy with a `traceparent`, and exports its own CLIENT span
//! (the `traceparent`'s parent id) to the shim as an instrumented application would. The
//! filter's SERVER span is that span's child, so the viewer must show a two-level waterfall.

use std::time::{SystemTime, UNIX_EPOCH};

use meshtrace_tests::browser::run_viewer_check;
use meshtrace_tests::stack::{Stack, StackOptions};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

const TRACE: &str = "5b8efff798038103d269b633813fc60c";
const CLIENT_SPAN: &str = "eee19b7ec3c1b174";
const FAILED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const FAILED_CLIENT_SPAN: &str = "b7ad6b7169203331";
const CLIENT_NAME: &str = "GET /checkout";
const CLIENT_SERVICE: &str = "e2e-client";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_shows_a_request_through_envoy_as_a_nested_waterfall() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let shim = stack.shim.as_ref().unwrap();

    // A few requests without a caller span, as `curl` through Envoy sends them: each starts a
    // trace at the filter.
    for path in ["/", "/api/items?page=2", "/hello"] {
        let echo = stack.get(path, &[]).await.unwrap();
        let upstream = echo.traceparent().unwrap();
        stack
            .wait_for_span(&upstream.trace_id, &upstream.parent_id)
            .await
            .unwrap();
    }
    let mut filter_spans = Vec::new();
    for (trace, client_span, failed) in [
        (FAILED_TRACE, FAILED_CLIENT_SPAN, true),
        (TRACE, CLIENT_SPAN, false),
    ] {
        let start = now_nanos();
        let traceparent = format!("00-{trace}-{client_span}-01");
        let echo = stack
            .get("/checkout", &[("traceparent", traceparent.as_bytes())])
            .await
            .unwrap();
        assert_eq!(echo.status, 200);
        let upstream = echo.traceparent().unwrap();
        assert_eq!(upstream.trace_id, trace);
        let client = client_span_of(trace, client_span, start, now_nanos(), failed);
        post_otlp(shim.otlp_http_addr(), &client).await;
        stack
            .wait_for_span(trace, &upstream.parent_id)
            .await
            .unwrap();
        filter_spans.push(upstream.parent_id);
    }
    let filter_span = filter_spans.pop().unwrap();

    let mut args = vec![
        ("base", format!("http://{}", shim.admin_addr())),
        ("trace", TRACE.to_owned()),
        ("root", CLIENT_SPAN.to_owned()),
        ("root-name", CLIENT_NAME.to_owned()),
        ("child", filter_span),
        ("child-name", "GET".to_owned()),
        ("error-trace", FAILED_TRACE.to_owned()),
    ];
    if let Ok(dir) = std::env::var("MESHTRACE_VIEWER_SCREENSHOTS") {
        args.push(("screenshots", dir));
    }
    let printed = tokio::task::spawn_blocking(move || run_viewer_check(&args))
        .await
        .unwrap()
        .unwrap();
    println!("{printed}");
    assert!(printed.contains("checks passed"), "{printed}");
}

/// The client's own span for the request it sent with `traceparent: 00-trace-span-01`, as an
/// OpenTelemetry SDK would export it; a failed one carries an exception event and a link to
/// the other trace.
fn client_span_of(
    trace: &str,
    span_id: &str,
    start: u64,
    end: u64,
    failed: bool,
) -> ExportTraceServiceRequest {
    let mut client = Span {
        trace_id: hex(trace),
        span_id: hex(span_id),
        name: CLIENT_NAME.to_owned(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: vec![
            string("http.request.method", "GET"),
            string("url.full", "http://127.0.0.1/checkout"),
        ],
        ..Span::default()
    };
    if failed {
        client.status = Some(Status {
            code: 2,
            message: "payment service unavailable".to_owned(),
        });
        client.events = vec![span::Event {
            time_unix_nano: end,
            name: "exception".to_owned(),
            attributes: vec![string("exception.type", "PaymentUnavailable")],
            dropped_attributes_count: 0,
        }];
        client.links = vec![span::Link {
            trace_id: hex(TRACE),
            span_id: hex(CLIENT_SPAN),
            ..span::Link::default()
        }];
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string("service.name", CLIENT_SERVICE)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "meshtrace-e2e-client".to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans: vec![client],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

async fn post_otlp(addr: std::net::SocketAddr, request: &ExportTraceServiceRequest) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn now_nanos() -> u64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(elapsed.as_nanos()).unwrap()
}
