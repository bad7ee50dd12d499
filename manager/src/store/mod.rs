//! The replicated store: typed tables over one sled tree.
//!
//! Rows are keyed `<table>/<key>` and hold a [`Record`] (the object's prost
//! bytes and the log index that last wrote it, its version). Every change
//! arrives as a committed Raft entry and is applied here, in log order, as
//! one atomic sled batch together with the applied index, so a crash never
//! leaves a half-applied entry. Reads come from the local copy; the control
//! API makes them linearizable with a Raft read index first.

mod apply;
mod tables;

pub use apply::{Applied, ApplyError};
pub use tables::{Object, Tx};

use prost::Message;
use swarmlet_proto::store::Record;

/// Key of the applied (index, term) pair in the state tree.
pub(crate) const APPLIED_KEY: &[u8] = b"\0meta/applied";
/// Key of the current Raft ConfState (raft-rs protobuf bytes).
pub(crate) const CONF_STATE_KEY: &[u8] = b"\0meta/conf_state";

/// Failures reading the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored row does not decode.
    #[error("store: corrupt row {0}")]
    Corrupt(String),
}

/// Read access to the local copy of the replicated state.
#[derive(Clone)]
pub struct Store {
    pub(crate) state: sled::Tree,
    /// The changes applied to rows that have events (`swarmctl events`).
    pub events: std::sync::Arc<crate::events::EventLog>,
}

fn row_key(table: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(table.len() + key.len() + 1);
    k.extend_from_slice(table.as_bytes());
    k.push(b'/');
    k.extend_from_slice(key.as_bytes());
    k
}

impl Store {
    /// The store kept in `db`'s `state` tree.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Store {
            state: db.open_tree("state")?,
            events: Default::default(),
        })
    }

    /// The object `key` of table `T`, with its version.
    pub fn get<T: Object>(&self, key: &str) -> Result<Option<(u64, T)>, StoreError> {
        match self.state.get(row_key(T::TABLE, key))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(decode::<T>(&bytes, key)?)),
        }
    }

    /// Every object of table `T`, with versions, in key order.
    pub fn list<T: Object>(&self) -> Result<Vec<(u64, T)>, StoreError> {
        let prefix = row_key(T::TABLE, "");
        self.state
            .scan_prefix(&prefix)
            .map(|row| {
                let (k, v) = row?;
                decode::<T>(&v, &String::from_utf8_lossy(&k))
            })
            .collect()
    }

    /// The index and term of the last applied entry.
    pub fn applied(&self) -> Result<(u64, u64), StoreError> {
        Ok(self
            .state
            .get(APPLIED_KEY)?
            .map(|v| decode_applied(&v))
            .unwrap_or((0, 0)))
    }
}

fn decode<T: Object>(bytes: &[u8], key: &str) -> Result<(u64, T), StoreError> {
    let record = Record::decode(bytes).map_err(|_| StoreError::Corrupt(key.to_string()))?;
    let obj =
        T::decode(record.data.as_slice()).map_err(|_| StoreError::Corrupt(key.to_string()))?;
    Ok((record.version, obj))
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
