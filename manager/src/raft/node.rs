//! The Ready loop: one thread owns the `RawNode` and its storage.
//!
//! Order per Ready: send the leader's `messages` at once, install a
//! snapshot, append new entries and the HardState, fsync once, **then**
//! apply committed entries (raft-rs's example applies them before the
//! append; here the applied index lives in the same sled database as the
//! HardState, and applying first could leave it durable ahead of the
//! commit index, which raft-rs refuses at start-up), send
//! `persisted_messages`, `advance`, then the light ready's commit index
//! (written before its entries are applied: sled recovers a prefix of its
//! writes), messages and committed entries, and `advance_apply`. Commands
//! (proposals, peer messages) are drained in batches between Readies, so
//! many concurrent proposals share one fsync.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as PbMessage;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use swarmlet_proto::objects::RaftMember;
use swarmlet_proto::store::{ConfChangeContext, Proposal, ProposalBatch};
use tokio::sync::watch;

use super::handle::{Command, ProposeError, RaftHandle, RaftStatus, Reply};
use super::storage::SledStorage;
use crate::store::{Store, Tx};

/// Where the loop sends messages for other managers.
pub trait Transport: Send + Sync + 'static {
    /// Sends messages (best effort; Raft retries).
    fn send(&self, msgs: Vec<Message>);
    /// The current voters and their addresses.
    fn set_peers(&self, members: Vec<RaftMember>);
}

/// Tuning of one Raft member.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This member's Raft ID.
    pub raft_id: u64,
    /// Length of one logical clock tick.
    pub tick: Duration,
    /// Ticks without a leader before a follower campaigns (randomised up to 2×).
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Compact the log once this many entries are applied past the last compaction.
    pub snapshot_interval: u64,
    /// Entries kept behind the compaction point for slightly slow followers.
    pub keep_entries: u64,
}

impl RaftConfig {
    /// Defaults: 50 ms ticks, 0.5–1 s election timeout, compaction every 10,000 entries.
    pub fn new(raft_id: u64) -> Self {
        RaftConfig {
            raft_id,
            tick: Duration::from_millis(50),
            election_tick: 10,
            heartbeat_tick: 1,
            snapshot_interval: 10_000,
            keep_entries: 1_000,
        }
    }
}

/// Failures starting the loop.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// raft-rs refused the configuration or storage.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] super::storage::RaftStorageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The thread could not be spawned.
    #[error("raft thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Starts the Ready loop on its own thread.
pub fn start(
    cfg: RaftConfig,
    storage: SledStorage,
    store: Store,
    transport: Arc<dyn Transport>,
) -> Result<RaftHandle, StartError> {
    let (applied, _) = store.applied()?;
    let raft_cfg = raft::Config {
        id: cfg.raft_id,
        election_tick: cfg.election_tick,
        heartbeat_tick: cfg.heartbeat_tick,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        // Merge appends of many proposals into one message per follower.
        batch_append: true,
        // A new commit index reaches the followers with the next append or
        // heartbeat instead of an empty append of its own: that message
        // pair per write doubled the followers' work and landed on the
        // next write's path. Reads go to the leader (read index), so a
        // follower applying up to one heartbeat later changes no answer.
        skip_bcast_commit: true,
        ..Default::default()
    };
    raft_cfg.validate()?;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let raw = RawNode::new(&raft_cfg, storage, &logger)?;
    let durable_term_vote = (raw.raft.term, raw.raft.vote);
    let (tx, rx) = std_mpsc::channel();
    let (status_tx, status_rx) = watch::channel(RaftStatus::default());
    let (applied_tx, applied_rx) = watch::channel(applied);
    transport.set_peers(store.objects::<RaftMember>()?);
    let mut lp = Loop {
        raw,
        store,
        transport,
        cfg,
        waiters: HashMap::new(),
        batch: Vec::new(),
        batch_bytes: 0,
        reads: HashMap::new(),
        reads_before_commit: Vec::new(),
        reads_after_apply: Vec::new(),
        next_id: rand::random::<u64>() >> 1,
        status_tx,
        applied_tx,
        compacted: 0,
        checkpointed: applied,
        durable_term_vote,
    };
    lp.compacted = lp.raw.store().first_index()?.saturating_sub(1);
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || lp.run(rx))?;
    Ok(RaftHandle {
        tx,
        status: status_rx,
        applied: applied_rx,
        thread: Arc::new(std::sync::Mutex::new(Some(thread))),
    })
}

