//! A manager's state at rest: the Raft log and the state rows are sealed
//! with this manager's data key ([`tree`]); the data key is sealed with a
//! stored key, or with the cluster's unlock key under autolock ([`keys`]).
//! [`follow_autolock`] re-seals the data key when the cluster's autolock
//! setting or unlock key changes.

pub mod keys;
pub mod tree;

use std::sync::Arc;

use swarmlet_proto::objects::Cluster;
use tokio::sync::watch;

use crate::crypto::Key;
use keys::{AtRestError, KeyFiles};

/// Re-seals this manager's data key as the cluster's autolock setting says,
/// each time it changes (`cluster` reads the replicated cluster object;
/// checked after every applied entry, acted on only on a change). Ends when
/// the Raft loop does.
pub async fn follow_autolock(
    cluster: impl Fn() -> Option<Cluster> + Send + 'static,
    files: KeyFiles,
    data_key: Arc<Key>,
    mut applied: watch::Receiver<u64>,
) {
    let mut done: Option<(bool, Vec<u8>)> = None;
    loop {
        if let Some(c) = cluster() {
            let wanted = (c.autolock, c.unlock_key.clone());
            if done.as_ref() != Some(&wanted) {
                match reseal(&files, &data_key, &c) {
                    Ok(()) => done = Some(wanted),
                    Err(e) => tracing::error!("sealing the raft data key: {e}"),
                }
            }
        }
        if applied.changed().await.is_err() {
            return;
        }
    }
}

fn reseal(files: &KeyFiles, data_key: &Key, c: &Cluster) -> Result<(), AtRestError> {
    if c.autolock {
        let Some(unlock) = Key::from_bytes(&c.unlock_key) else {
            return Ok(());
        };
        if !files.sealed_with(&unlock) {
            files.seal_with_unlock_key(data_key, &unlock)?;
            tracing::info!("autolock: this manager's state now opens only with the unlock key");
        }
    } else if !files.has_local_kek() {
        files.seal_with_local_kek(data_key)?;
        tracing::info!("autolock off: this manager's state opens with its stored key");
    }
    Ok(())
}
