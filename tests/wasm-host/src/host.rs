//! The scripting API: one [`Host`] is one Envoy VM running the module, driven by the test.

use crate::abi::{Action, BufferType, LogLevel, MapType, Status};
use crate::callout::{CallOut, Reply, Scheduled};
use crate::headers::HeaderMap;
use crate::process::{MetricValue, Process};
use crate::state::{
    Delivery, GrpcCall, HostCall, LocalResponse, LogLine, State, Stream, Violation,
};
use crate::{HostError, HostOptions, Injection, proxy, wasi};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use wasmtime::{
    Engine, Instance, Linker, Memory, Module, Store, TypedFunc, WasmParams, WasmResults,
};

/// Answered call-outs kept for inspection; older ones are forgotten (their count is kept).
const ANSWERED_HISTORY: usize = 1_000;
/// Log lines quoted in an error.
const LOG_TAIL: usize = 8;

/// An HTTP stream opened with [`Host::open_stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

/// A gRPC answer scripted by the test.
#[derive(Clone, Debug, Default)]
pub struct GrpcReply {
    /// Initial metadata (skipped when empty).
    pub initial_metadata: Vec<(String, Vec<u8>)>,
    /// Messages, each delivered with `proxy_on_grpc_receive`.
    pub messages: Vec<Vec<u8>>,
    /// Trailing metadata (skipped when empty).
    pub trailing_metadata: Vec<(String, Vec<u8>)>,
    /// gRPC status code delivered with `proxy_on_grpc_close`.
    pub status: u32,
    /// Status message (`proxy_get_status`).
    pub message: String,
}

macro_rules! exports {
    ($($field:ident: $name:literal, $p:ty => $r:ty;)*) => {
        /// The module's callbacks (absent ones are skipped, as Envoy does).
        struct Exports {
            memory: Memory,
            $($field: Option<TypedFunc<$p, $r>>,)*
        }

        impl Exports {
            fn get(instance: &Instance, store: &mut Store<State>) -> Result<Self, HostError> {
                let memory = instance
                    .get_memory(&mut *store, "memory")
                    .ok_or_else(|| HostError::Abi("the module exports no `memory`".into()))?;
                Ok(Self {
                    memory,
                    $($field: match instance.get_func(&mut *store, $name) {
                        Some(f) => Some(f.typed(&*store).map_err(|e| {
                            HostError::Abi(format!("`{}` has the wrong signature: {e}", $name))
                        })?),
                        None => None,
                    },)*
                })
            }
        }
    };
}

exports! {
    initialize: "_initialize", () => ();
    allocate: "proxy_on_memory_allocate", i32 => i32;
    on_context_create: "proxy_on_context_create", (i32, i32) => ();
    on_vm_start: "proxy_on_vm_start", (i32, i32) => i32;
    on_configure: "proxy_on_configure", (i32, i32) => i32;
    on_tick: "proxy_on_tick", i32 => ();
    on_queue_ready: "proxy_on_queue_ready", (i32, i32) => ();
    on_request_headers: "proxy_on_request_headers", (i32, i32, i32) => i32;
    on_request_body: "proxy_on_request_body", (i32, i32, i32) => i32;
    on_request_trailers: "proxy_on_request_trailers", (i32, i32) => i32;
    on_response_headers: "proxy_on_response_headers", (i32, i32, i32) => i32;
    on_response_body: "proxy_on_response_body", (i32, i32, i32) => i32;
    on_response_trailers: "proxy_on_response_trailers", (i32, i32) => i32;
    on_log: "proxy_on_log", i32 => ();
    on_done: "proxy_on_done", i32 => i32;
    on_delete: "proxy_on_delete", i32 => ();
    on_http_call_response: "proxy_on_http_call_response", (i32, i32, i32, i32, i32) => ();
    on_grpc_receive_initial_metadata: "proxy_on_grpc_receive_initial_metadata", (i32, i32, i32) => ();
    on_grpc_receive: "proxy_on_grpc_receive", (i32, i32, i32) => ();
    on_grpc_receive_trailing_metadata: "proxy_on_grpc_receive_trailing_metadata", (i32, i32, i32) => ();
    on_grpc_close: "proxy_on_grpc_close", (i32, i32, i32) => ();
}

