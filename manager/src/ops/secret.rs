//! Secret and config rows: create, list, inspect, remove; the references
//! services make to them; the plaintext handed to a node for its tasks.
//!
//! Both kinds share this code: a config is a [`Secret`] row in the
//! `configs` table ([`Kind`] picks), with `/<name>` as its default target.

use std::collections::{BTreeSet, HashMap};

use super::{OpsError, OpsResult};
use swarmlet_proto::control::{CreateSecretRequest, SecretInfo};
use swarmlet_proto::dispatcher::FilePayload;
use swarmlet_proto::objects::{Config, FileReference, Secret, Service, ServiceSpec, Task};

use crate::manager::Manager;
use crate::secrets::keys::{data_key, KeyContext};
use crate::store::Tx;

/// Largest secret or config (as Docker: 500 KiB).
pub const MAX_SIZE: usize = 500 * 1024;

/// Secret or config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `swarmctl secret`, mounted under `/run/secrets`.
    Secret,
    /// `swarmctl config`, mounted at `/<name>` by default.
    Config,
}

impl Kind {
    /// From the API's `config` flag.
    pub fn from_flag(config: bool) -> Kind {
        if config {
            Kind::Config
        } else {
            Kind::Secret
        }
    }

    /// `secret` or `config`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }

    /// Authenticated with the sealed bytes: they open only in their row.
    fn context(self, id: &str) -> Vec<u8> {
        format!("{}/{id}", self.name()).into_bytes()
    }

    /// Where a reference without a target puts the file.
    fn default_target(self, name: &str) -> String {
        match self {
            Kind::Secret => format!("/run/secrets/{name}"),
            Kind::Config => format!("/{name}"),
        }
    }
}

fn to_config(s: &Secret) -> Config {
    Config {
        id: s.id.clone(),
        name: s.name.clone(),
        labels: s.labels.clone(),
        sealed_data: s.sealed_data.clone(),
        size: s.size,
        created_at_ms: s.created_at_ms,
        updated_at_ms: s.updated_at_ms,
    }
}

fn from_config(c: Config) -> Secret {
    Secret {
        id: c.id,
        name: c.name,
        labels: c.labels,
        sealed_data: c.sealed_data,
        size: c.size,
        created_at_ms: c.created_at_ms,
        updated_at_ms: c.updated_at_ms,
    }
}

/// Every row of `kind`.
pub fn list_rows(m: &Manager, kind: Kind) -> OpsResult<Vec<(u64, Secret)>> {
    Ok(match kind {
        Kind::Secret => m.store.list::<Secret>()?,
        Kind::Config => m
            .store
            .list::<Config>()?
            .into_iter()
            .map(|(v, c)| (v, from_config(c)))
            .collect(),
    })
}

/// The row `reference` names: ID, name, or unique ID prefix.
pub fn resolve(m: &Manager, kind: Kind, reference: &str) -> OpsResult<(u64, Secret)> {
    let rows = list_rows(m, kind)?;
    crate::resolve::resolve_named(&rows, kind.name(), reference, |s| &s.id, |s| &s.name)
}

/// Names as Docker allows them: letters, digits, `-`, `_`, `.`; up to 64.
fn check_name(kind: Kind, name: &str) -> OpsResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(OpsError::invalid(format!(
            "invalid {} name {name:?}: use letters, digits, '-', '_' and '.', at most 64",
            kind.name()
        )))
    }
}

fn services_using(services: &[(u64, Service)], kind: Kind, id: &str) -> Vec<String> {
    let mut names: Vec<String> = services
        .iter()
        .filter_map(|(_, s)| s.spec.as_ref())
        .filter(|spec| references(spec, kind).iter().any(|r| r.id == id))
        .map(|spec| spec.name.clone())
        .collect();
    names.sort();
    names
}

fn references(spec: &ServiceSpec, kind: Kind) -> &[FileReference] {
    match kind {
        Kind::Secret => &spec.secrets,
        Kind::Config => &spec.configs,
    }
}

