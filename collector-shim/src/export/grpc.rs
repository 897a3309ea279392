//! OTLP/gRPC transport: `TraceService/Export` with tonic (optional gzip, TLS via rustls).

use std::str::FromStr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_types::StatusExt;

use super::retry::{self, Classification};
use super::{Attempt, ExportError, MAX_RESPONSE_BODY_BYTES, ReadyBatch, tls, truncate};
use crate::config::{Compression, ExportConfig};

/// A gRPC channel (connected lazily, reconnecting on its own) and the request metadata.
#[derive(Debug)]
pub struct GrpcTransport {
    client: TraceServiceClient<Channel>,
    metadata: MetadataMap,
    timeout: Duration,
}

impl GrpcTransport {
    /// A lazily connected channel to `config.endpoint`.
    pub fn new(config: &ExportConfig, headers: &[(String, String)]) -> Result<Self, ExportError> {
        let client_error = |message: String| ExportError::Client {
            exporter: config.name.clone(),
            message,
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|e| client_error(format!("endpoint is not a valid URI: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true);
        if config.endpoint.starts_with("https://") {
            tls::install_crypto_provider();
            let mut tls_config = ClientTlsConfig::new().with_native_roots();
            if let Some(ca_file) = &config.tls.ca_file {
                let pem = tls::read_ca_file(ca_file).map_err(|message| ExportError::Tls {
                    exporter: config.name.clone(),
                    message,
                })?;
                tls_config = tls_config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls_config)
                .map_err(|e| ExportError::Tls {
                    exporter: config.name.clone(),
                    message: e.to_string(),
                })?;
        }
        let mut client = TraceServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_RESPONSE_BODY_BYTES)
            .accept_compressed(CompressionEncoding::Gzip);
        if config.compression == Compression::Gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (name, value) in headers {
            let invalid = || client_error(format!("header {name:?} is not valid gRPC metadata"));
            let key = AsciiMetadataKey::from_str(name).map_err(|_| invalid())?;
            let mut value = AsciiMetadataValue::try_from(value.as_str()).map_err(|_| invalid())?;
            value.set_sensitive(true);
            metadata.append(key, value);
        }
        Ok(Self {
            client,
            metadata,
            timeout,
        })
    }

    /// One `Export` call.
    pub async fn attempt(&self, batch: &ReadyBatch) -> Attempt {
        let mut request = tonic::Request::new(batch.request.clone());
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        let mut client = self.client.clone();
        match client.export(request).await {
            Ok(response) => {
                let partial = response.into_inner().partial_success;
                let (rejected, message) = partial
                    .map(|p| {
                        (
                            u64::try_from(p.rejected_spans).unwrap_or(0),
                            p.error_message,
                        )
                    })
                    .unwrap_or_default();
                Attempt {
                    classification: Classification::Success,
                    detail: format!("OK: {}", truncate(&message)),
                    rejected,
                }
            }
            Err(status) => {
                let retry_delay = status
                    .get_details_retry_info()
                    .and_then(|info| info.retry_delay);
                Attempt {
                    classification: retry::classify_grpc(status.code(), retry_delay),
                    detail: format!("{:?}: {}", status.code(), truncate(status.message())),
                    rejected: 0,
                }
            }
        }
    }
}
