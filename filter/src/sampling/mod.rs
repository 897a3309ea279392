//! Head sampling: whether the span the filter starts for a request is sampled, and why.
//!
//! ```text
//!  forced header (authentic) ──▶ sample ("forced")              ┐ no rate limit
//!  parent's B3/Jaeger debug flag ─▶ sample ("debug")              ┘
//!  built-in probe rules ─────────▶ drop ("health_probe")
//!  sampling.rules, first match ──▶ rule's sampler [+ rule bucket] ("rule", "rule_rate_limited")
//!  otherwise ParentBased ────────▶ root / remote_parent_sampled / remote_parent_not_sampled
//!                                  (a parent that deferred its decision: root)
//!  every other "sample" ─────────▶ global bucket ("global_rate_limited")
//! ```
//!
//! Everything here is pure: the host clock comes in as `now_nanos`, the shared buckets through
//! the [`SharedStore`] trait, and no randomness is needed (decisions are functions of the
//! trace id or its `rv`). The result names a [`Reason`], counted in metrics and recorded on
//! sampled spans, and the `ot` tracestate member to send upstream.
//!
//! The caller's decision comes from whichever propagation format won extraction
//! ([`crate::propagation::extract`]): W3C's sampled flag, B3's four states (`1`, `0`, `d` and
//! none), Jaeger's sampled and debug bits, GCP's `o=` and X-Ray's `Sampled=`. A caller that
//! passed on no decision (B3 without a sampling state, GCP without `o=`, X-Ray without
//! `Sampled`) is *deferred*: the B3 spec says the receiver decides, so the `root` policy and the
//! root-scoped rules decide as for a new trace, keeping the caller's trace id. (OpenTelemetry's
//! propagators read a missing sampled state as "not sampled", which under `ParentBased` would
//! never trace a request behind an AWS or Google load balancer; `docs/sampling.md` has the
//! comparison.)

pub mod config;
pub mod consistent;
pub mod forced;
pub mod parent_based;
pub mod rate_limit;
pub mod ratio;
pub mod rules;

pub use config::SamplingConfig;
pub use rate_limit::{SharedStore, StoreError};

use consistent::{OT_KEY, OtValue, Randomness, Threshold};
use forced::{Forced, ForcedCheck};
use parent_based::{Algorithm, ParentBased, ParentCase, Subject, ThresholdUpdate, Verdict};
use rate_limit::{Admission, BucketConfig};
use rules::Rule;

use crate::propagation::Headers;
use crate::propagation::tracestate::TraceState;
use crate::trace::TraceId;

/// Span attribute naming why a sampled span was sampled.
pub const REASON_ATTRIBUTE: &str = "meshtrace.sampling.reason";
/// Span attribute naming the rule that sampled it, when one did.
pub const RULE_ATTRIBUTE: &str = "meshtrace.sampling.rule";

/// The compiled sampling configuration of one VM.
#[derive(Clone, Debug)]
pub struct Sampler {
    algorithm: Algorithm,
    parent_based: ParentBased,
    default_rules: Vec<Rule>,
    rules: Vec<Rule>,
    global_limit: Option<BucketConfig>,
    forced: Option<Forced>,
    honor_debug_flag: bool,
    key_prefix: String,
}

/// What a decision looks at.
pub struct SamplingInput<'a, H: ?Sized> {
    /// The trace id of the span being started (the incoming one, or a new one).
    pub trace_id: TraceId,
    /// Whether `trace_id` came with the request (a valid parent context) rather than being
    /// new: HMAC-forced traces are checked against it, and only then is `tracestate` read.
    pub remote_trace_id: bool,
    /// What the caller said about sampling: the flags of its context, or of a sampling-only B3
    /// header (`b3: 0`, `b3: d`); `None` when the request carried neither.
    pub parent: Option<ParentSampling>,
    /// The incoming `tracestate` that belongs to the parent.
    pub tracestate: &'a TraceState,
    /// The request headers, pseudo-headers included.
    pub headers: &'a H,
}