struct Loop {
    raw: RawNode<SledStorage>,
    store: Store,
    transport: Arc<dyn Transport>,
    cfg: RaftConfig,
    waiters: HashMap<u64, Reply>,
    /// Proposals received this loop turn, proposed together as one entry.
    batch: Vec<(Proposal, Reply)>,
    batch_bytes: usize,
    reads: HashMap<u64, Reply>,
    /// Reads that arrived before this leader committed an entry of its term;
    /// raft-rs would drop them, so they wait here.
    reads_before_commit: Vec<(u64, Reply)>,
    reads_after_apply: Vec<(u64, Reply)>,
    next_id: u64,
    status_tx: watch::Sender<RaftStatus>,
    applied_tx: watch::Sender<u64>,
    compacted: u64,
    /// The applied index the state tree holds (the last checkpoint's).
    checkpointed: u64,
    /// The term and vote last made durable: only a change of these (or new
    /// entries) needs an fsync before going on.
    durable_term_vote: (u64, u64),
}

/// The parts of one Ready that can take long.
#[derive(Debug, Default, Clone, Copy)]
struct ReadyTimes {
    /// Taking the Ready from raft-rs (it reads committed entries that are
    /// no longer in memory from the log) and sending its messages.
    take: Duration,
    /// Appending entries and the HardState, and the fsync.
    persist: Duration,
    /// Applying committed entries.
    apply: Duration,
    /// Starting a checkpoint and compacting the log.
    compact: Duration,
}

/// Rows waiting for the state tree that start a checkpoint (a delta of
/// ~4 KiB pieces, see `store::layout`). Chosen when a checkpoint was still
/// one sled batch, which holds sled's exclusive lock: with 16,384 or 4,096
/// rows and a new key per write, Readies stalled 0.4–0.6 s under load and
/// leaderships were lost (`swarm-bench raft`, 64 clients); with 1,024 none
/// were. Deltas take no such lock; the figure was kept.
const CHECKPOINT_ROWS: usize = 1_024;

/// Most commands handled between two Readies.
const MAX_BATCH: usize = 4096;
/// Largest proposal batch in one entry (raft messages are capped at 1 MiB).
const MAX_ENTRY_BYTES: usize = 512 * 1024;

