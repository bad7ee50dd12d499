//! A sled tree whose values are sealed (AES-256-GCM) with the manager's data
//! key: the Raft log and the state rows never reach the disk in plaintext.
//!
//! Keys stay in the clear (sled orders by them: log indexes, `table/id`);
//! every value is authenticated together with its tree's name and its key,
//! so a sealed value cannot be moved to another row or tree unnoticed.
//! Only the subset of `sled::Tree` that the store and the Raft storage use
//! is offered.

use std::ops::RangeBounds;
use std::sync::Arc;

use crate::crypto::Key;

/// Failures reading or writing a sealed tree.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    /// sled failed.
    #[error("{0}")]
    Sled(#[from] sled::Error),
    /// A value does not open with the data key (another key, or tampering).
    #[error("{tree}: a value does not open with this manager's data key")]
    Open {
        /// The tree.
        tree: &'static str,
    },
    /// The system's random source failed.
    #[error("no randomness to seal with")]
    Random,
}

/// A sled tree with sealed values.
#[derive(Clone)]
pub struct SealedTree {
    tree: sled::Tree,
    name: &'static str,
    key: Arc<Key>,
}

/// Writes to apply to a [`SealedTree`] atomically.
pub struct SealedBatch {
    batch: sled::Batch,
    name: &'static str,
    key: Arc<Key>,
    failed: bool,
}

fn context(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(tree.len() + 1 + key.len());
    c.extend_from_slice(tree.as_bytes());
    c.push(0);
    c.extend_from_slice(key);
    c
}

impl SealedTree {
    /// Opens tree `name` of `db`, sealed with `key`.
    pub fn open(db: &sled::Db, name: &'static str, key: Arc<Key>) -> Result<Self, SealedError> {
        Ok(SealedTree {
            tree: db.open_tree(name)?,
            name,
            key,
        })
    }

    fn seal(&self, key: &[u8], value: &[u8]) -> Result<Vec<u8>, SealedError> {
        self.key
            .seal(value, &context(self.name, key))
            .map_err(|_| SealedError::Random)
    }

    fn open_value(&self, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealedError> {
        self.key
            .open(sealed, &context(self.name, key))
            .map_err(|_| SealedError::Open { tree: self.name })
    }

    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, SealedError> {
        let key = key.as_ref();
        match self.tree.get(key)? {
            Some(v) => Ok(Some(self.open_value(key, &v)?)),
            None => Ok(None),
        }
    }

    /// Sets `key` to `value`.
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), SealedError> {
        let key = key.as_ref();
        let sealed = self.seal(key, value.as_ref())?;
        self.tree.insert(key, sealed)?;
        Ok(())
    }

    /// Removes `key` (nothing if absent).
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), SealedError> {
        self.tree.remove(key.as_ref())?;
        Ok(())
    }

    /// Every `(key, value)`, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(sled::IVec, Vec<u8>), SealedError>> + '_ {
        self.tree.iter().map(move |row| self.open_row(row))
    }

    /// The `(key, value)` pairs with keys in `range`, in key order.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = Result<(sled::IVec, Vec<u8>), SealedError>> + '_ {
        self.tree.range(range).map(move |row| self.open_row(row))
    }

    /// The keys in `range`, values left sealed (for deletions).
    pub fn keys_in<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = Result<sled::IVec, SealedError>> {
        self.tree
            .range(range)
            .keys()
            .map(|k| k.map_err(SealedError::from))
    }

    /// The `(key, value)` pairs whose keys start with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(sled::IVec, Vec<u8>), SealedError>> + '_ {
        self.tree
            .scan_prefix(prefix)
            .map(move |row| self.open_row(row))
    }

    /// The keys that start with `prefix`, values left sealed.
    pub fn keys_with_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<sled::IVec, SealedError>> {
        self.tree
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.map_err(SealedError::from))
    }

    /// The stored (sealed) size of the values whose keys start with `prefix`.
    pub fn value_bytes_with_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<u64, SealedError> {
        let mut bytes = 0;
        for row in self.tree.scan_prefix(prefix) {
            bytes += row?.1.len() as u64;
        }
        Ok(bytes)
    }

    /// Every key, values left sealed.
    pub fn keys(&self) -> impl Iterator<Item = Result<sled::IVec, SealedError>> {
        self.tree
            .iter()
            .keys()
            .map(|k| k.map_err(SealedError::from))
    }

    /// The last key (values are not needed by the callers).
    pub fn last_key(&self) -> Result<Option<sled::IVec>, SealedError> {
        Ok(self.tree.last()?.map(|(k, _)| k))
    }

    fn open_row(
        &self,
        row: Result<(sled::IVec, sled::IVec), sled::Error>,
    ) -> Result<(sled::IVec, Vec<u8>), SealedError> {
        let (k, v) = row?;
        let plain = self.open_value(&k, &v)?;
        Ok((k, plain))
    }

    /// Makes every write of the database durable (sled flushes the whole
    /// database, not one tree).
    pub fn flush(&self) -> Result<(), SealedError> {
        self.tree.flush()?;
        Ok(())
    }

    /// Removes every row.
    pub fn clear(&self) -> Result<(), SealedError> {
        Ok(self.tree.clear()?)
    }

    /// Whether the tree has no row.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Number of rows (walks the tree).
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// A batch of writes for this tree.
    pub fn batch(&self) -> SealedBatch {
        SealedBatch {
            batch: sled::Batch::default(),
            name: self.name,
            key: self.key.clone(),
            failed: false,
        }
    }

    /// Applies `batch` atomically.
    pub fn apply_batch(&self, batch: SealedBatch) -> Result<(), SealedError> {
        if batch.failed {
            return Err(SealedError::Random);
        }
        Ok(self.tree.apply_batch(batch.batch)?)
    }

    /// Seals, in place, every value of a tree written before values were
    /// sealed (a state dir from an older Swarmlet). One atomic batch.
    pub fn seal_plaintext_values(&self) -> Result<usize, SealedError> {
        let mut batch = self.batch();
        let mut n = 0;
        for row in self.tree.iter() {
            let (k, v) = row?;
            batch.insert(&k, &v);
            n += 1;
        }
        self.apply_batch(batch)?;
        Ok(n)
    }
}

