//! Names of the filter's Envoy metrics, defined through proxy-wasm `define_metric`.
//!
//! Envoy shows them in `/stats` as `wasmcustom.<name>` and in `/stats/prometheus` as `<name>`.
//! Names use `_` only: Envoy turns dots into `_` for Prometheus, so a dotted and an underscored
//! name would collide there. Values are summed over every VM of the process.
//!
//! Accounting: `spans_started = spans_not_sampled + spans_exported + spans_dropped_* +
//! spans_pending` at any moment.

/// What a metric is, for `define_metric`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down (updated by deltas, so the VMs' contributions add up).
    Gauge,
}

/// One of the filter's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// Requests for which a span was started.
    SpansStarted,
    /// Requests that carried a valid `traceparent`.
    ContextExtracted,
    /// Requests whose `traceparent` was malformed (a new trace was started).
    ContextMalformed,
    /// Spans whose sampling decision was "sample".
    SpansSampled,
    /// Spans not sampled (never exported).
    SpansNotSampled,
    /// Spans the shim accepted (2xx).
    SpansExported,
    /// Spans dropped because the VM's buffer was full.
    SpansDroppedBufferFull,
    /// Spans dropped because their export call failed.
    SpansDroppedExportFailed,
    /// Export calls answered 2xx.
    ExportCallsOk,
    /// Export calls that failed: refused at dispatch, non-2xx, timeout or connection failure.
    ExportCallsFailed,
    /// Sampled spans buffered or in flight, not yet settled.
    SpansPending,
    /// Failed writes of the propagation header on the upstream request.
    HeaderWriteFailed,
}

impl Metric {
    /// Every metric, in definition order.
    pub const ALL: [Metric; 12] = [
        Metric::SpansStarted,
        Metric::ContextExtracted,
        Metric::ContextMalformed,
        Metric::SpansSampled,
        Metric::SpansNotSampled,
        Metric::SpansExported,
        Metric::SpansDroppedBufferFull,
        Metric::SpansDroppedExportFailed,
        Metric::ExportCallsOk,
        Metric::ExportCallsFailed,
        Metric::SpansPending,
        Metric::HeaderWriteFailed,
    ];

    /// The metric's name in Envoy.
    pub fn name(self) -> &'static str {
        match self {
            Metric::SpansStarted => "meshtrace_spans_started_total",
            Metric::ContextExtracted => "meshtrace_context_extracted_total",
            Metric::ContextMalformed => "meshtrace_context_malformed_total",
            Metric::SpansSampled => "meshtrace_spans_sampled_total",
            Metric::SpansNotSampled => "meshtrace_spans_not_sampled_total",
            Metric::SpansExported => "meshtrace_spans_exported_total",
            Metric::SpansDroppedBufferFull => "meshtrace_spans_dropped_buffer_full_total",
            Metric::SpansDroppedExportFailed => "meshtrace_spans_dropped_export_failed_total",
            Metric::ExportCallsOk => "meshtrace_export_calls_ok_total",
            Metric::ExportCallsFailed => "meshtrace_export_calls_failed_total",
            Metric::SpansPending => "meshtrace_spans_pending",
            Metric::HeaderWriteFailed => "meshtrace_header_write_failed_total",
        }
    }

    /// Counter or gauge.
    pub fn kind(self) -> Kind {
        match self {
            Metric::SpansPending => Kind::Gauge,
            _ => Kind::Counter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    use std::collections::HashSet;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_are_unique_prometheus_safe_and_suffixed() {
        let names: HashSet<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Metric::ALL.len());
        for metric in Metric::ALL {
            let name = metric.name();
            assert!(name.starts_with("meshtrace_"), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(
                name.ends_with("_total"),
                metric.kind() == Kind::Counter,
                "{name}"
            );
        }
    }
}
