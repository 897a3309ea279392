//! End-to-end export in real Envoy 1.40 (`--concurrency 2`, two worker VMs): a collector that
//! is down then up, that asks to retry (503 + `Retry-After`), that refuses (400), that rejects
//! part of a batch, and a reconfiguration in the middle of traffic. Every test checks the span
//! accounting on Envoy's own `/stats` (`docs/export.md`), exactly, once every span settled.
//!
//! The scripted collector is the shim's recording sink (`collector-shim` `testing`), since a
//! real collector cannot be told to answer 503 or 400; the shim itself is the collector where
//! the answers are ordinary.

use meshtrace_collector_shim::testing::{Reply, Sink};
use meshtrace_collector_shim::{Shim, ShimConfig};
use meshtrace_tests::accounting::{self, Accounting};
use meshtrace_tests::envoy::Envoy;
use meshtrace_tests::stack::{Echo, Stack, StackOptions, closed_port};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long spans may take to settle (flushes every 200 ms, one retry, 1 s timeouts).
const SETTLE: Duration = Duration::from_secs(20);

fn plugin_config(flush_ms: u32, extra: &str) -> String {
    format!(
        r#"{{"service_name":"meshtrace-test","exporter":{{"flush_interval_ms":{flush_ms},"timeout_ms":1000{extra}}}}}"#
    )
}

async fn stack_exporting_to(addr: SocketAddr, plugin_config: String) -> Stack {
    let options = StackOptions {
        shim_running: false,
        exporter_addr: Some(addr),
        plugin_config,
        ..StackOptions::default()
    };
    Stack::start(options).await.expect("stack starts")
}

/// Our span (trace id, span id, hex) in each answer, checking that the upstream answered
/// every request.
fn contexts(echoes: &[Echo]) -> Vec<(String, String)> {
    echoes
        .iter()
        .map(|echo| {
            assert_eq!(echo.status, 200, "{}", echo.body);
            assert!(
                echo.body["path"].is_string(),
                "not the upstream's echo: {}",
                echo.body
            );
            let traceparent = echo.traceparent().expect("traceparent upstream");
            (traceparent.trace_id, traceparent.parent_id)
        })
        .collect()
}

/// Our span id (hex) in each answer, checking that the upstream answered every request.
fn span_ids(echoes: &[Echo]) -> BTreeSet<String> {
    contexts(echoes).into_iter().map(|(_, span)| span).collect()
}

/// Span ids (hex) in the requests the sink answered with `status`, each with its count.
fn received(sink: &Sink, accepted: bool) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for recording in sink.received() {
        if (200..300).contains(&recording.status) != accepted {
            continue;
        }
        for span in recording
            .request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            *ids.entry(hex::encode(&span.span_id)).or_insert(0) += 1;
        }
    }
    ids
}

/// Waits until every span settled, and checks the accounting equation on it.
async fn settled(envoy: &Envoy) -> Accounting {
    let reading = accounting::settled(envoy, SETTLE).await.expect("stats");
    assert!(
        reading.settled(),
        "spans never settled: {reading:?}\n{}",
        envoy.log()
    );
    assert!(
        reading.balanced(),
        "the equation does not hold: {reading:?}"
    );
    reading
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_then_up_every_span_is_counted_and_the_later_ones_arrive() {
    let addr = closed_port().unwrap();
    let stack = stack_exporting_to(addr, plugin_config(200, "")).await;

    let down = span_ids(&stack.load("/down", 300, 8).await.unwrap());
    assert_eq!(down.len(), 300);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let while_down = Accounting::read(&stack.envoy).await.unwrap();
    assert!(while_down.balanced(), "{while_down:?}");
    assert!(while_down.calls_failed_by["connect"] >= 1, "{while_down:?}");
    assert_eq!(while_down.exported, 0);

    let shim = Shim::start(ShimConfig {
        otlp_http_addr: addr,
        otlp_grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ShimConfig::default()
    })
    .await
    .expect("the shim starts on the port Envoy exports to");
    let up = contexts(&stack.load("/up", 300, 8).await.unwrap());

    let end = settled(&stack.envoy).await;
    assert_eq!(end.started, 600);
    assert_eq!(end.not_sampled, 0);
    assert!(end.exported >= 300, "{end:?}");
    let lost: u64 = ["retry_exhausted", "retry_no_room", "buffer_full"]
        .iter()
        .map(|reason| end.dropped(reason))
        .sum();
    assert_eq!(
        end.exported + lost,
        600,
        "only unavailability drops: {end:?}"
    );
    let stored = stored_span_ids(shim.admin_addr(), &up).await;
    assert_eq!(stored, up.into_iter().map(|(_, span)| span).collect());
    // Logs are rate-limited: 600 requests and dozens of failed calls, a handful of lines
    // (per VM: configured, then at most one line per 10 s for failed calls and for drops).
    let log = stack.envoy.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("wasm log")).collect();
    assert!(lines.len() <= 16, "{}", lines.join("\n"));
}

