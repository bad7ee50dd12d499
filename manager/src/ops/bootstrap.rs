//! A new cluster's first rows (`cluster init`): the cluster object with its
//! root CA and join token secrets, the first node as a ready manager, its
//! Raft membership, and the ingress network — one transaction, proposed
//! once the first manager leads.

use swarmlet_common::ca::RootCa;
use swarmlet_common::token::{new_secret, root_digest};
use swarmlet_proto::objects::{Cluster, Node, NodeAvailability, NodeRole, NodeStatus, RaftMember};

use super::OpsResult;
use crate::liveness::DEFAULT_HEARTBEAT_PERIOD;
use crate::store::Tx;

/// What the first manager knows about the cluster it starts.
pub struct NewCluster<'a> {
    /// The cluster's ID.
    pub cluster_id: String,
    /// Its root CA (made by the caller, which also signs its own certificate).
    pub ca: &'a RootCa,
    /// The first node's ID, hostname, address and Raft ID.
    pub node_id: String,
    /// The first node's hostname.
    pub hostname: String,
    /// The address other nodes dial.
    pub addr: String,
    /// The first manager's Raft ID.
    pub raft_id: u64,
    /// Default address pool of overlay networks (CIDR) and the prefix
    /// length of each network cut from it.
    pub default_addr_pool: String,
    /// Prefix length of each network cut from the pool.
    pub default_addr_pool_mask_len: u32,
    /// Autolock from the start (an unlock key is made).
    pub autolock: bool,
}

/// The cluster object and the transaction that writes the first rows.
pub fn first_rows(new: NewCluster<'_>) -> OpsResult<(Cluster, Tx)> {
    let now = swarmlet_common::clock::now_ms();
    let digest = root_digest(new.ca.cert_der());
    let mut cluster = Cluster {
        id: new.cluster_id,
        name: "default".into(),
        root_ca_cert_pem: new.ca.cert_pem().as_bytes().to_vec(),
        root_ca_key_pem: new.ca.key_pem().into_bytes(),
        worker_token_secret: new_secret(),
        manager_token_secret: new_secret(),
        heartbeat_period_ms: DEFAULT_HEARTBEAT_PERIOD.as_millis() as u64,
        task_history_limit: 5,
        default_addr_pool: new.default_addr_pool,
        default_addr_pool_mask_len: new.default_addr_pool_mask_len,
        created_at_ms: now,
        updated_at_ms: now,
        node_cert_expiry_ms: 0,
        // Made with the first secret or config.
        wrapped_data_key: Vec::new(),
        ..Default::default()
    };
    super::autolock::set_autolock(&mut cluster, new.autolock)?;
    let mut node = Node {
        id: new.node_id.clone(),
        hostname: new.hostname,
        addr: new.addr.clone(),
        created_at_ms: now,
        updated_at_ms: now,
        cert_root_digest: digest,
        ..Default::default()
    };
    node.set_role(NodeRole::Manager);
    node.set_availability(NodeAvailability::Active);
    node.set_status(NodeStatus::Ready);
    let member = RaftMember {
        raft_id: new.raft_id,
        node_id: new.node_id,
        addr: new.addr,
    };
    let tx = Tx::new()
        .create(&cluster)
        .create(&node)
        .put(&member, None)
        .create(&super::network::ingress_network());
    Ok((cluster, tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rows_make_a_ready_manager_in_a_cluster_with_ingress() {
        let ca = RootCa::create("c1").expect("CA");
        let (cluster, tx) = first_rows(NewCluster {
            cluster_id: "c1".into(),
            ca: &ca,
            node_id: "n1".into(),
            hostname: "h1".into(),
            addr: "10.0.0.1:4242".into(),
            raft_id: 7,
            default_addr_pool: "10.0.0.0/8".into(),
            default_addr_pool_mask_len: 24,
            autolock: true,
        })
        .expect("rows");
        assert_eq!(cluster.id, "c1");
        assert!(cluster.autolock && !cluster.unlock_key.is_empty());
        assert_ne!(cluster.worker_token_secret, cluster.manager_token_secret);
        let tables: Vec<String> = tx.into_mutations().into_iter().map(|m| m.table).collect();
        assert_eq!(tables, ["cluster", "nodes", "raft_members", "networks"]);
    }
}
