//! A node's identity: its private key, its certificate signed by the cluster
//! CA, and the root CA certificate it trusts. Kept in `<state-dir>/certs/`.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, KeyPair};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The role a certificate grants, and a node's role (`manager`/`worker` in
/// JSON, as in a node's state file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May call the control API and take part in Raft.
    Manager,
    /// May only hold a session with the managers.
    Worker,
}

impl Role {
    /// The certificate's organizational unit for this role; also the DNS SAN
    /// a client checks when it dials a manager.
    pub fn ou(self) -> &'static str {
        match self {
            Role::Manager => "swarm-manager",
            Role::Worker => "swarm-worker",
        }
    }

    /// `manager` or `worker`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        }
    }

    /// Parses `manager`/`worker`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "manager" => Some(Role::Manager),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

/// What a certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Node ID (CN).
    pub node_id: String,
    /// Role (OU).
    pub role: Role,
    /// Cluster ID (O).
    pub cluster_id: String,
    /// Expiry, seconds since the epoch.
    pub not_after: i64,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
}

/// Failures reading or writing an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate is not a Swarmlet node certificate.
    #[error("invalid node certificate: {0}")]
    BadCertificate(String),
    /// Key generation or CSR creation failed.
    #[error("key error: {0}")]
    Key(#[from] rcgen::Error),
    /// A file could not be written privately.
    #[error(transparent)]
    Write(#[from] crate::private_fs::PrivateFsError),
}

/// The first certificate of a PEM text, as DER.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

/// Reads node ID, role and cluster from a DER certificate.
pub fn parse_cert(der: &[u8]) -> Result<CertInfo, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let subject = cert.subject();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let node_id = first(&mut subject.iter_common_name())
        .ok_or_else(|| IdentityError::BadCertificate("no common name".into()))?;
    let ou = first(&mut subject.iter_organizational_unit())
        .ok_or_else(|| IdentityError::BadCertificate("no organizational unit".into()))?;
    let role = match ou.as_str() {
        "swarm-manager" => Role::Manager,
        "swarm-worker" => Role::Worker,
        other => {
            return Err(IdentityError::BadCertificate(format!(
                "unknown role {other}"
            )))
        }
    };
    let cluster_id = first(&mut subject.iter_organization()).unwrap_or_default();
    Ok(CertInfo {
        node_id,
        role,
        cluster_id,
        not_after: cert.validity().not_after.timestamp(),
        not_before: cert.validity().not_before.timestamp(),
    })
}

/// A fresh key and a CSR for it (the CA decides the certificate's contents).
pub fn new_key_and_csr() -> Result<(KeyPair, String), IdentityError> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::default()
        .serialize_request(&key)?
        .pem()?;
    Ok((key, csr))
}

/// A node's key, certificate and trusted root, all PEM.
#[derive(Clone)]
pub struct NodeIdentity {
    /// Root CA certificate.
    pub ca_pem: String,
    /// This node's certificate.
    pub cert_pem: String,
    /// This node's private key.
    pub key_pem: String,
    /// What the certificate says.
    pub info: CertInfo,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("info", &self.info)
            .finish()
    }
}

impl NodeIdentity {
    /// Builds an identity from PEM parts, checking the certificate.
    pub fn new(ca_pem: String, cert_pem: String, key_pem: String) -> Result<Self, IdentityError> {
        let der =
            pem_to_der(&cert_pem).ok_or_else(|| IdentityError::BadCertificate("not PEM".into()))?;
        let info = parse_cert(&der)?;
        Ok(NodeIdentity {
            ca_pem,
            cert_pem,
            key_pem,
            info,
        })
    }

    /// Loads the identity from `dir` (ca.crt, node.crt, node.key), if present.
    pub fn load(dir: &Path) -> Result<Option<Self>, IdentityError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| IdentityError::Io { path, source })
        };
        if !dir.join("node.crt").exists() {
            return Ok(None);
        }
        Ok(Some(Self::new(
            read("ca.crt")?,
            read("node.crt")?,
            read("node.key")?,
        )?))
    }

    /// Writes the identity to `dir` (0700), each file 0600 and atomically.
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        for (name, body) in [
            ("ca.crt", &self.ca_pem),
            ("node.crt", &self.cert_pem),
            ("node.key", &self.key_pem),
        ] {
            crate::private_fs::write_atomic(&dir.join(name), body.as_bytes())?;
        }
        Ok(())
    }

    /// Whether the certificate is past half its lifetime and should be renewed.
    pub fn needs_renewal(&self, now_s: i64) -> bool {
        let lifetime = self.info.not_after - self.info.not_before;
        now_s >= self.info.not_before + lifetime / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{RootCa, NODE_CERT_VALIDITY};

    #[test]
    fn signed_certificate_names_node_role_and_cluster() {
        let ca = RootCa::create("cluster1").expect("ca");
        let (key, csr) = new_key_and_csr().expect("csr");
        let cert = ca
            .sign_node(&csr, "node1", Role::Worker, "cluster1", NODE_CERT_VALIDITY)
            .expect("sign");
        let id = NodeIdentity::new(ca.cert_pem().into(), cert, key.serialize_pem()).expect("id");
        assert_eq!(id.info.node_id, "node1");
        assert_eq!(id.info.role, Role::Worker);
        assert_eq!(id.info.cluster_id, "cluster1");
        assert!(!id.needs_renewal(crate::clock::now_ms() / 1000));

        let dir = tempfile::tempdir().expect("tempdir");
        id.save(dir.path()).expect("save");
        let back = NodeIdentity::load(dir.path())
            .expect("load")
            .expect("present");
        assert_eq!(back.info, id.info);
    }

    #[test]
    fn garbage_csr_is_refused() {
        let ca = RootCa::create("c").expect("ca");
        assert!(ca
            .sign_node("nope", "n", Role::Manager, "c", NODE_CERT_VALIDITY)
            .is_err());
    }
}
