//! End-to-end: real Envoy 1.40 (V8) running the filter's `.wasm`, the collector shim and the
//! demo upstream, all on 127.0.0.1 ephemeral ports. Each test starts its own stack.

use meshtrace_tests::envoy::{validate, validate_plugin_config};
use meshtrace_tests::repo_root;
use meshtrace_tests::stack::{Stack, StackOptions};
use meshtrace_tests::w3c::Traceparent;
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Waits (10 s at most) until all `requests` spans are counted as dropped by failed exports.
async fn assert_all_dropped(stack: &Stack, requests: u64) {
    let name = "wasmcustom.meshtrace_spans_dropped_export_failed_total";
    let dropped = meshtrace_tests::eventually(std::time::Duration::from_secs(10), || async {
        let got = stack.envoy.stat(name).await.ok()?;
        (got == requests).then_some(got)
    })
    .await;
    assert_eq!(dropped, Some(requests), "{}", stack.envoy.log());
}

async fn stack() -> Stack {
    Stack::start(StackOptions::default())
        .await
        .expect("stack starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_incoming_context_starts_a_new_trace() {
    let stack = stack().await;
    let echo = stack.get("/hello?q=1", &[]).await.unwrap();
    assert_eq!(echo.status, 200);
    let upstream = echo.traceparent().unwrap();
    assert_eq!(echo.header_count("traceparent"), 1);
    assert!(upstream.sampled(), "a new trace is sampled: {upstream:?}");

    let stored = stack
        .wait_for_span(&upstream.trace_id, &upstream.parent_id)
        .await
        .unwrap();
    let span = &stored.span;
    assert_eq!(span["traceId"], upstream.trace_id);
    assert!(
        span["parentSpanId"].as_str().unwrap_or_default().is_empty(),
        "root span: {span}"
    );
    assert_eq!(span["kind"], 2, "SERVER");
    assert_eq!(span["name"], "GET");
    assert_eq!(
        stored.attribute("http.request.method"),
        Some(&json!({"stringValue": "GET"}))
    );
    assert_eq!(
        stored.attribute("url.path"),
        Some(&json!({"stringValue": "/hello"}))
    );
    // OTLP/JSON carries 64-bit integers as decimal strings.
    assert_eq!(
        stored.attribute("http.response.status_code"),
        Some(&json!({"intValue": "200"}))
    );
    assert_eq!(
        stored.resource_attribute("service.name"),
        Some(&json!({"stringValue": "meshtrace-test"}))
    );
    let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(
        start > 1_700_000_000_000_000_000 && end >= start,
        "host clock times: {start} {end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_incoming_context_is_continued() {
    let stack = stack().await;
    for flags in ["01", "00"] {
        let incoming = format!("00-{TRACE}-{PARENT}-{flags}");
        let echo = stack
            .get(
                "/continue",
                &[
                    ("traceparent", incoming.as_bytes()),
                    ("tracestate", b"vendor=abc,other=1"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(echo.status, 200);
        let upstream = echo.traceparent().unwrap();
        assert_eq!(upstream.trace_id, TRACE);
        assert_ne!(
            upstream.parent_id, PARENT,
            "our span, not the caller's, is the upstream's parent"
        );
        assert_eq!(upstream.flags, flags, "sampled flag preserved");
        assert_eq!(echo.header("tracestate"), Some("vendor=abc,other=1"));

        if flags == "01" {
            let stored = stack
                .wait_for_span(TRACE, &upstream.parent_id)
                .await
                .unwrap();
            assert_eq!(stored.span["parentSpanId"], PARENT);
            assert_eq!(stored.span["traceId"], TRACE);
        }
    }
    // The unsampled request was not exported: exactly one span is stored for the trace.
    let sampled = stack
        .envoy
        .stat("wasmcustom.meshtrace_spans_sampled_total")
        .await
        .unwrap();
    let not_sampled = stack
        .envoy
        .stat("wasmcustom.meshtrace_spans_not_sampled_total")
        .await
        .unwrap();
    assert_eq!((sampled, not_sampled), (1, 1));
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_context_extracted_total")
            .await
            .unwrap(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_context_starts_a_new_trace() {
    let stack = stack().await;
    let malformed: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        format!("00-{TRACE}-{PARENT}").into_bytes(),
        format!("00-{}-{PARENT}-01", "0".repeat(32)).into_bytes(),
        format!("00-{TRACE}-{}-01", "0".repeat(16)).into_bytes(),
        format!("ff-{TRACE}-{PARENT}-01").into_bytes(),
        format!("00-{}-{PARENT}-01", TRACE.to_uppercase()).into_bytes(),
        format!("00-{TRACE}-{PARENT}-01-extra").into_bytes(),
        b"00-\xff\xfe".to_vec(),
        [
            &b"00-4bf92f3577b34da6a3ce929d0e0e47\xc3\xa9"[..],
            &format!("-{PARENT}-01").into_bytes(),
        ]
        .concat(),
        format!("00-{TRACE}-{PARENT}-01{}", "1".repeat(2000)).into_bytes(),
    ];
    for value in &malformed {
        let echo = stack.get("/bad", &[("traceparent", value)]).await.unwrap();
        assert_eq!(echo.status, 200, "{}", String::from_utf8_lossy(value));
        let upstream = echo.traceparent().unwrap();
        assert_ne!(
            upstream.trace_id,
            TRACE,
            "a new trace for {}",
            String::from_utf8_lossy(value)
        );
        assert_eq!(echo.header_count("traceparent"), 1);
        let stored = stack
            .wait_for_span(&upstream.trace_id, &upstream.parent_id)
            .await
            .unwrap();
        assert!(
            stored.span["parentSpanId"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
    let counted = stack
        .envoy
        .stat("wasmcustom.meshtrace_context_malformed_total")
        .await
        .unwrap();
    assert_eq!(counted, malformed.len() as u64);
    assert!(
        !stack.envoy.log().contains("panicked"),
        "{}",
        stack.envoy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_succeed_while_the_shim_is_down() {
    let options = StackOptions {
        shim_running: false,
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.unwrap();
    const REQUESTS: u64 = 40;
    for n in 0..REQUESTS {
        let echo = stack.get(&format!("/down/{n}"), &[]).await.unwrap();
        assert_eq!(echo.status, 200);
        echo.traceparent().unwrap();
    }
    // Every span ends up counted as dropped because its export failed (Envoy answers the
    // call-out with 503 when the connection is refused); none is lost without a count.
    assert_all_dropped(&stack, REQUESTS).await;
    assert!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_export_calls_failed_total")
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_spans_exported_total")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.meshtrace_spans_pending")
            .await
            .unwrap(),
        0
    );
}

/// An export answered with headers and then a reset (Envoy's `onHttpCallFailure`: the filter is
/// called back with no response): the spans are counted as dropped and traffic is unaffected.
/// Before the fix in `glue.rs`, reading `:status` there made the SDK panic and the VM died:
/// every later request on that worker got 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_succeed_while_exports_are_reset_mid_response() {
    let options = StackOptions {
        shim_running: false,
        reset_exports: true,
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.unwrap();
    const REQUESTS: u64 = 6;
    for n in 0..REQUESTS {
        let echo = stack.get(&format!("/reset/{n}"), &[]).await.unwrap();
        assert_eq!(echo.status, 200, "request {n}: {}", stack.envoy.log());
        // Let a flush (every 100 ms) and its reset happen before the next request.
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_all_dropped(&stack, REQUESTS).await;
    assert!(
        !stack.envoy.log().contains("panicked"),
        "{}",
        stack.envoy.log()
    );
}

#[test]
fn every_envoy_config_validates() {
    let dir = repo_root().join("envoy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            continue;
        }
        let output = validate(&path).unwrap();
        assert!(
            output.status.success(),
            "{} does not validate:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 1, "no Envoy configs found in {}", dir.display());
}

#[test]
fn a_bad_plugin_configuration_is_refused_naming_the_field() {
    let (accepted, log) = validate_plugin_config(r#"{"exporter":{"timeout_ms":0}}"#).unwrap();
    assert!(!accepted, "accepted a bad configuration:\n{log}");
    assert!(
        log.contains("field `exporter.timeout_ms`: must be between 1 and 60000, got 0"),
        "{log}"
    );
}

#[test]
fn the_test_parser_agrees_with_the_spec_example() {
    let parsed = Traceparent::parse(&format!("00-{TRACE}-{PARENT}-01")).unwrap();
    assert!(parsed.sampled());
    assert_eq!(Traceparent::parse(&format!("00-{TRACE}-{PARENT}-0")), None);
}
