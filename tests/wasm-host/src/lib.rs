//! A strict, deterministic proxy-wasm host on wasmtime, for testing the real filter `.wasm`
//! without Envoy.
//!
//! It implements proxy-wasm ABI 0.2.1 (every `env.proxy_*` function Envoy offers) and the WASI
//! preview1 calls Envoy offers, answering them the way Envoy 1.40 does where that matters: header
//! maps only in their phase (`BadArgument` otherwise), the access-log phase in `on_log`, call-outs
//! answered on the root context with Envoy's own 503/504 local replies or a reset with no
//! response, counters that refuse non-positive increments, shared data with compare-and-swap
//! scoped by `vm_id`, queues that notify their owner after the VM call. Where it deliberately
//! differs from Envoy is listed in `docs/wasm-host.md`.
//!
//! ```text
//!  test ──▶ Host::request_headers/advance/reply ──▶ proxy_on_* (wasmtime, fuel-metered)
//!                                                       │ env.proxy_* / wasi_* calls
//!  test ◀── headers, calls (OTLP), metrics, logs ◀── State (per VM) + Process (shared)
//! ```
//!
//! Strict by default: an import the host lacks fails [`Host::start`] naming it; a host call that
//! real Envoy would reject as a caller bug (a counter incremented by ≤ 0, a call-out without
//! `:authority`, a pointer outside memory, a gauge below zero, ...) fails the callback with
//! [`HostError::Violations`] naming the call; a trap fails it with [`HostError::Trap`], which
//! quotes the last host calls and log lines (the SDK's panic message included), and the VM stays
//! dead afterwards, as Envoy's does.
//!
//! Deterministic: randomness from a seed, time from a clock only the test moves, call-outs
//! answered only when and how the test says.

pub mod abi;
pub mod callout;
mod guest;
pub mod headers;
mod host;
pub mod process;
mod proxy;
mod state;
mod wasi;

pub use abi::{Action, LogLevel, Status};
pub use callout::{CallOut, Reply};
pub use headers::HeaderMap;
pub use host::{GrpcReply, Host, StreamId};
pub use process::{MetricValue, Process};
pub use state::{GrpcCall, HostCall, LocalResponse, LogLine, Violation};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use wasmtime::{Config, Engine, Module};

/// 2026-01-01T00:00:00Z, the default start of the host clock.
pub const DEFAULT_START_UNIX_NANOS: u64 = 1_767_225_600_000_000_000;
/// Default fuel for one callback: far above what a request needs, low enough that a runaway
/// loop fails the test instead of hanging it.
pub const DEFAULT_FUEL_PER_CALLBACK: u64 = 2_000_000_000;
/// The cluster the filter exports to by default.
pub const DEFAULT_CLUSTER: &str = "meshtrace_shim";

/// How to start a VM: its configuration, identity, environment and the host's knobs.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Plugin `configuration` bytes (`None`: Envoy's "not set").
    pub plugin_config: Option<Vec<u8>>,
    /// `vm_config.configuration` bytes.
    pub vm_config: Option<Vec<u8>>,
    /// Plugin `root_id`.
    pub root_id: String,
    /// `vm_config.vm_id` (scopes shared data and queues).
    pub vm_id: String,
    /// Plugin `name`.
    pub plugin_name: String,
    /// WASI environment (`vm_config.environment_variables`); empty by default, as in Envoy.
    pub env: Vec<(String, String)>,
    /// VM-wide properties, by `\0`-joined path.
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Clusters `proxy_http_call` may target (others answer `BadArgument`, as Envoy does).
    pub clusters: Vec<String>,
    /// Seed of WASI `random_get`.
    pub seed: u64,
    /// Start of the host clock.
    pub start_unix_nanos: u64,
    /// Level answered by `proxy_get_log_level`.
    pub log_level: LogLevel,
    /// Fuel limit of one callback.
    pub fuel_per_callback: u64,
    /// Whether violations fail the callback (default true).
    pub strict: bool,
    /// Shared process (shared data, queues, metrics); a new one when `None`.
    pub process: Option<Process>,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            plugin_config: None,
            vm_config: None,
            root_id: String::new(),
            vm_id: String::new(),
            plugin_name: "meshtrace".to_owned(),
            env: Vec::new(),
            properties: BTreeMap::new(),
            clusters: vec![DEFAULT_CLUSTER.to_owned()],
            seed: 1,
            start_unix_nanos: DEFAULT_START_UNIX_NANOS,
            log_level: LogLevel::Info,
            fuel_per_callback: DEFAULT_FUEL_PER_CALLBACK,
            strict: true,
            process: None,
        }
    }
}

impl HostOptions {
    /// Sets the plugin configuration.
    pub fn config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = Some(config.into());
        self
    }

    /// Sets the random seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Runs the VM in `process`, sharing its data, queues and metrics with other VMs.
    pub fn in_process(mut self, process: &Process) -> Self {
        self.process = Some(process.clone());
        self
    }
}

/// A host call made to answer a status of the test's choosing instead of doing its work.
#[derive(Clone, Debug)]
pub struct Injection {
    host_call: &'static str,
    key: Option<Vec<u8>>,
    /// The status answered.
    pub status: Status,
    remaining: Option<u32>,
}

impl Injection {
    /// Every call of `host_call` (an ABI name, e.g. `proxy_get_header_map_value`) answers
    /// `status`. WASI calls answer `EIO` instead.
    pub fn new(host_call: &'static str, status: Status) -> Self {
        Self {
            host_call,
            key: None,
            status,
            remaining: None,
        }
    }

