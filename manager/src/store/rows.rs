//! The decoded rows of the store, kept in memory next to sled.
//!
//! Every read of the store comes from here: sled holds the durable copy,
//! this map the same rows already decoded, each behind an `Arc`. The
//! reconciler and the assignment publisher read every task on each pass;
//! decoding 100,000 tasks from sled each time cost more than the work
//! itself. Rows change only when an entry is applied (or a snapshot
//! installed), right after sled has them.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use prost::Message;
use swarmlet_proto::objects::{
    Cluster, Config, Network, Node, RaftMember, RemovedNode, Secret, Service, Task,
};
use swarmlet_proto::store::Record;

use super::tables::Object;
use super::StoreError;

pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

/// One decoded row: its version (the log index that wrote it) and object.
#[derive(Clone)]
struct Row {
    version: u64,
    object: Shared,
}

/// Decoded rows by table, then key (in key order, as sled lists them).
#[derive(Default)]
pub(crate) struct Rows {
    tables: RwLock<HashMap<String, BTreeMap<String, Row>>>,
}

fn decode_as<T: Object>(data: &[u8]) -> Result<Shared, prost::DecodeError> {
    Ok(Arc::new(T::decode(data)?) as Shared)
}

/// Decodes a row's object by its table name: `Ok(None)` for a table this
/// version does not know (such rows stay in the state tree only), an error
/// for bytes that are not an object of their table.
pub(crate) fn decode_object(
    table: &str,
    data: &[u8],
) -> Result<Option<Shared>, prost::DecodeError> {
    Ok(Some(match table {
        Node::TABLE => decode_as::<Node>(data)?,
        Cluster::TABLE => decode_as::<Cluster>(data)?,
        RaftMember::TABLE => decode_as::<RaftMember>(data)?,
        RemovedNode::TABLE => decode_as::<RemovedNode>(data)?,
        Service::TABLE => decode_as::<Service>(data)?,
        Network::TABLE => decode_as::<Network>(data)?,
        Secret::TABLE => decode_as::<Secret>(data)?,
        Config::TABLE => decode_as::<Config>(data)?,
        Task::TABLE => decode_as::<Task>(data)?,
        _ => return Ok(None),
    }))
}

impl Rows {
    /// Loads every row of the state tree.
    pub(crate) fn load(&self, state: &super::layout::StateTree) -> Result<(), StoreError> {
        let mut tables: HashMap<String, BTreeMap<String, Row>> = HashMap::new();
        state.for_each_row(|k, v| {
            let key = String::from_utf8_lossy(&k).into_owned();
            let Some((table, id)) = key.split_once('/') else {
                return Ok(());
            };
            let record =
                Record::decode(v.as_ref()).map_err(|_| StoreError::Corrupt(key.clone()))?;
            let Some(object) =
                decode_object(table, &record.data).map_err(|_| StoreError::Corrupt(key.clone()))?
            else {
                return Ok(());
            };
            tables.entry(table.to_string()).or_default().insert(
                id.to_string(),
                Row {
                    version: record.version,
                    object,
                },
            );
            Ok(())
        })?;
        // Replaced whole: a poisoned map is healed by a full reload.
        match self.tables.write() {
            Ok(mut t) => *t = tables,
            Err(poisoned) => {
                *poisoned.into_inner() = tables;
                self.tables.clear_poison();
            }
        }
        Ok(())
    }

    /// The version of row `key` of `table`, if it exists.
    pub(crate) fn version(&self, table: &str, key: &str) -> Result<Option<u64>, StoreError> {
        let tables = self.tables.read().map_err(|_| StoreError::Poisoned)?;
        Ok(tables
            .get(table)
            .and_then(|rows| rows.get(key))
            .map(|r| r.version))
    }

    /// Records writes (decoded objects) and deletes (`None`) made at
    /// `version`.
    pub(crate) fn update<'a>(
        &self,
        version: u64,
        changes: impl IntoIterator<Item = (&'a str, &'a str, Option<Shared>)>,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables.write().map_err(|_| StoreError::Poisoned)?;
        for (table, key, object) in changes {
            let rows = tables.entry(table.to_string()).or_default();
            match object {
                Some(object) => {
                    rows.insert(key.to_string(), Row { version, object });
                }
                None => {
                    rows.remove(key);
                }
            }
        }
        Ok(())
    }

    /// Row `key` of `T`'s table.
    pub(crate) fn get<T: Object>(&self, key: &str) -> Result<Option<(u64, Arc<T>)>, StoreError> {
        let tables = self.tables.read().map_err(|_| StoreError::Poisoned)?;
        let Some(row) = tables.get(T::TABLE).and_then(|rows| rows.get(key)) else {
            return Ok(None);
        };
        Ok(row
            .object
            .clone()
            .downcast::<T>()
            .ok()
            .map(|t| (row.version, t)))
    }

    /// Every row of `T`'s table, in key order.
    pub(crate) fn list<T: Object>(&self) -> Result<Vec<(u64, Arc<T>)>, StoreError> {
        let tables = self.tables.read().map_err(|_| StoreError::Poisoned)?;
        Ok(tables
            .get(T::TABLE)
            .map(|rows| {
                rows.values()
                    .filter_map(|r| {
                        r.object
                            .clone()
                            .downcast::<T>()
                            .ok()
                            .map(|t| (r.version, t))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> Shared {
        Arc::new(Node {
            id: id.into(),
            ..Default::default()
        })
    }

    #[test]
    fn rows_left_half_updated_by_a_panic_answer_no_read() {
        let rows = Arc::new(Rows::default());
        rows.update(1, [(Node::TABLE, "a", Some(node("a")))])
            .expect("update");
        assert_eq!(rows.list::<Node>().expect("list").len(), 1);
        // A panic while the map is being changed poisons its lock.
        let writer = rows.clone();
        let _ = std::thread::spawn(move || {
            let _guard = writer.tables.write();
            panic!("in the middle of an update");
        })
        .join();
        // Every read and write now fails instead of answering "no rows"
        // (from which the reconciler would create every task again).
        assert!(matches!(rows.list::<Node>(), Err(StoreError::Poisoned)));
        assert!(matches!(rows.get::<Node>("a"), Err(StoreError::Poisoned)));
        assert!(matches!(
            rows.version(Node::TABLE, "a"),
            Err(StoreError::Poisoned)
        ));
        assert!(matches!(
            rows.update(2, [(Node::TABLE, "b", Some(node("b")))]),
            Err(StoreError::Poisoned)
        ));
    }

    #[test]
    fn unknown_tables_are_kept_out_of_memory_and_bad_bytes_refused() {
        assert!(matches!(decode_object("gadgets", b"\x01\x02"), Ok(None)));
        assert!(decode_object(Node::TABLE, &[0xff, 0xff, 0xff]).is_err());
        assert!(matches!(decode_object(Node::TABLE, &[]), Ok(Some(_))));
    }
}