/// The caller's sampling flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParentSampling {
    /// The `sampled` flag; `None` when the caller deferred the decision to us.
    pub sampled: Option<bool>,
    /// A debug flag (B3 `d` / `x-b3-flags: 1`, Jaeger 0x02).
    pub debug: bool,
}

/// Why a decision came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The forced-trace header was present and authentic.
    Forced,
    /// The parent carried a debug flag.
    Debug,
    /// A built-in health-probe rule matched.
    HealthProbe,
    /// A configured rule matched and its sampler decided.
    Rule,
    /// A configured rule's sampler said yes but its bucket was empty.
    RuleRateLimited,
    /// No parent: the `root` sampler decided.
    Root,
    /// Sampled parent: the `remote_parent_sampled` sampler decided.
    ParentSampled,
    /// Unsampled parent: the `remote_parent_not_sampled` sampler decided.
    ParentNotSampled,
    /// A parent that deferred the decision: the `root` sampler decided.
    ParentDeferred,
    /// The global traces-per-second cap was reached.
    GlobalRateLimited,
    /// A rate limit could not be checked (shared data failing or contended): not sampled.
    RateLimitUnavailable,
}

/// A sampling decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the span is sampled (the `sampled` flag sent upstream).
    pub sampled: bool,
    /// Why.
    pub reason: Reason,
    /// The index of the configured rule that decided (`sampling.rules[i]`), if any.
    pub rule: Option<usize>,
    /// The `ot` tracestate member value to send (`None`: no `ot` member).
    pub ot_member: Option<String>,
    /// Whether `ot_member` differs from what came in (the header needs rewriting).
    pub ot_changed: bool,
    /// A forced-trace header was present but not authentic.
    pub forced_rejected: bool,
    /// CAS conflicts met while taking rate-limit tokens.
    pub cas_conflicts: u32,
}

impl<H: ?Sized> std::fmt::Debug for SamplingInput<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplingInput")
            .field("trace_id", &self.trace_id)
            .field("remote_trace_id", &self.remote_trace_id)
            .field("parent", &self.parent)
            .field("tracestate", &self.tracestate)
            .finish_non_exhaustive()
    }
}

// === impl ParentSampling ===

impl ParentSampling {
    /// Whether the caller passed on a decision (sampled or not), rather than deferring it.
    pub fn decided(self) -> bool {
        self.sampled.is_some()
    }
}

// === impl Sampler ===

impl Default for Sampler {
    /// The default configuration's sampler: `parentbased_always_on` plus the probe rules.
    fn default() -> Self {
        // The default configuration always builds; a fallback keeps this total without a panic.
        SamplingConfig::default().build().unwrap_or(Self {
            algorithm: Algorithm::TraceIdRatio,
            parent_based: ParentBased::default(),
            default_rules: Vec::new(),
            rules: Vec::new(),
            global_limit: None,
            forced: None,
            honor_debug_flag: true,
            key_prefix: "meshtrace.sampling.default".to_owned(),
        })
    }
}

impl Sampler {
    /// Decides for one request. `now_nanos` is the host clock; `store` holds the shared
    /// rate-limit buckets. Never fails: a failing store means "not sampled", with its reason.
    pub fn decide<H: Headers + ?Sized>(
        &self,
        input: &SamplingInput<'_, H>,
        now_nanos: u64,
        store: &dyn SharedStore,
    ) -> Decision {
        let incoming = input
            .tracestate
            .get(OT_KEY)
            .filter(|_| input.remote_trace_id)
            .map(OtValue::parse)
            .unwrap_or_default();
        let subject = Subject {
            trace_id: input.trace_id,
            randomness: incoming
                .randomness()
                .unwrap_or_else(|| Randomness::from_trace_id(input.trace_id)),
        };
        let mut step = Step {
            sampler: self,
            now_nanos,
            store,
            cas_conflicts: 0,
        };
        let (forced, forced_rejected) = self.check_forced(input);
        let (verdict, reason, rule) = match forced {
            Some(reason) => (always(), reason, None),
            None => step.decide_unforced(input, subject),
        };
        let threshold = match verdict.threshold {
            ThresholdUpdate::Set(t) => Some(t),
            ThresholdUpdate::Erase => None,
            ThresholdUpdate::Keep => consistent_parent_threshold(&incoming, input, subject),
        };
        let outgoing = incoming.clone().with_threshold(threshold);
        Decision {
            sampled: verdict.sampled,
            reason,
            rule,
            ot_member: outgoing.encode(),
            ot_changed: outgoing != incoming,
            forced_rejected,
            cas_conflicts: step.cas_conflicts,
        }
    }

