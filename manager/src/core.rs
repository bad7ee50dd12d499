//! The small handle the manager's parts share: the local store (reads) and
//! the Raft loop (proposals, read barriers). Background loops and
//! operations are given a [`Core`] (it is cheap to clone) instead of the
//! whole [`crate::manager::Manager`], so each can be driven against a store
//! and a Raft loop of its own in tests.

use std::sync::Arc;

use swarmlet_proto::objects::{Cluster, Node, RaftMember};

use crate::ops::{OpsError, OpsResult};
use crate::raft::{ProposeError, RaftHandle};
use crate::store::{Store, Tx};

/// The store and the Raft proposer of one manager.
#[derive(Clone)]
pub struct Core {
    /// This node's ID.
    pub node_id: Arc<str>,
    /// The local copy of the store.
    pub store: Store,
    /// The Raft loop.
    pub raft: RaftHandle,
}

impl Core {
    /// Proposes a transaction.
    pub async fn propose(&self, tx: Tx) -> OpsResult<u64> {
        Ok(self.raft.propose(tx).await?)
    }

    /// Runs a read-modify-write: `build` reads the store and returns the
    /// transaction (with version checks) and a result; retried while another
    /// writer (e.g. a heartbeat) changed a row in between.
    pub async fn update<T>(
        &self,
        mut build: impl FnMut(&Core) -> OpsResult<(Tx, T)>,
    ) -> OpsResult<T> {
        let mut attempt = 0;
        loop {
            let (tx, out) = build(self)?;
            match self.raft.propose(tx).await {
                Ok(_) => return Ok(out),
                Err(ProposeError::Rejected(crate::store::ApplyError::Conflict { .. }))
                    if attempt < 10 =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits for a linearizable read point (leader only).
    pub async fn read_barrier(&self) -> OpsResult<()> {
        self.raft.read_barrier().await?;
        Ok(())
    }

    /// The cluster object.
    pub fn cluster(&self) -> OpsResult<(u64, Cluster)> {
        self.store
            .get::<Cluster>("cluster")?
            .ok_or_else(|| OpsError::Unavailable("cluster state not replicated yet".into()))
    }

    /// Raft members by Raft ID.
    pub fn members(&self) -> OpsResult<Vec<RaftMember>> {
        Ok(self.store.objects::<RaftMember>()?)
    }

    /// Every node.
    pub fn nodes(&self) -> OpsResult<Vec<(u64, Node)>> {
        Ok(self.store.list::<Node>()?)
    }

    /// Whether this manager is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.status().is_leader()
    }
}

/// A [`Core`] of its own for unit tests: a one-manager Raft group over a
/// temporary database, leading.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use raft::eraftpb::Message;
    use swarmlet_proto::objects::RaftMember;

    use super::Core;
    use crate::raft::node::{start, RaftConfig, Transport};
    use crate::raft::storage::SledStorage;
    use crate::store::Store;

    struct NoPeers;

    impl Transport for NoPeers {
        fn send(&self, _msgs: Vec<Message>) {}
        fn set_peers(&self, _members: Vec<RaftMember>) {}
    }

    /// A leading one-manager core (node `m1`); its database goes with it.
    pub async fn one_manager() -> Core {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let key = crate::crypto::test_key();
        let store = Store::open(&db, key.clone()).expect("store");
        let storage = SledStorage::open(db, store.clone(), key).expect("storage");
        storage.bootstrap(1).expect("bootstrap");
        let raft = start(
            RaftConfig::new(1),
            storage,
            store.clone(),
            Arc::new(NoPeers),
        )
        .expect("raft");
        let core = Core {
            node_id: "m1".into(),
            store,
            raft,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !core.is_leader() {
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        core
    }

    /// Polls `check` every 20 ms until it holds, failing after 10 s.
    pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
