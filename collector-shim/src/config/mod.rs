//! Shim configuration: one serde shape with named defaults, loaded from a YAML file, then
//! overridden by environment variables and flags, then validated with every bad field named.
//!
//! ```text
//!  defaults ◄── YAML file (--config) ◄── MESHTRACE_SHIM_* / flags (clap) ──┐
//!                                   ◄── OTEL_EXPORTER_OTLP_* (no exporter in the file) ──┤
//!                                                                          ShimConfig::validate()
//! ```
//!
//! Precedence, lowest first: defaults, file, environment (`MESHTRACE_SHIM_*`, read by clap for
//! each flag), flags. The standard exporter variables (`OTEL_EXPORTER_OTLP_*`, see [`env`])
//! define the exporter when the file defines none. Errors name the config path (`queue.max_bytes`),
//! the flag or the variable. Nothing is clamped: an out-of-range value is rejected. Secrets
//! (header values) never appear in errors or `Debug` output.

pub mod cli;
pub mod env;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

pub use cli::{Cli, Command, LogFormat};
pub use env::{Env, ProcessEnv, export_from_env, parse_headers};

/// Default OTLP/HTTP listen address (4318 is the OTLP/HTTP port assigned by the spec).
pub const DEFAULT_OTLP_HTTP_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4318));
/// Default OTLP/gRPC listen address (4317 is the OTLP/gRPC port assigned by the spec).
pub const DEFAULT_OTLP_GRPC_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4317));
/// Default admin listen address (the viewer at `/`, `/api/…`, `/healthz`, `/readyz`, `/metrics`).
pub const DEFAULT_ADMIN_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
/// Default cap on one OTLP request after decompression: 64 MiB, the OTLP recommendation
/// (HTTP 413 / gRPC `RESOURCE_EXHAUSTED` above it).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Default number of OTLP requests decoded at once; more wait (HTTP) or queue in HTTP/2 flow
/// control (gRPC). Bounds the memory of requests not yet charged to the queue.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;
/// Default spans kept by the trace store behind the viewer and `/api/traces` (kept in memory
/// unless `store.data_dir` is set, and then on top of the queue budget: see `docs/shim.md`).
pub const DEFAULT_STORE_MAX_SPANS: usize = 20_000;
/// Default bytes the trace store keeps (see [`crate::store`] for what is charged).
pub const DEFAULT_STORE_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Default age, in seconds since the shim received them, after which stored spans are evicted.
pub const DEFAULT_STORE_MAX_AGE_SECS: u64 = 24 * 60 * 60;
/// Default queue bound in spans (accepted, not yet delivered by every exporter).
pub const DEFAULT_QUEUE_MAX_SPANS: u64 = 200_000;
/// Default memory budget in bytes over queued and in-flight data, measured on the decoded
/// structures ([`crate::otlp::memory_size`]).
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 128 * 1024 * 1024;
/// Default spans per exported batch (the SDK's `maxExportBatchSize`).
pub const DEFAULT_BATCH_MAX_SPANS: u64 = 512;
/// Default bytes per exported batch (well under the 4 MiB gRPC default receive limit).
pub const DEFAULT_BATCH_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Default age at which a partial batch is sent (the Collector batch processor's `timeout`).
pub const DEFAULT_BATCH_TIMEOUT_MS: u64 = 200;
/// Default per-attempt export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT` default).
pub const DEFAULT_EXPORT_TIMEOUT_MS: u64 = 10_000;
/// Default export requests in flight per exporter.
pub const DEFAULT_EXPORT_MAX_IN_FLIGHT: usize = 4;
/// Default attempts per batch, first included.
pub const DEFAULT_RETRY_MAX_ATTEMPTS: u32 = 10;
/// Default backoff before the first retry (doubles per retry, equal jitter).
pub const DEFAULT_RETRY_INITIAL_BACKOFF_MS: u64 = 1_000;
/// Default cap of the computed backoff (a server's `Retry-After` may exceed it).
pub const DEFAULT_RETRY_MAX_BACKOFF_MS: u64 = 30_000;
/// Default time budget for all attempts of one batch (the Collector's `max_elapsed_time`).
pub const DEFAULT_RETRY_MAX_ELAPSED_MS: u64 = 300_000;
/// Default bound on the spool directory's size.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Default size at which the spool starts a new segment file.
pub const DEFAULT_SPOOL_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Default bound on the shutdown drain (and on in-flight requests finishing).
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;
/// The OTLP/HTTP path for traces.
pub const TRACES_PATH: &str = "/v1/traces";

// === Errors ===

/// One invalid setting: `field` is the config path, flag or environment variable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Config path, flag or environment variable name.
    pub field: String,
    /// What is wrong, in English (never a secret).
    pub message: String,
}