    /// The forced/debug reason, if the request is forced; and whether a forced-trace header
    /// was rejected.
    fn check_forced<H: Headers + ?Sized>(
        &self,
        input: &SamplingInput<'_, H>,
    ) -> (Option<Reason>, bool) {
        let check = self.forced.as_ref().map_or(ForcedCheck::NotRequested, |f| {
            let value = input.headers.get(&f.header);
            let remote = input.remote_trace_id.then_some(input.trace_id);
            f.check(value, remote)
        });
        let debug = self.honor_debug_flag && input.parent.is_some_and(|p| p.debug);
        let reason = match check {
            ForcedCheck::Accepted => Some(Reason::Forced),
            _ if debug => Some(Reason::Debug),
            _ => None,
        };
        (reason, check == ForcedCheck::Rejected)
    }

    /// Creates the shared rate-limit buckets this configuration uses, where missing (call from
    /// `on_configure`, before traffic).
    pub fn ensure_buckets(&self, store: &dyn SharedStore, now_nanos: u64) {
        let rules = self.rules.iter().enumerate();
        let rule_buckets = rules.filter_map(|(i, r)| Some((self.rule_key(i), r.rate_limit?)));
        let global = self.global_limit.map(|b| (self.global_key(), b));
        for (key, bucket) in rule_buckets.chain(global) {
            rate_limit::ensure_bucket(store, &key, bucket, now_nanos);
        }
    }

    fn rule_key(&self, index: usize) -> String {
        format!("{}.rule.{index}", self.key_prefix)
    }

    fn global_key(&self) -> String {
        format!("{}.global", self.key_prefix)
    }

    /// The configured rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The name of configured rule `index`, for the span attribute.
    pub fn rule_name(&self, index: usize) -> Option<&str> {
        self.rules.get(index).map(|r| r.name.as_str())
    }
}

/// One decision in progress: what it needs to take rate-limit tokens.
struct Step<'a> {
    sampler: &'a Sampler,
    now_nanos: u64,
    store: &'a dyn SharedStore,
    cas_conflicts: u32,
}

