//! Test and benchmark support: in-process clusters of `swarmd` daemons on
//! 127.0.0.1, each with its own state dir, control socket and port.
//!
//! # Layout
//! - [`InProcessNode`]: one daemon and typed clients for its control socket.
//! - [`wait_until`]: poll a condition with a deadline (tests never sleep blindly).
//! - [`e2e`]: namespace-host clusters with real Docker (`deploy/cluster.sh`).
//! - `src/bin/swarm-bench.rs`: the benchmark harness.

pub mod browser;
pub mod e2e;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmd::config::DaemonConfig;
pub use swarmd::config::ExecutorKind;
use swarmd::daemon::Daemon;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::local::local_client::LocalClient;
use tonic::transport::Channel;

/// Sends `tracing` output to the test harness when `RUST_LOG` is set.
pub fn init_logging() {
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A port on 127.0.0.1 that is free now and handed out once per process.
/// Ports come from below the kernel's ephemeral range (32768+), so that an
/// outgoing connection cannot take one between this check and the bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each process starts at its own offset in 10000..32000 and walks on.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 100) * 200,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % 22_000;
        let port = 10_000 + offset as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One in-process daemon.
pub struct InProcessNode {
    /// Hostname.
    pub name: String,
    /// Listen (and advertise) address.
    pub addr: String,
    /// State dir.
    pub state_dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// The running daemon, `None` while stopped.
    pub daemon: Option<Arc<Daemon>>,
    /// Adjusts the daemon's settings before each start.
    pub tune: fn(&mut DaemonConfig),
    /// The manager of the last stop, to be released before a restart.
    stopped_manager: Option<std::sync::Weak<swarmlet_manager::manager::Manager>>,
}

impl InProcessNode {
    /// A node (not started) under `root`.
    pub fn new(root: &std::path::Path, name: &str) -> Self {
        InProcessNode {
            name: name.to_string(),
            addr: format!("127.0.0.1:{}", free_port()),
            state_dir: root.join(name),
            socket: root.join(format!("{name}.sock")),
            daemon: None,
            tune: |_| {},
            stopped_manager: None,
        }
    }

    /// Starts (or restarts) the daemon over the same state.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        init_logging();
        // In-flight calls of the previous run may still hold its manager, and
        // with it the database lock, for a moment.
        if let Some(weak) = self.stopped_manager.take() {
            wait_until(
                "the stopped manager to be released",
                Duration::from_secs(15),
                || {
                    let gone = weak.strong_count() == 0;
                    async move { gone.then_some(()) }
                },
            )
            .await;
        }
        let mut cfg = DaemonConfig::new(
            self.state_dir.clone(),
            self.socket.clone(),
            self.addr.clone(),
            self.name.clone(),
        );
        cfg.advertise_addr = Some(self.addr.clone());
        (self.tune)(&mut cfg);
        // The stopped run may still be letting go: the last handle of its
        // manager drops (sled flushes on drop, on whichever thread let go
        // last) a moment after the handle count reaches zero, and its mTLS
        // listener closes when its server task ends. Both are retried.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Daemon::start(cfg.clone()).await {
                Ok(d) => {
                    self.daemon = Some(d);
                    return Ok(());
                }
                Err(e)
                    if (format!("{e:#}").contains("could not acquire lock")
                        || format!("{e:#}").contains("cannot listen on"))
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stops the daemon as a crash would look to the others.
    pub async fn stop(&mut self) {
        self.stopped_manager = self.manager().map(|m| Arc::downgrade(&m));
        if let Some(d) = self.daemon.take() {
            d.shutdown().await;
        }
    }

    fn channel(&self) -> Channel {
        swarmlet_common::grpc::unix_channel(&self.socket)
    }

    /// Control API client over the socket.
    pub fn control(&self) -> ControlClient<Channel> {
        ControlClient::new(self.channel()).with_limits()
    }

    /// Local API client over the socket.
    pub fn local(&self) -> LocalClient<Channel> {
        LocalClient::new(self.channel()).with_limits()
    }

    /// The running manager, if this node is one.
    pub fn manager(&self) -> Option<Arc<swarmlet_manager::manager::Manager>> {
        self.daemon.as_ref().and_then(|d| d.managers.get().ok())
    }

    /// Whether this node's manager is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.manager().is_some_and(|m| m.is_leader())
    }
}

/// Starts `managers + workers` daemons under `dir` (named by `name(i)`,
/// settings adjusted by `tune`), initialises a cluster on the first, joins
/// the next `managers - 1` as managers and the rest as workers, and waits
/// until the first sees every manager as a Raft voter.
pub async fn form_cluster(
    dir: &std::path::Path,
    managers: usize,
    workers: usize,
    name: impl Fn(usize) -> String,
    tune: fn(&mut DaemonConfig),
) -> anyhow::Result<Vec<InProcessNode>> {
    use swarmlet_proto::control::JoinTokenRequest;
    use swarmlet_proto::local::{InitRequest, JoinRequest};
    let mut nodes = Vec::new();
    for i in 0..managers + workers {
        let mut n = InProcessNode::new(dir, &name(i));
        n.tune = tune;
        n.start().await?;
        nodes.push(n);
    }
    nodes[0].local().init(InitRequest::default()).await?;
    let control = nodes[0].control();
    let token = |role: &str| {
        let req = JoinTokenRequest {
            role: role.into(),
            rotate: false,
        };
        let mut c = control.clone();
        async move { c.get_join_token(req).await.map(|r| r.into_inner().token) }
    };
    let manager_token = token("manager").await?;
    let worker_token = token("worker").await?;
    for (i, n) in nodes.iter().enumerate().skip(1) {
        n.local()
            .join(JoinRequest {
                token: if i < managers {
                    manager_token.clone()
                } else {
                    worker_token.clone()
                },
                remote_addr: nodes[0].addr.clone(),
                advertise_addr: String::new(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("{} joins: {}", n.name, e.message()))?;
    }
    let first = nodes[0]
        .manager()
        .ok_or_else(|| anyhow::anyhow!("the first node is not a manager"))?;
    wait_until("all managers are voters", Duration::from_secs(30), || {
        let first = first.clone();
        async move { (first.raft.status().voters.len() == managers).then_some(()) }
    })
    .await;
    // Ready (heartbeating): a service created now is spread over all of them.
    let total = managers + workers;
    wait_until("all nodes are ready", Duration::from_secs(60), || {
        let first = first.clone();
        async move {
            let ready = first
                .nodes()
                .unwrap_or_default()
                .iter()
                .filter(|(_, n)| n.status() == swarmlet_proto::objects::NodeStatus::Ready)
                .count();
            (ready >= total).then_some(())
        }
    })
    .await;
    Ok(nodes)
}

/// Regular files under `dir` (recursively) whose bytes contain `needle`:
/// where a secret must not be.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file()
                && std::fs::read(e.path())
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(e.path());
            }
        }
    }
    found
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
