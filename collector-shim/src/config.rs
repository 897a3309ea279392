//! Shim configuration: one serde shape with named defaults, a `validate()` that names every bad
//! field, the command line (clap, every flag also readable from a `MESHTRACE_SHIM_*` variable)
//! and the standard OpenTelemetry exporter variables for the optional backend.
//!
//! ```text
//!   CLI flags / MESHTRACE_SHIM_* ──┐
//!                                  ├──> ShimConfig ──validate()──> Shim::start
//!   OTEL_EXPORTER_OTLP_* (Env) ────┘        (errors name the flag, field or variable)
//! ```
//!
//! The backend follows the OTLP exporter specification
//! (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>):
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as-is, `OTEL_EXPORTER_OTLP_ENDPOINT` gets
//! `/v1/traces` appended, signal-specific variables win over the generic ones, and an empty
//! variable counts as unset. Environment variables are read through the [`Env`] trait so tests
//! pass a map instead of mutating the process environment.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

/// Default OTLP/HTTP listen address (4318 is the OTLP/HTTP port assigned by the spec).
pub const DEFAULT_OTLP_HTTP_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4318));
/// Default admin listen address (`/healthz`, `/metrics`, `/api/traces/{id}`); 9464 is the port
/// OpenTelemetry uses for Prometheus exporters.
pub const DEFAULT_ADMIN_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
/// Default cap on one OTLP request body, in bytes: 64 MiB, the limit the OTLP specification
/// recommends servers enforce (larger requests get HTTP 413).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Default number of spans the trace store keeps before evicting the oldest.
pub const DEFAULT_STORE_MAX_SPANS: usize = 100_000;
/// Default stored bytes (see [`crate::store`] for what is counted) before the trace store evicts
/// the oldest spans.
pub const DEFAULT_STORE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Default age, in seconds since the shim received them, after which stored spans are evicted.
pub const DEFAULT_STORE_MAX_AGE_SECS: u64 = 24 * 60 * 60;
/// Default per-attempt export timeout in milliseconds (`OTEL_EXPORTER_OTLP_TIMEOUT` default).
pub const DEFAULT_EXPORT_TIMEOUT_MS: u64 = 10_000;
/// Default capacity of the queue between the receiver and the forwarder, in requests. When it is
/// full the receiver answers 503 with `Retry-After` so the sender retries.
pub const DEFAULT_EXPORT_QUEUE_CAPACITY: usize = 64;
/// Default number of send attempts per request (first try included).
pub const DEFAULT_RETRY_MAX_ATTEMPTS: u32 = 5;
/// Default backoff before the first retry, in milliseconds (doubles on each retry, with jitter).
pub const DEFAULT_RETRY_INITIAL_BACKOFF_MS: u64 = 500;
/// Default upper bound of the exponential backoff, in milliseconds.
pub const DEFAULT_RETRY_MAX_BACKOFF_MS: u64 = 5_000;
/// Default time budget for retrying one request, in milliseconds; a retry (including one delayed
/// by the backend's `Retry-After`) that would start later is not made and the spans are dropped.
pub const DEFAULT_RETRY_MAX_ELAPSED_MS: u64 = 60_000;
/// Default bound, in milliseconds, on each shutdown phase: in-flight requests finishing, then the
/// forwarder draining its queue.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;

/// The OTLP/HTTP path for traces: where the receiver listens, and what is appended to
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub const TRACES_PATH: &str = "/v1/traces";
/// The only exporter protocol implemented so far.
pub const SUPPORTED_PROTOCOL: &str = "http/protobuf";

/// Signal-specific traces endpoint, used as-is.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Generic endpoint; [`TRACES_PATH`] is appended.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Signal-specific headers (`k=v,k2=v2`, values percent-decoded).
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// Generic headers (`k=v,k2=v2`, values percent-decoded).
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// Signal-specific per-attempt timeout in milliseconds.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// Generic per-attempt timeout in milliseconds.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Signal-specific protocol; only [`SUPPORTED_PROTOCOL`] is accepted.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// Generic protocol; only [`SUPPORTED_PROTOCOL`] is accepted.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Signal-specific compression; only `none` is accepted so far.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// Generic compression; only `none` is accepted so far.
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";

// === Errors ===

/// One invalid setting. `field` is the config path (`store.max_spans`), the flag, or the
/// environment variable it came from. Messages never contain header values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Config path, flag or environment variable name.
    pub field: String,
    /// What is wrong, in English.
    pub message: String,
}

