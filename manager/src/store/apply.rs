//! Applying committed entries to the state tree.

use std::collections::HashMap;

use prost::Message;
use swarmlet_proto::store::{Mutation, Record};

use super::rows::decode_object;
use super::{row_key, Store, StoreError};
use crate::events::{event_type, Action};

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
    /// A write's bytes are not an object of its table (a bug in the
    /// proposer): refused whole, on every manager alike, so that the state
    /// tree and the in-memory rows never disagree.
    #[error("{table} {key}: the value does not decode as a {table} row")]
    Undecodable {
        /// Table.
        table: String,
        /// Key.
        key: String,
    },
}

/// The outcome of applying one entry.
pub type Applied = Result<(), ApplyError>;

impl Store {
    /// Applies one committed entry's mutations at `index`/`term`. Whatever the
    /// checks say, the applied index moves forward in the same batch.
    pub fn apply_entry(
        &self,
        index: u64,
        term: u64,
        mutations: &[Mutation],
        extra: &[(&[u8], Vec<u8>)],
    ) -> Result<Applied, StoreError> {
        let proposal = [mutations];
        let mut outcomes = self.apply_proposals(index, term, &proposal, extra)?;
        Ok(outcomes.pop().unwrap_or(Ok(())))
    }

    /// Applies the proposals of one committed entry in order, each all or
    /// nothing, together with `extra` rows and the applied index, to the
    /// decoded rows; the state tree receives them at the next
    /// [`checkpoint`](Store::checkpoint). Returns each proposal's outcome.
    pub fn apply_proposals(
        &self,
        index: u64,
        term: u64,
        proposals: &[&[Mutation]],
        extra: &[(&[u8], Vec<u8>)],
    ) -> Result<Vec<Applied>, StoreError> {
        // Row writes for the state tree (None = delete), in order.
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        // Versions written earlier in this batch: None = deleted.
        let mut written: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
        let mut outcomes = Vec::with_capacity(proposals.len());
        // What the event log is told once the batch is applied.
        let mut changes = Vec::new();
        // Every mutation written, for the decoded rows.
        let mut applied = Vec::new();
        for mutations in proposals {
            let mut outcome = self.check(mutations, &written)?;
            // The written objects, decoded once: for the in-memory rows.
            let mut objects = Vec::with_capacity(mutations.len());
            if outcome.is_ok() {
                for m in mutations.iter() {
                    if m.delete {
                        objects.push(None);
                        continue;
                    }
                    match decode_object(&m.table, &m.value) {
                        Ok(object) => objects.push(object),
                        Err(_) => {
                            outcome = Err(ApplyError::Undecodable {
                                table: m.table.clone(),
                                key: m.key.clone(),
                            });
                            break;
                        }
                    }
                }
            }
            if outcome.is_ok() {
                for (m, object) in mutations.iter().zip(objects) {
                    let key = row_key(&m.table, &m.key);
                    if event_type(&m.table).is_some() {
                        let action = if m.delete {
                            Action::Remove
                        } else {
                            let existed = match written.get(&key) {
                                Some(v) => v.is_some(),
                                None => self.rows.version(&m.table, &m.key)?.is_some(),
                            };
                            if existed {
                                Action::Update
                            } else {
                                Action::Create
                            }
                        };
                        changes.push((m, action));
                    }
                    applied.push((m, object));
                    if m.delete {
                        writes.push((key.clone(), None));
                        written.insert(key, None);
                    } else {
                        let record = Record {
                            version: index,
                            data: m.value.clone(),
                        };
                        writes.push((key.clone(), Some(record.encode_to_vec())));
                        written.insert(key, Some(index));
                    }
                }
            }
            outcomes.push(outcome);
        }
        writes.extend(extra.iter().map(|(k, v)| (k.to_vec(), Some(v.clone()))));
        self.unwritten.record(writes, (index, term));
        self.rows.update(
            index,
            applied
                .into_iter()
                .map(|(m, object)| (m.table.as_str(), m.key.as_str(), object)),
        )?;
        for (m, action) in changes {
            let value = if m.delete { &[][..] } else { &m.value[..] };
            self.events.record(&m.table, &m.key, action, value);
        }
        Ok(outcomes)
    }

