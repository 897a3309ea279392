//! Names of the filter's Envoy metrics, defined through proxy-wasm `define_metric`.
//!
//! Envoy shows them in `/stats` as `wasmcustom.<name>` and in `/stats/prometheus` as `<name>`.
//! Names use `_` only: Envoy turns dots into `_` for Prometheus, so a dotted and an underscored
//! name would collide there. Values are summed over every VM of the process.
//!
//! Accounting (`docs/export.md`), summed over the VMs and true after every callback of each:
//!
//! ```text
//! spans_started_total = spans_active + spans_not_sampled_total + spans_exported_total
//!                     + Σ_reason spans_dropped_<reason>_total
//!                     + export_buffered_spans + export_in_flight_spans
//! ```
//!
//! and every started span has one sampling decision:
//! `spans_started = Σ meshtrace_sampling_{sampled,not_sampled}_<reason>_total`.

use crate::export::DropReason;
use crate::export::answer::FailureCause;
use crate::propagation::{Format, Part};
use crate::sampling::{Decision, Reason};
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
    /// Spans started whose stream has not ended yet.
    SpansActive,
    /// Spans the collector accepted (2xx, minus `partial_success.rejected_spans`).
    SpansExported,
    /// Sampled spans dropped, by reason.
    SpansDropped(DropReason),
    /// Export calls answered 2xx.
    ExportCallsOk,
    /// Export calls that failed: refused at dispatch, non-2xx, timeout or connection failure.
    ExportCallsFailed,
    /// Failed export calls, by cause.
    ExportCallsFailedBy(FailureCause),
    /// Batches kept after a retryable failure for one later try.
    ExportBatchesRetried,
    /// Spans waiting in the buffer (pending or kept for a retry).
    ExportBufferedSpans,
    /// Encoded bytes of those spans.
    ExportBufferedBytes,
    /// Spans in export calls not answered yet.
    ExportInFlightSpans,
    /// Encoded bytes of those spans.
    ExportInFlightBytes,
    /// Export calls not answered yet.
    ExportInFlightCalls,
    /// Failed writes or removals of propagation headers on the upstream request or of the
    /// trace response header.
    HeaderWriteFailed,
    /// Sampling decisions with this outcome (sampled or not) and reason.
    SamplingDecision(bool, Reason),
    /// Decisions of configured sampling rule `sampling.rules[index]`, with this outcome.
    SamplingRule(usize, bool),
    /// Forced-trace headers that were present but not authentic.
    SamplingForcedRejected,
    /// Compare-and-swap conflicts retried on the shared rate-limit buckets.
    SamplingCasConflicts,
    /// Span attributes dropped by the span limits (attribute count, tag header bytes): the
    /// sum of the exported spans' `dropped_attributes_count`.
    SpanAttributesDropped,
    /// String attribute values cut to the value length limit.
    SpanAttributeValuesTruncated,
    /// Tag values that did not convert to the tag's type (the default, if any, was used).
    TagValuesInvalid,
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
            Metric::SpansActive,
            Metric::SpansExported,
        ]);
        all.extend(DropReason::ALL.map(Metric::SpansDropped));
        all.extend([Metric::ExportCallsOk, Metric::ExportCallsFailed]);
        all.extend(FailureCause::ALL.map(Metric::ExportCallsFailedBy));
        all.extend([
            Metric::ExportBatchesRetried,
            Metric::ExportBufferedSpans,
            Metric::ExportBufferedBytes,
            Metric::ExportInFlightSpans,
            Metric::ExportInFlightBytes,
            Metric::ExportInFlightCalls,
            Metric::HeaderWriteFailed,
        ]);
        for reason in Reason::ALL {
            all.extend([true, false].map(|sampled| Metric::SamplingDecision(sampled, reason)));
        }
        all.extend([Metric::SamplingForcedRejected, Metric::SamplingCasConflicts]);
        all.extend([
            Metric::SpanAttributesDropped,
            Metric::SpanAttributeValuesTruncated,
            Metric::TagValuesInvalid,
        ]);
        all
    }

    /// The counters of `rules` configured sampling rules (they change with the configuration,
    /// so they are not part of [`Metric::all`]).
    pub fn sampling_rules(rules: usize) -> impl Iterator<Item = Metric> {
        (0..rules).flat_map(|i| [true, false].map(|sampled| Metric::SamplingRule(i, sampled)))
    }

    /// The counter increments one sampling decision makes: its (outcome, reason), its rule,
    /// a rejected forced-trace header, CAS conflicts met.
    pub fn for_decision(decision: &Decision) -> Vec<(Metric, i64)> {
        let sampled = decision.sampled;
        let mut counts = vec![(Metric::SamplingDecision(sampled, decision.reason), 1)];
        if let Some(index) = decision.rule {
            counts.push((Metric::SamplingRule(index, sampled), 1));
        }
        if decision.forced_rejected {
            counts.push((Metric::SamplingForcedRejected, 1));
        }
        if decision.cas_conflicts > 0 {
            counts.push((
                Metric::SamplingCasConflicts,
                i64::from(decision.cas_conflicts),
            ));
        }
        counts
    }

    /// The metric's name in Envoy. Envoy extracts no tags from wasm metric names, so the
    /// format, outcome and reason are part of the name:
    /// `meshtrace_context_malformed_b3_trace_id_total`,
    /// `meshtrace_sampling_not_sampled_health_probe_total`, `meshtrace_sampling_rule_0_sampled_total`.
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
            Metric::SpansActive => "meshtrace_spans_active",
            Metric::SpansExported => "meshtrace_spans_exported_total",
            Metric::SpansDropped(reason) => {
                return Cow::Owned(format!("meshtrace_spans_dropped_{}_total", reason.name()));
            }
            Metric::ExportCallsOk => "meshtrace_export_calls_ok_total",
            Metric::ExportCallsFailed => "meshtrace_export_calls_failed_total",
            Metric::ExportCallsFailedBy(cause) => {
                return Cow::Owned(format!(
                    "meshtrace_export_calls_failed_{}_total",
                    cause.name()
                ));
            }
            Metric::ExportBatchesRetried => "meshtrace_export_batches_retried_total",
            Metric::ExportBufferedSpans => "meshtrace_export_buffered_spans",
            Metric::ExportBufferedBytes => "meshtrace_export_buffered_bytes",
            Metric::ExportInFlightSpans => "meshtrace_export_in_flight_spans",
            Metric::ExportInFlightBytes => "meshtrace_export_in_flight_bytes",
            Metric::ExportInFlightCalls => "meshtrace_export_in_flight_calls",
            Metric::HeaderWriteFailed => "meshtrace_header_write_failed_total",
            Metric::SamplingDecision(sampled, reason) => {
                return Cow::Owned(format!(
                    "meshtrace_sampling_{}_{}_total",
                    outcome(sampled),
                    reason.as_str()
                ));
            }
            Metric::SamplingRule(index, sampled) => {
                return Cow::Owned(format!(
                    "meshtrace_sampling_rule_{index}_{}_total",
                    outcome(sampled)
                ));
            }
            Metric::SamplingForcedRejected => "meshtrace_sampling_forced_rejected_total",
            Metric::SamplingCasConflicts => "meshtrace_sampling_rate_limit_cas_conflicts_total",
            Metric::SpanAttributesDropped => "meshtrace_span_attributes_dropped_total",
            Metric::SpanAttributeValuesTruncated => {
                "meshtrace_span_attribute_values_truncated_total"
            }
            Metric::TagValuesInvalid => "meshtrace_tag_values_invalid_total",
        })
    }

    /// Counter or gauge.
    pub fn kind(self) -> Kind {
        match self {
            Metric::SpansActive
            | Metric::ExportBufferedSpans
            | Metric::ExportBufferedBytes
            | Metric::ExportInFlightSpans
            | Metric::ExportInFlightBytes
            | Metric::ExportInFlightCalls => Kind::Gauge,
            _ => Kind::Counter,
        }
    }
}

