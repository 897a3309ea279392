//! Logs–traces correlation in real Envoy 1.40: the filter's trace id, span id and sampling
//! decision, published as filter state `wasm.meshtrace.*`, reach `envoy/envoy.yaml`'s JSON
//! access log, later HTTP filters (Lua, RBAC) and the router's upstream filters, and they are
//! the ids the upstream received and the shim stored, request by request.

use meshtrace_tests::stack::{Echo, Stack, StackOptions, TEST_PLUGIN_CONFIG};
use serde_json::{Value, json};
use std::sync::Arc;

/// Requests of the main test, spread over the kinds of incoming context.
const REQUESTS: usize = 40;

/// What a request carried, and what the filter must have made of it.
#[derive(Clone, Copy, Debug)]
enum Incoming {
    /// No trace header: a new trace, sampled by the root policy.
    Nothing,
    /// A sampled `traceparent`: continued and sampled.
    Sampled,
    /// An unsampled `traceparent`: continued, not sampled, not exported.
    NotSampled,
    /// A sampled single `b3` header: continued and sampled.
    B3,
    /// A malformed `traceparent` (valid ids in upper case): a new trace.
    Malformed,
    /// A `traceparent` that is not even UTF-8: a new trace.
    NotUtf8,
}

impl Incoming {
    const ALL: [Incoming; 6] = [
        Incoming::Nothing,
        Incoming::Sampled,
        Incoming::NotSampled,
        Incoming::B3,
        Incoming::Malformed,
        Incoming::NotUtf8,
    ];

    /// The trace header sent for request `n`, and the trace id it names (if it is valid).
    fn header(self, n: usize) -> (Option<(&'static str, Vec<u8>)>, Option<String>) {
        let trace = format!("4bf92f3577b34da6a3ce929d0e0e{n:04x}");
        let parent = "00f067aa0ba902b7";
        match self {
            Incoming::Nothing => (None, None),
            Incoming::Sampled => (
                Some(("traceparent", format!("00-{trace}-{parent}-01").into())),
                Some(trace),
            ),
            Incoming::NotSampled => (
                Some(("traceparent", format!("00-{trace}-{parent}-00").into())),
                Some(trace),
            ),
            Incoming::B3 => (
                Some(("b3", format!("{trace}-{parent}-1").into())),
                Some(trace),
            ),
            // Upper-case hex: invalid in W3C, so the (otherwise fine) ids must not be taken.
            Incoming::Malformed => (
                Some((
                    "traceparent",
                    format!("00-{}-{parent}-01", trace.to_uppercase()).into(),
                )),
                None,
            ),
            // The trace id is fine, the rest is not UTF-8: nothing of it may be taken.
            Incoming::NotUtf8 => {
                let mut value = format!("00-{trace}-").into_bytes();
                value.extend_from_slice(b"\xff\xfe-01");
                (Some(("traceparent", value)), None)
            }
        }
    }

    /// The decision and reason the filter's default sampling makes.
    fn expected(self) -> (bool, &'static str) {
        match self {
            Incoming::Nothing | Incoming::Malformed | Incoming::NotUtf8 => (true, "root"),
            Incoming::Sampled | Incoming::B3 => (true, "parent_sampled"),
            Incoming::NotSampled => (false, "parent_not_sampled"),
        }
    }
}

/// One request's access-log line, found by its path.
fn line_for<'a>(lines: &'a [Value], path: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["path"] == path).collect();
    assert_eq!(found.len(), 1, "one access-log line for {path}: {lines:#?}");
    found[0]
}

