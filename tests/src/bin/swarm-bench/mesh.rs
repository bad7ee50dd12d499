//! `swarm-bench mesh`: HTTP requests/s through the routing mesh vs straight
//! to the task, with the same load generator (Debian's `wrk`) and server
//! (the demo image's busybox httpd) in one run. Two namespace hosts; one
//! task on h1, published on 8080. Measured from h2: h1:8080 (a node with
//! the task) and h2:8080 (a node without it: its sandbox sends the
//! requests over VXLAN); straight to the task from h1's ingress sandbox,
//! which is on the task's network (no underlay, no VXLAN, no NAT: the
//! strictest baseline). Five alternating rounds; medians (this machine's
//! absolute figures swing by a third between runs).

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use swarmlet_tests::e2e::{run as run_cmd, NsCluster};

const ROUNDS: usize = 5;
const CONNECTIONS: &str = "16";

/// `wrk` inside namespace `ns` against `url` for `seconds`: requests/s.
fn wrk(ns: &str, url: &str, seconds: u64) -> anyhow::Result<f64> {
    let secs = format!("{seconds}s");
    let out = run_cmd(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "wrk",
            "-t",
            "2",
            "-c",
            CONNECTIONS,
            "-d",
            &secs,
            url,
        ],
    )?;
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk output: {out}"))?;
    if out.contains("Non-2xx") {
        bail!("wrk saw errors: {out}");
    }
    Ok(rps)
}

/// Runs the scenario.
pub fn run(bin: &std::path::Path, seconds: u64) -> anyhow::Result<Value> {
    let c = NsCluster::up_with(bin, "swbms", "10.218.0", 2)?;
    c.ctl(
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--publish",
            "8080:80",
            "--constraint",
            "node.hostname==h1",
            "swarmlet-demo:latest",
        ],
    )?;
    let tasks = c.json(1, &["service", "ps", "web"])?;
    let task_ip = tasks
        .as_array()
        .and_then(|t| {
            t.iter()
                .find(|t| t["current_state"] == "running")
                .and_then(|t| t["addresses"][0]["ip"].as_str())
        })
        .context("no running task")?
        .to_string();
    let h1 = c.json(1, &["node", "inspect", "h1"])?;
    let h1_id = h1["id"].as_str().context("node id")?;
    let sandbox = format!("ingress_sbox-{}", &h1_id[..8]);
    let with_task = format!("http://{}:8080/", c.host_ip(1));
    let without_task = format!("http://{}:8080/", c.host_ip(2));
    let direct = format!("http://{task_ip}:80/");
    // The mesh must answer before measuring.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.http_get(2, &with_task).is_err() || c.http_get(2, &without_task).is_err() {
        if std::time::Instant::now() > deadline {
            bail!("the published port does not answer");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let h2 = c.host_ns(2);
    let (mut mesh, mut mesh_no_task, mut straight) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("mesh: round {round}/{ROUNDS}, {seconds}s each: direct, via h1, via h2");
        straight.push(wrk(&sandbox, &direct, seconds)?);
        mesh.push(wrk(&h2, &with_task, seconds)?);
        mesh_no_task.push(wrk(&h2, &without_task, seconds)?);
    }
    let median = crate::median;
    let (mesh, mesh_no_task, direct) = (median(mesh), median(mesh_no_task), median(straight));
    drop(c);
    let ratio = |x: f64| {
        if direct > 0.0 {
            (x / direct * 1000.0).round() / 1000.0
        } else {
            0.0
        }
    };
    Ok(json!({
        "scenario": "mesh",
        "seconds": seconds,
        "mesh_rps": mesh.round(),
        "mesh_rps_node_without_task": mesh_no_task.round(),
        "direct_rps": direct.round(),
        "ratio": ratio(mesh),
        "ratio_node_without_task": ratio(mesh_no_task),
    }))
}
