//! The proxy-wasm boundary (wasm32 only): Envoy's callbacks in, host calls out, and nothing
//! else. Every decision is made by the pure modules; this file reads header bytes, calls them
//! and writes back what they return.
//!
//! Host calls go through `proxy_wasm::hostcalls`, which return `Result`, never through the
//! SDK's `String` helpers, which panic on non-UTF-8 header values (see
//! `../shared/anchors/envoy-wasm-notes.md`). A failed host call degrades to "no context" or a
//! counted failure; it never fails the request.
//!
//! ```text
//!  TracingHttp (one per stream)           TracingRoot (one per VM, owns the export)
//!  on_http_request_headers: extract,      on_configure: parse config, start the tick
//!    start span, rewrite traceparent      on_tick: flush batches → dispatch_http_call
//!  on_http_response_headers: status       on_http_call_response: settle the batch
//!  on_log: end span ──push──▶ Vm.buffer ◀──────────┘
//! ```

use crate::config::FilterConfig;
use crate::export::{CallOutcome, Push, SpanBuffer, call_outcome};
use crate::ids::RandomIdGenerator;
use crate::log_throttle::LogThrottle;
use crate::metrics::{Kind, Metric};
use crate::propagation::w3c::TRACEPARENT;
use crate::request::{Extraction, parse_status, start_server_span};
use crate::span::{ServerSpan, SpanResource, encode_export_request};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

/// One log line about failing exports per this interval, at most.
const EXPORT_FAILURE_LOG_INTERVAL_NANOS: u64 = 10_000_000_000;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // The lints forbid panics; should one happen anyway, say where before the VM aborts.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TracingRoot::default()) });
}}

/// State shared by the root context and the HTTP contexts of one VM (one thread).
struct Vm {
    config: FilterConfig,
    resource: SpanResource,
    buffer: SpanBuffer,
    metrics: Metrics,
    ids: RandomIdGenerator,
    export_failures: LogThrottle,
}

type SharedVm = Rc<RefCell<Vm>>;

/// The VM's root context: configuration and export.
#[derive(Default)]
struct TracingRoot {
    vm: Option<SharedVm>,
}

/// One HTTP stream's context: its span, from request headers to the end of the stream.
struct TracingHttp {
    vm: Option<SharedVm>,
    span: Option<ServerSpan>,
}

/// Metric ids returned by `define_metric`; a metric the host refused is skipped.
#[derive(Default)]
struct Metrics {
    ids: BTreeMap<Metric, u32>,
}

// === impl TracingRoot ===

impl Context for TracingRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        let Some(vm) = &self.vm else { return };
        // When the call fails after its response began (a reset, or a response over the buffer
        // limit) Envoy calls back with no headers, and reading the map then answers BadArgument,
        // on which the SDK panics: read `:status` only when there are headers.
        let status = (num_headers > 0)
            .then(|| hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status"))
            .and_then(|read| read.ok().flatten());
        let outcome = call_outcome(status.as_deref());
        let mut vm = vm.borrow_mut();
        let Some(done) = vm.buffer.complete(token, outcome) else {
            return;
        };
        let spans = i64::try_from(done.spans).unwrap_or(i64::MAX);
        vm.metrics.add(Metric::SpansPending, -spans);
        match outcome {
            CallOutcome::Accepted => {
                vm.metrics.add(Metric::ExportCallsOk, 1);
                vm.metrics.add(Metric::SpansExported, spans);
            }
            CallOutcome::Failed => {
                vm.metrics.add(Metric::ExportCallsFailed, 1);
                vm.metrics.add(Metric::SpansDroppedExportFailed, spans);
                let status =
                    String::from_utf8_lossy(status.as_deref().unwrap_or(b"none")).into_owned();
                vm.log_export_failure(
                    &format!("export call answered :status {status}"),
                    done.spans,
                );
            }
        }
    }
}

