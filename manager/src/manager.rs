//! One manager: store, Raft loop, transport, CA material and node liveness,
//! and the helpers the operations and front ends share (proposals, read
//! barriers, leader lookup, channels to other nodes).

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::ClientConfig;
use swarmlet_common::ca::RootCa;
use swarmlet_proto::objects::Cluster;
use tonic::transport::Channel;

use crate::at_rest::keys::KeyFiles;
use crate::at_rest::tree::SealedTree;
use crate::channels::Channels;
use crate::core::Core;
use crate::crypto::Key;
use crate::liveness::Liveness;
use crate::ops::{OpsError, OpsResult};
use crate::raft::node::{self, RaftConfig};
use crate::raft::storage::SledStorage;
use crate::raft::transport::GrpcTransport;
use crate::raft::ProposeError;
use crate::store::{Store, StoreError};

/// Failures starting a manager.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The state database could not be opened.
    #[error("state database: {0}")]
    Db(#[from] sled::Error),
    /// Values of the state database could not be sealed or opened.
    #[error("state database: {0}")]
    Sealed(#[from] crate::at_rest::tree::SealedError),
    /// Raft could not start.
    #[error(transparent)]
    Start(#[from] node::StartError),
    /// Raft storage failed.
    #[error(transparent)]
    Storage(#[from] crate::raft::storage::RaftStorageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A proposal failed.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// No leader was elected in time.
    #[error("no raft leader elected")]
    NoLeader,
}

/// What a manager needs to start.
pub struct ManagerConfig {
    /// This node's ID.
    pub node_id: String,
    /// This manager's Raft ID.
    pub raft: RaftConfig,
    /// Address other nodes dial (host:port).
    pub advertise_addr: String,
    /// Directory of the sled database.
    pub db_dir: std::path::PathBuf,
    /// Client TLS configuration (this node's certificate).
    pub client_tls: Arc<ClientConfig>,
    /// Where this manager keeps the key-encryption key of secrets.
    pub secrets_key_path: std::path::PathBuf,
    /// Disaster recovery: make this member the only one of its Raft group
    /// before starting (see [`SledStorage::force_new_cluster`]).
    pub force_new_cluster: bool,
    /// The shortest node certificate lifetime `cluster update --cert-expiry`
    /// accepts ([`MIN_CERT_EXPIRY`]; tests of renewal shorten it).
    pub min_cert_expiry: Duration,
    /// This manager's data key: it seals the Raft log and the rows on disk.
    pub data_key: Arc<Key>,
    /// Where the data key is kept sealed (re-sealed when autolock changes).
    pub key_files: KeyFiles,
    /// The data key was made just now for a database that may hold values
    /// of an older version, written before values were sealed: seal them.
    pub seal_plaintext: bool,
}

/// Docker's minimum certificate lifetime: shorter ones could expire between
/// two of a node's renewal checks and lock it out of the cluster for good.
pub const MIN_CERT_EXPIRY: Duration = Duration::from_secs(3600);

/// A running manager.
pub struct Manager {
    /// The store and the Raft loop ([`Core`]'s helpers are the manager's).
    pub core: Core,
    /// This node's ID.
    pub node_id: String,
    /// Address other nodes dial.
    pub advertise_addr: String,
    /// The Raft transport (partition tests block peers here).
    pub transport: Arc<GrpcTransport>,
    /// Heartbeat bookkeeping.
    pub liveness: Arc<Liveness>,
    /// mTLS channels to other nodes.
    pub channels: Arc<Channels>,
    root_ca: RwLock<Option<Arc<RootCa>>>,
    db: sled::Db,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    status_tx: crate::status_batcher::StatusSender,
    /// Each node's assigned tasks, for the dispatcher's sessions.
    pub assignments: Arc<crate::assignments::AssignmentHub>,
    /// The keys of secrets and configs.
    pub keys: Arc<crate::secrets::keys::KeyRing>,
    /// The shortest certificate lifetime the cluster may be set to.
    pub min_cert_expiry: Duration,
}

impl std::ops::Deref for Manager {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Manager {
    /// Starts a manager over the database in `cfg.db_dir`: resumes an
    /// existing member, or waits to be added by a leader if the storage is empty.
    pub fn start(cfg: ManagerConfig) -> Result<Arc<Manager>, ManagerError> {
        Self::start_inner(cfg, false)
    }

    /// Starts the first manager of a new cluster (single voter).
    pub fn bootstrap(cfg: ManagerConfig) -> Result<Arc<Manager>, ManagerError> {
        Self::start_inner(cfg, true)
    }

    fn start_inner(cfg: ManagerConfig, bootstrap: bool) -> Result<Arc<Manager>, ManagerError> {
        let db = open_db(&cfg.db_dir)?;
        if cfg.seal_plaintext {
            for tree in [crate::store::STATE_TREE, crate::raft::storage::LOG_TREE] {
                let n =
                    SealedTree::open(&db, tree, cfg.data_key.clone())?.seal_plaintext_values()?;
                if n > 0 {
                    tracing::info!(
                        tree,
                        values = n,
                        "sealed the values an older version stored in plaintext"
                    );
                }
            }
        }
        let store = Store::open(&db, cfg.data_key.clone())?;
        let storage = SledStorage::open(db.clone(), store.clone(), cfg.data_key.clone())?;
        if bootstrap && storage.is_empty()? {
            storage.bootstrap(cfg.raft.raft_id)?;
        }
        if cfg.force_new_cluster {
            let removed = storage.force_new_cluster(cfg.raft.raft_id)?;
            tracing::warn!(
                removed = ?removed,
                "--force-new-cluster: this manager now forms a one-manager cluster; \
                 the other managers must leave and join again"
            );
        }
        let transport = GrpcTransport::new(
            cfg.raft.raft_id,
            cfg.advertise_addr.clone(),
            cfg.client_tls.clone(),
            tokio::runtime::Handle::current(),
        );
        let raft = node::start(cfg.raft.clone(), storage, store.clone(), transport.clone())?;
        transport.attach(raft.clone());
        let (status_tx, status_rx) = tokio::sync::mpsc::unbounded_channel();
        let manager = Arc::new(Manager {
            core: Core {
                node_id: cfg.node_id.as_str().into(),
                store,
                raft,
            },
            node_id: cfg.node_id,
            advertise_addr: cfg.advertise_addr,
            transport,
            liveness: Arc::new(Liveness::default()),
            channels: Arc::new(Channels::new(cfg.client_tls)),
            root_ca: RwLock::new(None),
            db,
            background: Mutex::new(Vec::new()),
            status_tx,
            assignments: Arc::default(),
            min_cert_expiry: cfg.min_cert_expiry,
            keys: Arc::new(crate::secrets::keys::KeyRing::new(cfg.secrets_key_path)),
        });
        let core = manager.core.clone();
        let tasks = [
            tokio::spawn(crate::liveness::run_monitor(
                core.clone(),
                manager.liveness.clone(),
            )),
            tokio::spawn(crate::reconciler::run(core.clone())),
            tokio::spawn(crate::status_batcher::run(core.clone(), status_rx)),
            tokio::spawn(crate::assignments::run(
                core.clone(),
                manager.assignments.clone(),
            )),
            tokio::spawn(crate::secrets::keys::run_fetcher(
                core.clone(),
                manager.keys.clone(),
                manager.channels.clone(),
            )),
            tokio::spawn(crate::ca_rotation::run(core)),
            tokio::spawn(crate::at_rest::follow_autolock(
                {
                    let store = manager.store.clone();
                    move || {
                        let row = store.get_shared::<Cluster>("cluster").ok().flatten();
                        row.map(|(_, c)| (*c).clone())
                    }
                },
                cfg.key_files,
                cfg.data_key,
                manager.raft.watch_applied(),
            )),
        ];
        if let Ok(mut bg) = manager.background.lock() {
            bg.extend(tasks);
        }
        Ok(manager)
    }

    /// Hands a task status reported by a worker to the batcher.
    pub fn report_status(&self, task_id: String, status: swarmlet_proto::objects::TaskStatus) {
        let _ = self.status_tx.send((task_id, status));
    }

    /// Waits until some member is leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ManagerError> {
        let mut rx = self.raft.watch_status();
        let found = tokio::time::timeout(timeout, rx.wait_for(|s| s.leader_id != 0))
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|s| s.leader_id);
        found.ok_or(ManagerError::NoLeader)
    }

    /// Stops the Raft loop and background tasks, flushing the database.
    pub fn stop(&self) {
        self.raft.stop();
        if let Ok(mut bg) = self.background.lock() {
            for t in bg.drain(..) {
                t.abort();
            }
        }
        let _ = self.db.flush();
    }

    /// The root CA that signs now (loaded from the store again when a
    /// rotation replaced it).
    pub fn root_ca(&self) -> OpsResult<Arc<RootCa>> {
        let (_, cluster) = self.cluster()?;
        if let Ok(guard) = self.root_ca.read() {
            if let Some(ca) = guard
                .as_ref()
                .filter(|ca| ca.cert_pem().as_bytes() == cluster.root_ca_cert_pem.as_slice())
            {
                return Ok(ca.clone());
            }
        }
        let cert = String::from_utf8_lossy(&cluster.root_ca_cert_pem).to_string();
        let key = String::from_utf8_lossy(&cluster.root_ca_key_pem).to_string();
        let ca = Arc::new(RootCa::from_pem(&cert, &key).map_err(OpsError::internal)?);
        if let Ok(mut guard) = self.root_ca.write() {
            *guard = Some(ca.clone());
        }
        Ok(ca)
    }

    /// A channel to the leader when this manager is a follower; `None` when
    /// it is the leader itself; an error when no leader is known. A manager
    /// that just restarted may know who leads before its copy of the store
    /// has the leader's address, so that is waited for briefly.
    pub async fn forward_target(&self) -> OpsResult<Option<Channel>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let status = self.raft.status();
            if status.is_leader() {
                return Ok(None);
            }
            if status.leader_id != 0 {
                let members = self.members()?;
                if let Some(leader) = members.iter().find(|m| m.raft_id == status.leader_id) {
                    return Ok(Some(self.channel_to(&leader.addr)?));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(OpsError::Unavailable(if status.leader_id == 0 {
                    "no raft leader: the cluster has lost quorum or is electing".into()
                } else {
                    "the leader's address is not known yet; retry".into()
                }));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A cached mTLS channel to another manager.
    pub fn channel_to(&self, addr: &str) -> OpsResult<Channel> {
        self.channels.to_manager(addr)
    }

    /// A channel to node `node_id` at `addr`, whatever its role: the server
    /// must present that node's own certificate.
    pub fn channel_to_node(&self, node_id: &str, addr: &str) -> OpsResult<Channel> {
        self.channels.to_node(node_id, addr)
    }

    /// Addresses of all managers (Raft voters).
    pub fn manager_addrs(&self) -> Vec<String> {
        self.members()
            .map(|ms| ms.into_iter().map(|m| m.addr).collect())
            .unwrap_or_default()
    }
}

/// Opens the database; a previous manager of this process may still be
/// releasing its file lock (role change, restart in tests), so a held lock is
/// retried for a while (sled releases it only once its I/O threads are done).
/// sled's segment (and I/O buffer) size for a new database. sled writes a
/// page it rewrites whole to a blob file of its own when the page exceeds a
/// quarter of a segment, and it fsyncs neither that file nor its directory;
/// with sled's default (512 KiB), log leaves of 16 entries that carry 64
/// proposals each crossed that (80 blob files per manager in a 10 s
/// `swarm-bench raft`). 8 MiB keeps them in the log, which is fsynced.
const SEGMENT_BYTES: usize = 8 << 20;

/// The segment size the database in `dir` was created with (sled refuses
/// to open it with another), or [`SEGMENT_BYTES`] for a new one.
fn segment_size_of(dir: &Path) -> usize {
    // Text lines, then a binary checksum.
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|conf| {
            String::from_utf8_lossy(&conf)
                .lines()
                .find_map(|l| l.strip_prefix("segment_size:")?.trim().parse().ok())
        })
        .unwrap_or(SEGMENT_BYTES)
}

fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let segment_size = segment_size_of(dir);
    loop {
        let result = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .segment_size(segment_size)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open();
        match result {
            Err(e) if lock_held(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Whether opening failed because another handle holds the database's file
/// lock. sled reports it as an `Other` I/O error whose message carries the
/// `WouldBlock` it got, so the kind alone does not tell.
fn lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().contains("could not acquire lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_held_by_another_handle_is_waited_for() {
        let dir = tempfile::tempdir().expect("dir");
        let first = open_db(dir.path()).expect("first open");
        // sled's own report of the held lock is recognised…
        let held = sled::Config::new()
            .path(dir.path())
            .segment_size(SEGMENT_BYTES)
            .open()
            .expect_err("the lock is held");
        assert!(lock_held(&held), "not seen as a held lock: {held}");
        // …so a second open waits until the first handle is gone.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let second = open_db(dir.path());
        release.join().expect("release");
        assert!(second.is_ok(), "{:?}", second.err());
    }

    #[test]
    fn new_databases_get_large_segments_and_older_ones_keep_theirs() {
        let new = tempfile::tempdir().expect("dir");
        drop(open_db(new.path()).expect("open"));
        assert_eq!(segment_size_of(new.path()), SEGMENT_BYTES);
        // A database made with sled's default segment size still opens.
        let old = tempfile::tempdir().expect("dir");
        drop(sled::Config::new().path(old.path()).open().expect("old"));
        assert_eq!(segment_size_of(old.path()), 512 * 1024);
        assert!(open_db(old.path()).is_ok());
    }
}