/// Every invalid setting found (parsing goes on after the first error so all are reported).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

// === Config shape ===

/// The whole shim configuration. `ShimConfig::default()` is a working configuration without a
/// backend; all fields are public so tests can set, e.g., both addresses to `127.0.0.1:0`.
/// Deserializes from a snake_case document where every field is optional.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShimConfig {
    /// OTLP/HTTP listen address (`POST /v1/traces`). Port 0 picks a free port.
    pub otlp_http_addr: SocketAddr,
    /// Admin listen address (`/healthz`, `/metrics`, `/api/traces/{id}`). Port 0 picks a free port.
    pub admin_addr: SocketAddr,
    /// Largest accepted request body in bytes; larger requests get 413. Must be > 0.
    pub max_request_body_bytes: usize,
    /// The embedded trace store behind the query API and the viewer.
    pub store: StoreConfig,
    /// Backend to forward accepted spans to; `None` keeps them only in the store.
    pub export: Option<ExportConfig>,
    /// Bound on each shutdown phase, in milliseconds. Must be > 0.
    pub shutdown_timeout_ms: u64,
}

/// The embedded trace store (SQLite, see [`crate::store`]). Whichever bound is reached first
/// evicts the oldest spans.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Maximum number of stored spans. Must be > 0.
    pub max_spans: usize,
    /// Maximum stored bytes (see [`crate::store`] for how a span is charged). Must be > 0.
    pub max_bytes: usize,
    /// Spans received longer ago than this, in seconds, are evicted. Must be > 0.
    pub max_age_secs: u64,
    /// Directory of the database file (`traces.sqlite3`), created if missing; the store then
    /// survives restarts. `None` keeps the database in memory.
    pub data_dir: Option<PathBuf>,
    /// Whether to keep a copy of forwarded spans when a backend is configured (without a
    /// backend the store is where spans go, whatever this says).
    pub while_forwarding: bool,
}

/// Where and how accepted requests are forwarded (OTLP/HTTP protobuf only for now).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Full URL of the backend's traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    /// Only `http` is supported (no TLS yet).
    pub endpoint: String,
    /// Extra request headers (e.g. authentication). Values are secrets: never logged, and
    /// redacted by this type's `Debug`.
    pub headers: Vec<(String, String)>,
    /// Per-attempt timeout in milliseconds. Must be > 0.
    pub timeout_ms: u64,
    /// Capacity of the receiver → forwarder queue, in requests. Must be > 0.
    pub queue_capacity: usize,
    /// Retry policy for retryable failures.
    pub retry: RetryConfig,
}

/// Retry policy: exponential backoff with jitter, bounded by attempts and by elapsed time.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per request, the first one included. Must be ≥ 1.
    pub max_attempts: u32,
    /// Backoff before the first retry, in milliseconds. Must be > 0 and ≤ `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// Upper bound of the computed backoff, in milliseconds.
    pub max_backoff_ms: u64,
    /// Time budget for all attempts of one request, in milliseconds. Must be > 0.
    pub max_elapsed_ms: u64,
}

/// Log output format of the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default, for machines).
    Json,
    /// Human-readable lines.
    Text,
}

