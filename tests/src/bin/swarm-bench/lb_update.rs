//! `swarm-bench lb-update`: the cost of one backend change in a node's load
//! balancer with many services programmed. In a scratch namespace, the
//! worker's own code (`overlay::lb` rules, applied by `kernel::nft` on a
//! thread inside the namespace, as the worker does) programs `--services`
//! services with VIPs (two backends each), then changes one service's backends at a time
//! and times each apply. The same is measured with 10 services, to show
//! whether the cost grows with the number of services.

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};
use swarmlet_worker::kernel::{netns, nft};
use swarmlet_worker::overlay::lb::{self, LbRules};

/// Changes timed per size.
const ROUNDS: usize = 200;

/// A scratch namespace, deleted when dropped.
struct ScratchNs(String);

impl ScratchNs {
    fn create() -> anyhow::Result<Self> {
        let name = format!("swbench-lb-{}", std::process::id());
        swarmlet_tests::e2e::run("ip", &["netns", "add", &name])?;
        Ok(ScratchNs(name))
    }
}

impl Drop for ScratchNs {
    fn drop(&mut self) {
        let _ = swarmlet_tests::e2e::run("ip", &["netns", "del", &self.0]);
    }
}

fn ip(n: usize) -> Ipv4Addr {
    let n = n as u32;
    Ipv4Addr::new(10, 100 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

/// `services` services with VIPs and two backends each.
fn rules(services: usize) -> LbRules {
    let mut r = LbRules {
        snat: Some(Ipv4Addr::new(10, 99, 0, 1)),
        ..Default::default()
    };
    for s in 0..services {
        r.vips.insert(ip(s * 4), vec![ip(s * 4 + 1), ip(s * 4 + 2)]);
    }
    r
}

/// Programs `services` services, then times `ROUNDS` single-backend
/// changes; (p50, p99, full programming) in milliseconds.
async fn measure(services: usize) -> anyhow::Result<(f64, f64, f64)> {
    let ns = ScratchNs::create()?;
    let path = netns::path_of(&ns.0);
    let mut current = rules(services);
    let t = Instant::now();
    nft::apply_in(&path, lb::full(&current))
        .await
        .context("programming the services")?;
    let full_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut times = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let s = (round * 7919) % services;
        let mut next = current.clone();
        if let Some(ips) = next.vips.get_mut(&ip(s * 4)) {
            // A third backend comes, or goes again.
            let extra = ip(s * 4 + 3);
            if ips.contains(&extra) {
                ips.retain(|i| *i != extra);
            } else {
                ips.push(extra);
            }
        }
        let cmds = lb::update(&current, &next);
        let t = Instant::now();
        nft::apply_in(&path, cmds)
            .await
            .context("applying a change")?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        current = next;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((
        crate::percentile(&times, 0.5),
        crate::percentile(&times, 0.99),
        full_ms,
    ))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs the scenario.
pub async fn run(services: usize) -> anyhow::Result<Value> {
    let services = services.max(1);
    eprintln!("lb-update: {services} services, {ROUNDS} changes");
    let (p50, p99, full) = measure(services).await?;
    eprintln!("lb-update: 10 services, {ROUNDS} changes (growth check)");
    let (small_p50, small_p99, _) = measure(10).await?;
    Ok(json!({
        "scenario": "lb-update",
        "services": services,
        "update_ms_p50": round3(p50),
        "update_ms_p99": round3(p99),
        "full_program_ms": round3(full),
        "update_ms_p50_at_10_services": round3(small_p50),
        "update_ms_p99_at_10_services": round3(small_p99),
    }))
}
