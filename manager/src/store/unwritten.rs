//! Applied changes that the state tree has not received yet.
//!
//! Applying a committed entry changes the decoded rows at once, but writing
//! every entry's rows to sled (each value sealed) was the largest part of a
//! write's cost, and the Raft log already holds them durably. So the rows
//! wait here, newest value per key, and reach the state tree in one batch
//! at a checkpoint ([`Store::checkpoint`](super::Store::checkpoint)): before
//! the log is compacted (the log must keep every entry after the tree's
//! applied index), when a snapshot is cut, and when the Raft loop stops.
//! After a crash the manager starts from the tree's applied index and
//! raft-rs hands the committed entries after it to be applied again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::encode_applied;
use super::APPLIED_KEY;
use crate::at_rest::tree::{SealedError, SealedTree};

/// Row writes (`None`: delete) and the applied index not yet in the tree.
#[derive(Default)]
pub(crate) struct Unwritten {
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    rows: HashMap<Vec<u8>, Option<Vec<u8>>>,
    applied: Option<(u64, u64)>,
}

impl Unwritten {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The map stays consistent whatever panicked while holding it.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one applied entry's row writes, in order, and its index/term.
    pub(crate) fn record(
        &self,
        writes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
        applied: (u64, u64),
    ) {
        let mut p = self.lock();
        p.rows.extend(writes);
        p.applied = Some(applied);
    }

    /// The applied (index, term) not yet in the tree, if any.
    pub(crate) fn applied(&self) -> Option<(u64, u64)> {
        self.lock().applied
    }

    /// Writes everything pending to `tree` in one atomic batch. Returns
    /// whether there was anything to write.
    pub(crate) fn write_to(&self, tree: &SealedTree) -> Result<bool, SealedError> {
        let mut p = self.lock();
        let Some((index, term)) = p.applied else {
            return Ok(false);
        };
        let mut batch = tree.batch();
        for (key, value) in p.rows.drain() {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        batch.insert(APPLIED_KEY, &encode_applied(index, term)[..]);
        if let Err(e) = tree.apply_batch(batch) {
            // Nothing reached the tree; the rows are lost from here, so the
            // caller must stop (the log still has them for a restart).
            p.applied = None;
            return Err(e);
        }
        p.applied = None;
        Ok(true)
    }

    /// Forgets everything pending (the tree is being replaced by a snapshot).
    pub(crate) fn discard(&self) {
        let mut p = self.lock();
        p.rows.clear();
        p.applied = None;
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, Tx};
    use swarmlet_proto::objects::Node;

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_tree_receives_applied_rows_only_at_a_checkpoint() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let key = crate::secrets::crypto::test_key();
        let store = Store::open(&db, key.clone()).expect("store");
        let create = Tx::new().create(&node("a")).create(&node("b"));
        store
            .apply_entry(5, 1, &create.mutations, &[])
            .expect("apply")
            .expect("ok");
        let delete = Tx::new().delete::<Node>("b", None);
        store
            .apply_entry(6, 1, &delete.mutations, &[])
            .expect("apply")
            .expect("ok");
        // Reads and the applied index see the entries at once...
        assert_eq!(store.applied().expect("applied"), (6, 1));
        assert!(store.get::<Node>("a").expect("get").is_some());
        // ...the tree does not: a store opened over it starts from before
        // them (the Raft log replays them).
        let reopened = Store::open(&db, key.clone()).expect("reopen");
        assert_eq!(reopened.applied().expect("applied"), (0, 0));
        assert!(reopened.get::<Node>("a").expect("get").is_none());

        assert!(store.checkpoint().expect("checkpoint"));
        assert!(!store.checkpoint().expect("nothing left"));
        let reopened = Store::open(&db, key).expect("reopen");
        assert_eq!(reopened.applied().expect("applied"), (6, 1));
        assert_eq!(reopened.get::<Node>("a").expect("get").expect("a").0, 5);
        assert!(reopened.get::<Node>("b").expect("get").is_none());
    }
}
