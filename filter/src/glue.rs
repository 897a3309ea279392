//! The proxy-wasm boundary (wasm32 only): Envoy's callbacks in, host calls out, and nothing
//! else. Every decision is made by the pure modules; this file reads header bytes, calls them
//! and writes back what they return.
//!
//! Host calls go through `proxy_wasm::hostcalls`, which return `Result`, never through the
//! SDK's `String` helpers, which panic on non-UTF-8 header values (see
//! `../shared/anchors/envoy-wasm-notes.md`). A failed host call degrades to "no context" or a
//! counted failure; it never fails the request. (proxy-wasm 0.2.5's `hostcalls` still panic on
//! a status they do not expect, e.g. `get_map_bytes` on anything but `Ok`; Envoy answers `Ok`
//! for the request and response maps in the callbacks that use them, and header names in the
//! map are UTF-8 because Envoy's codecs only accept token characters there.)
//!
//! ```text
//!  TracingHttp (one per stream)           TracingRoot (one per VM, owns the export)
//!  on_http_request_headers: extract,      on_configure: parse config, build the sampler,
//!    start span, sample, write the          the span content (tags read once) and the
//!    injected formats (or strip them all);  resource, create the shared rate-limit
//!    publish the ids as filter state;       buckets, start the tick
//!    sampled: request summary, route, tags
//!  on_http_response_headers: status,      on_tick: flush batches → dispatch_http_call
//!    traceresponse, response header tags  on_http_call_response: settle the batch
//!  on_log: end attributes, finish ──push──▶ Vm.buffer ◀──┘
//! ```
//!
//! Envoy attributes are read only when the configuration asks for them, and only for sampled
//! spans: the end-of-stream attributes of the conventions (`source.address`,
//! `request.protocol`, opt-in sizes) and the attribute tags, in `on_log`; node attributes once
//! per configuration. (`hostcalls::get_property` panics on a status other than `Ok`,
//! `NotFound`, `SerializationFailure` and `InternalFailure`; Envoy's `getProperty` returns
//! only those.)

use crate::config::FilterConfig;
use crate::content::Content;
use crate::correlation;
use crate::export::answer::{self, Response};
use crate::export::batch::{BatchTemplate, span_field};
use crate::export::{DropReason, Flush, Level, Push, Settled, SpanBuffer};
use crate::host::{Environment, Properties};
use crate::ids::RandomIdGenerator;
use crate::log_throttle::LogThrottle;
use crate::metrics::{Kind, Metric};
use crate::propagation::{HeaderWrite, w3c};
use crate::request::{self, Handled, parse_status};
use crate::sampling::{Sampler, SharedStore, StoreError};
use crate::span::HttpSpan;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action, BufferType, Bytes, ContextType, LogLevel, MapType, MetricType, Status,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

/// One log line about failing exports (and one about dropped spans) per this interval, at most.
const EXPORT_FAILURE_LOG_INTERVAL_NANOS: u64 = 10_000_000_000;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // The lints forbid panics; should one happen anyway, say where before the VM aborts.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("panic: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(TracingRoot { context_id, vm: None })
    });
}}

/// State shared by a root context and its HTTP contexts (one plugin configuration in one VM,
/// on one thread).
struct Vm {
    config: FilterConfig,
    content: Content,
    buffer: SpanBuffer,
    metrics: Metrics,
    sampler: Sampler,
    ids: RandomIdGenerator,
    /// The root context's own shared queue: an HTTP context that fills a batch enqueues to it,
    /// so that the root context flushes at once (only the root context gets the answers to
    /// its calls: see `docs/export.md`).
    wake_queue: Option<u32>,
    wake_pending: bool,
    /// Gauge values last published to the host.
    published: Level,
    /// `on_done` came: everything left is sent, then `proxy_done` is called once.
    drain: Drain,
    export_failures: LogThrottle,
    drops: LogThrottle,
}

/// Where the root context is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    /// Serving.
    No,
    /// `on_done` answered "not yet": sending what is left.
    Draining,
    /// `proxy_done` was called.
    Done,
}

type SharedVm = Rc<RefCell<Vm>>;

/// A root context: configuration and export. Envoy makes one per plugin configuration and VM;
/// a new configuration gets a new root context while the old one finishes (`on_done`).
struct TracingRoot {
    context_id: u32,
    vm: Option<SharedVm>,
}

/// One HTTP stream's context: its span, from request headers to the end of the stream.
struct TracingHttp {
    vm: Option<SharedVm>,
    span: Option<HttpSpan>,
}

/// Metric ids returned by `define_metric`; a metric the host refused is skipped.
#[derive(Default)]
struct Metrics {
    ids: BTreeMap<Metric, u32>,
}

