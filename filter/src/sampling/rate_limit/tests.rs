//! Token buckets under a controlled clock, and the CAS loop against an in-memory store that can
//! inject conflicts and failures.

use super::*;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SECOND: u64 = 1_000_000_000;

/// An in-memory [`SharedStore`] with proxy-wasm's CAS semantics: every write bumps the
/// version; a write with a stale version fails.
#[derive(Default)]
pub(crate) struct MemoryStore {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Before each of the next N writes, another VM takes a token first.
    pub(crate) interleave: Cell<u32>,
    pub(crate) broken: Cell<bool>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        if self.broken.get() {
            return Err(StoreError::Unavailable);
        }
        Ok(match self.data.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if self.interleave.get() > 0 {
            self.interleave.set(self.interleave.get() - 1);
            let mut data = self.data.borrow_mut();
            let (old, version) = data.entry(key.to_owned()).or_insert((value.to_vec(), 0));
            let state = BucketState::decode(old).unwrap();
            *old = BucketState {
                micro_tokens: state.micro_tokens.saturating_sub(MICROS_PER_TOKEN),
                ..state
            }
            .encode()
            .to_vec();
            *version += 1;
        }
        let mut data = self.data.borrow_mut();
        let current = data.get(key).map(|(_, v)| *v);
        if cas.is_some() && cas != current {
            return Err(StoreError::CasMismatch);
        }
        let version = current.unwrap_or(0) + 1;
        data.insert(key.to_owned(), (value.to_vec(), version));
        Ok(())
    }
}

fn take(store: &MemoryStore, config: BucketConfig, now: u64) -> Admission {
    try_acquire(store, "k", config, now).admission
}

fn admitted(store: &MemoryStore, config: BucketConfig, now: u64, tries: usize) -> usize {
    (0..tries)
        .filter(|_| take(store, config, now) == Admission::Admitted)
        .count()
}

#[test]
fn burst_then_refill_at_the_configured_rate() {
    let store = MemoryStore::default();
    let config = BucketConfig::new(2.0, 3);
    assert_eq!(admitted(&store, config, 0, 10), 3, "a fresh bucket is full");
    assert_eq!(take(&store, config, SECOND / 4), Admission::Exhausted);
    assert_eq!(
        take(&store, config, SECOND / 2),
        Admission::Admitted,
        "1 token per 0.5 s"
    );
    assert_eq!(take(&store, config, SECOND / 2 + 1), Admission::Exhausted);
    assert_eq!(
        admitted(&store, config, 100 * SECOND, 10),
        3,
        "never above the burst"
    );
}

#[test]
fn fractional_rates_and_a_clock_going_backwards() {
    let store = MemoryStore::default();
    let config = BucketConfig::new(0.5, 1);
    assert_eq!(take(&store, config, 10 * SECOND), Admission::Admitted);
    assert_eq!(take(&store, config, 11 * SECOND), Admission::Exhausted);
    assert_eq!(
        take(&store, config, 5 * SECOND),
        Admission::Exhausted,
        "backwards"
    );
    assert_eq!(take(&store, config, 12 * SECOND), Admission::Admitted);
}

#[test]
fn over_a_minute_admissions_stay_within_rate_times_time_plus_burst() {
    let store = MemoryStore::default();
    let config = BucketConfig::new(10.0, 5);
    // 1000 requests per second for 60 s, on a 1 ms clock.
    let total: usize = (0..60_000u64)
        .map(|ms| admitted(&store, config, ms * 1_000_000, 1))
        .sum();
    assert!(total <= 5 + 10 * 60, "{total}");
    assert!(total >= 10 * 60, "{total}");
}

#[test]
fn conflicts_are_retried_on_fresh_state() {
    let store = MemoryStore::default();
    let config = BucketConfig::new(1.0, 5);
    assert_eq!(
        take(&store, config, 0),
        Admission::Admitted,
        "creates the key: 4 left"
    );
    store.interleave.set(2);
    let got = try_acquire(&store, "k", config, 0);
    assert_eq!(got.admission, Admission::Admitted);
    assert_eq!(got.conflicts, 2);
    // The other VM's two tokens and ours are all gone: one left.
    assert_eq!(admitted(&store, config, 0, 10), 1);
}

#[test]
fn endless_conflicts_or_a_broken_store_admit_nothing() {
    let store = MemoryStore::default();
    let config = BucketConfig::new(1.0, 1_000);
    assert_eq!(
        take(&store, config, 0),
        Admission::Admitted,
        "creates the key"
    );
    store.interleave.set(u32::MAX);
    let got = try_acquire(&store, "k", config, 0);
    assert_eq!(got.admission, Admission::Unavailable);
    assert_eq!(got.conflicts, MAX_CAS_ATTEMPTS);
    store.interleave.set(0);
    store.broken.set(true);
    assert_eq!(take(&store, config, 0), Admission::Unavailable);
}

#[test]
fn state_round_trips_and_garbage_means_full() {
    let state = BucketState {
        micro_tokens: 123_456_789,
        updated_nanos: u64::MAX - 7,
    };
    assert_eq!(BucketState::decode(&state.encode()), Some(state));
    assert_eq!(BucketState::decode(b"short"), None);
    let store = MemoryStore::default();
    store.set("k", b"garbage", None).unwrap();
    assert_eq!(
        take(&store, BucketConfig::new(1.0, 2), 0),
        Admission::Admitted
    );
}

#[test]
fn ensuring_a_bucket_creates_it_once_and_full() {
    let store = MemoryStore::default();
    let config = BucketConfig::new(1.0, 2);
    ensure_bucket(&store, "k", config, 0);
    assert_eq!(take(&store, config, 0), Admission::Admitted);
    // A second VM configuring later does not refill it.
    ensure_bucket(&store, "k", config, 0);
    assert_eq!(admitted(&store, config, 0, 5), 1);
}
