//! The `meshtrace-shim` command line (clap). Every flag can also be given as the
//! `MESHTRACE_SHIM_*` variable shown in `--help`; a flag or variable overrides the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ConfigErrors, Env, FsyncPolicy, FullPolicy, ShimConfig, SpoolConfig, export_from_env};

/// Command line of `meshtrace-shim`.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "meshtrace-shim",
    version,
    about = "meshtrace collector shim: receives OTLP (HTTP and gRPC), batches across sources and \
             forwards to OTLP backends with retries, bounded memory and no silent loss",
    after_help = BACKEND_HELP
)]
pub struct Cli {
    /// What to do (default: run the shim).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of the shim (also used by `check-config` on top of the file).
    #[command(flatten)]
    pub overrides: Overrides,
    /// Log format (the level comes from RUST_LOG, default info).
    #[arg(long, global = true, env = "MESHTRACE_SHIM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// Subcommands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Load and validate a config file (plus environment and flags), print the result, exit
    /// 0 when valid and 1 with every error named when not.
    CheckConfig {
        /// The YAML file.
        file: PathBuf,
    },
}

/// Flags that override the file; each also reads its `MESHTRACE_SHIM_*` variable.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// YAML config file (see docs/shim.md).
    #[arg(long, env = "MESHTRACE_SHIM_CONFIG")]
    pub config: Option<PathBuf>,
    /// OTLP/HTTP listen address (POST /v1/traces) [default: 127.0.0.1:4318].
    #[arg(long, env = "MESHTRACE_SHIM_OTLP_HTTP_ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long, env = "MESHTRACE_SHIM_OTLP_GRPC_ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// Admin listen address (viewer at /, /api/…, /healthz, /readyz, /metrics) [default: 127.0.0.1:9464].
    #[arg(long, env = "MESHTRACE_SHIM_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// Largest OTLP request after decompression, in bytes (larger: 413 / RESOURCE_EXHAUSTED).
    #[arg(long, env = "MESHTRACE_SHIM_MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: Option<usize>,
    /// OTLP requests decoded at once, per listener.
    #[arg(long, env = "MESHTRACE_SHIM_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Spans kept in the trace store (viewer, /api/traces) before the oldest are evicted.
    #[arg(long, env = "MESHTRACE_SHIM_STORE_MAX_SPANS")]
    pub store_max_spans: Option<usize>,
    /// Bytes kept in the trace store before the oldest spans are evicted.
    #[arg(long, env = "MESHTRACE_SHIM_STORE_MAX_BYTES")]
    pub store_max_bytes: Option<usize>,
    /// Seconds after which received spans are evicted from the trace store.
    #[arg(long, env = "MESHTRACE_SHIM_STORE_MAX_AGE_SECS")]
    pub store_max_age_secs: Option<u64>,
    /// Directory of the trace store's database file, kept across restarts (default: in memory).
    #[arg(long, env = "MESHTRACE_SHIM_STORE_DATA_DIR")]
    pub store_data_dir: Option<PathBuf>,
    /// Keep a copy of forwarded spans in the trace store when exporters are configured
    /// [default: true].
    #[arg(long, env = "MESHTRACE_SHIM_STORE_WHILE_FORWARDING", action = clap::ArgAction::Set)]
    pub store_while_forwarding: Option<bool>,
    /// Spans accepted and not yet delivered before new data is refused.
    #[arg(long, env = "MESHTRACE_SHIM_QUEUE_MAX_SPANS")]
    pub queue_max_spans: Option<u64>,
    /// Memory budget in bytes over queued and in-flight data.
    #[arg(long, env = "MESHTRACE_SHIM_QUEUE_MAX_BYTES")]
    pub queue_max_bytes: Option<usize>,
    /// When the queue is full: refuse new data (retryable) or drop the oldest (counted).
    #[arg(long, env = "MESHTRACE_SHIM_QUEUE_FULL_POLICY", value_enum)]
    pub queue_full_policy: Option<FullPolicy>,
    /// Spans per exported batch.
    #[arg(long, env = "MESHTRACE_SHIM_BATCH_MAX_SPANS")]
    pub batch_max_spans: Option<u64>,
    /// Bytes per exported batch.
    #[arg(long, env = "MESHTRACE_SHIM_BATCH_MAX_BYTES")]
    pub batch_max_bytes: Option<usize>,
    /// Age in milliseconds at which a partial batch is sent.
    #[arg(long, env = "MESHTRACE_SHIM_BATCH_TIMEOUT_MS")]
    pub batch_timeout_ms: Option<u64>,
    /// Spool directory: accepted spans are written there and survive a crash.
    #[arg(long, env = "MESHTRACE_SHIM_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Bound on the spool's size in bytes.
    #[arg(long, env = "MESHTRACE_SHIM_SPOOL_MAX_BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// When the spool fsyncs.
    #[arg(long, env = "MESHTRACE_SHIM_SPOOL_FSYNC", value_enum)]
    pub spool_fsync: Option<FsyncPolicy>,
    /// Bound on each shutdown phase in milliseconds.
    #[arg(long, env = "MESHTRACE_SHIM_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<u64>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default, for machines).
    Json,
    /// Human-readable lines.
    Text,
}