/// Every invalid setting found (checking goes on after the first error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

// === Config shape ===

/// The whole configuration. `ShimConfig::default()` works without a backend (spans are only
/// kept in the trace store); tests set the addresses to `127.0.0.1:0`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShimConfig {
    /// OTLP/HTTP listen address (`POST /v1/traces`). Port 0 picks a free port.
    pub otlp_http_addr: SocketAddr,
    /// OTLP/gRPC listen address (`TraceService/Export`). Port 0 picks a free port.
    pub otlp_grpc_addr: SocketAddr,
    /// Admin listen address. Port 0 picks a free port.
    pub admin_addr: SocketAddr,
    /// Largest request accepted, after decompression. Must be > 0 and ≤ `queue.max_bytes`.
    pub max_request_body_bytes: usize,
    /// Requests decoded at once (per listener). Must be > 0.
    pub max_concurrent_requests: usize,
    /// The embedded trace store behind the viewer and the query API.
    pub store: StoreConfig,
    /// Queue and memory budget between receivers and exporters.
    pub queue: QueueConfig,
    /// Batching before export.
    pub batch: BatchConfig,
    /// Backends to forward to (each gets every span); empty keeps spans only in the store.
    pub exporters: Vec<ExportConfig>,
    /// Optional on-disk spool: accepted spans survive a crash and are delivered after restart.
    pub spool: Option<SpoolConfig>,
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
    /// Whether to keep a copy of forwarded spans when exporters are configured (without
    /// exporters the store is where spans go, whatever this says).
    pub while_forwarding: bool,
}

/// What to do when an accepted request does not fit in the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse the new request with a retryable answer (HTTP 429 + `Retry-After`, gRPC
    /// `UNAVAILABLE` + `RetryInfo`): nothing acknowledged is lost.
    #[default]
    Refuse,
    /// Drop the oldest queued spans to make room (counted as `dropped{reason="queue_full"}`).
    #[value(alias = "drop_oldest")]
    DropOldest,
}

/// The queue between receivers and exporters, and the one memory budget: spans and encoded
/// bytes are charged when a request is accepted and released when every exporter is done with
/// them, so queued, batched and in-flight data all count.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Most spans held. Must be > 0.
    pub max_spans: u64,
    /// Memory budget in bytes (encoded size). Must be > 0.
    pub max_bytes: usize,
    /// Refuse new data (default) or drop the oldest.
    pub full_policy: FullPolicy,
}

/// Batch bounds (see [`crate::pipeline::batch`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most spans per exported request. Must be > 0.
    pub max_spans: u64,
    /// Most bytes per exported request. Must be > 0.
    pub max_bytes: usize,
    /// Age at which a partial batch is sent, in milliseconds. Must be > 0.
    pub timeout_ms: u64,
}

/// Export protocol (the `OTEL_EXPORTER_OTLP_PROTOCOL` values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    /// OTLP/gRPC `TraceService/Export`.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP, binary protobuf (the spec's default).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/HTTP, JSON.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// Request compression of an exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Uncompressed.
    #[default]
    None,
    /// gzip.
    Gzip,
}

/// One header sent with every export request. Exactly one of `value`, `value_from_env`,
/// `value_from_file` is set; the value is a secret (never logged, redacted in `Debug`).
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderConfig {
    /// Header name.
    pub name: String,
    /// Literal value.
    pub value: Option<String>,
    /// Name of an environment variable holding the value (read at start).
    pub value_from_env: Option<String>,
    /// File holding the value (read at start; one trailing newline removed).
    pub value_from_file: Option<PathBuf>,
}

