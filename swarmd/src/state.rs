//! What a joined node remembers about itself across restarts (`node.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use swarmlet_common::identity::Role;

/// The node's persisted identity and role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    /// Node ID.
    pub node_id: String,
    /// Cluster ID.
    pub cluster_id: String,
    /// Current role (`manager` or `worker` in the file).
    pub role: Role,
    /// Raft ID while a manager (0 otherwise).
    pub raft_id: u64,
    /// Whether the Raft storage already belongs to the group.
    pub raft_joined: bool,
    /// Address other nodes dial.
    pub addr: String,
    /// Managers last heard of.
    pub managers: Vec<String>,
    /// Digest of the root CA that signed the node's certificate (a node
    /// renews when the cluster's root changes; empty in older state files).
    #[serde(default)]
    pub cert_root_digest: String,
}

/// Failures reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O on the file.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The file could not be written privately.
    #[error("{0}: {1}")]
    Write(String, swarmlet_common::private_fs::PrivateFsError),
    /// The file is not valid JSON for a node state.
    #[error("{0}: {1}")]
    Json(String, serde_json::Error),
}

const FILE: &str = "node.json";

impl NodeState {
    /// Loads the state from `dir`, if the node has joined a cluster.
    pub fn load(dir: &Path) -> Result<Option<Self>, StateError> {
        let path = dir.join(FILE);
        let shown = path.display().to_string();
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::Io(shown, e)),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Json(shown, e)),
        }
    }

    /// Writes the state to `dir` atomically (0600, the directory 0700).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(FILE);
        let shown = path.display().to_string();
        let body =
            serde_json::to_vec_pretty(self).map_err(|e| StateError::Json(shown.clone(), e))?;
        swarmlet_common::private_fs::write_atomic(&path, &body)
            .map_err(|e| StateError::Write(shown, e))
    }
}
