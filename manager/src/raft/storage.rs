//! raft-rs [`Storage`] backed by sled.
//!
//! Trees: `raft_log` (index, big-endian → `Entry`), `raft_meta` (HardState and
//! the metadata of the last compaction point). The ConfState and the applied
//! index live in the state tree next to the rows they describe, so that the
//! state tree itself *is* the snapshot: a snapshot is cut from it on demand
//! (after a checkpoint brings it up to the applied index) and installing
//! one replaces it wholesale. The tree receives applied rows only at
//! checkpoints (see `store::unwritten`), and the log is compacted only up
//! to a checkpoint, so the log always holds every entry after the tree's
//! applied index: a restart replays them.
//!
//! Writes are buffered by sled; [`SledStorage::persist`] makes them durable
//! with one fsync, which the Ready loop calls when a Ready brings entries
//! or a new term or vote.
//!
//! Crash consistency: sled recovers a prefix of its writes, and the Ready
//! loop writes the HardState (with the commit index) before it applies
//! committed entries, and checkpoints only after applying them, so the
//! tree's applied index never gets ahead of the durable commit index in
//! the normal course. A snapshot install writes the state
//! tree (applied index included) before the log and the HardState; a crash
//! in between leaves applied > commit, which raft-rs refuses at start-up
//! (it panics). [`SledStorage::open`] therefore repairs that shape first:
//! what was applied was committed, so the commit index is raised to it
//! (and an install cut short is finished: the state tree *is* the snapshot).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message as _;
use protobuf::Message as PbMessage;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, HardState, Snapshot, SnapshotMetadata,
};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use swarmlet_proto::store::{KeyValue, SnapshotData};

use crate::at_rest::tree::{SealedError, SealedTree};
use crate::crypto::Key;
use crate::store::{encode_applied, Store, APPLIED_KEY, CONF_STATE_KEY};

/// The sled tree of the Raft log.
pub(crate) const LOG_TREE: &str = "raft_log";

const HARD_STATE_KEY: &[u8] = b"hard_state";
const COMPACTED_KEY: &[u8] = b"compacted";