/// TLS settings of an exporter (`https` endpoints): rustls, the system roots plus `ca_file`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with extra CA certificates to trust (e.g. a private CA).
    pub ca_file: Option<PathBuf>,
}

/// One backend.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Name used in metrics (`exporter` label) and logs. Unique, `[a-z0-9_-]+`.
    pub name: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// For HTTP the full traces URL (`http://host:4318/v1/traces`); for gRPC the server URL
    /// (`http://host:4317`). `https` uses TLS.
    pub endpoint: String,
    /// Extra request headers (gRPC: metadata).
    pub headers: Vec<HeaderConfig>,
    /// Request compression.
    pub compression: Compression,
    /// Per-attempt timeout in milliseconds. Must be > 0.
    pub timeout_ms: u64,
    /// Export requests in flight at once. Must be > 0.
    pub max_in_flight: usize,
    /// TLS settings for `https` endpoints.
    pub tls: TlsConfig,
    /// Retry policy.
    pub retry: RetryConfig,
}

/// Retry policy: exponential backoff with jitter, bounded by attempts and elapsed time.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per batch, the first included. Must be ≥ 1.
    pub max_attempts: u32,
    /// Backoff before the first retry, in milliseconds. Must be > 0 and ≤ `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// Upper bound of the computed backoff, in milliseconds.
    pub max_backoff_ms: u64,
    /// No retry starts later than this after the first attempt, in milliseconds. Must be > 0.
    pub max_elapsed_ms: u64,
}

/// When the spool calls `fsync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Never: a record is written (`write(2)`) before the request is acknowledged, so it
    /// survives the process dying (`kill -9`, OOM kill, panic) but not a power loss or kernel
    /// crash. Like the Collector's `file_storage` default (`fsync: false`).
    #[default]
    Never,
    /// Before every acknowledgement: survives power loss; costs one `fsync` per request.
    Always,
}

/// The on-disk spool (see [`crate::spool`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory (created if missing; one shim per directory, enforced by a lock file).
    pub dir: PathBuf,
    /// Most bytes of segment files; when reached, new requests are refused (retryable).
    pub max_bytes: u64,
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
    /// When to fsync.
    pub fsync: FsyncPolicy,
}

// === impl ConfigError(s) ===

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

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
    pub(crate) fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

// === impl ShimConfig ===

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            otlp_http_addr: DEFAULT_OTLP_HTTP_ADDR,
            otlp_grpc_addr: DEFAULT_OTLP_GRPC_ADDR,
            admin_addr: DEFAULT_ADMIN_ADDR,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            store: StoreConfig::default(),
            queue: QueueConfig::default(),
            batch: BatchConfig::default(),
            exporters: Vec::new(),
            spool: None,
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
        }
    }
}

