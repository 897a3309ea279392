//! W3C Trace Context `tracestate`: vendor entries that travel with `traceparent`.
//!
//! Implements <https://www.w3.org/TR/trace-context/#tracestate-header>: every header line is
//! combined into one list; members are `key=value` with the spec's key grammar (simple or
//! `tenant@system`) and value grammar (1 to 256 printable characters, no `,` or `=`, no trailing
//! space); empty members are allowed and skipped; at most [`MAX_MEMBERS`] are kept.
//!
//! A bad member drops only itself (the spec lets a vendor drop invalid entries), a repeated key
//! keeps its first (left-most, most recent) value. Oversized lists are cut by the spec's
//! truncation rule: whole entries only, entries longer than 128 characters first, then from the
//! right. The filter only ever changes its own member, through [`TraceState::set`].

/// The header name.
pub const TRACESTATE: &str = "tracestate";

/// Most members a list holds (W3C: "up to 32 list-members").
pub const MAX_MEMBERS: usize = 32;

/// Most bytes of the combined list the filter propagates. The spec asks for at least 512; the
/// grammar caps a 32-member list at about 16 KiB; 8192 is the bound the OpenTelemetry Python
/// SDK applies on extract.
pub const MAX_LEN: usize = 8_192;

/// Entries longer than this are the first to go when the list must be truncated.
const LARGE_MEMBER_LEN: usize = 128;

const MAX_KEY_LEN: usize = 256;
const MAX_TENANT_LEN: usize = 241;
const MAX_SYSTEM_LEN: usize = 14;
const MAX_VALUE_LEN: usize = 256;

/// Why (part of) a `tracestate` was dropped. Each reason is a separate malformed-input class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TracestateError {
    /// A member is not `key=value` with the spec's grammar; that member was dropped.
    InvalidMember,
    /// A key appeared again; the later member was dropped.
    DuplicateKey,
    /// More than [`MAX_MEMBERS`] members; the ones after the 32nd were dropped.
    TooManyMembers,
    /// The list was longer than [`MAX_LEN`]; whole entries were removed by the spec's rule.
    Truncated,
}

/// An ordered `tracestate` list, left-most (most recently updated) first. Always valid: every
/// member passed the grammar, keys are unique, at most [`MAX_MEMBERS`] and [`MAX_LEN`] bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

// === impl TracestateError ===

impl TracestateError {
    /// Every reason, for defining one metric each.
    pub const ALL: [TracestateError; 4] = [
        TracestateError::InvalidMember,
        TracestateError::DuplicateKey,
        TracestateError::TooManyMembers,
        TracestateError::Truncated,
    ];

    /// The reason as a metric-name fragment.
    pub fn reason(self) -> &'static str {
        match self {
            TracestateError::InvalidMember => "invalid_member",
            TracestateError::DuplicateKey => "duplicate_key",
            TracestateError::TooManyMembers => "too_many_members",
            TracestateError::Truncated => "truncated",
        }
    }
}

/// Parses every `tracestate` header line of a request into one list, and says what was dropped
/// (each reason once). Never fails: the worst input gives an empty list.
pub fn parse_tracestate<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
) -> (TraceState, Vec<TracestateError>) {
    let mut state = TraceState::default();
    let mut problems = Vec::new();
    let mut note = |problem| {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    };
    'lines: for line in lines {
        for member in line.split(|&b| b == b',') {
            let member = super::trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let Some((key, value)) = parse_member(member) else {
                note(TracestateError::InvalidMember);
                continue;
            };
            if state.get(&key).is_some() {
                note(TracestateError::DuplicateKey);
                continue;
            }
            if state.members.len() == MAX_MEMBERS {
                note(TracestateError::TooManyMembers);
                break 'lines;
            }
            state.members.push((key, value));
        }
    }
    if state.truncate(MAX_LEN) {
        note(TracestateError::Truncated);
    }
    (state, problems)
}

