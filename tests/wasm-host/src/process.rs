//! What Envoy shares between all the VMs of one process: shared data (with compare-and-swap),
//! shared queues and the metrics' values. Several [`Host`](crate::Host)s started on one
//! [`Process`] behave like the worker VMs of one Envoy.
//!
//! Semantics follow `proxy-wasm-cpp-host` `src/shared_data.cc` and `src/shared_queue.cc`, and
//! Envoy `source/extensions/common/wasm/context.cc` for metrics.

use crate::abi::{MetricKind, Status};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

/// A handle on the shared state of one simulated Envoy process. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Process {
    inner: Rc<RefCell<ProcessState>>,
}

#[derive(Debug, Default)]
pub(crate) struct ProcessState {
    /// `(vm_id, key) → (value, cas)`: Envoy scopes shared data by `vm_id`.
    shared_data: BTreeMap<(String, Vec<u8>), (Vec<u8>, u32)>,
    last_cas: u32,
    queue_tokens: BTreeMap<(String, Vec<u8>), u32>,
    queues: BTreeMap<u32, Queue>,
    last_queue_token: u32,
    /// `proxy_on_queue_ready` calls owed to VMs: `(vm, context, queue token)`.
    pub(crate) ready: Vec<(usize, u32, u32)>,
    metrics: BTreeMap<String, MetricValue>,
    vms: usize,
}

#[derive(Debug)]
struct Queue {
    owner_vm: usize,
    context_id: u32,
    items: VecDeque<Vec<u8>>,
}

/// The value of one metric, summed over every VM of the process (as Envoy's stats are).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value. Negative values are kept (Envoy's `u64` gauge would wrap) and reported
    /// as a violation when they happen.
    Gauge(i64),
    /// A histogram's recorded samples.
    Histogram(Vec<u64>),
}

impl MetricValue {
    fn empty(kind: MetricKind) -> Self {
        match kind {
            MetricKind::Counter => Self::Counter(0),
            MetricKind::Gauge => Self::Gauge(0),
            MetricKind::Histogram => Self::Histogram(Vec::new()),
        }
    }

    /// Counter total or gauge value; a histogram's sample count.
    pub fn value(&self) -> i128 {
        match self {
            Self::Counter(v) => i128::from(*v),
            Self::Gauge(v) => i128::from(*v),
            Self::Histogram(samples) => samples.len() as i128,
        }
    }
}

impl Process {
    /// A fresh process with no VMs.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut ProcessState) -> R) -> R {
        f(&mut self.inner.borrow_mut())
    }

    /// A metric's value by the name the module defined, e.g. `meshtrace_spans_started_total`
    /// (Envoy shows it as `wasmcustom.<name>` in `/stats`).
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.inner.borrow().metrics.get(name).cloned()
    }

    /// Every metric defined so far, by name.
    pub fn metrics(&self) -> BTreeMap<String, MetricValue> {
        self.inner.borrow().metrics.clone()
    }

    /// The shared-data keys written under `vm_id`, in order.
    pub fn shared_data_keys(&self, vm_id: &str) -> Vec<Vec<u8>> {
        let inner = self.inner.borrow();
        let keys = inner.shared_data.keys().filter(|(vm, _)| vm == vm_id);
        keys.map(|(_, key)| key.clone()).collect()
    }

    /// The shared data under `vm_id`/`key`, with its cas.
    pub fn shared_data(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.inner
            .borrow()
            .shared_data
            .get(&(vm_id.to_owned(), key.to_vec()))
            .cloned()
    }
}

impl ProcessState {
    pub(crate) fn add_vm(&mut self) -> usize {
        self.vms += 1;
        self.vms - 1
    }

    pub(crate) fn get_shared_data(
        &self,
        vm_id: &str,
        key: &[u8],
    ) -> Result<(Vec<u8>, u32), Status> {
        self.shared_data
            .get(&(vm_id.to_owned(), key.to_vec()))
            .cloned()
            .ok_or(Status::NotFound)
    }

