//! The plugin configuration: the JSON an operator puts in Envoy's `configuration` (a
//! `google.protobuf.StringValue`) or Istio's `WasmPlugin.spec.pluginConfig`.
//!
//! Parsing is two steps: serde into the shape below (unknown fields rejected, every field
//! defaulted), then [`FilterConfig::validate`]. Every error names the field it is about, so
//! `on_configure` can refuse the configuration with a message an operator can act on.

use crate::attributes::Limits;
use crate::content::{Content, SpanConfig};
use crate::correlation::CorrelationConfig;
use crate::propagation::Format;
use crate::resource::ResourceConfig;
use crate::sampling::SamplingConfig;
use crate::tags::TagConfig;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Default Envoy cluster that reaches the collector shim.
pub const DEFAULT_EXPORTER_CLUSTER: &str = "meshtrace_shim";
/// Default `:authority` of the export requests.
pub const DEFAULT_EXPORTER_AUTHORITY: &str = "meshtrace-shim";
/// Default OTLP/HTTP traces path.
pub const DEFAULT_EXPORTER_PATH: &str = "/v1/traces";
/// Default timeout of one export call.
pub const DEFAULT_EXPORT_TIMEOUT_MS: u32 = 1_000;
/// Default interval between flushes of the span buffer.
pub const DEFAULT_FLUSH_INTERVAL_MS: u32 = 1_000;
/// Default and maximum spans per export call (the OpenTelemetry SDKs' `maxExportBatchSize`).
pub const DEFAULT_MAX_BATCH_SPANS: u32 = 512;
/// Default bound of the per-VM span buffer (the SDKs' `maxQueueSize`).
pub const DEFAULT_MAX_BUFFERED_SPANS: u32 = 2_048;
/// Default cap on export calls in flight per VM.
pub const DEFAULT_MAX_CALLS_IN_FLIGHT: u32 = 4;
/// Default bound of the encoded spans waiting in one VM (buffered and kept for a retry).
pub const DEFAULT_MAX_BUFFERED_BYTES: u32 = 1024 * 1024;
/// Default bound of one export call's body.
pub const DEFAULT_MAX_BATCH_BYTES: u32 = 256 * 1024;
/// Default cap on the wait a `Retry-After` can impose (the collector's `max_interval`).
pub const DEFAULT_MAX_RETRY_DELAY_MS: u32 = 30_000;

/// Default extract order: W3C first, then B3 single before multi (the OpenTelemetry B3
/// precedence), then Jaeger; `baggage` reads the W3C baggage header.
pub const DEFAULT_EXTRACT: [Format; 5] = [
    Format::Tracecontext,
    Format::Baggage,
    Format::B3,
    Format::B3multi,
    Format::Jaeger,
];
/// Default inject set: W3C Trace Context and Baggage, what the OpenTelemetry SDKs read by
/// default.
pub const DEFAULT_INJECT: [Format; 2] = [Format::Tracecontext, Format::Baggage];
/// Default name of the trace-id response header (W3C Trace Context Level 2).
pub const DEFAULT_TRACE_RESPONSE_HEADER: &str = "traceresponse";

const MAX_SERVICE_NAME_LEN: usize = 256;
const MAX_STOP_HOSTS: usize = 256;
const MAX_HOST_PATTERN_LEN: usize = 255;
const MAX_HEADER_NAME_LEN: usize = 128;
const MAX_EXPORT_TIMEOUT_MS: u32 = 60_000;
const MIN_FLUSH_INTERVAL_MS: u32 = 10;
const MAX_FLUSH_INTERVAL_MS: u32 = 60_000;
const MAX_BUFFERED_SPANS: u32 = 1_000_000;
const MAX_BUFFERED_BYTES: u32 = 256 * 1024 * 1024;
/// An export body must hold at least one span of any size the filter records.
const MIN_BATCH_BYTES: u32 = 16 * 1024;
const MAX_CALLS_IN_FLIGHT: u32 = 64;
const MAX_RETRY_DELAY_MS: u32 = 600_000;

/// The whole plugin configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// `service.name` resource attribute of every span; when absent, the environment, then
    /// the node metadata, then `unknown_service:envoy` (see [`crate::resource`]).
    pub service_name: Option<String>,
    /// Where and how finished spans are sent.
    pub exporter: ExporterConfig,
    /// Which trace headers are read and written.
    pub propagation: PropagationConfig,
    /// Head sampling (see `docs/sampling.md`).
    pub sampling: SamplingConfig,
    /// The span's ids published to the rest of the proxy (see `docs/correlation.md`).
    pub correlation: CorrelationConfig,
    /// The span's kind and the semantic conventions' options.
    pub span: SpanConfig,
    /// Route templates (`/api/v1/users/{id}`): `http.route` and the span name.
    pub routes: Vec<String>,
    /// Custom tags.
    pub tags: Vec<TagConfig>,
    /// Resource attributes beyond `service_name`.
    pub resource: ResourceConfig,
    /// Span limits.
    pub limits: Limits,
}