impl Loop {
    fn run(mut self, rx: std_mpsc::Receiver<Command>) {
        let mut last_tick = Instant::now();
        'outer: loop {
            let wait = self.cfg.tick.saturating_sub(last_tick.elapsed());
            match rx.recv_timeout(wait) {
                Ok(cmd) => {
                    if !self.handle(cmd) {
                        break 'outer;
                    }
                    for _ in 0..MAX_BATCH {
                        match rx.try_recv() {
                            Ok(cmd) => {
                                if !self.handle(cmd) {
                                    break 'outer;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.propose_batch();
            self.release_deferred_reads();
            if last_tick.elapsed() >= self.cfg.tick {
                self.raw.tick();
                last_tick = Instant::now();
            }
            if let Err(e) = self.poll_checkpoint() {
                tracing::error!("raft state checkpoint failed, stopping this manager's raft: {e}");
                break;
            }
            if self.raw.has_ready() {
                let started = Instant::now();
                match self.on_ready() {
                    Ok(times) => self.report_slow_ready(started.elapsed(), times),
                    Err(e) => {
                        tracing::error!("raft storage failed, stopping this manager's raft: {e}");
                        break;
                    }
                }
            }
            self.publish_status();
        }
        self.fail_all(ProposeError::Stopped);
        // A clean stop leaves the state tree current: nothing to replay.
        if let Err(e) = self.store.checkpoint() {
            tracing::warn!("raft: final checkpoint failed (the log replays it): {e}");
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn not_leader(&self) -> Option<ProposeError> {
        (self.raw.raft.state != StateRole::Leader).then_some(ProposeError::NotLeader {
            leader: self.raw.raft.leader_id,
        })
    }

    /// Returns false when the loop must stop.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Propose(tx, reply) => {
                let id = self.new_id();
                let proposal = Proposal {
                    id,
                    mutations: tx.into_mutations(),
                };
                self.batch_bytes += proposal.encoded_len();
                self.batch.push((proposal, reply));
                if self.batch_bytes >= MAX_ENTRY_BYTES {
                    self.propose_batch();
                }
            }
            Command::ReadIndex(reply) => {
                if let Some(e) = self.not_leader() {
                    let _ = reply.send(Err(e));
                    return true;
                }
                let id = self.new_id();
                if self.raw.raft.commit_to_current_term() {
                    self.raw.read_index(id.to_be_bytes().to_vec());
                    self.reads.insert(id, reply);
                } else {
                    self.reads_before_commit.push((id, reply));
                }
            }
            Command::ConfChange(mut cc, context, reply) => {
                if let Some(e) = self.not_leader() {
                    let _ = reply.send(Err(e));
                    return true;
                }
                if self.raw.raft.pending_conf_index > self.raw.raft.raft_log.applied {
                    // raft-rs would silently turn a second change into an empty entry.
                    let _ = reply.send(Err(ProposeError::Dropped(
                        "another membership change is in progress; retry".into(),
                    )));
                    return true;
                }
                let id = self.new_id();
                let mut ctx = ConfChangeContext::decode(context.as_slice()).unwrap_or_default();
                ctx.proposal_id = id;
                cc.context = ctx.encode_to_vec().into();
                match self.raw.propose_conf_change(vec![], cc) {
                    Ok(()) => {
                        self.waiters.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ProposeError::Dropped(e.to_string())));
                    }
                }
            }
            Command::Step(msg) => {
                if let Err(e) = self.raw.step(msg) {
                    tracing::debug!("raft step: {e}");
                }
            }
            Command::Unreachable(id) => self.raw.report_unreachable(id),
            Command::SnapshotFailed(id) => self.raw.report_snapshot(id, SnapshotStatus::Failure),
            Command::SnapshotSent(id) => self.raw.report_snapshot(id, SnapshotStatus::Finish),
            Command::TransferLeader(id) => self.raw.transfer_leader(id),
            Command::Stop => return false,
        }
        true
    }

    /// Issues the reads that waited for this leader's first commit.
    fn release_deferred_reads(&mut self) {
        if self.reads_before_commit.is_empty()
            || self.raw.raft.state != StateRole::Leader
            || !self.raw.raft.commit_to_current_term()
        {
            return;
        }
        for (id, reply) in std::mem::take(&mut self.reads_before_commit) {
            self.raw.read_index(id.to_be_bytes().to_vec());
            self.reads.insert(id, reply);
        }
    }

    /// Proposes the gathered proposals as one entry.
    fn propose_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        if let Some(e) = self.not_leader() {
            for (_, reply) in batch {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        let (proposals, replies): (Vec<Proposal>, Vec<Reply>) = batch.into_iter().unzip();
        let ids: Vec<u64> = proposals.iter().map(|p| p.id).collect();
        let data = ProposalBatch { proposals }.encode_to_vec();
        match self.raw.propose(vec![], data) {
            Ok(()) => self.waiters.extend(ids.into_iter().zip(replies)),
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(ProposeError::Dropped(e.to_string())));
                }
            }
        }
    }

