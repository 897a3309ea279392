//! An independent reading of `traceparent` for assertions, deliberately not the filter's own
//! parser: a test must not check the filter with the code under test.

/// The four fields of a version-00 `traceparent`, as lower-case hex strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Traceparent {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits: the span that sent the request.
    pub parent_id: String,
    /// 2 hex digits.
    pub flags: String,
}

impl Traceparent {
    /// Splits a header value the filter wrote; `None` unless it is a well-formed version 00.
    pub fn parse(value: &str) -> Option<Self> {
        let fields: Vec<&str> = value.split('-').collect();
        let [version, trace_id, parent_id, flags] = fields.as_slice() else {
            return None;
        };
        let lower_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let ok = *version == "00"
            && lower_hex(trace_id, 32)
            && lower_hex(parent_id, 16)
            && lower_hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && parent_id.bytes().any(|b| b != b'0');
        ok.then(|| Self {
            trace_id: trace_id.to_string(),
            parent_id: parent_id.to_string(),
            flags: flags.to_string(),
        })
    }

    /// Whether the `sampled` bit is set.
    pub fn sampled(&self) -> bool {
        u8::from_str_radix(&self.flags, 16).is_ok_and(|f| f & 1 == 1)
    }
}
