//! `swarmd`: the Swarmlet node daemon. Parses flags and runs [`swarmd::daemon::Daemon`].

/// sled copies pages on every write; mimalloc halves the cost of that churn
/// compared with glibc's allocator (measured: 16.7 → 7.2 µs per insert).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use swarmd::config::{DaemonConfig, ExecutorKind};
use swarmd::daemon::Daemon;

/// The Swarmlet node daemon.
#[derive(Parser, Debug)]
#[command(name = "swarmd", version, about = "Swarmlet node daemon")]
struct Args {
    /// State directory.
    #[arg(long, default_value = "/var/lib/swarmd")]
    state_dir: PathBuf,
    /// Unix control socket (mode 0600).
    #[arg(long, default_value = "/run/swarmd/swarmd.sock")]
    control_socket: PathBuf,
    /// Docker Engine API socket (mode 0600; managers serve it, workers
    /// answer 503). Default: `docker.sock` beside the control socket
    /// (/run/swarmd/docker.sock).
    #[arg(long)]
    engine_api_socket: Option<PathBuf>,
    /// Serve the cluster view for browsers at HOST:PORT (off by default;
    /// beyond loopback it asks for `swarmctl cluster web-token`'s token).
    #[arg(long)]
    web_addr: Option<String>,
    /// mTLS gRPC listener (raft, dispatcher, remote control).
    #[arg(long, default_value = "0.0.0.0:4242")]
    listen_addr: String,
    /// Address other nodes dial, IP[:PORT]; default: the address of the default route.
    #[arg(long)]
    advertise_addr: Option<String>,
    /// The IPv4 address of this host that VXLAN (overlay) traffic leaves
    /// from and that other nodes send it to; default: the advertise IP.
    #[arg(long)]
    data_path_addr: Option<std::net::Ipv4Addr>,
    /// Docker daemon URI.
    #[arg(long, default_value = "unix:///var/run/docker.sock")]
    docker_host: String,
    /// Task executor.
    #[arg(long, value_enum, default_value_t = ExecutorKind::Docker)]
    executor: ExecutorKind,
    /// Node name; default: the system hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Log level (or RUST_LOG).
    #[arg(long)]
    log_level: Option<String>,
    /// Prometheus metrics address (HOST:PORT); off by default.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Manager only: restart as a one-manager cluster from this node's state.
    #[arg(long)]
    force_new_cluster: bool,
    /// Host-side addresses for the ingress and host-mode legs (IPv4 CIDR,
    /// /8 to /24; refused if it overlaps a route of this node).
    #[arg(long, default_value = swarmlet_worker::overlay::host_pool::DEFAULT)]
    host_pool: swarmlet_worker::overlay::host_pool::HostPool,
    /// Manager only: Raft entries between two checkpoints of the state
    /// (the log is compacted up to the last one, keeping a tenth of this,
    /// at most 1,000 entries, for followers that lag), as Docker's
    /// `--snapshot-interval`.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..))]
    snapshot_interval: u64,
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = swarmlet_common::huge_pages::turn_off() {
        eprintln!("warning: cannot turn transparent huge pages off: {e}");
    }
    // One line, whatever RUST_BACKTRACE says: a start-up failure is the
    // operator's to fix, not a crash to debug.
    if let Err(e) = run(args).await {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let filter = args
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(ip) = args.data_path_addr {
        // Bound by the kernel only if it is one of this host's addresses.
        std::net::UdpSocket::bind((ip, 0)).map_err(|e| {
            anyhow::anyhow!("--data-path-addr {ip}: not an address of this host ({e})")
        })?;
    }
    let mut cfg = DaemonConfig::new(
        args.state_dir,
        args.control_socket,
        args.listen_addr,
        args.hostname.unwrap_or_else(system_hostname),
    );
    cfg.advertise_addr = args.advertise_addr;
    if let Some(path) = args.engine_api_socket {
        cfg.engine_api_socket = Some(path);
        cfg.engine_api_socket_given = true;
    }
    cfg.executor = args.executor;
    cfg.docker_host = args.docker_host;
    cfg.force_new_cluster = args.force_new_cluster;
    cfg.host_pool = args.host_pool;
    cfg.data_path_addr = args.data_path_addr;
    cfg.snapshot_interval = args.snapshot_interval;
    cfg.snapshot_keep_entries = (args.snapshot_interval / 10).min(1_000);
    cfg.metrics_addr = args.metrics_addr;
    cfg.web_addr = args.web_addr;
    // No registry is reachable on some hosts (and tests must not try one).
    cfg.pull_missing = std::env::var("SWARMD_NO_PULL").map_or(true, |v| v.is_empty() || v == "0");
    let daemon = Daemon::start(cfg).await.context("swarmd failed to start")?;
    tracing::info!("swarmd ready on {}", daemon.cfg.control_socket.display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    tokio::time::timeout(std::time::Duration::from_secs(8), daemon.shutdown())
        .await
        .ok();
    Ok(())
}
