//! `raft`: committed writes per second through the Raft store, managers on
//! loopback with mTLS, each write a proposal on the leader carrying a
//! 256-byte value (applied, sealed at rest, on every manager). With
//! `--compare-etcd`, three etcd members take the same load (clients, value
//! size, duration) in rounds alternating with Swarmlet's, and the figures
//! are medians of the rounds. `--keys N` makes the writes overwrite N keys
//! (on both) instead of creating a new one each time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use swarmlet_manager::store::Tx;
use swarmlet_proto::objects::Config;

use crate::etcd::{put, EtcdCluster};
use crate::{leader, median, percentile, start_cluster};

/// Bytes of every written value.
const VALUE_BYTES: usize = 256;

/// What one phase measured.
struct Phase {
    writes_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `clients` loops of `write` for `seconds`, timing each.
async fn drive<F, Fut>(clients: usize, seconds: u64, write: F) -> Phase
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for c in 0..clients {
        let stop = stop.clone();
        let write = write.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = (0u64, None);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match write(c, i).await {
                    Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        failed.0 += 1;
                        failed.1.get_or_insert(e);
                    }
                }
                i += 1;
            }
            (lat, failed)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut failed = 0;
    let mut first_error = None;
    for h in handles {
        let Ok((lat, (n, error))) = h.await else {
            continue;
        };
        all.extend(lat);
        failed += n;
        first_error = first_error.or(error);
    }
    if let Some(e) = first_error {
        eprintln!("{failed} writes failed, the first: {e}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    Phase {
        writes_per_s: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    }
}

/// The key of client `c`'s write `i` in `round`: new each time, or one of
/// `keys` spread over the clients.
fn key_of(keys: u64, round: usize, c: usize, i: u64) -> String {
    if keys == 0 {
        format!("bench-{round}-{c}-{i}")
    } else {
        format!(
            "bench-{}",
            (i.wrapping_mul(1_000_003) + c as u64 * 7_919) % keys
        )
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The scenario.
pub async fn run(
    managers: usize,
    clients: usize,
    seconds: u64,
    compare_etcd: bool,
    rounds: usize,
    keys: u64,
) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let mut nodes = start_cluster(dir.path(), managers).await?;
    let l = leader(&nodes).context("no leader")?;
    let m = nodes[l].manager().context("manager")?;
    let etcd = if compare_etcd {
        Some(EtcdCluster::start(dir.path(), 3).await?)
    } else {
        None
    };
    let rounds = if compare_etcd { rounds.max(1) } else { 1 };
    eprintln!(
        "raft: {managers} managers up{}, {clients} clients, {rounds} round(s) of {seconds}s",
        if compare_etcd { ", 3 etcd members" } else { "" }
    );
    let value = vec![b'v'; VALUE_BYTES];
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..rounds {
        let swarmlet = {
            let (m, value) = (m.clone(), value.clone());
            drive(clients, seconds, move |c, i| {
                let (m, value) = (m.clone(), value.clone());
                async move {
                    let row = Config {
                        id: key_of(keys, round, c, i),
                        sealed_data: value,
                        ..Default::default()
                    };
                    m.raft
                        .propose(Tx::new().put(&row, None))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            })
            .await
        };
        eprintln!(
            "round {round}: swarmlet {:.0} writes/s, p50 {:.3} ms",
            swarmlet.writes_per_s, swarmlet.p50_ms
        );
        ours.push(swarmlet);
        if let Some(etcd) = &etcd {
            let channel = etcd.leader().await?;
            let value = value.clone();
            let phase = drive(clients, seconds, move |c, i| {
                let (channel, value) = (channel.clone(), value.clone());
                async move {
                    let key = key_of(keys, round, c, i).into_bytes();
                    put(&channel, key, value).await.map_err(|e| e.to_string())
                }
            })
            .await;
            eprintln!(
                "round {round}: etcd {:.0} writes/s, p50 {:.3} ms",
                phase.writes_per_s, phase.p50_ms
            );
            theirs.push(phase);
        }
    }
    let med = |v: &[Phase], f: fn(&Phase) -> f64| median(v.iter().map(f).collect());
    let writes = med(&ours, |p| p.writes_per_s);
    let p50 = med(&ours, |p| p.p50_ms);
    let mut result = serde_json::json!({
        "scenario": "raft",
        "managers": managers,
        "clients": clients,
        "seconds": seconds,
        "value_bytes": VALUE_BYTES,
        "keys": keys,
        "rounds": rounds,
        "writes_per_s": writes.round(),
        "p50_ms": round3(p50),
        "p99_ms": round3(med(&ours, |p| p.p99_ms)),
    });
    if !theirs.is_empty() {
        let etcd_writes = med(&theirs, |p| p.writes_per_s);
        let etcd_p50 = med(&theirs, |p| p.p50_ms);
        result["etcd_writes_per_s"] = serde_json::json!(etcd_writes.round());
        result["etcd_p50_ms"] = serde_json::json!(round3(etcd_p50));
        result["etcd_p99_ms"] = serde_json::json!(round3(med(&theirs, |p| p.p99_ms)));
        result["throughput_ratio"] = serde_json::json!(round3(writes / etcd_writes.max(1.0)));
        result["p50_ratio"] = serde_json::json!(round3(p50 / etcd_p50.max(1e-9)));
    }
    drop(m);
    drop(etcd);
    for n in nodes.iter_mut() {
        n.stop().await;
    }
    Ok(result)
}
