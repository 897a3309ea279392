//! Ordered sampling rules: the first rule whose every condition matches the request decides.
//!
//! Conditions look at the request path (query string removed), method, headers, `User-Agent`
//! and authority. Strings match exactly, by prefix, by glob (`*` any run of characters, `?`
//! one character) or by regular expression. Globs are compiled to regular expressions, so one
//! engine does all pattern matching: `regex-lite`, chosen because it builds far smaller for
//! wasm32 than `regex` (`docs/sampling.md` has the measurement) while keeping its linear-time
//! guarantee, which matters because header values come from clients.

use super::parent_based::Policy;
use super::rate_limit::BucketConfig;
use crate::propagation::Headers;
use regex_lite::Regex;

/// Largest compiled size of one regular expression, in bytes (regex-lite's `size_limit`).
pub const MAX_REGEX_SIZE: usize = 64 * 1024;

/// One rule: conditions, and what to do when they all hold.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Name used in the span attribute and logs.
    pub name: String,
    /// Whether it also applies to requests that carry a parent context.
    pub scope: Scope,
    /// Conditions; all must hold.
    pub conditions: Vec<Condition>,
    /// The sampler used when the rule matches.
    pub policy: Policy,
    /// Token bucket limiting the traces this rule samples.
    pub rate_limit: Option<BucketConfig>,
}

/// Which requests a rule considers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only requests whose caller left the decision to us: new traces, and parents that
    /// deferred it (B3 without a sampling state, GCP without `o=`, X-Ray without `Sampled`).
    Root,
    /// Every request; the rule overrides the parent's decision.
    All,
}

/// One condition of a rule.
#[derive(Clone, Debug)]
pub enum Condition {
    /// The path, without the query string.
    Path(StringMatcher),
    /// The method is one of these (exact, case-sensitive).
    Method(Vec<String>),
    /// The `:authority` (HTTP/1 `Host`).
    Authority(StringMatcher),
    /// The `User-Agent` header (absent never matches).
    UserAgent(StringMatcher),
    /// Header `name` is present.
    HeaderPresent(String),
    /// Header `name` is present and its value matches.
    Header(String, StringMatcher),
}

/// How a string is matched.
#[derive(Clone, Debug)]
pub enum StringMatcher {
    /// Byte-for-byte equality.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// A regular expression (also what globs compile to); searched, so anchor it with `^…$`
    /// to match the whole value. Non-UTF-8 input is matched with replacement characters.
    Regex(Regex),
}

/// Why a pattern does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

// === impl StringMatcher ===

impl StringMatcher {
    /// A regular expression, bounded by [`MAX_REGEX_SIZE`].
    pub fn regex(pattern: &str) -> Result<Self, PatternError> {
        regex_lite::RegexBuilder::new(pattern)
            .size_limit(MAX_REGEX_SIZE)
            .build()
            .map(Self::Regex)
            .map_err(|e| PatternError(e.to_string()))
    }

    /// A glob matching the whole value: `*` is any run of characters (`/` included), `?` one
    /// character, everything else literal.
    pub fn glob(pattern: &str) -> Result<Self, PatternError> {
        let mut regex = String::from("^");
        let mut buf = [0; 4];
        for c in pattern.chars() {
            match c {
                '*' => regex.push_str("(?s:.*)"),
                '?' => regex.push_str("(?s:.)"),
                c => regex.push_str(&regex_lite::escape(c.encode_utf8(&mut buf))),
            }
        }
        regex.push('$');
        Self::regex(&regex)
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            Self::Exact(s) => value == s.as_bytes(),
            Self::Prefix(s) => value.starts_with(s.as_bytes()),
            Self::Regex(re) => re.is_match(&String::from_utf8_lossy(value)),
        }
    }
}

// === impl Condition ===

impl Condition {
    /// Whether the request satisfies this condition. A repeated header is matched by its
    /// first value.
    pub fn holds<H: Headers + ?Sized>(&self, headers: &H) -> bool {
        match self {
            Condition::Path(m) => headers
                .get(":path")
                .is_some_and(|p| m.matches(strip_query(p))),
            Condition::Method(methods) => headers
                .get(":method")
                .is_some_and(|m| methods.iter().any(|x| x.as_bytes() == m)),
            Condition::Authority(m) => headers.get(":authority").is_some_and(|a| m.matches(a)),
            Condition::UserAgent(m) => headers.get("user-agent").is_some_and(|u| m.matches(u)),
            Condition::HeaderPresent(name) => headers.get(name).is_some(),
            Condition::Header(name, m) => headers.get(name).is_some_and(|v| m.matches(v)),
        }
    }
}

fn strip_query(path: &[u8]) -> &[u8] {
    path.split(|&b| b == b'?').next().unwrap_or_default()
}

// === impl Rule ===

impl Rule {
    /// Whether this rule applies to the request (`caller_decided`: the caller passed on a
    /// sampling decision, see [`Scope::Root`]).
    pub fn matches<H: Headers + ?Sized>(&self, headers: &H, caller_decided: bool) -> bool {
        (self.scope == Scope::All || !caller_decided)
            && self.conditions.iter().all(|c| c.holds(headers))
    }
}

/// The index of the first rule that applies, if any.
pub fn first_match<H: Headers + ?Sized>(
    rules: &[Rule],
    headers: &H,
    caller_decided: bool,
) -> Option<usize> {
    rules
        .iter()
        .position(|r| r.matches(headers, caller_decided))
}

#[cfg(test)]
pub(crate) mod tests;
