//! Applying committed entries to the state tree.

use prost::Message;
use swarmlet_proto::store::{Mutation, Record};

use super::{encode_applied, row_key, Store, StoreError, APPLIED_KEY};

/// Why an entry's mutations were not applied (the same on every manager).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    /// A `create` found the row already there.
    #[error("{table} {key} already exists")]
    Exists {
        /// Table.
        table: String,
        /// Key.
        key: String,
    },
    /// The row changed since it was read.
    #[error("{table} {key} was changed concurrently; retry")]
    Conflict {
        /// Table.
        table: String,
        /// Key.
        key: String,
    },
}

/// The outcome of applying one entry.
pub type Applied = Result<(), ApplyError>;

impl Store {
    fn version_of(&self, m: &Mutation) -> Result<Option<u64>, StoreError> {
        Ok(self
            .state
            .get(row_key(&m.table, &m.key))?
            .map(|v| Record::decode(v.as_ref()).map(|r| r.version).unwrap_or(0)))
    }

    /// Applies one committed entry's mutations at `index`/`term`. Whatever the
    /// checks say, the applied index moves forward in the same batch.
    pub fn apply_entry(
        &self,
        index: u64,
        term: u64,
        mutations: &[Mutation],
        extra: &[(&[u8], Vec<u8>)],
    ) -> Result<Applied, StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in extra {
            batch.insert(*k, v.as_slice());
        }
        let outcome = self.check(mutations)?;
        if outcome.is_ok() {
            for m in mutations {
                let key = row_key(&m.table, &m.key);
                if m.delete {
                    batch.remove(key);
                } else {
                    let record = Record {
                        version: index,
                        data: m.value.clone(),
                    };
                    batch.insert(key, record.encode_to_vec());
                }
            }
        }
        batch.insert(APPLIED_KEY, &encode_applied(index, term)[..]);
        self.state.apply_batch(batch)?;
        Ok(outcome)
    }

    fn check(&self, mutations: &[Mutation]) -> Result<Applied, StoreError> {
        for m in mutations {
            let current = self.version_of(m)?;
            if m.must_not_exist && current.is_some() {
                return Ok(Err(ApplyError::Exists {
                    table: m.table.clone(),
                    key: m.key.clone(),
                }));
            }
            if m.expect_version != 0 && current != Some(m.expect_version) {
                return Ok(Err(ApplyError::Conflict {
                    table: m.table.clone(),
                    key: m.key.clone(),
                }));
            }
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tx;
    use swarmlet_proto::objects::Node;

    fn node(id: &str, hostname: &str) -> Node {
        Node {
            id: id.into(),
            hostname: hostname.into(),
            ..Default::default()
        }
    }

    #[test]
    fn create_put_delete_with_checks() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let store = Store::open(&db).expect("store");
        let tx = Tx::new().create(&node("a", "h1"));
        assert_eq!(store.apply_entry(5, 1, &tx.mutations, &[]).expect("apply"), Ok(()));
        let (v, n) = store.get::<Node>("a").expect("get").expect("present");
        assert_eq!((v, n.hostname.as_str()), (5, "h1"));

        // A second create of the same key is refused, and nothing changes.
        let again = Tx::new().create(&node("a", "h2"));
        assert!(matches!(
            store.apply_entry(6, 1, &again.mutations, &[]).expect("apply"),
            Err(ApplyError::Exists { .. })
        ));
        assert_eq!(store.applied().expect("applied"), (6, 1));

        // A stale version is a conflict; the right one goes through.
        let stale = Tx::new().put(&node("a", "h3"), Some(4));
        assert!(store.apply_entry(7, 1, &stale.mutations, &[]).expect("apply").is_err());
        let fresh = Tx::new().put(&node("a", "h3"), Some(5));
        assert_eq!(store.apply_entry(8, 1, &fresh.mutations, &[]).expect("apply"), Ok(()));
        assert_eq!(store.list::<Node>().expect("list")[0].1.hostname, "h3");

        let del = Tx::new().delete::<Node>("a", None);
        store.apply_entry(9, 2, &del.mutations, &[]).expect("apply").expect("ok");
        assert!(store.get::<Node>("a").expect("get").is_none());
        assert_eq!(store.applied().expect("applied"), (9, 2));
    }
}