/// Context propagation: formats read and written, and where propagation stops.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PropagationConfig {
    /// Formats read, in order: the first with a valid context wins. `baggage` reads W3C
    /// baggage; `jaeger` also reads `uberctx-*` baggage.
    pub extract: Vec<Format>,
    /// Formats written on the upstream request, all describing our span. `xray` and `gcp`
    /// are read only.
    pub inject: Vec<Format>,
    /// Remove incoming headers of formats not injected (otherwise they pass unchanged, still
    /// naming the caller's span).
    pub remove_uninjected: bool,
    /// Destinations that get no trace headers at all.
    pub stop_propagation: StopPropagation,
    /// Our trace context on the response.
    pub trace_response: TraceResponse,
}

/// Destinations (egress) for which every trace header is stripped.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StopPropagation {
    /// `:authority` host patterns (port ignored, case-insensitive): `api.example.com` exactly,
    /// `*.example.com` any subdomain, `*` everything.
    pub hosts: Vec<String>,
}

/// Writing our span's context on the response, so that a client can find the trace.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TraceResponse {
    /// Off by default.
    pub enabled: bool,
    /// Header name; the value is `00-{trace-id}-{our span id}-{flags}` either way.
    pub header: String,
}

/// Export of finished spans to the collector shim over OTLP/HTTP protobuf.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExporterConfig {
    /// Envoy cluster name passed to `dispatch_http_call`.
    pub cluster: String,
    /// `:authority` header of export requests.
    pub authority: String,
    /// `:path` of export requests.
    pub path: String,
    /// Timeout of one export call, in milliseconds.
    pub timeout_ms: u32,
    /// Flush period of the span buffer, in milliseconds.
    pub flush_interval_ms: u32,
    /// Most spans in one export call.
    pub max_batch_spans: u32,
    /// Most bytes in one export call's body (OTLP protobuf).
    pub max_batch_bytes: u32,
    /// Most finished spans waiting in one VM (buffered or kept for a retry); more are dropped
    /// and counted.
    pub max_buffered_spans: u32,
    /// Most encoded bytes of the spans waiting in one VM; more are dropped and counted.
    pub max_buffered_bytes: u32,
    /// Most export calls in flight from one VM.
    pub max_calls_in_flight: u32,
    /// Longest wait a `Retry-After` answer can impose before the kept batch is tried again.
    pub max_retry_delay_ms: u32,
}

/// A configuration the filter refuses, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field (`exporter.timeout_ms`), or `.` for the document.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

// === impl FilterConfig ===

impl FilterConfig {
    /// Parses and validates the plugin configuration. No configuration, or an empty or
    /// whitespace-only one, means all defaults.
    pub fn parse(bytes: Option<&[u8]>) -> Result<Self, ConfigError> {
        let bytes = bytes.unwrap_or_default();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let mut json = serde_json::Deserializer::from_slice(bytes);
        let config: Self = serde_path_to_error::deserialize(&mut json)
            .map_err(|e| ConfigError::new(e.path().to_string(), e.into_inner().to_string()))?;
        json.end()
            .map_err(|e| ConfigError::new(".", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the cross-field and range rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.service_name
            && (name.is_empty() || name.len() > MAX_SERVICE_NAME_LEN)
        {
            return Err(ConfigError::new(
                "service_name",
                format!("must be 1 to {MAX_SERVICE_NAME_LEN} bytes long"),
            ));
        }
        self.exporter.validate()?;
        self.propagation.validate()?;
        self.sampling.validate()?;
        self.resource.validate()?;
        self.content().map(drop)
    }

    /// The compiled span content sections (`span`, `routes`, `tags`, `limits`).
    pub fn content(&self) -> Result<Content, ConfigError> {
        Content::new(&self.span, &self.routes, &self.tags, &self.limits)
    }
}

// === impl PropagationConfig ===

impl Default for PropagationConfig {
    fn default() -> Self {
        Self {
            extract: DEFAULT_EXTRACT.to_vec(),
            inject: DEFAULT_INJECT.to_vec(),
            remove_uninjected: false,
            stop_propagation: StopPropagation::default(),
            trace_response: TraceResponse::default(),
        }
    }
}

impl PropagationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        no_duplicates("propagation.extract", &self.extract)?;
        no_duplicates("propagation.inject", &self.inject)?;
        if let Some(format) = self.inject.iter().find(|f| f.is_read_only()) {
            return Err(ConfigError::new(
                "propagation.inject",
                format!(
                    "`{}` is read only: it can be extracted, not injected",
                    format.name()
                ),
            ));
        }
        let reads_baggage = self
            .extract
            .iter()
            .any(|f| matches!(f, Format::Baggage | Format::Jaeger));
        if self.inject.contains(&Format::Baggage) && !reads_baggage {
            return Err(ConfigError::new(
                "propagation.inject",
                "`baggage` is injected but never extracted: add `baggage` or `jaeger` to \
                 propagation.extract (otherwise every incoming baggage header would be dropped)",
            ));
        }
        self.stop_propagation.validate()?;
        self.trace_response.validate()
    }
}

