//! The cluster's root certificate authority.
//!
//! Created at `cluster init`; its certificate and key live in the replicated
//! store so that every manager can sign. Node certificates name the node ID
//! (CN), its role (OU `swarm-manager`/`swarm-worker`) and the cluster (O).

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::identity::Role;

/// Lifetime of a node certificate (Docker Swarm's default is 90 days).
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
const ROOT_CERT_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

/// Failures of the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen could not build, parse or sign a certificate.
    #[error("certificate error: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The certificate signing request is not valid PEM or its signature is wrong.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(rcgen::Error),
    /// The stored root certificate is not valid PEM.
    #[error("invalid root certificate")]
    InvalidRoot,
}

/// The root CA: certificate and signing key.
pub struct RootCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
}

impl RootCa {
    /// Creates a new self-signed root CA for a cluster.
    pub fn create(cluster_id: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let params = root_params(cluster_id, "swarmlet-root-ca");
        let cert = params.self_signed(&key)?;
        Ok(RootCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// A new root to rotate to from `self` (`swarmctl cluster ca --rotate`),
    /// and the new root's certificate cross-signed by `self`: a node
    /// certificate chained with it is trusted by nodes that trust only the
    /// old root, so nodes can move one by one. The new root has a name of
    /// its own, so that chains never mix the two up.
    pub fn rotate(&self, cluster_id: &str) -> Result<(RootCa, String), CaError> {
        let key = KeyPair::generate()?;
        let name = format!("swarmlet-root-ca-{}", &crate::ids::new_id()[..8]);
        let params = root_params(cluster_id, &name);
        let cert = params.self_signed(&key)?;
        let old = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cross = params.signed_by(&key, &old)?;
        Ok((
            RootCa {
                cert_pem: cert.pem(),
                cert_der: cert.der().to_vec(),
                key,
            },
            cross.pem(),
        ))
    }

    /// Loads a root CA from its stored PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = crate::identity::pem_to_der(cert_pem).ok_or(CaError::InvalidRoot)?;
        Ok(RootCa {
            cert_pem: cert_pem.to_string(),
            cert_der,
            key,
        })
    }

    /// The root certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The signing key, PEM (stored in the replicated store, never shown).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Signs a node's CSR: the certificate names `node_id`, `role` and the
    /// cluster, whatever the CSR asked for. Returns the certificate PEM.
    pub fn sign_node(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: Role,
        cluster_id: &str,
        validity: Duration,
    ) -> Result<String, CaError> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::InvalidCsr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        dn.push(DnType::OrganizationalUnitName, role.ou());
        dn.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::DnsName(role.ou().try_into()?),
            SanType::DnsName(node_id.try_into()?),
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        // Back-date a little for clock skew between nodes, but not so much
        // that a short-lived certificate's half-life (renewal point) moves.
        let backdate = (validity / 10).min(Duration::from_secs(300));
        params.not_before = now - backdate;
        params.not_after = now + validity;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cert = params.signed_by(&csr.public_key, &issuer)?;
        Ok(cert.pem())
    }
}

/// The parameters of a root CA certificate named `name`.
fn root_params(cluster_id: &str, name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, cluster_id);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + ROOT_CERT_VALIDITY;
    params
}
