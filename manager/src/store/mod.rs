//! The replicated store: typed tables over one sled tree.
//!
//! Rows are keyed `<table>/<key>` and hold a [`Record`] (the object's prost
//! bytes and the log index that last wrote it, its version). Every change
//! arrives as a committed Raft entry and is applied here, in log order, to
//! the decoded rows in memory ([`rows`]), which every read uses; the control
//! API makes reads linearizable with a Raft read index first. The sled tree
//! receives the applied rows at checkpoints ([`unwritten`]), many rows per
//! sled value ([`layout`]: a base and deltas), the applied index last, so
//! the tree always holds the state as of one entry and the Raft log holds
//! every entry after it.

mod apply;
mod layout;
mod rows;
mod tables;
mod unwritten;

pub use apply::{Applied, ApplyError};
pub use tables::{Object, Tx};

use std::sync::Arc;

use crate::at_rest::tree::SealedTree;
use crate::crypto::Key;
use layout::StateTree;

/// The sled tree of the rows.
pub(crate) const STATE_TREE: &str = "state";

/// Key of the applied (index, term) pair in the state tree.
pub(crate) const APPLIED_KEY: &[u8] = b"\0meta/applied";
/// Key of the current Raft ConfState (raft-rs protobuf bytes).
pub(crate) const CONF_STATE_KEY: &[u8] = b"\0meta/conf_state";

/// Failures reading the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed, or a value did not open with the data key.
    #[error("store: {0}")]
    Sealed(#[from] crate::at_rest::tree::SealedError),
    /// A stored row does not decode.
    #[error("store: corrupt row {0}")]
    Corrupt(String),
    /// The checkpoint thread could not be started.
    #[error("store: cannot start the checkpoint thread: {0}")]
    Thread(std::io::Error),
    /// The checkpoint thread panicked; what it held is not in the tree.
    #[error("store: the checkpoint thread panicked")]
    CheckpointPanicked,
    /// A panic while the decoded rows were being changed: they may no
    /// longer match the state tree, so no read is answered from them.
    #[error("store: the in-memory rows were left half-updated by a panic; restart the manager")]
    Poisoned,
}

/// Read access to the local copy of the replicated state.
#[derive(Clone)]
pub struct Store {
    pub(crate) state: Arc<StateTree>,
    /// The rows of `state`, decoded.
    pub(crate) rows: std::sync::Arc<rows::Rows>,
    /// The changes applied to rows that have events (`swarmctl events`).
    pub events: std::sync::Arc<crate::events::EventLog>,
    /// Applied rows not yet written to `state`.
    unwritten: std::sync::Arc<unwritten::Unwritten>,
}

fn row_key(table: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(table.len() + key.len() + 1);
    k.extend_from_slice(table.as_bytes());
    k.push(b'/');
    k.extend_from_slice(key.as_bytes());
    k
}

impl Store {
    /// The store kept in `db`'s `state` tree, its values sealed with `key`.
    pub fn open(db: &sled::Db, key: Arc<Key>) -> Result<Self, StoreError> {
        let store = Store {
            state: Arc::new(StateTree::open(SealedTree::open(db, STATE_TREE, key)?)?),
            rows: Default::default(),
            events: Default::default(),
            unwritten: Default::default(),
        };
        store.rows.load(&store.state)?;
        Ok(store)
    }

    /// Reloads the decoded rows after the state tree was replaced (snapshot).
    pub(crate) fn reload_rows(&self) -> Result<(), StoreError> {
        self.rows.load(&self.state)
    }

    /// Writes the rows applied since the last checkpoint to the state tree
    /// now, then the applied index, and makes them durable
    /// (after any checkpoint still running). Returns the index the tree
    /// is at, if it moved.
    pub fn checkpoint(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.unwritten.write_now(&self.state)
    }

    /// Starts a checkpoint on a thread of its own, unless one is running.
    pub(crate) fn start_checkpoint(&self) -> Result<(), StoreError> {
        self.unwritten.start(&self.state)
    }

    /// How many applied rows the state tree has not received yet.
    pub(crate) fn unwritten_rows(&self) -> usize {
        self.unwritten.len()
    }

    /// Whether a checkpoint is being written.
    pub(crate) fn checkpoint_running(&self) -> bool {
        self.unwritten.running()
    }

    /// The (index, term) a finished checkpoint brought the tree to; `wait`
    /// blocks for a running one.
    pub(crate) fn checkpoint_finished(&self, wait: bool) -> Result<Option<(u64, u64)>, StoreError> {
        self.unwritten.finished(wait)
    }

    /// Drops the applied rows not yet checkpointed, once a running
    /// checkpoint is done: the state tree is being replaced by a snapshot.
    pub(crate) fn discard_unwritten(&self) -> Result<(), StoreError> {
        self.unwritten.discard()
    }

    /// The object `key` of table `T`, with its version.
    pub fn get<T: Object + Clone>(&self, key: &str) -> Result<Option<(u64, T)>, StoreError> {
        Ok(self.rows.get::<T>(key)?.map(|(v, t)| (v, (*t).clone())))
    }

    /// The object `key` of table `T`, shared, not copied.
    pub fn get_shared<T: Object>(
        &self,
        key: &str,
    ) -> Result<Option<(u64, std::sync::Arc<T>)>, StoreError> {
        self.rows.get::<T>(key)
    }

    /// Every object of table `T`, with versions, in key order.
    pub fn list<T: Object + Clone>(&self) -> Result<Vec<(u64, T)>, StoreError> {
        Ok(self
            .rows
            .list::<T>()?
            .into_iter()
            .map(|(v, t)| (v, (*t).clone()))
            .collect())
    }

    /// Every object of table `T`, without the row versions (for reads that
    /// write nothing back).
    pub fn objects<T: Object + Clone>(&self) -> Result<Vec<T>, StoreError> {
        Ok(self
            .rows
            .list::<T>()?
            .into_iter()
            .map(|(_, t)| (*t).clone())
            .collect())
    }

    /// Every object of table `T`, shared, not copied: for passes over
    /// every task.
    pub fn list_shared<T: Object>(&self) -> Result<Vec<(u64, std::sync::Arc<T>)>, StoreError> {
        self.rows.list::<T>()
    }

    /// The index and term of the last applied entry.
    pub fn applied(&self) -> Result<(u64, u64), StoreError> {
        if let Some(applied) = self.unwritten.applied() {
            return Ok(applied);
        }
        self.state.applied()
    }
}

pub(crate) fn encode_applied(index: u64, term: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_be_bytes());
    b[8..].copy_from_slice(&term.to_be_bytes());
    b
}

pub(crate) fn decode_applied(v: &[u8]) -> (u64, u64) {
    let mut i = [0u8; 8];
    let mut t = [0u8; 8];
    if v.len() == 16 {
        i.copy_from_slice(&v[..8]);
        t.copy_from_slice(&v[8..]);
    }
    (u64::from_be_bytes(i), u64::from_be_bytes(t))
}
