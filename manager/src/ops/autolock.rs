//! Autolock in the control API: `cluster update --autolock`, `cluster
//! unlock-key [--rotate]`. The unlock key lives in the cluster object
//! (replicated, sealed at rest like every row); each manager re-seals its
//! own data key with it ([`crate::at_rest::follow_autolock`]).

use super::{OpsError, OpsResult};
use swarmlet_proto::objects::Cluster;

use crate::at_rest::keys::format_unlock_key;
use crate::crypto::Key;
use crate::manager::Manager;
use crate::store::Tx;

/// Turns autolock on (with a fresh unlock key, unless it is on already) or
/// off (the key is forgotten) in `c`.
pub fn set_autolock(c: &mut Cluster, on: bool) -> OpsResult<()> {
    if on && !c.autolock {
        c.unlock_key = new_unlock_key()?;
    }
    if !on {
        c.unlock_key.clear();
    }
    c.autolock = on;
    Ok(())
}

fn new_unlock_key() -> OpsResult<Vec<u8>> {
    Key::generate()
        .map(|k| k.as_bytes().to_vec())
        .map_err(|e| OpsError::internal(format!("making an unlock key: {e}")))
}

/// The unlock key (`SWMKEY-1-…`), replaced by a new one first with
/// `rotate`. Leader only. Managers re-seal with the new key as they apply
/// the change; one restarted before that still opens with the old key.
pub async fn unlock_key(m: &Manager, rotate: bool) -> OpsResult<String> {
    m.read_barrier().await?;
    let (_, c) = m.cluster()?;
    if !c.autolock {
        return Err(OpsError::precondition(
            "no unlock key is set: autolock is off (swarmctl cluster update --autolock=true)",
        ));
    }
    let c = if rotate {
        m.update(|m| {
            let (version, mut c) = m.cluster()?;
            c.unlock_key = new_unlock_key()?;
            c.updated_at_ms = swarmlet_common::clock::now_ms();
            Ok((Tx::new().put(&c, Some(version)), c))
        })
        .await?
    } else {
        c
    };
    let key = Key::from_bytes(&c.unlock_key)
        .ok_or_else(|| OpsError::internal("the cluster's unlock key is malformed"))?;
    Ok(format_unlock_key(&key))
}