/// Command line of `meshtrace-shim`. Every flag can also be given as the environment variable
/// shown in `--help`; the backend comes from the standard `OTEL_EXPORTER_OTLP_*` variables.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "meshtrace-shim",
    version,
    about = "meshtrace collector shim: receives OTLP/HTTP spans, keeps recent traces in memory \
             and forwards them to an OTLP/HTTP backend",
    after_help = BACKEND_HELP
)]
pub struct Cli {
    /// OTLP/HTTP listen address (POST /v1/traces).
    #[arg(long, env = "MESHTRACE_SHIM_OTLP_HTTP_ADDR", default_value_t = DEFAULT_OTLP_HTTP_ADDR)]
    pub otlp_http_addr: SocketAddr,
    /// Admin listen address (/healthz, /metrics, /api/traces/{trace_id}).
    #[arg(long, env = "MESHTRACE_SHIM_ADMIN_ADDR", default_value_t = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,
    /// Largest accepted OTLP request body in bytes (larger: 413).
    #[arg(long, env = "MESHTRACE_SHIM_MAX_REQUEST_BODY_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BODY_BYTES)]
    pub max_request_body_bytes: usize,
    /// Spans kept in the trace store (viewer, /api/traces) before the oldest are evicted.
    #[arg(long, env = "MESHTRACE_SHIM_STORE_MAX_SPANS", default_value_t = DEFAULT_STORE_MAX_SPANS)]
    pub store_max_spans: usize,
    /// Bytes kept in the trace store before the oldest spans are evicted.
    #[arg(long, env = "MESHTRACE_SHIM_STORE_MAX_BYTES", default_value_t = DEFAULT_STORE_MAX_BYTES)]
    pub store_max_bytes: usize,
    /// Seconds after which received spans are evicted from the trace store.
    #[arg(long, env = "MESHTRACE_SHIM_STORE_MAX_AGE_SECS", default_value_t = DEFAULT_STORE_MAX_AGE_SECS)]
    pub store_max_age_secs: u64,
    /// Directory of the trace store's database file, kept across restarts (default: in memory).
    #[arg(long, env = "MESHTRACE_SHIM_STORE_DATA_DIR")]
    pub store_data_dir: Option<PathBuf>,
    /// Keep a copy of forwarded spans in the trace store when a backend is configured.
    #[arg(long, env = "MESHTRACE_SHIM_STORE_WHILE_FORWARDING", default_value_t = true, action = clap::ArgAction::Set)]
    pub store_while_forwarding: bool,
    /// Requests that may wait for the forwarder before the receiver answers 503.
    #[arg(long, env = "MESHTRACE_SHIM_EXPORT_QUEUE_CAPACITY", default_value_t = DEFAULT_EXPORT_QUEUE_CAPACITY)]
    pub export_queue_capacity: usize,
    /// Bound on each shutdown phase in milliseconds.
    #[arg(long, env = "MESHTRACE_SHIM_SHUTDOWN_TIMEOUT_MS", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT_MS)]
    pub shutdown_timeout_ms: u64,
    /// Log format (the level comes from RUST_LOG, default info).
    #[arg(long, env = "MESHTRACE_SHIM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

const BACKEND_HELP: &str = "\
Backend (optional; without it spans are only kept in memory):
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   traces URL, used as-is
  OTEL_EXPORTER_OTLP_ENDPOINT          base URL, /v1/traces is appended
  OTEL_EXPORTER_OTLP_[TRACES_]HEADERS  k=v,k2=v2 (values percent-decoded, never logged)
  OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT  per-attempt timeout in ms (default 10000)
  OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL only http/protobuf is supported
  OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION only none is supported";

/// Source of environment variables. Implemented for the process environment ([`ProcessEnv`])
/// and for maps, so tests never call `std::env::set_var`.
pub trait Env {
    /// The value of `name`, `Ok(None)` when unset, an error naming `name` when it is not UTF-8.
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

// === impl ConfigError ===

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

// === impl ConfigErrors ===

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

// === impl ShimConfig ===

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            otlp_http_addr: DEFAULT_OTLP_HTTP_ADDR,
            admin_addr: DEFAULT_ADMIN_ADDR,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            store: StoreConfig::default(),
            export: None,
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
        }
    }
}

impl ShimConfig {
    /// Checks every field and returns all problems at once, each naming its config path.
    /// Nothing is clamped: out-of-range values are rejected.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        if self.max_request_body_bytes == 0 {
            errors.push(ConfigError::new("max_request_body_bytes", "must be > 0"));
        }
        if self.shutdown_timeout_ms == 0 {
            errors.push(ConfigError::new("shutdown_timeout_ms", "must be > 0"));
        }
        if self.store.max_spans == 0 {
            errors.push(ConfigError::new("store.max_spans", "must be > 0"));
        }
        if self.store.max_bytes == 0 {
            errors.push(ConfigError::new("store.max_bytes", "must be > 0"));
        }
        if self.store.max_age_secs == 0 {
            errors.push(ConfigError::new("store.max_age_secs", "must be > 0"));
        }
        if self
            .store
            .data_dir
            .as_ref()
            .is_some_and(|dir| dir.as_os_str().is_empty())
        {
            errors.push(ConfigError::new(
                "store.data_dir",
                "must be a directory path (omit it to keep the store in memory)",
            ));
        }
        if let Some(export) = &self.export {
            export.validate_into("export", &mut errors);
        }
        ConfigErrors(errors).into_result()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_spans: DEFAULT_STORE_MAX_SPANS,
            max_bytes: DEFAULT_STORE_MAX_BYTES,
            max_age_secs: DEFAULT_STORE_MAX_AGE_SECS,
            data_dir: None,
            while_forwarding: true,
        }
    }
}