    fn check(
        &self,
        mutations: &[Mutation],
        written: &HashMap<Vec<u8>, Option<u64>>,
    ) -> Result<Applied, StoreError> {
        for m in mutations {
            if !m.must_not_exist && m.expect_version == 0 {
                // An unconditional write: no need to read the row.
                continue;
            }
            let key = row_key(&m.table, &m.key);
            let current = match written.get(&key) {
                Some(v) => *v,
                None => self.rows.version(&m.table, &m.key)?,
            };
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
        let store = Store::open(&db, crate::crypto::test_key()).expect("store");
        let tx = Tx::new().create(&node("a", "h1"));
        assert_eq!(
            store.apply_entry(5, 1, &tx.mutations, &[]).expect("apply"),
            Ok(())
        );
        let (v, n) = store.get::<Node>("a").expect("get").expect("present");
        assert_eq!((v, n.hostname.as_str()), (5, "h1"));

        // A second create of the same key is refused, and nothing changes.
        let again = Tx::new().create(&node("a", "h2"));
        assert!(matches!(
            store
                .apply_entry(6, 1, &again.mutations, &[])
                .expect("apply"),
            Err(ApplyError::Exists { .. })
        ));
        assert_eq!(store.applied().expect("applied"), (6, 1));

        // A stale version is a conflict; the right one goes through.
        let stale = Tx::new().put(&node("a", "h3"), Some(4));
        assert!(store
            .apply_entry(7, 1, &stale.mutations, &[])
            .expect("apply")
            .is_err());
        let fresh = Tx::new().put(&node("a", "h3"), Some(5));
        assert_eq!(
            store
                .apply_entry(8, 1, &fresh.mutations, &[])
                .expect("apply"),
            Ok(())
        );
        assert_eq!(store.list::<Node>().expect("list")[0].1.hostname, "h3");

        // Within one entry, a later proposal sees an earlier one's writes.
        let first = Tx::new().create(&node("b", "x"));
        let second = Tx::new().create(&node("b", "y"));
        let both = [first.mutations.as_slice(), second.mutations.as_slice()];
        let outcomes = store.apply_proposals(10, 2, &both, &[]).expect("apply");
        assert!(outcomes[0].is_ok() && outcomes[1].is_err());
        assert_eq!(
            store.get::<Node>("b").expect("get").expect("b").1.hostname,
            "x"
        );

        let del = Tx::new().delete::<Node>("a", None);
        store
            .apply_entry(11, 2, &del.mutations, &[])
            .expect("apply")
            .expect("ok");
        assert!(store.get::<Node>("a").expect("get").is_none());
        assert_eq!(store.applied().expect("applied"), (11, 2));
    }

    #[test]
    fn a_write_that_does_not_decode_is_refused_whole() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let store = Store::open(&db, crate::crypto::test_key()).expect("store");
        let mut bad = Tx::new()
            .create(&node("c", "h1"))
            .put(&node("d", "h2"), None);
        bad.mutations[1].value = vec![0xff, 0xff, 0xff];
        let good = Tx::new().create(&node("e", "h3"));
        let both = [bad.mutations.as_slice(), good.mutations.as_slice()];
        let outcomes = store.apply_proposals(3, 1, &both, &[]).expect("apply");
        assert!(
            matches!(&outcomes[0], Err(ApplyError::Undecodable { table, key }) if table == "nodes" && key == "d"),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[1], Ok(()));
        // Neither of the bad proposal's rows is anywhere: not in memory, not
        // in the state tree the rows are reloaded from.
        store.checkpoint().expect("checkpoint");
        for reloaded in [false, true] {
            if reloaded {
                store.reload_rows().expect("reload");
            }
            assert!(store.get::<Node>("c").expect("get").is_none());
            assert!(store.get::<Node>("d").expect("get").is_none());
            assert!(store.get::<Node>("e").expect("get").is_some());
        }
    }
}
