//! Helpers shared by the harness's test binaries.
#![allow(dead_code)]

use meshtrace_tests::injected::{Written, contexts};
use meshtrace_tests::w3c::Traceparent;
use meshtrace_wasm_host::{CallOut, HeaderMap, Host, HostOptions, filter_module};
use opentelemetry_proto::tonic::trace::v1::Span;

/// The filter's metrics, by their Envoy names.
pub mod metric {
    pub const STARTED: &str = "meshtrace_spans_started_total";
    pub const EXTRACTED: &str = "meshtrace_context_extracted_total";
    pub const MALFORMED: &str = "meshtrace_context_malformed_total";
    pub const SAMPLED: &str = "meshtrace_spans_sampled_total";
    pub const NOT_SAMPLED: &str = "meshtrace_spans_not_sampled_total";
    pub const EXPORTED: &str = "meshtrace_spans_exported_total";
    pub const DROPPED_BUFFER_FULL: &str = "meshtrace_spans_dropped_buffer_full_total";
    pub const DROPPED_EXPORT_FAILED: &str = "meshtrace_spans_dropped_export_failed_total";
    pub const CALLS_OK: &str = "meshtrace_export_calls_ok_total";
    pub const CALLS_FAILED: &str = "meshtrace_export_calls_failed_total";
    pub const PENDING: &str = "meshtrace_spans_pending";
    pub const CAS_CONFLICTS: &str = "meshtrace_sampling_rate_limit_cas_conflicts_total";
    /// Prefixes of the sampling decisions by outcome, followed by the reason and `_total`.
    pub const DECIDED_SAMPLED: &str = "meshtrace_sampling_sampled_";
    pub const DECIDED_NOT_SAMPLED: &str = "meshtrace_sampling_not_sampled_";
}

/// The real filter with `config` (JSON), started and configured.
pub fn filter(config: &str) -> Host {
    let module = filter_module().unwrap_or_else(|e| panic!("{e}"));
    Host::start(&module, HostOptions::default().config(config)).unwrap_or_else(|e| panic!("{e}"))
}

/// A metric's value, 0 when undefined.
pub fn m(host: &Host, name: &str) -> i128 {
    host.metric(name).unwrap_or(0)
}

/// The sum of every metric whose name starts with `prefix`.
pub fn sum_prefixed(host: &Host, prefix: &str) -> i128 {
    let metrics = host.metrics();
    let matching = metrics.iter().filter(|(name, _)| name.starts_with(prefix));
    matching.map(|(_, value)| value.value()).sum()
}

/// The accounting of filter/src/metrics.rs, between streams: every started span has one
/// sampling decision (`spans_started = Σ sampling_{sampled,not_sampled}_<reason>`), each
/// outcome is counted as a span (`spans_sampled`, `spans_not_sampled`), and every sampled span
/// is exported, dropped or pending (`spans_sampled = exported + dropped_* + pending`).
pub fn assert_accounting(host: &Host) {
    let started = m(host, metric::STARTED);
    let (sampled, not_sampled) = (m(host, metric::SAMPLED), m(host, metric::NOT_SAMPLED));
    let settled = m(host, metric::EXPORTED)
        + m(host, metric::DROPPED_BUFFER_FULL)
        + m(host, metric::DROPPED_EXPORT_FAILED)
        + m(host, metric::PENDING);
    let decided = (
        sum_prefixed(host, metric::DECIDED_SAMPLED),
        sum_prefixed(host, metric::DECIDED_NOT_SAMPLED),
    );
    let broken = format!("accounting broken: {:#?}", host.metrics());
    assert_eq!(started, sampled + not_sampled, "{broken}");
    assert_eq!(sampled, settled, "{broken}");
    assert_eq!(decided, (sampled, not_sampled), "{broken}");
}

/// The spans of an export call, decoded with opentelemetry-proto.
pub fn spans(call: &CallOut) -> Vec<Span> {
    let request = call
        .export_request()
        .unwrap_or_else(|e| panic!("body is not OTLP: {e}"));
    request
        .resource_spans
        .into_iter()
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

/// The upstream `traceparent`, read by the independent parser of `meshtrace-tests`.
pub fn upstream_traceparent(headers: &HeaderMap) -> Traceparent {
    assert_eq!(
        headers.get_all("traceparent").len(),
        1,
        "exactly one traceparent: {headers:?}"
    );
    let value = headers.get_str("traceparent").unwrap_or_default();
    Traceparent::parse(&value).unwrap_or_else(|| panic!("not a valid traceparent: {value:?}"))
}

/// Every trace format written upstream, each at most once, read by `meshtrace_tests`'s
/// independent parsers.
pub fn written(upstream: &HeaderMap) -> Vec<Written> {
    for name in [
        "traceparent",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "uber-trace-id",
    ] {
        let count = upstream.get_all(name).len();
        assert!(count <= 1, "{name} written {count} times: {upstream:?}");
    }
    contexts(|name| upstream.get_str(name))
}

/// A GET request with `extra` headers.
pub fn get(extra: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":path".to_vec(), b"/hello?q=1".to_vec()),
        (b":authority".to_vec(), b"example.test".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec())),
    );
    headers
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