const BACKEND_HELP: &str = "\
Exporters come from the config file (exporters: [...]); when it defines none, the standard
variables define one:
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT       URL, used as-is
  OTEL_EXPORTER_OTLP_ENDPOINT              base URL (/v1/traces appended for HTTP)
  OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL     grpc | http/protobuf (default) | http/json
  OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION  gzip | none (default)
  OTEL_EXPORTER_OTLP_[TRACES_]HEADERS      k=v,k2=v2 (percent-decoded, never logged)
  OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT      per-attempt timeout in ms (default 10000)
  OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE  extra CA certificates (PEM) for https
Without any exporter, spans are only kept in the trace store (the viewer at the admin address).";

// === impl Cli ===

impl Cli {
    /// The configuration: `file` (if any, `check-config`'s argument first, else `--config`),
    /// overridden by flags and `MESHTRACE_SHIM_*`, plus an exporter from `OTEL_EXPORTER_OTLP_*`
    /// when the file has none; validated. All problems are reported together.
    pub fn to_config(&self, env: &impl Env) -> Result<ShimConfig, ConfigErrors> {
        let file = match &self.command {
            Some(Command::CheckConfig { file }) => Some(file),
            None => self.overrides.config.as_ref(),
        };
        let mut config = match file {
            Some(path) => ShimConfig::from_yaml_file(path)?,
            None => ShimConfig::default(),
        };
        self.overrides.apply(&mut config);
        if config.exporters.is_empty()
            && let Some(export) = export_from_env(env)?
        {
            config.exporters.push(export);
        }
        config.validate()?;
        Ok(config)
    }
}

impl Overrides {
    /// Writes every given flag into `config`.
    pub fn apply(&self, config: &mut ShimConfig) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        set(&mut config.otlp_http_addr, &self.otlp_http_addr);
        set(&mut config.otlp_grpc_addr, &self.otlp_grpc_addr);
        set(&mut config.admin_addr, &self.admin_addr);
        set(
            &mut config.max_request_body_bytes,
            &self.max_request_body_bytes,
        );
        set(
            &mut config.max_concurrent_requests,
            &self.max_concurrent_requests,
        );
        set(&mut config.store.max_spans, &self.store_max_spans);
        set(&mut config.store.max_bytes, &self.store_max_bytes);
        set(&mut config.store.max_age_secs, &self.store_max_age_secs);
        if let Some(dir) = &self.store_data_dir {
            config.store.data_dir = Some(dir.clone());
        }
        set(
            &mut config.store.while_forwarding,
            &self.store_while_forwarding,
        );
        set(&mut config.queue.max_spans, &self.queue_max_spans);
        set(&mut config.queue.max_bytes, &self.queue_max_bytes);
        set(&mut config.queue.full_policy, &self.queue_full_policy);
        set(&mut config.batch.max_spans, &self.batch_max_spans);
        set(&mut config.batch.max_bytes, &self.batch_max_bytes);
        set(&mut config.batch.timeout_ms, &self.batch_timeout_ms);
        set(&mut config.shutdown_timeout_ms, &self.shutdown_timeout_ms);
        if let Some(dir) = &self.spool_dir {
            config.spool.get_or_insert_with(SpoolConfig::default).dir = dir.clone();
        }
        if let Some(spool) = &mut config.spool {
            set(&mut spool.max_bytes, &self.spool_max_bytes);
            set(&mut spool.fsync, &self.spool_fsync);
        }
    }
}
