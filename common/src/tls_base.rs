//! What the TLS configurations ([`crate::tls`]) and the trusted roots
//! ([`crate::trust`]) share: the crypto provider, the error type, and root
//! stores parsed from PEM.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Failures building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration or key.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A PEM text did not parse.
    #[error("tls: invalid PEM: {0}")]
    Pem(String),
    /// The client verifier could not be built.
    #[error("tls: {0}")]
    Verifier(String),
}

/// The crypto provider of every Swarmlet TLS configuration.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots in a PEM bundle, as rustls wants them.
pub(crate) fn root_store(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::Pem(e.to_string()))?;
        roots.add(cert)?;
    }
    Ok(roots)
}
