//! The roots a node trusts, replaceable while its listener and clients run.
//!
//! A root CA rotation (`swarmctl cluster ca --rotate`) changes what every
//! node must trust: first the old and the new root, then the new one only.
//! rustls configurations fix their verifiers when built, so they are built
//! once around a [`TrustSlot`], whose verifiers (server side and client
//! side, from webpki) are swapped whole when the roots change; each
//! handshake reads the current pair.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::tls_base::TlsError;

/// The verifiers of one set of roots.
struct Verifiers {
    pem: String,
    server: Arc<WebPkiServerVerifier>,
    client: Arc<dyn ClientCertVerifier>,
}

/// The node's trusted roots, shared by its TLS server and clients.
#[derive(Clone)]
pub struct TrustSlot {
    current: Arc<RwLock<Arc<Verifiers>>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for TrustSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrustSlot")
    }
}

fn build(pem: &str, provider: &Arc<CryptoProvider>) -> Result<Verifiers, TlsError> {
    let roots = Arc::new(crate::tls_base::root_store(pem)?);
    let server = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    // A joining node has no certificate yet: the services check the peer.
    let client = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    Ok(Verifiers {
        pem: pem.to_string(),
        server,
        client,
    })
}

impl TrustSlot {
    /// Trusts the roots of the PEM bundle `pem`.
    pub fn new(pem: &str, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let v = build(pem, &provider)?;
        Ok(TrustSlot {
            current: Arc::new(RwLock::new(Arc::new(v))),
            provider,
        })
    }

    /// Trusts the roots of `pem` from the next handshake on.
    pub fn replace(&self, pem: &str) -> Result<(), TlsError> {
        let v = Arc::new(build(pem, &self.provider)?);
        match self.current.write() {
            Ok(mut g) => *g = v,
            Err(poisoned) => *poisoned.into_inner() = v,
        }
        Ok(())
    }

    /// The PEM bundle trusted now.
    pub fn pem(&self) -> String {
        self.get().pem.clone()
    }

    fn get(&self) -> Arc<Verifiers> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Verifies servers against the slot's current roots.
#[derive(Debug)]
pub struct DynServerVerifier(pub TrustSlot);

impl ServerCertVerifier for DynServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .get()
            .server
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .server
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .server
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().server.supported_verify_schemes()
    }
}

/// Verifies client certificates (when presented) against the slot's
/// current roots.
#[derive(Debug)]
pub struct DynClientVerifier(pub TrustSlot);

impl ClientCertVerifier for DynClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: Swarmlet's clients present their one certificate anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .get()
            .client
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .client
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .get()
            .client
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().client.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::RootCa;
    use crate::identity::{new_key_and_csr, Role};
    use rustls_pki_types::pem::PemObject;

    fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("pem")
    }

    fn verifies(trust: &TrustSlot, cert_pem: &str) -> bool {
        let certs = chain(cert_pem);
        let name = ServerName::try_from("swarm-manager").expect("name");
        DynServerVerifier(trust.clone())
            .verify_server_cert(&certs[0], &certs[1..], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn a_rotation_is_trusted_across_old_and_new_roots() {
        let old = RootCa::create("c").expect("root");
        let (new, cross) = old.rotate("c").expect("rotate");
        let (_, csr) = new_key_and_csr().expect("csr");
        let sign = |ca: &RootCa| {
            ca.sign_node(
                &csr,
                "n1",
                Role::Manager,
                "c",
                std::time::Duration::from_secs(3600),
            )
            .expect("sign")
        };
        let old_leaf = sign(&old);
        let new_leaf = sign(&new);
        let new_chain = format!("{new_leaf}{cross}");
        let trust = TrustSlot::new(old.cert_pem(), crate::tls_base::provider()).expect("trust");
        // A node that still trusts only the old root accepts the new chain.
        assert!(verifies(&trust, &old_leaf));
        assert!(verifies(&trust, &new_chain));
        assert!(
            !verifies(&trust, &new_leaf),
            "the new root alone is unknown"
        );
        // During the rotation both roots are trusted; at its end only the
        // new one, and old certificates are refused.
        trust
            .replace(&format!("{}{}", old.cert_pem(), new.cert_pem()))
            .expect("both");
        assert!(verifies(&trust, &old_leaf) && verifies(&trust, &new_chain));
        trust.replace(new.cert_pem()).expect("new only");
        assert!(verifies(&trust, &new_chain) && verifies(&trust, &new_leaf));
        assert!(!verifies(&trust, &old_leaf));
        assert_eq!(trust.pem(), new.cert_pem());
    }
}
