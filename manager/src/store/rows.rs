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

type Shared = Arc<dyn Any + Send + Sync>;

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

fn decode_as<T: Object>(data: &[u8]) -> Option<Shared> {
    T::decode(data).ok().map(|t| Arc::new(t) as Shared)
}

/// Decodes a row's object by its table name.
fn decode_object(table: &str, data: &[u8]) -> Option<Shared> {
    match table {
        Node::TABLE => decode_as::<Node>(data),
        Cluster::TABLE => decode_as::<Cluster>(data),
        RaftMember::TABLE => decode_as::<RaftMember>(data),
        RemovedNode::TABLE => decode_as::<RemovedNode>(data),
        Service::TABLE => decode_as::<Service>(data),
        Network::TABLE => decode_as::<Network>(data),
        Secret::TABLE => decode_as::<Secret>(data),
        Config::TABLE => decode_as::<Config>(data),
        Task::TABLE => decode_as::<Task>(data),
        _ => None,
    }
}

impl Rows {
    /// Loads every row of sled tree `state` (meta keys start with a zero byte).
    pub(crate) fn load(&self, state: &crate::at_rest::tree::SealedTree) -> Result<(), StoreError> {
        let mut tables: HashMap<String, BTreeMap<String, Row>> = HashMap::new();
        for row in state.iter() {
            let (k, v) = row?;
            if k.first() == Some(&0) {
                continue;
            }
            let key = String::from_utf8_lossy(&k).into_owned();
            let Some((table, id)) = key.split_once('/') else {
                continue;
            };
            let record =
                Record::decode(v.as_ref()).map_err(|_| StoreError::Corrupt(key.clone()))?;
            let object = decode_object(table, &record.data)
                .ok_or_else(|| StoreError::Corrupt(key.clone()))?;
            tables.entry(table.to_string()).or_default().insert(
                id.to_string(),
                Row {
                    version: record.version,
                    object,
                },
            );
        }
        if let Ok(mut t) = self.tables.write() {
            *t = tables;
        }
        Ok(())
    }

    /// The version of row `key` of `table`, if it exists.
    pub(crate) fn version(&self, table: &str, key: &str) -> Option<u64> {
        let tables = self.tables.read().ok()?;
        tables.get(table)?.get(key).map(|r| r.version)
    }

    /// Records writes (`Some(bytes)`) and deletes (`None`) made at `version`.
    pub(crate) fn update<'a>(
        &self,
        version: u64,
        changes: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a [u8]>)>,
    ) {
        let Ok(mut tables) = self.tables.write() else {
            return;
        };
        for (table, key, value) in changes {
            let rows = tables.entry(table.to_string()).or_default();
            match value.and_then(|v| decode_object(table, v)) {
                Some(object) => {
                    rows.insert(key.to_string(), Row { version, object });
                }
                None => {
                    rows.remove(key);
                }
            }
        }
    }

    /// Row `key` of `T`'s table.
    pub(crate) fn get<T: Object>(&self, key: &str) -> Option<(u64, Arc<T>)> {
        let tables = self.tables.read().ok()?;
        let row = tables.get(T::TABLE)?.get(key)?;
        row.object
            .clone()
            .downcast::<T>()
            .ok()
            .map(|t| (row.version, t))
    }

    /// Every row of `T`'s table, in key order.
    pub(crate) fn list<T: Object>(&self) -> Vec<(u64, Arc<T>)> {
        let Ok(tables) = self.tables.read() else {
            return Vec::new();
        };
        tables
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
            .unwrap_or_default()
    }
}