/// Proxy-wasm shared data: the rate-limit buckets shared by every VM of the process.
struct HostSharedData;

/// Envoy attributes through `get_property`.
struct HostProperties;

/// The VM's environment (WASI `environ_get`, what `vm_config.environment_variables` exposes).
struct HostEnvironment;

// === impl TracingRoot ===

impl Context for TracingRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(vm) = &self.vm else { return };
        // When the call fails after its response began (a reset, or a response over the buffer
        // limit), Envoy calls back with no headers, and reading the map then answers
        // BadArgument, on which the SDK panics: read only what is there.
        let header = |name: &str| {
            (num_headers > 0)
                .then(|| hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name))
                .and_then(|read| read.ok().flatten())
        };
        let status = header(":status");
        let retry_after = header("retry-after");
        let body = (body_size > 0 && answer::needs_body(status.as_deref()))
            .then(|| {
                let len = body_size.min(answer::MAX_BODY_READ);
                hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, len)
            })
            .and_then(|read| read.ok().flatten());
        let now = now_unix_nanos();
        let response = Response {
            status: status.as_deref(),
            retry_after: retry_after.as_deref(),
            body: body.as_deref(),
        };
        let answer = answer::classify(&response, answer::system_time(now));
        let mut vm = vm.borrow_mut();
        if let Some(settled) = vm.buffer.settle(token, answer, now) {
            vm.count_settled(
                &settled,
                &String::from_utf8_lossy(status.as_deref().unwrap_or(b"none")),
            );
        }
        // A call slot is free: send what fills a batch or, when draining, everything left at
        // once (a batch just kept included: its one retry).
        vm.flush_unless_draining(Flush::Full);
    }

    /// The plugin configuration is going away (a new one replaced it, or the listener was
    /// removed): send everything left, and tell the host to wait until the answers came.
    fn on_done(&mut self) -> bool {
        let Some(vm) = &self.vm else { return true };
        let mut vm = vm.borrow_mut();
        vm.flush(Flush::Drain);
        let level = vm.buffer.level();
        log::info!(
            "root context {} done: {} spans buffered, {} in flight{}",
            self.context_id,
            level.buffered_spans,
            level.in_flight_spans,
            if vm.buffer.is_empty() {
                ""
            } else {
                "; draining"
            }
        );
        if vm.buffer.is_empty() {
            vm.drain = Drain::Done;
            return true;
        }
        // The answers (or the ticks, for kept batches) finish the drain: `finish_drain`.
        vm.drain = Drain::Draining;
        false
    }
}

