//! The typed tables and the transaction builder that turns object changes
//! into a Raft proposal's mutations.

use prost::Message;
use swarmlet_proto::objects::{
    Cluster, Config, Network, Node, RaftMember, RemovedNode, Secret, Service, Task,
};
use swarmlet_proto::store::Mutation;

/// A row type of the store.
pub trait Object: Message + Default + 'static {
    /// The table's name (the row key prefix).
    const TABLE: &'static str;
    /// The row's key within its table.
    fn key(&self) -> String;
}

impl Object for Node {
    const TABLE: &'static str = "nodes";
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Object for Cluster {
    const TABLE: &'static str = "cluster";
    fn key(&self) -> String {
        // There is one cluster object.
        "cluster".to_string()
    }
}

impl Object for RaftMember {
    const TABLE: &'static str = "raft_members";
    fn key(&self) -> String {
        format!("{:016x}", self.raft_id)
    }
}

impl Object for RemovedNode {
    const TABLE: &'static str = "removed_nodes";
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Object for Service {
    const TABLE: &'static str = "services";
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Object for Network {
    const TABLE: &'static str = "networks";
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Object for Secret {
    const TABLE: &'static str = "secrets";
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Object for Config {
    const TABLE: &'static str = "configs";
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Object for Task {
    const TABLE: &'static str = "tasks";
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A batch of changes, applied atomically (all checks pass) or not at all.
#[derive(Default, Debug, Clone)]
pub struct Tx {
    pub(crate) mutations: Vec<Mutation>,
}

impl Tx {
    /// An empty transaction.
    pub fn new() -> Self {
        Tx::default()
    }

    /// Creates `obj`; fails if a row with its key exists.
    pub fn create<T: Object>(mut self, obj: &T) -> Self {
        self.mutations.push(Mutation {
            table: T::TABLE.into(),
            key: obj.key(),
            value: obj.encode_to_vec(),
            must_not_exist: true,
            ..Default::default()
        });
        self
    }

    /// Writes `obj`; with `Some(v)`, only if the row is still at version `v`.
    pub fn put<T: Object>(mut self, obj: &T, expect_version: Option<u64>) -> Self {
        self.mutations.push(Mutation {
            table: T::TABLE.into(),
            key: obj.key(),
            value: obj.encode_to_vec(),
            expect_version: expect_version.unwrap_or(0),
            ..Default::default()
        });
        self
    }

    /// Deletes row `key` of table `T`.
    pub fn delete<T: Object>(mut self, key: &str, expect_version: Option<u64>) -> Self {
        self.mutations.push(Mutation {
            table: T::TABLE.into(),
            key: key.into(),
            delete: true,
            expect_version: expect_version.unwrap_or(0),
            ..Default::default()
        });
        self
    }

    /// Whether the transaction changes nothing.
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }

    /// The mutations, for a proposal.
    pub fn into_mutations(self) -> Vec<Mutation> {
        self.mutations
    }
}