// === impl TraceState ===

impl TraceState {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets our own member: removes `key` if present and puts `key=value` first, as the spec's
    /// mutation rules ask; drops the right-most member past [`MAX_MEMBERS`] and truncates to
    /// [`MAX_LEN`]. Refuses a key or value outside the grammar.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), TracestateError> {
        if !is_valid_key(key.as_bytes()) || !is_valid_value(value.as_bytes()) {
            return Err(TracestateError::InvalidMember);
        }
        self.members.retain(|(k, _)| k != key);
        self.members.insert(0, (key.to_owned(), value.to_owned()));
        self.members.truncate(MAX_MEMBERS);
        self.truncate(MAX_LEN);
        Ok(())
    }

    /// Removes `key`'s member, if present.
    pub fn remove(&mut self, key: &str) {
        self.members.retain(|(k, _)| k != key);
    }

    /// Whether the list has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The header value, `None` for an empty list (the spec asks not to send empty headers).
    pub fn to_header(&self) -> Option<String> {
        if self.members.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(self.serialized_len());
        for (i, (key, value)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        Some(out)
    }

    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn serialized_len(&self) -> usize {
        let members: usize = self.members.iter().map(|(k, v)| member_len(k, v)).sum();
        members + self.members.len().saturating_sub(1)
    }

    /// Applies the spec's truncation rule until the list fits in `max` bytes; true if anything
    /// was removed.
    fn truncate(&mut self, max: usize) -> bool {
        let before = self.members.len();
        while self.serialized_len() > max {
            let large = self
                .members
                .iter()
                .rposition(|(k, v)| member_len(k, v) > LARGE_MEMBER_LEN);
            match large {
                Some(at) => {
                    self.members.remove(at);
                }
                None => {
                    self.members.pop();
                }
            }
        }
        self.members.len() != before
    }
}

fn member_len(key: &str, value: &str) -> usize {
    key.len() + 1 + value.len()
}

/// Splits and validates one trimmed, non-empty member.
fn parse_member(member: &[u8]) -> Option<(String, String)> {
    let at = member.iter().position(|&b| b == b'=')?;
    let (key, value) = (member.get(..at)?, member.get(at + 1..)?);
    if !is_valid_key(key) || !is_valid_value(value) {
        return None;
    }
    // Both are ASCII now, so the conversions cannot fail.
    Some((ascii(key)?, ascii(value)?))
}

fn ascii(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// `simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or
/// `tenant-id "@" system-id` with `tenant-id = (lcalpha / DIGIT) 0*240(...)` and
/// `system-id = lcalpha 0*13(...)`.
fn is_valid_key(key: &[u8]) -> bool {
    let rest_char = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    let lcalpha = |b: &u8| b.is_ascii_lowercase();
    let lcalpha_or_digit = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match key.iter().position(|&b| b == b'@') {
        None => {
            key.len() <= MAX_KEY_LEN
                && key.first().is_some_and(lcalpha)
                && key.iter().all(rest_char)
        }
        Some(at) => {
            let tenant = key.get(..at).unwrap_or_default();
            let system = key.get(at + 1..).unwrap_or_default();
            tenant.len() <= MAX_TENANT_LEN
                && tenant.first().is_some_and(lcalpha_or_digit)
                && tenant.iter().all(rest_char)
                && system.len() <= MAX_SYSTEM_LEN
                && system.first().is_some_and(lcalpha)
                && system.iter().all(rest_char)
        }
    }
}

/// `value = 0*255(chr) nblk-chr`, `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E`, `chr = %x20 /
/// nblk-chr`.
fn is_valid_value(value: &[u8]) -> bool {
    let chr = |b: &u8| matches!(b, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    value.len() <= MAX_VALUE_LEN
        && value.last().is_some_and(|&b| b != b' ')
        && value.iter().all(chr)
}

#[cfg(test)]
mod tests;
