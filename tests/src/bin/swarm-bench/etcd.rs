//! `raft --compare-etcd`: three etcd members from Debian's `etcd-server`
//! on loopback, driven like Swarmlet's Raft store (same clients, value
//! size, duration), in rounds alternating with Swarmlet's.
//!
//! The client is a few lines of tonic over etcd's v3 gRPC API (`KV/Put`,
//! `Maintenance/Status`) with the two messages it needs declared by hand:
//! the `etcd-client` crate compiles etcd's protos with `protoc` at build
//! time, which this workspace does without (its own protos go through
//! protox). Like Swarmlet's bench, which proposes on the leader, the load
//! goes to etcd's leader.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http::uri::PathAndQuery;
use tonic::transport::Channel;

/// `etcdserverpb.PutRequest` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    /// Key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.ResponseHeader` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    /// The member that answered.
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
}

/// `etcdserverpb.PutResponse`: nothing read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {}

/// `etcdserverpb.StatusRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

/// `etcdserverpb.StatusResponse` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    /// Who answered.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// The leader's member ID.
    #[prost(uint64, tag = "4")]
    pub leader: u64,
}

async fn unary<Req, Resp>(channel: &Channel, path: &'static str, req: Req) -> anyhow::Result<Resp>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.context("etcd not ready")?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let resp = grpc
        .unary(
            tonic::Request::new(req),
            PathAndQuery::from_static(path),
            codec,
        )
        .await
        .map_err(|s| anyhow::anyhow!("etcd: {}", s.message()))?;
    Ok(resp.into_inner())
}

/// One put.
pub async fn put(channel: &Channel, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<()> {
    let _: PutResponse = unary(channel, "/etcdserverpb.KV/Put", PutRequest { key, value }).await?;
    Ok(())
}

/// Three etcd members on loopback; stopped (by PID) when dropped.
pub struct EtcdCluster {
    children: Vec<Child>,
    /// Each member's client channel.
    pub channels: Vec<Channel>,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl EtcdCluster {
    /// Starts `n` members with data and logs under `dir`.
    pub async fn start(dir: &Path, n: usize) -> anyhow::Result<Self> {
        let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .context(
                "etcd not found: install Debian's etcd-server (apt-get install etcd-server)",
            )?;
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| (swarmlet_tests::free_port(), swarmlet_tests::free_port()))
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut cluster = EtcdCluster {
            children: Vec::new(),
            channels: Vec::new(),
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log = std::fs::File::create(dir.join(format!("etcd{i}.log")))?;
            let child = Command::new(etcd)
                .args(["--name", &format!("e{i}")])
                .args([
                    "--data-dir",
                    &dir.join(format!("etcd{i}")).display().to_string(),
                ])
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "swarm-bench"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting etcd")?;
            cluster.children.push(child);
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{client}"))?
                    .tcp_nodelay(true)
                    .connect_lazy();
            cluster.channels.push(channel);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for ch in &cluster.channels {
            while put(ch, b"ready".to_vec(), b"1".to_vec()).await.is_err() {
                if Instant::now() > deadline {
                    bail!("etcd did not start within 30 s (logs in {})", dir.display());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(cluster)
    }

    /// The channel of the current leader.
    pub async fn leader(&self) -> anyhow::Result<Channel> {
        for ch in &self.channels {
            let s: StatusResponse =
                unary(ch, "/etcdserverpb.Maintenance/Status", StatusRequest {}).await?;
            if s.header.as_ref().is_some_and(|h| h.member_id == s.leader) {
                return Ok(ch.clone());
            }
        }
        bail!("no etcd leader")
    }
}
