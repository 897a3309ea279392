//! W3C Baggage: application key/value pairs carried in the `baggage` header.
//!
//! Implements <https://www.w3.org/TR/baggage/#header-content>: `key OWS "=" OWS value *(OWS ";"
//! OWS property)`, keys are RFC 7230 tokens, values are baggage octets with percent-encoding
//! (decoded as UTF-8, bad sequences become U+FFFD), properties are `key` or `key=value`. Every
//! header line is combined. An invalid member drops only itself.
//!
//! Limits: the spec requires propagating at least 64 members and 8192 bytes and never a partial
//! member; we keep up to [`MAX_MEMBERS`] members (the grammar's own bound), at most
//! [`MAX_MEMBER_LEN`] bytes each and [`MAX_LEN`] bytes in all, the limits the OpenTelemetry SDKs
//! use. Members past a limit are dropped whole, in order.
//!
//! Members keep their wire form (the value still percent-encoded), so what we forward is
//! byte-for-byte what we received, minus optional whitespace and dropped members.

use super::is_token;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};

/// The header name.
pub const BAGGAGE: &str = "baggage";

/// Most members kept (`baggage-string = list-member 0*179(...)`).
pub const MAX_MEMBERS: usize = 180;

/// Longest member kept, in bytes as serialized (`key=value;properties`).
pub const MAX_MEMBER_LEN: usize = 4_096;

/// Longest baggage string kept, in bytes as serialized.
pub const MAX_LEN: usize = 8_192;

/// Bytes that are not `baggage-octet`s, plus `%` itself: what a decoded value must have
/// percent-encoded. (`utf8_percent_encode` always encodes non-ASCII bytes.)
const NOT_BAGGAGE_OCTET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// Why (part of) the baggage was dropped. Each reason is a separate malformed-input class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaggageError {
    /// A member is outside the grammar; that member was dropped.
    InvalidMember,
    /// A member is longer than [`MAX_MEMBER_LEN`]; that member was dropped.
    MemberTooLong,
    /// More than [`MAX_MEMBERS`] members; the rest were dropped.
    TooManyMembers,
    /// The baggage string would exceed [`MAX_LEN`]; the rest were dropped.
    TooLong,
}

/// One list member, in wire form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    key: String,
    value: String,
    properties: String,
}

/// An ordered baggage list within the limits; keys are unique (a repeated key keeps its first
/// position and its last value, as the OpenTelemetry API's `set` does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baggage {
    members: Vec<Member>,
}

// === impl BaggageError ===

impl BaggageError {
    /// Every reason, for defining one metric each.
    pub const ALL: [BaggageError; 4] = [
        BaggageError::InvalidMember,
        BaggageError::MemberTooLong,
        BaggageError::TooManyMembers,
        BaggageError::TooLong,
    ];

    /// The reason as a metric-name fragment.
    pub fn reason(self) -> &'static str {
        match self {
            BaggageError::InvalidMember => "invalid_member",
            BaggageError::MemberTooLong => "member_too_long",
            BaggageError::TooManyMembers => "too_many_members",
            BaggageError::TooLong => "too_long",
        }
    }
}

// === impl Member ===

impl Member {
    /// The key (a token, never encoded).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value as sent: percent-encoded baggage octets.
    pub fn raw_value(&self) -> &str {
        &self.value
    }

    /// The value percent-decoded; invalid UTF-8 becomes U+FFFD.
    pub fn value(&self) -> String {
        percent_decode(self.value.as_bytes())
            .decode_utf8_lossy()
            .into_owned()
    }

    /// The properties as sent, normalized (`;k=v;flag`, no whitespace), or empty.
    pub fn properties(&self) -> &str {
        &self.properties
    }

    fn serialized_len(&self) -> usize {
        self.key.len() + 1 + self.value.len() + self.properties.len()
    }
}

// === impl Baggage ===