impl RootContext for TracingRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
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
        let resource = SpanResource {
            service_name: config.service_name.clone(),
        };
        match &self.vm {
            // Reconfiguration keeps what is buffered and in flight.
            Some(vm) => {
                let mut vm = vm.borrow_mut();
                vm.buffer.reconfigure(&config.exporter);
                vm.resource = resource;
                vm.config = config;
            }
            None => {
                self.vm = Some(Rc::new(RefCell::new(Vm {
                    buffer: SpanBuffer::new(&config.exporter),
                    config,
                    resource,
                    metrics: Metrics::define(),
                    ids: RandomIdGenerator,
                    export_failures: LogThrottle::new(EXPORT_FAILURE_LOG_INTERVAL_NANOS),
                })));
            }
        }
        true
    }

    fn on_tick(&mut self) {
        if let Some(vm) = &self.vm {
            vm.borrow_mut().flush();
        }
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
    /// Sends every batch the buffer releases, up to the cap on calls in flight.
    fn flush(&mut self) {
        while let Some(batch) = self.buffer.next_batch() {
            let body = encode_export_request(&self.resource, &batch);
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
                Some(&body),
                vec![],
                exporter.timeout(),
            );
            match sent {
                Ok(token) => self.buffer.dispatched(token, batch.len()),
                Err(status) => {
                    let spans = i64::try_from(batch.len()).unwrap_or(i64::MAX);
                    self.metrics.add(Metric::SpansPending, -spans);
                    self.metrics.add(Metric::ExportCallsFailed, 1);
                    self.metrics.add(Metric::SpansDroppedExportFailed, spans);
                    let why = format!(
                        "dispatch to cluster `{}` refused: {status:?}",
                        exporter.cluster
                    );
                    self.log_export_failure(&why, batch.len());
                }
            }
        }
    }

    fn log_export_failure(&mut self, why: &str, spans: usize) {
        if let Some(suppressed) = self.export_failures.allow(now_unix_nanos()) {
            log::warn!("{why}; {spans} spans dropped ({suppressed} similar failures not logged)");
        }
    }
}

// === impl TracingHttp ===

impl Context for TracingHttp {}

impl HttpContext for TracingHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = &self.vm else {
            return Action::Continue;
        };
        let mut vm = vm.borrow_mut();
        let traceparent = request_header(TRACEPARENT);
        let mut started = start_server_span(traceparent.as_deref(), &mut vm.ids, now_unix_nanos());
        match started.extraction {
            Extraction::Missing => {}
            Extraction::Valid => vm.metrics.add(Metric::ContextExtracted, 1),
            Extraction::Malformed(_) => vm.metrics.add(Metric::ContextMalformed, 1),
        }
        let written = hostcalls::set_map_value_bytes(
            MapType::HttpRequestHeaders,
            TRACEPARENT,
            Some(started.traceparent.as_bytes()),
        );
        if written.is_err() {
            vm.metrics.add(Metric::HeaderWriteFailed, 1);
        }
        let method = request_header(":method").unwrap_or_default();
        let path = request_header(":path").unwrap_or_default();
        started.span.set_request(&method, &path);
        vm.metrics.add(Metric::SpansStarted, 1);
        self.span = Some(started.span);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some(span) = &mut self.span {
            let status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status");
            span.status_code = status.ok().flatten().as_deref().and_then(parse_status);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(vm), Some(mut span)) = (&self.vm, self.span.take()) else {
            return;
        };
        let mut vm = vm.borrow_mut();
        span.end_unix_nanos = now_unix_nanos();
        if !span.context.flags.is_sampled() {
            vm.metrics.add(Metric::SpansNotSampled, 1);
            return;
        }
        vm.metrics.add(Metric::SpansSampled, 1);
        match vm.buffer.push(span) {
            Push::Buffered => vm.metrics.add(Metric::SpansPending, 1),
            Push::Dropped => vm.metrics.add(Metric::SpansDroppedBufferFull, 1),
        }
    }
}

// === impl Metrics ===

impl Metrics {
    fn define() -> Self {
        let mut ids = BTreeMap::new();
        for metric in Metric::ALL {
            let kind = match metric.kind() {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            match hostcalls::define_metric(kind, metric.name()) {
                Ok(id) => {
                    ids.insert(metric, id);
                }
                Err(status) => log::warn!("metric {} not defined: {status:?}", metric.name()),
            }
        }
        Self { ids }
    }

    fn add(&self, metric: Metric, delta: i64) {
        if let Some(&id) = self.ids.get(&metric) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }
}

/// A request header's raw bytes; a failed host call reads as "absent".
fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

/// The host clock in nanoseconds since the Unix epoch (0 if the host cannot tell).
fn now_unix_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
