//! The host's state for one VM (the wasmtime `Store` data): contexts and their streams, the
//! clock, the call-outs, logs, injected failures and recorded violations.

use crate::abi::{LogLevel, MapType, MetricKind, Status};
use crate::callout::{CallOut, Responder, Scheduled};
use crate::headers::HeaderMap;
use crate::process::Process;
use crate::{HostOptions, Injection};
use rand::rngs::StdRng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use wasmtime::{Memory, TypedFunc};

/// At most this many log lines are kept; later ones are counted.
const MAX_LOG_LINES: usize = 100_000;
/// Host calls remembered for error messages.
const RECENT_CALLS: usize = 12;

/// One line the module logged (`proxy_log`, or WASI `fd_write` on stdout/stderr).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Level (stdout is `Info` and stderr `Error`, as in Envoy).
    pub level: LogLevel,
    /// The message, lossily decoded.
    pub message: String,
    /// Context that logged it.
    pub context_id: u32,
}

/// A host call the module made and what the host answered, for diagnostics.
#[derive(Clone, Debug)]
pub struct HostCall {
    /// ABI name, e.g. `proxy_get_header_map_value`.
    pub name: &'static str,
    /// Main argument (header name, property path, key, cluster), truncated.
    pub key: Vec<u8>,
    /// Status answered.
    pub status: Status,
    /// Whether the status was injected by the test.
    pub injected: bool,
}

impl fmt::Display for HostCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if !self.key.is_empty() {
            write!(f, "({:?})", String::from_utf8_lossy(&self.key))?;
        }
        write!(f, " → {:?}", self.status)?;
        if self.injected {
            f.write_str(" (injected)")?;
        }
        Ok(())
    }
}

/// Something the module did that real Envoy would reject or that signals a bug, with the host
/// call that showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// ABI name of the host call.
    pub host_call: &'static str,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.host_call, self.message)
    }
}

/// A local response the module sent (`proxy_send_local_response`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u32,
    /// Response code details.
    pub details: Vec<u8>,
    /// Body.
    pub body: Vec<u8>,
    /// Additional headers.
    pub headers: HeaderMap,
    /// gRPC status (-1: none).
    pub grpc_status: i32,
}

/// One HTTP stream's host side.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub request_headers: HeaderMap,
    pub request_trailers: HeaderMap,
    pub response_headers: HeaderMap,
    pub response_trailers: HeaderMap,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    /// Which maps Envoy still holds a pointer to (set during their callback, kept while the
    /// stream is paused there, dropped on `Continue`).
    pub live: BTreeSet<MapType>,
    pub request_paused: bool,
    pub response_paused: bool,
    /// Inside `proxy_on_log`: Envoy reads the access-log copies of the maps (read-only).
    pub access_log: bool,
    pub body_live: Option<crate::abi::BufferType>,
    /// `set_property` values (Envoy filter state `wasm.<name>`).
    pub filter_state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Properties the test set for this stream (`source.address`, ...).
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
    pub local_response: Option<LocalResponse>,
    pub closed: Vec<crate::abi::StreamType>,
    pub continued: Vec<crate::abi::StreamType>,
}

impl Stream {
    /// The stream's header or trailer map of this type (`map` must be a stream map).
    pub fn map_mut(&mut self, map: MapType) -> &mut HeaderMap {
        match map {
            MapType::RequestHeaders => &mut self.request_headers,
            MapType::RequestTrailers => &mut self.request_trailers,
            MapType::ResponseHeaders => &mut self.response_headers,
            _ => &mut self.response_trailers,
        }
    }
}

/// What is being delivered to the module right now, for the maps and buffers that only exist
/// during one callback.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pub call_response: Option<(HeaderMap, Vec<u8>, HeaderMap)>,
    pub grpc_initial: Option<HeaderMap>,
    pub grpc_trailing: Option<HeaderMap>,
    pub grpc_message: Option<Vec<u8>>,
    pub grpc_status: Option<(u32, Vec<u8>)>,
}