// === impl ExportConfig ===

impl Default for ExportConfig {
    /// Defaults for everything but `endpoint`, which is empty (and so fails validation).
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            headers: Vec::new(),
            timeout_ms: DEFAULT_EXPORT_TIMEOUT_MS,
            queue_capacity: DEFAULT_EXPORT_QUEUE_CAPACITY,
            retry: RetryConfig::default(),
        }
    }
}

impl fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values (and URL credentials) are secrets: show names only.
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExportConfig")
            .field("endpoint", &self.endpoint_for_display())
            .field("header_names", &header_names)
            .field("timeout_ms", &self.timeout_ms)
            .field("queue_capacity", &self.queue_capacity)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ExportConfig {
    /// An export configuration for `endpoint` with every other field at its default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            ..Self::default()
        }
    }

    /// The endpoint with any `user:password@` removed, for logs. Unparsable URLs are replaced by
    /// a placeholder rather than echoed, since they may contain credentials.
    pub fn endpoint_for_display(&self) -> String {
        match reqwest::Url::parse(&self.endpoint) {
            Ok(mut url) => {
                // Both setters only fail for URLs that cannot have credentials at all.
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(_) => "<invalid url>".to_owned(),
        }
    }

    fn validate_into(&self, prefix: &str, errors: &mut Vec<ConfigError>) {
        if let Err(message) = check_endpoint(&self.endpoint) {
            errors.push(ConfigError::new(format!("{prefix}.endpoint"), message));
        }
        for (name, value) in &self.headers {
            if let Err(message) = check_header(name, value) {
                errors.push(ConfigError::new(format!("{prefix}.headers"), message));
            }
        }
        if self.timeout_ms == 0 {
            errors.push(ConfigError::new(
                format!("{prefix}.timeout_ms"),
                "must be > 0",
            ));
        }
        if self.queue_capacity == 0 {
            errors.push(ConfigError::new(
                format!("{prefix}.queue_capacity"),
                "must be > 0",
            ));
        }
        let retry = &self.retry;
        if retry.max_attempts == 0 {
            errors.push(ConfigError::new(
                format!("{prefix}.retry.max_attempts"),
                "must be >= 1",
            ));
        }
        if retry.initial_backoff_ms == 0 {
            errors.push(ConfigError::new(
                format!("{prefix}.retry.initial_backoff_ms"),
                "must be > 0",
            ));
        }
        if retry.initial_backoff_ms > retry.max_backoff_ms {
            errors.push(ConfigError::new(
                format!("{prefix}.retry.max_backoff_ms"),
                format!(
                    "must be >= retry.initial_backoff_ms ({} > {})",
                    retry.initial_backoff_ms, retry.max_backoff_ms
                ),
            ));
        }
        if retry.max_elapsed_ms == 0 {
            errors.push(ConfigError::new(
                format!("{prefix}.retry.max_elapsed_ms"),
                "must be > 0",
            ));
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_RETRY_MAX_ATTEMPTS,
            initial_backoff_ms: DEFAULT_RETRY_INITIAL_BACKOFF_MS,
            max_backoff_ms: DEFAULT_RETRY_MAX_BACKOFF_MS,
            max_elapsed_ms: DEFAULT_RETRY_MAX_ELAPSED_MS,
        }
    }
}

// === impl Cli ===

impl Cli {
    /// Builds and validates the configuration from the flags plus the `OTEL_EXPORTER_OTLP_*`
    /// variables read from `env`. All problems are reported together; each names the flag or
    /// variable it comes from.
    pub fn to_config(&self, env: &impl Env) -> Result<ShimConfig, ConfigErrors> {
        let mut errors = Vec::new();
        let mut check_positive = |flag: &str, is_zero: bool| {
            if is_zero {
                errors.push(ConfigError::new(flag, "must be > 0"));
            }
        };
        check_positive("--max-request-body-bytes", self.max_request_body_bytes == 0);
        check_positive("--store-max-spans", self.store_max_spans == 0);
        check_positive("--store-max-bytes", self.store_max_bytes == 0);
        check_positive("--store-max-age-secs", self.store_max_age_secs == 0);
        check_positive("--export-queue-capacity", self.export_queue_capacity == 0);
        check_positive("--shutdown-timeout-ms", self.shutdown_timeout_ms == 0);

        let export = match export_from_env(env) {
            Ok(export) => export,
            Err(env_errors) => {
                errors.extend(env_errors.0);
                None
            }
        };
        ConfigErrors(errors).into_result()?;

        let config = ShimConfig {
            otlp_http_addr: self.otlp_http_addr,
            admin_addr: self.admin_addr,
            max_request_body_bytes: self.max_request_body_bytes,
            store: StoreConfig {
                max_spans: self.store_max_spans,
                max_bytes: self.store_max_bytes,
                max_age_secs: self.store_max_age_secs,
                data_dir: self.store_data_dir.clone(),
                while_forwarding: self.store_while_forwarding,
            },
            export: export.map(|export| ExportConfig {
                queue_capacity: self.export_queue_capacity,
                ..export
            }),
            shutdown_timeout_ms: self.shutdown_timeout_ms,
        };
        config.validate()?;
        Ok(config)
    }
}