fn no_duplicates(field: &str, formats: &[Format]) -> Result<(), ConfigError> {
    for (i, format) in formats.iter().enumerate() {
        if formats.get(..i).unwrap_or_default().contains(format) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("`{}` is listed twice", format.name()),
            ));
        }
    }
    Ok(())
}

// === impl StopPropagation ===

impl StopPropagation {
    /// Whether propagation stops for a request with this `:authority`.
    pub fn matches(&self, authority: &[u8]) -> bool {
        if self.hosts.is_empty() {
            return false;
        }
        let host = host_of(authority);
        self.hosts.iter().any(|pattern| host_matches(pattern, host))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.hosts.len() > MAX_STOP_HOSTS {
            return Err(ConfigError::new(
                "propagation.stop_propagation.hosts",
                format!("at most {MAX_STOP_HOSTS} patterns"),
            ));
        }
        for (i, pattern) in self.hosts.iter().enumerate() {
            let name = pattern.strip_prefix("*.").unwrap_or(pattern);
            let valid = pattern == "*"
                || (!name.is_empty()
                    && pattern.len() <= MAX_HOST_PATTERN_LEN
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-')
                    }));
            if !valid {
                return Err(ConfigError::new(
                    format!("propagation.stop_propagation.hosts[{i}]"),
                    format!(
                        "`{pattern}` is not a lower-case host name, `*.` followed by one, or `*`"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The host of an `:authority` (`host`, `host:port`, `[v6]:port`), lower-cased bytes kept as
/// they are otherwise.
fn host_of(authority: &[u8]) -> &[u8] {
    if authority.starts_with(b"[") {
        let end = authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority.len(), |i| i + 1);
        return authority.get(..end).unwrap_or(authority);
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => authority.get(..colon).unwrap_or(authority),
        None => authority,
    }
}

fn host_matches(pattern: &str, host: &[u8]) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host
                    .get(host.len() - domain.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(domain.as_bytes()))
                && host.get(host.len() - domain.len() - 1) == Some(&b'.')
        }
        None => host.eq_ignore_ascii_case(pattern.as_bytes()),
    }
}

// === impl TraceResponse ===

impl Default for TraceResponse {
    fn default() -> Self {
        Self {
            enabled: false,
            header: DEFAULT_TRACE_RESPONSE_HEADER.to_owned(),
        }
    }
}

impl TraceResponse {
    fn validate(&self) -> Result<(), ConfigError> {
        let name = self.header.as_bytes();
        let valid = !name.is_empty()
            && name.len() <= MAX_HEADER_NAME_LEN
            && crate::propagation::is_token(name)
            && !name.iter().any(u8::is_ascii_uppercase);
        if valid {
            Ok(())
        } else {
            Err(ConfigError::new(
                "propagation.trace_response.header",
                format!(
                    "`{}` is not a lower-case header name (1 to {MAX_HEADER_NAME_LEN} token characters)",
                    self.header
                ),
            ))
        }
    }
}

// === impl ExporterConfig ===

impl Default for ExporterConfig {
    fn default() -> Self {
        Self {
            cluster: DEFAULT_EXPORTER_CLUSTER.to_owned(),
            authority: DEFAULT_EXPORTER_AUTHORITY.to_owned(),
            path: DEFAULT_EXPORTER_PATH.to_owned(),
            timeout_ms: DEFAULT_EXPORT_TIMEOUT_MS,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            max_batch_spans: DEFAULT_MAX_BATCH_SPANS,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_buffered_spans: DEFAULT_MAX_BUFFERED_SPANS,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_calls_in_flight: DEFAULT_MAX_CALLS_IN_FLIGHT,
            max_retry_delay_ms: DEFAULT_MAX_RETRY_DELAY_MS,
        }
    }
}

impl ExporterConfig {
    /// Timeout of one export call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.into())
    }

