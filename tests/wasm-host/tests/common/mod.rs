//! Helpers shared by the harness's test binaries.
#![allow(dead_code)]

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

/// `spans_started = not_sampled + exported + dropped_* + pending` (filter/src/metrics.rs).
pub fn assert_accounting(host: &Host) {
    let started = m(host, metric::STARTED);
    let settled = m(host, metric::NOT_SAMPLED)
        + m(host, metric::EXPORTED)
        + m(host, metric::DROPPED_BUFFER_FULL)
        + m(host, metric::DROPPED_EXPORT_FAILED)
        + m(host, metric::PENDING);
    assert_eq!(started, settled, "accounting broken: {:#?}", host.metrics());
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
