//! The `sampling` section of the plugin configuration, and its compilation into a [`Sampler`].
//!
//! Shape first (serde: unknown fields rejected, everything defaulted), then [`SamplingConfig::build`]
//! checks ranges and compiles patterns; every error names its field, e.g.
//! `sampling.rules[2].match.path.regex`.

use super::Sampler;
use super::consistent::{DEFAULT_PRECISION, MAX_PRECISION};
use super::forced::{Forced, ForcedAuth};
use super::parent_based::{Algorithm, ParentBased, Policy};
use super::rate_limit::BucketConfig;
use super::rules::{Condition, Rule, Scope, StringMatcher};
use crate::config::ConfigError;
use crate::propagation::is_token;
use serde::Deserialize;
use std::fmt;

/// Most rules in `sampling.rules` (each gets two metrics).
pub const MAX_RULES: usize = 64;
/// Longest pattern (exact, prefix, glob or regex) in a rule.
pub const MAX_PATTERN_LEN: usize = 1_024;
/// Longest rule name.
pub const MAX_RULE_NAME_LEN: usize = 64;
/// Shortest HMAC secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Highest rate limit, in traces per second.
pub const MAX_TRACES_PER_SECOND: f64 = 1_000_000.0;
/// Lowest non-zero rate limit: one trace per million seconds.
pub const MIN_TRACES_PER_SECOND: f64 = 0.000_001;
/// Default header of forced traces.
pub const DEFAULT_FORCED_HEADER: &str = "x-meshtrace-force";

/// `sampling`: how the filter decides whether a request's span is sampled.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// How ratios decide: the SDKs' `TraceIdRatioBased`, or consistent probability (`ot=th`).
    pub algorithm: AlgorithmConfig,
    /// Hex digits of written thresholds (consistent probability only), 1 to 12.
    pub threshold_precision: u32,
    /// Sampler for requests without a parent context.
    pub root: PolicyConfig,
    /// Sampler for requests whose parent is sampled.
    pub remote_parent_sampled: PolicyConfig,
    /// Sampler for requests whose parent is not sampled.
    pub remote_parent_not_sampled: PolicyConfig,
    /// Ordered rules; the first that matches decides instead of the three samplers above.
    pub rules: Vec<RuleConfig>,
    /// Whether the built-in rules that drop health probes run (before `rules`).
    pub default_rules: bool,
    /// Cap on sampled traces per second over all worker threads (forced traces excepted).
    pub rate_limit: Option<RateLimitConfig>,
    /// A request header that forces sampling.
    pub forced: Option<ForcedConfig>,
    /// Whether a parent's debug flag (B3 `d` / `x-b3-flags: 1`, Jaeger flag 0x02) forces
    /// sampling, as the B3 specification asks.
    pub honor_debug_flag: bool,
}

/// `sampling.algorithm`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmConfig {
    /// Decisions identical to the OpenTelemetry SDKs' `TraceIdRatioBased`.
    #[default]
    TraceIdRatio,
    /// OpenTelemetry consistent probability sampling (`th`/`rv` in tracestate).
    ConsistentProbability,
}

/// A sampler: `"always_on"`, `"always_off"` or `{"ratio": 0.25}`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyConfig {
    /// Sample.
    AlwaysOn,
    /// Do not sample.
    AlwaysOff,
    /// Sample this fraction of traces, 0 to 1.
    Ratio(f64),
}

/// One entry of `sampling.rules`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Name in the span attribute `meshtrace.sampling.rule` (default: `rule_<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `root` (default): only requests the caller left undecided (new traces, deferred
    /// parents); `all`: also override a caller's decision.
    #[serde(default)]
    pub scope: ScopeConfig,
    /// Conditions; all must hold. An empty match matches every request.
    #[serde(rename = "match", default)]
    pub conditions: MatchConfig,
    /// The sampler for matching requests.
    pub sample: PolicyConfig,
    /// Cap on the traces this rule samples.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// `rules[].scope`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScopeConfig {
    /// Requests without a caller's decision.
    #[default]
    Root,
    /// All requests.
    All,
}

/// `rules[].match`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// The path, without query string.
    pub path: Option<StringMatchConfig>,
    /// Any of these methods.
    pub method: Option<Vec<String>>,
    /// The `:authority` / `Host`.
    pub authority: Option<StringMatchConfig>,
    /// The `User-Agent` header.
    pub user_agent: Option<StringMatchConfig>,
    /// Header conditions; all must hold.
    pub headers: Vec<HeaderMatchConfig>,
}

