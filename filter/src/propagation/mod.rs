//! Reading and writing trace context on HTTP headers, one module per format.
//!
//! Every parser is a plain function over the raw header bytes: Envoy hands us arbitrary bytes,
//! so nothing here assumes UTF-8, indexes untrusted input or panics. A value that does not parse
//! is reported as an error the caller counts; the request then starts a fresh trace.

pub mod w3c;