    /// Flush period of the span buffer.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms.into())
    }

    /// Longest wait a `Retry-After` can impose.
    pub fn max_retry_delay(&self) -> Duration {
        Duration::from_millis(self.max_retry_delay_ms.into())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.is_empty() {
            return Err(ConfigError::new("exporter.cluster", "must not be empty"));
        }
        if self.authority.is_empty() {
            return Err(ConfigError::new("exporter.authority", "must not be empty"));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::new("exporter.path", "must start with `/`"));
        }
        in_range(
            "exporter.timeout_ms",
            self.timeout_ms,
            1,
            MAX_EXPORT_TIMEOUT_MS,
        )?;
        in_range(
            "exporter.flush_interval_ms",
            self.flush_interval_ms,
            MIN_FLUSH_INTERVAL_MS,
            MAX_FLUSH_INTERVAL_MS,
        )?;
        in_range(
            "exporter.max_buffered_spans",
            self.max_buffered_spans,
            1,
            MAX_BUFFERED_SPANS,
        )?;
        in_range(
            "exporter.max_batch_spans",
            self.max_batch_spans,
            1,
            self.max_buffered_spans,
        )?;
        in_range(
            "exporter.max_buffered_bytes",
            self.max_buffered_bytes,
            MIN_BATCH_BYTES,
            MAX_BUFFERED_BYTES,
        )?;
        in_range(
            "exporter.max_batch_bytes",
            self.max_batch_bytes,
            MIN_BATCH_BYTES,
            self.max_buffered_bytes,
        )?;
        in_range(
            "exporter.max_calls_in_flight",
            self.max_calls_in_flight,
            1,
            MAX_CALLS_IN_FLIGHT,
        )?;
        in_range(
            "exporter.max_retry_delay_ms",
            self.max_retry_delay_ms,
            0,
            MAX_RETRY_DELAY_MS,
        )
    }
}