/// Failures of the Raft storage outside raft-rs calls.
#[derive(Debug, thiserror::Error)]
pub enum RaftStorageError {
    /// sled failed.
    #[error("raft storage: {0}")]
    Sled(#[from] sled::Error),
    /// A sealed value did not open (or could not be sealed).
    #[error("raft storage: {0}")]
    Sealed(#[from] SealedError),
    /// A stored protobuf does not decode.
    #[error("raft storage: corrupt {0}")]
    Corrupt(&'static str),
    /// The installed state does not load.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The Raft log, hard state and snapshots of one manager, in sled.
pub struct SledStorage {
    db: sled::Db,
    /// Entries, sealed with the data key.
    log: SealedTree,
    /// HardState and compaction point (no cluster data: not sealed).
    meta: sled::Tree,
    store: Store,
    /// The last snapshot cut, reused while nothing new was applied.
    snapshot_cache: Mutex<Option<Snapshot>>,
    /// Terms of log entries by index, so that raft-rs asking for a term
    /// (on every Ready) does not open a sealed entry.
    terms: Mutex<BTreeMap<u64, u64>>,
    /// The log's bounds, cached (raft-rs asks for them several times per
    /// Ready); `None` until read, and again after any change but an append.
    bounds: Mutex<Option<Bounds>>,
    /// Compacted entries at or below this index may still be in the log
    /// tree, waiting for [`trim`](SledStorage::trim); 0: none.
    trim_goal: Mutex<u64>,
}

/// Compacted entries removed per [`SledStorage::trim`] call: a few
/// milliseconds of the Ready loop's time, not one long stall.
pub const TRIM_STEP: usize = 512;

/// Where the log starts and ends.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// The last compacted entry's index and term.
    compacted: (u64, u64),
    /// The last entry's index, if the log holds any.
    last: Option<u64>,
}

fn storage_err(e: sled::Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl SledStorage {
    /// Opens the storage in `db`, its log sealed with `key` (the store's).
    pub fn open(db: sled::Db, store: Store, key: Arc<Key>) -> Result<Self, RaftStorageError> {
        let storage = SledStorage {
            log: SealedTree::open(&db, LOG_TREE, key)?,
            meta: db.open_tree("raft_meta")?,
            db,
            store,
            snapshot_cache: Mutex::new(None),
            terms: Mutex::new(BTreeMap::new()),
            bounds: Mutex::new(None),
            trim_goal: Mutex::new(0),
        };
        // Left over by a stop in the middle of trimming.
        *storage.trim_goal() = storage.compacted()?.index;
        storage.repair_applied_beyond_commit()?;
        Ok(storage)
    }

    fn bounds_cache(&self) -> MutexGuard<'_, Option<Bounds>> {
        // A plain cache, like `terms`.
        self.bounds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The log's bounds, from the cache or read once.
    fn bounds(&self) -> Result<Bounds, RaftStorageError> {
        if let Some(b) = *self.bounds_cache() {
            return Ok(b);
        }
        let c = self.compacted()?;
        let b = Bounds {
            compacted: (c.index, c.term),
            last: self.last_log_index()?,
        };
        *self.bounds_cache() = Some(b);
        Ok(b)
    }

    /// Drops the cached bounds after the log or its compaction point changed.
    fn forget_bounds(&self) {
        *self.bounds_cache() = None;
    }

    fn trim_goal(&self) -> MutexGuard<'_, u64> {
        self.trim_goal.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn terms(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        // A plain cache: whatever panicked while holding it left it usable.
        self.terms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raises the commit index to the applied index when a crash left the
    /// state ahead of the HardState (see the module doc). Returns the index
    /// repaired to, if anything was wrong.
    fn repair_applied_beyond_commit(&self) -> Result<Option<u64>, RaftStorageError> {
        // No applied index stored reads as 0, never beyond the commit.
        let (applied, applied_term) = self.store.state.applied()?;
        let mut hs = self.hard_state()?;
        if applied <= hs.commit {
            return Ok(None);
        }
        let last = match self.last_log_index()? {
            Some(i) => i,
            None => self.compacted()?.index,
        };
        if last < applied {
            // A snapshot's install stopped after the state tree: the log
            // still describes the past; finish the install.
            self.log.clear()?;
            self.terms().clear();
            self.set_compacted(&SnapshotMetadata {
                index: applied,
                term: applied_term,
                ..Default::default()
            })?;
        }
        tracing::warn!(
            applied,
            commit = hs.commit,
            "raft storage: applied index ahead of the commit index (a crash between \
             the two writes); commit index raised to it"
        );
        hs.commit = applied;
        hs.term = hs.term.max(applied_term);
        self.set_hard_state(&hs)?;
        self.persist()?;
        Ok(Some(applied))
    }

    /// Whether this storage has never been part of a Raft group.
    pub fn is_empty(&self) -> Result<bool, RaftStorageError> {
        Ok(self.meta.is_empty() && self.log.is_empty() && self.conf_state()?.voters.is_empty())
    }

    /// Makes a brand-new single-voter group: this node at index 1, term 1.
    pub fn bootstrap(&self, raft_id: u64) -> Result<(), RaftStorageError> {
        let mut meta = SnapshotMetadata {
            index: 1,
            term: 1,
            ..Default::default()
        };
        meta.mut_conf_state().voters = vec![raft_id];
        self.set_compacted(&meta)?;
        let hs = HardState {
            term: 1,
            commit: 1,
            ..Default::default()
        };
        self.set_hard_state(&hs)?;
        self.store.state.set_meta(&[
            (APPLIED_KEY, &encode_applied(1, 1)[..]),
            (CONF_STATE_KEY, &pb_bytes(meta.get_conf_state())),
        ])?;
        self.persist()
    }

    /// Disaster recovery of a lost quorum (`swarmd --force-new-cluster`):
    /// turns this member's copy into a one-voter group of `raft_id` without
    /// losing anything that was committed. Entries past the commit index
    /// (never acknowledged) are dropped; one committed `RemoveNode` entry
    /// per other member is appended, so the Ready loop applies them like
    /// any membership change (the members' rows go, the voters shrink to
    /// this node), after which it elects itself. Returns the removed Raft
    /// IDs (empty: already alone, nothing written).
    pub fn force_new_cluster(&self, raft_id: u64) -> Result<Vec<u64>, RaftStorageError> {
        let mut hs = self.hard_state()?;
        let compacted = self.compacted()?;
        let commit = hs.commit.max(compacted.index);
        // Members: the applied configuration plus any committed, not yet
        // applied addition still in the log.
        let cs = self.conf_state()?;
        let mut members: std::collections::BTreeSet<u64> = cs
            .voters
            .iter()
            .chain(cs.learners.iter())
            .copied()
            .collect();
        let mut last_term = compacted.term;
        // Entries at or below the compaction point may still wait for
        // `trim`; the ConfState already holds what they changed.
        let from = compacted.index + 1;
        for row in self.log.range(from.to_be_bytes()..=commit.to_be_bytes()) {
            let (_, v) = row?;
            let e = Entry::parse_from_bytes(&v).map_err(|_| RaftStorageError::Corrupt("log"))?;
            last_term = e.term;
            if e.get_entry_type() == raft::eraftpb::EntryType::EntryConfChange {
                let cc = ConfChange::parse_from_bytes(&e.data)
                    .map_err(|_| RaftStorageError::Corrupt("conf change"))?;
                match cc.get_change_type() {
                    ConfChangeType::RemoveNode => members.remove(&cc.node_id),
                    _ => members.insert(cc.node_id),
                };
            }
        }
        members.remove(&raft_id);
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let term = hs.term.max(last_term);
        let mut entries = Vec::new();
        for (i, id) in members.iter().enumerate() {
            let cc = ConfChange {
                change_type: ConfChangeType::RemoveNode,
                node_id: *id,
                ..Default::default()
            };
            let mut e = Entry {
                term,
                index: commit + 1 + i as u64,
                ..Default::default()
            };
            e.set_entry_type(raft::eraftpb::EntryType::EntryConfChange);
            e.data = pb_bytes(&cc).into();
            entries.push(e);
        }
        // `append` drops the uncommitted suffix the new entries replace.
        self.append(&entries)?;
        hs.term = term;
        hs.commit = commit + entries.len() as u64;
        // A vote cast in the old group means nothing in the new one.
        hs.vote = 0;
        self.set_hard_state(&hs)?;
        self.persist()?;
        Ok(members.into_iter().collect())
    }

    /// fsync everything written so far.
    pub fn persist(&self) -> Result<(), RaftStorageError> {
        self.db.flush()?;
        Ok(())
    }

    fn conf_state(&self) -> Result<ConfState, RaftStorageError> {
        match self.store.state.meta(CONF_STATE_KEY)? {
            None => Ok(ConfState::default()),
            Some(b) => {
                ConfState::parse_from_bytes(&b).map_err(|_| RaftStorageError::Corrupt("conf state"))
            }
        }
    }

    fn hard_state(&self) -> Result<HardState, RaftStorageError> {
        match self.meta.get(HARD_STATE_KEY)? {
            None => Ok(HardState::default()),
            Some(b) => {
                HardState::parse_from_bytes(&b).map_err(|_| RaftStorageError::Corrupt("hard state"))
            }
        }
    }

    fn compacted(&self) -> Result<SnapshotMetadata, RaftStorageError> {
        match self.meta.get(COMPACTED_KEY)? {
            None => Ok(SnapshotMetadata::default()),
            Some(b) => SnapshotMetadata::parse_from_bytes(&b)
                .map_err(|_| RaftStorageError::Corrupt("compaction point")),
        }
    }

    fn set_compacted(&self, meta: &SnapshotMetadata) -> Result<(), RaftStorageError> {
        self.meta.insert(COMPACTED_KEY, pb_bytes(meta))?;
        self.forget_bounds();
        Ok(())
    }

    /// Records the HardState (durable at the next [`persist`](Self::persist)).
    pub fn set_hard_state(&self, hs: &HardState) -> Result<(), RaftStorageError> {
        self.meta.insert(HARD_STATE_KEY, pb_bytes(hs))?;
        Ok(())
    }

    /// Records a new commit index in the HardState.
    pub fn set_commit(&self, commit: u64) -> Result<(), RaftStorageError> {
        let mut hs = self.hard_state()?;
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Stores the ConfState after a conf change was applied.
    pub fn set_conf_state(&self, cs: &ConfState) -> Result<(), RaftStorageError> {
        self.store
            .state
            .set_meta(&[(CONF_STATE_KEY, &pb_bytes(cs))])?;
        Ok(())
    }

    /// Appends entries, dropping any conflicting suffix of the log.
    ///
    /// Entries go in one insert each, in index order, and a conflicting
    /// suffix is removed one entry at a time, last first, never as a sled
    /// batch: a batch takes sled's exclusive lock, which waits for every
    /// other sled call of the process (and hung managers for good, see
    /// docs/design/raft.md). Nothing is lost by it: sled recovers a prefix
    /// of its writes, and any prefix of "drop the suffix from its end, then
    /// append in order" is a log raft-rs accepts (what is missing was not
    /// yet acknowledged).
    pub fn append(&self, entries: &[Entry]) -> Result<(), RaftStorageError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let bounds = self.bounds()?;
        if bounds.last.is_some_and(|l| l >= first.index) {
            // Last entry first: every prefix of these removals leaves a
            // log without holes (its old tail, shorter).
            let doomed: Vec<sled::IVec> = self
                .log
                .keys_in(first.index.to_be_bytes()..)
                .collect::<Result<_, _>>()?;
            self.forget_bounds();
            for k in doomed.into_iter().rev() {
                self.log.remove(k)?;
            }
        }
        {
            let mut terms = self.terms();
            terms.split_off(&first.index);
            terms.extend(entries.iter().map(|e| (e.index, e.term)));
        }
        for e in entries {
            if let Err(err) = self.log.insert(e.index.to_be_bytes(), pb_bytes(e)) {
                self.forget_bounds();
                return Err(err.into());
            }
        }
        let mut cache = self.bounds_cache();
        *cache = cache.map(|b| Bounds {
            last: Some(last.index),
            ..b
        });
        Ok(())
    }

    /// Drops log entries up to and including `index` (already applied):
    /// moves the compaction point, after which raft-rs never asks for
    /// them, and leaves their removal from the tree to [`trim`](Self::trim),
    /// a step at a time. (One batch removing the ~10,000 entries of a
    /// compaction took sled's exclusive lock for 1.6 s under load, and
    /// every manager of the process lost its heartbeats meanwhile.)
    pub fn compact(&self, index: u64) -> Result<(), RaftStorageError> {
        let compacted = self.compacted()?;
        if index <= compacted.index {
            return Ok(());
        }
        let term = self
            .entry(index)?
            .map(|e| e.term)
            .ok_or(RaftStorageError::Corrupt("log"))?;
        let mut meta = compacted;
        meta.index = index;
        meta.term = term;
        self.set_compacted(&meta)?;
        {
            let mut terms = self.terms();
            *terms = terms.split_off(&(index + 1));
        }
        *self.trim_goal() = index;
        self.trim(TRIM_STEP)?;
        Ok(())
    }

    /// Removes up to `max` compacted entries from the log tree, one remove
    /// each (a batch would take sled's exclusive lock: see
    /// [`append`](Self::append)). Returns whether some remain. Cheap when
    /// there is nothing to remove: the Ready loop calls it every turn.
    pub fn trim(&self, max: usize) -> Result<bool, RaftStorageError> {
        let goal = *self.trim_goal();
        if goal == 0 {
            return Ok(false);
        }
        let keys = self
            .log
            .keys_in(..=goal.to_be_bytes())
            .take(max + 1)
            .collect::<Result<Vec<_>, _>>()?;
        let more = keys.len() > max;
        for k in keys.into_iter().take(max) {
            self.log.remove(k)?;
        }
        if !more {
            let mut g = self.trim_goal();
            if *g == goal {
                *g = 0;
            }
        }
        Ok(more)
    }

    /// Number of entries in the log.
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Installs a snapshot received from the leader: replaces the state tree,
    /// empties the log, moves the compaction point to the snapshot.
    pub fn apply_snapshot(&self, snap: &Snapshot) -> Result<(), RaftStorageError> {
        let meta = snap.get_metadata();
        let data = SnapshotData::decode(snap.get_data())
            .map_err(|_| RaftStorageError::Corrupt("snapshot data"))?;
        self.store.discard_unwritten()?;
        self.store.state.replace(
            data.rows.into_iter().map(|kv| (kv.key, kv.value)).collect(),
            &[
                (APPLIED_KEY, &encode_applied(meta.index, meta.term)[..]),
                (CONF_STATE_KEY, &pb_bytes(meta.get_conf_state())),
            ],
        )?;
        self.log.clear()?;
        self.terms().clear();
        // `set_compacted` forgets the cached bounds.
        let compacted = SnapshotMetadata {
            index: meta.index,
            term: meta.term,
            ..Default::default()
        };
        self.set_compacted(&compacted)?;
        let mut hs = self.hard_state()?;
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        self.set_hard_state(&hs)?;
        if let Ok(mut cache) = self.snapshot_cache.lock() {
            *cache = None;
        }
        self.store.reload_rows()?;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Option<Entry>, RaftStorageError> {
        match self.log.get(index.to_be_bytes())? {
            None => Ok(None),
            Some(b) => Entry::parse_from_bytes(&b)
                .map(Some)
                .map_err(|_| RaftStorageError::Corrupt("entry")),
        }
    }

    fn last_log_index(&self) -> Result<Option<u64>, RaftStorageError> {
        Ok(self.log.last_key()?.map(|k| be_u64(&k)))
    }

    /// Cuts a snapshot for member `to` from the state tree, at the tree's
    /// applied index (the last checkpoint's: the log still holds every
    /// entry after it). None while a checkpoint is being written (the tree
    /// must not change under the walk), and when the tree is too old to
    /// name `to` as a member (raft-rs would refuse that snapshot): a
    /// checkpoint is started, and raft-rs asks again at its next heartbeat.
    fn cut_snapshot(&self, to: u64) -> Result<Option<Snapshot>, RaftStorageError> {
        if self.store.checkpoint_running() {
            return Ok(None);
        }
        let cs = self.conf_state()?;
        let member = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .any(|id| *id == to);
        if to != 0 && !member {
            self.store.start_checkpoint()?;
            return Ok(None);
        }
        let (index, term) = self.store.state.applied()?;
        if let Ok(cache) = self.snapshot_cache.lock() {
            if let Some(s) = cache.as_ref().filter(|s| s.get_metadata().index == index) {
                return Ok(Some(s.clone()));
            }
        }
        let mut data = SnapshotData::default();
        self.store.state.for_each_row(|key, value| {
            data.rows.push(KeyValue {
                key,
                value,
                deleted: false,
            });
            Ok(())
        })?;
        let mut snap = Snapshot::default();
        snap.set_data(data.encode_to_vec().into());
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(cs);
        if let Ok(mut cache) = self.snapshot_cache.lock() {
            *cache = Some(snap.clone());
        }
        Ok(Some(snap))
    }
}

fn pb_bytes<M: PbMessage>(m: &M) -> Vec<u8> {
    // Encoding a well-formed in-memory protobuf message into a Vec cannot fail.
    m.write_to_bytes().unwrap_or_default()
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    if b.len() == 8 {
        a.copy_from_slice(b);
    }
    u64::from_be_bytes(a)
}

fn to_raft<T>(r: Result<T, RaftStorageError>) -> raft::Result<T> {
    r.map_err(|e| match e {
        RaftStorageError::Sled(s) => storage_err(s),
        RaftStorageError::Sealed(SealedError::Sled(s)) => storage_err(s),
        other => raft::Error::Store(StorageError::Other(Box::new(other))),
    })
}

impl Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            to_raft(self.hard_state())?,
            to_raft(self.conf_state())?,
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low <= to_raft(self.bounds())?.compacted.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for row in self.log.range(low.to_be_bytes()..high.to_be_bytes()) {
            let (_, v) = to_raft(row.map_err(RaftStorageError::from))?;
            let e = Entry::parse_from_bytes(&v)
                .map_err(|_| raft::Error::Store(StorageError::Unavailable))?;
            size += u64::from(e.compute_size());
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(e);
        }
        if out.len() as u64 != high - low && max_size.is_none() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let (compacted, compacted_term) = to_raft(self.bounds())?.compacted;
        if idx == compacted {
            return Ok(compacted_term);
        }
        if idx < compacted {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if let Some(term) = self.terms().get(&idx) {
            return Ok(*term);
        }
        match to_raft(self.entry(idx))? {
            Some(e) => {
                self.terms().insert(idx, e.term);
                Ok(e.term)
            }
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(to_raft(self.bounds())?.compacted.0 + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        let bounds = to_raft(self.bounds())?;
        Ok(bounds.last.unwrap_or(bounds.compacted.0))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let Some(snap) = to_raft(self.cut_snapshot(to))? else {
            return Err(unavailable);
        };
        if snap.get_metadata().index < request_index {
            to_raft(
                self.store
                    .start_checkpoint()
                    .map_err(RaftStorageError::from),
            )?;
            return Err(unavailable);
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn open() -> SledStorage {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let store = Store::open(&db, crate::crypto::test_key()).expect("store");
        SledStorage::open(db, store, crate::crypto::test_key()).expect("storage")
    }

    /// What a restart does: open the storage again over the same database
    /// and start a `RawNode` at the applied index (raft-rs panics when the
    /// applied index is past the commit index).
    fn restart(s: SledStorage) -> raft::RawNode<SledStorage> {
        let (db, store) = (s.db.clone(), s.store.clone());
        drop(s);
        let s = SledStorage::open(db, store.clone(), crate::crypto::test_key()).expect("reopen");
        let (applied, _) = store.applied().expect("applied");
        let cfg = raft::Config {
            id: 7,
            applied,
            ..Default::default()
        };
        raft::RawNode::new(&cfg, s, &raft::default_logger()).expect("raft starts")
    }

    #[test]
    fn entries_applied_before_their_commit_was_durable_are_repaired() {
        let s = open();
        s.bootstrap(7).expect("bootstrap");
        s.append(&[entry(2, 1), entry(3, 1), entry(4, 1)])
            .expect("append");
        s.set_commit(2).expect("commit");
        // The crash: entries up to 4 applied, the HardState still says 2.
        s.store
            .state
            .set_meta(&[(APPLIED_KEY, &encode_applied(4, 1)[..])])
            .expect("applied");
        let node = restart(s);
        assert_eq!(node.raft.raft_log.committed, 4);
        assert_eq!(node.raft.raft_log.last_index(), 4);
    }

    #[test]
    fn a_snapshot_install_cut_short_is_finished() {
        let s = open();
        s.bootstrap(7).expect("bootstrap");
        s.append(&[entry(2, 1), entry(3, 1)]).expect("append");
        s.set_commit(3).expect("commit");
        // The crash: the state tree holds a snapshot at 10 (term 2); the log,
        // the compaction point and the HardState are from before.
        s.store
            .state
            .set_meta(&[(APPLIED_KEY, &encode_applied(10, 2)[..])])
            .expect("applied");
        let node = restart(s);
        assert_eq!(node.raft.raft_log.committed, 10);
        assert_eq!(node.store().first_index().expect("first"), 11);
        assert_eq!(node.store().last_index().expect("last"), 10);
        assert_eq!(node.store().term(10).expect("term"), 2);
        assert!(node.raft.term >= 2);
    }

    #[test]
    fn bootstrap_append_truncate_compact() {
        let s = open();
        assert!(s.is_empty().expect("empty"));
        s.bootstrap(7).expect("bootstrap");
        assert_eq!(s.initial_state().expect("state").conf_state.voters, vec![7]);
        assert_eq!(
            (s.first_index().expect("f"), s.last_index().expect("l")),
            (2, 1)
        );
        s.append(&[entry(2, 1), entry(3, 1), entry(4, 1)])
            .expect("append");
        // A conflicting append at 3 drops 3 and 4.
        s.append(&[entry(3, 2)]).expect("append");
        assert_eq!(s.last_index().expect("l"), 3);
        assert_eq!(s.term(3).expect("t"), 2);
        let got = s
            .entries(2, 4, None, GetEntriesContext::empty(false))
            .expect("e");
        assert_eq!(got.len(), 2);
        assert_bounds_as_stored(&s);
        s.compact(2).expect("compact");
        assert_eq!(s.first_index().expect("f"), 3);
        assert_eq!(s.last_index().expect("l"), 3);
        assert_eq!(s.term(2).expect("t"), 1);
        assert!(matches!(
            s.entries(2, 3, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_bounds_as_stored(&s);
        s.append(&[entry(4, 2), entry(5, 2)]).expect("append");
        assert_eq!(s.last_index().expect("l"), 5);
        assert_bounds_as_stored(&s);
    }

    #[test]
    fn compacted_entries_leave_the_tree_a_step_at_a_time() {
        let step = TRIM_STEP as u64;
        let s = open();
        s.bootstrap(7).expect("bootstrap");
        let entries: Vec<Entry> = (2..=2 * step + 10).map(|i| entry(i, 1)).collect();
        s.append(&entries).expect("append");
        s.compact(2 * step).expect("compact");
        // Compacted at once for raft-rs; one step of them gone from the tree.
        assert_eq!(s.first_index().expect("f"), 2 * step + 1);
        assert_eq!(s.log.len(), entries.len() - TRIM_STEP);
        // A restart in the middle finds the rest and trims them too.
        let again = SledStorage::open(s.db.clone(), s.store.clone(), crate::crypto::test_key())
            .expect("reopen");
        assert!(
            !again.trim(TRIM_STEP).expect("trim"),
            "the rest fit one step"
        );
        assert_eq!(again.log.len(), 10);
        assert!(!again.trim(TRIM_STEP).expect("nothing left"));
        let got = again
            .entries(
                2 * step + 1,
                2 * step + 11,
                None,
                GetEntriesContext::empty(false),
            )
            .expect("entries");
        assert_eq!(got.len(), 10);
        assert_eq!(again.last_index().expect("l"), 2 * step + 10);
    }

    /// The cached first/last index and compaction term are what sled holds.
    fn assert_bounds_as_stored(s: &SledStorage) {
        let cached = (
            s.first_index(),
            s.last_index(),
            s.term(s.first_index().expect("f") - 1),
        );
        s.forget_bounds();
        let stored = (
            s.first_index(),
            s.last_index(),
            s.term(s.first_index().expect("f") - 1),
        );
        assert_eq!(format!("{cached:?}"), format!("{stored:?}"));
    }

    #[test]
    fn snapshot_round_trip() {
        let a = open();
        a.bootstrap(1).expect("bootstrap");
        let tx = crate::store::Tx::new().create(&swarmlet_proto::objects::Node {
            id: "n1".into(),
            ..Default::default()
        });
        a.store
            .apply_entry(2, 1, &tx.mutations, &[])
            .expect("apply")
            .expect("ok");
        // A snapshot is the tree as of the last checkpoint; asking for a
        // later one starts a checkpoint.
        assert!(a.snapshot(2, 0).is_err());
        a.store.checkpoint_finished(true).expect("checkpoint");
        let snap = a.snapshot(2, 0).expect("snapshot");
        assert_eq!(snap.get_metadata().index, 2);

        let b = open();
        b.apply_snapshot(&snap).expect("install");
        assert!(b
            .store
            .get::<swarmlet_proto::objects::Node>("n1")
            .expect("get")
            .is_some());
        assert_eq!(b.first_index().expect("f"), 3);
        assert_eq!(b.initial_state().expect("s").conf_state.voters, vec![1]);
    }

    #[test]
    fn force_new_cluster_keeps_committed_entries_and_removes_the_others() {
        let s = open();
        s.bootstrap(1).expect("bootstrap");
        s.set_conf_state(&ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        })
        .expect("conf state");
        s.append(&[entry(2, 2), entry(3, 2), entry(4, 2), entry(5, 2)])
            .expect("append");
        s.set_hard_state(&HardState {
            term: 3,
            vote: 2,
            commit: 4,
            ..Default::default()
        })
        .expect("hard state");

        assert_eq!(s.force_new_cluster(1).expect("force"), vec![2, 3]);
        // Entry 5 was never committed: replaced by the two removals.
        assert_eq!(s.last_index().expect("l"), 6);
        let hs = s.hard_state().expect("hs");
        assert_eq!((hs.commit, hs.term, hs.vote), (6, 3, 0));
        let got = s
            .entries(5, 7, None, GetEntriesContext::empty(false))
            .expect("e");
        let removed: Vec<u64> = got
            .iter()
            .map(|e| {
                assert_eq!(
                    e.get_entry_type(),
                    raft::eraftpb::EntryType::EntryConfChange
                );
                let cc = ConfChange::parse_from_bytes(&e.data).expect("cc");
                assert_eq!(cc.get_change_type(), ConfChangeType::RemoveNode);
                cc.node_id
            })
            .collect();
        assert_eq!(removed, vec![2, 3]);
        // Entries up to the commit index are untouched.
        assert_eq!(s.term(4).expect("t"), 2);
        // Alone already: nothing to do.
        let alone = open();
        alone.bootstrap(9).expect("bootstrap");
        assert!(alone.force_new_cluster(9).expect("force").is_empty());
    }
}
