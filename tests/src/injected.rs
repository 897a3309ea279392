//! An independent reading of the trace headers the filter writes upstream (`traceparent`, `b3`,
//! `x-b3-*`, `uber-trace-id`), split by hand and never with the filter's code, shared by the
//! Envoy tests and the wasmtime harness.

/// One written context: (header, trace id, span id, sampling field). Ids are lower-case hex,
/// the trace id padded to 32 digits and the span id to 16. The sampling field is the format's
/// own: `traceparent` flags (`01`), `b3` state (`1`, `0`, `d`), `x-b3-*` (`d` for
/// `X-B3-Flags: 1`, else `X-B3-Sampled`, `?` for neither), `uber-trace-id` flags (`01`, `03`).
pub type Written = (&'static str, String, String, String);

/// Every trace format present in the headers that `header` looks up (by lower-case name).
///
/// # Panics
/// On a value that is not well formed (wrong field count, ids that are not 1 to 32 / 16
/// lower-case hex digits or all zeros): the filter must never write one.
pub fn contexts(header: impl Fn(&str) -> Option<String>) -> Vec<Written> {
    let mut out = Vec::new();
    if let Some(tp) = header("traceparent") {
        let [_, trace, span, flags] = fields(&tp, '-', "traceparent");
        out.push(written("traceparent", &tp, trace, span, flags));
    }
    if let Some(b3) = header("b3") {
        let [trace, span, state] = fields(&b3, '-', "b3");
        out.push(written("b3", &b3, trace, span, state));
    }
    if let (Some(trace), Some(span)) = (header("x-b3-traceid"), header("x-b3-spanid")) {
        let state = match (header("x-b3-sampled"), header("x-b3-flags")) {
            (_, Some(flags)) if flags == "1" => "d".to_owned(),
            (Some(sampled), None) => sampled,
            _ => "?".to_owned(),
        };
        let value = format!("{trace}/{span}");
        out.push(written("x-b3-*", &value, &trace, &span, &state));
    }
    if let Some(uber) = header("uber-trace-id") {
        let [trace, span, _parent, flags] = fields(&uber, ':', "uber-trace-id");
        out.push(written("uber-trace-id", &uber, trace, span, flags));
    }
    out
}

fn fields<'a, const N: usize>(value: &'a str, sep: char, header: &str) -> [&'a str; N] {
    let parts: Vec<&str> = value.split(sep).collect();
    parts
        .try_into()
        .unwrap_or_else(|_| panic!("{header} upstream is not {N} fields: {value:?}"))
}

fn written(header: &'static str, value: &str, trace: &str, span: &str, state: &str) -> Written {
    let id = |id: &str, digits: usize| {
        let ok = (1..=digits).contains(&id.len())
            && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && id.bytes().any(|b| b != b'0');
        assert!(ok, "{header} upstream has a malformed id: {value:?}");
        format!("{id:0>digits$}")
    };
    (header, id(trace, 32), id(span, 16), state.to_owned())
}