impl ShimConfig {
    /// Parses a YAML document (unknown fields rejected; the error names the path).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigErrors> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            let field = if path == "." {
                "<file>".to_owned()
            } else {
                path
            };
            ConfigErrors(vec![ConfigError::new(
                field,
                error.into_inner().to_string(),
            )])
        })
    }

    /// Reads and parses a YAML file; the error names the file when it cannot be read.
    pub fn from_yaml_file(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                path.display().to_string(),
                format!("cannot read: {e}"),
            )])
        })?;
        Self::from_yaml(&text)
    }

    /// Checks every field and returns all problems at once, each naming its config path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut positive = |field: &str, ok: bool| {
            if !ok {
                errors.push(ConfigError::new(field, "must be > 0"));
            }
        };
        positive("max_request_body_bytes", self.max_request_body_bytes > 0);
        positive("max_concurrent_requests", self.max_concurrent_requests > 0);
        positive("shutdown_timeout_ms", self.shutdown_timeout_ms > 0);
        positive("store.max_spans", self.store.max_spans > 0);
        positive("store.max_bytes", self.store.max_bytes > 0);
        positive("store.max_age_secs", self.store.max_age_secs > 0);
        positive("queue.max_spans", self.queue.max_spans > 0);
        positive("queue.max_bytes", self.queue.max_bytes > 0);
        positive("batch.max_spans", self.batch.max_spans > 0);
        positive("batch.max_bytes", self.batch.max_bytes > 0);
        positive("batch.timeout_ms", self.batch.timeout_ms > 0);
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
        if !self.exporters.is_empty() && self.max_request_body_bytes > self.queue.max_bytes {
            errors.push(ConfigError::new(
                "max_request_body_bytes",
                format!(
                    "must be <= queue.max_bytes ({} > {}): a request larger than the memory \
                     budget could never be queued",
                    self.max_request_body_bytes, self.queue.max_bytes
                ),
            ));
        }
        let addrs = [
            ("otlp_http_addr", self.otlp_http_addr),
            ("otlp_grpc_addr", self.otlp_grpc_addr),
            ("admin_addr", self.admin_addr),
        ];
        for (i, (field, addr)) in addrs.iter().enumerate() {
            let clash = addrs
                .iter()
                .take(i)
                .find(|(_, other)| addr.port() != 0 && other == addr);
            if let Some((other, _)) = clash {
                errors.push(ConfigError::new(*field, format!("same address as {other}")));
            }
        }
        let mut names = Vec::new();
        for (i, export) in self.exporters.iter().enumerate() {
            let prefix = format!("exporters[{i}]");
            export.validate_into(&prefix, &mut errors);
            if names.contains(&export.name.as_str()) {
                errors.push(ConfigError::new(
                    format!("{prefix}.name"),
                    format!("{:?} is used by another exporter", export.name),
                ));
            }
            names.push(&export.name);
        }
        if let Some(spool) = &self.spool {
            spool.validate_into(&mut errors);
            if self.exporters.is_empty() {
                errors.push(ConfigError::new(
                    "spool",
                    "needs at least one exporter (nothing would ever leave it)",
                ));
            }
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

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_spans: DEFAULT_QUEUE_MAX_SPANS,
            max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            full_policy: FullPolicy::Refuse,
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_spans: DEFAULT_BATCH_MAX_SPANS,
            max_bytes: DEFAULT_BATCH_MAX_BYTES,
            timeout_ms: DEFAULT_BATCH_TIMEOUT_MS,
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            segment_bytes: DEFAULT_SPOOL_SEGMENT_BYTES,
            fsync: FsyncPolicy::Never,
        }
    }
}

impl SpoolConfig {
    fn validate_into(&self, errors: &mut Vec<ConfigError>) {
        if self.dir.as_os_str().is_empty() {
            errors.push(ConfigError::new("spool.dir", "must be set"));
        }
        if self.segment_bytes == 0 {
            errors.push(ConfigError::new("spool.segment_bytes", "must be > 0"));
        }
        if self.max_bytes < self.segment_bytes.saturating_mul(2) {
            errors.push(ConfigError::new(
                "spool.max_bytes",
                format!(
                    "must be >= 2 * spool.segment_bytes ({} < {})",
                    self.max_bytes,
                    self.segment_bytes.saturating_mul(2)
                ),
            ));
        }
    }
}

// === impl HeaderConfig ===

impl fmt::Debug for HeaderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = if self.value.is_some() {
            "value"
        } else if let Some(var) = &self.value_from_env {
            return write!(f, "{}: <from env {var}>", self.name);
        } else if let Some(path) = &self.value_from_file {
            return write!(f, "{}: <from file {}>", self.name, path.display());
        } else {
            "unset"
        };
        write!(f, "{}: <{source} redacted>", self.name)
    }
}

impl HeaderConfig {
    /// A header with a literal value.
    pub fn literal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// The value, read from the environment or file when configured so. Errors never contain
    /// the value.
    pub fn resolve(&self, env: &impl Env) -> Result<String, String> {
        let value = match (&self.value, &self.value_from_env, &self.value_from_file) {
            (Some(value), None, None) => value.clone(),
            (None, Some(var), None) => env
                .var(var)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("environment variable {var} is not set"))?,
            (None, None, Some(path)) => {
                let mut text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
            _ => {
                return Err(
                    "exactly one of value, value_from_env, value_from_file must be set".to_owned(),
                );
            }
        };
        check_header(&self.name, &value)?;
        Ok(value)
    }
}

