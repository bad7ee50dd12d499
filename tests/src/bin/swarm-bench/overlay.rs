//! `swarm-bench overlay`: bulk TCP between two task containers on an
//! overlay network, across hosts (VXLAN between two namespace hosts) and on
//! one host (both on the same bridge), in one run. The sender streams zeros
//! through busybox `nc` (sized to last about `--seconds`); the receiver
//! counts the bytes, and the time runs until it has them all.
//! CPU cost is the machine's busy share over each transfer (/proc/stat).
//! Three alternating rounds; the figures are medians.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use swarmlet_tests::e2e::{docker, NsCluster};

const PORT: &str = "5001";

/// A running task of the bench service: host, IP, container.
struct Peer {
    host: String,
    ip: String,
    container: String,
}

fn peers(c: &NsCluster) -> anyhow::Result<Vec<Peer>> {
    let tasks = c.json(1, &["service", "ps", "bench"])?;
    Ok(tasks
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|t| t["current_state"] == "running" && t["desired_state"] == "running")
        .filter_map(|t| {
            Some(Peer {
                host: t["node"].as_str()?.to_string(),
                ip: t["addresses"][0]["ip"].as_str()?.to_string(),
                container: t["container_id"].as_str()?.to_string(),
            })
        })
        .collect())
}

/// (busy, total) jiffies of the whole machine.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Sends `bytes` (in 64 KiB blocks) from `from` to `to`; (seconds until the
/// receiver had them all, machine CPU busy %).
fn send(from: &Peer, to: &Peer, blocks: u64) -> anyhow::Result<(f64, f64)> {
    let _ = docker(&["exec", &to.container, "rm", "-f", "/tmp/rx"]);
    // busybox's nc ends at EOF on either side: the receiver's stdin must
    // stay open (a sleeping writer) until the sender closes. `wc` writes
    // its count once, at the end (the pipeline itself lives on with sleep).
    docker(&[
        "exec",
        "-d",
        &to.container,
        "sh",
        "-c",
        &format!("sleep 600 | nc -l -p {PORT} | wc -c > /tmp/rx"),
    ])?;
    std::thread::sleep(Duration::from_millis(300));
    let (busy0, total0) = cpu_jiffies();
    let started = Instant::now();
    let stream = format!(
        "dd if=/dev/zero bs=65536 count={blocks} 2>/dev/null | nc {} {PORT}",
        to.ip
    );
    docker(&["exec", &from.container, "sh", "-c", &stream])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let received: u64 = loop {
        if let Ok(n) = docker(&["exec", &to.container, "cat", "/tmp/rx"]) {
            if !n.trim().is_empty() {
                break n.trim().parse().context("receiver's byte count")?;
            }
        }
        if Instant::now() > deadline {
            bail!("the receiver on {} never finished", to.host);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed().as_secs_f64();
    let (busy1, total1) = cpu_jiffies();
    if received != blocks * 65536 {
        bail!(
            "{} of {} bytes went from {} to {}",
            received,
            blocks * 65536,
            from.host,
            to.host
        );
    }
    let cpu = (busy1 - busy0) as f64 * 100.0 / (total1 - total0).max(1) as f64;
    Ok((elapsed, cpu))
}

/// Streams for about `seconds` from `from` to `to` (sized by a short first
/// transfer); (Mbit/s, machine CPU busy %).
fn transfer(from: &Peer, to: &Peer, seconds: u64) -> anyhow::Result<(f64, f64)> {
    let probe = 512; // 32 MiB
    let (t, _) = send(from, to, probe)?;
    let blocks = ((probe as f64 / t) * seconds as f64).max(probe as f64) as u64;
    let (t, cpu) = send(from, to, blocks)?;
    Ok((blocks as f64 * 65536.0 * 8.0 / 1e6 / t, cpu))
}

const ROUNDS: usize = 3;

/// Medians of (Mbit/s, CPU %) pairs, each taken on its own.
fn medians(v: &[(f64, f64)]) -> (f64, f64) {
    (
        crate::median(v.iter().map(|p| p.0).collect()),
        crate::median(v.iter().map(|p| p.1).collect()),
    )
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Runs the scenario on two namespace hosts with the release binaries.
pub fn run(bin: &std::path::Path, seconds: u64) -> anyhow::Result<Value> {
    let cluster = NsCluster::up_with(bin, "swbov", "10.215.0", 2)?;
    cluster.ctl(1, &["network", "create", "bench"])?;
    // Three tasks on two hosts: two share a host.
    cluster.ctl(
        1,
        &[
            "service",
            "create",
            "--name",
            "bench",
            "--replicas",
            "3",
            "--network",
            "bench",
            "swarmlet-demo:latest",
        ],
    )?;
    let all = peers(&cluster)?;
    let on = |h: &str| all.iter().filter(|p| p.host == h).collect::<Vec<_>>();
    let (h1, h2) = (on("h1"), on("h2"));
    let (pair_host, other) = if h1.len() >= 2 { (h1, h2) } else { (h2, h1) };
    let (Some(a), Some(b), Some(c)) = (pair_host.first(), pair_host.get(1), other.first()) else {
        bail!("expected 2 tasks on one host and 1 on the other");
    };
    // Alternate the two kinds, three rounds each; medians (this machine's
    // figures swing with whatever else runs on its two cores).
    let (mut cross, mut same) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!(
            "overlay: round {round}/{ROUNDS}: {} → {} (cross-host), then on {} (same host), {seconds}s each",
            c.host, a.host, a.host
        );
        cross.push(transfer(c, a, seconds)?);
        same.push(transfer(b, a, seconds)?);
    }
    let (cross, cross_cpu) = medians(&cross);
    let (same, same_cpu) = medians(&same);
    drop(cluster);
    Ok(json!({
        "scenario": "overlay",
        "seconds": seconds,
        "rounds": ROUNDS,
        "cross_host_mbps": round1(cross),
        "same_host_mbps": round1(same),
        "ratio": (cross / same * 1000.0).round() / 1000.0,
        "cross_host_cpu_pct": round1(cross_cpu),
        "same_host_cpu_pct": round1(same_cpu),
    }))
}