/// A string condition: exactly one of the four fields.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StringMatchConfig {
    /// Equal to.
    pub exact: Option<String>,
    /// Starts with.
    pub prefix: Option<String>,
    /// Glob: `*` any characters, `?` one character.
    pub glob: Option<String>,
    /// Regular expression (regex-lite syntax), searched anywhere unless anchored.
    pub regex: Option<String>,
}

/// A header condition: `present: true`, or one string condition on its value.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderMatchConfig {
    /// Header name (matched case-insensitively: Envoy lower-cases names).
    pub name: String,
    /// The header exists, whatever its value.
    pub present: bool,
    /// The value equals.
    pub exact: Option<String>,
    /// The value starts with.
    pub prefix: Option<String>,
    /// The value matches the glob.
    pub glob: Option<String>,
    /// The value matches the regular expression.
    pub regex: Option<String>,
}

/// A token bucket: `traces_per_second` refill, `burst` capacity.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate.
    pub traces_per_second: f64,
    /// Most traces in a burst (default: the rate rounded up, at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// `sampling.forced`: header name, and either a fixed value or an HMAC secret.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ForcedConfig {
    /// The header (default `x-meshtrace-force`).
    pub header: Option<String>,
    /// The value that forces sampling.
    pub value: Option<String>,
    /// HMAC authentication of the header instead of a fixed value.
    pub hmac: Option<HmacConfig>,
}

/// `sampling.forced.hmac`.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HmacConfig {
    /// The shared secret (at least 16 bytes). Never logged.
    pub secret: String,
}

// === impl SamplingConfig ===

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            algorithm: AlgorithmConfig::default(),
            threshold_precision: DEFAULT_PRECISION,
            root: PolicyConfig::AlwaysOn,
            remote_parent_sampled: PolicyConfig::AlwaysOn,
            remote_parent_not_sampled: PolicyConfig::AlwaysOff,
            rules: Vec::new(),
            default_rules: true,
            rate_limit: None,
            forced: None,
            honor_debug_flag: true,
        }
    }
}

impl SamplingConfig {
    /// Checks every field; the first error names its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.build().map(drop)
    }

    /// Compiles the configuration into a sampler.
    pub fn build(&self) -> Result<Sampler, ConfigError> {
        if !(1..=MAX_PRECISION).contains(&self.threshold_precision) {
            return Err(ConfigError::new(
                "sampling.threshold_precision",
                format!("must be between 1 and {MAX_PRECISION}"),
            ));
        }
        let algorithm = match self.algorithm {
            AlgorithmConfig::TraceIdRatio => Algorithm::TraceIdRatio,
            AlgorithmConfig::ConsistentProbability => Algorithm::ConsistentProbability {
                precision: self.threshold_precision,
            },
        };
        let parent_based = ParentBased {
            root: self.root.build("sampling.root")?,
            remote_parent_sampled: self
                .remote_parent_sampled
                .build("sampling.remote_parent_sampled")?,
            remote_parent_not_sampled: self
                .remote_parent_not_sampled
                .build("sampling.remote_parent_not_sampled")?,
        };
        if self.rules.len() > MAX_RULES {
            return Err(ConfigError::new(
                "sampling.rules",
                format!("at most {MAX_RULES} rules"),
            ));
        }
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| rule.build(i))
            .collect::<Result<Vec<_>, _>>()?;
        let global_limit = self
            .rate_limit
            .map(|r| r.build("sampling.rate_limit"))
            .transpose()?;
        let forced = self.forced.as_ref().map(ForcedConfig::build).transpose()?;
        Ok(Sampler {
            algorithm,
            parent_based,
            default_rules: if self.default_rules {
                default_rules()
            } else {
                Vec::new()
            },
            rules,
            global_limit,
            forced,
            honor_debug_flag: self.honor_debug_flag,
            key_prefix: format!("meshtrace.sampling.{:016x}", fingerprint(self)),
        })
    }
}

