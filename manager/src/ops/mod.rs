//! The manager's operations, one file per resource: what the control API
//! does, independent of the transport that asks (the gRPC control API
//! today; the Docker Engine API next). Each takes plain Rust types (the
//! store's objects and the control API's messages, which are plain structs)
//! and returns [`OpsError`]; the front ends map it to their own statuses
//! (`From<OpsError> for tonic::Status` in [`crate::api::grpc`]).
//!
//! Writes are proposed on the leader: a front end forwards to the leader
//! first; reads take a Raft read barrier so what a client sees is
//! linearizable.

pub mod autolock;
pub mod bootstrap;
pub mod cluster;
pub mod container_checks;
pub mod network;
pub mod node;
pub mod secret;
pub mod service;
pub mod task;

use crate::raft::ProposeError;
use crate::store::StoreError;

/// Why an operation failed; each variant is one kind of answer a front end
/// gives (gRPC code, HTTP status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsError {
    /// The object a reference names does not exist.
    #[error("{kind} {reference} not found")]
    NotFound {
        /// What was looked for (`service`, `node`, …).
        kind: &'static str,
        /// What the caller typed.
        reference: String,
    },
    /// A reference names more than one object.
    #[error("{kind} {reference} is ambiguous{detail}")]
    Ambiguous {
        /// What was looked for.
        kind: &'static str,
        /// What the caller typed.
        reference: String,
        /// What matched, e.g. ` (2 matches)`; may be empty.
        detail: String,
    },
    /// An object of this kind already has this name.
    #[error("a {kind} named {name} already exists")]
    NameTaken {
        /// The kind of object.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// Something the request wants is held by another object (a published
    /// port).
    #[error("{0}")]
    InUse(String),
    /// The object changed since the caller read it.
    #[error("{0}")]
    Stale(String),
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    InvalidArgument(String),
    /// The cluster is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A pool (addresses, ports, subnets) has nothing left.
    #[error("{0}")]
    Exhausted(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The cluster cannot answer now (no leader, leadership lost, stopping).
    #[error("{0}")]
    Unavailable(String),
    /// This manager handed its leadership away to make the change (a
    /// leader demoting itself): the new leader must be asked.
    #[error("leadership moved to another manager; retry")]
    LeaderMoved,
    /// The change was not committed in time.
    #[error("{0}")]
    Timeout(String),
    /// A fault of this manager (storage, a corrupt row).
    #[error("{0}")]
    Internal(String),
}

impl OpsError {
    /// `kind reference not found`.
    pub fn not_found(kind: &'static str, reference: impl Into<String>) -> Self {
        OpsError::NotFound {
            kind,
            reference: reference.into(),
        }
    }

    /// A malformed request, with the line the user sees.
    pub fn invalid(message: impl ToString) -> Self {
        OpsError::InvalidArgument(message.to_string())
    }

    /// A request the cluster's state refuses, with the line the user sees.
    pub fn precondition(message: impl ToString) -> Self {
        OpsError::FailedPrecondition(message.to_string())
    }

    /// A fault of this manager.
    pub fn internal(message: impl ToString) -> Self {
        OpsError::Internal(message.to_string())
    }
}

impl From<ProposeError> for OpsError {
    fn from(e: ProposeError) -> Self {
        match &e {
            ProposeError::Rejected(_) => OpsError::FailedPrecondition(e.to_string()),
            ProposeError::NotLeader { .. }
            | ProposeError::LeadershipLost
            | ProposeError::Stopped
            | ProposeError::Dropped(_) => OpsError::Unavailable(e.to_string()),
            ProposeError::Timeout => OpsError::Timeout(e.to_string()),
        }
    }
}

impl From<StoreError> for OpsError {
    fn from(e: StoreError) -> Self {
        OpsError::Internal(e.to_string())
    }
}

/// What an operation returns.
pub type OpsResult<T> = Result<T, OpsError>;
