//! Node liveness: the leader records heartbeats in memory and marks a node
//! `down` when it has missed [`MISSED_HEARTBEATS`] periods, `ready` again at
//! its next heartbeat. A new leader gives every node a full grace period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarmlet_proto::objects::{Node, NodeStatus, Resources};

use crate::core::Core;
use crate::store::Tx;

/// Heartbeat periods a node may miss before it is marked down.
pub const MISSED_HEARTBEATS: u32 = 3;
/// Default heartbeat period (Docker Swarm: 5 s; node down after ~15 s).
pub const DEFAULT_HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

/// Last heartbeat of each node, as seen by this manager.
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<String, Instant>>,
    leader_since: Mutex<Option<Instant>>,
}

impl Liveness {
    /// Records a heartbeat from `node_id`.
    pub fn record(&self, node_id: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(node_id.to_string(), Instant::now());
        }
    }

    /// Whether `node_id` missed too many heartbeats at `now`.
    fn expired(&self, node_id: &str, period: Duration, now: Instant) -> bool {
        let deadline = period * MISSED_HEARTBEATS;
        let since = self
            .seen
            .lock()
            .ok()
            .and_then(|s| s.get(node_id).copied())
            .or_else(|| self.leader_since.lock().ok().and_then(|l| *l));
        since.is_some_and(|t| now.duration_since(t) > deadline)
    }
}

/// The heartbeat period configured in the cluster object.
pub fn heartbeat_period(core: &Core) -> Duration {
    core.cluster()
        .ok()
        .map(|(_, c)| c.heartbeat_period_ms)
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_HEARTBEAT_PERIOD)
}

/// Marks nodes down while this manager is leader, from the heartbeats
/// recorded in `liveness`; ends with the Raft loop.
pub async fn run_monitor(core: Core, liveness: Arc<Liveness>) {
    let mut was_leader = false;
    let status = core.raft.watch_status();
    loop {
        let period = heartbeat_period(&core);
        let leader = core.is_leader();
        if leader && !was_leader {
            if let Ok(mut l) = liveness.leader_since.lock() {
                *l = Some(Instant::now());
            }
            if let Ok(mut seen) = liveness.seen.lock() {
                seen.clear();
            }
        }
        was_leader = leader;
        if leader {
            mark_expired_down(&core, &liveness, period).await;
        }
        tokio::time::sleep(period / 4).await;
        if status.has_changed().is_err() {
            return;
        }
    }
}

async fn mark_expired_down(m: &Core, liveness: &Liveness, period: Duration) {
    let now = Instant::now();
    let Ok(nodes) = m.nodes() else { return };
    for (version, mut node) in nodes {
        if node.status() == NodeStatus::Down || *node.id == *m.node_id {
            continue;
        }
        if liveness.expired(&node.id, period, now) {
            node.set_status(NodeStatus::Down);
            node.status_message = "heartbeat failure".into();
            node.updated_at_ms = swarmlet_common::clock::now_ms();
            let id = node.id.clone();
            match m.propose(Tx::new().put(&node, Some(version))).await {
                Ok(_) => tracing::info!(node = %id, "node missed heartbeats: marked down"),
                Err(e) => tracing::debug!(node = %id, "could not mark node down: {}", e),
            }
        }
    }
}

/// What a node says of itself in a heartbeat.
pub struct Reported {
    /// Its advertise address (empty: unchanged).
    pub addr: String,
    /// What it offers to tasks (`None`: unchanged).
    pub resources: Option<Resources>,
    /// The TCP ports its swarmd listens on.
    pub daemon_ports: Vec<u32>,
    /// Why its container engine cannot be reached (empty: it can).
    pub engine_error: String,
    /// Its data-path (VXLAN) address; empty: its advertise address's IP.
    pub data_addr: String,
}