/// The built-in rules: drop Kubernetes-style health probes, whoever sends them.
fn default_rules() -> Vec<Rule> {
    let probe_paths = StringMatcher::regex("^/(healthz|readyz|livez)(/|$)");
    let kube_probe = StringMatcher::glob("kube-probe/*");
    [
        ("health_probe_path", probe_paths.map(Condition::Path)),
        ("kube_probe", kube_probe.map(Condition::UserAgent)),
    ]
    .into_iter()
    .filter_map(|(name, condition)| {
        Some(Rule {
            name: name.to_owned(),
            scope: Scope::All,
            conditions: vec![condition.ok()?],
            policy: Policy::AlwaysOff,
            rate_limit: None,
        })
    })
    .collect()
}

/// FNV-1a of the configuration, so that a changed configuration starts fresh rate-limit
/// buckets instead of inheriting ones shaped differently.
fn fingerprint(config: &SamplingConfig) -> u64 {
    format!("{config:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

// === impl PolicyConfig ===

impl PolicyConfig {
    fn build(self, field: &str) -> Result<Policy, ConfigError> {
        Ok(match self {
            PolicyConfig::AlwaysOn => Policy::AlwaysOn,
            PolicyConfig::AlwaysOff => Policy::AlwaysOff,
            PolicyConfig::Ratio(r) if (0.0..=1.0).contains(&r) => Policy::Ratio(r),
            PolicyConfig::Ratio(r) => {
                return Err(ConfigError::new(
                    format!("{field}.ratio"),
                    format!("must be between 0 and 1, got {r}"),
                ));
            }
        })
    }
}

// === impl RuleConfig ===

impl RuleConfig {
    fn build(&self, index: usize) -> Result<Rule, ConfigError> {
        let at = format!("sampling.rules[{index}]");
        let name = match &self.name {
            Some(name) if name.is_empty() || name.len() > MAX_RULE_NAME_LEN => {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("must be 1 to {MAX_RULE_NAME_LEN} bytes long"),
                ));
            }
            Some(name) => name.clone(),
            None => format!("rule_{index}"),
        };
        Ok(Rule {
            name,
            scope: match self.scope {
                ScopeConfig::Root => Scope::Root,
                ScopeConfig::All => Scope::All,
            },
            conditions: self.conditions.build(&format!("{at}.match"))?,
            policy: self.sample.build(&format!("{at}.sample"))?,
            rate_limit: self
                .rate_limit
                .map(|r| r.build(&format!("{at}.rate_limit")))
                .transpose()?,
        })
    }
}

impl MatchConfig {
    fn build(&self, at: &str) -> Result<Vec<Condition>, ConfigError> {
        let mut conditions = Vec::new();
        if let Some(path) = &self.path {
            conditions.push(Condition::Path(path.build(&format!("{at}.path"))?));
        }
        if let Some(methods) = &self.method {
            if methods.is_empty() || methods.iter().any(|m| !is_token(m.as_bytes())) {
                return Err(ConfigError::new(
                    format!("{at}.method"),
                    "must be a non-empty list of method names",
                ));
            }
            conditions.push(Condition::Method(methods.clone()));
        }
        if let Some(authority) = &self.authority {
            let m = authority.build(&format!("{at}.authority"))?;
            conditions.push(Condition::Authority(m));
        }
        if let Some(user_agent) = &self.user_agent {
            let m = user_agent.build(&format!("{at}.user_agent"))?;
            conditions.push(Condition::UserAgent(m));
        }
        for (i, header) in self.headers.iter().enumerate() {
            conditions.push(header.build(&format!("{at}.headers[{i}]"))?);
        }
        Ok(conditions)
    }
}

impl StringMatchConfig {
    fn build(&self, at: &str) -> Result<StringMatcher, ConfigError> {
        string_matcher(at, &self.exact, &self.prefix, &self.glob, &self.regex)?
            .ok_or_else(|| ConfigError::new(at, "set one of exact, prefix, glob, regex"))
    }
}

impl HeaderMatchConfig {
    fn build(&self, at: &str) -> Result<Condition, ConfigError> {
        if !is_token(self.name.as_bytes()) {
            return Err(ConfigError::new(
                format!("{at}.name"),
                "must be a header name",
            ));
        }
        let name = self.name.to_ascii_lowercase();
        let matcher = string_matcher(at, &self.exact, &self.prefix, &self.glob, &self.regex)?;
        match (self.present, matcher) {
            (true, None) => Ok(Condition::HeaderPresent(name)),
            (false, Some(m)) => Ok(Condition::Header(name, m)),
            _ => Err(ConfigError::new(
                at,
                "set exactly one of present, exact, prefix, glob, regex",
            )),
        }
    }
}