    /// Handles one Ready; returns where its time went.
    fn on_ready(&mut self) -> Result<ReadyTimes, Box<dyn std::error::Error>> {
        let mut times = ReadyTimes::default();
        let take_started = Instant::now();
        let mut ready = self.raw.ready();
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        times.take = take_started.elapsed();
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone())?;
        }
        let committed = ready.take_committed_entries();
        // The entries and the HardState are written before `committed` is
        // applied, so that a crash never leaves the applied index ahead of
        // the commit index: sled recovers a prefix of its writes, so the
        // applied rows cannot outlive the HardState written before them
        // (and `SledStorage::open` repairs it if they ever did). An fsync is
        // owed only to what others rely on: new entries (they are acked)
        // and a new term or vote (election safety); a HardState whose
        // commit index alone moved rides along unsynced, which keeps a
        // second fsync off every write's path on the leader.
        let persist_started = Instant::now();
        let term_vote = ready.hs().map(|hs| (hs.term, hs.vote));
        let must_persist = !ready.entries().is_empty()
            || !ready.snapshot().is_empty()
            || term_vote.is_some_and(|tv| tv != self.durable_term_vote);
        if !ready.entries().is_empty() {
            self.raw.store().append(ready.entries())?;
        }
        if let Some(hs) = ready.hs() {
            self.raw.store().set_hard_state(hs)?;
        }
        if must_persist {
            self.raw.store().persist()?;
            if let Some(tv) = term_vote {
                self.durable_term_vote = tv;
            }
        }
        times.persist = persist_started.elapsed();
        // Acks of what was just made durable go before the apply: a
        // follower's ack should not wait for its state machine.
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        let apply_started = Instant::now();
        self.apply(committed)?;
        if let Some(ss) = ready.ss() {
            if ss.raft_state != StateRole::Leader {
                self.fail_all(ProposeError::LeadershipLost);
            }
        }
        for rs in ready.take_read_states() {
            let id = be_u64(&rs.request_ctx);
            if let Some(reply) = self.reads.remove(&id) {
                self.reads_after_apply.push((rs.index, reply));
            }
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.store().set_commit(commit)?;
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        self.apply(light.take_committed_entries())?;
        times.apply = apply_started.elapsed();
        self.raw.advance_apply();
        self.release_deferred_reads();
        self.answer_reads();
        let compact_started = Instant::now();
        self.maybe_compact()?;
        times.compact = compact_started.elapsed();
        Ok(times)
    }

    /// Warns when one Ready took half the shortest election timeout or
    /// more: a leader that long without sending heartbeats is close to
    /// losing its followers, so where the time went is worth a line.
    fn report_slow_ready(&self, took: Duration, t: ReadyTimes) {
        let half_election = self.cfg.tick * self.cfg.election_tick as u32 / 2;
        if took < half_election {
            return;
        }
        tracing::warn!(
            took_ms = took.as_millis() as u64,
            take_ms = t.take.as_millis() as u64,
            persist_ms = t.persist.as_millis() as u64,
            apply_ms = t.apply.as_millis() as u64,
            compact_ms = t.compact.as_millis() as u64,
            leader = self.raw.raft.state == StateRole::Leader,
            "raft: one Ready took half an election timeout or more"
        );
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), Box<dyn std::error::Error>> {
        let index = snap.get_metadata().index;
        self.raw.store().apply_snapshot(&snap)?;
        self.compacted = index;
        self.checkpointed = index;
        self.refresh_peers()?;
        let _ = self.applied_tx.send(index);
        tracing::info!(index, "installed raft snapshot");
        Ok(())
    }

    fn refresh_peers(&self) -> Result<(), crate::store::StoreError> {
        let members = self.store.list::<RaftMember>()?;
        self.transport
            .set_peers(members.into_iter().map(|(_, m)| m).collect());
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), Box<dyn std::error::Error>> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for entry in entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&entry)?,
                EntryType::EntryConfChange => self.apply_conf_change(&entry)?,
                EntryType::EntryConfChangeV2 => {
                    // Never proposed by Swarmlet; only advance the index.
                    // With no mutations there is no check to fail.
                    let _ = self.store.apply_entry(entry.index, entry.term, &[], &[])?;
                }
            }
        }
        let _ = self.applied_tx.send(last);
        Ok(())
    }

    fn apply_normal(&mut self, entry: &Entry) -> Result<(), Box<dyn std::error::Error>> {
        if entry.data.is_empty() {
            // A new leader's empty entry: nothing to check, only the index moves.
            let _ = self.store.apply_entry(entry.index, entry.term, &[], &[])?;
            return Ok(());
        }
        // Every manager applies the same bytes: one that cannot read them
        // must not go on as if the entry were empty (its state would
        // differ from the others' from here on). The loop stops instead,
        // failing the waiters, as raft-rs's own example does.
        let batch = ProposalBatch::decode(entry.data.as_ref())
            .map_err(|e| undecodable(entry, "proposal batch", e))?;
        let mutations: Vec<&[_]> = batch
            .proposals
            .iter()
            .map(|p| p.mutations.as_slice())
            .collect();
        let outcomes = self
            .store
            .apply_proposals(entry.index, entry.term, &mutations, &[])?;
        for (proposal, outcome) in batch.proposals.iter().zip(outcomes) {
            if let Some(reply) = self.waiters.remove(&proposal.id) {
                let _ = reply.send(outcome.map(|_| entry.index).map_err(ProposeError::Rejected));
            }
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, entry: &Entry) -> Result<(), Box<dyn std::error::Error>> {
        let cc = ConfChange::parse_from_bytes(&entry.data)?;
        let ctx = ConfChangeContext::decode(cc.get_context())
            .map_err(|e| undecodable(entry, "membership change context", e))?;
        let cs = self.raw.apply_conf_change(&cc)?;
        let tx = match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => Tx::new().put(
                &RaftMember {
                    raft_id: cc.node_id,
                    node_id: ctx.node_id.clone(),
                    addr: ctx.addr.clone(),
                },
                None,
            ),
            ConfChangeType::RemoveNode => {
                Tx::new().delete::<RaftMember>(&format!("{:016x}", cc.node_id), None)
            }
        };
        let cs_bytes = cs.write_to_bytes()?;
        // Unconditional put/delete: no check can fail.
        let _ = self.store.apply_entry(
            entry.index,
            entry.term,
            &tx.into_mutations(),
            &[(crate::store::CONF_STATE_KEY, cs_bytes)],
        )?;
        self.refresh_peers()?;
        tracing::info!(node = cc.node_id, change = ?cc.get_change_type(), voters = ?cs.voters, "raft membership changed");
        if let Some(reply) = self.waiters.remove(&ctx.proposal_id) {
            let _ = reply.send(Ok(entry.index));
        }
        Ok(())
    }

    fn answer_reads(&mut self) {
        let applied = self.raw.raft.raft_log.applied;
        let pending = std::mem::take(&mut self.reads_after_apply);
        for (index, reply) in pending {
            if index <= applied {
                let _ = reply.send(Ok(index));
            } else {
                self.reads_after_apply.push((index, reply));
            }
        }
    }

    /// Notes a checkpoint that has finished (whoever started it).
    fn poll_checkpoint(&mut self) -> Result<(), crate::store::StoreError> {
        if let Some((index, _)) = self.store.checkpoint_finished(false)? {
            self.checkpointed = index;
            tracing::debug!(index, "checkpointed the state tree");
        }
        Ok(())
    }

    /// Checkpoints the applied rows to the state tree (on the checkpoint's
    /// own thread) once `snapshot_interval` entries or [`CHECKPOINT_ROWS`]
    /// rows wait for it, and compacts the log every `snapshot_interval`
    /// entries up to the last finished checkpoint, keeping `keep_entries`
    /// before it for lagging followers. (The loop notes a finished
    /// checkpoint before each Ready: [`poll_checkpoint`](Self::poll_checkpoint).)
    fn maybe_compact(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let applied = self.raw.raft.raft_log.applied;
        let due = applied >= self.checkpointed + self.cfg.snapshot_interval
            || self.store.unwritten_rows() >= CHECKPOINT_ROWS;
        if due && !self.store.checkpoint_running() {
            self.store.start_checkpoint()?;
        }
        let to = self.checkpointed.saturating_sub(self.cfg.keep_entries);
        if to >= self.compacted + self.cfg.snapshot_interval {
            self.raw.store().compact(to)?;
            self.compacted = to;
            tracing::debug!(to, "compacted raft log");
        } else {
            // The compacted entries leave the tree a step per Ready.
            self.raw.store().trim(super::storage::TRIM_STEP)?;
        }
        Ok(())
    }

    fn fail_all(&mut self, err: ProposeError) {
        for (_, reply) in self.batch.drain(..) {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, reply) in self.waiters.drain() {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, reply) in self.reads_before_commit.drain(..) {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, reply) in self.reads_after_apply.drain(..) {
            let _ = reply.send(Err(err.clone()));
        }
    }

    fn publish_status(&self) {
        let r = &self.raw.raft;
        let mut voters: Vec<u64> = r.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        let reachable = if r.state == StateRole::Leader {
            r.prs()
                .iter()
                .filter(|(id, p)| **id == r.id || p.recent_active)
                .map(|(id, _)| *id)
                .collect()
        } else {
            Default::default()
        };
        let status = RaftStatus {
            raft_id: r.id,
            leader_id: r.leader_id,
            term: r.term,
            commit: r.raft_log.committed,
            applied: r.raft_log.applied,
            voters,
            reachable,
        };
        self.status_tx.send_if_modified(|old| {
            if status.leader_id != 0 && status.leader_id != old.leader_id {
                swarmlet_common::metrics::global().raft_leader_changes.inc();
            }
            if *old != status {
                *old = status;
                true
            } else {
                false
            }
        });
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    if b.len() == 8 {
        a.copy_from_slice(b);
    }
    u64::from_be_bytes(a)
}

