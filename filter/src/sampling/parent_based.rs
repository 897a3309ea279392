//! OpenTelemetry's `ParentBased` sampler and the samplers its slots hold.
//!
//! <https://github.com/open-telemetry/opentelemetry-specification/blob/main/specification/trace/sdk.md#parentbased>:
//! no parent → `root`; a remote sampled parent → `remote_parent_sampled` (default always on); a
//! remote unsampled parent → `remote_parent_not_sampled` (default always off). The filter's
//! parent is always remote (it comes from request headers), so the spec's two local-parent
//! slots do not exist here.
//!
//! Thresholds (`ot=th`) follow tracestate-probability-sampling.md: an independent decision
//! (always on, a ratio) encodes its own threshold; a slot that agrees with its parent
//! propagates the parent's threshold ([`ThresholdUpdate::Keep`]); anything else erases it.

use super::consistent::{Randomness, Threshold};
use super::ratio::TraceIdRatio;
use crate::trace::TraceId;

/// How a probability decision is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// The SDKs' `TraceIdRatioBased` (see [`super::ratio`]). Its decisions are not of the form
    /// `R >= T`, so a ratio strictly between 0 and 1 erases `th` instead of writing one.
    TraceIdRatio,
    /// Consistent probability sampling: keep iff `R >= T`, and write `th`.
    ConsistentProbability {
        /// Hex digits of the threshold.
        precision: u32,
    },
}

/// A sampler one `ParentBased` slot or one rule holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// Sample.
    AlwaysOn,
    /// Do not sample.
    AlwaysOff,
    /// Sample a fraction of traces, decided from the trace's randomness.
    Ratio(f64),
}

/// What to do with the `th` sub-key of our `ot` tracestate member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdUpdate {
    /// Propagate the parent's threshold, if it is consistent with the parent's decision.
    Keep,
    /// Write this threshold.
    Set(Threshold),
    /// Write none.
    Erase,
}

/// A sampling decision before reasons and rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the span is sampled.
    pub sampled: bool,
    /// What happens to `th`.
    pub threshold: ThresholdUpdate,
}

/// What a decision is about: the trace id and the randomness consistent sampling reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The trace id of the span being started.
    pub trace_id: TraceId,
    /// `rv` from the parent's tracestate, else the trace id's low 56 bits.
    pub randomness: Randomness,
}

/// Which `ParentBased` slot decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentCase {
    /// No parent.
    Root,
    /// A remote parent with the sampled flag.
    RemoteParentSampled,
    /// A remote parent without it.
    RemoteParentNotSampled,
}

/// The `ParentBased` sampler.
#[derive(Clone, Debug, PartialEq)]
pub struct ParentBased {
    /// Used when there is no parent.
    pub root: Policy,
    /// Used when the remote parent is sampled.
    pub remote_parent_sampled: Policy,
    /// Used when the remote parent is not sampled.
    pub remote_parent_not_sampled: Policy,
}

// === impl Policy ===

impl Policy {
    /// An independent decision: this policy alone, whatever the parent said.
    pub fn decide(&self, algorithm: Algorithm, subject: Subject) -> Verdict {
        match self {
            Policy::AlwaysOn => sampled(ThresholdUpdate::Set(Threshold::ALWAYS)),
            Policy::AlwaysOff => dropped(),
            Policy::Ratio(ratio) => decide_ratio(*ratio, algorithm, subject),
        }
    }
}

fn decide_ratio(ratio: f64, algorithm: Algorithm, subject: Subject) -> Verdict {
    match algorithm {
        Algorithm::TraceIdRatio => {
            if !TraceIdRatio::new(ratio).should_sample(subject.trace_id) {
                dropped()
            } else if ratio >= 1.0 {
                sampled(ThresholdUpdate::Set(Threshold::ALWAYS))
            } else {
                sampled(ThresholdUpdate::Erase)
            }
        }
        Algorithm::ConsistentProbability { precision } => {
            match Threshold::from_probability(ratio, precision) {
                Some(t) if t.samples(subject.randomness) => sampled(ThresholdUpdate::Set(t)),
                _ => dropped(),
            }
        }
    }
}

fn sampled(threshold: ThresholdUpdate) -> Verdict {
    Verdict {
        sampled: true,
        threshold,
    }
}

fn dropped() -> Verdict {
    Verdict {
        sampled: false,
        threshold: ThresholdUpdate::Erase,
    }
}

// === impl ParentBased ===

impl Default for ParentBased {
    /// `parentbased_always_on`, the OpenTelemetry SDKs' default sampler.
    fn default() -> Self {
        Self {
            root: Policy::AlwaysOn,
            remote_parent_sampled: Policy::AlwaysOn,
            remote_parent_not_sampled: Policy::AlwaysOff,
        }
    }
}

impl ParentBased {
    /// Decides for a span whose remote parent's sampled flag is `parent_sampled` (`None`: no
    /// parent). A slot that agrees with its parent follows it and keeps its threshold.
    pub fn decide(
        &self,
        algorithm: Algorithm,
        parent_sampled: Option<bool>,
        subject: Subject,
    ) -> (Verdict, ParentCase) {
        match parent_sampled {
            None => (self.root.decide(algorithm, subject), ParentCase::Root),
            Some(true) => {
                let verdict = match self.remote_parent_sampled {
                    Policy::AlwaysOn => sampled(ThresholdUpdate::Keep),
                    ref other => other.decide(algorithm, subject),
                };
                (verdict, ParentCase::RemoteParentSampled)
            }
            Some(false) => {
                let verdict = match self.remote_parent_not_sampled {
                    Policy::AlwaysOff => Verdict {
                        sampled: false,
                        threshold: ThresholdUpdate::Keep,
                    },
                    ref other => other.decide(algorithm, subject),
                };
                (verdict, ParentCase::RemoteParentNotSampled)
            }
        }
    }
}

#[cfg(test)]
mod tests;
