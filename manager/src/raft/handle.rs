//! The async face of the Raft loop: what the rest of the manager calls.

use std::collections::HashSet;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use raft::eraftpb::{ConfChange, ConfChangeType, Message};
use tokio::sync::{oneshot, watch};

use crate::store::{ApplyError, Tx};

/// How long a caller waits for its proposal or read before giving up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a proposal or a read did not go through.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    /// This manager is not the leader; `leader` is the known leader (0: none).
    #[error("this manager is not the leader")]
    NotLeader {
        /// Raft ID of the current leader, 0 if unknown.
        leader: u64,
    },
    /// Leadership was lost before the proposal committed; its fate is unknown.
    #[error("leadership lost before the change committed")]
    LeadershipLost,
    /// The entry committed but its checks failed; nothing changed.
    #[error("{0}")]
    Rejected(#[from] ApplyError),
    /// raft-rs refused the proposal.
    #[error("proposal dropped: {0}")]
    Dropped(String),
    /// No answer within the deadline.
    #[error("timed out waiting for the cluster to commit")]
    Timeout,
    /// The Raft loop has stopped.
    #[error("raft is stopped")]
    Stopped,
}

/// What the Raft loop publishes after each step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// This member's Raft ID.
    pub raft_id: u64,
    /// Current leader, 0 if none.
    pub leader_id: u64,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Voters of the current configuration.
    pub voters: Vec<u64>,
    /// On the leader: voters heard from within the last election timeout
    /// (the leader itself included). Empty elsewhere.
    pub reachable: HashSet<u64>,
}

impl RaftStatus {
    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader_id != 0 && self.leader_id == self.raft_id
    }
}

pub(crate) type Reply = oneshot::Sender<Result<u64, ProposeError>>;

pub(crate) enum Command {
    Propose(Tx, Reply),
    ReadIndex(Reply),
    ConfChange(ConfChange, Vec<u8>, Reply),
    Step(Message),
    Unreachable(u64),
    SnapshotFailed(u64),
    SnapshotSent(u64),
    TransferLeader(u64),
    Stop,
}

/// A cloneable handle to a running Raft loop.
#[derive(Clone)]
pub struct RaftHandle {
    pub(crate) tx: std_mpsc::Sender<Command>,
    pub(crate) status: watch::Receiver<RaftStatus>,
    pub(crate) applied: watch::Receiver<u64>,
    pub(crate) thread: std::sync::Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl RaftHandle {
    async fn call(&self, make: impl FnOnce(Reply) -> Command) -> Result<u64, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| ProposeError::Stopped)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Err(_) => Err(ProposeError::Timeout),
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Ok(Ok(r)) => r,
        }
    }

    /// Proposes a transaction; returns its log index once applied here.
    pub async fn propose(&self, tx: Tx) -> Result<u64, ProposeError> {
        let started = std::time::Instant::now();
        let res = self.call(|r| Command::Propose(tx, r)).await;
        if res.is_ok() {
            swarmlet_common::metrics::global()
                .raft_proposal_seconds
                .observe(started.elapsed());
        }
        res
    }

    /// Waits until this manager (the leader) has applied everything committed
    /// before now, confirmed by a quorum: reads after it are linearizable.
    pub async fn read_barrier(&self) -> Result<u64, ProposeError> {
        self.call(Command::ReadIndex).await
    }

    /// Adds a voter (ConfChange) and waits until it is applied here.
    pub async fn add_voter(&self, raft_id: u64, context: Vec<u8>) -> Result<u64, ProposeError> {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = raft_id;
        self.call(|r| Command::ConfChange(cc, context, r)).await
    }

    /// Removes a voter (ConfChange) and waits until it is applied here.
    pub async fn remove_voter(&self, raft_id: u64, context: Vec<u8>) -> Result<u64, ProposeError> {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::RemoveNode);
        cc.node_id = raft_id;
        self.call(|r| Command::ConfChange(cc, context, r)).await
    }

    /// Hands a message received from a peer to the loop.
    pub fn step(&self, msg: Message) {
        let _ = self.tx.send(Command::Step(msg));
    }

    /// Tells the loop that a peer could not be reached.
    pub fn report_unreachable(&self, raft_id: u64) {
        let _ = self.tx.send(Command::Unreachable(raft_id));
    }

    /// Tells the loop how sending a snapshot to a peer went.
    pub fn report_snapshot(&self, raft_id: u64, sent: bool) {
        let cmd = if sent {
            Command::SnapshotSent(raft_id)
        } else {
            Command::SnapshotFailed(raft_id)
        };
        let _ = self.tx.send(cmd);
    }

    /// Asks the leader to hand leadership to `raft_id`.
    pub fn transfer_leader(&self, raft_id: u64) {
        let _ = self.tx.send(Command::TransferLeader(raft_id));
    }

    /// The latest published status.
    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn watch_status(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// A receiver of the applied index.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Stops the loop (pending callers get [`ProposeError::Stopped`]) and
    /// waits for its thread, so the storage is closed when this returns.
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
