//! Logs–traces correlation: the identity of each request's span, published for the rest of the
//! proxy. A Wasm filter's span is invisible to Envoy's own tracing (`%TRACE_ID%` knows nothing
//! of it), so the filter writes its ids as proxy-wasm properties, which Envoy stores as
//! **filter state** on the stream. From there the access log (`%FILTER_STATE(key:PLAIN)%`),
//! later HTTP filters (Lua `request_handle:streamInfo():filterState():get(key)`), RBAC
//! (`filter_state` principals) and CEL expressions read them. See `docs/correlation.md`.
//!
//! | property (`set_property` path) | Envoy filter-state key       | value                         |
//! |--------------------------------|------------------------------|-------------------------------|
//! | `meshtrace.trace_id`           | `wasm.meshtrace.trace_id`    | 32 lowercase hex digits       |
//! | `meshtrace.span_id`            | `wasm.meshtrace.span_id`     | 16 lowercase hex digits       |
//! | `meshtrace.sampled`            | `wasm.meshtrace.sampled`     | `true` or `false`             |
//! | `meshtrace.sampling_reason`    | `wasm.meshtrace.sampling_reason` | a [`Reason`] name (`root`, `parent_sampled`, …) |
//!
//! The span id is the filter's SERVER span: the parent id of the upstream's `traceparent` and
//! the id of the span the filter exports. These names are a stable interface: they change only
//! with a major version.
//!
//! Envoy 1.40 (`source/extensions/common/wasm/context.cc`, `Context::setProperty`) keys the
//! value as `wasm.` + path, in a `CelState` whose string form is the raw value, with the
//! `FilterChain` life span: it lives as long as the downstream request's filter chain, so the
//! HTTP access log written at the end of the stream sees it.

use crate::request::Handled;
use crate::sampling::Reason;
use crate::trace::SpanContext;
use serde::Deserialize;

/// What Envoy puts before a property's path to make its filter-state key.
pub const ENVOY_FILTER_STATE_PREFIX: &str = "wasm.";
/// Property holding the trace id.
pub const TRACE_ID: &str = "meshtrace.trace_id";
/// Property holding the filter's span id.
pub const SPAN_ID: &str = "meshtrace.span_id";
/// Property holding the sampling decision, `true` or `false`.
pub const SAMPLED: &str = "meshtrace.sampled";
/// Property holding the reason of the sampling decision.
pub const SAMPLING_REASON: &str = "meshtrace.sampling_reason";

/// Every published property, in the order they are written.
pub const PROPERTIES: [&str; 4] = [TRACE_ID, SPAN_ID, SAMPLED, SAMPLING_REASON];

/// Publishing the span's identity to the rest of the proxy.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CorrelationConfig {
    /// Write the [`PROPERTIES`] as Envoy filter state on every request (on by default; four
    /// host calls per request).
    pub filter_state: bool,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self { filter_state: true }
    }
}

/// The properties to publish for a handled request: `(path, value)` for each of
/// [`PROPERTIES`], describing the span the filter started and the decision it made.
pub fn properties(handled: &Handled) -> [(&'static str, String); 4] {
    describe(&handled.span.context, handled.decision.reason)
}

/// The property values for `context`, sampled or not as its flags say, for `reason`.
pub fn describe(context: &SpanContext, reason: Reason) -> [(&'static str, String); 4] {
    let sampled = if context.flags.is_sampled() {
        "true"
    } else {
        "false"
    };
    [
        (TRACE_ID, context.trace_id.to_hex()),
        (SPAN_ID, context.span_id.to_hex()),
        (SAMPLED, sampled.to_owned()),
        (SAMPLING_REASON, reason.as_str().to_owned()),
    ]
}

/// The Envoy filter-state key under which `property` is found (`wasm.meshtrace.trace_id`).
pub fn filter_state_key(property: &str) -> String {
    format!("{ENVOY_FILTER_STATE_PREFIX}{property}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{SpanId, TraceFlags, TraceId};

    fn context(sampled: bool) -> SpanContext {
        SpanContext {
            trace_id: TraceId::from_hex(b"4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex(b"00f067aa0ba902b7").unwrap(),
            flags: TraceFlags::from_wire(TraceFlags::RANDOM).with_sampled(sampled),
            debug: false,
        }
    }

    #[test]
    fn values_are_w3c_hex_ids_the_decision_and_its_reason() {
        assert_eq!(
            describe(&context(true), Reason::ParentSampled),
            [
                (
                    "meshtrace.trace_id",
                    "4bf92f3577b34da6a3ce929d0e0e4736".to_owned()
                ),
                ("meshtrace.span_id", "00f067aa0ba902b7".to_owned()),
                ("meshtrace.sampled", "true".to_owned()),
                ("meshtrace.sampling_reason", "parent_sampled".to_owned()),
            ]
        );
        let unsampled = describe(&context(false), Reason::Root);
        assert_eq!(unsampled[2], (SAMPLED, "false".to_owned()));
        assert_eq!(unsampled[3], (SAMPLING_REASON, "root".to_owned()));
    }

    #[test]
    fn properties_name_the_span_written_upstream_and_its_decision() {
        use crate::config::FilterConfig;
        use crate::ids::RandomIdGenerator;
        use crate::propagation::HeaderWrite;
        use crate::sampling::rate_limit::tests::MemoryStore;

        let config = FilterConfig::default();
        let sampler = config.sampling.build().unwrap();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let headers = [
            (":method", "GET"),
            (":path", "/"),
            ("traceparent", incoming),
        ];
        let handled = crate::request::handle(
            &headers[..],
            &config.propagation,
            &sampler,
            &MemoryStore::default(),
            &mut RandomIdGenerator,
            1,
        );
        let upstream = handled.writes.iter().find_map(|write| match write {
            HeaderWrite::Set(name, value) if name == "traceparent" => Some(value.clone()),
            _ => None,
        });
        let [(_, trace), (_, span), (_, sampled), (_, reason)] = properties(&handled);
        assert_eq!(upstream, Some(format!("00-{trace}-{span}-00")));
        assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            (sampled.as_str(), reason.as_str()),
            ("false", "parent_not_sampled")
        );
    }

    #[test]
    fn paths_are_single_segments_so_envoy_keys_are_dotted_names() {
        // A multi-segment path would reach Envoy NUL-joined, an unreadable key in a format
        // string: every property is one segment.
        for property in PROPERTIES {
            assert!(!property.contains('\0'));
            assert!(property.starts_with("meshtrace."));
        }
        assert_eq!(filter_state_key(TRACE_ID), "wasm.meshtrace.trace_id");
    }

    #[test]
    fn published_by_default_and_can_be_turned_off() {
        assert!(CorrelationConfig::default().filter_state);
        let off: CorrelationConfig = serde_json::from_str(r#"{"filter_state": false}"#).unwrap();
        assert!(!off.filter_state);
        assert!(serde_json::from_str::<CorrelationConfig>(r#"{"filterstate": false}"#).is_err());
    }
}
