//! How the rows lie in the sled `state` tree: a base and deltas, in pieces.
//!
//! With one sled key per row, a checkpoint was one sled insert per changed
//! row, each copying its leaf node; with 64 clients writing new keys those
//! inserts were most of a write's cost (`swarm-bench raft`: 20k writes/s,
//! 51k with the inserts left out). Rows are therefore written many at a
//! time, in sealed pieces of about [`PIECE_BYTES`]:
//!
//! - the **base**: every row as of index `base.index`, in key order, in
//!   pieces `\0base/<generation><n>`;
//! - the **deltas**: what each checkpoint changed (deleted rows marked), in
//!   pieces `\0delta/<index><n>`, one delta per checkpoint;
//! - the **meta record** `\0meta`: the applied index (the state is the
//!   base plus every delta up to it), the Raft ConfState, which base is
//!   current, and the sizes of the base and the deltas (so that a start
//!   need not walk them), all in one sled value, so that values which
//!   change together are written by one insert.
//!
//! A checkpoint writes its delta's pieces, then the meta record with the
//! new applied index: sled recovers a prefix of its writes, so a delta is
//! part of the state only once the applied index naming it is stored; a
//! checkpoint cut short leaves pieces that the next start removes. No sled
//! batch is ever used: a batch takes sled's process-wide exclusive lock,
//! and a batch waiting for it while another thread held the shared side in
//! a flush hung three managers of one test process for good (see
//! docs/design/raft.md). Meta values were once keys of their own
//! (`\0meta/…`); a start moves them into the record.
//!
//! When the deltas weigh [`MERGE_RATIO`] times the base (and at least
//! [`MERGE_MIN_BYTES`]), the
//! checkpoint merges them: a new base generation is written from the old
//! base and the deltas (a merge-join in key order), the base meta key
//! switches to it, then the old pieces go. As in an LSM tree, each row is
//! rewritten a bounded number of times on average, whatever the state's
//! size.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use prost::Message;
use swarmlet_proto::store::{KeyValue, StatePiece};

use super::{decode_applied, encode_applied, StoreError, APPLIED_KEY};
use crate::at_rest::tree::SealedTree;

/// Meta value: the current base, its generation and the index it is as of.
const BASE_KEY: &[u8] = b"\0meta/base";
/// Meta value: the stored sizes of the current base and of the deltas (what
/// decides merges), so that a start need not walk them.
const SIZES_KEY: &[u8] = b"\0meta/sizes";
/// Key of the meta record: every meta value, as the rows of a piece.
const META_KEY: &[u8] = b"\0meta";
/// Meta values stored one per key, as an older Swarmlet did.
const LEGACY_META_PREFIX: &[u8] = b"\0meta/";
const BASE_PREFIX: &[u8] = b"\0base/";
/// Just past every key that starts with [`BASE_PREFIX`].
const BASE_END: &[u8] = b"\0base0";
const DELTA_PREFIX: &[u8] = b"\0delta/";
/// Just past every key that starts with [`DELTA_PREFIX`].
const DELTA_END: &[u8] = b"\0delta0";

/// A piece holds rows until it reaches this size (a larger row is a piece
/// of its own). Small enough that a sled leaf (up to 17 values, copied
/// whole on every insert and written whole when sled rewrites it) stays
/// well below the 128 KiB above which sled moves a value to a blob file
/// of its own, which it does not fsync.
pub(crate) const PIECE_BYTES: usize = 4096;

/// Deltas are merged into a new base once they weigh this many times the
/// base, and at least [`MERGE_MIN_BYTES`]. A restart reads at most this
/// many times the state's size besides it; with a new key per write,
/// merges rewrite each row (1 + ratio) / ratio times on average (1.5 here,
/// 2 at ratio 1). With writes that overwrite 10,000 keys, ratio 1 → 2 took
/// `swarm-bench raft` from 29k to 35k writes/s.
pub(crate) const MERGE_RATIO: u64 = 2;

