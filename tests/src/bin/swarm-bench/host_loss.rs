//! `failover --host-loss`: the leader's host disappears, as a pulled cable
//! or a dead machine: its packets are dropped, nobody receives a reset or a
//! FIN, connections to it just go silent. Measured: how long until a write
//! through a surviving manager (a follower forwards it to the new leader)
//! is acknowledged.
//!
//! The managers run on loopback inside a network namespace of the bench's
//! own (the whole process enters it before its runtime starts, see
//! [`enter_private_netns`]), where a `swarmlet-hostloss` nftables table
//! drops every packet to or from the lost manager's port. Nothing outside
//! that namespace is touched, and it goes with the process.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use swarmlet_proto::control::UpdateNodeRequest;
use swarmlet_tests::{wait_until, InProcessNode};

use crate::{caught_up, leader, median, start_cluster};

/// Moves this process into a new network namespace with `lo` up. Must run
/// before any thread is started (threads inherit the namespace).
pub fn enter_private_netns() -> anyhow::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET) (run as root)")?;
    run("ip", &["link", "set", "lo", "up"])
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn nft(script: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("nft")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    if !child.wait()?.success() {
        bail!("nft -f failed on: {script}");
    }
    Ok(())
}

/// Drops every packet to or from `port` on this namespace's loopback.
fn cut(port: u16) -> anyhow::Result<()> {
    nft(&format!(
        "table inet swarmlet-hostloss {{\n\
         chain input {{ type filter hook input priority 0; tcp dport {port} drop; tcp sport {port} drop; }}\n\
         chain output {{ type filter hook output priority 0; tcp dport {port} drop; tcp sport {port} drop; }}\n\
         }}\n"
    ))
}

fn heal() -> anyhow::Result<()> {
    nft("delete table inet swarmlet-hostloss\n")
}

fn port_of(addr: &str) -> anyhow::Result<u16> {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("no port in {addr}"))
}

/// Runs `rounds` host losses of the leader of `managers` managers.
pub async fn run_bench(managers: usize, rounds: usize) -> anyhow::Result<serde_json::Value> {
    if managers < 3 {
        bail!("failover needs at least 3 managers");
    }
    let dir = tempfile::tempdir()?;
    let mut nodes = start_cluster(dir.path(), managers).await?;
    let mut elections = Vec::new();
    let mut resumed = Vec::new();
    for round in 0..rounds {
        let old = wait_until("a leader", Duration::from_secs(30), || async {
            leader(&nodes)
        })
        .await;
        let survivors: Vec<usize> = (0..nodes.len()).filter(|i| *i != old).collect();
        let ms: Vec<_> = survivors
            .iter()
            .filter_map(|i| nodes[*i].manager())
            .collect();
        // Writes go through the first survivor, whatever its role.
        let via: &InProcessNode = &nodes[survivors[0]];
        let hostname = nodes[old].name.clone();
        cut(port_of(&nodes[old].addr)?)?;
        let lost_at = Instant::now();
        // The election, watched on its own while the write waits.
        let watcher = tokio::spawn(async move {
            loop {
                if ms.iter().any(|m| m.is_leader()) {
                    return Some(lost_at.elapsed());
                }
                if lost_at.elapsed() > Duration::from_secs(30) {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        // One call, as a user's `swarmctl node update` on that manager: it
        // must not hang on the lost leader's silent connection.
        let req = UpdateNodeRequest {
            node: hostname.clone(),
            label_add: [(format!("hostloss-{round}"), "1".to_string())].into(),
            ..Default::default()
        };
        let mut client = via.control();
        let written =
            match tokio::time::timeout(Duration::from_secs(30), client.update_node(req)).await {
                Ok(Ok(_)) => lost_at.elapsed(),
                Ok(Err(e)) => bail!(
                    "the write through a surviving manager failed: {}",
                    e.message()
                ),
                Err(_) => bail!("no write acknowledged within 30 s of losing the leader's host"),
            };
        let election = watcher.await.ok().flatten();
        let election = election.unwrap_or(written);
        eprintln!(
            "host loss round {round}: election {:.3}s, write resumed {:.3}s",
            election.as_secs_f64(),
            written.as_secs_f64()
        );
        elections.push(election.as_secs_f64());
        resumed.push(written.as_secs_f64());
        // The host comes back (a restarted machine): its daemon too.
        nodes[old].stop().await;
        heal()?;
        nodes[old].start().await?;
        caught_up(&nodes[old]).await?;
    }
    for n in nodes.iter_mut() {
        n.stop().await;
    }
    Ok(serde_json::json!({
        "scenario": "failover",
        "host_loss": true,
        "managers": managers,
        "rounds": rounds,
        "election_s": (median(elections) * 1000.0).round() / 1000.0,
        "write_resumed_s": (median(resumed) * 1000.0).round() / 1000.0,
    }))
}