impl RootContext for TracingRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten();
        let config = match FilterConfig::parse(bytes.as_deref()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        if hostcalls::set_tick_period(config.exporter.flush_interval()).is_err() {
            log::error!("the host refused the tick period; spans could never be exported");
            return false;
        }
        let sampler = match config.sampling.build() {
            Ok(sampler) => sampler,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let mut content = match config.content() {
            Ok(content) => content,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let static_tags = content.resolve_static(&HostEnvironment, &HostProperties);
        let resource = config.resource.build(
            config.service_name.as_deref(),
            &HostEnvironment,
            &HostProperties,
            &content.limits,
        );
        sampler.ensure_buckets(&HostSharedData, now_unix_nanos());
        let rules = sampler.rules().len();
        let template = BatchTemplate::new(&resource);
        log::info!("root context {} configured", self.context_id);
        match &self.vm {
            // The same root context configured again: what is buffered and in flight stays,
            // and leaves now under the new settings.
            Some(vm) => {
                let mut vm = vm.borrow_mut();
                vm.buffer.reconfigure(&config.exporter, template);
                vm.content = content;
                vm.sampler = sampler;
                vm.metrics.define_sampling_rules(rules);
                vm.config = config;
                vm.flush(Flush::All);
            }
            None => {
                let mut metrics = Metrics::define(Metric::all());
                metrics.define_sampling_rules(rules);
                self.vm = Some(Rc::new(RefCell::new(Vm {
                    buffer: SpanBuffer::new(&config.exporter, template),
                    config,
                    content,
                    metrics,
                    sampler,
                    ids: RandomIdGenerator,
                    wake_queue: register_wake_queue(self.context_id),
                    wake_pending: false,
                    published: Level::default(),
                    drain: Drain::No,
                    export_failures: LogThrottle::new(EXPORT_FAILURE_LOG_INTERVAL_NANOS),
                    drops: LogThrottle::new(EXPORT_FAILURE_LOG_INTERVAL_NANOS),
                })));
            }
        }
        if static_tags.invalid > 0 {
            if let Some(vm) = &self.vm {
                vm.borrow()
                    .metrics
                    .add(Metric::TagValuesInvalid, static_tags.invalid.into());
            }
            log::warn!(
                "{} tags read once (literal, environment, node) did not convert to their type",
                static_tags.invalid
            );
        }
        true
    }

    fn on_tick(&mut self) {
        if let Some(vm) = &self.vm {
            vm.borrow_mut().flush_unless_draining(Flush::All);
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let Some(vm) = &self.vm else { return };
        let mut vm = vm.borrow_mut();
        if vm.wake_queue != Some(queue_id) {
            return;
        }
        while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue_id) {}
        vm.wake_pending = false;
        vm.flush(Flush::Full);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TracingHttp {
            vm: self.vm.clone(),
            span: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

// === impl Vm ===

impl Vm {
    /// Sends the batches `flush` releases, up to the cap on calls in flight; publishes the
    /// gauges; completes a drain that has nothing left.
    fn flush(&mut self, flush: Flush) {
        let now = now_unix_nanos();
        while let Some(batch) = self.buffer.next_batch(flush, now) {
            let exporter = &self.config.exporter;
            let headers = vec![
                (":method", "POST"),
                (":path", exporter.path.as_str()),
                (":authority", exporter.authority.as_str()),
                ("content-type", "application/x-protobuf"),
            ];
            let sent = hostcalls::dispatch_http_call(
                &exporter.cluster,
                headers,
                Some(&batch.body),
                vec![],
                exporter.timeout(),
            );
            match sent {
                Ok(token) => self.buffer.dispatched(token, batch),
                Err(status) => {
                    let settled = self.buffer.dispatch_failed(batch, now);
                    self.count_settled(&settled, &format!("{status:?} at dispatch"));
                    // The kept batch waits for the next tick; so does everything else.
                    break;
                }
            }
        }
        self.publish_levels();
        if self.drain == Drain::Draining {
            self.finish_drain();
        }
    }

    /// Flushes `normal`ly, or everything when draining.
    fn flush_unless_draining(&mut self, normal: Flush) {
        let flush = if self.drain == Drain::No {
            normal
        } else {
            Flush::Drain
        };
        self.flush(flush);
    }

    /// A finished span: counted, and buffered when sampled. Wakes the root context when a
    /// batch is full.
    fn finish(&mut self, mut span: HttpSpan) {
        self.metrics.add(Metric::SpansActive, -1);
        if !span.context.flags.is_sampled() {
            self.metrics.add(Metric::SpansNotSampled, 1);
            return;
        }
        self.metrics.add(Metric::SpansSampled, 1);
        self.content.on_end(&mut span, &HostProperties);
        let finished = self.content.finish(span);
        for (metric, count) in [
            (Metric::SpanAttributesDropped, finished.dropped),
            (Metric::SpanAttributeValuesTruncated, finished.truncated),
            (Metric::TagValuesInvalid, finished.invalid),
        ] {
            if count > 0 {
                self.metrics.add(metric, count.into());
            }
        }
        match self.buffer.push(span_field(&finished.span)) {
            Push::Buffered => {
                self.publish_levels();
                if self.buffer.batch_ready() {
                    self.wake();
                }
            }
            Push::Dropped(reason) => self.count_dropped(reason, 1),
        }
    }

    /// Asks the root context to flush, through its queue (once until it has).
    fn wake(&mut self) {
        if self.wake_pending {
            return;
        }
        if let Some(queue) = self.wake_queue {
            self.wake_pending = hostcalls::enqueue_shared_queue(queue, Some(b"flush")).is_ok();
        }
    }

    /// Counts how a batch ended, and logs failures (rate-limited).
    fn count_settled(&mut self, settled: &Settled, answer: &str) {
        match settled.failure {
            None => self.metrics.add(Metric::ExportCallsOk, 1),
            Some(cause) => {
                self.metrics.add(Metric::ExportCallsFailed, 1);
                self.metrics.add(Metric::ExportCallsFailedBy(cause), 1);
            }
        }
        self.metrics
            .add(Metric::SpansExported, count(settled.exported));
        if settled.kept {
            self.metrics.add(Metric::ExportBatchesRetried, 1);
        }
        if let Some((reason, spans)) = settled.dropped {
            self.count_dropped(reason, spans);
        }
        let now = now_unix_nanos();
        if let Some(cause) = settled.failure
            && let Some(suppressed) = self.export_failures.allow(now)
        {
            let fate = if settled.kept {
                "kept for one retry"
            } else {
                "dropped"
            };
            log::warn!(
                "export call failed ({}, answer {answer}); its spans were {fate} \
                 ({suppressed} similar failures not logged)",
                cause.name()
            );
        }
        if !settled.message.is_empty()
            && let Some(suppressed) = self.export_failures.allow(now)
        {
            log::warn!(
                "the collector rejected part of a batch: {} ({suppressed} similar not logged)",
                settled.message
            );
        }
    }

    fn count_dropped(&mut self, reason: DropReason, spans: usize) {
        self.metrics.add(Metric::SpansDropped(reason), count(spans));
        if let Some(suppressed) = self.drops.allow(now_unix_nanos()) {
            log::warn!(
                "{spans} spans dropped ({}); {suppressed} earlier drops not logged",
                reason.name()
            );
        }
    }

    /// Brings the gauges to the buffer's level (deltas, so that the VMs' values add up).
    fn publish_levels(&mut self) {
        let level = self.buffer.level();
        let old = std::mem::replace(&mut self.published, level);
        for (metric, new, old) in [
            (
                Metric::ExportBufferedSpans,
                level.buffered_spans,
                old.buffered_spans,
            ),
            (
                Metric::ExportBufferedBytes,
                level.buffered_bytes,
                old.buffered_bytes,
            ),
            (
                Metric::ExportInFlightSpans,
                level.in_flight_spans,
                old.in_flight_spans,
            ),
            (
                Metric::ExportInFlightBytes,
                level.in_flight_bytes,
                old.in_flight_bytes,
            ),
            (
                Metric::ExportInFlightCalls,
                level.in_flight_calls,
                old.in_flight_calls,
            ),
        ] {
            if new != old {
                self.metrics.add(metric, count(new) - count(old));
            }
        }
    }

    /// Ends a drain (`on_done` answered false) once nothing is left: `proxy_done`, once.
    /// Only called outside `on_done` (the host knows of the pending drain only after it).
    fn finish_drain(&mut self) {
        if self.drain == Drain::Draining && self.buffer.is_empty() {
            self.drain = Drain::Done;
            log::info!("drained: every span settled");
            let _ = hostcalls::done();
        }
    }

    /// Counts what extraction found, the sampling decision and how the writes went.
    fn count_request(&self, handled: &Handled, failed: usize) {
        let extracted = &handled.extracted;
        if let Some(format) = extracted.format.filter(|_| extracted.parent.is_some()) {
            self.metrics.add(Metric::ContextExtracted, 1);
            self.metrics.add(Metric::ContextExtractedBy(format), 1);
        }
        if !extracted.malformed.is_empty() {
            self.metrics.add(Metric::ContextMalformed, 1);
        }
        for finding in &extracted.malformed {
            self.metrics
                .add(Metric::ContextMalformedBy(finding.part, finding.reason), 1);
        }
        if handled.stop {
            self.metrics.add(Metric::PropagationStopped, 1);
        }
        for (metric, delta) in Metric::for_decision(&handled.decision) {
            self.metrics.add(metric, delta);
        }
        if failed > 0 {
            self.metrics.add(
                Metric::HeaderWriteFailed,
                i64::try_from(failed).unwrap_or(i64::MAX),
            );
        }
        self.metrics.add(Metric::SpansStarted, 1);
        self.metrics.add(Metric::SpansActive, 1);
    }
}

// === impl TracingHttp ===

impl Context for TracingHttp {}

impl HttpContext for TracingHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = &self.vm else {
            return Action::Continue;
        };
        let mut guard = vm.borrow_mut();
        // Through a plain `&mut Vm`, the config and the id generator borrow separately.
        let vm = &mut *guard;
        // One host call for the whole map: the formats need repeated lines (`tracestate`,
        // `baggage`) and a prefix scan (`uberctx-*`), which single-value reads cannot give.
        // Names are UTF-8 (Envoy's codecs only accept token characters in names); values are
        // raw bytes. A failed call reads as "no headers": a new trace.
        let headers: Vec<(String, Bytes)> =
            hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let handled = request::handle(
            &headers,
            &vm.config.propagation,
            &vm.sampler,
            &HostSharedData,
            &mut vm.ids,
            now_unix_nanos(),
        );
        let failed = handled.writes.iter().filter(|w| apply(w).is_err()).count();
        vm.count_request(&handled, failed);
        if vm.config.correlation.filter_state {
            publish_correlation(&handled);
        }
        let mut span = handled.span;
        if span.context.flags.is_sampled() {
            vm.content
                .on_request(&mut span, &headers, &handled.extracted.baggage);
        }
        self.span = Some(span);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(span) = &mut self.span else {
            return Action::Continue;
        };
        let status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status");
        span.status_code = status.ok().flatten().as_deref().and_then(parse_status);
        let Some(vm) = &self.vm else {
            return Action::Continue;
        };
        let vm = vm.borrow();
        if span.context.flags.is_sampled() && vm.content.reads_response_headers() {
            let headers: Vec<(String, Bytes)> =
                hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
            vm.content.on_response(span, &headers);
        }
        let response = &vm.config.propagation.trace_response;
        if response.enabled {
            let value = w3c::format_traceparent(&span.context);
            let written = hostcalls::set_map_value_bytes(
                MapType::HttpResponseHeaders,
                &response.header,
                Some(value.as_bytes()),
            );
            if written.is_err() {
                vm.metrics.add(Metric::HeaderWriteFailed, 1);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(vm), Some(mut span)) = (&self.vm, self.span.take()) else {
            return;
        };
        span.end_unix_nanos = now_unix_nanos();
        vm.borrow_mut().finish(span);
    }
}

impl Drop for TracingHttp {
    /// A stream whose context goes away without `on_log` never finished its span: counted.
    fn drop(&mut self) {
        if let (Some(vm), Some(_)) = (&self.vm, self.span.take())
            && let Ok(mut vm) = vm.try_borrow_mut()
        {
            vm.metrics.add(Metric::SpansActive, -1);
            vm.count_dropped(DropReason::Unfinished, 1);
        }
    }
}

// === impl Metrics ===

impl Metrics {
    fn define(metrics: impl IntoIterator<Item = Metric>) -> Self {
        let mut defined = Self::default();
        defined.define_each(metrics);
        defined
    }

    fn define_each(&mut self, metrics: impl IntoIterator<Item = Metric>) {
        for metric in metrics {
            let kind = match metric.kind() {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            match hostcalls::define_metric(kind, &metric.name()) {
                Ok(id) => {
                    self.ids.insert(metric, id);
                }
                Err(status) => log::warn!("metric {} not defined: {status:?}", metric.name()),
            }
        }
    }

    /// (Re)defines the per-rule sampling counters for `rules` configured rules.
    fn define_sampling_rules(&mut self, rules: usize) {
        self.ids
            .retain(|metric, _| !matches!(metric, Metric::SamplingRule(..)));
        self.define_each(Metric::sampling_rules(rules));
    }

    /// Adds `delta` (Envoy refuses a counter increment of zero, so none is made).
    fn add(&self, metric: Metric, delta: i64) {
        if delta == 0 {
            return;
        }
        if let Some(&id) = self.ids.get(&metric) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }
}

// === impl HostSharedData ===

impl SharedStore for HostSharedData {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        hostcalls::get_shared_data(key).map_err(|_| StoreError::Unavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => StoreError::CasMismatch,
            _ => StoreError::Unavailable,
        })
    }
}

// === impl HostProperties ===

impl Properties for HostProperties {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }
}

// === impl HostEnvironment ===

impl Environment for HostEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Applies one header write to the upstream request.
fn apply(write: &HeaderWrite) -> Result<(), Status> {
    match write {
        HeaderWrite::Set(name, value) => hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            name,
            Some(value.as_bytes()),
        ),
        HeaderWrite::Remove(name) => {
            hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None)
        }
    }
}

