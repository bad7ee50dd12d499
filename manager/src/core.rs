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
        Ok(self
            .store
            .list::<RaftMember>()?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
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