/// The error that stops the Ready loop when a committed entry cannot be read.
fn undecodable(entry: &Entry, what: &str, e: prost::DecodeError) -> Box<dyn std::error::Error> {
    format!(
        "committed entry {} (term {}): its {what} does not decode ({e}); this manager cannot apply it",
        entry.index, entry.term
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::Node;

    struct NoPeers;

    impl Transport for NoPeers {
        fn send(&self, _msgs: Vec<Message>) {}
        fn set_peers(&self, _members: Vec<RaftMember>) {}
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_committed_entry_that_does_not_decode_stops_the_loop() {
        let db = sled::Config::new().temporary(true).open().expect("db");
        let key = crate::crypto::test_key();
        let store = Store::open(&db, key.clone()).expect("store");
        let storage = SledStorage::open(db, store.clone(), key).expect("storage");
        storage.bootstrap(7).expect("bootstrap");
        let garbage = Entry {
            index: 2,
            term: 1,
            data: vec![0xff, 0xff, 0xff].into(),
            ..Default::default()
        };
        storage.append(&[garbage]).expect("append");
        storage.set_commit(2).expect("commit");
        let handle = start(
            RaftConfig::new(7),
            storage,
            store.clone(),
            Arc::new(NoPeers),
        )
        .expect("start");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tx = Tx::new().create(&Node {
                id: "n".into(),
                ..Default::default()
            });
            match handle.propose(tx).await {
                Err(ProposeError::Stopped) => break,
                other => assert!(
                    Instant::now() < deadline,
                    "the loop went on past the bad entry: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Not applied as an empty entry, and nothing after it.
        assert!(store.applied().expect("applied").0 < 2);
        assert!(store.get::<Node>("n").expect("get").is_none());
    }
}