/// The ids an access-log line names: (trace id, span id, sampled, reason).
fn logged(line: &Value) -> (String, String, String, String) {
    let field = |key: &str| {
        line[key]
            .as_str()
            .unwrap_or_else(|| panic!("no string {key} in {line}"))
            .to_owned()
    };
    (
        field("trace_id"),
        field("span_id"),
        field("trace_sampled"),
        field("sampling_reason"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_ids_are_the_upstreams_and_the_stored_spans_request_by_request() {
    let stack = Arc::new(Stack::start(StackOptions::default()).await.unwrap());
    requests_are_logged_with_their_ids(&stack, REQUESTS).await;
}

/// Sends `count` requests concurrently, spread over the [`Incoming`] kinds, and checks each
/// one's access-log line (found by its path) against the `traceparent` the upstream got, the
/// decision the filter's default sampling makes, and the span stored in the shim (sampled) or
/// its absence (unsampled).
async fn requests_are_logged_with_their_ids(stack: &Arc<Stack>, count: usize) {
    // Concurrent requests over several connections, so both workers (VMs) serve some and the
    // lines interleave: each must still carry its own request's ids.
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..count {
        let stack = Arc::clone(stack);
        requests.spawn(async move {
            let kind = Incoming::ALL[n % Incoming::ALL.len()];
            let (header, sent_trace) = kind.header(n);
            let headers: Vec<(&str, &[u8])> = header
                .iter()
                .map(|(name, value)| (*name, value.as_slice()))
                .collect();
            let path = format!("/corr/{n}");
            let echo = stack.get(&path, &headers).await.unwrap();
            (n, kind, sent_trace, echo)
        });
    }
    let mut answered: Vec<(usize, Incoming, Option<String>, Echo)> =
        requests.join_all().await.into_iter().collect();
    answered.sort_by_key(|(n, ..)| *n);

    let lines = stack.wait_for_access_log(count).await.unwrap();
    assert_eq!(lines.len(), count, "one line per request: {lines:#?}");
    let mut unsampled = Vec::new();
    for (n, kind, sent_trace, echo) in &answered {
        let path = format!("/corr/{n}");
        assert_eq!(echo.status, 200, "{path}");
        let upstream = echo.traceparent().unwrap();
        let line = line_for(&lines, &path);
        let (trace_id, span_id, sampled, reason) = logged(line);
        assert_eq!(line["response_code"], 200, "{line}");
        assert_eq!(
            (&trace_id, &span_id),
            (&upstream.trace_id, &upstream.parent_id),
            "{path} ({kind:?}): the log names the trace and the span the upstream got"
        );
        let (want_sampled, want_reason) = kind.expected();
        assert_eq!(upstream.sampled(), want_sampled, "{path} ({kind:?})");
        assert_eq!(sampled, want_sampled.to_string(), "{path} ({kind:?})");
        assert_eq!(reason, want_reason, "{path} ({kind:?})");
        match sent_trace {
            Some(sent) => assert_eq!(&trace_id, sent, "{path} ({kind:?}) continued"),
            None => assert!(
                !trace_id.starts_with("4bf92f3577b34da6a3ce929d0e0e"),
                "{path} ({kind:?}): a fresh trace, got {trace_id}"
            ),
        }
        if want_sampled {
            let stored = stack.wait_for_span(&trace_id, &span_id).await.unwrap();
            assert_eq!(
                stored.attribute("meshtrace.sampling.reason"),
                Some(&json!({ "stringValue": reason })),
                "{path}: the stored span is the logged one"
            );
        } else {
            unsampled.push(trace_id);
        }
    }
    // Every sampled span has arrived by now; the unsampled ones were logged, never exported.
    assert_eq!(
        unsampled.len(),
        answered
            .iter()
            .filter(|(_, kind, ..)| !kind.expected().0)
            .count()
    );
    let admin = stack.shim.as_ref().unwrap().admin_addr();
    for trace_id in unsampled {
        let answer = reqwest::get(format!("http://{admin}/api/traces/{trace_id}"))
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            404,
            "unsampled trace {trace_id} was stored"
        );
    }
    assert!(
        !stack.envoy.log().contains("panicked"),
        "{}",
        stack.envoy.log()
    );
}

/// A Lua script that copies filter-state values into request headers.
fn lua_copying(pairs: &[(&str, &str)]) -> serde_yaml_ng::Value {
    let body: String = pairs
        .iter()
        .map(|(key, header)| {
            format!("  handle:headers():replace(\"{header}\", tostring(state:get(\"{key}\")))\n")
        })
        .collect();
    let code = format!(
        "function envoy_on_request(handle)\n  local state = handle:streamInfo():filterState()\n{body}end\n"
    );
    serde_yaml_ng::to_value(json!({
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": code},
        },
    }))
    .unwrap()
}

/// RBAC that refuses `/guarded/*` when the filter did not sample the request.
fn rbac_refusing_unsampled() -> serde_yaml_ng::Value {
    serde_yaml_ng::to_value(json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "DENY",
                "policies": {
                    "unsampled-guarded": {
                        "permissions": [{"url_path": {"path": {"prefix": "/guarded/"}}}],
                        "principals": [{"filter_state": {
                            "key": "wasm.meshtrace.sampled",
                            "string_match": {"exact": "false"},
                        }}],
                    },
                },
            },
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_rbac_and_upstream_filters_read_the_filter_state() {
    let options = StackOptions {
        http_filters: vec![
            lua_copying(&[
                ("wasm.meshtrace.trace_id", "x-lua-trace-id"),
                ("wasm.meshtrace.span_id", "x-lua-span-id"),
                ("wasm.meshtrace.sampling_reason", "x-lua-sampling-reason"),
            ]),
            rbac_refusing_unsampled(),
        ],
        upstream_http_filters: vec![lua_copying(&[(
            "wasm.meshtrace.sampled",
            "x-upstream-lua-sampled",
        )])],
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.unwrap();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = |flags: &str| format!("00-{trace}-00f067aa0ba902b7-{flags}");

    // Sampled: RBAC lets it through; both Lua filters see our ids.
    let sampled = traceparent("01");
    let echo = stack
        .get("/guarded/a", &[("traceparent", sampled.as_bytes())])
        .await
        .unwrap();
    assert_eq!(echo.status, 200, "{}", stack.envoy.log());
    let upstream = echo.traceparent().unwrap();
    assert_eq!(echo.header("x-lua-trace-id"), Some(trace));
    assert_eq!(
        echo.header("x-lua-span-id"),
        Some(upstream.parent_id.as_str())
    );
    assert_eq!(echo.header("x-lua-sampling-reason"), Some("parent_sampled"));
    assert_eq!(echo.header("x-upstream-lua-sampled"), Some("true"));

    // Not sampled: outside the guarded prefix it passes, inside RBAC refuses it.
    let unsampled = traceparent("00");
    let open = stack
        .get("/open", &[("traceparent", unsampled.as_bytes())])
        .await
        .unwrap();
    assert_eq!(open.status, 200);
    assert_eq!(open.header("x-upstream-lua-sampled"), Some("false"));
    let refused = stack
        .get("/guarded/b", &[("traceparent", unsampled.as_bytes())])
        .await
        .unwrap();
    assert_eq!(refused.status, 403);

    // A request refused before any upstream still has its line with the filter's ids.
    let lines = stack.wait_for_access_log(3).await.unwrap();
    let line = line_for(&lines, "/guarded/b");
    assert_eq!(line["response_code"], 403, "{line}");
    let (trace_id, span_id, sampled, reason) = logged(line);
    assert_eq!(trace_id, trace);
    assert!(
        span_id.len() == 16 && span_id != "00f067aa0ba902b7",
        "our span: {span_id}"
    );
    assert_eq!(
        (sampled.as_str(), reason.as_str()),
        ("false", "parent_not_sampled")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turned_off_the_ids_are_absent_and_tracing_goes_on() {
    let mut config: Value = serde_json::from_str(TEST_PLUGIN_CONFIG).unwrap();
    config["correlation"] = json!({"filter_state": false});
    let options = StackOptions {
        plugin_config: config.to_string(),
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.unwrap();
    let echo = stack.get("/quiet", &[]).await.unwrap();
    let upstream = echo.traceparent().unwrap();
    let lines = stack.wait_for_access_log(1).await.unwrap();
    let line = line_for(&lines, "/quiet");
    for key in ["trace_id", "span_id", "trace_sampled", "sampling_reason"] {
        assert_eq!(line[key], Value::Null, "{key} in {line}");
    }
    stack
        .wait_for_span(&upstream.trace_id, &upstream.parent_id)
        .await
        .unwrap();
}

/// The JSON access-log formats of `istio/meshconfig/`, as istiod hands them to Envoy
/// (istio/istio `pilot/pkg/model/telemetry_logging.go`): a provider's `logFormat.labels`, or
/// the mesh's `accessLogFormat` parsed as JSON, becomes the file access log's `json_format`,
/// with `json_format_options.sort_properties: false`.
fn istio_formats() -> Vec<(String, serde_yaml_ng::Value)> {
    let dir = meshtrace_tests::repo_root().join("istio/meshconfig");
    let mut formats = Vec::new();
    for file in ["access-log-provider.yaml", "access-log-format.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let values: Value = serde_yaml_ng::from_str(&text).unwrap();
        let mesh = &values["meshConfig"];
        let mut labels = Vec::new();
        if let Some(format) = mesh["accessLogFormat"].as_str() {
            assert_eq!(mesh["accessLogEncoding"], "JSON", "{file}");
            labels.push((
                "accessLogFormat".to_owned(),
                serde_json::from_str(format).unwrap(),
            ));
        }
        for provider in mesh["extensionProviders"].as_array().into_iter().flatten() {
            let name = provider["name"].as_str().unwrap();
            let format = provider["envoyFileAccessLog"]["logFormat"]["labels"].clone();
            labels.push((format!("provider {name}"), format));
        }
        for (what, json_format) in labels {
            let format = json!({
                "json_format": json_format,
                "json_format_options": {"sort_properties": false},
            });
            let format = serde_yaml_ng::to_value(format).unwrap();
            formats.push((format!("{file} {what}"), format));
        }
    }
    formats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_access_log_formats_carry_the_ids_in_real_envoy() {
    let formats = istio_formats();
    assert_eq!(formats.len(), 2, "{formats:?}");
    for (name, format) in formats {
        println!("format: {name}");
        let options = StackOptions {
            access_log_format: Some(format),
            ..StackOptions::default()
        };
        let stack = Arc::new(Stack::start(options).await.unwrap());
        requests_are_logged_with_their_ids(&stack, 2 * Incoming::ALL.len()).await;
    }
}

#[test]
fn the_local_and_istio_configs_log_the_published_names() {
    // envoy/envoy.yaml and istio/meshconfig/ read exactly the names the filter publishes, as
    // plain strings.
    for file in [
        "envoy/envoy.yaml",
        "istio/meshconfig/access-log-provider.yaml",
        "istio/meshconfig/access-log-format.yaml",
    ] {
        let text = std::fs::read_to_string(meshtrace_tests::repo_root().join(file)).unwrap();
        for property in meshtrace_filter::correlation::PROPERTIES {
            let key = meshtrace_filter::correlation::filter_state_key(property);
            let operator = format!("%FILTER_STATE({key}:PLAIN)%");
            assert_eq!(text.matches(&operator).count(), 1, "{operator} in {file}");
        }
    }
}
