//! Join tokens, certificates and who may call what.

use std::time::Duration;

use swarmlet_common::grpc::{tls_channel, WithLimits};
use swarmlet_common::tls::{anonymous_client_config, client_config, CertSlot};
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::JoinTokenRequest;
use swarmlet_proto::local::{InitRequest, JoinRequest};
use swarmlet_tests::{form_cluster, wait_until, InProcessNode};

async fn token(n: &InProcessNode, role: &str, rotate: bool) -> String {
    n.control()
        .get_join_token(JoinTokenRequest {
            role: role.into(),
            rotate,
        })
        .await
        .unwrap_or_else(|e| panic!("join token: {e:?}"))
        .into_inner()
        .token
}

async fn join(n: &InProcessNode, token: &str, remote: &str) -> Result<String, tonic::Status> {
    n.local()
        .join(JoinRequest {
            token: token.into(),
            remote_addr: remote.into(),
            advertise_addr: String::new(),
        })
        .await
        .map(|r| r.into_inner().node_id)
}

/// A cluster of one manager "m" and one joined worker "w".
async fn manager_and_worker(dir: &std::path::Path) -> (InProcessNode, InProcessNode) {
    let mut nodes = form_cluster(dir, 1, 1, |i| ["m", "w"][i].to_string(), |_| {})
        .await
        .unwrap_or_else(|e| panic!("cluster forms: {e:#}"));
    let w = nodes.pop().expect("worker");
    let m = nodes.pop().expect("manager");
    (m, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = InProcessNode::new(dir.path(), "m");
    let mut w = InProcessNode::new(dir.path(), "w");
    m.start().await.expect("start");
    w.start().await.expect("start");
    m.local().init(InitRequest::default()).await.expect("init");
    let good = token(&m, "worker", false).await;

    // Malformed.
    let e = join(&w, "SWMTKN-1-nope", &m.addr)
        .await
        .expect_err("malformed");
    assert!(
        e.message().contains("invalid join token"),
        "{}",
        e.message()
    );
    // Right digest, wrong secret.
    let (prefix, _) = good.rsplit_once('-').expect("token has a secret");
    let wrong = format!("{prefix}-{}", "a".repeat(25));
    let e = join(&w, &wrong, &m.addr).await.expect_err("wrong secret");
    assert!(
        e.message().contains("invalid join token"),
        "{}",
        e.message()
    );
    // Another cluster's digest: the manager's root CA does not match.
    let other = format!("SWMTKN-1-{}-{}", "0".repeat(64), "a".repeat(25));
    let e = join(&w, &other, &m.addr).await.expect_err("wrong root");
    assert!(
        e.message().contains("root CA does not match"),
        "{}",
        e.message()
    );
    // Rotated: the old token stops working, the new one works.
    let rotated = token(&m, "worker", true).await;
    assert_ne!(rotated, good);
    let e = join(&w, &good, &m.addr).await.expect_err("rotated token");
    assert!(e.message().contains("rotated"), "{}", e.message());
    // Unreachable manager.
    let e = join(&w, &rotated, "127.0.0.1:1")
        .await
        .expect_err("unreachable");
    assert!(e.message().contains("unreachable"), "{}", e.message());
    // After all those failures the node is still un-joined and clean.
    assert_eq!(
        w.local()
            .info(Empty {})
            .await
            .expect("info")
            .into_inner()
            .state,
        "inactive"
    );
    assert!(!w.state_dir.join("node.json").exists());
    join(&w, &rotated, &m.addr)
        .await
        .expect("the current token works");
    // A second init on a joined node is refused.
    let e = m
        .local()
        .init(InitRequest::default())
        .await
        .expect_err("second init");
    assert!(
        e.message().contains("already part of a swarm"),
        "{}",
        e.message()
    );
    w.stop().await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_api_needs_a_manager_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut m, mut w) = manager_and_worker(dir.path()).await;

    let ca_pem = std::fs::read_to_string(m.state_dir.join("certs/ca.crt")).expect("ca");
    // No certificate: TLS works (a joining node has none) but the API refuses.
    let anon =
        tls_channel(&m.addr, anonymous_client_config(&ca_pem).expect("tls")).expect("channel");
    let e = ControlClient::new(anon)
        .with_limits()
        .list_nodes(Empty {})
        .await
        .expect_err("anonymous");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{}", e.message());

    // A worker's certificate: refused as not a manager.
    let worker_id = swarmlet_common::identity::NodeIdentity::load(&w.state_dir.join("certs"))
        .expect("load")
        .expect("present");
    let slot = CertSlot::new(&worker_id).expect("slot");
    let wc = tls_channel(&m.addr, client_config(&ca_pem, slot).expect("tls")).expect("channel");
    let e = ControlClient::new(wc)
        .with_limits()
        .list_nodes(Empty {})
        .await
        .expect_err("worker cert");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{}", e.message());

    // The worker's own control socket says it is not a manager.
    let e = w
        .control()
        .list_nodes(Empty {})
        .await
        .expect_err("worker socket");
    assert!(
        e.message().contains("not a swarm manager"),
        "{}",
        e.message()
    );

    // A certificate from another cluster's CA fails the TLS handshake.
    let other = swarmlet_common::ca::RootCa::create("other").expect("ca");
    let (key, csr) = swarmlet_common::identity::new_key_and_csr().expect("csr");
    let cert = other
        .sign_node(
            &csr,
            "intruder",
            swarmlet_common::identity::Role::Manager,
            "other",
            Duration::from_secs(3600),
        )
        .expect("sign");
    let intruder = swarmlet_common::identity::NodeIdentity::new(
        other.cert_pem().into(),
        cert,
        key.serialize_pem(),
    )
    .expect("identity");
    let slot = CertSlot::new(&intruder).expect("slot");
    let ic = tls_channel(&m.addr, client_config(&ca_pem, slot).expect("tls")).expect("channel");
    assert!(ControlClient::new(ic)
        .with_limits()
        .list_nodes(Empty {})
        .await
        .is_err());

    w.stop().await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_node_turns_down_quickly_and_ready_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut m, mut w) = manager_and_worker(dir.path()).await;
    let status = |m: &InProcessNode| {
        let mut c = m.control();
        async move {
            c.inspect_node(swarmlet_proto::control::NodeRef { node: "w".into() })
                .await
                .ok()
                .map(|n| n.into_inner().status)
        }
    };
    wait_until("worker ready", Duration::from_secs(10), || async {
        status(&m).await.filter(|s| s == "ready")
    })
    .await;
    w.stop().await;
    let stopped = std::time::Instant::now();
    wait_until("worker down", Duration::from_secs(10), || async {
        status(&m).await.filter(|s| s == "down")
    })
    .await;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(8), "down after {took:?}");
    w.start().await.expect("restart");
    wait_until("worker ready again", Duration::from_secs(10), || async {
        status(&m).await.filter(|s| s == "ready")
    })
    .await;
    w.stop().await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_are_renewed_before_they_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fast_check: fn(&mut swarmd::config::DaemonConfig) = |c| {
        c.cert_check_interval = Duration::from_millis(200);
        c.min_cert_expiry = Duration::from_secs(1);
    };
    let mut m = InProcessNode::new(dir.path(), "m");
    let mut w = InProcessNode::new(dir.path(), "w");
    m.tune = fast_check;
    w.tune = fast_check;
    m.start().await.expect("start");
    w.start().await.expect("start");
    m.local().init(InitRequest::default()).await.expect("init");
    m.control()
        .update_cluster(swarmlet_proto::control::UpdateClusterRequest {
            node_cert_expiry_ms: Some(4_000),
            ..Default::default()
        })
        .await
        .expect("short certificate lifetime");
    let t = token(&m, "worker", false).await;
    join(&w, &t, &m.addr).await.expect("join");
    let cert_of = |n: &InProcessNode| {
        swarmlet_common::identity::NodeIdentity::load(&n.state_dir.join("certs"))
            .expect("load")
            .expect("present")
            .info
    };
    let first = cert_of(&w);
    assert!(
        first.not_after - first.not_before <= 5,
        "short-lived certificate issued"
    );
    // Renewed (a later expiry) more than once, and the node stays usable well
    // past the first certificate's expiry.
    wait_until(
        "worker certificate renewed twice",
        Duration::from_secs(15),
        || async { (cert_of(&w).not_after >= first.not_after + 3).then_some(()) },
    )
    .await;
    let ls = m
        .control()
        .list_nodes(Empty {})
        .await
        .expect("ls")
        .into_inner();
    let worker = ls
        .nodes
        .iter()
        .find(|n| n.hostname == "w")
        .expect("worker listed");
    assert_eq!(worker.status, "ready");
    w.stop().await;
    m.stop().await;
}

