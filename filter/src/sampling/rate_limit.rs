//! Token buckets for sampling rate limits, shared by every worker VM of an Envoy process.
//!
//! A bucket's state is 16 bytes in proxy-wasm shared data (one key per bucket). A VM takes a
//! token by reading the state and its CAS version, refilling it for the time elapsed, and
//! writing it back with that version; a concurrent writer makes the write fail with a CAS
//! mismatch and the VM retries on the fresh state (`../shared/anchors/envoy-wasm-notes.md`,
//! "Shared data"). An empty bucket needs no write.
//!
//! Time comes in as a parameter (`now_nanos`, host clock); nothing here reads a clock.

/// How many times a VM retries a conflicting update before giving up on the token.
pub const MAX_CAS_ATTEMPTS: u32 = 8;

/// Fixed-point scale of tokens: one token is a million micro-tokens.
const MICROS_PER_TOKEN: u64 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// A bucket's shape: it refills at `micro_tokens_per_second` up to `burst` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketConfig {
    micro_tokens_per_second: u64,
    burst: u64,
}

/// A bucket's serialisable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketState {
    /// Tokens available, in millionths.
    pub micro_tokens: u64,
    /// When `micro_tokens` was last computed (nanoseconds, host clock).
    pub updated_nanos: u64,
}

/// Result of asking for a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A token was taken.
    Admitted,
    /// The bucket is empty.
    Exhausted,
    /// The shared store failed, or kept conflicting for [`MAX_CAS_ATTEMPTS`]: no token.
    Unavailable,
}

/// Why a shared-store operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read (compare-and-swap failed).
    CasMismatch,
    /// Any other failure of the host.
    Unavailable,
}

/// Key-value storage shared between VMs, with compare-and-swap: proxy-wasm shared data.
pub trait SharedStore {
    /// The value under `key` (`None` if absent) and its CAS version.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Stores `value` if the key's version is still `cas` (`None`: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// Outcome of [`try_acquire`], with the CAS conflicts met on the way (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// Whether a token was taken.
    pub admission: Admission,
    /// Writes that failed with a CAS mismatch and were retried.
    pub conflicts: u32,
}

// === impl BucketConfig ===

impl BucketConfig {
    /// A bucket refilling at `per_second` tokens per second (fractions allowed, down to one
    /// per million seconds) holding at most `burst` tokens. Configuration validates both.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let micros = (per_second * MICROS_PER_TOKEN as f64).round();
        Self {
            // Saturating float→int cast; validation keeps the value far below the limit.
            micro_tokens_per_second: micros as u64,
            burst: u64::from(burst),
        }
    }

    fn capacity(self) -> u64 {
        self.burst.saturating_mul(MICROS_PER_TOKEN)
    }
}

// === impl BucketState ===

impl BucketState {
    /// Size of [`BucketState::encode`]'s output.
    pub const ENCODED_LEN: usize = 16;

    /// A full bucket at `now_nanos`: the state of a key nobody has written yet.
    pub fn full(config: BucketConfig, now_nanos: u64) -> Self {
        Self {
            micro_tokens: config.capacity(),
            updated_nanos: now_nanos,
        }
    }

    /// Little-endian `micro_tokens` then `updated_nanos`.
    pub fn encode(self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0; Self::ENCODED_LEN];
        let (tokens, time) = out.split_at_mut(8);
        tokens.copy_from_slice(&self.micro_tokens.to_le_bytes());
        time.copy_from_slice(&self.updated_nanos.to_le_bytes());
        out
    }

    /// The inverse of [`BucketState::encode`]; `None` for any other length.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes.try_into().ok()?;
        let [
            t0,
            t1,
            t2,
            t3,
            t4,
            t5,
            t6,
            t7,
            n0,
            n1,
            n2,
            n3,
            n4,
            n5,
            n6,
            n7,
        ] = *bytes;
        Some(Self {
            micro_tokens: u64::from_le_bytes([t0, t1, t2, t3, t4, t5, t6, t7]),
            updated_nanos: u64::from_le_bytes([n0, n1, n2, n3, n4, n5, n6, n7]),
        })
    }

    /// Refills for the time since the last update (a clock that went backwards adds nothing)
    /// and takes one token if there is one. Returns the new state when a token was taken.
    pub fn take(self, config: BucketConfig, now_nanos: u64) -> Option<Self> {
        let elapsed = u128::from(now_nanos.saturating_sub(self.updated_nanos));
        let refill = elapsed * u128::from(config.micro_tokens_per_second) / NANOS_PER_SECOND;
        let refill = u64::try_from(refill).unwrap_or(u64::MAX);
        let available = self
            .micro_tokens
            .saturating_add(refill)
            .min(config.capacity());
        let left = available.checked_sub(MICROS_PER_TOKEN)?;
        Some(Self {
            micro_tokens: left,
            updated_nanos: now_nanos.max(self.updated_nanos),
        })
    }
}

/// Creates the bucket under `key`, full, unless some VM already did. Called at configuration
/// time so that the first requests of two VMs never both create the key (creation cannot be
/// compare-and-swapped: a CAS on a missing key always succeeds). Concurrent creators all write
/// the same full state, so no token is lost.
pub fn ensure_bucket(store: &dyn SharedStore, key: &str, config: BucketConfig, now_nanos: u64) {
    if let Ok((None, _)) = store.get(key) {
        let _ = store.set(key, &BucketState::full(config, now_nanos).encode(), None);
    }
}

/// Takes one token from the bucket under `key` in `store`, retrying on CAS conflicts. A
/// missing or unreadable state counts as a full bucket. Never blocks; at most
/// [`MAX_CAS_ATTEMPTS`] writes.
pub fn try_acquire(
    store: &dyn SharedStore,
    key: &str,
    config: BucketConfig,
    now_nanos: u64,
) -> Acquired {
    let mut conflicts = 0;
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Ok((bytes, cas)) = store.get(key) else {
            return Acquired {
                admission: Admission::Unavailable,
                conflicts,
            };
        };
        let state = bytes
            .as_deref()
            .and_then(BucketState::decode)
            .unwrap_or_else(|| BucketState::full(config, now_nanos));
        let Some(next) = state.take(config, now_nanos) else {
            return Acquired {
                admission: Admission::Exhausted,
                conflicts,
            };
        };
        match store.set(key, &next.encode(), cas) {
            Ok(()) => {
                return Acquired {
                    admission: Admission::Admitted,
                    conflicts,
                };
            }
            Err(StoreError::CasMismatch) => conflicts += 1,
            Err(StoreError::Unavailable) => break,
        }
    }
    Acquired {
        admission: Admission::Unavailable,
        conflicts,
    }
}

#[cfg(test)]
pub(crate) mod tests;