/// See [`MERGE_RATIO`].
pub(crate) const MERGE_MIN_BYTES: u64 = 1 << 20;

/// A writer of pieces makes them durable every this many bytes. sled keeps
/// the log and the state in one file, so the Raft loop's next fsync would
/// otherwise carry everything a merge wrote since the last one: a merge of
/// a 100 MB base held that fsync (and the Raft loop) for 0.65 s.
const FLUSH_EVERY_BYTES: u64 = 2 << 20;

/// Row changes by key, `None`: deleted.
pub(crate) type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A row (key, value) read from the tree.
type RowRead = Result<(Vec<u8>, Vec<u8>), StoreError>;

/// Which base is current.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Base {
    generation: u64,
    /// The index the base is as of: deltas up to it are merged into it.
    index: u64,
}

impl Base {
    fn encode(&self) -> [u8; 16] {
        encode_applied(self.generation, self.index)
    }

    fn decode(v: &[u8]) -> Result<Base, StoreError> {
        if v.len() != 16 {
            return Err(StoreError::Corrupt("state tree: base".into()));
        }
        let (generation, index) = decode_applied(v);
        Ok(Base { generation, index })
    }
}

/// Meta values by key (`\0meta/…`), as held in the meta record.
type Meta = BTreeMap<Vec<u8>, Vec<u8>>;

/// Sizes kept to decide when to merge.
#[derive(Default)]
struct Layout {
    base: Base,
    base_bytes: u64,
    delta_bytes: u64,
}

impl Layout {
    fn merge_due(&self) -> bool {
        self.delta_bytes >= (MERGE_RATIO * self.base_bytes).max(MERGE_MIN_BYTES)
    }
}

/// The `state` tree, in pieces (see the module doc).
pub(crate) struct StateTree {
    tree: SealedTree,
    layout: Mutex<Layout>,
    /// The meta record as stored (written through, never ahead of it).
    meta: Mutex<Meta>,
}

/// `prefix`, then `major` and `n` big-endian: pieces sort by both.
fn piece_key(prefix: &[u8], major: u64, n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&major.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn major_prefix(prefix: &[u8], major: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&major.to_be_bytes());
    k
}

/// The generation or index of a piece's key.
fn major_of(prefix: &[u8], key: &[u8]) -> Option<u64> {
    let b = key.strip_prefix(prefix)?.get(..8)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

fn is_meta(key: &[u8]) -> bool {
    key.first() == Some(&0)
}

/// Writes rows into consecutive pieces under one prefix.
struct PieceWriter<'a> {
    tree: &'a SealedTree,
    prefix: &'static [u8],
    major: u64,
    n: u64,
    piece: StatePiece,
    piece_bytes: usize,
    written: u64,
    /// `written` at the last flush.
    flushed: u64,
}

impl<'a> PieceWriter<'a> {
    fn new(tree: &'a SealedTree, prefix: &'static [u8], major: u64) -> Self {
        PieceWriter {
            tree,
            prefix,
            major,
            n: 0,
            piece: StatePiece::default(),
            piece_bytes: 0,
            written: 0,
            flushed: 0,
        }
    }

    fn push(&mut self, row: KeyValue) -> Result<(), StoreError> {
        self.piece_bytes += row.key.len() + row.value.len() + 8;
        self.piece.rows.push(row);
        if self.piece_bytes >= PIECE_BYTES {
            self.write_piece()?;
        }
        Ok(())
    }

    fn write_piece(&mut self) -> Result<(), StoreError> {
        if self.piece.rows.is_empty() {
            return Ok(());
        }
        let bytes = self.piece.encode_to_vec();
        self.tree
            .insert(piece_key(self.prefix, self.major, self.n), &bytes)?;
        self.written += bytes.len() as u64;
        self.n += 1;
        self.piece.rows.clear();
        self.piece_bytes = 0;
        if self.written - self.flushed >= FLUSH_EVERY_BYTES {
            self.tree.flush()?;
            self.flushed = self.written;
        }
        Ok(())
    }

