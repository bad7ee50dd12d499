//! A node that belongs to a cluster: its mTLS listener, its heartbeat agent,
//! and its manager while its role is manager. Role changes (promote/demote)
//! are followed live: the node renews its certificate for the new role and
//! starts or stops its manager without restarting the process.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use swarmlet_common::grpc::{tls_channel, WithLimits};
use swarmlet_common::identity::{new_key_and_csr, NodeIdentity, Role};
use swarmlet_common::listener::{tls_incoming, Limits};
use swarmlet_common::tls::{client_config_with, server_config_with, CertSlot};
use swarmlet_common::trust::TrustSlot;
use swarmlet_manager::api::grpc::{
    ca::CaService, control::ControlService, dispatcher::DispatcherService, raft::RaftService,
    ManagerSlot,
};
use swarmlet_manager::at_rest::keys::{KeyFiles, Opened};
use swarmlet_manager::crypto::Key;
use swarmlet_manager::manager::{Manager, ManagerConfig};
use swarmlet_manager::raft::RaftConfig;
use swarmlet_proto::ca::ca_client::CaClient;
use swarmlet_proto::ca::ca_server::CaServer;
use swarmlet_proto::ca::RenewRequest;
use swarmlet_proto::control::control_server::ControlServer;
use swarmlet_proto::dispatcher::dispatcher_server::DispatcherServer;
use swarmlet_proto::logs::node_logs_server::NodeLogsServer;
use swarmlet_proto::raft::raft_transport_client::RaftTransportClient;
use swarmlet_proto::raft::raft_transport_server::RaftTransportServer;
use swarmlet_proto::raft::JoinRaftRequest;
use swarmlet_worker::agent::{self, AgentConfig, AgentEvent};
use swarmlet_worker::docker::{DockerConfig, DockerExecutor};
use swarmlet_worker::executor::Executor as _;
use swarmlet_worker::logs::{LogsService, ManagerIds};
use swarmlet_worker::node_executor::NodeExecutor;
use swarmlet_worker::overlay::Overlay;
use swarmlet_worker::session;
use swarmlet_worker::sim::{SimConfig, SimExecutor};
use swarmlet_worker::tasks::TaskManager;
use tokio::sync::{mpsc, watch, Mutex};

use crate::config::{DaemonConfig, ExecutorKind};
use crate::state::NodeState;

/// A joined node's running parts.
pub struct Joined {
    cfg: DaemonConfig,
    /// Persisted state.
    pub state: Mutex<NodeState>,
    identity: Mutex<NodeIdentity>,
    slot: CertSlot,
    /// The roots this node trusts (changed by a root CA rotation).
    trust: TrustSlot,
    /// The managers now (from heartbeats): who may read this node's logs.
    manager_ids: ManagerIds,
    client_tls: Arc<rustls::ClientConfig>,
    /// The manager, while this node is one.
    pub managers: ManagerSlot,
    shutdown: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Managers the worker side talks to (updated from heartbeats).
    manager_addrs: watch::Sender<Vec<String>>,
    /// The tasks this node runs.
    pub task_manager: Arc<TaskManager<NodeExecutor>>,
    /// The manager's data key when an unlock opened it; taken by the
    /// manager's start.
    unlocked_key: std::sync::Mutex<Option<Key>>,
}