// === impl ExportConfig ===

impl Default for ExportConfig {
    /// Defaults for everything but `endpoint`, which is empty (and so fails validation).
    fn default() -> Self {
        Self {
            name: "otlp".to_owned(),
            protocol: Protocol::HttpProtobuf,
            endpoint: String::new(),
            headers: Vec::new(),
            compression: Compression::None,
            timeout_ms: DEFAULT_EXPORT_TIMEOUT_MS,
            max_in_flight: DEFAULT_EXPORT_MAX_IN_FLIGHT,
            tls: TlsConfig::default(),
            retry: RetryConfig::default(),
        }
    }
}

impl fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportConfig")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint_for_display())
            .field("headers", &self.headers)
            .field("compression", &self.compression)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("tls", &self.tls)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ExportConfig {
    /// An OTLP/HTTP protobuf exporter for `endpoint` with every other field at its default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            ..Self::default()
        }
    }

    /// The endpoint without `user:password@`, for logs; unparsable URLs are not echoed.
    pub fn endpoint_for_display(&self) -> String {
        match reqwest::Url::parse(&self.endpoint) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(_) => "<invalid url>".to_owned(),
        }
    }

    fn validate_into(&self, prefix: &str, errors: &mut Vec<ConfigError>) {
        let field = |name: &str| format!("{prefix}.{name}");
        let valid_name = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name {
            errors.push(ConfigError::new(field("name"), "must match [a-z0-9_-]+"));
        }
        if let Err(message) = check_endpoint(&self.endpoint) {
            errors.push(ConfigError::new(field("endpoint"), message));
        }
        for (i, header) in self.headers.iter().enumerate() {
            let sources = [
                header.value.is_some(),
                header.value_from_env.is_some(),
                header.value_from_file.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                errors.push(ConfigError::new(
                    field(&format!("headers[{i}]")),
                    "exactly one of value, value_from_env, value_from_file must be set",
                ));
            }
            if HeaderName::from_bytes(header.name.as_bytes()).is_err() {
                errors.push(ConfigError::new(
                    field(&format!("headers[{i}].name")),
                    format!("{:?} is not a valid HTTP header name", header.name),
                ));
            }
        }
        if self.timeout_ms == 0 {
            errors.push(ConfigError::new(field("timeout_ms"), "must be > 0"));
        }
        if self.max_in_flight == 0 {
            errors.push(ConfigError::new(field("max_in_flight"), "must be > 0"));
        }
        let retry = &self.retry;
        if retry.max_attempts == 0 {
            errors.push(ConfigError::new(
                field("retry.max_attempts"),
                "must be >= 1",
            ));
        }
        if retry.initial_backoff_ms == 0 {
            errors.push(ConfigError::new(
                field("retry.initial_backoff_ms"),
                "must be > 0",
            ));
        }
        if retry.initial_backoff_ms > retry.max_backoff_ms {
            errors.push(ConfigError::new(
                field("retry.max_backoff_ms"),
                format!(
                    "must be >= retry.initial_backoff_ms ({} > {})",
                    retry.initial_backoff_ms, retry.max_backoff_ms
                ),
            ));
        }
        if retry.max_elapsed_ms == 0 {
            errors.push(ConfigError::new(
                field("retry.max_elapsed_ms"),
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

/// Accepts absolute `http`/`https` URLs with a host. Never echoes the URL (credentials).
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err("must be set to the backend's URL".to_owned());
    }
    let url = reqwest::Url::parse(endpoint).map_err(|e| format!("is not a valid URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "scheme {other:?} is not supported; use http or https"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".to_owned());
    }
    Ok(())
}

/// Checks a header name and value without ever putting the value in the message.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("header name {name:?} is not a valid HTTP header name"))?;
    HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header {name:?} is not a valid HTTP header value"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