impl Step<'_> {
    fn decide_unforced<H: Headers + ?Sized>(
        &mut self,
        input: &SamplingInput<'_, H>,
        subject: Subject,
    ) -> (Verdict, Reason, Option<usize>) {
        let sampler = self.sampler;
        let algorithm = sampler.algorithm;
        let decided = input.parent.is_some_and(ParentSampling::decided);
        if let Some(i) = rules::first_match(&sampler.default_rules, input.headers, decided) {
            let policy = sampler.default_rules.get(i).map(|r| &r.policy);
            let verdict = policy.map_or(never(), |p| p.decide(algorithm, subject));
            return (verdict, Reason::HealthProbe, None);
        }
        let (verdict, reason, rule) =
            match rules::first_match(&sampler.rules, input.headers, decided) {
                Some(i) => {
                    let (verdict, reason) = self.decide_rule(i, subject);
                    (verdict, reason, Some(i))
                }
                None => {
                    let parent = input.parent.and_then(|p| p.sampled);
                    let (verdict, case) = sampler.parent_based.decide(algorithm, parent, subject);
                    let reason = match case {
                        ParentCase::Root if input.parent.is_some() => Reason::ParentDeferred,
                        ParentCase::Root => Reason::Root,
                        ParentCase::RemoteParentSampled => Reason::ParentSampled,
                        ParentCase::RemoteParentNotSampled => Reason::ParentNotSampled,
                    };
                    (verdict, reason, None)
                }
            };
        match (verdict.sampled, sampler.global_limit) {
            (true, Some(bucket)) => {
                let key = sampler.global_key();
                match self.admit(&key, bucket, verdict) {
                    Ok(admitted) => (admitted, reason, rule),
                    Err(Admission::Exhausted) => (never(), Reason::GlobalRateLimited, rule),
                    Err(_) => (never(), Reason::RateLimitUnavailable, rule),
                }
            }
            _ => (verdict, reason, rule),
        }
    }

    fn decide_rule(&mut self, index: usize, subject: Subject) -> (Verdict, Reason) {
        let Some(rule) = self.sampler.rules.get(index) else {
            return (never(), Reason::Rule);
        };
        let verdict = rule.policy.decide(self.sampler.algorithm, subject);
        match (verdict.sampled, rule.rate_limit) {
            (true, Some(bucket)) => {
                let key = self.sampler.rule_key(index);
                match self.admit(&key, bucket, verdict) {
                    Ok(admitted) => (admitted, Reason::Rule),
                    Err(Admission::Exhausted) => (never(), Reason::RuleRateLimited),
                    Err(_) => (never(), Reason::RateLimitUnavailable),
                }
            }
            _ => (verdict, Reason::Rule),
        }
    }

    /// Takes a token for a sampled verdict. A rate-limited span's sampling probability is
    /// unknown, so its threshold is erased (tracestate-probability-sampling.md, "General
    /// requirements").
    fn admit(
        &mut self,
        key: &str,
        bucket: BucketConfig,
        verdict: Verdict,
    ) -> Result<Verdict, Admission> {
        let got = rate_limit::try_acquire(self.store, key, bucket, self.now_nanos);
        self.cas_conflicts += got.conflicts;
        match got.admission {
            Admission::Admitted => Ok(Verdict {
                sampled: verdict.sampled,
                threshold: ThresholdUpdate::Erase,
            }),
            other => Err(other),
        }
    }
}

/// Sampled with probability one: `th:0`.
fn always() -> Verdict {
    Verdict {
        sampled: true,
        threshold: ThresholdUpdate::Set(Threshold::ALWAYS),
    }
}

fn never() -> Verdict {
    Verdict {
        sampled: false,
        threshold: ThresholdUpdate::Erase,
    }
}

/// The parent's threshold when a parent-based slot follows it: kept only if well-formed and
/// consistent with the parent's sampled flag (`R >= T` iff sampled), else erased.
fn consistent_parent_threshold<H: ?Sized>(
    incoming: &OtValue,
    input: &SamplingInput<'_, H>,
    subject: Subject,
) -> Option<Threshold> {
    let sampled = input.parent?.sampled?;
    let threshold = incoming.threshold()??;
    (threshold.samples(subject.randomness) == sampled).then_some(threshold)
}

// === impl Reason ===

impl Reason {
    /// Every reason, in metric-definition order.
    pub const ALL: [Reason; 11] = [
        Reason::Forced,
        Reason::Debug,
        Reason::HealthProbe,
        Reason::Rule,
        Reason::RuleRateLimited,
        Reason::Root,
        Reason::ParentSampled,
        Reason::ParentNotSampled,
        Reason::ParentDeferred,
        Reason::GlobalRateLimited,
        Reason::RateLimitUnavailable,
    ];

    /// The reason's name in metrics and in the span attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Forced => "forced",
            Reason::Debug => "debug",
            Reason::HealthProbe => "health_probe",
            Reason::Rule => "rule",
            Reason::RuleRateLimited => "rule_rate_limited",
            Reason::Root => "root",
            Reason::ParentSampled => "parent_sampled",
            Reason::ParentNotSampled => "parent_not_sampled",
            Reason::ParentDeferred => "parent_deferred",
            Reason::GlobalRateLimited => "global_rate_limited",
            Reason::RateLimitUnavailable => "rate_limit_unavailable",
        }
    }
}

#[cfg(test)]
mod tests;
