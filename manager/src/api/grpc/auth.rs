//! Who may make a call on the mTLS listener: the caller's certificate says
//! who it is, the store says what it may do **now**.
//!
//! A certificate outlives the facts it was issued for: a demoted manager
//! keeps its manager certificate, a removed node keeps its certificate
//! until it expires. So no decision rests on the certificate's role alone:
//! the caller's node must still be in the store, not removed, and a
//! manager-only call needs the store's role to be manager too (and the
//! certificate's, so that a worker's certificate never calls the control
//! API even while its promotion is under way).
//!
//! Forwarding: a follower forwards calls to the leader under its own
//! certificate and names the node it acts for in [`ON_BEHALF_OF`]. The
//! name is honoured only from a node that is a manager in the store right
//! now; anyone else acts for its own node ID only.
//!
//! Raft messages: the `from` of every message must be a Raft member that
//! belongs to the sender's certificate. A manager that has not caught up
//! yet (no cluster row in its store: it joins and waits for its first
//! snapshot) cannot check that and accepts manager certificates, as before.

use swarmlet_common::identity::{CertInfo, Role};
use swarmlet_common::tls::peer_cert_info;
use swarmlet_proto::objects::{Cluster, Node, NodeRole, RaftMember, RemovedNode};
use tonic::{Request, Status};

use super::ON_BEHALF_OF;
use crate::manager::Manager;
use crate::store::Store;

/// What a call needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any node of the cluster (dispatcher, renewal).
    Member,
    /// A manager (control API, Raft, the secrets key).
    Manager,
}

/// Why the caller, as the store sees it now, may not make the call (a
/// store that cannot be read refuses every call).
fn refuse(store: &Store, cert: &CertInfo, need: Need) -> Option<Status> {
    refuse_by_store(store, cert, need).unwrap_or_else(|e| {
        Some(Status::unavailable(format!(
            "cannot authorize the call: {e}"
        )))
    })
}

fn refuse_by_store(
    store: &Store,
    cert: &CertInfo,
    need: Need,
) -> Result<Option<Status>, crate::store::StoreError> {
    let id = &cert.node_id;
    if store.get_shared::<RemovedNode>(id)?.is_some() {
        return Ok(Some(Status::permission_denied(format!(
            "node {id} was removed from the cluster: its certificate is no longer valid"
        ))));
    }
    let node = store.get_shared::<Node>(id)?;
    if need == Need::Manager {
        if cert.role != Role::Manager {
            return Ok(Some(Status::permission_denied(format!(
                "node {id} is not a manager: its certificate cannot call this API"
            ))));
        }
        match &node {
            Some((_, n)) if n.role() == NodeRole::Manager => {}
            Some(_) => {
                return Ok(Some(Status::permission_denied(format!(
                    "node {id} is no longer a manager: its certificate cannot call this API"
                ))))
            }
            // A manager still catching up knows nobody yet.
            None if store.get_shared::<Cluster>("cluster")?.is_none() => {}
            None => {
                return Ok(Some(Status::permission_denied(format!(
                    "node {id} is not a member of this cluster"
                ))))
            }
        }
    }
    Ok(None)
}

/// The caller's certificate, after checking it against the store for `need`.
pub fn authorize<T>(m: &Manager, request: &Request<T>, need: Need) -> Result<CertInfo, Status> {
    let cert = peer_cert_info(request)?;
    match refuse(&m.store, &cert, need) {
        Some(status) => Err(status),
        None => Ok(cert),
    }
}

/// The node a call acts for: the caller's own, or, when a current manager
/// forwards it, the node it names in [`ON_BEHALF_OF`]. The caller must be
/// a member (see [`authorize`]).
pub fn acting_node<T>(m: &Manager, request: &Request<T>, need: Need) -> Result<String, Status> {
    let cert = authorize(m, request, need)?;
    let named = request
        .metadata()
        .get(ON_BEHALF_OF)
        .and_then(|v| v.to_str().ok());
    let Some(named) = named else {
        return Ok(cert.node_id);
    };
    if named == cert.node_id {
        return Ok(cert.node_id);
    }
    if refuse(&m.store, &cert, Need::Manager).is_some() {
        return Err(Status::permission_denied(format!(
            "node {} may act only for itself",
            cert.node_id
        )));
    }
    Ok(named.to_string())
}