/// At most one of the four string conditions, compiled; `None` when none is set.
fn string_matcher(
    at: &str,
    exact: &Option<String>,
    prefix: &Option<String>,
    glob: &Option<String>,
    regex: &Option<String>,
) -> Result<Option<StringMatcher>, ConfigError> {
    type Build = fn(&str) -> Result<StringMatcher, super::rules::PatternError>;
    let kinds: [(&str, &Option<String>, Build); 4] = [
        ("exact", exact, |s| Ok(StringMatcher::Exact(s.to_owned()))),
        ("prefix", prefix, |s| {
            Ok(StringMatcher::Prefix(s.to_owned()))
        }),
        ("glob", glob, StringMatcher::glob),
        ("regex", regex, StringMatcher::regex),
    ];
    let mut set = kinds
        .iter()
        .filter_map(|(k, v, b)| Some((*k, v.as_deref()?, *b)));
    let Some((kind, pattern, build)) = set.next() else {
        return Ok(None);
    };
    if set.next().is_some() {
        return Err(ConfigError::new(
            at,
            "set only one of exact, prefix, glob, regex",
        ));
    }
    let field = format!("{at}.{kind}");
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(ConfigError::new(
            field,
            format!("longer than {MAX_PATTERN_LEN} bytes"),
        ));
    }
    build(pattern)
        .map(Some)
        .map_err(|e| ConfigError::new(field, format!("invalid pattern: {}", e.0)))
}

// === impl RateLimitConfig ===

impl RateLimitConfig {
    fn build(self, at: &str) -> Result<BucketConfig, ConfigError> {
        let rate = self.traces_per_second;
        if !(MIN_TRACES_PER_SECOND..=MAX_TRACES_PER_SECOND).contains(&rate) {
            return Err(ConfigError::new(
                format!("{at}.traces_per_second"),
                format!(
                    "must be between {MIN_TRACES_PER_SECOND} and {MAX_TRACES_PER_SECOND}, got {rate}"
                ),
            ));
        }
        // The rate rounded up is at most 1e6, so the cast is exact.
        let default_burst = (rate.ceil() as u32).max(1);
        let burst = self.burst.unwrap_or(default_burst);
        if burst == 0 || f64::from(burst) > MAX_TRACES_PER_SECOND {
            return Err(ConfigError::new(
                format!("{at}.burst"),
                format!("must be between 1 and {MAX_TRACES_PER_SECOND}"),
            ));
        }
        Ok(BucketConfig::new(rate, burst))
    }
}

// === impl ForcedConfig ===

impl ForcedConfig {
    fn build(&self) -> Result<Forced, ConfigError> {
        let header = self.header.as_deref().unwrap_or(DEFAULT_FORCED_HEADER);
        if !is_token(header.as_bytes()) {
            return Err(ConfigError::new(
                "sampling.forced.header",
                "must be a header name",
            ));
        }
        let auth = match (&self.value, &self.hmac) {
            (Some(value), None) if !value.is_empty() => {
                ForcedAuth::Value(value.as_bytes().to_vec())
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "sampling.forced.value",
                    "must not be empty",
                ));
            }
            (None, Some(hmac)) if hmac.secret.len() >= MIN_SECRET_LEN => {
                ForcedAuth::HmacSha256(hmac.secret.as_bytes().to_vec())
            }
            (None, Some(hmac)) => {
                let why = if hmac.secret.is_empty() {
                    "must be set".to_owned()
                } else {
                    format!("must be at least {MIN_SECRET_LEN} bytes long")
                };
                return Err(ConfigError::new("sampling.forced.hmac.secret", why));
            }
            _ => {
                return Err(ConfigError::new(
                    "sampling.forced",
                    "set exactly one of value, hmac",
                ));
            }
        };
        Ok(Forced {
            header: header.to_ascii_lowercase(),
            auth,
        })
    }
}

impl fmt::Debug for ForcedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForcedConfig")
            .field("header", &self.header)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("hmac", &self.hmac)
            .finish()
    }
}

impl fmt::Debug for HmacConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacConfig { secret: <redacted> }")
    }
}

#[cfg(test)]
mod tests;