fn outcome(sampled: bool) -> &'static str {
    if sampled { "sampled" } else { "not_sampled" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_are_unique_prometheus_safe_and_suffixed() {
        let mut all = Metric::all();
        all.extend(Metric::sampling_rules(3));
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

    #[test]
    fn every_drop_reason_and_failure_cause_has_a_metric() {
        let all = Metric::all();
        for reason in DropReason::ALL {
            assert!(all.contains(&Metric::SpansDropped(reason)), "{reason:?}");
        }
        for cause in FailureCause::ALL {
            assert!(
                all.contains(&Metric::ExportCallsFailedBy(cause)),
                "{cause:?}"
            );
        }
        assert_eq!(
            Metric::SpansDropped(DropReason::RetryNoRoom).name(),
            "meshtrace_spans_dropped_retry_no_room_total"
        );
        assert_eq!(
            Metric::ExportCallsFailedBy(FailureCause::Connect).name(),
            "meshtrace_export_calls_failed_connect_total"
        );
    }

    #[test]
    fn every_sampling_reason_and_rule_has_a_metric() {
        let names: Vec<_> = Metric::all()
            .into_iter()
            .chain(Metric::sampling_rules(3))
            .filter(|m| {
                matches!(
                    m,
                    Metric::SamplingDecision(..)
                        | Metric::SamplingRule(..)
                        | Metric::SamplingForcedRejected
                        | Metric::SamplingCasConflicts
                )
            })
            .map(Metric::name)
            .collect();
        assert_eq!(names.len(), 2 * Reason::ALL.len() + 2 * 3 + 2);
        assert_eq!(names[0], "meshtrace_sampling_sampled_forced_total");
        assert!(
            names
                .iter()
                .any(|n| n == "meshtrace_sampling_rule_2_not_sampled_total")
        );
        assert!(
            names
                .iter()
                .any(|n| n == "meshtrace_sampling_not_sampled_parent_deferred_total")
        );
        for name in &names {
            assert!(
                name.starts_with("meshtrace_sampling_") && name.ends_with("_total"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_decision_counts_its_reason_rule_rejection_and_conflicts() {
        let decision = Decision {
            sampled: false,
            reason: Reason::RuleRateLimited,
            rule: Some(1),
            ot_member: None,
            ot_changed: false,
            forced_rejected: true,
            cas_conflicts: 3,
        };
        assert_eq!(
            Metric::for_decision(&decision),
            vec![
                (Metric::SamplingDecision(false, Reason::RuleRateLimited), 1),
                (Metric::SamplingRule(1, false), 1),
                (Metric::SamplingForcedRejected, 1),
                (Metric::SamplingCasConflicts, 3),
            ]
        );
        let plain = Decision {
            sampled: true,
            reason: Reason::Root,
            rule: None,
            forced_rejected: false,
            cas_conflicts: 0,
            ..decision
        };
        assert_eq!(
            Metric::for_decision(&plain),
            vec![(Metric::SamplingDecision(true, Reason::Root), 1)]
        );
    }
}