// === impl Env ===

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(ConfigError::new(name, "is not valid UTF-8"))
            }
        }
    }
}

impl<K, V> Env for HashMap<K, V>
where
    K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
    V: AsRef<str>,
{
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.get(name).map(|v| v.as_ref().to_owned()))
    }
}

impl<K, V> Env for BTreeMap<K, V>
where
    K: std::borrow::Borrow<str> + Ord,
    V: AsRef<str>,
{
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.get(name).map(|v| v.as_ref().to_owned()))
    }
}

// === OTEL_EXPORTER_OTLP_* ===

/// Reads the backend from the standard OTLP exporter variables.
///
/// Returns `Ok(None)` when neither endpoint variable is set. Fails, naming the variable, when a
/// protocol other than `http/protobuf` or a compression other than `none` is requested (even
/// without an endpoint), or when any value is malformed. Header values never appear in errors.
pub fn export_from_env(env: &impl Env) -> Result<Option<ExportConfig>, ConfigErrors> {
    let mut errors = Vec::new();

    match first_set(
        env,
        &[
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            OTEL_EXPORTER_OTLP_PROTOCOL,
        ],
    ) {
        Ok(Some((name, value))) if value.trim() != SUPPORTED_PROTOCOL => {
            errors.push(ConfigError::new(
                name,
                format!("{value:?} is not supported: only {SUPPORTED_PROTOCOL:?} is implemented"),
            ));
        }
        Ok(_) => {}
        Err(error) => errors.push(error),
    }
    match first_set(
        env,
        &[
            OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
            OTEL_EXPORTER_OTLP_COMPRESSION,
        ],
    ) {
        Ok(Some((name, value))) if value.trim() != "none" => {
            errors.push(ConfigError::new(
                name,
                format!("{value:?} is not supported: only \"none\" is implemented"),
            ));
        }
        Ok(_) => {}
        Err(error) => errors.push(error),
    }

    let endpoint = match resolve_endpoint(env) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let Some((endpoint_var, endpoint)) = endpoint else {
        return ConfigErrors(errors).into_result().map(|()| None);
    };
    if let Err(message) = check_endpoint(&endpoint) {
        errors.push(ConfigError::new(endpoint_var, message));
    }

    let headers = match first_set(
        env,
        &[
            OTEL_EXPORTER_OTLP_TRACES_HEADERS,
            OTEL_EXPORTER_OTLP_HEADERS,
        ],
    ) {
        Ok(Some((name, value))) => parse_headers(&value).unwrap_or_else(|message| {
            errors.push(ConfigError::new(name, message));
            Vec::new()
        }),
        Ok(None) => Vec::new(),
        Err(error) => {
            errors.push(error);
            Vec::new()
        }
    };

    let timeout_ms = match first_set(
        env,
        &[
            OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
            OTEL_EXPORTER_OTLP_TIMEOUT,
        ],
    ) {
        Ok(Some((name, value))) => match value.trim().parse::<u64>() {
            Ok(0) => {
                errors.push(ConfigError::new(name, "must be > 0 milliseconds"));
                DEFAULT_EXPORT_TIMEOUT_MS
            }
            Ok(ms) => ms,
            Err(e) => {
                errors.push(ConfigError::new(
                    name,
                    format!("{value:?} is not a whole number of milliseconds: {e}"),
                ));
                DEFAULT_EXPORT_TIMEOUT_MS
            }
        },
        Ok(None) => DEFAULT_EXPORT_TIMEOUT_MS,
        Err(error) => {
            errors.push(error);
            DEFAULT_EXPORT_TIMEOUT_MS
        }
    };

    ConfigErrors(errors).into_result()?;
    Ok(Some(ExportConfig {
        endpoint,
        headers,
        timeout_ms,
        ..ExportConfig::default()
    }))
}

