//! Settings of one daemon.

use std::path::PathBuf;
use std::time::Duration;

/// What runs a node's tasks (`swarmd --executor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Containers on the Docker engine at `--docker-host`.
    Docker,
    /// No containers: tasks are simulated (scale tests and benchmarks).
    Sim,
}

/// How one `swarmd` runs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// State directory (identity, certificates, Raft data).
    pub state_dir: PathBuf,
    /// Unix control socket path (mode 0600).
    pub control_socket: PathBuf,
    /// mTLS listener address.
    pub listen_addr: String,
    /// Address other nodes dial, `IP[:PORT]`; derived when `None`.
    pub advertise_addr: Option<String>,
    /// Node name.
    pub hostname: String,
    /// Raft clock tick (tests may shorten it).
    pub raft_tick: Duration,
    /// Compact the Raft log every this many applied entries.
    pub snapshot_interval: u64,
    /// Entries kept behind the compaction point.
    pub snapshot_keep_entries: u64,
    /// How often the node checks whether its certificate needs renewal.
    pub cert_check_interval: Duration,
    /// Shortest certificate lifetime a manager accepts (1 h; tests shorten it).
    pub min_cert_expiry: Duration,
    /// What runs the node's tasks.
    pub executor: ExecutorKind,
    /// Start latency of the simulated executor.
    pub sim_start_latency: Duration,
    /// Docker daemon URI (`--docker-host`).
    pub docker_host: String,
    /// Pull images missing locally (off with `SWARMD_NO_PULL=1`).
    pub pull_missing: bool,
    /// CPUs and memory offered to tasks; `None`: this host's.
    pub resources: Option<swarmlet_proto::objects::Resources>,
    /// `--force-new-cluster`: restart this manager as a one-manager cluster.
    pub force_new_cluster: bool,
    /// `--metrics-addr`: where Prometheus text is served; off when `None`.
    pub metrics_addr: Option<String>,
    /// `--host-pool`: addresses of the legs in the node's own namespace.
    pub host_pool: swarmlet_worker::overlay::host_pool::HostPool,
    /// The data-path (VXLAN) address (`--data-path-addr`); `None`: the
    /// advertise address's IP.
    pub data_path_addr: Option<std::net::Ipv4Addr>,
    /// The browser view's address (`--web-addr`); `None`: off.
    pub web_addr: Option<String>,
    /// The Docker Engine API socket (`--engine-api-socket`); `None`: off.
    pub engine_api_socket: Option<PathBuf>,
    /// The socket was asked for (`--engine-api-socket`): failing to serve
    /// it fails the start. The default one is skipped with a warning when
    /// another daemon on the host serves it.
    pub engine_api_socket_given: bool,
}

/// The default Engine API socket beside the control socket:
/// `/run/swarmd/swarmd.sock` → `/run/swarmd/docker.sock`, and
/// `DIR/NAME.sock` → `DIR/NAME.engine.sock` (several daemons on one host,
/// as in the test clusters, each get their own; `NAME.docker.sock` is
/// where `deploy/cluster.sh --engines` puts each host's own dockerd).
pub fn default_engine_api_socket(control_socket: &std::path::Path) -> PathBuf {
    let name = control_socket
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("swarmd.sock");
    let engine = if name == "swarmd.sock" {
        "docker.sock".to_string()
    } else {
        format!("{}.engine.sock", name.strip_suffix(".sock").unwrap_or(name))
    };
    control_socket.with_file_name(engine)
}

impl DaemonConfig {
    /// A configuration with defaults around a state dir and socket.
    pub fn new(
        state_dir: PathBuf,
        control_socket: PathBuf,
        listen_addr: String,
        hostname: String,
    ) -> Self {
        DaemonConfig {
            state_dir,
            listen_addr,
            advertise_addr: None,
            hostname,
            raft_tick: Duration::from_millis(50),
            snapshot_interval: 10_000,
            snapshot_keep_entries: 1_000,
            cert_check_interval: Duration::from_secs(60),
            min_cert_expiry: swarmlet_manager::manager::MIN_CERT_EXPIRY,
            executor: ExecutorKind::Docker,
            sim_start_latency: Duration::from_millis(10),
            resources: None,
            docker_host: "unix:///var/run/docker.sock".into(),
            pull_missing: true,
            force_new_cluster: false,
            metrics_addr: None,
            host_pool: Default::default(),
            data_path_addr: None,
            web_addr: None,
            engine_api_socket: Some(default_engine_api_socket(&control_socket)),
            engine_api_socket_given: false,
            control_socket,
        }
    }

    /// The TCP ports this daemon listens on (`--listen-addr`,
    /// `--metrics-addr`), which no service may publish.
    pub fn daemon_ports(&self) -> Vec<u32> {
        let port = |addr: &str| {
            addr.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u32>().ok())
                .filter(|p| *p != 0)
        };
        std::iter::once(port(&self.listen_addr))
            .chain(std::iter::once(self.metrics_addr.as_deref().and_then(port)))
            .flatten()
            .collect()
    }

    /// Directory of the node's certificates.
    pub fn certs_dir(&self) -> PathBuf {
        self.state_dir.join("certs")
    }

    /// Directory of the manager's sled database.
    pub fn raft_dir(&self) -> PathBuf {
        self.state_dir.join("raft")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_api_socket_beside_the_control_socket() {
        let d = |p: &str| default_engine_api_socket(std::path::Path::new(p));
        assert_eq!(
            d("/run/swarmd/swarmd.sock"),
            PathBuf::from("/run/swarmd/docker.sock")
        );
        assert_eq!(d("/tmp/c/h1.sock"), PathBuf::from("/tmp/c/h1.engine.sock"));
    }
}
