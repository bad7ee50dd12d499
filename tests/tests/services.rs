//! Services on an in-process cluster of managers and `sim` workers: spread,
//! constraints, failures, drains, global services, leader loss.

use std::collections::HashMap;
use std::time::Duration;

use swarmlet_proto::control::{
    CreateServiceRequest, ListTasksRequest, ServiceRef, TaskInfo, UpdateNodeRequest,
    UpdateServiceRequest,
};
use swarmlet_proto::objects::{ServiceMode, ServiceSpec, TaskState};
use swarmlet_tests::{form_cluster, wait_until, InProcessNode};

const CONVERGE: Duration = Duration::from_secs(30);

fn sim(c: &mut swarmd::config::DaemonConfig) {
    c.executor = swarmd::config::ExecutorKind::Sim;
}

async fn cluster(managers: usize, workers: usize) -> (tempfile::TempDir, Vec<InProcessNode>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = form_cluster(dir.path(), managers, workers, |i| format!("n{i:02}"), sim)
        .await
        .unwrap_or_else(|e| panic!("cluster forms: {e:#}"));
    let total = nodes.len();
    let c0 = &nodes[0];
    wait_until("every node ready", CONVERGE, || async {
        let ls = c0
            .control()
            .list_nodes(swarmlet_proto::common::Empty {})
            .await
            .ok()?
            .into_inner();
        (ls.nodes.iter().filter(|n| n.status == "ready").count() == total).then_some(())
    })
    .await;
    (dir, nodes)
}

fn spec(name: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: "sim/app".into(),
        replicas,
        ..Default::default()
    }
}

async fn tasks(via: &InProcessNode, service: &str) -> Vec<TaskInfo> {
    via.control()
        .list_tasks(ListTasksRequest {
            service: service.into(),
            node: String::new(),
        })
        .await
        .map(|r| r.into_inner().tasks)
        .unwrap_or_default()
}

fn running(ts: &[TaskInfo]) -> Vec<&TaskInfo> {
    ts.iter()
        .filter(|i| {
            i.task.as_ref().is_some_and(|t| {
                t.desired_state == TaskState::Running as i32
                    && t.status
                        .as_ref()
                        .is_some_and(|s| s.state == TaskState::Running as i32)
            })
        })
        .collect()
}

async fn wait_running(via: &InProcessNode, service: &str, n: usize) -> Vec<TaskInfo> {
    wait_until(
        &format!("{n} running tasks of {service}"),
        CONVERGE,
        || async {
            let ts = tasks(via, service).await;
            let desired = ts
                .iter()
                .filter(|i| {
                    i.task
                        .as_ref()
                        .is_some_and(|t| t.desired_state == TaskState::Running as i32)
                })
                .count();
            (running(&ts).len() == n && desired == n).then_some(ts)
        },
    )
    .await
}

fn per_node(ts: &[TaskInfo]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in running(ts) {
        *m.entry(i.node_hostname.clone()).or_default() += 1;
    }
    m
}

async fn create(via: &InProcessNode, spec: ServiceSpec) -> String {
    via.control()
        .create_service(CreateServiceRequest { spec: Some(spec) })
        .await
        .unwrap_or_else(|e| panic!("create: {}", e.message()))
        .into_inner()
        .id
}

