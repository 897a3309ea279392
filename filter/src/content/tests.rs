//! The phases together, from a configuration to a finished OTLP span.

use super::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
use crate::config::FilterConfig;
use crate::trace::{SpanContext, SpanId, TraceFlags, TraceId};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::collections::BTreeMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn content(json: &str) -> Content {
    let config = FilterConfig::parse(Some(json.as_bytes())).unwrap_or_else(|e| panic!("{e}"));
    config.content().unwrap()
}

fn span() -> HttpSpan {
    HttpSpan::new(
        SpanContext {
            trace_id: TraceId::from_bytes([1; 16]).unwrap(),
            span_id: SpanId::from_bytes([2; 8]).unwrap(),
            flags: TraceFlags::from_wire(1),
            debug: false,
        },
        None,
        10,
    )
}

fn attributes(span: &Span) -> BTreeMap<String, any_value::Value> {
    span.attributes
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?.value?)))
        .collect()
}

fn string(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.to_owned())
}

const REQUEST: [(&str, &str); 8] = [
    (":method", "GET"),
    (":path", "/api/v1/users/42?sig=s3cr3t&page=2"),
    (":scheme", "http"),
    (":authority", "shop.example"),
    ("user-agent", "curl/8.0"),
    ("x-tenant", "acme"),
    ("authorization", "Bearer s3cr3t"),
    ("cookie", "session=s3cr3t"),
];

#[test]
fn a_request_through_every_phase() {
    let json = r#"{
        "routes": ["/api/v1/users/{id}"],
        "tags": [
            {"name": "env", "literal": "prod"},
            {"name": "pod", "environment": "POD_NAME"},
            {"name": "ns", "property": "node.metadata.NAMESPACE"},
            {"request_header": "x-tenant"},
            {"name": "tier", "baggage": "tier"},
            {"name": "cache", "response_header": "x-cache"},
            {"name": "request.id", "property": "request.id"}
        ]
    }"#;
    let mut content = content(json);
    let env = BTreeMap::from([("POD_NAME".to_owned(), "web-1".to_owned())]);
    let host = BTreeMap::from([
        ("xds.node.metadata.NAMESPACE".to_owned(), b"shop".to_vec()),
        ("request.id".to_owned(), b"rid-1".to_vec()),
        ("source.address".to_owned(), b"10.0.0.7:51234".to_vec()),
        ("request.protocol".to_owned(), b"HTTP/1.1".to_vec()),
    ]);
    let evaluated = content.resolve_static(&env, &host);
    assert_eq!(evaluated.attributes.len(), 3);
    let (baggage, _) = Baggage::parse([&b"tier=gold"[..]]);

    let mut span = span();
    content.on_request(&mut span, &REQUEST.to_vec(), &baggage);
    assert_eq!(span.route.as_deref(), Some("/api/v1/users/{id}"));
    assert!(content.reads_response_headers());
    span.status_code = Some(200);
    content.on_response(&mut span, &vec![(":status", "200"), ("x-cache", "HIT")]);
    content.on_end(&mut span, &host);
    let finished = content.finish(span);
    let otlp = finished.span;
    assert_eq!(otlp.name, "GET /api/v1/users/{id}");
    let got = attributes(&otlp);
    for (key, value) in [
        ("http.route", string("/api/v1/users/{id}")),
        ("url.query", string("sig=REDACTED&page=2")),
        ("client.address", string("10.0.0.7")),
        ("network.protocol.version", string("1.1")),
        ("env", string("prod")),
        ("pod", string("web-1")),
        ("ns", string("shop")),
        ("tier", string("gold")),
        ("cache", string("HIT")),
        ("request.id", string("rid-1")),
    ] {
        assert_eq!(got.get(key), Some(&value), "{key}");
    }
    assert!(got.contains_key("http.request.header.x-tenant"));
    // Secrets never appear, under any key or value.
    let dump = format!("{otlp:?}");
    assert!(!dump.contains("s3cr3t"), "{dump}");
    assert_eq!(
        (finished.dropped, finished.truncated, finished.invalid),
        (0, 0, 0)
    );
}

#[test]
fn without_configuration_a_span_has_only_the_conventions() {
    let content = content("{}");
    assert!(!content.reads_response_headers());
    let mut span = span();
    content.on_request(&mut span, &REQUEST.to_vec(), &Baggage::default());
    span.status_code = Some(503);
    content.on_end(&mut span, &crate::host::Nothing);
    let otlp = content.finish(span).span;
    assert_eq!(
        otlp.name, "GET",
        "no route: the method only, never the path"
    );
    let got = attributes(&otlp);
    assert_eq!(got.get("error.type"), Some(&string("503")));
    assert!(
        got.keys()
            .all(|k| !k.contains("header") && !k.starts_with("meshtrace")),
        "{got:?}"
    );
    let dump = format!("{otlp:?}");
    assert!(!dump.contains("s3cr3t"));
}