/// Writes the span's ids as properties, which Envoy keeps as filter state
/// `wasm.meshtrace.*` on the stream for access logs and later filters (see
/// [`crate::correlation`]). Envoy answers `Ok` while the stream exists, which it does in the
/// request-headers callback (proxy-wasm 0.2.5 panics on any other status rather than return
/// it); should a later SDK return an error, the request goes on without that property.
fn publish_correlation(handled: &Handled) {
    for (path, value) in correlation::properties(handled) {
        if let Err(status) = hostcalls::set_property(vec![path], Some(value.as_bytes())) {
            log::debug!("property {path} not set: {status:?}");
        }
    }
}

/// The host clock in nanoseconds since the Unix epoch (0 if the host cannot tell).
fn now_unix_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Registers the root context's wake-up queue under a name no other VM or root context uses
/// (Envoy scopes queue names by `vm_id` only, and a second registration of a name takes the
/// queue over). `None` if the host refuses: full batches then wait for the tick.
fn register_wake_queue(context_id: u32) -> Option<u32> {
    let name = format!(
        "meshtrace.flush.{:016x}.{context_id}",
        rand::random::<u64>()
    );
    hostcalls::register_shared_queue(&name).ok()
}

/// A span count as a metric delta.
fn count(spans: usize) -> i64 {
    i64::try_from(spans).unwrap_or(i64::MAX)
}
