//! A manager's state at rest: sealed on disk (no CA key, no secret in
//! plaintext anywhere in the state dir), and with autolock a restarted
//! manager that waits for its unlock key.

use std::time::Duration;

use swarmlet_proto::common::Empty;
use swarmlet_proto::control::{CreateSecretRequest, UnlockKeyRequest, UpdateClusterRequest};
use swarmlet_proto::local::{InitRequest, UnlockRequest};
use swarmlet_tests::{files_containing, wait_until, InProcessNode};

const WAIT: Duration = Duration::from_secs(20);

async fn unlock_key(n: &InProcessNode, rotate: bool) -> String {
    n.control()
        .get_unlock_key(UnlockKeyRequest { rotate })
        .await
        .unwrap_or_else(|e| panic!("unlock key: {e:?}"))
        .into_inner()
        .unlock_key
}

async fn local_state(n: &InProcessNode) -> String {
    n.local()
        .info(Empty {})
        .await
        .map(|i| i.into_inner().state)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autolocked_manager_waits_for_its_unlock_key_and_nothing_is_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = InProcessNode::new(dir.path(), "m");
    m.tune = |c| c.executor = swarmd::config::ExecutorKind::Sim;
    m.start().await.expect("start");
    let init = m
        .local()
        .init(InitRequest {
            autolock: true,
            ..Default::default()
        })
        .await
        .expect("init --autolock")
        .into_inner();
    assert!(init.unlock_key.starts_with("SWMKEY-1-"), "{init:?}");
    assert_eq!(unlock_key(&m, false).await, init.unlock_key);
    m.control()
        .create_secret(CreateSecretRequest {
            name: "db".into(),
            data: b"hunter2-plaintext".to_vec(),
            ..Default::default()
        })
        .await
        .expect("secret");
    // The manager re-seals its data key with the unlock key and keeps no
    // key of its own.
    let kek = m.state_dir.join("raft.kek");
    wait_until("raft.kek removed", WAIT, || {
        let gone = !kek.exists();
        async move { gone.then_some(()) }
    })
    .await;
    m.stop().await;

    // Nothing readable at rest: no private key but the node's own TLS key,
    // no secret, no unlock key.
    let with_key: Vec<_> = files_containing(&m.state_dir, b"PRIVATE KEY")
        .into_iter()
        .filter(|p| !p.ends_with("certs/node.key"))
        .collect();
    assert!(
        with_key.is_empty(),
        "a private key in plaintext: {with_key:?}"
    );
    assert!(files_containing(&m.state_dir, b"hunter2-plaintext").is_empty());
    let raw_unlock = init.unlock_key.trim_start_matches("SWMKEY-1-");
    assert!(files_containing(&m.state_dir, raw_unlock.as_bytes()).is_empty());

    // Restarted: locked until unlocked.
    m.start().await.expect("restart");
    assert_eq!(local_state(&m).await, "locked");
    let e = m.control().list_nodes(Empty {}).await.expect_err("locked");
    assert!(e.message().contains("locked"), "{}", e.message());
    let wrong = "SWMKEY-1-".to_string() + &"ab".repeat(32);
    let e = m
        .local()
        .unlock(UnlockRequest { unlock_key: wrong })
        .await
        .expect_err("wrong key");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    assert_eq!(local_state(&m).await, "locked");
    m.local()
        .unlock(UnlockRequest {
            unlock_key: init.unlock_key.clone(),
        })
        .await
        .expect("unlock");
    let secrets = wait_until("the manager serves again", WAIT, || async {
        m.control()
            .list_secrets(swarmlet_proto::control::ListSecretsRequest::default())
            .await
            .ok()
            .map(|r| r.into_inner().secrets)
    })
    .await;
    assert_eq!(secrets.len(), 1, "state kept across the lock");
    assert_eq!(local_state(&m).await, "manager");

    // Rotation: a new key.
    let rotated = unlock_key(&m, true).await;
    assert_ne!(rotated, init.unlock_key);
    // Autolock off: the manager keeps its own key again and restarts alone.
    m.control()
        .update_cluster(UpdateClusterRequest {
            autolock: Some(false),
            ..Default::default()
        })
        .await
        .expect("autolock off");
    let e = m
        .control()
        .get_unlock_key(UnlockKeyRequest { rotate: false })
        .await
        .expect_err("no key without autolock");
    assert!(e.message().contains("no unlock key"), "{}", e.message());
    wait_until("raft.kek back", WAIT, || {
        let back = kek.exists();
        async move { back.then_some(()) }
    })
    .await;
    m.stop().await;
    m.start().await.expect("restart");
    wait_until("serving without unlock", WAIT, || async {
        m.control().list_nodes(Empty {}).await.ok().map(|_| ())
    })
    .await;
    m.stop().await;
}
