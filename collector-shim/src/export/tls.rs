//! TLS set-up shared by both transports: rustls with its default `aws-lc-rs` provider (what
//! reqwest's `rustls` feature uses; one provider for the whole process, so no crate in the
//! workspace can end up with an ambiguous or missing provider), the system roots plus an
//! optional extra CA file.

use std::path::Path;

/// Installs `aws-lc-rs` as the process-wide rustls provider for tonic (idempotent; a provider
/// installed earlier by someone else is kept).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Reads a CA bundle, with the file named in the error.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(pem)
}