async fn set_availability(via: &InProcessNode, node: &str, a: &str) {
    via.control()
        .update_node(UpdateNodeRequest {
            node: node.into(),
            availability: Some(a.into()),
            ..Default::default()
        })
        .await
        .expect("node update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_sim_workers_spread_reschedule_drain_and_global() {
    let (_dir, mut nodes) = cluster(3, 50).await;
    let m = &nodes[1]; // a follower: calls are forwarded to the leader
    create(m, spec("web", 106)).await;
    let ts = wait_running(m, "web", 106).await;
    let counts = per_node(&ts);
    assert_eq!(counts.len(), 53, "every node gets tasks");
    assert!(counts.values().all(|c| *c == 2), "even spread: {counts:?}");

    // A killed worker's tasks run elsewhere.
    let victim = nodes[10].name.clone();
    nodes[10].stop().await;
    let ts = wait_until("tasks moved off the dead worker", CONVERGE, || async {
        let ts = tasks(&nodes[0], "web").await;
        let counts = per_node(&ts);
        (running(&ts).len() == 106 && !counts.contains_key(&victim)).then_some(ts)
    })
    .await;
    assert!(per_node(&ts).values().all(|c| *c <= 3));

    // Drain empties a node.
    let drained = nodes[20].name.clone();
    set_availability(&nodes[0], &drained, "drain").await;
    wait_until("drained node empty", CONVERGE, || async {
        let ts = tasks(&nodes[0], "web").await;
        (running(&ts).len() == 106 && !per_node(&ts).contains_key(&drained)).then_some(())
    })
    .await;

    // A global service runs on every ready, active node, and follows drains.
    let mut g = spec("agent", 0);
    g.set_mode(ServiceMode::Global);
    create(&nodes[0], g).await;
    let ts = wait_running(&nodes[0], "agent", 51).await;
    assert_eq!(per_node(&ts).len(), 51);
    set_availability(&nodes[0], &drained, "active").await;
    wait_running(&nodes[0], "agent", 52).await;
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn constraints_failures_updates_and_leader_loss() {
    let (_dir, mut nodes) = cluster(3, 3).await;
    let m = &nodes[0];
    // Constraints: only workers.
    let mut s = spec("workers-only", 6);
    s.constraints = vec!["node.role==worker".into()];
    create(m, s).await;
    let ts = wait_running(m, "workers-only", 6).await;
    let counts = per_node(&ts);
    assert_eq!(counts.len(), 3);
    assert!(
        counts
            .keys()
            .all(|h| ["n03", "n04", "n05"].contains(&h.as_str())),
        "{counts:?}"
    );

    // Nothing fits: the task stays pending and says why.
    let mut s = spec("nowhere", 1);
    s.constraints = vec!["node.labels.gpu==yes".into()];
    create(m, s).await;
    let err = wait_until("pending with a reason", CONVERGE, || async {
        let ts = tasks(m, "nowhere").await;
        let st = ts.first()?.task.as_ref()?.status.clone()?;
        (st.state == TaskState::Pending as i32 && !st.err.is_empty()).then_some(st.err)
    })
    .await;
    assert_eq!(err, "no suitable node (6 nodes do not satisfy constraints)");

    // Placement preference: zone a has one worker, zone b two; the tasks
    // still split evenly between the zones.
    for (node, zone) in [("n03", "a"), ("n04", "b"), ("n05", "b")] {
        m.control()
            .update_node(UpdateNodeRequest {
                node: node.into(),
                label_add: [("zone".to_string(), zone.to_string())].into(),
                ..Default::default()
            })
            .await
            .expect("label");
    }
    let mut s = spec("zoned", 4);
    s.constraints = vec!["node.role==worker".into()];
    s.placement_spread = vec!["spread=node.labels.zone".into()];
    create(m, s).await;
    let counts = per_node(&wait_running(m, "zoned", 4).await);
    assert_eq!(counts.get("n03"), Some(&2), "{counts:?}");

    // Reservations beyond what any node offers: pending, and why.
    let mut s = spec("hog", 1);
    s.reserve_memory_bytes = 1 << 50;
    create(m, s).await;
    let err = wait_until("pending for memory", CONVERGE, || async {
        let ts = tasks(m, "hog").await;
        let st = ts.first()?.task.as_ref()?.status.clone()?;
        (!st.err.is_empty()).then_some(st.err)
    })
    .await;
    assert_eq!(err, "no suitable node (6 nodes with insufficient memory)");

    // A published port is taken cluster-wide; a dynamic one is picked.
    let port = |published| swarmlet_proto::objects::PortConfig {
        published,
        target: 80,
        ..Default::default()
    };
    let mut s = spec("web", 1);
    s.ports = vec![port(8080), port(0)];
    create(m, s).await;
    let mut s = spec("web2", 1);
    s.ports = vec![port(8080)];
    let e = m
        .control()
        .create_service(CreateServiceRequest { spec: Some(s) })
        .await
        .expect_err("port taken");
    assert_eq!(
        e.message(),
        "port 8080/tcp is already published by service web"
    );
    let web = m
        .control()
        .inspect_service(ServiceRef {
            service: "web".into(),
        })
        .await
        .expect("inspect")
        .into_inner();
    let published: Vec<u32> = web
        .endpoint
        .expect("endpoint")
        .ports
        .iter()
        .map(|p| p.published)
        .collect();
    assert_eq!(published, vec![8080, 30000]);

    // Bad specs are refused with a one-line reason.
    let mut bad = spec("bad", 1);
    bad.constraints = vec!["node.color=blue".into()];
    let e = m
        .control()
        .create_service(CreateServiceRequest { spec: Some(bad) })
        .await
        .expect_err("bad constraint");
    assert!(
        e.message().contains("invalid constraint"),
        "{}",
        e.message()
    );
    let e = m
        .control()
        .create_service(CreateServiceRequest {
            spec: Some(spec("workers-only", 1)),
        })
        .await
        .expect_err("duplicate name");
    assert!(e.message().contains("already exists"), "{}", e.message());

    // Tasks that exit are replaced; old ones stay as history, within the limit.
    let mut failing = spec("crashy", 1);
    failing.image = "sim/exit".into();
    create(m, failing).await;
    wait_until("several failed attempts", CONVERGE, || async {
        let ts = tasks(m, "crashy").await;
        let failed = ts
            .iter()
            .filter(|i| {
                i.task
                    .as_ref()
                    .and_then(|t| t.status.as_ref())
                    .is_some_and(|s| s.state == TaskState::Failed as i32)
            })
            .count();
        (failed >= 3).then_some(())
    })
    .await;
    let history = tasks(m, "crashy").await.len();
    assert!(
        history <= 7,
        "history limit keeps at most 5 finished + current: {history}"
    );

    // An update replaces the tasks with the new spec.
    let info = m
        .control()
        .inspect_service(ServiceRef {
            service: "workers-only".into(),
        })
        .await
        .expect("inspect")
        .into_inner();
    let mut new_spec = info.spec.clone().expect("spec");
    new_spec.image = "sim/app:v2".into();
    m.control()
        .update_service(UpdateServiceRequest {
            service: info.id.clone(),
            spec: Some(new_spec),
            expect_spec_version: info.spec_version,
            rollback: false,
        })
        .await
        .expect("update");
    wait_until("all tasks on v2", CONVERGE, || async {
        let ts = tasks(m, "workers-only").await;
        let run = running(&ts);
        (run.len() == 6
            && run.iter().all(|i| {
                i.task
                    .as_ref()
                    .and_then(|t| t.spec.as_ref())
                    .is_some_and(|s| s.image == "sim/app:v2")
            }))
        .then_some(())
    })
    .await;

    // Kill the leader: the service keeps its tasks and still scales.
    let leader = wait_until("a leader", CONVERGE, || async {
        nodes.iter().position(|n| n.is_leader())
    })
    .await;
    nodes[leader].stop().await;
    let via = if leader == 1 { 2 } else { 1 };
    let info = wait_until("service readable after failover", CONVERGE, || async {
        nodes[via]
            .control()
            .inspect_service(ServiceRef {
                service: "workers-only".into(),
            })
            .await
            .ok()
            .map(|r| r.into_inner())
    })
    .await;
    let mut scaled = info.spec.clone().expect("spec");
    scaled.replicas = 9;
    nodes[via]
        .control()
        .update_service(UpdateServiceRequest {
            service: info.id,
            spec: Some(scaled),
            expect_spec_version: 0,
            rollback: false,
        })
        .await
        .expect("scale after failover");
    wait_running(&nodes[via], "workers-only", 9).await;
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

fn update_state(
    info: &swarmlet_proto::control::ServiceInfo,
) -> swarmlet_proto::objects::UpdateState {
    info.update_status.clone().unwrap_or_default().state()
}

async fn inspect(
    via: &InProcessNode,
    service: &str,
) -> Option<swarmlet_proto::control::ServiceInfo> {
    via.control()
        .inspect_service(ServiceRef {
            service: service.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner())
}

async fn start_update(via: &InProcessNode, service: &str, image: &str) {
    let info = inspect(via, service).await.expect("service exists");
    let mut spec = info.spec.clone().expect("spec");
    spec.image = image.into();
    via.control()
        .update_service(UpdateServiceRequest {
            service: info.id,
            spec: Some(spec),
            expect_spec_version: info.spec_version,
            rollback: false,
        })
        .await
        .expect("update");
}

fn with_updates(
    name: &str,
    replicas: u64,
    action: swarmlet_proto::objects::FailureAction,
) -> ServiceSpec {
    let mut s = spec(name, replicas);
    let mut cfg = swarmlet_proto::objects::UpdateConfig {
        parallelism: 1,
        delay_ms: 200,
        monitor_ms: 500,
        ..Default::default()
    };
    cfg.set_failure_action(action);
    s.update = Some(cfg);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_update_rolls_back_and_leader_loss_mid_update_completes() {
    use swarmlet_proto::objects::{FailureAction, UpdateState};
    let (_dir, mut nodes) = cluster(3, 3).await;

    // New tasks that exit at once: the update rolls back to the old image.
    create(&nodes[0], with_updates("rb", 3, FailureAction::Rollback)).await;
    wait_running(&nodes[0], "rb", 3).await;
    start_update(&nodes[0], "rb", "sim/exit:v2").await;
    wait_until("rollback completed", CONVERGE, || async {
        let info = inspect(&nodes[0], "rb").await?;
        (update_state(&info) == UpdateState::RollbackCompleted).then_some(())
    })
    .await;
    let ts = wait_running(&nodes[0], "rb", 3).await;
    assert!(running(&ts).iter().all(|i| i
        .task
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .is_some_and(|s| s.image == "sim/app")));

    // A leader killed in the middle of an update: the new leader finishes it,
    // and no task's desired or observed state ever moves backwards.
    create(&nodes[0], with_updates("roll", 6, FailureAction::Pause)).await;
    wait_running(&nodes[0], "roll", 6).await;
    start_update(&nodes[0], "roll", "sim/app:v2").await;
    let leader = wait_until("a leader", CONVERGE, || async {
        nodes.iter().position(|n| n.is_leader())
    })
    .await;
    let observer = (leader + 1) % 3;
    let seen: std::sync::Mutex<HashMap<String, (i32, i32)>> = std::sync::Mutex::new(HashMap::new());
    let check = |ts: &[TaskInfo]| {
        let mut seen = seen.lock().expect("not poisoned");
        for t in ts.iter().filter_map(|i| i.task.as_ref()) {
            let now = (
                t.desired_state,
                t.status.as_ref().map(|s| s.state).unwrap_or(0),
            );
            if let Some(before) = seen.insert(t.id.clone(), now) {
                assert!(
                    now.0 >= before.0,
                    "desired state of {} went back: {before:?} -> {now:?}",
                    t.id
                );
                assert!(
                    now.1 >= before.1,
                    "state of {} went back: {before:?} -> {now:?}",
                    t.id
                );
            }
        }
        seen.len()
    };
    wait_until("update under way", CONVERGE, || async {
        let ts = tasks(&nodes[observer], "roll").await;
        check(&ts);
        let v2 = running(&ts)
            .iter()
            .filter(|i| {
                i.task
                    .as_ref()
                    .and_then(|t| t.spec.as_ref())
                    .is_some_and(|s| s.image == "sim/app:v2")
            })
            .count();
        (v2 >= 1).then_some(())
    })
    .await;
    nodes[leader].stop().await;
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "update did not complete after the leader died"
        );
        let ts = tasks(&nodes[observer], "roll").await;
        let distinct = check(&ts);
        let done = inspect(&nodes[observer], "roll")
            .await
            .is_some_and(|i| update_state(&i) == UpdateState::Completed);
        let all_v2 = running(&ts).len() == 6
            && running(&ts).iter().all(|i| {
                i.task
                    .as_ref()
                    .and_then(|t| t.spec.as_ref())
                    .is_some_and(|s| s.image == "sim/app:v2")
            });
        if done && all_v2 {
            break;
        }
        assert!(distinct < 100, "runaway task creation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn networks_ipam_and_addresses() {
    use swarmlet_proto::control::NetworkRef;
    use swarmlet_proto::objects::NetworkSpec;
    let (_dir, nodes) = cluster(1, 2).await;
    let m = &nodes[0];
    let net = |name: &str, subnet: &str| NetworkSpec {
        name: name.into(),
        subnet: subnet.into(),
        ..Default::default()
    };
    let list = m
        .control()
        .list_networks(swarmlet_proto::common::Empty {})
        .await
        .expect("ls")
        .into_inner()
        .networks;
    let ingress = list.first().expect("ingress exists from init");
    assert_eq!(
        (
            ingress.subnet.as_str(),
            ingress.vni,
            ingress.gateway.as_str()
        ),
        ("10.255.0.0/16", 4096, "10.255.0.1")
    );
    let backend = m
        .control()
        .create_network(net("backend", ""))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        (
            backend.subnet.as_str(),
            backend.vni,
            backend.gateway.as_str()
        ),
        ("10.0.0.0/24", 4097, "10.0.0.1")
    );
    for (spec, why) in [
        (net("backend", ""), "already exists"),
        (net("clash", "10.0.0.128/25"), "overlaps network backend"),
        (net("bad", "10.0.0.1/24"), "invalid subnet"),
    ] {
        let e = m.control().create_network(spec).await.expect_err(why);
        assert!(e.message().contains(why), "{}", e.message());
    }
    m.control()
        .create_network(net("small", "10.9.0.0/29"))
        .await
        .expect("small");

    // /29: 6 hosts − gateway − the service's VIP = 4 task addresses.
    let mut s = spec("tight", 5);
    s.networks = vec!["small".into()];
    create(m, s).await;
    let ts = wait_until("4 of 5 tasks running", CONVERGE, || async {
        let ts = tasks(m, "tight").await;
        (running(&ts).len() == 4).then_some(ts)
    })
    .await;
    let mut ips: Vec<String> = running(&ts)
        .iter()
        .filter_map(|i| i.task.as_ref())
        .map(|t| t.networks[0].address.clone())
        .collect();
    ips.sort();
    assert_eq!(
        ips,
        ["10.9.0.3/29", "10.9.0.4/29", "10.9.0.5/29", "10.9.0.6/29"]
    );
    let err = wait_until("the fifth task's error", CONVERGE, || async {
        tasks(m, "tight")
            .await
            .iter()
            .filter_map(|i| i.task.as_ref()?.status.clone())
            .map(|s| s.err)
            .find(|e| !e.is_empty())
    })
    .await;
    assert_eq!(
        err,
        "no address left in subnet 10.9.0.0/29 of network small"
    );

    // Unknown networks, ingress by hand, and removing a network in use are refused.
    let mut s = spec("lost", 1);
    s.networks = vec!["nope".into()];
    let e = m
        .control()
        .create_service(CreateServiceRequest { spec: Some(s) })
        .await
        .expect_err("unknown network");
    assert_eq!(e.message(), "network nope not found");
    let e = m
        .control()
        .remove_network(NetworkRef {
            network: "small".into(),
        })
        .await
        .expect_err("in use");
    assert!(
        e.message().contains("in use by service tight"),
        "{}",
        e.message()
    );

    // A published port puts the service on ingress: a VIP there, and an
    // ingress address for each task.
    let mut s = spec("pub", 2);
    s.ports = vec![swarmlet_proto::objects::PortConfig {
        published: 8080,
        target: 80,
        ..Default::default()
    }];
    create(m, s).await;
    let ts = wait_running(m, "pub", 2).await;
    for i in &ts {
        let t = i.task.as_ref().expect("task");
        assert_eq!(t.networks[0].network_name, "ingress");
        assert!(t.networks[0].address.starts_with("10.255.0."));
    }
    let info = m
        .control()
        .inspect_service(ServiceRef {
            service: "pub".into(),
        })
        .await
        .expect("inspect")
        .into_inner();
    let vips = info.endpoint.expect("endpoint").vips;
    assert_eq!(vips.len(), 1);
    assert_eq!(vips[0].network_name, "ingress");

    // Once its service is gone and its tasks have stopped, the network goes
    // too (before that: "in use by a task of service tight").
    m.control()
        .remove_service(ServiceRef {
            service: "tight".into(),
        })
        .await
        .expect("rm service");
    wait_until("network small removed", CONVERGE, || async {
        match m
            .control()
            .remove_network(NetworkRef {
                network: "small".into(),
            })
            .await
        {
            Ok(_) => Some(()),
            Err(e) => {
                assert!(e.message().contains("in use"), "{e:?}");
                None
            }
        }
    })
    .await;
}

/// One scrape of `/metrics` at `addr`: (HTTP status line, body).
async fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics endpoint");
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: swarmlet\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// Parses Prometheus text exposition, failing on any malformed line:
/// series (`name{labels}`) → value.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            assert!(line.split_whitespace().count() >= 3, "comment: {line}");
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
        };
        let bare = name.split('{').next().unwrap_or_default();
        assert!(
            !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !bare.starts_with(|c: char| c.is_ascii_digit()),
            "metric name in {line}"
        );
        if let Some(labels) = name.strip_prefix(bare) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("labels in {line}"));
                for pair in inner.split(',') {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "{line}"
                    );
                }
            }
        }
        series.insert(name.to_string(), value);
    }
    series
}