fn in_range(field: &str, value: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

// === impl ConfigError ===

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn parse(json: &str) -> Result<FilterConfig, ConfigError> {
        FilterConfig::parse(Some(json.as_bytes()))
    }

    fn field_of(json: &str) -> String {
        match parse(json) {
            Ok(config) => panic!("{json} should be rejected, got {config:?}"),
            Err(e) => e.field,
        }
    }

    #[test]
    fn missing_or_empty_configuration_means_defaults() {
        assert_eq!(FilterConfig::parse(None), Ok(FilterConfig::default()));
        assert_eq!(parse(" \n"), Ok(FilterConfig::default()));
        assert_eq!(parse("{}"), Ok(FilterConfig::default()));
    }

    #[test]
    fn fields_override_defaults() {
        let config = parse(r#"{"service_name":"edge","exporter":{"flush_interval_ms":100}}"#);
        let config = config.unwrap_or_default();
        assert_eq!(config.service_name.as_deref(), Some("edge"));
        assert_eq!(config.exporter.flush_interval(), Duration::from_millis(100));
        assert_eq!(config.exporter.cluster, DEFAULT_EXPORTER_CLUSTER);
    }

    #[rustfmt::skip]
    #[test]
    fn every_error_names_its_field() {
        let cases = [
            (r#"{"servce_name":"x"}"#, "servce_name"),
            (r#"{"exporter":{"clustr":"x"}}"#, "exporter.clustr"),
            (r#"{"service_name":7}"#, "service_name"),
            (r#"{"service_name":""}"#, "service_name"),
            (r#"{"exporter":{"timeout_ms":"1s"}}"#, "exporter.timeout_ms"),
            (r#"{"exporter":{"timeout_ms":-1}}"#, "exporter.timeout_ms"),
            (r#"{"exporter":{"timeout_ms":0}}"#, "exporter.timeout_ms"),
            (r#"{"exporter":{"cluster":""}}"#, "exporter.cluster"),
            (r#"{"exporter":{"authority":""}}"#, "exporter.authority"),
            (r#"{"exporter":{"path":"v1/traces"}}"#, "exporter.path"),
            (r#"{"exporter":{"flush_interval_ms":1}}"#, "exporter.flush_interval_ms"),
            (r#"{"exporter":{"max_buffered_spans":0}}"#, "exporter.max_buffered_spans"),
            (r#"{"exporter":{"max_batch_spans":5000}}"#, "exporter.max_batch_spans"),
            (r#"{"exporter":{"max_calls_in_flight":0}}"#, "exporter.max_calls_in_flight"),
            (r#"{"exporter":{"max_buffered_bytes":1000}}"#, "exporter.max_buffered_bytes"),
            (r#"{"exporter":{"max_batch_bytes":2000000}}"#, "exporter.max_batch_bytes"),
            (r#"{"exporter":{"max_retry_delay_ms":3600000}}"#, "exporter.max_retry_delay_ms"),
            (r#"{"propagation":{"extract":["w3c"]}}"#, "propagation.extract[0]"),
            (r#"{"propagation":{"extract":["b3","b3"]}}"#, "propagation.extract[1]"),
            (r#"{"propagation":{"inject":["tracecontext","xray"]}}"#, "propagation.inject"),
            (r#"{"propagation":{"inject":["tracecontext","baggage"],"extract":["tracecontext"]}}"#, "propagation.inject"),
            (r#"{"propagation":{"remove_uninjected":"yes"}}"#, "propagation.remove_uninjected"),
            (r#"{"propagation":{"stop_propagation":{"hosts":["Example.com"]}}}"#, "propagation.stop_propagation.hosts[0]"),
            (r#"{"propagation":{"stop_propagation":{"hosts":["a.b","*x.com"]}}}"#, "propagation.stop_propagation.hosts[1]"),
            (r#"{"propagation":{"stop_propagation":{"host":[]}}}"#, "propagation.stop_propagation.host"),
            (r#"{"propagation":{"trace_response":{"header":"Trace Response"}}}"#, "propagation.trace_response.header"),
            (r#"{"propagation":{"trace_response":{"header":""}}}"#, "propagation.trace_response.header"),
            (r#"{} {}"#, "."),
            (r#"not json"#, "."),
        ];
        for (json, field) in cases {
            assert_eq!(field_of(json), field, "{json}");
        }
    }

    #[test]
    fn propagation_defaults_and_overrides() {
        let config = parse("{}").unwrap();
        assert_eq!(config.propagation.extract, DEFAULT_EXTRACT);
        assert_eq!(config.propagation.inject, DEFAULT_INJECT);
        assert!(!config.propagation.remove_uninjected);
        assert!(!config.propagation.trace_response.enabled);
        let config = parse(
            r#"{"propagation":{"extract":["xray","gcp","jaeger"],"inject":["b3","b3multi","jaeger"],
                "remove_uninjected":true,"trace_response":{"enabled":true,"header":"x-trace-id"}}}"#,
        )
        .unwrap();
        assert_eq!(
            config.propagation.extract,
            [Format::Xray, Format::Gcp, Format::Jaeger]
        );
        assert_eq!(
            config.propagation.inject,
            [Format::B3, Format::B3multi, Format::Jaeger]
        );
        assert_eq!(config.propagation.trace_response.header, "x-trace-id");
        // Jaeger baggage is a baggage source.
        assert!(parse(r#"{"propagation":{"extract":["jaeger"],"inject":["baggage"]}}"#).is_ok());
        assert!(parse(r#"{"propagation":{"extract":[],"inject":[]}}"#).is_ok());
    }

    #[test]
    fn stop_propagation_matches_hosts() {
        let stop = StopPropagation {
            hosts: vec!["api.partner.io".into(), "*.stripe.com".into()],
        };
        for (authority, stops) in [
            (&b"api.partner.io"[..], true),
            (b"API.Partner.io:443", true),
            (b"x.api.partner.io", false),
            (b"partner.io", false),
            (b"pay.stripe.com", true),
            (b"a.b.stripe.com:8443", true),
            (b"stripe.com", false),
            (b"evilstripe.com", false),
            (b"", false),
            (b"[::1]:80", false),
            (b"\xff\xfe", false),
        ] {
            assert_eq!(stop.matches(authority), stops, "{authority:?}");
        }
        let all = StopPropagation {
            hosts: vec!["*".into()],
        };
        assert!(all.matches(b"anything:1"));
        assert!(!StopPropagation::default().matches(b"anything"));
    }

    #[test]
    fn the_message_is_readable() {
        let err = parse(r#"{"exporter":{"timeout_ms":0}}"#)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid plugin configuration: field `exporter.timeout_ms`: must be between 1 and 60000, got 0"
            )
        );
        let err = parse(r#"{"nope":1}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown field `nope`"), "{err}");
    }
}