    /// Adds a row of a base.
    fn push_row(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.push(KeyValue {
            key,
            value,
            deleted: false,
        })
    }

    /// Writes the last piece; returns the bytes written.
    fn finish(mut self) -> Result<u64, StoreError> {
        self.write_piece()?;
        Ok(self.written)
    }
}

fn encode_meta(meta: &Meta) -> Vec<u8> {
    StatePiece {
        rows: meta
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
                deleted: false,
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Reads the meta record; meta values stored one per key (an older
/// Swarmlet) are moved into it first: the record, then their removal, so
/// that a stop in between leaves the record, which wins.
fn load_meta(tree: &SealedTree) -> Result<Meta, StoreError> {
    let legacy: Meta = tree
        .scan_prefix(LEGACY_META_PREFIX)
        .map(|row| row.map(|(k, v)| (k.to_vec(), v)))
        .collect::<Result<_, _>>()?;
    let meta = match tree.get(META_KEY)? {
        Some(bytes) => decode_piece(META_KEY, &bytes)?
            .rows
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect(),
        None if legacy.is_empty() => Meta::new(),
        None => {
            tree.insert(META_KEY, encode_meta(&legacy))?;
            tree.flush()?;
            legacy.clone()
        }
    };
    for k in legacy.keys() {
        tree.remove(k)?;
    }
    Ok(meta)
}

fn decode_piece(key: &[u8], bytes: &[u8]) -> Result<StatePiece, StoreError> {
    StatePiece::decode(bytes).map_err(|_| StoreError::Corrupt(format!("state tree: piece {key:?}")))
}

/// Calls `f` with every row of `base` (in key order) as changed by
/// `changes`, in key order.
fn merge_join(
    base: impl Iterator<Item = RowRead>,
    changes: Changes,
    mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut changes = changes.into_iter().peekable();
    let mut emit = |key, value: Option<Vec<u8>>| match value {
        Some(v) => f(key, v),
        None => Ok(()),
    };
    for row in base {
        let (key, value) = row?;
        while let Some((k, v)) = changes.next_if(|(k, _)| *k < key) {
            emit(k, v)?;
        }
        match changes.next_if(|(k, _)| *k == key) {
            Some((k, v)) => emit(k, v)?,
            None => emit(key, Some(value))?,
        }
    }
    for (k, v) in changes {
        emit(k, v)?;
    }
    Ok(())
}

impl StateTree {
    /// Opens the layout in `tree`: removes what a stop in the middle of a
    /// checkpoint or merge left, and moves rows stored one per key (an
    /// older Swarmlet) into a base.
    pub(crate) fn open(tree: SealedTree) -> Result<StateTree, StoreError> {
        let meta = load_meta(&tree)?;
        let base = match meta.get(BASE_KEY) {
            Some(v) => Base::decode(v)?,
            None => Base::default(),
        };
        let state = StateTree {
            tree,
            layout: Mutex::new(Layout {
                base,
                ..Default::default()
            }),
            meta: Mutex::new(meta),
        };
        state.move_rows_stored_per_key()?;
        state.remove_leftovers()?;
        let (base_bytes, delta_bytes) = match state.meta(SIZES_KEY)? {
            Some(v) if v.len() == 16 => decode_applied(&v),
            // Written by a Swarmlet that kept no sizes: measured once.
            _ => (
                state
                    .tree
                    .value_bytes_with_prefix(major_prefix(BASE_PREFIX, base.generation))?,
                state.tree.value_bytes_with_prefix(DELTA_PREFIX)?,
            ),
        };
        let mut layout = state.layout();
        layout.base_bytes = base_bytes;
        layout.delta_bytes = delta_bytes;
        drop(layout);
        Ok(state)
    }

    fn layout(&self) -> MutexGuard<'_, Layout> {
        // Plain bookkeeping: usable whatever panicked while holding it.
        self.layout.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn meta_record(&self) -> MutexGuard<'_, Meta> {
        // Replaced whole, only after its write succeeded: never torn.
        self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Meta value `key` (`\0meta/…`).
    pub(crate) fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta_record().get(key).cloned())
    }

    /// Sets meta values together (one insert of the meta record).
    pub(crate) fn set_meta(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), StoreError> {
        self.update_meta(pairs.iter().map(|(k, v)| (k.to_vec(), Some(v.to_vec()))))
    }

    /// Changes meta values (`None`: removed) together: one insert of the
    /// meta record.
    fn update_meta(
        &self,
        changes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let mut record = self.meta_record();
        let mut next = record.clone();
        for (k, v) in changes {
            match v {
                Some(v) => next.insert(k, v),
                None => next.remove(&k),
            };
        }
        self.tree.insert(META_KEY, encode_meta(&next))?;
        *record = next;
        Ok(())
    }

    /// The applied (index, term) the stored state is as of.
    pub(crate) fn applied(&self) -> Result<(u64, u64), StoreError> {
        Ok(self
            .meta(APPLIED_KEY)?
            .map(|v| decode_applied(&v))
            .unwrap_or((0, 0)))
    }

    /// Calls `f` with every row (key, value) as of the applied index, in
    /// key order.
    pub(crate) fn for_each_row(
        &self,
        f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let base = self.layout().base;
        let changes = self.deltas(base.index, self.applied()?.0)?;
        merge_join(self.base_rows(base.generation), changes, f)
    }

    /// The rows of base `generation`, in key order.
    fn base_rows(&self, generation: u64) -> impl Iterator<Item = RowRead> + '_ {
        self.tree
            .scan_prefix(major_prefix(BASE_PREFIX, generation))
            .flat_map(|piece| {
                let rows: Vec<RowRead> = match piece.map_err(StoreError::from) {
                    Ok((k, v)) => match decode_piece(&k, &v) {
                        Ok(p) => p.rows.into_iter().map(|r| Ok((r.key, r.value))).collect(),
                        Err(e) => vec![Err(e)],
                    },
                    Err(e) => vec![Err(e)],
                };
                rows
            })
    }

    /// The changes of the deltas after index `after` up to `upto`, the
    /// later ones winning.
    fn deltas(&self, after: u64, upto: u64) -> Result<Changes, StoreError> {
        let mut changes = Changes::new();
        let first = major_prefix(DELTA_PREFIX, after.saturating_add(1));
        for piece in self.tree.range(first.as_slice()..DELTA_END) {
            let (k, v) = piece?;
            let index = major_of(DELTA_PREFIX, &k)
                .ok_or_else(|| StoreError::Corrupt(format!("state tree: key {k:?}")))?;
            if index > upto {
                break;
            }
            for row in decode_piece(&k, &v)?.rows {
                changes.insert(row.key, (!row.deleted).then_some(row.value));
            }
        }
        Ok(changes)
    }

    /// Writes a checkpoint: `changes` (table rows, and meta rows such as
    /// the ConfState) as of `applied`, then the applied index; makes them
    /// durable; merges the deltas into a new base when they are due.
    pub(crate) fn write_checkpoint(
        &self,
        changes: Changes,
        applied: (u64, u64),
    ) -> Result<(), StoreError> {
        let (meta, rows): (Changes, Changes) = changes.into_iter().partition(|(k, _)| is_meta(k));
        let mut writer = PieceWriter::new(&self.tree, DELTA_PREFIX, applied.0);
        for (key, value) in rows {
            writer.push(KeyValue {
                key,
                deleted: value.is_none(),
                value: value.unwrap_or_default(),
            })?;
        }
        let bytes = writer.finish()?;
        let (base_bytes, delta_bytes) = {
            let layout = self.layout();
            (layout.base_bytes, layout.delta_bytes + bytes)
        };
        let mut meta = meta;
        meta.insert(
            APPLIED_KEY.to_vec(),
            Some(encode_applied(applied.0, applied.1).to_vec()),
        );
        meta.insert(
            SIZES_KEY.to_vec(),
            Some(encode_applied(base_bytes, delta_bytes).to_vec()),
        );
        self.update_meta(meta)?;
        self.tree.flush()?;
        let merge = {
            let mut layout = self.layout();
            layout.delta_bytes = delta_bytes;
            layout.merge_due()
        };
        if merge {
            self.merge()?;
        }
        Ok(())
    }

    /// Writes a new base: the state as of the applied index (the current
    /// base with every delta), then switches to it and removes the old
    /// pieces.
    fn merge(&self) -> Result<(), StoreError> {
        let (next, mut writer) = self.next_base(self.applied()?.0);
        self.for_each_row(|key, value| writer.push_row(key, value))?;
        self.switch_base(next, writer.finish()?, &[])
    }

    /// The base that follows the current one, as of `index`, and a writer
    /// of its pieces.
    fn next_base(&self, index: u64) -> (Base, PieceWriter<'_>) {
        let next = Base {
            generation: self.layout().base.generation + 1,
            index,
        };
        (
            next,
            PieceWriter::new(&self.tree, BASE_PREFIX, next.generation),
        )
    }

    /// Makes `next` the base (with `meta` in the same insert), durably, then
    /// removes the older pieces and the deltas it holds.
    fn switch_base(
        &self,
        next: Base,
        bytes: u64,
        meta: &[(&[u8], &[u8])],
    ) -> Result<(), StoreError> {
        let base = next.encode();
        let sizes = encode_applied(bytes, 0);
        let mut pairs = vec![(BASE_KEY, &base[..]), (SIZES_KEY, &sizes[..])];
        pairs.extend_from_slice(meta);
        self.set_meta(&pairs)?;
        self.tree.flush()?;
        {
            let mut layout = self.layout();
            layout.base = next;
            layout.base_bytes = bytes;
            layout.delta_bytes = 0;
        }
        self.remove_leftovers()
    }

    /// Replaces the whole state (a snapshot's install): `rows`, and the
    /// applied index and other meta values in `meta`.
    pub(crate) fn replace(
        &self,
        mut rows: Vec<(Vec<u8>, Vec<u8>)>,
        meta: &[(&[u8], &[u8])],
    ) -> Result<(), StoreError> {
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let applied = meta
            .iter()
            .find(|(k, _)| *k == APPLIED_KEY)
            .map(|(_, v)| decode_applied(v).0)
            .unwrap_or(0);
        let (next, mut writer) = self.next_base(applied);
        for (key, value) in rows {
            writer.push_row(key, value)?;
        }
        self.switch_base(next, writer.finish()?, meta)
    }

    /// Removes the pieces that are not part of the state: other bases'
    /// (a merge or install cut short, or finished), deltas the base holds,
    /// deltas past the applied index (a checkpoint cut short).
    fn remove_leftovers(&self) -> Result<(), StoreError> {
        let base = self.layout().base;
        let applied = self.applied()?.0;
        // Other generations' pieces, without walking the current one's.
        let current = major_prefix(BASE_PREFIX, base.generation);
        let later = major_prefix(BASE_PREFIX, base.generation + 1);
        let mut stale: Vec<sled::IVec> = self
            .tree
            .keys_in(BASE_PREFIX..current.as_slice())
            .chain(self.tree.keys_in(later.as_slice()..BASE_END))
            .collect::<Result<_, _>>()?;
        for k in self.tree.keys_with_prefix(DELTA_PREFIX) {
            let k = k?;
            if major_of(DELTA_PREFIX, &k).is_none_or(|i| i <= base.index || i > applied) {
                stale.push(k);
            }
        }
        for k in stale {
            self.tree.remove(k)?;
        }
        Ok(())
    }

    /// Moves rows stored one per key (as an older Swarmlet did) into a new
    /// base as of the applied index.
    fn move_rows_stored_per_key(&self) -> Result<(), StoreError> {
        let first_row: &[u8] = &[1];
        if self.tree.keys_in(first_row..).next().is_none() {
            return Ok(());
        }
        let (next, mut writer) = self.next_base(self.applied()?.0);
        for row in self.tree.range(first_row..) {
            let (key, value) = row?;
            writer.push_row(key.to_vec(), value)?;
        }
        self.switch_base(next, writer.finish()?, &[])?;
        let old: Vec<_> = self.tree.keys_in(first_row..).collect::<Result<_, _>>()?;
        for k in old {
            self.tree.remove(k)?;
        }
        self.tree.flush()?;
        tracing::info!(
            generation = next.generation,
            "state tree: rows stored one per key moved into pieces"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn open(db: &sled::Db, key: &Arc<crate::crypto::Key>) -> StateTree {
        StateTree::open(SealedTree::open(db, "state", key.clone()).expect("tree")).expect("open")
    }

    /// An empty tree, or one with row t/a = 1 checkpointed at index 5.
    fn fresh(with_a: bool) -> (sled::Db, Arc<crate::crypto::Key>, StateTree) {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let key = crate::crypto::test_key();
        let state = open(&db, &key);
        if with_a {
            state
                .write_checkpoint(changes(&[("t/a", Some("1"))]), (5, 1))
                .expect("checkpoint");
        }
        (db, key, state)
    }

    fn rows(state: &StateTree) -> Vec<(String, String)> {
        let mut out = Vec::new();
        state
            .for_each_row(|k, v| {
                out.push((
                    String::from_utf8(k).expect("utf8"),
                    String::from_utf8(v).expect("utf8"),
                ));
                Ok(())
            })
            .expect("rows");
        out
    }

    fn changes(pairs: &[(&str, Option<&str>)]) -> Changes {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn checkpoints_and_merges_keep_the_state_as_of_the_applied_index() {
        let (db, key, state) = fresh(false);
        state
            .write_checkpoint(changes(&[("t/a", Some("1")), ("t/b", Some("1"))]), (5, 1))
            .expect("checkpoint");
        state
            .write_checkpoint(changes(&[("t/b", None), ("t/c", Some("2"))]), (7, 1))
            .expect("checkpoint");
        assert_eq!(rows(&state), pairs(&[("t/a", "1"), ("t/c", "2")]));
        assert_eq!(state.applied().expect("applied"), (7, 1));
        // A start takes the sizes that decide merges from the meta record.
        let sizes = |s: &StateTree| {
            let layout = s.layout();
            (layout.base_bytes, layout.delta_bytes)
        };
        assert!(sizes(&state).1 > 0);
        assert_eq!(sizes(&open(&db, &key)), sizes(&state));
        // A merge folds the deltas into a new base and removes them.
        state.merge().expect("merge");
        assert_eq!(
            state.layout().base,
            Base {
                generation: 1,
                index: 7
            }
        );
        assert_eq!(state.tree.keys_with_prefix(DELTA_PREFIX).count(), 0);
        assert_eq!(rows(&state), pairs(&[("t/a", "1"), ("t/c", "2")]));
        state
            .write_checkpoint(changes(&[("t/a", None), ("t/d", Some("3"))]), (9, 2))
            .expect("checkpoint");
        let reopened = open(&db, &key);
        assert_eq!(rows(&reopened), pairs(&[("t/c", "2"), ("t/d", "3")]));
        assert_eq!(reopened.applied().expect("applied"), (9, 2));
    }

    #[test]
    fn a_checkpoint_or_merge_cut_short_leaves_the_state_as_it_was() {
        let (db, key, state) = fresh(true);
        // A checkpoint whose pieces were written but not its applied index,
        // and a merge whose base was written but not switched to.
        let mut torn = PieceWriter::new(&state.tree, DELTA_PREFIX, 8);
        torn.push(KeyValue {
            key: b"t/a".to_vec(),
            deleted: true,
            ..Default::default()
        })
        .expect("push");
        torn.finish().expect("finish");
        let mut unfinished = PieceWriter::new(&state.tree, BASE_PREFIX, 1);
        unfinished
            .push(KeyValue {
                key: b"t/z".to_vec(),
                value: b"9".to_vec(),
                deleted: false,
            })
            .expect("push");
        unfinished.finish().expect("finish");
        drop(state);
        let reopened = open(&db, &key);
        assert_eq!(rows(&reopened), pairs(&[("t/a", "1")]));
        assert_eq!(reopened.tree.keys_with_prefix(BASE_PREFIX).count(), 0);
        assert_eq!(reopened.tree.keys_with_prefix(DELTA_PREFIX).count(), 1);
    }

    #[test]
    fn many_rows_span_many_pieces_and_deltas_merge_once_due() {
        let (db, key, state) = fresh(false);
        let value = "v".repeat(200);
        let mut expected = Vec::new();
        let mut index = 0;
        // About 3 MiB of new rows, 1,000 per checkpoint.
        for batch in 0..14 {
            index += 1;
            let mut c = Changes::new();
            for i in 0..1000 {
                let k = format!("t/{batch:03}-{i:04}");
                c.insert(k.clone().into_bytes(), Some(value.clone().into_bytes()));
                expected.push((k, value.clone()));
            }
            state.write_checkpoint(c, (index, 1)).expect("checkpoint");
            assert!(!state.layout().merge_due());
        }
        let layout = state.layout();
        assert!(layout.base.generation >= 1, "merged at least once");
        assert!(layout.base_bytes > 1 << 20);
        drop(layout);
        let generation = state.layout().base.generation;
        for k in state.tree.keys_with_prefix(BASE_PREFIX) {
            let k = k.expect("key");
            assert_eq!(
                major_of(BASE_PREFIX, &k),
                Some(generation),
                "older pieces removed"
            );
        }
        let pieces = state.tree.keys_with_prefix(BASE_PREFIX).count();
        // The first merge, at 1 MiB of deltas, took in 5,000 rows or more.
        assert!(pieces >= 5_000 * 200 / PIECE_BYTES, "{pieces} pieces");
        assert_eq!(rows(&state), expected);
        assert_eq!(rows(&open(&db, &key)), expected);
    }

    #[test]
    fn rows_stored_one_per_key_move_into_a_base() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let key = crate::crypto::test_key();
        let tree = SealedTree::open(&db, "state", key.clone()).expect("tree");
        tree.insert(b"nodes/a", b"A").expect("insert");
        tree.insert(b"tasks/b", b"B").expect("insert");
        tree.insert(APPLIED_KEY, encode_applied(12, 3))
            .expect("insert");
        let state = open(&db, &key);
        assert_eq!(rows(&state), pairs(&[("nodes/a", "A"), ("tasks/b", "B")]));
        assert_eq!(state.tree.keys_in(&[1u8][..]..).count(), 0);
        // The meta value stored under a key of its own moved into the record.
        assert_eq!(state.applied().expect("applied"), (12, 3));
        assert_eq!(state.tree.keys_with_prefix(LEGACY_META_PREFIX).count(), 0);
        assert!(state.tree.get(META_KEY).expect("get").is_some());
        assert_eq!(
            state.layout().base,
            Base {
                generation: 1,
                index: 12
            }
        );
        assert_eq!(
            rows(&open(&db, &key)),
            pairs(&[("nodes/a", "A"), ("tasks/b", "B")])
        );
    }

    #[test]
    fn a_replaced_state_holds_only_the_new_rows() {
        let (db, key, state) = fresh(true);
        let applied = encode_applied(20, 4);
        state
            .replace(
                vec![
                    (b"t/z".to_vec(), b"Z".to_vec()),
                    (b"t/y".to_vec(), b"Y".to_vec()),
                ],
                &[(APPLIED_KEY, &applied[..])],
            )
            .expect("replace");
        assert_eq!(rows(&state), pairs(&[("t/y", "Y"), ("t/z", "Z")]));
        assert_eq!(state.applied().expect("applied"), (20, 4));
        assert_eq!(state.tree.keys_with_prefix(DELTA_PREFIX).count(), 0);
        assert_eq!(rows(&open(&db, &key)), pairs(&[("t/y", "Y"), ("t/z", "Z")]));
    }
}
