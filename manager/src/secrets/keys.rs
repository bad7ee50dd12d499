//! The two keys behind sealed secrets.
//!
//! The data key seals every secret and config; it lives in the replicated
//! cluster object, itself sealed with the key-encryption key (KEK). The KEK
//! never enters the Raft log: each manager keeps it in `secrets.kek` (mode
//! 0600) in its state dir, and a manager without one (a new or promoted
//! manager) asks the other managers for it over mutual TLS. So a copy of
//! the Raft data alone does not reveal any secret. Both keys are made by
//! the leader the first time a secret or config is created.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::ops::{OpsError, OpsResult};
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::common::Empty;
use swarmlet_proto::objects::Cluster;
use swarmlet_proto::raft::raft_transport_client::RaftTransportClient;

use crate::channels::Channels;
use crate::core::Core;
use crate::crypto::Key;
use crate::store::Tx;

/// What the data key is sealed with (authenticated with it).
const DATA_KEY_CONTEXT: &[u8] = b"swarmlet data key";

/// What the key functions use of their manager: its store and Raft loop,
/// its copies of the keys, and channels to the other managers.
pub struct KeyContext<'a> {
    /// The store and the Raft loop.
    pub core: &'a Core,
    /// This manager's copies of the keys.
    pub ring: &'a KeyRing,
    /// Channels to the other managers (who may hold the KEK).
    pub channels: &'a Channels,
}

/// This manager's copies of the keys.
pub struct KeyRing {
    kek_path: PathBuf,
    kek: Mutex<Option<Key>>,
    data_key: Mutex<Option<Key>>,
}

fn internal(what: &str, e: impl std::fmt::Display) -> OpsError {
    OpsError::internal(format!("{what}: {e}"))
}

impl KeyRing {
    /// Keys kept in `kek_path` (read when first needed).
    pub fn new(kek_path: PathBuf) -> Self {
        KeyRing {
            kek_path,
            kek: Mutex::new(None),
            data_key: Mutex::new(None),
        }
    }

    /// The KEK this manager holds (memory or file), if any.
    pub fn local_kek(&self) -> OpsResult<Option<Key>> {
        let mut guard = self
            .kek
            .lock()
            .map_err(|_| OpsError::internal("key lock poisoned"))?;
        if guard.is_none() {
            match std::fs::read(&self.kek_path) {
                Ok(b) => {
                    *guard = Some(Key::from_bytes(&b).ok_or_else(|| {
                        OpsError::internal(format!("{} is not a key", self.kek_path.display()))
                    })?)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(internal("reading the secrets key", e)),
            }
        }
        Ok(guard.clone())
    }

    /// Keeps `kek` in memory and in the file (0600, written atomically).
    fn store_kek(&self, kek: &Key) -> OpsResult<()> {
        swarmlet_common::private_fs::write_atomic(&self.kek_path, kek.as_bytes())
            .map_err(|e| internal("writing the secrets key", e))?;
        if let Ok(mut g) = self.kek.lock() {
            *g = Some(kek.clone());
        }
        Ok(())
    }
}

/// The KEK: this manager's, else another manager's (then kept here).
async fn fetch_kek(m: &KeyContext<'_>) -> OpsResult<Option<Key>> {
    if let Some(k) = m.ring.local_kek()? {
        return Ok(Some(k));
    }
    let me = m.core.raft.status().raft_id;
    for member in m.core.members()?.into_iter().filter(|x| x.raft_id != me) {
        let Ok(channel) = m.channels.to_manager(&member.addr) else {
            continue;
        };
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            RaftTransportClient::new(channel)
                .with_limits()
                .fetch_secrets_key(Empty {}),
        )
        .await;
        match answer {
            Ok(Ok(r)) => {
                if let Some(k) = Key::from_bytes(&r.into_inner().key) {
                    m.ring.store_kek(&k)?;
                    return Ok(Some(k));
                }
            }
            Ok(Err(e)) => tracing::debug!(peer = %member.addr, "secrets key: {}", e),
            Err(_) => tracing::debug!(peer = %member.addr, "secrets key: no answer"),
        }
    }
    Ok(None)
}