impl Baggage {
    /// Parses every `baggage` header line, keeping what fits the grammar and the limits, and
    /// says what was dropped (each reason once). Never fails.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> (Self, Vec<BaggageError>) {
        let mut baggage = Self::default();
        let mut problems = Vec::new();
        'lines: for line in lines {
            for member in line.split(|&b| b == b',') {
                let member = super::trim_ows(member);
                if member.is_empty() {
                    continue;
                }
                let result = parse_member(member)
                    .ok_or(BaggageError::InvalidMember)
                    .and_then(|m| baggage.push(m));
                match result {
                    Ok(()) => {}
                    Err(e) => {
                        if !problems.contains(&e) {
                            problems.push(e);
                        }
                        if matches!(e, BaggageError::TooManyMembers | BaggageError::TooLong) {
                            break 'lines;
                        }
                    }
                }
            }
        }
        (baggage, problems)
    }

    /// Adds `key` with a plain (decoded) value, percent-encoding it; used for Jaeger's
    /// `uberctx-*` baggage. An existing key is left as it is (the first source wins).
    pub fn insert_decoded(&mut self, key: &str, value: &str) -> Result<(), BaggageError> {
        if !is_token(key.as_bytes()) {
            return Err(BaggageError::InvalidMember);
        }
        if self.get(key).is_some() {
            return Ok(());
        }
        self.push(Member {
            key: key.to_owned(),
            value: utf8_percent_encode(value, NOT_BAGGAGE_OCTET).to_string(),
            properties: String::new(),
        })
    }

    /// The member named `key`.
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.key == key)
    }

    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The `baggage` header value, `None` when empty.
    pub fn to_header(&self) -> Option<String> {
        if self.members.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(self.serialized_len());
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&m.key);
            out.push('=');
            out.push_str(&m.value);
            out.push_str(&m.properties);
        }
        Some(out)
    }

    fn serialized_len(&self) -> usize {
        let members: usize = self.members.iter().map(Member::serialized_len).sum();
        members + self.members.len().saturating_sub(1)
    }

    /// Adds or replaces a member within the limits.
    fn push(&mut self, member: Member) -> Result<(), BaggageError> {
        if member.serialized_len() > MAX_MEMBER_LEN {
            return Err(BaggageError::MemberTooLong);
        }
        let existing = self.members.iter().position(|m| m.key == member.key);
        let (len_without, separator) = match existing.and_then(|at| self.members.get(at)) {
            Some(old) => (self.serialized_len() - old.serialized_len(), 0),
            None if self.members.len() == MAX_MEMBERS => {
                return Err(BaggageError::TooManyMembers);
            }
            None => (self.serialized_len(), usize::from(!self.members.is_empty())),
        };
        if len_without + separator + member.serialized_len() > MAX_LEN {
            return Err(BaggageError::TooLong);
        }
        match existing.and_then(|at| self.members.get_mut(at)) {
            Some(slot) => *slot = member,
            None => self.members.push(member),
        }
        Ok(())
    }
}

/// Parses one trimmed, non-empty member.
fn parse_member(member: &[u8]) -> Option<Member> {
    let mut parts = member.split(|&b| b == b';');
    let (key, value) = parts.next().and_then(key_value)?;
    let value = value?;
    let mut properties = String::new();
    for property in parts {
        let (key, value) = key_value(property)?;
        properties.push(';');
        properties.push_str(key);
        if let Some(value) = value {
            properties.push('=');
            properties.push_str(value);
        }
    }
    Some(Member {
        key: key.to_owned(),
        value: value.to_owned(),
        properties,
    })
}

/// `key OWS "=" OWS value` (value present) or `key OWS` (value absent); `None` if invalid.
fn key_value(part: &[u8]) -> Option<(&str, Option<&str>)> {
    let part = super::trim_ows(part);
    let (key, value) = match part.iter().position(|&b| b == b'=') {
        Some(at) => (
            super::trim_ows(part.get(..at)?),
            Some(super::trim_ows(part.get(at + 1..)?)),
        ),
        None => (part, None),
    };
    if !is_token(key) || !value.is_none_or(|v| v.iter().all(is_baggage_octet)) {
        return None;
    }
    // Tokens and baggage octets are ASCII, so these conversions cannot fail.
    let key = std::str::from_utf8(key).ok()?;
    let value = match value {
        Some(v) => Some(std::str::from_utf8(v).ok()?),
        None => None,
    };
    Some((key, value))
}

/// `baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`.
fn is_baggage_octet(b: &u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

#[cfg(test)]
mod tests;
