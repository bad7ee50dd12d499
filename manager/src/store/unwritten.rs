//! Applied changes that the state tree has not received yet.
//!
//! Applying a committed entry changes the decoded rows at once, but writing
//! every entry's rows to sled (each value sealed) was the largest part of a
//! write's cost, and the Raft log already holds them durably. So the rows
//! wait here, newest value per key, and reach the state tree at a
//! checkpoint: a delta of many rows per sled value, then the applied index,
//! then an fsync (see [`layout`](super::layout)). The
//! Raft loop starts one on a thread of its own when the log has grown
//! ([`Unwritten::start`]), so that writing a large batch never holds up
//! Raft, and compacts the log only up to a finished one; a clean stop
//! writes the rest ([`Unwritten::write_now`]). After a crash the manager
//! starts from the tree's applied index and raft-rs hands the committed
//! entries after it to be applied again.
//!
//! At most one checkpoint is written at a time, so batches reach the tree
//! in the order of the entries they hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::layout::StateTree;
use super::StoreError;

/// Row writes (`None`: delete) and the applied index not yet in the tree.
#[derive(Default)]
pub(crate) struct Unwritten {
    pending: Mutex<Pending>,
    /// The checkpoint being written, and the index it brings the tree to.
    writer: Mutex<Option<Writer>>,
}

type Writer = JoinHandle<Result<(u64, u64), StoreError>>;

/// Row writes by key (`None`: delete).
type Rows = HashMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Default)]
struct Pending {
    rows: Rows,
    /// The last applied (index, term); kept when the rows are handed to a
    /// checkpoint, forgotten only when a snapshot replaces the tree.
    applied: Option<(u64, u64)>,
    /// Whether `rows` holds anything since the last hand-over.
    dirty: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data stays consistent whatever panicked while holding it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `rows` as of `applied` to the state tree, durably.
fn write(state: &StateTree, rows: Rows, applied: (u64, u64)) -> Result<(u64, u64), StoreError> {
    // Sorted here, on the checkpoint's thread, not while applying.
    state.write_checkpoint(rows.into_iter().collect(), applied)?;
    Ok(applied)
}

impl Unwritten {
    /// Records one applied entry's row writes, in order, and its index/term.
    pub(crate) fn record(
        &self,
        writes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
        applied: (u64, u64),
    ) {
        let mut p = lock(&self.pending);
        p.rows.extend(writes);
        p.applied = Some(applied);
        p.dirty = true;
    }

    /// How many rows wait for the next checkpoint.
    pub(crate) fn len(&self) -> usize {
        lock(&self.pending).rows.len()
    }

    /// The last applied (index, term), if the tree may be behind it.
    pub(crate) fn applied(&self) -> Option<(u64, u64)> {
        lock(&self.pending).applied
    }

    /// Hands what is pending to a checkpoint, if anything is.
    fn take(&self) -> Option<(Rows, (u64, u64))> {
        let mut p = lock(&self.pending);
        let applied = p.applied.filter(|_| p.dirty)?;
        p.dirty = false;
        Some((std::mem::take(&mut p.rows), applied))
    }

    /// Whether a checkpoint is being written.
    pub(crate) fn running(&self) -> bool {
        lock(&self.writer).is_some()
    }

    /// Starts writing what is pending to the state tree on a thread of its own
    /// (nothing if a checkpoint is running or nothing is pending).
    pub(crate) fn start(&self, state: &Arc<StateTree>) -> Result<(), StoreError> {
        let mut writer = lock(&self.writer);
        if writer.is_some() {
            return Ok(());
        }
        let Some((rows, applied)) = self.take() else {
            return Ok(());
        };
        let state = state.clone();
        *writer = Some(
            std::thread::Builder::new()
                .name("checkpoint".into())
                .spawn(move || write(&state, rows, applied))
                .map_err(StoreError::Thread)?,
        );
        Ok(())
    }

    /// The index the running checkpoint brought the tree to, once it has
    /// finished (and made it durable); `wait` blocks until then.
    pub(crate) fn finished(&self, wait: bool) -> Result<Option<(u64, u64)>, StoreError> {
        let mut writer = lock(&self.writer);
        if !writer.as_ref().is_some_and(|w| wait || w.is_finished()) {
            return Ok(None);
        }
        let Some(handle) = writer.take() else {
            return Ok(None);
        };
        match handle.join() {
            Ok(result) => Ok(Some(result?)),
            Err(_) => Err(StoreError::CheckpointPanicked),
        }
    }

    /// Writes everything pending to `tree` now, after any running
    /// checkpoint. Returns the index the tree is at, if it moved.
    pub(crate) fn write_now(&self, state: &StateTree) -> Result<Option<(u64, u64)>, StoreError> {
        let earlier = self.finished(true)?;
        match self.take() {
            Some((rows, applied)) => Ok(Some(write(state, rows, applied)?)),
            None => Ok(earlier),
        }
    }

    /// Forgets everything pending, after any running checkpoint has
    /// finished: the tree is being replaced by a snapshot.
    pub(crate) fn discard(&self) -> Result<(), StoreError> {
        self.finished(true)?;
        let mut p = lock(&self.pending);
        p.rows.clear();
        p.applied = None;
        p.dirty = false;
        Ok(())
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
        let key = crate::crypto::test_key();
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

        assert_eq!(store.checkpoint().expect("checkpoint"), Some((6, 1)));
        assert_eq!(store.checkpoint().expect("nothing left"), None);
        // A checkpoint on its own thread: the tree catches up once it is done.
        let later = Tx::new().create(&node("c"));
        store
            .apply_entry(7, 2, &later.mutations, &[])
            .expect("apply")
            .expect("ok");
        store.start_checkpoint().expect("start");
        assert_eq!(store.checkpoint_finished(true).expect("done"), Some((7, 2)));
        assert!(!store.checkpoint_running());
        assert_eq!(store.applied().expect("applied"), (7, 2));
        let reopened = Store::open(&db, key).expect("reopen");
        assert_eq!(reopened.applied().expect("applied"), (7, 2));
        assert_eq!(reopened.get::<Node>("a").expect("get").expect("a").0, 5);
        assert!(reopened.get::<Node>("b").expect("get").is_none());
        assert!(reopened.get::<Node>("c").expect("get").is_some());
    }
}
