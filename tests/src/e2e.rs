//! End-to-end clusters for the data-plane tests: hosts are network
//! namespaces made by `deploy/cluster.sh`, running the real `swarmd` and
//! `swarmctl` binaries, against this machine's Docker daemon or (made with
//! [`NsCluster::up_engines`]) against a Docker engine of each host's own.
//! Dropping an [`NsCluster`] runs `cluster.sh down`, so a failing test leaves
//! nothing behind (namespaces, interfaces, containers, engines, state).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Builds the debug `swarmd` and `swarmctl` the clusters run.
pub fn build_binaries() -> anyhow::Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args(["build", "-q", "-p", "swarmd", "-p", "swarmctl"])
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("building swarmd and swarmctl failed");
    }
    Ok(repo().join("target").join("debug"))
}

/// A cluster of namespace hosts.
pub struct NsCluster {
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
    /// Number of hosts (h1 … hN).
    pub hosts: usize,
    /// Whether every host runs its own Docker engine.
    pub engines: bool,
    /// Which host's engine holds a container (by the name or ID asked for).
    engine_of: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl NsCluster {
    /// Brings up `hosts` hosts; `prefix` names its namespaces and interfaces
    /// (≤ 5 characters), `subnet` is its underlay's first three octets.
    pub fn up(prefix: &str, subnet: &str, hosts: usize) -> anyhow::Result<Self> {
        Self::up_with(&build_binaries()?, prefix, subnet, hosts)
    }

    /// As [`NsCluster::up`], with extra environment for every `swarmd`
    /// (e.g. `SWARMLET_DNS_UPSTREAM`).
    pub fn up_env(
        prefix: &str,
        subnet: &str,
        hosts: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::up_inner(&build_binaries()?, prefix, subnet, hosts, env, false)
    }

    /// As [`NsCluster::up_env`], every host with its own Docker engine in
    /// its namespace (`cluster.sh up N --engines`), as on separate machines.
    pub fn up_engines(
        prefix: &str,
        subnet: &str,
        hosts: usize,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::up_inner(&build_binaries()?, prefix, subnet, hosts, env, true)
    }

    /// As [`NsCluster::up`], with the `swarmd` and `swarmctl` found in `bin`.
    pub fn up_with(
        bin: &std::path::Path,
        prefix: &str,
        subnet: &str,
        hosts: usize,
    ) -> anyhow::Result<Self> {
        Self::up_inner(bin, prefix, subnet, hosts, &[], false)
    }

    fn up_inner(
        bin: &std::path::Path,
        prefix: &str,
        subnet: &str,
        hosts: usize,
        extra: &[(&str, &str)],
        engines: bool,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut env = vec![
            ("PREFIX".to_string(), prefix.to_string()),
            ("SUBNET".to_string(), subnet.to_string()),
            (
                "CLUSTER_DIR".to_string(),
                dir.path().join("c").display().to_string(),
            ),
            ("BIN".to_string(), bin.display().to_string()),
            ("NO_BUILD".to_string(), "1".to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cluster = NsCluster {
            env,
            _dir: dir,
            hosts,
            engines,
            engine_of: Default::default(),
        };
        let count = hosts.to_string();
        let mut args = vec!["up", count.as_str()];
        if engines {
            args.push("--engines");
        }
        cluster.script(&args)?;
        Ok(cluster)
    }

    /// `docker ARGS` against host `h`'s engine (the shared one without
    /// engines of their own); the trimmed stdout.
    pub fn docker_on(&self, h: usize, args: &[&str]) -> anyhow::Result<String> {
        if !self.engines {
            return docker(args);
        }
        let sock = format!("unix://{}/h{h}.docker.sock", self.env[2].1);
        let mut all = vec!["-H", sock.as_str()];
        all.extend_from_slice(args);
        run("docker", &all)
    }

    /// `docker ARGS` about one container (`exec`, `inspect`, `rm` …),
    /// against the engine that holds it.
    pub fn docker_for(&self, container: &str, args: &[&str]) -> anyhow::Result<String> {
        let h = self.engine_holding(container)?;
        self.docker_on(h, args)
    }

    /// `docker ARGS` against every host's engine (once with a shared one):
    /// the outputs' lines together.
    pub fn docker_all(&self, args: &[&str]) -> anyhow::Result<String> {
        let hosts = if self.engines { self.hosts } else { 1 };
        let mut out = Vec::new();
        for h in 1..=hosts {
            let o = self.docker_on(h, args)?;
            out.extend(o.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        Ok(out.join("\n"))
    }

    /// The host whose engine has `container` (1 with a shared engine).
    fn engine_holding(&self, container: &str) -> anyhow::Result<usize> {
        if !self.engines {
            return Ok(1);
        }
        let mut known = self
            .engine_of
            .lock()
            .map_err(|_| anyhow::anyhow!("engine map poisoned"))?;
        if let Some(h) = known.get(container) {
            return Ok(*h);
        }
        for h in 1..=self.hosts {
            if self
                .docker_on(h, &["inspect", "-f", "{{.Id}}", container])
                .is_ok()
            {
                known.insert(container.to_string(), h);
                return Ok(h);
            }
        }
        bail!("no host's engine has container {container}")
    }

    /// The Engine API socket of host `h`'s swarmd (the default beside its
    /// control socket).
    pub fn engine_api_socket(&self, h: usize) -> String {
        format!("{}/h{h}.engine.sock", self.env[2].1)
    }

    /// The cluster's directory: every host's state dir, sockets and logs.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Runs `deploy/cluster.sh ARGS`; its stdout, or an error with stderr.
    pub fn script(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("bash")
            .arg(repo().join("deploy").join("cluster.sh"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .context("cluster.sh")?;
        if !out.status.success() {
            bail!(
                "cluster.sh {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `swarmctl` against host `h`.
    pub fn ctl(&self, h: usize, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["ctl".to_string(), h.to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.script(&refs)
    }

    /// `swarmctl --format json …` against host `h`, parsed.
    pub fn json(&self, h: usize, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.ctl(h, &all)?;
        serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))
    }

    /// The tasks of `service` that run and are meant to (`service ps
    /// --format json` objects).
    pub fn running_tasks(&self, service: &str) -> Vec<serde_json::Value> {
        let Ok(serde_json::Value::Array(tasks)) = self.json(1, &["service", "ps", service]) else {
            return Vec::new();
        };
        tasks
            .into_iter()
            .filter(|t| t["desired_state"] == "running" && t["current_state"] == "running")
            .collect()
    }

    /// The network namespace of host `h`.
    pub fn host_ns(&self, h: usize) -> String {
        format!("{}-h{h}", self.env[0].1)
    }

    /// The underlay (advertise) IP of host `h`.
    pub fn host_ip(&self, h: usize) -> String {
        format!("{}.{}", self.env[1].1, 10 + h)
    }

    /// Runs `program ARGS` inside host `h`'s namespace.
    pub fn on_host(&self, h: usize, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let ns = self.host_ns(h);
        let mut all = vec!["netns", "exec", ns.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// An HTTP GET from host `h` (curl, 2 s timeout): the body.
    pub fn http_get(&self, h: usize, url: &str) -> anyhow::Result<String> {
        self.on_host(h, "curl", &["-s", "-f", "-m", "2", url])
    }

    /// Sends one UDP datagram from inside host `h`'s namespace and waits up
    /// to `timeout` for the answer.
    pub fn udp_exchange(
        &self,
        h: usize,
        to: &str,
        payload: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let sock = self.udp_socket(h, "0.0.0.0:0")?;
        sock.set_read_timeout(Some(timeout))?;
        sock.send_to(payload.as_bytes(), to)?;
        let mut buf = [0u8; 1500];
        let (n, _) = sock.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// A UDP socket bound to `bind` inside host `h`'s namespace (opened on
    /// a thread that entered it; the socket keeps that namespace wherever
    /// it is used).
    pub fn udp_socket(&self, h: usize, bind: &str) -> anyhow::Result<std::net::UdpSocket> {
        let ns = std::path::Path::new("/run/netns").join(self.host_ns(h));
        let bind = bind.to_string();
        std::thread::spawn(move || -> anyhow::Result<std::net::UdpSocket> {
            let file = std::fs::File::open(&ns).context("opening the host namespace")?;
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("entering the host namespace")?;
            Ok(std::net::UdpSocket::bind(&bind)?)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
    }

    /// The log of host `h`'s swarmd.
    pub fn log(&self, h: usize) -> String {
        let dir = &self.env[2].1;
        std::fs::read_to_string(format!("{dir}/h{h}.log")).unwrap_or_default()
    }
}

impl Drop for NsCluster {
    fn drop(&mut self) {
        if let Err(e) = self.script(&["down"]) {
            eprintln!("cluster teardown failed: {e:#}");
        }
    }
}

/// A stand-in upstream DNS server inside a test host's namespace: answers
/// every A query with one address (AAAA and others: no records), so that
/// forwarding can be tested without sending a query off the machine. Stops
/// when dropped.
pub struct FakeUpstream {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    /// Serves on `listen` (an address of host `h`) inside host `h`'s
    /// namespace, answering `answer`.
    pub fn start(
        c: &NsCluster,
        h: usize,
        listen: &str,
        answer: std::net::Ipv4Addr,
    ) -> anyhow::Result<Self> {
        let sock = c.udp_socket(h, listen)?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = fake_answer(&buf[..n], answer) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        Ok(FakeUpstream {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to a one-question DNS query: the question, and for type A
/// one record with `ip`.
fn fake_answer(query: &[u8], ip: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The end of the question: the name's labels, then type and class.
    let mut i = 12;
    while *query.get(i)? != 0 {
        i += 1 + usize::from(query[i]);
    }
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let end = i + 5;
    let mut out = query.get(..end)?.to_vec();
    let is_a = qtype == 1;
    out[2] = 0x81; // response, recursion desired
    out[3] = 0x80; // recursion available, no error
    out[6..12].copy_from_slice(&[0, u8::from(is_a), 0, 0, 0, 0]);
    if is_a {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

/// Polls `check` until it gives a value; panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    wait_for_or(what, timeout, check, String::new)
}

/// As [`wait_for`], and on timeout the panic message carries `explain()`
/// (the cluster's state, say) for whoever reads a failed CI log.
pub fn wait_for_or<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                explain()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `docker ARGS`; its trimmed stdout.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    run("docker", args)
}

/// Runs `program ARGS` (`ip`, `bridge`, …); its trimmed stdout, or an error
/// with its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| program.to_string())?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