/// Marks `node_id` ready (leader only) if it is not already, recording what
/// it reported of itself when that changed. A node whose container engine
/// cannot be reached is marked `down` instead, with the reason, so that it
/// gets no tasks and its tasks are placed elsewhere until the engine is back.
pub async fn mark_ready(m: &Core, node_id: &str, reported: Reported) {
    let Reported {
        addr,
        resources,
        daemon_ports,
        engine_error,
        data_addr,
    } = reported;
    let Ok(Some((version, mut node))) = m.store.get::<Node>(node_id) else {
        return;
    };
    let resources_known = resources.is_none() || node.resources == resources;
    let (status, message) = if engine_error.is_empty() {
        (NodeStatus::Ready, String::new())
    } else {
        (
            NodeStatus::Down,
            format!("engine unreachable: {engine_error}"),
        )
    };
    if node.status() == status
        && node.status_message == message
        && (addr.is_empty() || node.addr == addr)
        && resources_known
        && node.daemon_ports == daemon_ports
        && node.data_addr == data_addr
    {
        return;
    }
    if resources.is_some() {
        node.resources = resources;
    }
    node.daemon_ports = daemon_ports;
    node.data_addr = data_addr;
    if status == NodeStatus::Down && node.status() != NodeStatus::Down {
        tracing::warn!(node = node_id, "{message}: marked down");
    }
    node.set_status(status);
    node.status_message = message;
    if !addr.is_empty() {
        node.addr = addr.to_string();
    }
    node.updated_at_ms = swarmlet_common::clock::now_ms();
    if let Err(e) = m.propose(Tx::new().put(&node, Some(version))).await {
        tracing::debug!(node = node_id, "could not mark node ready: {}", e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{eventually, one_manager};
    use swarmlet_proto::objects::Cluster;

    fn node(id: &str) -> Node {
        let mut n = Node {
            id: id.into(),
            hostname: id.into(),
            ..Default::default()
        };
        n.set_status(NodeStatus::Ready);
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_that_stops_heartbeating_is_marked_down_and_back_up_at_its_next() {
        let core = one_manager().await;
        let cluster = Cluster {
            id: "c".into(),
            heartbeat_period_ms: 100,
            ..Default::default()
        };
        let tx = Tx::new()
            .create(&cluster)
            .create(&node("m1"))
            .create(&node("w1"))
            .create(&node("w2"));
        core.propose(tx).await.expect("rows");
        let liveness = Arc::new(Liveness::default());
        let monitor = tokio::spawn(run_monitor(core.clone(), liveness.clone()));
        let status_of = |id: &str| {
            core.store
                .get::<Node>(id)
                .ok()
                .flatten()
                .map(|(_, n)| n.status())
        };
        // w2 keeps heartbeating; w1 never does.
        let beat = {
            let liveness = liveness.clone();
            tokio::spawn(async move {
                loop {
                    liveness.record("w2");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        eventually("w1 down", || status_of("w1") == Some(NodeStatus::Down)).await;
        assert_eq!(status_of("w2"), Some(NodeStatus::Ready));
        assert_eq!(status_of("m1"), Some(NodeStatus::Ready), "never itself");
        let message = core
            .store
            .get::<Node>("w1")
            .ok()
            .flatten()
            .map(|(_, n)| n.status_message);
        assert_eq!(message.as_deref(), Some("heartbeat failure"));

        // Its next heartbeat brings it back.
        liveness.record("w1");
        mark_ready(
            &core,
            "w1",
            Reported {
                addr: String::new(),
                resources: None,
                daemon_ports: Vec::new(),
                engine_error: String::new(),
                data_addr: String::new(),
            },
        )
        .await;
        assert_eq!(status_of("w1"), Some(NodeStatus::Ready));
        beat.abort();
        // The monitor ends with the Raft loop.
        core.raft.stop();
        tokio::time::timeout(Duration::from_secs(5), monitor)
            .await
            .expect("the monitor ended")
            .expect("no panic");
    }
}
