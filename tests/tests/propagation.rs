//! End-to-end propagation in real Envoy 1.40 (V8) with the filter's `.wasm`: every injected
//! format names the same span, stale B3 is never passed on, stop-propagation strips every
//! trace header, `traceresponse` when asked, malformed input counted by format and reason.
//!
//! Assertions read the upstream's headers with the small independent parsers below, never
//! with the filter's own code.

use meshtrace_tests::stack::{Stack, StackOptions};
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

async fn stack_with(propagation: serde_json::Value) -> Stack {
    let plugin_config = json!({
        "service_name": "meshtrace-propagation",
        "exporter": {"flush_interval_ms": 100},
        "propagation": propagation,
    })
    .to_string();
    Stack::start(StackOptions {
        plugin_config,
        ..StackOptions::default()
    })
    .await
    .expect("stack starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_injected_format_describes_the_same_span() {
    let stack =
        stack_with(json!({"inject": ["tracecontext", "baggage", "b3", "b3multi", "jaeger"]})).await;
    for (incoming, sampled) in [
        (
            vec![("traceparent", format!("00-{TRACE}-{PARENT}-01"))],
            true,
        ),
        (vec![("b3", format!("{TRACE}-{PARENT}-0"))], false),
        (
            vec![("uber-trace-id", format!("{TRACE}:{PARENT}:0:1"))],
            true,
        ),
        (
            vec![
                ("x-b3-traceid", TRACE.to_owned()),
                ("x-b3-spanid", PARENT.to_owned()),
                ("x-b3-sampled", "1".to_owned()),
            ],
            true,
        ),
    ] {
        let mut headers: Vec<(&str, &[u8])> =
            incoming.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        headers.push(("baggage", b"user=alice,tenant=a%20b"));
        let echo = stack.get("/same-span", &headers).await.unwrap();
        assert_eq!(echo.status, 200);
        let spans = echo.spans_received();
        assert_eq!(spans.len(), 4, "{}", echo.body);
        let (_, trace, span, _) = &spans[0];
        assert_eq!(trace, TRACE, "the caller's trace continues");
        assert_ne!(span, PARENT, "our span is the upstream's parent");
        for (format, t, s, state) in &spans {
            assert_eq!(
                (t, s),
                (trace, span),
                "{format} names another span: {}",
                echo.body
            );
            let says_sampled = matches!(state.as_str(), "01" | "1" | "d");
            assert_eq!(says_sampled, sampled, "{format}: {state}");
        }
        assert_eq!(echo.header("baggage"), Some("user=alice,tenant=a%20b"));
        assert_eq!(echo.header("uberctx-user"), Some("alice"));
        assert_eq!(echo.header("uberctx-tenant"), Some("a%20b"));
        // The Jaeger parent field is the caller's span.
        assert_eq!(
            echo.header("uber-trace-id").unwrap().split(':').nth(2),
            Some(PARENT)
        );
        if sampled {
            let stored = stack.wait_for_span(TRACE, span).await.unwrap();
            assert_eq!(stored.span["parentSpanId"], PARENT);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_is_forced_and_preserved() {
    let stack = stack_with(json!({"inject": ["tracecontext", "b3", "b3multi", "jaeger"]})).await;
    for header in [
        ("b3", format!("{TRACE}-{PARENT}-d")),
        ("uber-trace-id", format!("{TRACE}:{PARENT}:0:2")),
    ] {
        let echo = stack
            .get("/debug", &[(header.0, header.1.as_bytes())])
            .await
            .unwrap();
        let spans = echo.spans_received();
        let states: Vec<&str> = spans.iter().map(|(_, _, _, s)| s.as_str()).collect();
        assert_eq!(
            states,
            ["01", "d", "d", "03"],
            "{:?}: {}",
            header,
            echo.body
        );
        assert_eq!(echo.header_count("x-b3-sampled"), 0, "debug implies accept");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_b3_is_rewritten_or_removed_never_passed_on() {
    let stale = format!("{TRACE}-{PARENT}-1");
    let incoming: Vec<(&str, &[u8])> = vec![
        ("b3", stale.as_bytes()),
        ("x-b3-traceid", TRACE.as_bytes()),
        ("x-b3-spanid", PARENT.as_bytes()),
        ("x-b3-parentspanid", b"b7ad6b7169203331"),
        ("x-b3-sampled", b"1"),
    ];
    // b3 single injected: rewritten to our span; the multi headers (a second, stale opinion)
    // are removed.
    let stack = stack_with(json!({"inject": ["tracecontext", "b3"]})).await;
    let echo = stack.get("/b3", &incoming).await.unwrap();
    let ours = echo.traceparent().unwrap().parent_id;
    assert_eq!(
        echo.header("b3"),
        Some(format!("{TRACE}-{ours}-1").as_str())
    );
    for name in [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
    ] {
        assert_eq!(echo.header_count(name), 0, "{name}: {}", echo.body);
    }
    drop(stack);
    // Only multi injected: the stale single header, which readers prefer, is removed.
    let stack = stack_with(json!({"inject": ["tracecontext", "b3multi"]})).await;
    let echo = stack.get("/b3multi", &incoming).await.unwrap();
    let ours = echo.traceparent().unwrap().parent_id;
    assert_eq!(echo.header_count("b3"), 0, "{}", echo.body);
    assert_eq!(echo.header("x-b3-spanid"), Some(ours.as_str()));
    assert_eq!(echo.header_count("x-b3-parentspanid"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninjected_formats_are_kept_or_removed_as_configured() {
    let uber = format!("{TRACE}:{PARENT}:0:1");
    let incoming: Vec<(&str, &[u8])> =
        vec![("uber-trace-id", uber.as_bytes()), ("uberctx-k", b"v")];
    let stack = stack_with(json!({"inject": ["tracecontext"]})).await;
    let echo = stack.get("/keep", &incoming).await.unwrap();
    assert_eq!(
        echo.header("uber-trace-id"),
        Some(uber.as_str()),
        "kept by default"
    );
    drop(stack);
    let stack = stack_with(json!({"inject": ["tracecontext"], "remove_uninjected": true})).await;
    let echo = stack.get("/remove", &incoming).await.unwrap();
    assert_eq!(echo.header_count("uber-trace-id"), 0, "{}", echo.body);
    assert_eq!(echo.header_count("uberctx-k"), 0);
    assert_eq!(
        echo.traceparent().unwrap().trace_id,
        TRACE,
        "still continued from Jaeger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_propagation_strips_every_trace_header_for_chosen_hosts() {
    let stack = stack_with(json!({
        "inject": ["tracecontext", "baggage", "b3", "b3multi", "jaeger"],
        "stop_propagation": {"hosts": ["*.partner.example", "api.vendor.example"]},
    }))
    .await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let trace_headers: [(&str, &[u8]); 6] = [
        ("traceparent", tp.as_bytes()),
        ("tracestate", b"vendor=1"),
        ("baggage", b"secret=1"),
        ("b3", b"1"),
        ("uberctx-secret", b"1"),
        (
            "x-amzn-trace-id",
            b"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
        ),
    ];
    for host in ["pay.partner.example", "api.vendor.example:443"] {
        let mut headers = trace_headers.to_vec();
        headers.push(("host", host.as_bytes()));
        let echo = stack.get("/egress", &headers).await.unwrap();
        assert_eq!(echo.status, 200);
        let names: Vec<&String> = echo.body["headers"].as_object().unwrap().keys().collect();
        for name in [
            "traceparent",
            "tracestate",
            "baggage",
            "b3",
            "x-b3-traceid",
            "uber-trace-id",
            "uberctx-secret",
            "x-amzn-trace-id",
        ] {
            assert!(
                !names.iter().any(|n| *n == name),
                "{host}: {name} leaked: {names:?}"
            );
        }
    }
    let mut headers = trace_headers.to_vec();
    headers.push(("host", b"internal.svc"));
    let echo = stack.get("/internal", &headers).await.unwrap();
    assert_eq!(
        echo.traceparent().unwrap().trace_id,
        TRACE,
        "other hosts still get context"
    );
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_propagation_stopped_total")
            .await
            .unwrap(),
        2
    );
    // The stopped requests still have their span, child of the caller.
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_context_extracted_tracecontext_total")
            .await
            .unwrap(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceresponse_only_when_enabled() {
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let stack = stack_with(json!({})).await;
    let echo = stack
        .get("/off", &[("traceparent", tp.as_bytes())])
        .await
        .unwrap();
    assert!(
        echo.response_headers.get("traceresponse").is_none(),
        "off by default"
    );
    drop(stack);
    let stack = stack_with(json!({"trace_response": {"enabled": true}})).await;
    let echo = stack
        .get("/on", &[("traceparent", tp.as_bytes())])
        .await
        .unwrap();
    let ours = echo.traceparent().unwrap().parent_id;
    let value = echo
        .response_headers
        .get("traceresponse")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(value, Some(format!("00-{TRACE}-{ours}-01")));
    drop(stack);
    let stack =
        stack_with(json!({"trace_response": {"enabled": true, "header": "x-trace-id"}})).await;
    let echo = stack.get("/named", &[]).await.unwrap();
    let upstream = echo.traceparent().unwrap();
    let value = echo
        .response_headers
        .get("x-trace-id")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        value,
        Some(format!(
            "00-{}-{}-03",
            upstream.trace_id, upstream.parent_id
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_tracestate_and_baggage_lines_are_combined() {
    let stack = stack_with(json!({})).await;
    let tp = format!("00-{TRACE}-{PARENT}-01");
    let echo = stack
        .get(
            "/lines",
            &[
                ("traceparent", tp.as_bytes()),
                ("tracestate", b"a=1,b=2"),
                ("tracestate", b"c=3, Bad=4"),
                ("baggage", b"k1=v1"),
                ("baggage", b"k2=v2;p"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(echo.header("tracestate"), Some("a=1,b=2,c=3"));
    assert_eq!(echo.header_count("tracestate"), 1);
    assert_eq!(echo.header("baggage"), Some("k1=v1,k2=v2;p"));
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_context_malformed_tracestate_invalid_member_total")
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_counted_by_format_and_reason_and_never_fails_the_request() {
    let stack = stack_with(
        json!({"extract": ["tracecontext", "baggage", "b3", "b3multi", "jaeger", "xray", "gcp"]}),
    )
    .await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traceparent",
            format!("00-{TRACE}-{PARENT}-").into_bytes(),
            "tracecontext_length",
        ),
        (
            "traceparent",
            format!("00-{}-{PARENT}-01", TRACE.to_uppercase()).into_bytes(),
            "tracecontext_trace_id",
        ),
        (
            "b3",
            format!("{TRACE}-{PARENT}-x").into_bytes(),
            "b3_sampling",
        ),
        ("b3", b"\xff\xfe".to_vec(), "b3_sampling"),
        ("x-b3-traceid", b"xyz".to_vec(), "b3multi_trace_id"),
        (
            "uber-trace-id",
            format!("0x{TRACE}:{PARENT}:0:1").into_bytes(),
            "jaeger_trace_id",
        ),
        (
            "uber-trace-id",
            format!("{TRACE}:{PARENT}:0").into_bytes(),
            "jaeger_fields",
        ),
        (
            "x-cloud-trace-context",
            format!("{TRACE}/0;o=1").into_bytes(),
            "gcp_span_id",
        ),
        (
            "x-amzn-trace-id",
            b"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".to_vec(),
            "xray_parent",
        ),
        (
            "baggage",
            "k=é".as_bytes().to_vec(),
            "baggage_invalid_member",
        ),
    ];
    for (name, value, _) in &cases {
        let echo = stack.get("/malformed", &[(name, value)]).await.unwrap();
        assert_eq!(echo.status, 200, "{name}: {value:?}");
        let upstream = echo.traceparent().unwrap();
        assert_ne!(upstream.trace_id, TRACE, "{name}: a fresh trace");
    }
    let mut expected = std::collections::BTreeMap::new();
    for (_, _, metric) in &cases {
        *expected.entry(*metric).or_insert(0u64) += 1;
    }
    for (metric, count) in expected {
        let name = format!("wasmcustom.meshtrace_context_malformed_{metric}_total");
        assert_eq!(stack.envoy.stat(&name).await.unwrap(), count, "{name}");
    }
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_context_malformed_total")
            .await
            .unwrap(),
        cases.len() as u64
    );
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_context_extracted_total")
            .await
            .unwrap(),
        0
    );
    assert!(
        !stack.envoy.log().contains("panicked"),
        "{}",
        stack.envoy.log()
    );
}