impl Joined {
    /// Starts the listener, the agent and (for a manager) the manager.
    /// `bootstrap` makes this node the first manager of a new cluster;
    /// `unlocked_key` is a locked manager's data key that
    /// `swarmctl cluster unlock` opened.
    pub async fn start(
        cfg: DaemonConfig,
        state: NodeState,
        identity: NodeIdentity,
        managers: ManagerSlot,
        bootstrap: bool,
        unlocked_key: Option<Key>,
    ) -> anyhow::Result<Arc<Joined>> {
        let slot = CertSlot::new(&identity)?;
        let trust = TrustSlot::new(&identity.ca_pem, swarmlet_common::tls::provider())?;
        let client_tls = client_config_with(&trust, slot.clone())?;
        let server_tls = server_config_with(&trust, slot.clone())?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen_addr))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (manager_addrs, _) = watch::channel(state.managers.clone());
        managers.set_known_managers(&state.managers);
        let executor = match cfg.executor {
            ExecutorKind::Sim => NodeExecutor::Sim(SimExecutor::new(SimConfig {
                start_latency: cfg.sim_start_latency,
            })),
            ExecutorKind::Docker => NodeExecutor::Docker(DockerExecutor::new(DockerConfig {
                host: cfg.docker_host.clone(),
                node_id: state.node_id.clone(),
                node_hostname: cfg.hostname.clone(),
                pull_missing: cfg.pull_missing,
            })),
        };
        let real_containers = matches!(executor, NodeExecutor::Docker(_));
        let data_ip = cfg.data_path_addr.or_else(|| data_path_ip(&state.addr));
        if real_containers {
            swarmlet_worker::overlay::host_pool::check_host_routes(&cfg.host_pool)
                .map_err(|e| anyhow!(e))?;
        }
        let overlay = Overlay::new(&state.node_id, data_ip, cfg.host_pool);
        let (status_tx, status_rx) = mpsc::unbounded_channel();
        let task_manager = Arc::new(TaskManager::new(
            Arc::new(executor),
            overlay.clone(),
            status_tx,
        ));
        let joined = Arc::new(Joined {
            cfg,
            state: Mutex::new(state),
            identity: Mutex::new(identity),
            slot,
            trust,
            manager_ids: ManagerIds::default(),
            client_tls,
            managers,
            shutdown,
            tasks: std::sync::Mutex::new(Vec::new()),
            manager_addrs,
            task_manager,
            unlocked_key: std::sync::Mutex::new(unlocked_key),
        });
        let manager_states = session::ManagerStates::default();
        joined.spawn(session::run_assignments(
            joined.client_tls.clone(),
            joined.manager_addrs.subscribe(),
            joined.task_manager.clone(),
            manager_states.clone(),
            shutdown_rx.clone(),
        ));
        if real_containers {
            joined.spawn(overlay.run());
        }
        joined.spawn(session::run_status_reports(
            joined.client_tls.clone(),
            joined.manager_addrs.subscribe(),
            manager_states,
            status_rx,
        ));
        joined.spawn(serve(
            listener,
            server_tls,
            joined.managers.clone(),
            LogsService::new(joined.task_manager.executor(), joined.manager_ids.clone()),
            shutdown_rx.clone(),
        ));
        if joined.state.lock().await.role == Role::Manager {
            if let Err(e) = joined.start_manager(bootstrap).await {
                joined.stop().await;
                return Err(e);
            }
        }
        joined.start_agent(shutdown_rx);
        joined.start_renewal();
        Ok(joined)
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(fut);
        if let Ok(mut t) = self.tasks.lock() {
            t.push(handle);
        }
    }

    fn start_agent(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::channel(16);
        let me = self.clone();
        let start = async move {
            let state = me.state.lock().await.clone();
            let cfg = AgentConfig {
                manager_ids: me.manager_ids.clone(),
                hostname: me.cfg.hostname.clone(),
                addr: state.addr.clone(),
                tls: me.client_tls.clone(),
                managers: state.managers.clone(),
                resources: me
                    .cfg
                    .resources
                    .unwrap_or_else(swarmlet_worker::resources::host_resources),
                daemon_ports: me.cfg.daemon_ports(),
                data_addr: me.cfg.data_path_addr,
                engine: {
                    let exec = me.task_manager.executor();
                    Arc::new(move || {
                        let exec = exec.clone();
                        Box::pin(async move { exec.engine_error().await })
                    })
                },
            };
            agent::run(cfg, tx, shutdown).await;
        };
        self.spawn(start);
        let me = self.clone();
        self.spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let Err(e) = me.on_agent_event(ev).await {
                    tracing::warn!("following the cluster failed: {e:#}");
                }
            }
        });
    }

    async fn on_agent_event(self: &Arc<Self>, ev: AgentEvent) -> anyhow::Result<()> {
        match ev {
            AgentEvent::Managers(addrs) => {
                self.managers.set_known_managers(&addrs);
                let _ = self.manager_addrs.send(addrs.clone());
                let mut st = self.state.lock().await;
                st.managers = addrs;
                st.save(&self.cfg.state_dir)?;
            }
            AgentEvent::Ca {
                root_digest,
                trust_roots_pem,
            } => self.follow_root_ca(&root_digest, &trust_roots_pem).await?,
            AgentEvent::Removed => {
                // The agent stops heartbeating; the node stays up so that an
                // operator can `node leave` it and join again.
                tracing::warn!("this node was removed from the cluster");
            }
            AgentEvent::DesiredRole(role) => {
                let current = self.state.lock().await.role;
                if role == current {
                    return Ok(());
                }
                tracing::info!(from = current.name(), to = role.name(), "role change");
                self.renew_certificate().await?;
                if role == Role::Manager {
                    {
                        let mut st = self.state.lock().await;
                        st.role = role;
                        st.raft_joined = false;
                        st.save(&self.cfg.state_dir)?;
                    }
                    self.start_manager(false).await?;
                } else {
                    if let Ok(m) = self.managers.get() {
                        m.stop();
                    }
                    self.managers.set(None);
                    let mut st = self.state.lock().await;
                    st.role = role;
                    st.raft_id = 0;
                    st.raft_joined = false;
                    st.save(&self.cfg.state_dir)?;
                    let _ = std::fs::remove_dir_all(self.cfg.raft_dir());
                    KeyFiles::new(&self.cfg.state_dir).remove();
                }
            }
        }
        Ok(())
    }

    /// Renews the node certificate once it is past half its lifetime.
    fn start_renewal(self: &Arc<Self>) {
        let me = self.clone();
        self.spawn(async move {
            loop {
                tokio::time::sleep(me.cfg.cert_check_interval).await;
                let due = me
                    .identity
                    .lock()
                    .await
                    .needs_renewal(swarmlet_common::clock::now_ms() / 1000);
                if due {
                    match me.renew_certificate().await {
                        Ok(()) => tracing::info!("node certificate renewed"),
                        Err(e) => tracing::warn!("certificate renewal failed, will retry: {e:#}"),
                    }
                }
            }
        });
    }

    /// This node's current certificate.
    pub async fn identity(&self) -> NodeIdentity {
        self.identity.lock().await.clone()
    }

    /// Asks a manager to record a `swarmctl run` container of this node on
    /// attachable networks; the attachment task comes back.
    pub async fn attach(
        &self,
        req: swarmlet_proto::dispatcher::AttachRequest,
    ) -> Result<swarmlet_proto::objects::Task, tonic::Status> {
        let managers = self.manager_addrs.borrow().clone();
        let mut last = tonic::Status::unavailable("no manager known");
        for addr in managers {
            let channel = tls_channel(&addr, self.client_tls.clone())
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            match swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient::new(channel)
                .with_limits()
                .attach(req.clone())
                .await
            {
                Ok(resp) => return Ok(resp.into_inner()),
                // A refusal (bad network, bad image) is the answer; only an
                // unreachable manager is worth trying the next one.
                Err(s) if s.code() != tonic::Code::Unavailable => return Err(s),
                Err(s) => last = s,
            }
        }
        Err(last)
    }

    /// Follows a root CA rotation: trusts what the cluster trusts, and
    /// renews the certificate when it comes from another root than the one
    /// that signs now.
    async fn follow_root_ca(&self, root_digest: &str, trust_roots_pem: &str) -> anyhow::Result<()> {
        if !trust_roots_pem.is_empty() && trust_roots_pem != self.trust.pem() {
            self.trust_roots(trust_roots_pem).await?;
            tracing::info!("trusted root CAs updated");
        }
        let mine = self.state.lock().await.cert_root_digest.clone();
        if mine != root_digest {
            tracing::info!("the cluster's root CA changed: renewing this node's certificate");
            self.renew_certificate().await?;
        }
        Ok(())
    }

    /// Trusts `pem` from now on, and keeps it as the identity's `ca.crt`.
    async fn trust_roots(&self, pem: &str) -> anyhow::Result<()> {
        let mut id = self.identity.lock().await;
        let new = NodeIdentity::new(pem.to_string(), id.cert_pem.clone(), id.key_pem.clone())?;
        new.save(&self.cfg.certs_dir())?;
        self.trust.replace(pem)?;
        *id = new;
        Ok(())
    }

    /// Gets a certificate for the role the cluster now wants.
    async fn renew_certificate(&self) -> anyhow::Result<()> {
        let managers = self.state.lock().await.managers.clone();
        let (key, csr) = new_key_and_csr()?;
        let mut last = anyhow!("no manager known");
        for addr in managers {
            let channel = tls_channel(&addr, self.client_tls.clone())?;
            match CaClient::new(channel)
                .with_limits()
                .renew_node_certificate(RenewRequest {
                    csr_pem: csr.clone(),
                })
                .await
            {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    let mut id = self.identity.lock().await;
                    let trust = Some(resp.trust_roots_pem)
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| id.ca_pem.clone());
                    let new = NodeIdentity::new(trust, resp.cert_pem, key.serialize_pem())?;
                    new.save(&self.cfg.certs_dir())?;
                    self.trust.replace(&new.ca_pem)?;
                    self.slot.replace(&new)?;
                    *id = new;
                    drop(id);
                    if !resp.root_digest.is_empty() {
                        let mut st = self.state.lock().await;
                        st.cert_root_digest = resp.root_digest;
                        st.save(&self.cfg.state_dir)?;
                    }
                    return Ok(());
                }
                Err(s) => last = anyhow!("{}", s.message()),
            }
        }
        Err(last.context("certificate renewal failed"))
    }

    /// The data key of this manager's state at rest: the one an unlock
    /// opened, else the one its stored key opens (made on first use). Also
    /// whether it is new (values of an older version are then sealed).
    fn data_key(&self) -> anyhow::Result<(Key, bool)> {
        if let Some(key) = self.unlocked_key.lock().ok().and_then(|mut k| k.take()) {
            return Ok((key, false));
        }
        match KeyFiles::new(&self.cfg.state_dir).open_or_create()? {
            Opened::Unlocked { key, created } => Ok((key, created)),
            Opened::Locked => bail!(
                "this manager is locked (autolock): run `swarmctl cluster unlock` with the cluster's unlock key"
            ),
        }
    }

    async fn start_manager(self: &Arc<Self>, bootstrap: bool) -> anyhow::Result<()> {
        let mut st = self.state.lock().await;
        if st.raft_id == 0 {
            st.raft_id = swarmlet_common::ids::new_raft_id();
            st.save(&self.cfg.state_dir)?;
        }
        let (data_key, seal_plaintext) = self.data_key()?;
        let mut raft = RaftConfig::new(st.raft_id);
        raft.tick = self.cfg.raft_tick;
        raft.snapshot_interval = self.cfg.snapshot_interval;
        raft.keep_entries = self.cfg.snapshot_keep_entries;
        let mcfg = ManagerConfig {
            node_id: st.node_id.clone(),
            raft,
            advertise_addr: st.addr.clone(),
            db_dir: self.cfg.raft_dir(),
            client_tls: self.client_tls.clone(),
            force_new_cluster: self.cfg.force_new_cluster && !bootstrap,
            secrets_key_path: self.cfg.state_dir.join("secrets.kek"),
            min_cert_expiry: self.cfg.min_cert_expiry,
            data_key: Arc::new(data_key),
            key_files: KeyFiles::new(&self.cfg.state_dir),
            seal_plaintext,
        };
        let manager = if bootstrap {
            Manager::bootstrap(mcfg)?
        } else {
            Manager::start(mcfg)?
        };
        self.managers.set(Some(manager.clone()));
        if !bootstrap && !st.raft_joined {
            join_raft(
                &manager,
                &st.managers,
                st.raft_id,
                &st.addr,
                &self.client_tls,
            )
            .await?;
            st.raft_joined = true;
            st.save(&self.cfg.state_dir)?;
        }
        Ok(())
    }

    /// Stops everything this node runs (containers would stay running).
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        if let Ok(m) = self.managers.get() {
            m.stop();
        }
        self.managers.set(None);
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in &tasks {
            t.abort();
        }
        // Wait for them to be gone, so that what they held (the mTLS
        // listener's port above all) is free when this returns.
        for t in tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
        }
    }
}