    /// `cas == 0` always writes; otherwise the key's current cas must match (a missing key is
    /// written whatever the cas, as in Envoy).
    pub(crate) fn set_shared_data(
        &mut self,
        vm_id: &str,
        key: &[u8],
        value: &[u8],
        cas: u32,
    ) -> Result<(), Status> {
        let slot = (vm_id.to_owned(), key.to_vec());
        if let Some((_, current)) = self.shared_data.get(&slot)
            && cas != 0
            && cas != *current
        {
            return Err(Status::CasMismatch);
        }
        self.last_cas = self.last_cas.checked_add(1).unwrap_or(1);
        self.shared_data
            .insert(slot, (value.to_vec(), self.last_cas));
        Ok(())
    }

    /// Registers (or re-registers, keeping its items) the queue `vm_id`/`name`, owned by
    /// `context_id` of VM `vm`.
    pub(crate) fn register_queue(
        &mut self,
        vm_id: &str,
        name: &[u8],
        vm: usize,
        context_id: u32,
    ) -> u32 {
        let key = (vm_id.to_owned(), name.to_vec());
        let token = match self.queue_tokens.get(&key) {
            Some(token) => *token,
            None => {
                self.last_queue_token += 1;
                self.queue_tokens.insert(key, self.last_queue_token);
                self.last_queue_token
            }
        };
        let queue = self.queues.entry(token).or_insert_with(|| Queue {
            owner_vm: vm,
            context_id,
            items: VecDeque::new(),
        });
        queue.owner_vm = vm;
        queue.context_id = context_id;
        token
    }

    pub(crate) fn resolve_queue(&self, vm_id: &str, name: &[u8]) -> Result<u32, Status> {
        self.queue_tokens
            .get(&(vm_id.to_owned(), name.to_vec()))
            .copied()
            .ok_or(Status::NotFound)
    }

    pub(crate) fn enqueue(&mut self, token: u32, value: &[u8]) -> Result<(), Status> {
        let queue = self.queues.get_mut(&token).ok_or(Status::NotFound)?;
        queue.items.push_back(value.to_vec());
        let ready = (queue.owner_vm, queue.context_id, token);
        self.ready.push(ready);
        Ok(())
    }

    pub(crate) fn dequeue(&mut self, token: u32) -> Result<Vec<u8>, Status> {
        let queue = self.queues.get_mut(&token).ok_or(Status::NotFound)?;
        queue.items.pop_front().ok_or(Status::Empty)
    }

    pub(crate) fn define_metric(&mut self, kind: MetricKind, name: &str) {
        self.metrics
            .entry(name.to_owned())
            .or_insert_with(|| MetricValue::empty(kind));
    }

    /// Envoy: a counter goes up by a positive offset only (`BadArgument` otherwise); a gauge
    /// goes up or down; a histogram cannot be incremented (`BadArgument`).
    pub(crate) fn increment(&mut self, name: &str, offset: i64) -> Result<Option<String>, Status> {
        let value = self.metrics.get_mut(name).ok_or(Status::NotFound)?;
        match value {
            MetricValue::Counter(total) if offset > 0 => {
                *total = total.saturating_add(offset.unsigned_abs());
                Ok(None)
            }
            MetricValue::Gauge(gauge) => {
                *gauge = gauge.saturating_add(offset);
                Ok((*gauge < 0).then(|| {
                    format!(
                        "gauge `{name}` went below zero ({gauge}); Envoy's u64 gauge would wrap"
                    )
                }))
            }
            _ => Err(Status::BadArgument),
        }
    }

    /// Envoy: a counter adds the value, a gauge is set to it, a histogram records it.
    pub(crate) fn record(&mut self, name: &str, value: u64) -> Result<(), Status> {
        match self.metrics.get_mut(name).ok_or(Status::NotFound)? {
            MetricValue::Counter(total) => *total = total.saturating_add(value),
            MetricValue::Gauge(gauge) => *gauge = i64::try_from(value).unwrap_or(i64::MAX),
            MetricValue::Histogram(samples) => samples.push(value),
        }
        Ok(())
    }

    /// Envoy answers counters and gauges; a histogram is `BadArgument`.
    pub(crate) fn get_metric(&self, name: &str) -> Result<u64, Status> {
        match self.metrics.get(name).ok_or(Status::NotFound)? {
            MetricValue::Counter(total) => Ok(*total),
            MetricValue::Gauge(gauge) => Ok(*gauge as u64),
            MetricValue::Histogram(_) => Err(Status::BadArgument),
        }
    }
}