/// A client channel to `addr` presenting `identity`'s certificate.
fn channel_as(
    identity: &swarmlet_common::identity::NodeIdentity,
    addr: &str,
) -> tonic::transport::Channel {
    let slot = CertSlot::new(identity).expect("slot");
    tls_channel(addr, client_config(&identity.ca_pem, slot).expect("tls")).expect("channel")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_demoted_then_removed_managers_kept_certificate_is_refused() {
    use swarmlet_proto::ca::ca_client::CaClient;
    use swarmlet_proto::control::{NodeRef, RemoveNodeRequest, SetRoleRequest};
    use swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient;
    use swarmlet_proto::dispatcher::HeartbeatRequest;
    use swarmlet_proto::raft::raft_transport_client::RaftTransportClient;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = form_cluster(dir.path(), 2, 1, |i| ["m1", "m2", "w"][i].into(), |_| {})
        .await
        .unwrap_or_else(|e| panic!("cluster forms: {e:#}"));
    let mut w = nodes.pop().expect("w");
    let mut m2 = nodes.pop().expect("m2");
    let mut m1 = nodes.pop().expect("m1");
    // The certificate m2 holds as a manager, copied away.
    let kept = swarmlet_common::identity::NodeIdentity::load(&m2.state_dir.join("certs"))
        .expect("load")
        .expect("present");
    assert_eq!(kept.info.role, swarmlet_common::identity::Role::Manager);
    let worker_id = m1
        .control()
        .inspect_node(NodeRef { node: "w".into() })
        .await
        .expect("w")
        .into_inner()
        .id;
    // Before: the kept certificate works, on the managers and on the
    // worker's logs service alike.
    let ch = channel_as(&kept, &m1.addr);
    ControlClient::new(ch.clone())
        .with_limits()
        .list_nodes(Empty {})
        .await
        .expect("a manager's certificate reaches the control API");
    let worker_logs = || {
        let slot = CertSlot::new(&kept).expect("slot");
        let config = client_config(&kept.ca_pem, slot).expect("tls");
        let ch = swarmlet_common::grpc::tls_channel_verifying(&w.addr, &worker_id, config)
            .expect("channel");
        async move {
            swarmlet_proto::logs::node_logs_client::NodeLogsClient::new(ch)
                .task_logs(swarmlet_proto::logs::TaskLogsRequest::default())
                .await
                .map(|_| ())
        }
    };
    wait_until(
        "the worker knows m2 as a manager",
        Duration::from_secs(10),
        || async { worker_logs().await.ok() },
    )
    .await;

    // Demoted: the certificate still says manager, the store does not.
    m1.control()
        .set_node_role(SetRoleRequest {
            node: "m2".into(),
            role: "worker".into(),
        })
        .await
        .expect("demote m2");
    let e = ControlClient::new(ch.clone())
        .with_limits()
        .list_nodes(Empty {})
        .await
        .expect_err("demoted manager's certificate");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{}", e.message());
    assert!(
        e.message().contains("no longer a manager"),
        "{}",
        e.message()
    );
    let e = RaftTransportClient::new(ch.clone())
        .with_limits()
        .fetch_secrets_key(Empty {})
        .await
        .expect_err("secrets key");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{}", e.message());
    // Nor may it speak for another node.
    let mut hb = tonic::Request::new(HeartbeatRequest::default());
    hb.metadata_mut().insert(
        swarmlet_manager::api::grpc::ON_BEHALF_OF,
        worker_id.parse().expect("header"),
    );
    let e = DispatcherClient::new(ch.clone())
        .with_limits()
        .heartbeat(hb)
        .await
        .expect_err("impersonation");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{}", e.message());
    assert!(e.message().contains("only for itself"), "{}", e.message());
    // The worker, told by its heartbeats, no longer lets it read logs.
    let refused = wait_until(
        "the worker refuses m2's logs call",
        Duration::from_secs(10),
        || async { worker_logs().await.err() },
    )
    .await;
    assert_eq!(
        refused.code(),
        tonic::Code::PermissionDenied,
        "{}",
        refused.message()
    );

    // Removed: refused everywhere, renewal included.
    m2.stop().await;
    m1.control()
        .remove_node(RemoveNodeRequest {
            node: "m2".into(),
            force: true,
        })
        .await
        .expect("rm m2");
    let e = ControlClient::new(ch.clone())
        .with_limits()
        .list_nodes(Empty {})
        .await
        .expect_err("removed node's certificate");
    assert!(e.message().contains("was removed"), "{}", e.message());
    let (_, csr) = swarmlet_common::identity::new_key_and_csr().expect("csr");
    let e = CaClient::new(ch.clone())
        .with_limits()
        .renew_node_certificate(swarmlet_proto::ca::RenewRequest { csr_pem: csr })
        .await
        .expect_err("renewal");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{}", e.message());
    // The cluster itself is fine.
    m1.control().list_nodes(Empty {}).await.expect("ls");
    w.stop().await;
    m1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_root_ca_rotates_without_an_outage_and_the_old_root_is_retired() {
    use swarmlet_proto::control::NodeRef;
    let dir = tempfile::tempdir().expect("tempdir");
    let fast: fn(&mut swarmd::config::DaemonConfig) =
        |c| c.executor = swarmd::config::ExecutorKind::Sim;
    let nodes = form_cluster(dir.path(), 2, 1, |i| ["m1", "m2", "w"][i].into(), fast)
        .await
        .unwrap_or_else(|e| panic!("cluster forms: {e:#}"));
    let load = |n: &InProcessNode| {
        swarmlet_common::identity::NodeIdentity::load(&n.state_dir.join("certs"))
            .expect("load")
            .expect("present")
    };
    let old_worker = load(&nodes[2]);
    let old_token = token(&nodes[0], "worker", false).await;
    let before = nodes[0]
        .control()
        .get_cluster(Empty {})
        .await
        .expect("cluster")
        .into_inner();

    let started = nodes[0]
        .control()
        .rotate_root_ca(Empty {})
        .await
        .expect("rotate")
        .into_inner();
    assert!(started.ca_rotating);
    assert_ne!(started.root_ca_digest, before.root_ca_digest);
    let e = nodes[0]
        .control()
        .rotate_root_ca(Empty {})
        .await
        .expect_err("one rotation at a time");
    assert!(
        e.message().contains("already in progress"),
        "{}",
        e.message()
    );
    let after = wait_until(
        "the rotation to finish",
        Duration::from_secs(30),
        || async {
            let c = nodes[0]
                .control()
                .get_cluster(Empty {})
                .await
                .ok()?
                .into_inner();
            (!c.ca_rotating).then_some(c)
        },
    )
    .await;
    assert_eq!(after.root_ca_digest, started.root_ca_digest);

    // Every node trusts the new root alone and holds a certificate from it.
    let new_root = wait_until(
        "every node trusts the new root alone",
        Duration::from_secs(15),
        || {
            let ids: Vec<_> = nodes.iter().map(load).collect();
            let digest = after.root_ca_digest.clone();
            async move {
                let roots: Vec<String> = ids
                    .iter()
                    .map(|id| {
                        swarmlet_common::identity::pem_to_der(&id.ca_pem)
                            .map(|d| swarmlet_common::token::root_digest(&d))
                            .unwrap_or_default()
                    })
                    .collect();
                let one_each = ids
                    .iter()
                    .all(|id| id.ca_pem.matches("BEGIN CERTIFICATE").count() == 1);
                (one_each && roots.iter().all(|r| *r == digest)).then(|| ids[0].ca_pem.clone())
            }
        },
    )
    .await;
    // The cluster keeps working: every node ready, the control API answers.
    wait_until("every node ready", Duration::from_secs(15), || async {
        let ls = nodes[0]
            .control()
            .list_nodes(Empty {})
            .await
            .ok()?
            .into_inner();
        ls.nodes.iter().all(|n| n.status == "ready").then_some(())
    })
    .await;
    nodes[1]
        .control()
        .inspect_node(NodeRef { node: "w".into() })
        .await
        .expect("a follower forwards over the new certificates");

    // A certificate from the old root is refused, and so is the old token.
    let old_cert = tls_channel(
        &nodes[0].addr,
        client_config(&new_root, CertSlot::new(&old_worker).expect("slot")).expect("tls"),
    )
    .expect("channel");
    assert!(
        swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient::new(old_cert)
            .heartbeat(swarmlet_proto::dispatcher::HeartbeatRequest::default())
            .await
            .is_err(),
        "an old-root certificate must not be accepted"
    );
    let mut late = InProcessNode::new(dir.path(), "late");
    late.tune = fast;
    late.start().await.expect("start");
    let e = join(&late, &old_token, &nodes[0].addr)
        .await
        .expect_err("old token");
    assert!(e.message().contains("does not match"), "{}", e.message());
    let fresh = token(&nodes[0], "worker", false).await;
    join(&late, &fresh, &nodes[0].addr)
        .await
        .expect("new token joins");
    late.stop().await;
    for mut n in nodes {
        n.stop().await;
    }
}
