//! In-process clusters of managers on 127.0.0.1: elections, durability,
//! partitions and membership changes through the real control API.

use std::collections::HashMap;
use std::time::Duration;

use swarmlet_proto::common::Empty;
use swarmlet_proto::control::{JoinTokenRequest, NodeRef, SetRoleRequest, UpdateNodeRequest};
use swarmlet_proto::local::{InitRequest, JoinRequest};
use swarmlet_tests::{form_cluster, wait_until, InProcessNode};

const ELECTION: Duration = Duration::from_secs(10);

/// Starts `managers` managers and `workers` workers; node 0 initialises.
async fn cluster(managers: usize, workers: usize) -> (tempfile::TempDir, Vec<InProcessNode>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = form_cluster(
        dir.path(),
        managers,
        workers,
        |i| format!("node{i}"),
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("cluster forms: {e:#}"));
    (dir, nodes)
}

fn leader_index(nodes: &[InProcessNode]) -> Option<usize> {
    nodes.iter().position(|n| n.is_leader())
}

async fn wait_leader(nodes: &[InProcessNode], not: Option<usize>) -> usize {
    wait_until("a leader", ELECTION, || async {
        leader_index(nodes).filter(|i| Some(*i) != not)
    })
    .await
}

/// Adds label `key` on node0 through `via`; true when acknowledged.
async fn write_label(via: &InProcessNode, node: &str, key: &str) -> bool {
    let mut label_add = HashMap::new();
    label_add.insert(key.to_string(), "v".to_string());
    via.control()
        .update_node(UpdateNodeRequest {
            node: node.to_string(),
            availability: None,
            label_add,
            label_rm: vec![],
        })
        .await
        .is_ok()
}

async fn labels(via: &InProcessNode, node: &str) -> HashMap<String, String> {
    via.control()
        .inspect_node(NodeRef { node: node.into() })
        .await
        .expect("inspect")
        .into_inner()
        .labels
}