/// Whether Raft message sender `from` belongs to the node of `cert`.
pub fn raft_sender_matches(store: &Store, cert: &CertInfo, from: u64) -> bool {
    match store.get_shared::<RaftMember>(&format!("{from:016x}")) {
        Ok(Some((_, member))) => member.node_id == cert.node_id,
        // Not caught up yet: no member is known to check against.
        Ok(None) => matches!(store.get_shared::<Cluster>("cluster"), Ok(None)),
        Err(_) => false,
    }
}

/// Checks a Raft stream's sender again (a stream outlives a demotion).
pub fn refuse_raft_peer(store: &Store, cert: &CertInfo) -> Option<Status> {
    refuse(store, cert, Need::Manager)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tx;

    fn cert(id: &str, role: Role) -> CertInfo {
        CertInfo {
            node_id: id.into(),
            role,
            cluster_id: "c".into(),
            not_before: 0,
            not_after: i64::MAX,
        }
    }

    fn node(id: &str, role: NodeRole) -> Node {
        let mut n = Node {
            id: id.into(),
            hostname: id.into(),
            ..Default::default()
        };
        n.set_role(role);
        n
    }

    fn store_with(tx: Tx) -> Store {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let store = Store::open(&db, crate::crypto::test_key()).expect("store");
        store
            .apply_entry(1, 1, &tx.into_mutations(), &[])
            .expect("apply")
            .expect("applied");
        store
    }

    #[test]
    fn the_store_decides_not_the_certificate() {
        let store = store_with(
            Tx::new()
                .create(&Cluster {
                    id: "c".into(),
                    ..Default::default()
                })
                .create(&node("m1", NodeRole::Manager))
                .create(&node("demoted", NodeRole::Worker))
                .create(&node("w1", NodeRole::Worker))
                .create(&RemovedNode {
                    id: "gone".into(),
                    ..Default::default()
                })
                .create(&RaftMember {
                    raft_id: 7,
                    node_id: "m1".into(),
                    addr: "a:1".into(),
                }),
        );
        let manager = cert("m1", Role::Manager);
        assert!(refuse(&store, &manager, Need::Manager).is_none());
        // A demoted manager's kept certificate.
        let err = refuse(&store, &cert("demoted", Role::Manager), Need::Manager).expect("denied");
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("no longer a manager"), "{err}");
        // A removed node's certificate, whatever it is used for.
        for need in [Need::Manager, Need::Member] {
            let err = refuse(&store, &cert("gone", Role::Manager), need).expect("denied");
            assert!(err.message().contains("was removed"), "{err}");
        }
        // A worker: member calls only; a stranger: nothing manager-only.
        assert!(refuse(&store, &cert("w1", Role::Worker), Need::Member).is_none());
        assert!(refuse(&store, &cert("w1", Role::Worker), Need::Manager).is_some());
        assert!(refuse(&store, &cert("ghost", Role::Manager), Need::Manager).is_some());
        // Raft senders: only the member that belongs to the certificate.
        assert!(raft_sender_matches(&store, &manager, 7));
        assert!(!raft_sender_matches(&store, &manager, 8));
        assert!(!raft_sender_matches(
            &store,
            &cert("demoted", Role::Manager),
            7
        ));
    }

    #[test]
    fn a_manager_catching_up_accepts_manager_certificates() {
        let store = store_with(Tx::new());
        let manager = cert("m1", Role::Manager);
        assert!(refuse(&store, &manager, Need::Manager).is_none());
        assert!(raft_sender_matches(&store, &manager, 7));
        assert!(refuse(&store, &cert("w", Role::Worker), Need::Manager).is_some());
    }
}
