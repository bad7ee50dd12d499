//! Crash safety of a manager's storage: real `swarmd` processes (three
//! managers on loopback, `sim` executor) are killed with SIGKILL at random
//! moments while writes flow; every restart must succeed and no
//! acknowledged write may be lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use swarmlet_common::grpc::{unix_channel, WithLimits};
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{JoinTokenRequest, NodeRef, UpdateNodeRequest};
use swarmlet_proto::local::local_client::LocalClient;
use swarmlet_proto::local::{InitRequest, JoinRequest};
use swarmlet_tests::{free_port, wait_until};

const ROUNDS: usize = 20;
const RESTART: Duration = Duration::from_secs(60);

/// One `swarmd` process and where it keeps its state.
struct Proc {
    name: String,
    bin: PathBuf,
    state: PathBuf,
    socket: PathBuf,
    addr: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(bin: &Path, root: &Path, name: &str) -> Self {
        Proc {
            name: name.into(),
            bin: bin.to_path_buf(),
            state: root.join(name),
            socket: root.join(format!("{name}.sock")),
            addr: format!("127.0.0.1:{}", free_port()),
            log: root.join(format!("{name}.log")),
            child: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(self.bin.join("swarmd"))
            .args(["--state-dir", &self.state.display().to_string()])
            .args(["--control-socket", &self.socket.display().to_string()])
            .args(["--listen-addr", &self.addr, "--advertise-addr", &self.addr])
            .args(["--hostname", &self.name, "--executor", "sim"])
            // Checkpoints and compactions every few dozen writes, so that
            // kills land in them too and restarts go through snapshots.
            .args(["--snapshot-interval", "40"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn swarmd");
        self.child = Some(child);
    }

    /// SIGKILL, as a crash: nothing is flushed or closed.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn control(&self) -> ControlClient<tonic::transport::Channel> {
        ControlClient::new(unix_channel(&self.socket)).with_limits()
    }

    fn local(&self) -> LocalClient<tonic::transport::Channel> {
        LocalClient::new(unix_channel(&self.socket)).with_limits()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small deterministic generator (the seed is printed to replay a run).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Whether the manager behind `p` answers a write-path read (it reached
/// the leader through Raft).
async fn serving(p: &Proc) -> bool {
    tokio::time::timeout(Duration::from_secs(2), p.control().get_cluster(Empty {}))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managers_killed_at_random_points_restart_and_lose_no_acknowledged_write() {
    let bin = swarmlet_tests::e2e::build_binaries().expect("build swarmd");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut procs: Vec<Proc> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| Proc::new(&bin, dir.path(), n))
        .collect();
    for p in &mut procs {
        p.start();
    }
    for p in &procs {
        wait_until("control socket", Duration::from_secs(20), || async {
            p.local().info(Empty {}).await.ok().map(|_| ())
        })
        .await;
    }
    procs[0]
        .local()
        .init(InitRequest {
            advertise_addr: procs[0].addr.clone(),
            ..Default::default()
        })
        .await
        .expect("init");
    let token = procs[0]
        .control()
        .get_join_token(JoinTokenRequest {
            role: "manager".into(),
            rotate: false,
        })
        .await
        .expect("token")
        .into_inner()
        .token;
    for p in &procs[1..] {
        p.local()
            .join(JoinRequest {
                token: token.clone(),
                remote_addr: procs[0].addr.clone(),
                advertise_addr: p.addr.clone(),
            })
            .await
            .expect("join");
    }
    for p in &procs {
        wait_until("manager serving", RESTART, || async {
            serving(p).await.then_some(())
        })
        .await;
    }

    // The writer: label writes on m1's node record through whichever
    // manager answers, remembering every acknowledged one.
    let sockets: Vec<PathBuf> = procs.iter().map(|p| p.socket.clone()).collect();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let socket = &sockets[(i as usize) % sockets.len()];
                let req = UpdateNodeRequest {
                    node: "m1".into(),
                    label_add: [(format!("k{i}"), "v".to_string())].into(),
                    ..Default::default()
                };
                let mut client = ControlClient::new(unix_channel(socket)).with_limits();
                let call = client.update_node(req);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), call).await {
                    if let Ok(mut a) = acked.lock() {
                        a.insert(format!("k{i}"));
                    }
                }
                i += 1;
            }
        })
    };

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 | 1)
        .unwrap_or(1);
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    for round in 0..ROUNDS {
        let victim = rng.below(procs.len() as u64) as usize;
        let before = acked.lock().map(|a| a.len()).unwrap_or(0);
        // Let writes flow for a random while, then crash.
        let wait = Duration::from_millis(50 + rng.below(700));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && acked.lock().map(|a| a.len()).unwrap_or(0) < before + 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(wait).await;
        procs[victim].kill();
        procs[victim].start();
        let started = Instant::now();
        while !serving(&procs[victim]).await {
            let p = &mut procs[victim];
            let exited = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && started.elapsed() < RESTART,
                "round {round}: {} did not come back after SIGKILL (exit {exited:?}):\n{}",
                p.name,
                p.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let p = &procs[victim];
        eprintln!(
            "round {round}: killed {} after {wait:?}, serving again in {:?}",
            p.name,
            started.elapsed()
        );
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");

    // Every acknowledged write is there, seen through each manager.
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(acked.len() > ROUNDS * 3, "only {} writes", acked.len());
    for p in &procs {
        let labels = p
            .control()
            .inspect_node(NodeRef { node: "m1".into() })
            .await
            .expect("inspect")
            .into_inner()
            .labels;
        let lost: Vec<&String> = acked.iter().filter(|k| !labels.contains_key(*k)).collect();
        assert!(
            lost.is_empty(),
            "{}: acknowledged writes lost: {lost:?}",
            p.name
        );
    }
    let installs: usize = procs
        .iter()
        .map(|p| {
            std::fs::read_to_string(&p.log)
                .unwrap_or_default()
                .matches("installed raft snapshot")
                .count()
        })
        .sum();
    eprintln!("{installs} snapshot installs by restarted managers");
    for p in &mut procs {
        p.kill();
    }
}