/// The first of `names` that is set to a non-empty value (the spec treats empty as unset),
/// with the name it was found under.
fn first_set(
    env: &impl Env,
    names: &[&'static str],
) -> Result<Option<(&'static str, String)>, ConfigError> {
    for &name in names {
        if let Some(value) = env.var(name)?
            && !value.trim().is_empty()
        {
            return Ok(Some((name, value)));
        }
    }
    Ok(None)
}

/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as-is, else `OTEL_EXPORTER_OTLP_ENDPOINT` +
/// [`TRACES_PATH`] (one slash between them whatever the base ends with).
fn resolve_endpoint(env: &impl Env) -> Result<Option<(&'static str, String)>, ConfigError> {
    if let Some((name, value)) = first_set(env, &[OTEL_EXPORTER_OTLP_TRACES_ENDPOINT])? {
        return Ok(Some((name, value.trim().to_owned())));
    }
    if let Some((name, value)) = first_set(env, &[OTEL_EXPORTER_OTLP_ENDPOINT])? {
        let base = value.trim().trim_end_matches('/');
        return Ok(Some((name, format!("{base}{TRACES_PATH}"))));
    }
    Ok(None)
}

/// Accepts absolute `http` URLs with a host. The message never echoes the URL (it may carry
/// credentials).
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err("must be set to the backend's traces URL".to_owned());
    }
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("is not a valid URL: {e}"))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err("https is not supported yet (this build has no TLS); use http".to_owned());
        }
        other => return Err(format!("scheme {other:?} is not supported; use http")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".to_owned());
    }
    Ok(())
}

/// Checks a header name and value without ever putting the value in the message.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
    HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header {name:?} is not a valid HTTP header value"))?;
    Ok(())
}