#[test]
fn the_header_budget_spans_request_and_response() {
    let json = r#"{"limits": {"max_header_bytes": 6},
        "tags": [{"name": "t", "request_header": "x-tenant"}, {"name": "c", "response_header": "x-cache"}]}"#;
    let content = content(json);
    let mut span = span();
    content.on_request(&mut span, &REQUEST.to_vec(), &Baggage::default());
    content.on_response(&mut span, &vec![("x-cache", "MISS")]);
    span.status_code = Some(200);
    let finished = content.finish(span);
    let got = attributes(&finished.span);
    assert_eq!(got.get("t"), Some(&string("acme")));
    assert!(!got.contains_key("c"), "4 + 4 bytes > 6");
    assert_eq!(finished.span.dropped_attributes_count, 1);
}

#[test]
fn a_client_span() {
    let content = content(
        r#"{"span": {"kind": "client", "opt_in": ["user_agent.original"]}, "routes": ["/api/v1/users/{id}"]}"#,
    );
    let mut span = span();
    content.on_request(&mut span, &REQUEST.to_vec(), &Baggage::default());
    span.status_code = Some(404);
    let host = BTreeMap::from([("upstream.address".to_owned(), b"10.9.0.1:8080".to_vec())]);
    content.on_end(&mut span, &host);
    let otlp = content.finish(span).span;
    assert_eq!(otlp.name, "GET /api/v1/users/{id}");
    assert_eq!(otlp.kind, 3, "CLIENT");
    let got = attributes(&otlp);
    assert_eq!(
        got.get("url.full"),
        Some(&string(
            "http://shop.example/api/v1/users/42?sig=REDACTED&page=2"
        ))
    );
    assert_eq!(got.get("url.template"), Some(&string("/api/v1/users/{id}")));
    assert_eq!(got.get("network.peer.address"), Some(&string("10.9.0.1")));
    assert_eq!(got.get("user_agent.original"), Some(&string("curl/8.0")));
    assert!(otlp.status.is_some(), "4xx is a client error");
}

#[rustfmt::skip]
#[test]
fn span_section_errors_name_the_field() {
    for (json, field) in [
        (r#"{"span": {"kind": "internal"}}"#, "span.kind"),
        (r#"{"span": {"opt_in": ["http.route"]}}"#, "span.opt_in[0]"),
        (r#"{"span": {"opt_in": ["url.scheme"]}}"#, "span.opt_in[0]"),
        (r#"{"span": {"kind": "client", "opt_in": ["client.port"]}}"#, "span.opt_in[0]"),
        (r#"{"span": {"known_methods": ["GET", "BAD METHOD"]}}"#, "span.known_methods[1]"),
        (r#"{"span": {"redact_query_keys": ["a=b"]}}"#, "span.redact_query_keys[0]"),
        (r#"{"span": {"sensitive_headers": ["X Token"]}}"#, "span.sensitive_headers[0]"),
        (r#"{"span": {"kind": "server", "extra": 1}}"#, "span.extra"),
        (r#"{"routes": ["/ok", "nope"]}"#, "routes[1]"),
        (r#"{"tags": [{"name": "x"}]}"#, "tags[0]"),
        (r#"{"tags": [{"name": "x", "literal": "y", "typ": "int"}]}"#, "tags[0].typ"),
        (r#"{"limits": {"max_attributes": 1}}"#, "limits.max_attributes"),
        (r#"{"limits": {"max_attribute_value_length": 100000}}"#, "limits.max_attribute_value_length"),
        (r#"{"resource": {"service_version": ""}}"#, "resource.service_version"),
        (r#"{"resource": {"from_env": true}}"#, "resource.from_env"),
    ] {
        let err = FilterConfig::parse(Some(json.as_bytes())).expect_err(json);
        assert_eq!(err.field, field, "{json}: {err}");
    }
}

#[test]
fn configured_sensitive_headers_are_refused_too() {
    let json = r#"{"span": {"sensitive_headers": ["x-session"]}, "tags": [{"request_header": "x-session"}]}"#;
    let err = FilterConfig::parse(Some(json.as_bytes())).unwrap_err();
    assert_eq!(err.field, "tags[0].request_header");
}