fn sim_with_metrics(c: &mut swarmd::config::DaemonConfig) {
    sim(c);
    c.metrics_addr = Some("127.0.0.1:0".into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_endpoint_parses_and_follows_the_tasks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = form_cluster(dir.path(), 1, 2, |i| format!("m{i:02}"), sim_with_metrics)
        .await
        .unwrap_or_else(|e| panic!("cluster forms: {e:#}"));
    let addr = nodes[0]
        .daemon
        .as_ref()
        .and_then(|d| d.metrics_addr)
        .expect("metrics served");
    let metric = |name: &'static str| async move {
        let (status, body) = scrape(addr, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        parse_prometheus(&body).get(name).copied()
    };

    let id = create(&nodes[0], spec("metered", 3)).await;
    wait_until("3 running tasks in the metrics", CONVERGE, || async {
        (metric("swarmlet_tasks{state=\"running\"}").await == Some(3.0)).then_some(())
    })
    .await;
    let (_, body) = scrape(addr, "/metrics").await;
    let all = parse_prometheus(&body);
    assert_eq!(all.get("swarmlet_nodes{state=\"ready\"}"), Some(&3.0));
    assert_eq!(all.get("swarmlet_raft_leader"), Some(&1.0));
    assert!(all.get("swarmlet_raft_term").is_some_and(|t| *t >= 1.0));
    assert!(all
        .get("swarmlet_raft_commit_index")
        .is_some_and(|c| *c > 1.0));
    assert!(all
        .get("swarmlet_raft_proposal_seconds_count")
        .is_some_and(|c| *c > 0.0));
    assert!(all
        .get("swarmlet_scheduler_pass_seconds_count")
        .is_some_and(|c| *c > 0.0));
    assert!(all
        .get("swarmlet_dispatcher_sessions")
        .is_some_and(|s| *s >= 3.0));
    assert!(all.contains_key("swarmlet_raft_leader_changes_total"));
    assert!(all.contains_key("swarmlet_nftables_apply_seconds_bucket{le=\"+Inf\"}"));

    // Scale down: the gauge moves.
    let scaled = spec("metered", 1);
    nodes[0]
        .control()
        .update_service(UpdateServiceRequest {
            service: id,
            spec: Some(scaled),
            expect_spec_version: 0,
            rollback: false,
        })
        .await
        .expect("scale");
    wait_until("1 running task in the metrics", CONVERGE, || async {
        (metric("swarmlet_tasks{state=\"running\"}").await == Some(1.0)).then_some(())
    })
    .await;
    let (status, _) = scrape(addr, "/nothing").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_survive_the_loss_of_the_manager_that_sealed_them() {
    use swarmlet_proto::control::CreateSecretRequest;
    use swarmlet_proto::objects::FileReference;
    let (_dir, mut nodes) = cluster(3, 1).await;
    nodes[0]
        .control()
        .create_secret(CreateSecretRequest {
            config: false,
            name: "token".into(),
            data: b"abc123".to_vec(),
            labels: Default::default(),
        })
        .await
        .expect("secret create");
    // Every manager gets the key-encryption key.
    wait_until("every manager holds the secrets key", CONVERGE, || async {
        nodes[..3]
            .iter()
            .all(|n| n.state_dir.join("secrets.kek").exists())
            .then_some(())
    })
    .await;
    nodes[0].stop().await;
    let via = wait_until("a new leader", CONVERGE, || async {
        (1..3).find(|i| nodes[*i].is_leader())
    })
    .await;
    let mut s = spec("uses-token", 2);
    s.secrets = vec![FileReference {
        name: "token".into(),
        ..Default::default()
    }];
    create(&nodes[via], s).await;
    // Running means the node received the secret and wrote its file.
    let ts = wait_running(&nodes[via], "uses-token", 2).await;
    assert_eq!(running(&ts).len(), 2);
    // Tasks placed on the stopped manager before it was marked down are
    // replaced; none may have lacked the secret.
    for t in ts.iter().filter_map(|i| i.task.as_ref()) {
        let err = t
            .status
            .as_ref()
            .map(|s| s.err.as_str())
            .unwrap_or_default();
        assert!(!err.contains("not received"), "{err}");
    }
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_new_cluster_restores_service() {
    let (_dir, mut nodes) = cluster(3, 1).await;
    let id = create(&nodes[0], spec("survivor", 2)).await;
    wait_running(&nodes[0], "survivor", 2).await;
    // Two managers of three are lost for good; the last one restarts as a
    // one-manager cluster.
    nodes[1].stop().await;
    nodes[2].stop().await;
    nodes[0].stop().await;
    nodes[0].tune = |c| {
        sim(c);
        c.force_new_cluster = true;
    };
    nodes[0].start().await.expect("--force-new-cluster");
    wait_until("the survivor leads alone", CONVERGE, || async {
        nodes[0]
            .manager()
            .filter(|m| m.is_leader() && m.raft.status().voters.len() == 1)
            .map(|_| ())
    })
    .await;
    // The worker reports to it, the service runs and can be changed.
    wait_running(&nodes[0], "survivor", 2).await;
    nodes[0]
        .control()
        .update_service(UpdateServiceRequest {
            service: id,
            spec: Some(spec("survivor", 3)),
            expect_spec_version: 0,
            rollback: false,
        })
        .await
        .expect("scale after the recovery");
    wait_running(&nodes[0], "survivor", 3).await;
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

/// A node whose tasks outgrow one gRPC message (2,000 tasks of ~3 KiB:
/// ~6 MiB, over tonic's 4 MiB default) gets them all: in the diff that
/// creates them, in its first full set after a restart, and in `service ps`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_2000_large_tasks_gets_its_whole_first_set() {
    let (_dir, mut nodes) = cluster(1, 1).await;
    let mut worker = nodes.pop().expect("worker");
    let m = nodes.pop().expect("manager");
    let mut big = spec("big", 2000);
    big.env = vec![format!("PAD={}", "x".repeat(3000))];
    big.constraints = vec!["node.role==worker".into()];
    create(&m, big.clone()).await;
    let all_running = |n: usize| {
        let m = &m;
        async move {
            let ts = tasks(m, "big").await;
            (running(&ts).len() == n).then_some(())
        }
    };
    wait_until("2000 tasks running", Duration::from_secs(120), || {
        all_running(2000)
    })
    .await;
    // The worker restarts: its first full set holds all 2,000 tasks. One
    // more task runs only once that session is up.
    worker.stop().await;
    worker.start().await.expect("restart worker");
    m.control()
        .update_service(swarmlet_proto::control::UpdateServiceRequest {
            service: "big".into(),
            spec: Some(ServiceSpec {
                replicas: 2001,
                ..big
            }),
            ..Default::default()
        })
        .await
        .expect("scale");
    wait_until("2001 tasks running", Duration::from_secs(120), || {
        all_running(2001)
    })
    .await;
}

/// A node whose container engine is unreachable says so in its heartbeats:
/// it is `down` with the reason and gets no task until the engine is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_engine_is_unreachable_is_down_and_gets_no_tasks() {
    use std::sync::{Arc, Mutex};
    use swarmlet_common::grpc::{tls_channel, WithLimits};
    use swarmlet_common::tls::{client_config, CertSlot};
    use swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient;
    use swarmlet_proto::dispatcher::HeartbeatRequest;

    let (_dir, mut nodes) = cluster(1, 1).await;
    let mut worker = nodes.pop().expect("worker");
    let m = nodes.pop().expect("manager");
    // The worker's heartbeats, sent with its certificate, as its agent
    // would send them with the engine down, then up again.
    let id = swarmlet_common::identity::NodeIdentity::load(&worker.state_dir.join("certs"))
        .expect("load")
        .expect("present");
    worker.stop().await;
    let channel = tls_channel(
        &m.addr,
        client_config(&id.ca_pem, CertSlot::new(&id).expect("slot")).expect("tls"),
    )
    .expect("channel");
    let engine_error = Arc::new(Mutex::new(
        "cannot reach the Docker daemon at unix:///run/docker.sock: connection refused".to_string(),
    ));
    let beats = {
        let engine_error = engine_error.clone();
        tokio::spawn(async move {
            let mut client = DispatcherClient::new(channel).with_limits();
            loop {
                let e = engine_error.lock().map(|e| e.clone()).unwrap_or_default();
                let _ = client
                    .heartbeat(HeartbeatRequest {
                        engine_error: e,
                        ..Default::default()
                    })
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let node = |m: &InProcessNode| {
        let mut c = m.control();
        async move {
            c.inspect_node(swarmlet_proto::control::NodeRef { node: "n01".into() })
                .await
                .ok()
                .map(|n| n.into_inner())
        }
    };
    let down = wait_until("the worker down with its engine", CONVERGE, || async {
        node(&m).await.filter(|n| n.status == "down")
    })
    .await;
    assert!(
        down.status_message.contains(
            "engine unreachable: cannot reach the Docker daemon at unix:///run/docker.sock"
        ),
        "{}",
        down.status_message
    );
    // No task goes there.
    let mut pinned = spec("pinned", 1);
    pinned.constraints = vec!["node.hostname==n01".into()];
    create(&m, pinned).await;
    let waiting = wait_until("the task waits for a node", CONVERGE, || async {
        let ts = tasks(&m, "pinned").await;
        ts.first().and_then(|i| i.task.clone()).filter(|t| {
            t.node_id.is_empty() && t.status.as_ref().is_some_and(|s| !s.err.is_empty())
        })
    })
    .await;
    let err = waiting.status.map(|s| s.err).unwrap_or_default();
    assert!(err.contains("no suitable node"), "{err}");
    // The engine is back: ready, and the task is placed on it.
    if let Ok(mut e) = engine_error.lock() {
        e.clear();
    }
    wait_until("the worker ready again", CONVERGE, || async {
        node(&m).await.filter(|n| n.status == "ready")
    })
    .await;
    wait_until("the task placed on the worker", CONVERGE, || async {
        let ts = tasks(&m, "pinned").await;
        ts.first()
            .and_then(|i| i.task.clone())
            .filter(|t| !t.node_id.is_empty())
    })
    .await;
    beats.abort();
}
