//! Names of the filter's Envoy metrics, defined through proxy-wasm `define_metric`.
//!
//! Envoy shows them in `/stats` as `wasmcustom.<name>` and in `/stats/prometheus` as `<name>`.
//! Names use `_` only: Envoy turns dots into `_` for Prometheus, so a dotted and an underscored
//! name would collide there. Values are summed over every VM of the process.
//!
//! Accounting: `spans_started = spans_not_sampled + spans_exported + spans_dropped_* +
//! spans_pending` at any moment.

use crate::propagation::{Format, Part};
use std::borrow::Cow;

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
    /// Requests that continued a valid incoming context (any format).
    ContextExtracted,
    /// Requests whose context came from this format.
    ContextExtractedBy(Format),
    /// Requests that carried at least one malformed or oversized trace header (counted when
    /// the format is configured for extraction).
    ContextMalformed,
    /// One malformed-input class: the header family and the parser's reason.
    ContextMalformedBy(Part, &'static str),
    /// Requests whose trace headers were all stripped by `stop_propagation`.
    PropagationStopped,
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
    /// Failed writes or removals of propagation headers on the upstream request or of the
    /// trace response header.
    HeaderWriteFailed,
}

impl Metric {
    /// Every metric, in definition order.
    pub fn all() -> Vec<Metric> {
        let mut all = vec![Metric::SpansStarted, Metric::ContextExtracted];
        all.extend(
            Format::ALL
                .into_iter()
                .filter(|f| f.carries_context())
                .map(Metric::ContextExtractedBy),
        );
        all.push(Metric::ContextMalformed);
        for part in Part::ALL {
            all.extend(
                part.reasons()
                    .into_iter()
                    .map(|reason| Metric::ContextMalformedBy(part, reason)),
            );
        }
        all.extend([
            Metric::PropagationStopped,
            Metric::SpansSampled,
            Metric::SpansNotSampled,
            Metric::SpansExported,
            Metric::SpansDroppedBufferFull,
            Metric::SpansDroppedExportFailed,
            Metric::ExportCallsOk,
            Metric::ExportCallsFailed,
            Metric::SpansPending,
            Metric::HeaderWriteFailed,
        ]);
        all
    }

    /// The metric's name in Envoy. Envoy extracts no tags from wasm metric names, so the
    /// format and reason are part of the name: `meshtrace_context_malformed_b3_trace_id_total`.
    pub fn name(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Metric::SpansStarted => "meshtrace_spans_started_total",
            Metric::ContextExtracted => "meshtrace_context_extracted_total",
            Metric::ContextExtractedBy(format) => {
                return Cow::Owned(format!(
                    "meshtrace_context_extracted_{}_total",
                    format.name()
                ));
            }
            Metric::ContextMalformed => "meshtrace_context_malformed_total",
            Metric::ContextMalformedBy(part, reason) => {
                return Cow::Owned(format!(
                    "meshtrace_context_malformed_{}_{reason}_total",
                    part.name()
                ));
            }
            Metric::PropagationStopped => "meshtrace_propagation_stopped_total",
            Metric::SpansSampled => "meshtrace_spans_sampled_total",
            Metric::SpansNotSampled => "meshtrace_spans_not_sampled_total",
            Metric::SpansExported => "meshtrace_spans_exported_total",
            Metric::SpansDroppedBufferFull => "meshtrace_spans_dropped_buffer_full_total",
            Metric::SpansDroppedExportFailed => "meshtrace_spans_dropped_export_failed_total",
            Metric::ExportCallsOk => "meshtrace_export_calls_ok_total",
            Metric::ExportCallsFailed => "meshtrace_export_calls_failed_total",
            Metric::SpansPending => "meshtrace_spans_pending",
            Metric::HeaderWriteFailed => "meshtrace_header_write_failed_total",
        })
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
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_prometheus_safe_and_suffixed() {
        let all = Metric::all();
        let names: HashSet<_> = all.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), all.len());
        for metric in all {
            let name = metric.name();
            assert!(name.starts_with("meshtrace_"), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            assert_eq!(
                name.ends_with("_total"),
                metric.kind() == Kind::Counter,
                "{name}"
            );
        }
    }

    #[test]
    fn every_format_and_malformed_class_has_a_metric() {
        let all = Metric::all();
        for format in Format::ALL.into_iter().filter(|f| f.carries_context()) {
            assert!(
                all.contains(&Metric::ContextExtractedBy(format)),
                "{format:?}"
            );
        }
        let malformed = all
            .iter()
            .filter(|m| matches!(m, Metric::ContextMalformedBy(..)))
            .count();
        let expected: usize = Part::ALL.iter().map(|p| p.reasons().len()).sum();
        assert_eq!(malformed, expected);
        assert_eq!(
            Metric::ContextMalformedBy(Part::JaegerBaggage, "too_long").name(),
            "meshtrace_context_malformed_jaeger_baggage_too_long_total"
        );
        assert_eq!(
            Metric::ContextExtractedBy(Format::B3multi).name(),
            "meshtrace_context_extracted_b3multi_total"
        );
    }
}
