//! Forced (debug) traces: a request header that makes the filter sample, whatever the rules say.
//!
//! The header name and what it must carry are configured. Either a plain value, compared in
//! constant time, or an HMAC-SHA256 of the incoming trace id keyed with a shared secret, so that
//! only holders of the secret can force tracing of a trace id they chose:
//!
//! ```text
//! x-meshtrace-force: hex(HMAC-SHA256(secret, "<32 lower-case hex digits of the trace id>"))
//! ```
//!
//! (`printf %s "$TRACE_ID" | openssl dgst -sha256 -hmac "$SECRET"` prints it.) An HMAC needs an
//! incoming trace id: without a valid parent context the request is not forced. The trace id is
//! kept either way.

use crate::trace::TraceId;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Length of an HMAC-SHA256 in hex.
pub const HMAC_HEX_LEN: usize = 64;

/// The forced-trace header and what authenticates it.
#[derive(Clone, PartialEq, Eq)]
pub struct Forced {
    /// Header name, lower case.
    pub header: String,
    /// What its value must be.
    pub auth: ForcedAuth,
}

/// What a forced-trace header value must be.
#[derive(Clone, PartialEq, Eq)]
pub enum ForcedAuth {
    /// Exactly these bytes.
    Value(Vec<u8>),
    /// The hex HMAC-SHA256 of the incoming trace id under this secret.
    HmacSha256(Vec<u8>),
}

/// The result of looking at a request for a forced trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForcedCheck {
    /// The header is absent.
    NotRequested,
    /// The header is present and authentic: sample.
    Accepted,
    /// The header is present but wrong (or an HMAC came without a trace id to check it on).
    Rejected,
}

impl Forced {
    /// Checks the header's `value` (`None`: absent) for a request whose incoming context
    /// carried `incoming_trace_id`.
    pub fn check(&self, value: Option<&[u8]>, incoming_trace_id: Option<TraceId>) -> ForcedCheck {
        let Some(value) = value else {
            return ForcedCheck::NotRequested;
        };
        let authentic = match &self.auth {
            ForcedAuth::Value(expected) => bool::from(value.ct_eq(expected.as_slice())),
            ForcedAuth::HmacSha256(secret) => {
                incoming_trace_id.is_some_and(|id| verify_hmac(secret, id, value))
            }
        };
        if authentic {
            ForcedCheck::Accepted
        } else {
            ForcedCheck::Rejected
        }
    }
}

impl fmt::Debug for Forced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forced")
            .field("header", &self.header)
            .field("auth", &self.auth)
            .finish()
    }
}

impl fmt::Debug for ForcedAuth {
    /// Never prints the value or the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForcedAuth::Value(_) => f.write_str("Value(<redacted>)"),
            ForcedAuth::HmacSha256(_) => f.write_str("HmacSha256(<redacted>)"),
        }
    }
}

/// The header value that forces `trace_id` under `secret`: 64 lower-case hex digits.
pub fn sign(secret: &[u8], trace_id: TraceId) -> String {
    hex::encode(mac(secret, trace_id).finalize().into_bytes())
}

fn mac(secret: &[u8], trace_id: TraceId) -> HmacSha256 {
    // HMAC takes keys of any length; the error branch cannot happen.
    let mut mac =
        HmacSha256::new_from_slice(secret).unwrap_or_else(|_| HmacSha256::new(&Default::default()));
    mac.update(trace_id.to_hex().as_bytes());
    mac
}

/// Constant-time check of a hex tag (either case) against the trace id's HMAC.
fn verify_hmac(secret: &[u8], trace_id: TraceId, value: &[u8]) -> bool {
    if value.len() != HMAC_HEX_LEN {
        return false;
    }
    let Ok(tag) = hex::decode(value) else {
        return false;
    };
    mac(secret, trace_id).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn trace(byte: u8) -> TraceId {
        TraceId::from_bytes([byte; 16]).unwrap()
    }

    fn hmac_forced() -> Forced {
        Forced {
            header: "x-force".to_owned(),
            auth: ForcedAuth::HmacSha256(SECRET.to_vec()),
        }
    }

    #[test]
    fn rfc_4231_test_case_2_vector() {
        // Key "Jefe", data "what do ya want for nothing?": checks the crates are wired right.
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_of_the_trace_id_is_accepted_in_either_case() {
        let forced = hmac_forced();
        let tag = sign(SECRET, trace(7));
        assert_eq!(tag.len(), HMAC_HEX_LEN);
        let check = |v: &str, id| forced.check(Some(v.as_bytes()), id);
        assert_eq!(check(&tag, Some(trace(7))), ForcedCheck::Accepted);
        assert_eq!(
            check(&tag.to_uppercase(), Some(trace(7))),
            ForcedCheck::Accepted
        );
        assert_eq!(
            check(&tag, Some(trace(8))),
            ForcedCheck::Rejected,
            "other trace"
        );
        assert_eq!(
            check(&tag, None),
            ForcedCheck::Rejected,
            "no incoming trace id"
        );
        assert_eq!(check("1", Some(trace(7))), ForcedCheck::Rejected);
        assert_eq!(check(&tag[..63], Some(trace(7))), ForcedCheck::Rejected);
        let mut flipped = tag.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            forced.check(Some(&flipped), Some(trace(7))),
            ForcedCheck::Rejected
        );
        assert_eq!(
            forced.check(None, Some(trace(7))),
            ForcedCheck::NotRequested
        );
        let other_secret = sign(b"another secret, also long enough", trace(7));
        assert_eq!(check(&other_secret, Some(trace(7))), ForcedCheck::Rejected);
    }

    #[test]
    fn plain_value_must_match_exactly() {
        let forced = Forced {
            header: "x-force".to_owned(),
            auth: ForcedAuth::Value(b"on".to_vec()),
        };
        assert_eq!(forced.check(Some(b"on"), None), ForcedCheck::Accepted);
        for bad in [&b"On"[..], b"on ", b"", b"o"] {
            assert_eq!(forced.check(Some(bad), None), ForcedCheck::Rejected);
        }
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let shown = format!("{:?}", hmac_forced());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