async fn kill_leader_keeps_acknowledged_writes(managers: usize) {
    let (_dir, mut nodes) = cluster(managers, 0).await;
    let leader = wait_leader(&nodes, None).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let via = &nodes[i % managers];
        let key = format!("k{i}");
        if write_label(via, "node0", &key).await {
            acked.push(key);
        }
    }
    assert_eq!(acked.len(), 20, "all writes on a healthy cluster succeed");
    nodes[leader].stop().await;
    let new_leader = wait_leader(&nodes, Some(leader)).await;
    assert_ne!(new_leader, leader);
    let survivor = &nodes[new_leader];
    let target = if leader == 0 { "node1" } else { "node0" };
    let target_labels_before = labels(survivor, target).await.len();
    wait_until("a write after failover", ELECTION, || async {
        write_label(survivor, target, "after").await.then_some(())
    })
    .await;
    assert_eq!(
        labels(survivor, target).await.len(),
        target_labels_before + 1
    );
    if leader != 0 {
        let got = labels(survivor, "node0").await;
        for k in &acked {
            assert!(got.contains_key(k), "acknowledged write {k} lost");
        }
    }
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_managers_survive_leader_loss() {
    kill_leader_keeps_acknowledged_writes(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_managers_survive_leader_loss() {
    kill_leader_keeps_acknowledged_writes(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_leader_loss_when_leader_is_not_node0() {
    // Move leadership off node0 first, so the labels written on node0 are
    // read back after the leader that acknowledged them is gone.
    let (_dir, mut nodes) = cluster(3, 0).await;
    let leader = wait_leader(&nodes, None).await;
    if leader == 0 {
        let m = nodes[0].manager().expect("manager");
        let other = m
            .raft
            .status()
            .voters
            .into_iter()
            .find(|v| *v != m.raft.status().raft_id);
        m.raft.transfer_leader(other.expect("another voter"));
        wait_leader(&nodes, Some(0)).await;
    }
    let leader = wait_leader(&nodes, None).await;
    let mut acked = Vec::new();
    for i in 0..30 {
        let key = format!("w{i}");
        if write_label(&nodes[leader], "node0", &key).await {
            acked.push(key);
        }
    }
    nodes[leader].stop().await;
    let survivor = wait_leader(&nodes, Some(leader)).await;
    let got = labels(&nodes[survivor], "node0").await;
    for k in &acked {
        assert!(got.contains_key(k), "acknowledged write {k} lost");
    }
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_of_all_managers_keeps_state() {
    let (_dir, mut nodes) = cluster(3, 0).await;
    wait_leader(&nodes, None).await;
    assert!(write_label(&nodes[1], "node2", "persisted").await);
    for n in nodes.iter_mut() {
        n.stop().await;
    }
    for n in nodes.iter_mut() {
        n.start().await.expect("restart");
    }
    wait_leader(&nodes, None).await;
    let got = wait_until("state readable after restart", ELECTION, || async {
        nodes[0]
            .control()
            .inspect_node(NodeRef {
                node: "node2".into(),
            })
            .await
            .ok()
            .map(|r| r.into_inner())
    })
    .await;
    assert!(got.labels.contains_key("persisted"));
    let list = nodes[2]
        .control()
        .list_nodes(Empty {})
        .await
        .expect("ls")
        .into_inner();
    assert_eq!(list.nodes.len(), 3);
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_cannot_commit_majority_can() {
    let (_dir, mut nodes) = cluster(3, 0).await;
    let leader = wait_leader(&nodes, None).await;
    // Cut the leader off from both followers, both ways.
    let ids: Vec<u64> = nodes
        .iter()
        .map(|n| n.manager().expect("manager").raft.status().raft_id)
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        let t = n.manager().expect("manager").transport.clone();
        for (j, id) in ids.iter().enumerate() {
            if i != j && (i == leader || j == leader) {
                t.set_blocked(*id, true);
            }
        }
    }
    let isolated = nodes[leader].manager().expect("manager");
    let tx = swarmlet_manager::store::Tx::new().put(
        &swarmlet_proto::objects::RemovedNode {
            id: "minority-write".into(),
            removed_at_ms: 0,
        },
        None,
    );
    assert!(
        isolated.raft.propose(tx).await.is_err(),
        "a partitioned leader must not commit"
    );
    let new_leader = wait_leader(&nodes, Some(leader)).await;
    let target = nodes[new_leader].name.clone();
    assert!(write_label(&nodes[new_leader], &target, "majority").await);
    assert!(isolated
        .store
        .get::<swarmlet_proto::objects::RemovedNode>("minority-write")
        .expect("read")
        .is_none());
    // Heal: the old leader catches up with the majority's write.
    for n in nodes.iter() {
        let t = n.manager().expect("manager").transport.clone();
        for id in &ids {
            t.set_blocked(*id, false);
        }
    }
    let old = nodes[leader].manager().expect("manager");
    let target2 = target.clone();
    wait_until("old leader catches up", ELECTION, || {
        let old = old.clone();
        let target = target2.clone();
        async move {
            let nodes = old.nodes().ok()?;
            nodes
                .iter()
                .any(|(_, n)| n.hostname == target && n.labels.contains_key("majority"))
                .then_some(())
        }
    })
    .await;
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn promote_and_demote_live() {
    let (_dir, mut nodes) = cluster(1, 2).await;
    let m0 = nodes[0].manager().expect("manager");
    for name in ["node1", "node2"] {
        nodes[0]
            .control()
            .set_node_role(SetRoleRequest {
                node: name.into(),
                role: "manager".into(),
            })
            .await
            .expect("promote");
    }
    wait_until("promoted nodes become voters", ELECTION, || {
        let m0 = m0.clone();
        async move { (m0.raft.status().voters.len() == 3).then_some(()) }
    })
    .await;
    assert!(nodes[1].manager().is_some() && nodes[2].manager().is_some());
    // A promoted manager serves the control API (forwarding to the leader).
    assert!(write_label(&nodes[2], "node1", "via-promoted").await);
    nodes[1]
        .control()
        .set_node_role(SetRoleRequest {
            node: "node2".into(),
            role: "worker".into(),
        })
        .await
        .expect("demote");
    wait_until(
        "demoted node leaves raft and stops its manager",
        ELECTION,
        || async {
            let voters = nodes[0].manager()?.raft.status().voters.len();
            (voters == 2 && nodes[2].manager().is_none()).then_some(())
        },
    )
    .await;
    let info = nodes[0]
        .control()
        .inspect_node(NodeRef {
            node: "node2".into(),
        })
        .await
        .expect("inspect")
        .into_inner();
    assert_eq!(info.role, "worker");
    assert_eq!(info.manager_status, "");
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_that_lose_quorum_are_refused() {
    let (_dir, mut nodes) = cluster(3, 0).await;
    let leader = wait_leader(&nodes, None).await;
    let down = (leader + 1) % 3;
    let healthy = (leader + 2) % 3;
    nodes[down].stop().await;
    let m = nodes[leader].manager().expect("manager");
    let down_id = nodes
        .iter()
        .position(|_| true)
        .map(|_| ())
        .and(
            m.members()
                .expect("members")
                .into_iter()
                .find(|x| x.addr == nodes[down].addr),
        )
        .expect("member")
        .raft_id;
    wait_until(
        "leader sees the stopped manager as unreachable",
        ELECTION,
        || {
            let m = m.clone();
            async move { (!m.raft.status().reachable.contains(&down_id)).then_some(()) }
        },
    )
    .await;
    let err = nodes[leader]
        .control()
        .set_node_role(SetRoleRequest {
            node: nodes[healthy].name.clone(),
            role: "worker".into(),
        })
        .await
        .expect_err("demoting a healthy manager with one down loses quorum");
    assert!(err.message().contains("quorum"), "{}", err.message());
    assert_eq!(m.raft.status().voters.len(), 3, "nothing changed");
    // Removing a manager node outright is refused too: it must be demoted first.
    let err = nodes[leader]
        .control()
        .remove_node(swarmlet_proto::control::RemoveNodeRequest {
            node: nodes[healthy].name.clone(),
            force: true,
        })
        .await
        .expect_err("a manager cannot be removed");
    assert!(err.message().contains("demote"), "{}", err.message());
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_and_lagging_managers_catch_up_by_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small_log: fn(&mut swarmd::config::DaemonConfig) = |c| {
        c.snapshot_interval = 20;
        c.snapshot_keep_entries = 5;
    };
    let mut nodes: Vec<InProcessNode> = (0..3)
        .map(|i| {
            let mut n = InProcessNode::new(dir.path(), &format!("node{i}"));
            n.tune = small_log;
            n
        })
        .collect();
    for n in nodes.iter_mut() {
        n.start().await.expect("start");
    }
    nodes[0]
        .local()
        .init(InitRequest::default())
        .await
        .expect("init");
    for i in 0..60 {
        assert!(write_label(&nodes[0], "node0", &format!("early{i}")).await);
    }
    let m0 = nodes[0].manager().expect("manager");
    let token = nodes[0]
        .control()
        .get_join_token(JoinTokenRequest {
            role: "manager".into(),
            rotate: false,
        })
        .await
        .expect("token")
        .into_inner()
        .token;
    // The log no longer starts at the beginning: joiners need a snapshot.
    for n in nodes.iter().skip(1) {
        n.local()
            .join(JoinRequest {
                token: token.clone(),
                remote_addr: nodes[0].addr.clone(),
                advertise_addr: String::new(),
            })
            .await
            .expect("join");
    }
    let has_label = |m: std::sync::Arc<swarmlet_manager::manager::Manager>, key: String| async move {
        let nodes = m.nodes().ok()?;
        nodes
            .iter()
            .any(|(_, n)| n.hostname == "node0" && n.labels.contains_key(&key))
            .then_some(())
    };
    for n in nodes.iter().skip(1) {
        let m = n.manager().expect("manager");
        wait_until("joined manager has the early writes", ELECTION, || {
            has_label(m.clone(), "early59".into())
        })
        .await;
    }
    assert_eq!(m0.raft.status().voters.len(), 3);
    // A follower that misses many entries gets a snapshot when it returns.
    let leader = wait_leader(&nodes, None).await;
    let lagging = (leader + 1) % 3;
    nodes[lagging].stop().await;
    for i in 0..60 {
        assert!(write_label(&nodes[leader], "node0", &format!("late{i}")).await);
    }
    nodes[lagging].start().await.expect("restart");
    let m = nodes[lagging].manager().expect("manager");
    wait_until("lagging manager catches up", ELECTION, || {
        has_label(m.clone(), "late59".into())
    })
    .await;
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manager_leaving_with_force_leaves_raft() {
    let (_dir, mut nodes) = cluster(3, 0).await;
    let e = nodes[2]
        .local()
        .leave(swarmlet_proto::local::LeaveRequest { force: false })
        .await
        .expect_err("a manager needs --force");
    assert!(e.message().contains("--force"), "{}", e.message());
    nodes[2]
        .local()
        .leave(swarmlet_proto::local::LeaveRequest { force: true })
        .await
        .expect("leave --force");
    let m0 = nodes[0].manager().expect("manager");
    wait_until("two voters left", ELECTION, || {
        let m0 = m0.clone();
        async move { (m0.raft.status().voters.len() == 2).then_some(()) }
    })
    .await;
    let info = nodes[2]
        .local()
        .info(Empty {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.state, "inactive");
    assert!(!nodes[2].state_dir.join("node.json").exists());
    // The two remaining managers still commit.
    let leader = wait_leader(&nodes, None).await;
    assert!(write_label(&nodes[leader], "node0", "after-leave").await);
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_new_cluster_from_the_last_manager_restores_service() {
    let (_dir, mut nodes) = cluster(3, 0).await;
    wait_leader(&nodes, None).await;
    assert!(write_label(&nodes[0], "node1", "before-the-loss").await);
    // Two of three managers are lost for good: no quorum is left.
    nodes[1].stop().await;
    nodes[2].stop().await;
    nodes[0].stop().await;
    nodes[0].start().await.expect("restart without the flag");
    assert!(
        !write_label(&nodes[0], "node1", "no-quorum").await,
        "a lone manager of three must not commit"
    );
    nodes[0].stop().await;

    nodes[0].tune = |c| c.force_new_cluster = true;
    nodes[0]
        .start()
        .await
        .expect("restart with --force-new-cluster");
    wait_until("the survivor leads alone", ELECTION, || async {
        nodes[0]
            .manager()
            .filter(|m| m.is_leader() && m.raft.status().voters.len() == 1)
            .map(|_| ())
    })
    .await;
    // Committed state survived, and new changes commit.
    assert!(labels(&nodes[0], "node1")
        .await
        .contains_key("before-the-loss"));
    assert!(write_label(&nodes[0], "node1", "after-the-recovery").await);
    // A second restart (flag gone) keeps the one-manager group.
    nodes[0].stop().await;
    nodes[0].tune = |_| {};
    nodes[0].start().await.expect("restart");
    wait_leader(&nodes[..1], None).await;
    assert!(labels(&nodes[0], "node1")
        .await
        .contains_key("after-the-recovery"));
    nodes[0].stop().await;
}