/// One VM running the module, with a strict, deterministic host around it.
pub struct Host {
    store: Store<State>,
    exports: Exports,
    last_context: u32,
    dead: Option<String>,
    fuel: BTreeMap<&'static str, (u64, u64)>,
    answered_forgotten: u64,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("root_id", &self.store.data().root_id)
            .field("streams", &self.store.data().streams.len())
            .field("dead", &self.dead)
            .finish()
    }
}

impl Host {
    /// Instantiates `module`, runs `_initialize`, creates the root context and calls
    /// `proxy_on_vm_start` and `proxy_on_configure`. A refused configuration is
    /// [`HostError::Refused`], with the module's log.
    pub fn start(module: &Module, options: HostOptions) -> Result<Self, HostError> {
        let mut host = Self::instantiate(module, options)?;
        host.configure()?;
        Ok(host)
    }

    /// Like [`Host::start`] up to `proxy_on_vm_start`; call [`Host::configure`] next.
    pub fn instantiate(module: &Module, options: HostOptions) -> Result<Self, HostError> {
        check_imports(module)?;
        let engine = module.engine();
        let linker = linker(engine).map_err(|e| HostError::Instantiate(e.to_string()))?;
        let process = options.process.clone().unwrap_or_default();
        let vm = process.with(|p| p.add_vm());
        let state = State {
            rng: StdRng::seed_from_u64(options.seed),
            now: options.start_unix_nanos,
            tolerated: Default::default(),
            options,
            process,
            vm,
            memory: None,
            allocate: None,
            root_id: 1,
            current: None,
            effective: None,
            configuring: false,
            streams: BTreeMap::new(),
            tick_period_ms: 0,
            next_tick: None,
            last_call_token: 0,
            calls: BTreeMap::new(),
            answered: Vec::new(),
            scheduled: Vec::new(),
            responder: None,
            delivery: Delivery::default(),
            last_grpc_call: 0,
            last_grpc_stream: 0,
            grpc: BTreeMap::new(),
            foreign: BTreeMap::new(),
            metric_ids: BTreeMap::new(),
            last_metric_id: [0; 3],
            logs: Vec::new(),
            logs_dropped: 0,
            injections: Vec::new(),
            violations: Vec::new(),
            recent: VecDeque::new(),
            call_counts: BTreeMap::new(),
            done_called: 0,
        };
        let mut store = Store::new(engine, state);
        store
            .set_fuel(u64::MAX)
            .map_err(|e| HostError::Instantiate(e.to_string()))?;
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| HostError::Instantiate(e.to_string()))?;
        if instance
            .get_func(&mut store, "proxy_abi_version_0_2_1")
            .is_none()
        {
            return Err(HostError::Abi(
                "the module does not export `proxy_abi_version_0_2_1`".into(),
            ));
        }
        let exports = Exports::get(&instance, &mut store)?;
        if exports.allocate.is_none() {
            return Err(HostError::Abi("no `proxy_on_memory_allocate`".into()));
        }
        store.data_mut().memory = Some(exports.memory);
        store.data_mut().allocate = exports.allocate.clone();
        let mut host = Self {
            store,
            exports,
            last_context: 1,
            dead: None,
            fuel: BTreeMap::new(),
            answered_forgotten: 0,
        };
        if let Some(f) = host.exports.initialize.clone() {
            host.call("_initialize", 0, &f, ())?;
        }
        let root = host.store.data().root_id;
        if let Some(f) = host.exports.on_context_create.clone() {
            host.call("proxy_on_context_create", root, &f, (root as i32, 0))?;
        }
        let vm_config_len = host
            .store
            .data()
            .options
            .vm_config
            .as_ref()
            .map_or(0, Vec::len);
        if let Some(f) = host.exports.on_vm_start.clone() {
            let ok = host.call(
                "proxy_on_vm_start",
                root,
                &f,
                (root as i32, vm_config_len as i32),
            )?;
            if ok == 0 {
                return Err(host.refused("proxy_on_vm_start"));
            }
        }
        Ok(host)
    }

    /// Calls `proxy_on_configure` with the configured plugin configuration.
    pub fn configure(&mut self) -> Result<(), HostError> {
        let Some(f) = self.exports.on_configure.clone() else {
            return Ok(());
        };
        let root = self.store.data().root_id;
        let len = self
            .store
            .data()
            .options
            .plugin_config
            .as_ref()
            .map_or(0, Vec::len);
        self.store.data_mut().configuring = true;
        let ok = self.call("proxy_on_configure", root, &f, (root as i32, len as i32));
        self.store.data_mut().configuring = false;
        if ok? == 0 {
            return Err(self.refused("proxy_on_configure"));
        }
        Ok(())
    }

    /// Delivers a new plugin configuration (Envoy does this on a config update).
    pub fn reconfigure(&mut self, plugin_config: impl Into<Vec<u8>>) -> Result<(), HostError> {
        self.store.data_mut().options.plugin_config = Some(plugin_config.into());
        self.configure()
    }

    fn refused(&self, callback: &'static str) -> HostError {
        HostError::Refused {
            callback,
            log: self.log_tail(usize::MAX),
        }
    }

    // === streams ===

    /// Creates an HTTP context (`proxy_on_context_create`).
    pub fn open_stream(&mut self) -> Result<StreamId, HostError> {
        self.last_context += 1;
        let id = self.last_context;
        self.store.data_mut().streams.insert(id, Stream::default());
        let root = self.store.data().root_id;
        if let Some(f) = self.exports.on_context_create.clone() {
            self.call("proxy_on_context_create", id, &f, (id as i32, root as i32))?;
        }
        Ok(StreamId(id))
    }

    /// Delivers the request headers (`proxy_on_request_headers`). Envoy keeps the map
    /// writable until the filter continues.
    pub fn request_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        stream: StreamId,
        headers: impl IntoIterator<Item = (K, V)>,
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        let headers = HeaderMap::from_pairs(headers);
        self.deliver_map(
            stream,
            MapType::RequestHeaders,
            headers,
            Some(end_of_stream),
        )
    }

    /// Delivers the response headers (`proxy_on_response_headers`).
    pub fn response_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        stream: StreamId,
        headers: impl IntoIterator<Item = (K, V)>,
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        let headers = HeaderMap::from_pairs(headers);
        self.deliver_map(
            stream,
            MapType::ResponseHeaders,
            headers,
            Some(end_of_stream),
        )
    }

    /// Delivers request trailers (`proxy_on_request_trailers`).
    pub fn request_trailers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        stream: StreamId,
        trailers: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Action, HostError> {
        let trailers = HeaderMap::from_pairs(trailers);
        self.deliver_map(stream, MapType::RequestTrailers, trailers, None)
    }

    /// Delivers response trailers (`proxy_on_response_trailers`).
    pub fn response_trailers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        stream: StreamId,
        trailers: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Action, HostError> {
        let trailers = HeaderMap::from_pairs(trailers);
        self.deliver_map(stream, MapType::ResponseTrailers, trailers, None)
    }

    /// Stores the map, makes it live, runs its callback (headers take `end_of_stream`,
    /// trailers do not) and keeps it live only if the filter paused.
    fn deliver_map(
        &mut self,
        stream: StreamId,
        map: MapType,
        headers: HeaderMap,
        end_of_stream: Option<bool>,
    ) -> Result<Action, HostError> {
        let n = headers.len() as i32;
        let s = self.stream_mut(stream)?;
        *s.map_mut(map) = headers;
        s.live.insert(map);
        let (id, e) = (stream.0 as i32, &self.exports);
        let code = match map {
            MapType::RequestHeaders | MapType::ResponseHeaders => {
                let (name, f) = if map == MapType::RequestHeaders {
                    ("proxy_on_request_headers", e.on_request_headers.clone())
                } else {
                    ("proxy_on_response_headers", e.on_response_headers.clone())
                };
                let eos = i32::from(end_of_stream.unwrap_or(true));
                f.map(|f| self.call(name, stream.0, &f, (id, n, eos)))
                    .transpose()?
            }
            _ => {
                let (name, f) = if map == MapType::RequestTrailers {
                    ("proxy_on_request_trailers", e.on_request_trailers.clone())
                } else {
                    ("proxy_on_response_trailers", e.on_response_trailers.clone())
                };
                f.map(|f| self.call(name, stream.0, &f, (id, n)))
                    .transpose()?
            }
        };
        let action = code.map_or(Action::Continue, Action::from_abi);
        let s = self.stream_mut(stream)?;
        if action == Action::Continue {
            s.live.remove(&map);
        } else if matches!(map, MapType::RequestHeaders | MapType::RequestTrailers) {
            s.request_paused = true;
        } else {
            s.response_paused = true;
        }
        Ok(action)
    }

    /// Delivers a request body chunk (`proxy_on_request_body`); the body so far is buffered.
    pub fn request_body(
        &mut self,
        stream: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.deliver_body(stream, BufferType::HttpRequestBody, chunk, end_of_stream)
    }

    /// Delivers a response body chunk (`proxy_on_response_body`).
    pub fn response_body(
        &mut self,
        stream: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        self.deliver_body(stream, BufferType::HttpResponseBody, chunk, end_of_stream)
    }

    fn deliver_body(
        &mut self,
        stream: StreamId,
        kind: BufferType,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HostError> {
        let (name, f) = if kind == BufferType::HttpRequestBody {
            (
                "proxy_on_request_body",
                self.exports.on_request_body.clone(),
            )
        } else {
            (
                "proxy_on_response_body",
                self.exports.on_response_body.clone(),
            )
        };
        let s = self.stream_mut(stream)?;
        let body = if kind == BufferType::HttpRequestBody {
            &mut s.request_body
        } else {
            &mut s.response_body
        };
        body.extend_from_slice(chunk);
        let len = body.len() as i32;
        let Some(f) = f else {
            return Ok(Action::Continue);
        };
        s.body_live = Some(kind);
        let result = self.call(
            name,
            stream.0,
            &f,
            (stream.0 as i32, len, i32::from(end_of_stream)),
        );
        self.stream_mut(stream)?.body_live = None;
        Ok(Action::from_abi(result?))
    }

    /// Ends the stream as Envoy's HTTP connection manager does: `proxy_on_log` (access-log
    /// phase: maps read-only), then `proxy_on_done` and `proxy_on_delete`. The stream is gone
    /// afterwards: read what the filter wrote before.
    pub fn end_stream(&mut self, stream: StreamId) -> Result<(), HostError> {
        self.stream_mut(stream)?.access_log = true;
        if let Some(f) = self.exports.on_log.clone() {
            self.call("proxy_on_log", stream.0, &f, stream.0 as i32)?;
        }
        self.stream_mut(stream)?.access_log = false;
        if let Some(f) = self.exports.on_done.clone() {
            self.call("proxy_on_done", stream.0, &f, stream.0 as i32)?;
        }
        if let Some(f) = self.exports.on_delete.clone() {
            self.call("proxy_on_delete", stream.0, &f, stream.0 as i32)?;
        }
        self.store.data_mut().streams.remove(&stream.0);
        Ok(())
    }

    /// One whole request: headers (end of stream), a response with `status`, then the end of
    /// the stream. Returns the request headers as the filter left them for the upstream.
    pub fn request<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        headers: impl IntoIterator<Item = (K, V)>,
        status: u16,
    ) -> Result<HeaderMap, HostError> {
        let stream = self.open_stream()?;
        self.request_headers(stream, headers, true)?;
        let upstream = self.upstream_request_headers(stream)?.clone();
        self.response_headers(stream, [(":status", status.to_string())], true)?;
        self.end_stream(stream)?;
        Ok(upstream)
    }

    /// The request headers as the filter left them (what the upstream receives).
    pub fn upstream_request_headers(&self, stream: StreamId) -> Result<&HeaderMap, HostError> {
        Ok(&self.stream_ref(stream)?.request_headers)
    }

    /// The response headers as the filter left them (what the client receives).
    pub fn downstream_response_headers(&self, stream: StreamId) -> Result<&HeaderMap, HostError> {
        Ok(&self.stream_ref(stream)?.response_headers)
    }

    /// The body the upstream receives so far.
    pub fn upstream_request_body(&self, stream: StreamId) -> Result<&[u8], HostError> {
        Ok(&self.stream_ref(stream)?.request_body)
    }

    /// A value the filter stored with `set_property` on this stream (Envoy filter state
    /// `wasm.<name>`).
    pub fn filter_state(&self, stream: StreamId, name: &str) -> Result<Option<&[u8]>, HostError> {
        Ok(self
            .stream_ref(stream)?
            .filter_state
            .get(name.as_bytes())
            .map(Vec::as_slice))
    }

    /// The local response the filter sent on this stream, if any.
    pub fn local_response(&self, stream: StreamId) -> Result<Option<&LocalResponse>, HostError> {
        Ok(self.stream_ref(stream)?.local_response.as_ref())
    }

    /// Streams the filter resumed (`proxy_continue_stream`) and closed (`proxy_close_stream`).
    pub fn stream_controls(
        &self,
        stream: StreamId,
    ) -> Result<(Vec<crate::abi::StreamType>, Vec<crate::abi::StreamType>), HostError> {
        let s = self.stream_ref(stream)?;
        Ok((s.continued.clone(), s.closed.clone()))
    }

    /// Sets a property for this stream only (path segments as `get_property` sends them).
    pub fn set_stream_property(
        &mut self,
        stream: StreamId,
        path: &[&str],
        value: impl Into<Vec<u8>>,
    ) -> Result<(), HostError> {
        self.stream_mut(stream)?
            .properties
            .insert(path.join("\0").into_bytes(), value.into());
        Ok(())
    }

    fn stream_ref(&self, stream: StreamId) -> Result<&Stream, HostError> {
        self.store
            .data()
            .streams
            .get(&stream.0)
            .ok_or(HostError::UnknownStream(stream.0))
    }

    fn stream_mut(&mut self, stream: StreamId) -> Result<&mut Stream, HostError> {
        self.store
            .data_mut()
            .streams
            .get_mut(&stream.0)
            .ok_or(HostError::UnknownStream(stream.0))
    }

    // === time ===

    /// The host clock, in ns since the Unix epoch.
    pub fn now_unix_nanos(&self) -> u64 {
        self.store.data().now
    }

    /// Moves the clock forward by `by`, firing in time order every tick, scripted reply and
    /// call-out timeout that falls due (at equal times: replies, then timeouts, then the tick).
    pub fn advance(&mut self, by: Duration) -> Result<(), HostError> {
        let target = self.store.data().now + u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        while let Some((at, event)) = self.next_event(target) {
            self.store.data_mut().now = at;
            match event {
                Event::Reply(index) => {
                    let scheduled = self.store.data_mut().scheduled.remove(index);
                    if self.store.data().calls.contains_key(&scheduled.token) {
                        self.reply(scheduled.token, scheduled.reply)?;
                    }
                }
                Event::Timeout(token) => self.reply(token, Reply::Timeout)?,
                Event::Tick => {
                    let state = self.store.data_mut();
                    state.next_tick = Some(at + u64::from(state.tick_period_ms) * 1_000_000);
                    self.tick()?;
                }
            }
        }
        self.store.data_mut().now = target;
        Ok(())
    }

    fn next_event(&self, target: u64) -> Option<(u64, Event)> {
        let state = self.store.data();
        let reply = state
            .scheduled
            .iter()
            .enumerate()
            .filter(|(_, s)| s.reply != Reply::Never)
            .min_by_key(|(_, s)| (s.at, s.token))
            .map(|(i, s)| (s.at, 0, Event::Reply(i)));
        let timeout = state
            .calls
            .values()
            .filter_map(|c| {
                Some((
                    c.dispatched_at + u64::try_from(c.timeout?.as_nanos()).ok()?,
                    c.token,
                ))
            })
            .min()
            .map(|(at, token)| (at, 1, Event::Timeout(token)));
        let tick = state.next_tick.map(|at| (at, 2, Event::Tick));
        [reply, timeout, tick]
            .into_iter()
            .flatten()
            .filter(|(at, _, _)| *at <= target)
            .min_by_key(|(at, order, _)| (*at, *order))
            .map(|(at, _, event)| (at, event))
    }

    /// Calls `proxy_on_tick` on the root context now.
    pub fn tick(&mut self) -> Result<(), HostError> {
        let root = self.store.data().root_id;
        match self.exports.on_tick.clone() {
            Some(f) => self.call("proxy_on_tick", root, &f, root as i32),
            None => Ok(()),
        }
    }

    /// The tick period the module set, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        let ms = self.store.data().tick_period_ms;
        (ms > 0).then(|| Duration::from_millis(ms.into()))
    }

    // === call-outs ===

    /// Call-outs dispatched and not answered yet, by token.
    pub fn pending_calls(&self) -> Vec<CallOut> {
        self.store.data().calls.values().cloned().collect()
    }

    /// The most recent answered call-outs (up to 1,000) with their replies.
    pub fn answered_calls(&self) -> &[(CallOut, Reply)] {
        &self.store.data().answered
    }

    /// Answers call-out `token` now (`proxy_on_http_call_response` on the root context).
    pub fn reply(&mut self, token: u32, reply: Reply) -> Result<(), HostError> {
        if reply == Reply::Never {
            return Ok(());
        }
        let call = self
            .store
            .data_mut()
            .calls
            .remove(&token)
            .ok_or(HostError::UnknownToken(token))?;
        let delivered = reply.materialize();
        let sizes = delivered
            .as_ref()
            .map_or((0, 0, 0), |(h, b, t)| (h.len(), b.len(), t.len()));
        let state = self.store.data_mut();
        state.delivery.grpc_status = delivered
            .is_none()
            .then(|| (Status::BrokenConnection.code() as u32, b"reset".to_vec()));
        state.delivery.call_response = delivered;
        if state.answered.len() == ANSWERED_HISTORY {
            state.answered.remove(0);
            self.answered_forgotten += 1;
        }
        let state = self.store.data_mut();
        state.answered.push((call, reply));
        let root = state.root_id;
        let result = match self.exports.on_http_call_response.clone() {
            Some(f) => self.call(
                "proxy_on_http_call_response",
                root,
                &f,
                (
                    root as i32,
                    token as i32,
                    sizes.0 as i32,
                    sizes.1 as i32,
                    sizes.2 as i32,
                ),
            ),
            None => Ok(()),
        };
        self.store.data_mut().delivery = Delivery::default();
        result
    }

    /// Answers call-out `token` after `delay` of host time (see [`Host::advance`]). A call with
    /// a timeout shorter than the delay times out first, as in Envoy.
    pub fn reply_after(
        &mut self,
        token: u32,
        delay: Duration,
        reply: Reply,
    ) -> Result<(), HostError> {
        if !self.store.data().calls.contains_key(&token) {
            return Err(HostError::UnknownToken(token));
        }
        let state = self.store.data_mut();
        let at = state.now + u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        state.scheduled.push(Scheduled { at, token, reply });
        Ok(())
    }

    /// Answers every future call-out with what `responder` decides (reply and delay).
    pub fn auto_reply(&mut self, responder: impl FnMut(&CallOut) -> (Duration, Reply) + 'static) {
        self.store.data_mut().responder = Some(Box::new(responder));
    }

    /// gRPC calls and streams the module opened.
    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        self.store.data().grpc.values().cloned().collect()
    }

    /// Answers gRPC call or stream `token` on the root context: initial metadata, messages,
    /// trailing metadata, then close with the status.
    pub fn grpc_reply(&mut self, token: u32, reply: GrpcReply) -> Result<(), HostError> {
        if !self.store.data().grpc.contains_key(&token) {
            return Err(HostError::UnknownToken(token));
        }
        let root = self.store.data().root_id as i32;
        let t = token as i32;
        if !reply.initial_metadata.is_empty() {
            let map = HeaderMap::from_pairs(reply.initial_metadata.iter().map(|(k, v)| (k, v)));
            let n = map.len() as i32;
            self.store.data_mut().delivery.grpc_initial = Some(map);
            if let Some(f) = self.exports.on_grpc_receive_initial_metadata.clone() {
                self.call(
                    "proxy_on_grpc_receive_initial_metadata",
                    root as u32,
                    &f,
                    (root, t, n),
                )?;
            }
        }
        for message in reply.messages {
            let n = message.len() as i32;
            self.store.data_mut().delivery.grpc_message = Some(message);
            if let Some(f) = self.exports.on_grpc_receive.clone() {
                self.call("proxy_on_grpc_receive", root as u32, &f, (root, t, n))?;
            }
        }
        if !reply.trailing_metadata.is_empty() {
            let map = HeaderMap::from_pairs(reply.trailing_metadata.iter().map(|(k, v)| (k, v)));
            let n = map.len() as i32;
            self.store.data_mut().delivery.grpc_trailing = Some(map);
            if let Some(f) = self.exports.on_grpc_receive_trailing_metadata.clone() {
                self.call(
                    "proxy_on_grpc_receive_trailing_metadata",
                    root as u32,
                    &f,
                    (root, t, n),
                )?;
            }
        }
        self.store.data_mut().delivery.grpc_status =
            Some((reply.status, reply.message.into_bytes()));
        if let Some(f) = self.exports.on_grpc_close.clone() {
            self.call(
                "proxy_on_grpc_close",
                root as u32,
                &f,
                (root, t, reply.status as i32),
            )?;
        }
        let state = self.store.data_mut();
        state.delivery = Delivery::default();
        if let Some(call) = state.grpc.get_mut(&token) {
            call.closed = true;
        }
        Ok(())
    }

    // === failures and strictness ===

    /// Makes a host call answer a status of the test's choosing (see [`Injection`]).
    pub fn inject(&mut self, injection: Injection) -> Result<(), HostError> {
        let name = injection.host_call();
        if !proxy::IMPORTS.contains(&name) && !wasi::IMPORTS.contains(&name) {
            return Err(HostError::Unimplemented(vec![format!(
                "cannot inject into unknown host call `{name}`"
            )]));
        }
        self.store.data_mut().injections.push(injection);
        Ok(())
    }

    /// Stops counting this host call's violations (for tests that provoke them on purpose).
    pub fn tolerate(&mut self, host_call: &'static str) {
        self.store.data_mut().tolerated.insert(host_call);
    }

    /// Every violation recorded so far.
    pub fn violations(&self) -> &[Violation] {
        &self.store.data().violations
    }

    /// The last host calls, oldest first.
    pub fn recent_host_calls(&self) -> Vec<HostCall> {
        self.store.data().recent.iter().cloned().collect()
    }

    /// How many times the module made this host call.
    pub fn host_call_count(&self, name: &str) -> u64 {
        self.store
            .data()
            .call_counts
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Registers a foreign function for `proxy_call_foreign_function`.
    pub fn foreign_function(
        &mut self,
        name: &str,
        f: impl FnMut(&[u8]) -> Result<Vec<u8>, Status> + 'static,
    ) {
        self.store
            .data_mut()
            .foreign
            .insert(name.to_owned(), Box::new(f));
    }

    /// Sets a VM-wide property (e.g. `["node", "metadata", "CLUSTER_ID"]`).
    pub fn set_property(&mut self, path: &[&str], value: impl Into<Vec<u8>>) {
        self.store
            .data_mut()
            .options
            .properties
            .insert(path.join("\0").into_bytes(), value.into());
    }

    // === observation ===

    /// The process this VM belongs to (shared data, queues, metrics).
    pub fn process(&self) -> Process {
        self.store.data().process.clone()
    }

    /// A metric's value (counter total, gauge value, histogram sample count).
    pub fn metric(&self, name: &str) -> Option<i128> {
        self.store.data().process.metric(name).map(|v| v.value())
    }

    /// Every metric of the process.
    pub fn metrics(&self) -> BTreeMap<String, MetricValue> {
        self.store.data().process.metrics()
    }

    /// Every log line so far (stdout/stderr included).
    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    /// Log lines at `level` or above containing `needle`.
    pub fn logs_containing(&self, level: LogLevel, needle: &str) -> Vec<&LogLine> {
        self.logs()
            .iter()
            .filter(|l| l.level >= level && l.message.contains(needle))
            .collect()
    }

    /// Size of the module's linear memory, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.exports.memory.data_size(&self.store)
    }

    /// Fuel (≈ wasm instructions) used per callback name: `(calls, fuel)`.
    pub fn fuel_by_callback(&self) -> &BTreeMap<&'static str, (u64, u64)> {
        &self.fuel
    }

    /// Total fuel used so far.
    pub fn fuel_used(&self) -> u64 {
        self.fuel.values().map(|(_, fuel)| fuel).sum()
    }

    /// Runs the `proxy_on_queue_ready` calls owed to this VM (enqueues from other VMs).
    pub fn run_pending(&mut self) -> Result<(), HostError> {
        self.deliver_queue_ready()
    }

    // === the call envelope ===

    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        callback: &'static str,
        context: u32,
        f: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, HostError> {
        if let Some(why) = &self.dead {
            return Err(HostError::Dead(why.clone()));
        }
        let limit = self.store.data().options.fuel_per_callback;
        let state = self.store.data_mut();
        state.current = Some(context);
        state.effective = None;
        let violations_before = state.violations.len();
        self.store
            .set_fuel(limit)
            .map_err(|e| HostError::Instantiate(e.to_string()))?;
        let result = f.call(&mut self.store, params);
        let used = limit - self.store.get_fuel().unwrap_or(0);
        let entry = self.fuel.entry(callback).or_default();
        entry.0 += 1;
        entry.1 += used;
        let state = self.store.data_mut();
        state.current = None;
        state.effective = None;
        let value = match result {
            Ok(value) => value,
            Err(error) => {
                let message = error
                    .chain()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": ");
                let trap = HostError::Trap {
                    callback,
                    context,
                    message,
                    recent: self
                        .store
                        .data()
                        .recent
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    log: self.log_tail(LOG_TAIL),
                };
                self.dead = Some(trap.to_string());
                return Err(trap);
            }
        };
        let state = self.store.data();
        if state.options.strict && state.violations.len() > violations_before {
            return Err(HostError::Violations {
                callback,
                violations: state
                    .violations
                    .get(violations_before..)
                    .unwrap_or_default()
                    .to_vec(),
            });
        }
        self.deliver_queue_ready()?;
        Ok(value)
    }

    fn deliver_queue_ready(&mut self) -> Result<(), HostError> {
        let vm = self.store.data().vm;
        loop {
            let next = self.store.data().process.with(|p| {
                let at = p.ready.iter().position(|(owner, _, _)| *owner == vm)?;
                Some(p.ready.remove(at))
            });
            let Some((_, context, token)) = next else {
                return Ok(());
            };
            if let Some(f) = self.exports.on_queue_ready.clone() {
                self.call(
                    "proxy_on_queue_ready",
                    context,
                    &f,
                    (context as i32, token as i32),
                )?;
            }
        }
    }

    fn log_tail(&self, n: usize) -> Vec<String> {
        let logs = &self.store.data().logs;
        logs.iter()
            .skip(logs.len().saturating_sub(n))
            .map(|l| format!("[{:?}] {}", l.level, l.message))
            .collect()
    }
}

enum Event {
    Reply(usize),
    Timeout(u32),
    Tick,
}

fn linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    proxy::link(&mut linker)?;
    wasi::link(&mut linker)?;
    Ok(linker)
}

/// Fails with every import the host does not implement, by name.
fn check_imports(module: &Module) -> Result<(), HostError> {
    let missing: Vec<String> = module
        .imports()
        .filter(|i| {
            let known = match i.module() {
                "env" => proxy::IMPORTS.contains(&i.name()),
                "wasi_snapshot_preview1" => wasi::IMPORTS.contains(&i.name()),
                _ => false,
            };
            !known
        })
        .map(|i| format!("{}.{}", i.module(), i.name()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(HostError::Unimplemented(missing))
    }
}