fn info_among(services: &[(u64, Service)], kind: Kind, s: &Secret) -> SecretInfo {
    SecretInfo {
        id: s.id.clone(),
        name: s.name.clone(),
        labels: s.labels.clone(),
        size: s.size,
        created_at_ms: s.created_at_ms,
        updated_at_ms: s.updated_at_ms,
        services: services_using(services, kind, &s.id),
    }
}

/// The API view of the row `reference` names (never its bytes), after a
/// read barrier.
pub async fn inspect(m: &Manager, kind: Kind, reference: &str) -> OpsResult<SecretInfo> {
    m.read_barrier().await?;
    let (_, s) = resolve(m, kind, reference)?;
    let services = m.store.list::<Service>()?;
    Ok(info_among(&services, kind, &s))
}

/// The API view of every row of `kind`, by name (after a read barrier).
pub async fn list(m: &Manager, kind: Kind) -> OpsResult<Vec<SecretInfo>> {
    m.read_barrier().await?;
    let services = m.store.list::<Service>()?;
    let mut infos: Vec<SecretInfo> = list_rows(m, kind)?
        .iter()
        .map(|(_, s)| info_among(&services, kind, s))
        .collect();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(infos)
}

/// Creates a secret or config (leader).
pub async fn create(m: &Manager, req: CreateSecretRequest) -> OpsResult<SecretInfo> {
    let kind = Kind::from_flag(req.config);
    check_name(kind, &req.name)?;
    if req.data.is_empty() {
        return Err(OpsError::invalid(format!(
            "{} {} is empty",
            kind.name(),
            req.name
        )));
    }
    if req.data.len() > MAX_SIZE {
        return Err(OpsError::invalid(format!(
            "{} {} is {} bytes; at most {MAX_SIZE} are allowed",
            kind.name(),
            req.name,
            req.data.len()
        )));
    }
    m.read_barrier().await?;
    if list_rows(m, kind)?.iter().any(|(_, s)| s.name == req.name) {
        return Err(OpsError::NameTaken {
            kind: kind.name(),
            name: req.name,
        });
    }
    let key = data_key(&key_context(m), true).await?;
    let id = swarmlet_common::ids::new_id();
    let now = swarmlet_common::clock::now_ms();
    let row = Secret {
        sealed_data: key
            .seal(&req.data, &kind.context(&id))
            .map_err(|e| OpsError::internal(format!("sealing: {e}")))?,
        id,
        name: req.name,
        labels: req.labels,
        size: req.data.len() as u64,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let tx = match kind {
        Kind::Secret => Tx::new().create(&row),
        Kind::Config => Tx::new().create(&to_config(&row)),
    };
    m.propose(tx).await?;
    let services = m.store.list::<Service>()?;
    Ok(info_among(&services, kind, &row))
}

/// Replaces the labels of one (leader); its bytes never change.
pub async fn update_labels(
    m: &Manager,
    kind: Kind,
    reference: &str,
    labels: std::collections::HashMap<String, String>,
) -> OpsResult<SecretInfo> {
    m.read_barrier().await?;
    let (version, mut row) = resolve(m, kind, reference)?;
    row.labels = labels;
    row.updated_at_ms = swarmlet_common::clock::now_ms();
    let tx = match kind {
        Kind::Secret => Tx::new().put(&row, Some(version)),
        Kind::Config => Tx::new().put(&to_config(&row), Some(version)),
    };
    m.propose(tx).await?;
    let services = m.store.list::<Service>()?;
    Ok(info_among(&services, kind, &row))
}

/// Removes one, unless a service uses it (leader).
pub async fn remove(m: &Manager, kind: Kind, reference: &str) -> OpsResult<()> {
    m.read_barrier().await?;
    let (version, row) = resolve(m, kind, reference)?;
    let services = m.store.list::<Service>()?;
    let users = services_using(&services, kind, &row.id);
    if !users.is_empty() {
        return Err(OpsError::precondition(format!(
            "{} {} is in use by service {}",
            kind.name(),
            row.name,
            users.join(", ")
        )));
    }
    let tx = match kind {
        Kind::Secret => Tx::new().delete::<Secret>(&row.id, Some(version)),
        Kind::Config => Tx::new().delete::<Config>(&row.id, Some(version)),
    };
    m.propose(tx).await.map(|_| ())
}

/// Resolves a service spec's secret and config names to IDs and fills in
/// default targets; unknown names and two files at one target are refused.
pub fn resolve_references(m: &Manager, spec: &mut ServiceSpec) -> OpsResult<()> {
    let mut targets: HashMap<String, String> = HashMap::new();
    for kind in [Kind::Secret, Kind::Config] {
        let refs = match kind {
            Kind::Secret => &mut spec.secrets,
            Kind::Config => &mut spec.configs,
        };
        if refs.is_empty() {
            continue;
        }
        let rows = list_rows(m, kind)?;
        for r in refs.iter_mut() {
            let wanted = if r.name.is_empty() { &r.id } else { &r.name };
            let row = rows
                .iter()
                .map(|(_, s)| s)
                .find(|s| &s.name == wanted || &s.id == wanted)
                .ok_or_else(|| OpsError::not_found(kind.name(), wanted.as_str()))?;
            r.id = row.id.clone();
            r.name = row.name.clone();
            r.target = if r.target.is_empty() {
                kind.default_target(&row.name)
            } else if kind == Kind::Secret && !r.target.starts_with('/') {
                format!("/run/secrets/{}", r.target)
            } else {
                r.target.clone()
            };
            if !r.target.starts_with('/') || r.target.split('/').any(|p| p == "..") {
                return Err(OpsError::invalid(format!(
                    "{} {}: target {:?} must be an absolute path without '..'",
                    kind.name(),
                    r.name,
                    r.target
                )));
            }
            if let Some(other) = targets.insert(r.target.clone(), r.name.clone()) {
                return Err(OpsError::invalid(format!(
                    "{} and {} both target {}",
                    other, r.name, r.target
                )));
            }
        }
    }
    Ok(())
}

/// The plaintext of every secret and config `tasks` use (for the node
/// that runs them). One that cannot be opened is left out and logged: the
/// task then fails on the worker with a clear message.
pub async fn payloads(m: &Manager, tasks: &[&Task]) -> Vec<FilePayload> {
    let mut wanted: BTreeSet<(String, bool)> = BTreeSet::new();
    for t in tasks {
        if let Some(spec) = &t.spec {
            wanted.extend(spec.secrets.iter().map(|r| (r.id.clone(), false)));
            wanted.extend(spec.configs.iter().map(|r| (r.id.clone(), true)));
        }
    }
    if wanted.is_empty() {
        return Vec::new();
    }
    let key = match data_key(&key_context(m), false).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("secrets for a node: {}", e);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (id, config) in wanted {
        let kind = Kind::from_flag(config);
        let row = match kind {
            Kind::Secret => m.store.get::<Secret>(&id).ok().flatten(),
            Kind::Config => m
                .store
                .get::<Config>(&id)
                .ok()
                .flatten()
                .map(|(v, c)| (v, from_config(c))),
        };
        let Some((_, row)) = row else { continue };
        match key.open(&row.sealed_data, &kind.context(&id)) {
            Ok(data) => out.push(FilePayload { id, data }),
            Err(e) => tracing::warn!(id = %id, "cannot open {} {}: {e}", kind.name(), row.name),
        }
    }
    out
}

/// The key functions' view of manager `m`.
fn key_context(m: &Manager) -> KeyContext<'_> {
    KeyContext {
        core: &m.core,
        ring: &m.keys,
        channels: &m.channels,
    }
}
