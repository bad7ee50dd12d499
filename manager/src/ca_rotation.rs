//! Root CA rotation (`swarmctl cluster ca --rotate`), as Docker Swarm does
//! it, without a moment when two nodes cannot talk:
//!
//! 1. The leader makes a new root, cross-signed by the old one, and makes
//!    it the root that signs; nodes are told to trust both roots.
//! 2. Every node sees, in its heartbeat answer, that certificates now come
//!    from another root and renews its own; the new certificate is chained
//!    with the cross-signed root, so nodes that still trust only the old
//!    root accept it.
//! 3. Once every node's certificate comes from the new root (the CA writes
//!    the signing root's digest in the node's row), the leader retires the
//!    old root: nodes trust the new root alone, and a certificate from the
//!    old root is refused everywhere.
//!
//! Join tokens name the root's digest, so tokens change with the root.

use std::time::Duration;

use swarmlet_common::token::root_digest;
use swarmlet_proto::objects::{Cluster, Node};

use crate::core::Core;
use crate::store::Tx;

/// The roots nodes trust now (PEM bundle).
pub fn trust_roots(c: &Cluster) -> String {
    let pem = if c.trust_roots_pem.is_empty() {
        &c.root_ca_cert_pem
    } else {
        &c.trust_roots_pem
    };
    String::from_utf8_lossy(pem).into_owned()
}

/// Whether a rotation is under way.
pub fn rotating(c: &Cluster) -> bool {
    !c.ca_cross_signed_pem.is_empty()
}

/// Digest of the root that signs now.
pub fn current_digest(c: &Cluster) -> String {
    swarmlet_common::identity::pem_to_der(&String::from_utf8_lossy(&c.root_ca_cert_pem))
        .map(|der| root_digest(&der))
        .unwrap_or_default()
}

/// The nodes whose certificate does not come from the root with `digest`.
pub fn pending(nodes: &[Node], digest: &str) -> usize {
    nodes
        .iter()
        .filter(|n| n.cert_root_digest != digest)
        .count()
}

/// The leader's watch over a rotation: retires the old root once every
/// node moved to the new one.
/// Ends with the Raft loop.
pub async fn run(m: Core) {
    let status = m.raft.watch_status();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if status.has_changed().is_err() {
            return;
        }
        if !m.is_leader() {
            continue;
        }
        let Ok((_, c)) = m.cluster() else { continue };
        if !rotating(&c) {
            continue;
        }
        let Ok(nodes) = m.store.objects::<Node>() else {
            continue;
        };
        if pending(&nodes, &current_digest(&c)) > 0 {
            continue;
        }
        let done = m
            .update(|m| {
                let (version, mut c) = m.cluster()?;
                c.trust_roots_pem = c.root_ca_cert_pem.clone();
                c.ca_cross_signed_pem.clear();
                c.updated_at_ms = swarmlet_common::clock::now_ms();
                Ok((Tx::new().put(&c, Some(version)), ()))
            })
            .await;
        match done {
            Ok(()) => tracing::info!("root CA rotation done: the old root is no longer trusted"),
            Err(e) => tracing::warn!("retiring the old root CA: {}", e),
        }
    }
}