    /// Only calls whose main argument (header name, property path, shared-data key, cluster,
    /// metric name) is `key`.
    pub fn when_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(key.as_ref().to_vec());
        self
    }

    /// Only the next `n` matching calls.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    /// The host call it applies to.
    pub fn host_call(&self) -> &'static str {
        self.host_call
    }

    pub(crate) fn matches(&self, host_call: &str, key: &[u8]) -> bool {
        self.host_call == host_call
            && self.key.as_deref().is_none_or(|k| k == key)
            && self.remaining != Some(0)
    }

    pub(crate) fn consume(&mut self) {
        if let Some(n) = &mut self.remaining {
            *n = n.saturating_sub(1);
        }
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// Why the host failed a test step.
#[derive(Clone, Debug)]
pub enum HostError {
    /// A build artifact is missing; the message says which command makes it.
    Missing(String),
    /// wasmtime could not compile the module.
    Compile(String),
    /// Imports (or an injection target) the host does not implement, by name.
    Unimplemented(Vec<String>),
    /// The module does not follow the ABI (missing export, wrong signature).
    Abi(String),
    /// wasmtime could not instantiate the module.
    Instantiate(String),
    /// The module trapped (a panic is an `unreachable` trap with panic=abort).
    Trap {
        /// Callback that trapped.
        callback: &'static str,
        /// Context it ran for.
        context: u32,
        /// wasmtime's message (trap code and wasm backtrace).
        message: String,
        /// The last host calls before the trap, with their answers.
        recent: Vec<String>,
        /// The last log lines (the filter's panic hook logs the panic message).
        log: Vec<String>,
    },
    /// The module made host calls that real Envoy rejects or that reveal a bug.
    Violations {
        /// Callback during which they happened.
        callback: &'static str,
        /// What happened.
        violations: Vec<Violation>,
    },
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false.
    Refused {
        /// Which one.
        callback: &'static str,
        /// The module's log until then (the filter logs why).
        log: Vec<String>,
    },
    /// The VM trapped earlier and is dead (Envoy keeps failing it too).
    Dead(String),
    /// No call-out with this token is pending.
    UnknownToken(u32),
    /// No stream with this id is open.
    UnknownStream(u32),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(what) => write!(f, "{what}"),
            Self::Compile(e) => write!(f, "wasmtime could not compile the module: {e}"),
            Self::Unimplemented(names) => {
                write!(f, "unimplemented host functions: {}", names.join(", "))
            }
            Self::Abi(e) => write!(f, "ABI mismatch: {e}"),
            Self::Instantiate(e) => write!(f, "instantiation failed: {e}"),
            Self::Trap {
                callback,
                context,
                message,
                recent,
                log,
            } => {
                write!(f, "{callback} (context {context}) trapped: {message}")?;
                write!(f, "\n  last host calls:")?;
                for call in recent {
                    write!(f, "\n    {call}")?;
                }
                write!(f, "\n  last log lines:")?;
                for line in log {
                    write!(f, "\n    {line}")?;
                }
                Ok(())
            }
            Self::Violations {
                callback,
                violations,
            } => {
                write!(
                    f,
                    "during {callback}, host calls that real Envoy rejects or that reveal a bug:"
                )?;
                for v in violations {
                    write!(f, "\n  {v}")?;
                }
                Ok(())
            }
            Self::Refused { callback, log } => {
                write!(f, "{callback} returned false; log:")?;
                for line in log {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
            Self::Dead(why) => write!(f, "the VM is dead since an earlier trap: {why}"),
            Self::UnknownToken(token) => write!(f, "no pending call-out with token {token}"),
            Self::UnknownStream(id) => write!(f, "no open stream {id}"),
        }
    }
}

impl std::error::Error for HostError {}

/// The engine every module is compiled with: Cranelift, fuel metering on.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.consume_fuel(true);
        Engine::new(&config).unwrap_or_else(|e| panic!("wasmtime engine: {e}"))
    })
}

/// Compiles the module at `path` once per process (tests share it).
pub fn load(path: &Path) -> Result<Module, HostError> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(module) = cache.get(path) {
        return Ok(module.clone());
    }
    let bytes = std::fs::read(path).map_err(|e| {
        HostError::Missing(format!(
            "{}: {e}: run `make wasm` (builds the filter and the test fixtures)",
            path.display()
        ))
    })?;
    let module = Module::new(engine(), bytes).map_err(|e| HostError::Compile(e.to_string()))?;
    cache.insert(path.to_owned(), module.clone());
    Ok(module)
}

/// `target/wasm32-wasip1/release/<name>.wasm` of this workspace (or of `$CARGO_TARGET_DIR`).
pub fn artifact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target
        .join("wasm32-wasip1/release")
        .join(format!("{name}.wasm"))
}

/// The real filter, as `make wasm` builds it.
pub fn filter_module() -> Result<Module, HostError> {
    load(&artifact("meshtrace_filter"))
}

/// The empty pass-through filter (`tests/fixtures/passthrough`), the cost baseline.
pub fn passthrough_module() -> Result<Module, HostError> {
    load(&artifact("meshtrace_fixture_passthrough"))
}

/// The probe filter (`tests/fixtures/probe`) that exercises host calls on request.
pub fn probe_module() -> Result<Module, HostError> {
    load(&artifact("meshtrace_fixture_probe"))
}