impl Joined {
    /// After [`stop`](Self::stop), when the node leaves the cluster: removes
    /// its containers, its namespaces and nftables table, and its secret
    /// files, as `docker swarm leave` does.
    pub async fn clean(&self) {
        let tasks = &self.task_manager;
        tasks
            .executor()
            .remove_others(std::collections::HashSet::new())
            .await;
        if matches!(*tasks.executor(), NodeExecutor::Docker(_)) {
            tasks.overlay().teardown().await;
        }
        tasks.files().forget_all();
    }
}

/// Asks the managers to add this manager to the Raft group.
async fn join_raft(
    manager: &Manager,
    managers: &[String],
    raft_id: u64,
    addr: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<()> {
    let mut last = anyhow!("no manager known");
    for _attempt in 0..10 {
        for peer in managers.iter().filter(|m| m.as_str() != addr) {
            let channel = tls_channel(peer, tls.clone())?;
            let req = JoinRaftRequest {
                raft_id,
                addr: addr.to_string(),
            };
            match RaftTransportClient::new(channel)
                .with_limits()
                .join_raft(req)
                .await
            {
                Ok(resp) => {
                    for m in resp.into_inner().members {
                        manager.transport.add_peer(m.raft_id, &m.addr);
                    }
                    return Ok(());
                }
                Err(s) => last = anyhow!("{}", s.message()),
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(last.context("joining the raft group failed"))
}

/// Serves the node's gRPC services on the mTLS listener.
async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    slot: ManagerSlot,
    logs: LogsService<NodeExecutor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let incoming = tls_incoming(listener, tls, Limits::for_this_process());
    let result = tonic::transport::Server::builder()
        // Dead peers are found by pings; silent ones by the idle timeout.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(CaServer::new(CaService::new(slot.clone())).with_limits())
        .add_service(RaftTransportServer::new(RaftService::new(slot.clone())).with_limits())
        .add_service(DispatcherServer::new(DispatcherService::new(slot.clone())).with_limits())
        .add_service(ControlServer::new(ControlService::new(slot, false)).with_limits())
        .add_service(NodeLogsServer::new(logs).with_limits())
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!("listener failed: {e}");
    }
}

/// The IPv4 address VXLAN traffic leaves from: the host part of the
/// advertise address.
fn data_path_ip(addr: &str) -> Option<std::net::Ipv4Addr> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.parse().ok()
}
