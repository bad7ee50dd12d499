//! rustls configurations for Swarmlet's mutual TLS.
//!
//! Every node-to-node connection is TLS 1.3/1.2 with certificates issued by
//! the cluster CA. A node's certificate sits in a [`CertSlot`] that both its
//! server and its clients read at each handshake, so a renewed or re-issued
//! certificate (role change) takes effect without restarting listeners.
//!
//! Servers accept clients without a certificate at the TLS level (a joining
//! node has none yet); each gRPC service then checks the peer's certificate
//! ([`peer_cert_info`]) and only the CA's issuing calls allow none.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::identity::{parse_cert, CertInfo, NodeIdentity, Role};
use crate::tls_base::root_store;
pub use crate::tls_base::{provider, TlsError};
use crate::trust::{DynClientVerifier, DynServerVerifier, TrustSlot};

/// The DNS name every manager certificate carries; clients verify it.
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";

fn certified_key(identity: &NodeIdentity) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}

/// The node's current certificate, shared by its TLS server and clients.
#[derive(Clone, Debug)]
pub struct CertSlot {
    current: Arc<RwLock<Arc<CertifiedKey>>>,
}

impl CertSlot {
    /// A slot holding `identity`'s certificate.
    pub fn new(identity: &NodeIdentity) -> Result<Self, TlsError> {
        Ok(CertSlot {
            current: Arc::new(RwLock::new(certified_key(identity)?)),
        })
    }

    /// Replaces the certificate; new handshakes use it.
    pub fn replace(&self, identity: &NodeIdentity) -> Result<(), TlsError> {
        let key = certified_key(identity)?;
        match self.current.write() {
            Ok(mut guard) => *guard = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
        Ok(())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for CertSlot {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Server side: present the slot's certificate, verify client certificates
/// against the root CA when they are presented.
pub fn server_config(ca_pem: &str, slot: CertSlot) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(&TrustSlot::new(ca_pem, provider())?, slot)
}

/// [`server_config`] trusting what `trust` holds at each handshake.
pub fn server_config_with(
    trust: &TrustSlot,
    slot: CertSlot,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(DynClientVerifier(trust.clone())))
        .with_cert_resolver(Arc::new(slot));
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No resumption: a resumed session would carry the client certificate of
    // the first handshake, and a node's role can change with a new certificate.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Client side with a node certificate: verify the server against the root
/// CA and the manager name, present the slot's certificate.
pub fn client_config(ca_pem: &str, slot: CertSlot) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(&TrustSlot::new(ca_pem, provider())?, slot)
}

/// [`client_config`] trusting what `trust` holds at each handshake.
pub fn client_config_with(
    trust: &TrustSlot,
    slot: CertSlot,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DynServerVerifier(trust.clone())))
        .with_client_cert_resolver(Arc::new(slot));
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Client side for a joining node: the root CA is pinned, no certificate yet.
pub fn anonymous_client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_pem)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Client side used only to download the root CA certificate before joining.
/// It does not verify the server: the caller must check the downloaded
/// certificate against the digest in the join token before trusting it.
pub fn root_fetch_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DigestCheckedLater(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate; see [`root_fetch_client_config`].
#[derive(Debug)]
struct DigestCheckedLater(Arc<CryptoProvider>);

impl ServerCertVerifier for DigestCheckedLater {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a gRPC peer is not allowed to make a call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    /// The peer presented no certificate of this cluster.
    #[error("no cluster certificate presented")]
    NoCertificate,
    /// The certificate does not grant the manager role.
    #[error("node {0} is not a manager: its certificate cannot call this API")]
    NotManager(String),
}

impl From<PeerError> for tonic::Status {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::NoCertificate => tonic::Status::unauthenticated(e.to_string()),
            PeerError::NotManager(_) => tonic::Status::permission_denied(e.to_string()),
        }
    }
}

/// What the verified client certificate of a gRPC request says, if any.
pub fn peer_cert_info<T>(request: &tonic::Request<T>) -> Result<CertInfo, PeerError> {
    let certs = request.peer_certs().ok_or(PeerError::NoCertificate)?;
    let leaf = certs.first().ok_or(PeerError::NoCertificate)?;
    parse_cert(leaf).map_err(|_| PeerError::NoCertificate)
}

/// The peer's certificate, which must grant the manager role.
pub fn require_manager<T>(request: &tonic::Request<T>) -> Result<CertInfo, PeerError> {
    let info = peer_cert_info(request)?;
    if info.role != Role::Manager {
        return Err(PeerError::NotManager(info.node_id));
    }
    Ok(info)
}