/// A gRPC call or stream the module opened.
#[derive(Clone, Debug)]
pub struct GrpcCall {
    /// Token (odd for calls, even for streams, as in Envoy).
    pub token: u32,
    /// Serialized `GrpcService` or a cluster name.
    pub service: Vec<u8>,
    /// Service name.
    pub service_name: String,
    /// Method name.
    pub method: String,
    /// Initial metadata.
    pub metadata: HeaderMap,
    /// Messages sent (the request of a unary call; each `proxy_grpc_send` of a stream).
    pub messages: Vec<Vec<u8>>,
    /// Whether the module closed or cancelled it.
    pub closed: bool,
}

/// A foreign function the test registers (`proxy_call_foreign_function`).
pub type ForeignFunction = Box<dyn FnMut(&[u8]) -> Result<Vec<u8>, Status>>;

/// The wasmtime `Store` data of one VM.
pub(crate) struct State {
    pub options: HostOptions,
    pub process: Process,
    pub vm: usize,
    pub now: u64,
    pub rng: StdRng,
    pub memory: Option<Memory>,
    pub allocate: Option<TypedFunc<i32, i32>>,
    pub root_id: u32,
    /// Context of the callback running now, and the one `proxy_set_effective_context` chose.
    pub current: Option<u32>,
    pub effective: Option<u32>,
    pub configuring: bool,
    pub streams: BTreeMap<u32, Stream>,
    pub tick_period_ms: u32,
    pub next_tick: Option<u64>,
    pub last_call_token: u32,
    pub calls: BTreeMap<u32, CallOut>,
    pub answered: Vec<(CallOut, crate::callout::Reply)>,
    pub scheduled: Vec<Scheduled>,
    pub responder: Option<Responder>,
    pub delivery: Delivery,
    pub last_grpc_call: u32,
    pub last_grpc_stream: u32,
    pub grpc: BTreeMap<u32, GrpcCall>,
    pub foreign: BTreeMap<String, ForeignFunction>,
    pub metric_ids: BTreeMap<u32, (MetricKind, String)>,
    pub last_metric_id: [u32; 3],
    pub logs: Vec<LogLine>,
    pub logs_dropped: u64,
    pub injections: Vec<Injection>,
    pub tolerated: BTreeSet<&'static str>,
    pub violations: Vec<Violation>,
    pub recent: VecDeque<HostCall>,
    pub call_counts: BTreeMap<&'static str, u64>,
    pub done_called: u32,
}

impl State {
    /// The context host calls act on: the effective one if set, else the current one.
    pub fn context(&self) -> u32 {
        self.effective.or(self.current).unwrap_or(self.root_id)
    }

    pub fn stream(&mut self) -> Option<&mut Stream> {
        let id = self.context();
        self.streams.get_mut(&id)
    }

    pub fn log(&mut self, level: LogLevel, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        let context_id = self.context();
        self.logs.push(LogLine {
            level,
            message,
            context_id,
        });
    }

    /// Records a violation unless the test tolerates this host call's.
    pub fn violation(&mut self, host_call: &'static str, message: impl Into<String>) {
        if !self.tolerated.contains(host_call) {
            self.violations.push(Violation {
                host_call,
                message: message.into(),
            });
        }
    }

    /// The status a test injected for this call and key, consuming one use of it.
    pub fn injected(&mut self, host_call: &'static str, key: &[u8]) -> Option<Status> {
        let hit = self
            .injections
            .iter_mut()
            .find(|i| i.matches(host_call, key))?;
        hit.consume();
        let status = hit.status;
        self.injections.retain(|i| !i.exhausted());
        Some(status)
    }

    pub fn remember(&mut self, call: HostCall) {
        *self.call_counts.entry(call.name).or_default() += 1;
        if self.recent.len() == RECENT_CALLS {
            self.recent.pop_front();
        }
        self.recent.push_back(call);
    }

    /// A live context id (root or stream).
    pub fn has_context(&self, id: u32) -> bool {
        id == self.root_id || self.streams.contains_key(&id)
    }
}