/// The cluster's data key. With `create` (the leader, creating a secret)
/// the keys are made when the cluster has none yet.
pub async fn data_key(m: &KeyContext<'_>, create: bool) -> OpsResult<Key> {
    if let Some(k) = m.ring.data_key.lock().ok().and_then(|g| g.clone()) {
        return Ok(k);
    }
    let (_, cluster) = m.core.cluster()?;
    let key = if cluster.wrapped_data_key.is_empty() {
        if !create {
            return Err(OpsError::precondition("the cluster has no secrets key yet"));
        }
        create_data_key(m).await?
    } else {
        let kek = fetch_kek(m).await?.ok_or_else(|| {
            OpsError::Unavailable(
                "this manager lacks the secrets key and no other manager gave it; \
                 restore secrets.kek from a manager's state dir"
                    .into(),
            )
        })?;
        let bytes = kek
            .open(&cluster.wrapped_data_key, DATA_KEY_CONTEXT)
            .map_err(|_| {
                OpsError::internal("the secrets key does not open the cluster's data key")
            })?;
        Key::from_bytes(&bytes).ok_or_else(|| OpsError::internal("the data key is malformed"))?
    };
    if let Ok(mut g) = m.ring.data_key.lock() {
        *g = Some(key.clone());
    }
    Ok(key)
}

/// Makes the data key (and the KEK, unless a manager has one) and stores
/// it sealed in the cluster object; if another proposal got there first,
/// that one is used.
async fn create_data_key(m: &KeyContext<'_>) -> OpsResult<Key> {
    let kek = match fetch_kek(m).await? {
        Some(k) => k,
        None => {
            let k = Key::generate().map_err(|e| internal("making the secrets key", e))?;
            m.ring.store_kek(&k)?;
            k
        }
    };
    let fresh = Key::generate().map_err(|e| internal("making the data key", e))?;
    let wrapped = kek
        .seal(fresh.as_bytes(), DATA_KEY_CONTEXT)
        .map_err(|e| internal("sealing the data key", e))?;
    let stored = m
        .core
        .update(|core| {
            let (version, mut c): (u64, Cluster) = core.cluster()?;
            if !c.wrapped_data_key.is_empty() {
                return Ok((Tx::new(), c.wrapped_data_key));
            }
            c.wrapped_data_key = wrapped.clone();
            Ok((Tx::new().put(&c, Some(version)), wrapped.clone()))
        })
        .await?;
    let bytes = kek
        .open(&stored, DATA_KEY_CONTEXT)
        .map_err(|_| OpsError::internal("the secrets key does not open the cluster's data key"))?;
    Key::from_bytes(&bytes).ok_or_else(|| OpsError::internal("the data key is malformed"))
}

/// Keeps every manager holding the KEK once the cluster has a data key: a
/// manager without it asks the others every second, so that the key
/// survives the loss of the manager that made it.
/// Ends with the Raft loop.
pub async fn run_fetcher(core: Core, ring: Arc<KeyRing>, channels: Arc<Channels>) {
    let status = core.raft.watch_status();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        if status.has_changed().is_err() {
            return;
        }
        let m = KeyContext {
            core: &core,
            ring: &ring,
            channels: &channels,
        };
        let needed = core
            .cluster()
            .map(|(_, c)| !c.wrapped_data_key.is_empty())
            .unwrap_or(false);
        if needed && matches!(m.ring.local_kek(), Ok(None)) {
            match fetch_kek(&m).await {
                Ok(Some(_)) => tracing::info!("received the secrets key from another manager"),
                Ok(None) => tracing::debug!("no manager gave the secrets key yet"),
                Err(e) => tracing::warn!("fetching the secrets key: {}", e),
            }
        }
    }
}
