//! Raft messages between managers: one client stream per peer over mTLS.
//!
//! Each peer has a bounded queue drained by its own task, so a slow or dead
//! peer never blocks the Ready loop; when a stream fails, the loop is told
//! the peer is unreachable (and a snapshot send failed) and Raft retries.
//! Encoded messages are cut into chunks so snapshots of any size fit the
//! gRPC frame limit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use protobuf::Message as PbMessage;
use raft::eraftpb::{Message, MessageType};
use rustls::ClientConfig;
use swarmlet_common::grpc::{tls_channel, WithLimits};
use swarmlet_proto::objects::RaftMember;
use swarmlet_proto::raft::raft_transport_client::RaftTransportClient;
use swarmlet_proto::raft::RaftChunk;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::handle::RaftHandle;
use super::node::Transport;

/// Largest piece of an encoded message in one stream item.
pub const CHUNK_BYTES: usize = 1024 * 1024;
const PEER_QUEUE: usize = 4096;

struct Peer {
    addr: String,
    tx: mpsc::Sender<Message>,
}

/// Metadata key carrying the sender's listen address on a Raft stream, so a
/// receiver that does not know the sender yet (a restarted manager whose
/// store lags) can answer it.
pub const FROM_ADDR: &str = "x-swarmlet-raft-addr";

/// The gRPC [`Transport`] of one manager.
pub struct GrpcTransport {
    self_id: u64,
    self_addr: String,
    tls: Arc<ClientConfig>,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<u64, Peer>>,
    raft: Arc<OnceLock<RaftHandle>>,
    /// Peers whose traffic is dropped both ways (partition tests).
    blocked: RwLock<HashSet<u64>>,
}

impl GrpcTransport {
    /// A transport for member `self_id`, dialing with `tls`.
    pub fn new(
        self_id: u64,
        self_addr: String,
        tls: Arc<ClientConfig>,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(GrpcTransport {
            self_id,
            self_addr,
            tls,
            runtime,
            peers: Mutex::new(HashMap::new()),
            raft: Arc::new(OnceLock::new()),
            blocked: RwLock::new(HashSet::new()),
        })
    }

    /// Connects the transport to the loop it reports to.
    pub fn attach(&self, raft: RaftHandle) {
        let _ = self.raft.set(raft);
    }

    /// Adds or updates one peer's address.
    pub fn add_peer(&self, raft_id: u64, addr: &str) {
        if raft_id == self.self_id {
            return;
        }
        let Ok(mut peers) = self.peers.lock() else {
            return;
        };
        if peers.get(&raft_id).is_some_and(|p| p.addr == addr) {
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let raft = self.raft.clone();
        let tls = self.tls.clone();
        let target = addr.to_string();
        let from = self.self_addr.clone();
        self.runtime
            .spawn(peer_loop(raft_id, target, from, tls, rx, raft));
        peers.insert(
            raft_id,
            Peer {
                addr: addr.to_string(),
                tx,
            },
        );
    }

    /// Learns a peer's address from its own stream, if none is known yet.
    pub fn learn_peer(&self, raft_id: u64, addr: &str) {
        let known = self
            .peers
            .lock()
            .map(|p| p.contains_key(&raft_id))
            .unwrap_or(true);
        if !known && !addr.is_empty() {
            tracing::debug!(raft_id, addr, "learned raft peer address from its stream");
            self.add_peer(raft_id, addr);
        }
    }

    /// Drops all traffic to and from these peers (`true`) or restores it.
    pub fn set_blocked(&self, raft_id: u64, blocked: bool) {
        if let Ok(mut b) = self.blocked.write() {
            if blocked {
                b.insert(raft_id);
            } else {
                b.remove(&raft_id);
            }
        }
    }

    /// Whether traffic from `raft_id` must be dropped.
    pub fn is_blocked(&self, raft_id: u64) -> bool {
        self.blocked
            .read()
            .map(|b| b.contains(&raft_id))
            .unwrap_or(false)
    }
}

impl Transport for GrpcTransport {
    fn send(&self, msgs: Vec<Message>) {
        let Ok(peers) = self.peers.lock() else { return };
        for msg in msgs {
            let to = msg.to;
            if self.is_blocked(to) {
                continue;
            }
            let Some(peer) = peers.get(&to) else {
                tracing::debug!(to, "no address for raft peer");
                continue;
            };
            if peer.tx.try_send(msg).is_err() {
                if let Some(r) = self.raft.get() {
                    r.report_unreachable(to);
                }
            }
        }
    }

    fn set_peers(&self, members: Vec<RaftMember>) {
        let keep: HashSet<u64> = members.iter().map(|m| m.raft_id).collect();
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|id, _| keep.contains(id));
        }
        for m in members {
            self.add_peer(m.raft_id, &m.addr);
        }
    }
}

/// Encodes a message into stream chunks.
pub fn to_chunks(msg: &Message) -> Vec<RaftChunk> {
    let bytes = msg.write_to_bytes().unwrap_or_default();
    let mut out: Vec<RaftChunk> = bytes
        .chunks(CHUNK_BYTES)
        .map(|c| RaftChunk {
            data: c.to_vec(),
            last: false,
        })
        .collect();
    match out.last_mut() {
        Some(last) => last.last = true,
        None => out.push(RaftChunk {
            data: vec![],
            last: true,
        }),
    }
    out
}

async fn peer_loop(
    to: u64,
    addr: String,
    from_addr: String,
    tls: Arc<ClientConfig>,
    mut rx: mpsc::Receiver<Message>,
    raft: Arc<OnceLock<RaftHandle>>,
) {
    let report = |snapshot: bool| {
        if let Some(r) = raft.get() {
            r.report_unreachable(to);
            if snapshot {
                r.report_snapshot(to, false);
            }
        }
    };
    let mut backoff = Duration::from_millis(50);
    while let Some(first) = rx.recv().await {
        let channel = match tls_channel(&addr, tls.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(to, "bad raft peer address: {e}");
                return;
            }
        };
        let mut client = RaftTransportClient::new(channel).with_limits();
        let (chunk_tx, chunk_rx) = mpsc::channel::<RaftChunk>(1024);
        let mut request = tonic::Request::new(ReceiverStream::new(chunk_rx));
        if let Ok(v) = from_addr.parse() {
            request.metadata_mut().insert(FROM_ADDR, v);
        }
        let call = tokio::spawn(async move { client.stream(request).await });
        let mut next = Some(first);
        let mut healthy = true;
        while let Some(msg) = next.take() {
            let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            for chunk in to_chunks(&msg) {
                if chunk_tx.send(chunk).await.is_err() {
                    healthy = false;
                    break;
                }
            }
            if !healthy {
                report(is_snapshot);
                break;
            }
            if is_snapshot {
                if let Some(r) = raft.get() {
                    r.report_snapshot(to, true);
                }
            }
            backoff = Duration::from_millis(50);
            next = rx.recv().await;
        }
        drop(chunk_tx);
        if let Ok(Err(status)) = call.await {
            tracing::debug!(to, %addr, "raft stream ended: {}", status.message());
        }
        // Drop what queued up while the stream was failing; Raft resends.
        while let Ok(m) = rx.try_recv() {
            report(m.get_msg_type() == MessageType::MsgSnapshot);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}