/// Polls the shim's `/api/traces/{trace_id}` until every span of `contexts` is stored;
/// returns the span ids stored.
async fn stored_span_ids(admin: SocketAddr, contexts: &[(String, String)]) -> BTreeSet<String> {
    let client = reqwest::Client::new();
    let mut stored = BTreeSet::new();
    for (trace_id, span_id) in contexts {
        let url = format!("http://{admin}/api/traces/{trace_id}");
        let found = meshtrace_tests::eventually(Duration::from_secs(10), || {
            let request = client.get(&url);
            async move {
                let trace: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
                let text = trace.to_string();
                text.contains(&format!("\"{span_id}\"")).then_some(())
            }
        })
        .await;
        if found.is_some() {
            stored.insert(span_id.clone());
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answered_503_with_retry_after_are_kept_and_arrive() {
    let sink = Sink::new(
        vec![Reply::RetryAfter(503, Duration::from_secs(1))],
        Reply::Status(200),
    );
    let stack = stack_exporting_to(sink.serve_http().await, plugin_config(200, "")).await;
    let sent = span_ids(&stack.load("/retry", 40, 4).await.unwrap());

    let end = settled(&stack.envoy).await;
    assert_eq!(
        (end.started, end.exported, end.dropped_total()),
        (40, 40, 0)
    );
    assert_eq!(end.calls_failed_by["throttled"], 1, "{end:?}");
    assert_eq!(end.batches_retried, 1);
    let accepted = received(&sink, true);
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert!(accepted.values().all(|&n| n == 1), "a span accepted twice");
    // The refused batch came again, whole, no sooner than its Retry-After.
    let recordings = sink.received();
    let refused = &recordings[0];
    assert_eq!(refused.status, 503);
    let refused_ids = received(&sink, false);
    let retry = recordings
        .iter()
        .find(|r| r.status == 200 && r.request == refused.request)
        .expect("the refused batch was sent again");
    assert!(retry.at - refused.at >= Duration::from_secs(1));
    assert!(refused_ids.keys().all(|id| accepted.contains_key(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answered_400_are_dropped_and_counted_not_retried() {
    let sink = Sink::new(vec![], Reply::Status(400));
    let stack = stack_exporting_to(sink.serve_http().await, plugin_config(200, "")).await;
    let sent = span_ids(&stack.load("/bad", 40, 4).await.unwrap());

    let end = settled(&stack.envoy).await;
    assert_eq!((end.started, end.exported), (40, 0));
    assert_eq!(end.dropped("export_failed"), 40, "{end:?}");
    let calls = sink.received().len() as u64;
    assert_eq!(end.calls_failed_by["refused"], calls);
    assert_eq!(end.batches_retried, 0);
    let refused = received(&sink, false);
    assert_eq!(refused.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert!(
        refused.values().all(|&n| n == 1),
        "a refused batch was retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_spans_of_a_partial_success_are_counted_not_retried() {
    let sink = Sink::new(vec![], Reply::PartialSuccess(1));
    let stack = stack_exporting_to(sink.serve_http().await, plugin_config(200, "")).await;
    span_ids(&stack.load("/partial", 40, 4).await.unwrap());

    let end = settled(&stack.envoy).await;
    let calls = sink.received().len() as u64;
    assert_eq!(end.calls_ok, calls);
    assert_eq!(end.dropped("rejected"), calls, "{end:?}");
    assert_eq!(end.exported, 40 - calls);
    assert_eq!(end.batches_retried, 0);
    assert_eq!(
        received(&sink, true).values().sum::<usize>(),
        40,
        "nothing sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfiguration_in_the_middle_of_traffic_loses_no_span() {
    let sink = Sink::new(vec![], Reply::Status(200));
    // Spans wait up to 2 s for the tick, so each reconfiguration finds some buffered.
    let config = |name: &str| {
        format!(r#"{{"service_name":"{name}","exporter":{{"flush_interval_ms":2000}}}}"#)
    };
    let dir = tempfile::tempdir().unwrap();
    let options = StackOptions {
        shim_running: false,
        exporter_addr: Some(sink.serve_http().await),
        plugin_config: config("before"),
        ecds_dir: Some(dir.path().to_owned()),
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.expect("stack with ECDS starts");

    let traffic = {
        let stack = Arc::new(stack);
        let load = tokio::spawn({
            let stack = stack.clone();
            async move { stack.load("/reconfigure", 3000, 4).await }
        });
        for name in ["second", "third"] {
            tokio::time::sleep(Duration::from_millis(400)).await;
            stack.reconfigure(&config(name)).unwrap();
        }
        let echoes = load.await.unwrap().unwrap();
        (stack, echoes)
    };
    let (stack, echoes) = traffic;
    let sent = span_ids(&echoes);

    let end = settled(&stack.envoy).await;
    assert_eq!(
        (end.started, end.exported, end.dropped_total()),
        (3000, 3000, 0),
        "{end:?}"
    );
    let accepted = received(&sink, true);
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert!(accepted.values().all(|&n| n == 1));
    // The old configurations' root contexts had spans left, and drained them.
    let log = stack.envoy.log();
    assert!(
        log.contains("; draining"),
        "no reconfiguration found spans buffered:\n{log}"
    );
    assert!(log.contains("drained: every span settled"), "{log}");
    let names: BTreeSet<String> = sink
        .requests()
        .iter()
        .flat_map(|r| &r.resource_spans)
        .filter_map(|rs| rs.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .filter(|kv| kv.key == "service.name")
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => {
                Some(s.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        names.contains("third"),
        "the last configuration exported: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_the_collector_is_down() {
    // A small buffer, so that the bound is reached at once and every later span is dropped.
    let limits = r#","max_buffered_spans":200,"max_buffered_bytes":65536,"max_batch_spans":50,"max_batch_bytes":32768"#;
    let stack = stack_exporting_to(closed_port().unwrap(), plugin_config(100, limits)).await;
    let mut readings = Vec::new();
    for phase in 0..3 {
        let echoes = stack
            .load(&format!("/bounded{phase}"), 8000, 8)
            .await
            .unwrap();
        assert!(
            echoes
                .iter()
                .all(|e| e.status == 200 && e.body["path"].is_string())
        );
        let reading = Accounting::read(&stack.envoy).await.unwrap();
        let memory = stack.envoy.memory_allocated().await.unwrap();
        // Two worker VMs (the main thread's root context sees no traffic).
        assert!(reading.buffered <= 2 * 200, "{reading:?}");
        assert!(reading.buffered_bytes <= 2 * 65536, "{reading:?}");
        readings.push((reading, memory));
    }
    let (first, first_memory) = &readings[1];
    let (last, last_memory) = &readings[2];
    let dropped = last.dropped_total() - first.dropped_total();
    assert!(
        dropped >= 7000,
        "the collector is down, so nearly all are dropped: {last:?}"
    );
    // 8,000 more spans of ≈180 bytes went through the VMs between these two readings; had
    // they been kept, Envoy's heap would have grown by about 1.4 MB.
    let growth = last_memory.saturating_sub(*first_memory);
    eprintln!("memory: {first_memory} → {last_memory} (+{growth}), {dropped} spans dropped");
    assert!(
        growth < 512 * 1024,
        "Envoy grew by {growth} bytes for {dropped} dropped spans"
    );
    let end = settled(&stack.envoy).await;
    assert_eq!(end.started, 24_000);
}

/// Every metric the filter defines is in `/stats` (`wasmcustom.<name>`) and in
/// `/stats/prometheus` (`<name>`, with its `# TYPE`) with the same value; the families the
/// issue names count what this traffic did: contexts extracted and malformed by format,
/// sampling decisions by outcome and reason, spans exported, calls, drops by reason, the
/// buffer gauges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_metrics_are_in_stats_and_prometheus_under_the_same_names() {
    let config = r#"{"service_name":"meshtrace-test","exporter":{"flush_interval_ms":100},
        "propagation":{"extract":["tracecontext","baggage","b3"]}}"#;
    let options = StackOptions {
        plugin_config: config.to_owned(),
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await.expect("stack starts");
    let requests: [(&str, &[u8]); 5] = [
        (
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        (
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ),
        ("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ("traceparent", b"00-not-a-trace-01"),
        ("x-unrelated", b"1"),
    ];
    for (i, header) in requests.iter().enumerate() {
        let echo = stack
            .get(&format!("/metrics/{i}"), &[*header])
            .await
            .unwrap();
        assert_eq!(echo.status, 200);
    }
    let end = settled(&stack.envoy).await;
    assert_eq!((end.started, end.not_sampled, end.exported), (5, 1, 4));

    let stats = stack.envoy.stats().await.unwrap();
    let prometheus = stack.envoy.prometheus().await.unwrap();
    let mut types = BTreeMap::new();
    let mut values = BTreeMap::new();
    for line in prometheus.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = declared.split_once(' ') {
                types.insert(name.to_owned(), kind.to_owned());
            }
        } else if let Some((name, value)) = line.split_once(' ') {
            values.insert(name.trim_end_matches("{}").to_owned(), value.to_owned());
        }
    }
    let ours: BTreeMap<&str, u64> = stats
        .iter()
        .filter_map(|(name, value)| Some((name.strip_prefix("wasmcustom.")?, *value)))
        .filter(|(name, _)| name.starts_with("meshtrace_"))
        .collect();
    assert!(ours.len() > 50, "{ours:?}");
    for (name, value) in &ours {
        let kind = types.get(*name).map(String::as_str);
        assert!(
            matches!(kind, Some("counter" | "gauge")),
            "{name}: # TYPE {kind:?}"
        );
        assert_eq!(
            values.get(*name),
            Some(&value.to_string()),
            "{name} in /stats/prometheus"
        );
    }
    assert_eq!(types["meshtrace_export_buffered_spans"], "gauge");
    assert_eq!(types["meshtrace_spans_exported_total"], "counter");
    let sum = |prefix: &str| -> u64 {
        ours.iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, value)| value)
            .sum()
    };
    #[rustfmt::skip]
    let expected = [
        ("meshtrace_context_extracted_tracecontext_total", 2),
        ("meshtrace_context_extracted_b3_total", 1),
        ("meshtrace_context_malformed_tracecontext_", 1),
        ("meshtrace_sampling_sampled_parent_sampled_total", 2),
        ("meshtrace_sampling_not_sampled_parent_not_sampled_total", 1),
        ("meshtrace_sampling_sampled_root_total", 2),
        ("meshtrace_spans_exported_total", 4),
        ("meshtrace_spans_dropped_", 0),
        ("meshtrace_export_calls_failed_total", 0),
        ("meshtrace_export_buffered_spans", 0),
    ];
    for (prefix, count) in expected {
        assert_eq!(sum(prefix), count, "{prefix}: {ours:#?}");
    }
    assert!(sum("meshtrace_export_calls_ok_total") >= 1);
    for family in [
        "meshtrace_spans_dropped_buffer_full_total",
        "meshtrace_export_calls_failed_connect_total",
    ] {
        assert!(ours.contains_key(family), "{family} is defined");
    }
}