impl SealedBatch {
    /// Sets `key` to `value` when the batch is applied.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let key = key.as_ref();
        match self.key.seal(value.as_ref(), &context(self.name, key)) {
            Ok(sealed) => self.batch.insert(key, sealed),
            // Remembered: applying the batch fails instead.
            Err(_) => self.failed = true,
        }
    }

    /// Removes `key` when the batch is applied.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.batch.remove(key.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(db: &sled::Db, name: &'static str, key: &Arc<Key>) -> SealedTree {
        SealedTree::open(db, name, key.clone()).expect("tree")
    }

    #[test]
    fn values_are_sealed_on_disk_and_bound_to_their_row() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let key = Arc::new(Key::generate().expect("key"));
        let t = tree(&db, "state", &key);
        t.insert(b"nodes/a", b"PRIVATE KEY of a").expect("insert");
        let mut b = t.batch();
        b.insert(b"nodes/b", b"PRIVATE KEY of b");
        t.apply_batch(b).expect("batch");
        assert_eq!(
            t.get(b"nodes/a").expect("get").as_deref(),
            Some(&b"PRIVATE KEY of a"[..])
        );
        let all: Vec<_> = t.iter().map(|r| r.expect("row").1).collect();
        assert_eq!(
            all,
            vec![b"PRIVATE KEY of a".to_vec(), b"PRIVATE KEY of b".to_vec()]
        );
        // Underneath, nothing readable.
        let raw = db.open_tree("state").expect("raw");
        for row in raw.iter() {
            let (_, v) = row.expect("raw row");
            assert!(!v.windows(7).any(|w| w == b"PRIVATE"));
        }
        // A value copied to another row, or read with another key: refused.
        let sealed_a = raw.get(b"nodes/a").expect("raw").expect("present");
        raw.insert(b"nodes/c", sealed_a).expect("copy");
        assert!(matches!(t.get(b"nodes/c"), Err(SealedError::Open { .. })));
        let other = tree(&db, "state", &Arc::new(Key::generate().expect("key")));
        assert!(other.get(b"nodes/a").is_err());
    }

    #[test]
    fn plaintext_values_of_an_older_version_are_sealed_in_place() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let raw = db.open_tree("raft_log").expect("raw");
        raw.insert(b"k", b"old plaintext").expect("insert");
        let t = tree(&db, "raft_log", &Arc::new(Key::generate().expect("key")));
        assert_eq!(t.seal_plaintext_values().expect("seal"), 1);
        assert_eq!(
            t.get(b"k").expect("get").as_deref(),
            Some(&b"old plaintext"[..])
        );
        assert!(!raw
            .get(b"k")
            .expect("raw")
            .expect("v")
            .windows(9)
            .any(|w| w == b"plaintext"));
    }
}
