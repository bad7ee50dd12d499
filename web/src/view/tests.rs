use std::time::Instant;

use swarmlet_proto::control::{NodeInfo, ServiceInfo, TaskInfo};
use swarmlet_proto::objects::{
    NetworkAttachment, NetworkSpec, PortConfig, Resources, ServiceSpec, Task, TaskStatus,
};

use super::*;

fn node(i: usize) -> NodeInfo {
    NodeInfo {
        id: format!("node{i:04}"),
        hostname: format!("h{i:04}"),
        role: if i < 3 { "manager" } else { "worker" }.into(),
        status: "ready".into(),
        availability: "active".into(),
        manager_status: if i == 0 { "leader" } else { "" }.into(),
        resources: Some(Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        }),
        ..Default::default()
    }
}

fn task(id: usize, node: usize, service: usize, state: TaskState) -> TaskInfo {
    let mut status = TaskStatus {
        timestamp_ms: 1_000,
        ..Default::default()
    };
    status.set_state(state);
    if state == TaskState::Failed {
        status.err = "exit code 1".into();
    }
    let mut t = Task {
        id: format!("task{id:06}"),
        service_id: format!("svc{service}"),
        service_name: format!("svc{service}"),
        slot: id as u64 + 1,
        node_id: format!("node{node:04}"),
        status: Some(status),
        spec: Some(ServiceSpec {
            reserve_memory_bytes: 1 << 20,
            ..Default::default()
        }),
        ..Default::default()
    };
    t.set_desired_state(if state == TaskState::Failed {
        TaskState::Shutdown
    } else {
        TaskState::Running
    });
    TaskInfo {
        task: Some(t),
        node_hostname: String::new(),
    }
}

#[test]
fn nodes_have_their_tasks_as_cards() {
    let nodes = [node(0), node(1)];
    let mut stopping = task(4, 1, 1, TaskState::Running);
    if let Some(t) = stopping.task.as_mut() {
        t.set_desired_state(TaskState::Shutdown);
    }
    let tasks = [
        task(0, 0, 1, TaskState::Running),
        task(1, 1, 1, TaskState::Starting),
        task(2, 1, 1, TaskState::Failed),
        task(3, 1, 1, TaskState::Shutdown),
        stopping,
    ];
    let v = build(&nodes, &[], &tasks, &[], ClusterView::default(), 2_000);
    assert_eq!(v.nodes[0].hostname, "h0000");
    assert!(v.nodes[0].leader);
    assert_eq!(v.nodes[0].cards.len(), 1);
    assert_eq!(v.nodes[0].cards[0].state, "running");
    assert_eq!(v.nodes[0].cards[0].name, "svc1.1");
    let states: Vec<_> = v.nodes[1].cards.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(
        states,
        ["starting", "failed"],
        "a stopped task is not shown"
    );
    assert_eq!(v.nodes[1].cards[1].error, "exit code 1");
    assert_eq!(v.nodes[0].reserved_memory_bytes, 1 << 20);
    // A failure older than a minute is gone.
    let later = build(
        &nodes,
        &[],
        &tasks,
        &[],
        ClusterView::default(),
        1_000 + FAILED_SHOWN_MS + 1,
    );
    assert_eq!(later.nodes[1].cards.len(), 1);
}

#[test]
fn services_and_networks() {
    let services = [ServiceInfo {
        id: "s1".into(),
        spec: Some(ServiceSpec {
            name: "web".into(),
            image: "nginx".into(),
            replicas: 3,
            networks: vec!["front".into()],
            env: vec!["PASSWORD=hunter2".into()],
            ports: vec![PortConfig {
                published: 8080,
                target: 80,
                protocol: "tcp".into(),
                mode: "ingress".into(),
            }],
            ..Default::default()
        }),
        replicas_running: 2,
        replicas_desired: 3,
        ..Default::default()
    }];
    let mut n = node(0);
    n.lb_addresses = vec![NetworkAttachment {
        network_id: "net1".into(),
        network_name: "front".into(),
        address: "10.0.1.3/24".into(),
    }];
    let networks = [Network {
        id: "net1".into(),
        subnet: "10.0.1.0/24".into(),
        spec: Some(NetworkSpec {
            name: "front".into(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let v = build(&[n], &services, &[], &networks, ClusterView::default(), 0);
    let s = &v.services[0];
    assert_eq!((s.running, s.desired, s.converging), (2, 3, true));
    assert_eq!(s.ports, ["8080:80/tcp"]);
    assert_eq!(v.networks[0].services, ["web"]);
    assert_eq!(v.networks[0].lb["h0000"], "10.0.1.3/24");
    let json = serde_json::to_string(&v).expect("json");
    assert!(!json.contains("hunter2"), "no environment on the page");
}

#[test]
fn a_thousand_nodes_and_ten_thousand_tasks() {
    let nodes: Vec<NodeInfo> = (0..1_000).map(node).collect();
    // Most nodes hold 8 tasks; node 7 holds 2,000 (more than a screenful).
    let mut tasks: Vec<TaskInfo> = (0..8_000)
        .map(|i| task(i, i % 1_000, i % 40, TaskState::Running))
        .collect();
    tasks.extend((8_000..10_000).map(|i| task(i, 7, i % 3, TaskState::Running)));
    let started = Instant::now();
    let v = build(&nodes, &[], &tasks, &[], ClusterView::default(), 2_000);
    let took = started.elapsed();
    assert_eq!(v.nodes.len(), 1_000);
    let shown: usize = v.nodes.iter().map(|n| n.task_count).sum();
    assert_eq!(shown, 10_000);
    let crowded = v
        .nodes
        .iter()
        .find(|n| n.hostname == "h0007")
        .expect("h0007");
    assert!(crowded.cards.is_empty(), "grouped instead");
    let grouped: usize = crowded.groups.iter().map(|g| g.count).sum();
    assert_eq!(grouped, crowded.task_count);
    assert!(crowded.groups.len() <= 40 + 3);
    let cards: usize = v.nodes.iter().map(|n| n.cards.len()).sum();
    assert!(cards <= 1_000 * CARDS_PER_NODE);
    let json = serde_json::to_vec(&v).expect("json");
    assert!(
        json.len() < 3_000_000,
        "the page's data stays small: {} bytes",
        json.len()
    );
    assert!(took.as_millis() < 2_000, "built in {took:?}");
}