/// Parses `k=v,k2=v2` (the W3C-baggage-like format of `OTEL_EXPORTER_OTLP_HEADERS`): keys and
/// values are trimmed, values are percent-decoded, empty members are skipped. Errors name the
/// member by position and key, never by value.
pub fn parse_headers(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for (index, member) in raw.split(',').enumerate() {
        let member = member.trim();
        if member.is_empty() {
            continue;
        }
        let position = index + 1;
        let Some((key, value)) = member.split_once('=') else {
            return Err(format!("member {position} has no '=' (expected key=value)"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("member {position} has an empty key"));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| {
                format!("the value of header {key:?} is not valid UTF-8 after percent-decoding")
            })?
            .into_owned();
        check_header(key, &value)?;
        headers.push((key.to_owned(), value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    /// Environment variables of one table row.
    type Vars = &'static [(&'static str, &'static str)];

    fn fields(errors: &ConfigErrors) -> Vec<&str> {
        errors.0.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn defaults_are_valid_and_match_the_constants() {
        let config = ShimConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.otlp_http_addr.to_string(), "127.0.0.1:4318");
        assert_eq!(config.admin_addr.to_string(), "127.0.0.1:9464");
        assert_eq!(config.max_request_body_bytes, 64 * 1024 * 1024);
        assert_eq!(config.store.max_spans, 100_000);
        assert_eq!(config.store.max_bytes, 64 * 1024 * 1024);
        assert_eq!(config.store.max_age_secs, 86_400);
        assert_eq!(config.store.data_dir, None);
        assert!(config.store.while_forwarding);
        assert_eq!(config.export, None);
    }

    #[test]
    fn validate_names_every_bad_field() {
        let config = ShimConfig {
            max_request_body_bytes: 0,
            store: StoreConfig {
                max_spans: 0,
                max_bytes: 0,
                max_age_secs: 0,
                data_dir: Some(PathBuf::new()),
                while_forwarding: false,
            },
            export: Some(ExportConfig {
                endpoint: "https://backend:4318/v1/traces".to_owned(),
                timeout_ms: 0,
                queue_capacity: 0,
                retry: RetryConfig {
                    max_attempts: 0,
                    initial_backoff_ms: 10,
                    max_backoff_ms: 5,
                    max_elapsed_ms: 0,
                },
                ..ExportConfig::default()
            }),
            ..ShimConfig::default()
        };
        let errors = config.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "max_request_body_bytes",
                "store.max_spans",
                "store.max_bytes",
                "store.max_age_secs",
                "store.data_dir",
                "export.endpoint",
                "export.timeout_ms",
                "export.queue_capacity",
                "export.retry.max_attempts",
                "export.retry.max_backoff_ms",
                "export.retry.max_elapsed_ms",
            ]
        );
        assert!(errors.to_string().contains("https is not supported"));
    }

    #[test]
    fn serde_shape_fills_defaults_and_rejects_unknown_fields() {
        let config: ShimConfig = serde_json::from_str(
            r#"{"admin_addr":"127.0.0.1:0","store":{"max_spans":5,"data_dir":"/var/lib/mt"},
                "export":{"endpoint":"http://b:4318/v1/traces","headers":[["x-k","v"]]}}"#,
        )
        .unwrap();
        assert_eq!(config.admin_addr.to_string(), "127.0.0.1:0");
        assert_eq!(config.store.max_spans, 5);
        assert_eq!(config.store.max_bytes, DEFAULT_STORE_MAX_BYTES);
        assert_eq!(config.store.data_dir, Some(PathBuf::from("/var/lib/mt")));
        assert_eq!(config.store.max_age_secs, DEFAULT_STORE_MAX_AGE_SECS);
        let export = config.export.unwrap();
        assert_eq!(export.timeout_ms, DEFAULT_EXPORT_TIMEOUT_MS);
        assert_eq!(export.headers, [("x-k".to_owned(), "v".to_owned())]);

        let error = serde_json::from_str::<ShimConfig>(r#"{"store":{"max_span":5}}"#).unwrap_err();
        assert!(error.to_string().contains("max_span"), "{error}");
    }

    #[test]
    fn no_endpoint_means_no_backend() {
        assert_eq!(export_from_env(&env(&[])), Ok(None));
        // Empty counts as unset (OTel environment variable spec).
        assert_eq!(
            export_from_env(&env(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "")])),
            Ok(None)
        );
        // Headers/timeout alone do not configure a backend.
        let only_headers = env(&[(OTEL_EXPORTER_OTLP_HEADERS, "a=b")]);
        assert_eq!(export_from_env(&only_headers), Ok(None));
    }

    #[rustfmt::skip]
    #[test]
    fn endpoint_resolution() {
        let cases: &[(Vars, &str)] = &[
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")], "http://c:4318/v1/traces"),
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318/")], "http://c:4318/v1/traces"),
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318/base")], "http://c:4318/base/v1/traces"),
            (&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://t:1/custom")], "http://t:1/custom"),
            (&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://t:1/custom"),
               (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")], "http://t:1/custom"),
            (&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ""),
               (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")], "http://c:4318/v1/traces"),
        ];
        for (vars, expected) in cases {
            let map: HashMap<&str, &str> = vars.iter().copied().collect();
            let export = export_from_env(&map).unwrap().unwrap();
            assert_eq!(export.endpoint, *expected, "{vars:?}");
        }
    }

    #[test]
    fn headers_timeout_and_precedence() {
        let map = env(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318"),
            (OTEL_EXPORTER_OTLP_HEADERS, "ignored=1"),
            (
                OTEL_EXPORTER_OTLP_TRACES_HEADERS,
                " api-key = s%3Dcr%2Cet , x-tenant=a%20b ,, ",
            ),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "1"),
            (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "2500"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf"),
        ]);
        let export = export_from_env(&map).unwrap().unwrap();
        assert_eq!(
            export.headers,
            [
                ("api-key".to_owned(), "s=cr,et".to_owned()),
                ("x-tenant".to_owned(), "a b".to_owned()),
            ]
        );
        assert_eq!(export.timeout_ms, 2500);

        let generic = env(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318"),
            (OTEL_EXPORTER_OTLP_HEADERS, "k=v"),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "7"),
        ]);
        let export = export_from_env(&generic).unwrap().unwrap();
        assert_eq!(export.headers, [("k".to_owned(), "v".to_owned())]);
        assert_eq!(export.timeout_ms, 7);
        assert_eq!(
            export_from_env(&env(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c")]))
                .unwrap()
                .unwrap()
                .timeout_ms,
            DEFAULT_EXPORT_TIMEOUT_MS
        );
    }

    #[rustfmt::skip]
    #[test]
    fn env_errors_name_the_variable() {
        let cases: &[(Vars, &str, &str)] = &[
            (&[(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")], OTEL_EXPORTER_OTLP_PROTOCOL, "not supported"),
            (&[(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/json"),
               (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")], OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/json"),
            (&[(OTEL_EXPORTER_OTLP_COMPRESSION, "gzip")], OTEL_EXPORTER_OTLP_COMPRESSION, "gzip"),
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "not a url")], OTEL_EXPORTER_OTLP_ENDPOINT, "not a valid URL"),
            (&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "https://c/v1/traces")], OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "https"),
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_TIMEOUT, "10s")], OTEL_EXPORTER_OTLP_TIMEOUT, "milliseconds"),
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "0")], OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "> 0"),
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_HEADERS, "novalue")], OTEL_EXPORTER_OTLP_HEADERS, "no '='"),
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_TRACES_HEADERS, "=v")], OTEL_EXPORTER_OTLP_TRACES_HEADERS, "empty key"),
            (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_HEADERS, "bad name=v")], OTEL_EXPORTER_OTLP_HEADERS, "header name"),
        ];
        for (vars, field, needle) in cases {
            let map: HashMap<&str, &str> = vars.iter().copied().collect();
            let errors = export_from_env(&map).unwrap_err();
            assert_eq!(fields(&errors), [*field], "{vars:?}");
            let text = errors.to_string();
            assert!(text.contains(field) && text.contains(needle), "{vars:?}: {text}");
        }
    }

    #[test]
    fn header_values_never_appear_in_errors_or_debug() {
        let map = env(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"),
            (
                OTEL_EXPORTER_OTLP_HEADERS,
                "authorization=Bearer%0Atopsecret",
            ),
        ]);
        let text = export_from_env(&map).unwrap_err().to_string();
        assert!(!text.contains("topsecret"), "{text}");
        assert!(text.contains("authorization"), "{text}");

        let export = ExportConfig {
            endpoint: "http://user:hunter2@backend:4318/v1/traces".to_owned(),
            headers: vec![("authorization".to_owned(), "Bearer topsecret".to_owned())],
            ..ExportConfig::default()
        };
        let debug = format!("{export:?}");
        assert!(
            !debug.contains("topsecret") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert_eq!(
            export.endpoint_for_display(),
            "http://backend:4318/v1/traces"
        );
    }

    #[test]
    fn all_env_errors_are_reported_together() {
        let map = env(&[
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "soon"),
        ]);
        let errors = export_from_env(&map).unwrap_err();
        assert_eq!(
            fields(&errors),
            [OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TIMEOUT]
        );
    }

    #[test]
    fn cli_defaults_and_flags() {
        let cli = Cli::try_parse_from(["meshtrace-shim"]).unwrap();
        let config = cli.to_config(&env(&[])).unwrap();
        assert_eq!(config, ShimConfig::default());
        assert_eq!(cli.log_format, LogFormat::Json);

        let cli = Cli::try_parse_from([
            "meshtrace-shim",
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--store-max-spans",
            "10",
            "--store-max-age-secs",
            "60",
            "--store-data-dir",
            "/tmp/mt",
            "--store-while-forwarding",
            "false",
            "--export-queue-capacity",
            "3",
            "--log-format",
            "text",
        ])
        .unwrap();
        let config = cli
            .to_config(&env(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")]))
            .unwrap();
        assert_eq!(config.otlp_http_addr.to_string(), "127.0.0.1:0");
        assert_eq!(config.store.max_spans, 10);
        assert_eq!(config.store.max_age_secs, 60);
        assert_eq!(config.store.data_dir, Some(PathBuf::from("/tmp/mt")));
        assert!(!config.store.while_forwarding);
        assert_eq!(config.export.unwrap().queue_capacity, 3);
        assert_eq!(cli.log_format, LogFormat::Text);
    }

    #[test]
    fn cli_errors_name_flags_and_variables() {
        let cli = Cli::try_parse_from([
            "meshtrace-shim",
            "--store-max-bytes",
            "0",
            "--store-max-age-secs",
            "0",
        ])
        .unwrap();
        let errors = cli
            .to_config(&env(&[(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "grpc")]))
            .unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "--store-max-bytes",
                "--store-max-age-secs",
                OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
            ]
        );

        let error = Cli::try_parse_from(["meshtrace-shim", "--admin-addr", "nope"]).unwrap_err();
        assert!(error.to_string().contains("--admin-addr"), "{error}");
    }
}
