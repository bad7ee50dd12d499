//! The overlay data plane on namespace hosts with real Docker: tasks of a
//! service on a user network reach each other across hosts (ICMP and TCP)
//! with MTU 1450; neighbour and FDB entries follow scaling on every node; a
//! deleted FDB entry comes back; a `swarmctl run` container joins an
//! attachable network; removing the service and the network leaves no
//! namespace behind. Every host runs its own Docker engine (`--engines`),
//! as separate machines do. Needs root and Debian's docker.io.

use std::time::Duration;

use serde_json::Value;
use swarmlet_tests::e2e::{run, wait_for, wait_for_or, NsCluster};

const CONVERGE: Duration = Duration::from_secs(60);
const HEAL: Duration = Duration::from_secs(15);
const IMAGE: &str = "swarmlet-demo:latest";

/// A running task: host, IP on the network, container ID.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    node_id: String,
    ip: String,
    container: String,
}

fn endpoints(c: &NsCluster, service: &str) -> Vec<Endpoint> {
    let Ok(Value::Array(tasks)) = c.json(1, &["service", "ps", service]) else {
        return Vec::new();
    };
    tasks
        .iter()
        .filter(|t| t["desired_state"] == "running" && t["current_state"] == "running")
        .filter_map(|t| {
            Some(Endpoint {
                host: t["node"].as_str()?.to_string(),
                node_id: t["node_id"].as_str()?.to_string(),
                ip: t["addresses"][0]["ip"].as_str()?.to_string(),
                container: t["container_id"].as_str()?.to_string(),
            })
        })
        .collect()
}

fn state(c: &NsCluster, service: &str) -> String {
    format!(
        "service ps:\n{}\nnetns:\n{}",
        c.ctl(1, &["service", "ps", service]).unwrap_or_default(),
        run("ip", &["netns", "ls"]).unwrap_or_default()
    )
}

/// The overlay namespace of `network_id` on node `node_id`.
fn overlay_ns(node_id: &str, network_id: &str) -> String {
    format!("ovl-{}-{}", &node_id[..8], &network_id[..10])
}

/// The second underlay's first three octets (`cluster.sh`'s DATA_SUBNET).
const DATA_SUBNET: &str = "10.223.0";

fn exec(c: &NsCluster, container: &str, cmd: &[&str]) -> anyhow::Result<String> {
    let mut args = vec!["exec", container];
    args.extend_from_slice(cmd);
    c.docker_for(container, &args)
}

#[test]
fn overlay_reaches_across_hosts_and_follows_tasks() {
    // Overlay traffic on a second underlay (`--data-path-addr`), control
    // traffic on the first.
    let c = NsCluster::up_engines("swov", "10.213.0", 3, &[("DATA_SUBNET", DATA_SUBNET)])
        .expect("cluster up");
    c.ctl(1, &["network", "create", "--attachable", "front"])
        .expect("network create");
    let net = c
        .json(1, &["network", "inspect", "front"])
        .expect("inspect");
    let net_id = net["id"].as_str().expect("network id").to_string();
    let vni = net["vni"].as_u64().expect("vni");
    c.ctl(
        1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "3",
            "--network",
            "front",
            IMAGE,
        ],
    )
    .expect("create web");
    let eps = wait_for_or(
        "3 tasks on 3 hosts",
        CONVERGE,
        || {
            let e = endpoints(&c, "web");
            let mut hosts: Vec<&str> = e.iter().map(|e| e.host.as_str()).collect();
            hosts.sort_unstable();
            hosts.dedup();
            (e.len() == 3 && hosts.len() == 3).then_some(e)
        },
        || state(&c, "web"),
    );

    // Every node has the network's namespace, visible to `ip netns`.
    let netns = run("ip", &["netns", "ls"]).expect("ip netns");
    for e in &eps {
        let ns = overlay_ns(&e.node_id, &net_id);
        assert!(netns.contains(&ns), "{ns} missing in:\n{netns}");
    }

    let vx = format!("vx-{vni}");

    // Each node has a load-balancer address on the network, on its bridge,
    // reachable from the other nodes' tasks.
    let lb_of = |host: &str| -> Option<String> {
        let n = c.json(1, &["node", "inspect", host]).ok()?;
        n["lb_addresses"].as_array()?.iter().find_map(|a| {
            (a["network"] == "front")
                .then(|| a["ip"].as_str().map(str::to_string))
                .flatten()
        })
    };
    let lb_a = wait_for("a load-balancer address", CONVERGE, || lb_of(&eps[0].host));
    wait_for_or(
        "the load-balancer address on br0",
        HEAL,
        || {
            let ns = overlay_ns(&eps[0].node_id, &net_id);
            let addrs = run("ip", &["-n", &ns, "addr", "show", "br0"]).ok()?;
            addrs.contains(&format!("{lb_a}/")).then_some(())
        },
        || state(&c, "web"),
    );
    wait_for(
        "a task reaches another node's load-balancer address",
        HEAL,
        || {
            exec(
                &c,
                &eps[1].container,
                &["ping", "-c", "1", "-W", "1", &lb_a],
            )
            .ok()
        },
    );

    // ICMP and TCP between containers on different hosts, MTU 1450.
    let (a, b) = (&eps[0], &eps[1]);
    wait_for_or(
        "ping across hosts",
        HEAL,
        || exec(&c, &a.container, &["ping", "-c", "1", "-W", "1", &b.ip]).ok(),
        || state(&c, "web"),
    );
    let body = wait_for("HTTP across hosts", HEAL, || {
        let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 80", b.ip);
        exec(&c, &a.container, &["sh", "-c", &get]).ok()
    });
    assert!(body.contains("200 OK") && body.contains("web."), "{body}");
    let mtu = exec(&c, &a.container, &["cat", "/sys/class/net/eth0/mtu"]).expect("mtu");
    assert_eq!(mtu, "1450");
    // A task's process starts with its interfaces in place (its network
    // sandbox is plugged in before it starts): tasks that look for their
    // address at once, and exit, complete rather than fail.
    c.ctl(
        1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "early",
            "--replicas",
            "3",
            "--restart-condition",
            "none",
            "--network",
            "front",
            IMAGE,
            "sh",
            "-c",
            "ip -o -4 addr show eth0 | grep -q 'inet '",
        ],
    )
    .expect("create early");
    let early: Vec<String> = wait_for_or(
        "3 tasks that found their address at once",
        CONVERGE,
        || {
            let Ok(Value::Array(tasks)) = c.json(1, &["service", "ps", "early"]) else {
                return None;
            };
            let failed = tasks.iter().any(|t| t["current_state"] == "failed");
            assert!(!failed, "a task started without its address:\n{tasks:#?}");
            let done: Vec<String> = tasks
                .iter()
                .filter(|t| t["current_state"] == "complete")
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect();
            (done.len() == 3).then_some(done)
        },
        || state(&c, "early"),
    );
    c.ctl(1, &["service", "rm", "early"]).expect("rm early");
    // Their containers go, network sandboxes included.
    wait_for("the early tasks' containers removed", HEAL, || {
        let left = early.iter().any(|id| {
            let filter = format!("label=com.swarmlet.task.id={id}");
            c.docker_all(&["ps", "-aq", "--filter", &filter])
                .is_ok_and(|out| !out.trim().is_empty())
        });
        (!left).then_some(())
    });

    let ps = c.json(1, &["service", "ps", "web"]).expect("ps");
    assert!(
        ps.as_array().is_some_and(
            |ts| ts.iter().any(|t| t["pid"].as_u64().is_some_and(|p| p > 0)
                && t["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
        ),
        "pid and sandbox in ps: {ps:#}"
    );

    // A standalone container (`swarmctl run`) on h3 joins the attachable
    // network: it reaches a task by IP and a task reaches it; a network
    // that is not attachable is refused; removing the container ends it.
    c.ctl(1, &["network", "create", "closed"]).expect("closed");
    c.ctl(1, &["network", "create", "--attachable", "spare"])
        .expect("spare");
    let err = c
        .ctl(3, &["run", "-d", "--network", "closed", IMAGE])
        .expect_err("not attachable");
    assert!(err.to_string().contains("not attachable"), "{err:#}");
    let probe = c
        .ctl(
            3,
            &[
                "run",
                "-d",
                "--name",
                "probe",
                "--network",
                "front",
                "--network",
                "spare",
                IMAGE,
            ],
        )
        .expect("run probe");
    let probe = probe.trim().to_string();
    assert_eq!(probe.len(), 64, "a container ID: {probe}");
    let probe_ip = wait_for("the probe's address", CONVERGE, || {
        let tasks = c.json(1, &["task", "ls"]).ok()?;
        tasks.as_array()?.iter().find_map(|t| {
            (t["name"] == "probe" && t["current_state"] == "running")
                .then(|| t["addresses"][0]["ip"].as_str().map(str::to_string))
                .flatten()
        })
    });
    wait_for("probe → task", HEAL, || {
        exec(&c, &probe, &["ping", "-c", "1", "-W", "1", &b.ip]).ok()
    });
    wait_for("task → probe", HEAL, || {
        exec(&c, &a.container, &["ping", "-c", "1", "-W", "1", &probe_ip]).ok()
    });
    // Its second network is its eth1; a network a container uses stays.
    let eth1 = exec(&c, &probe, &["cat", "/sys/class/net/eth1/mtu"]).expect("eth1");
    assert_eq!(eth1, "1450");
    let err = c
        .ctl(1, &["network", "rm", "spare"])
        .expect_err("spare in use");
    assert!(err.to_string().contains("container probe"), "{err:#}");
    c.docker_for(&probe, &["rm", "-f", &probe])
        .expect("rm probe");
    wait_for("spare removed once free", CONVERGE, || {
        c.ctl(1, &["network", "rm", "spare"]).ok()
    });
    wait_for("the probe's task gone", CONVERGE, || {
        let tasks = c.json(1, &["task", "ls"]).ok()?;
        (!tasks.as_array()?.iter().any(|t| t["name"] == "probe")).then_some(())
    });
    wait_for_or(
        "the probe's neighbour entry gone",
        HEAL,
        || {
            let ns = overlay_ns(&a.node_id, &net_id);
            let neigh = run("ip", &["-n", &ns, "neigh", "show", "dev", &vx]).ok()?;
            (!neigh.contains(&probe_ip)).then_some(())
        },
        || state(&c, "web"),
    );

    // A deleted FDB entry comes back.
    let ns_a = overlay_ns(&a.node_id, &net_id);
    let octets: Vec<u8> = b.ip.split('.').filter_map(|o| o.parse().ok()).collect();
    let mac_b = format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
        octets[0], octets[1], octets[2], octets[3]
    );
    let fdb = run("bridge", &["-n", &ns_a, "fdb", "show", "dev", &vx]).expect("fdb");
    assert!(fdb.contains(&mac_b), "{mac_b} not in fdb of {ns_a}:\n{fdb}");
    // Peers are reached at their data-path addresses, from ours.
    let peers: Vec<&str> = fdb
        .lines()
        .filter_map(|l| l.split(" dst ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(
        !peers.is_empty() && peers.iter().all(|ip| ip.starts_with(DATA_SUBNET)),
        "VXLAN peers not on the data path: {fdb}"
    );
    let link = run("ip", &["-n", &ns_a, "-d", "link", "show", "dev", &vx]).expect("link");
    assert!(link.contains(&format!("local {DATA_SUBNET}.")), "{link}");
    run(
        "bridge",
        &["-n", &ns_a, "fdb", "del", &mac_b, "dev", &vx, "self"],
    )
    .expect("fdb del");
    wait_for("the FDB entry restored", HEAL, || {
        let fdb = run("bridge", &["-n", &ns_a, "fdb", "show", "dev", &vx]).ok()?;
        fdb.contains(&mac_b).then_some(())
    });

    // swarmd restarted on a's host: it adopts its task and keeps the
    // overlay (namespace and connectivity) as it was.
    c.ctl(1, &["cluster", "update", "--heartbeat-period", "5s"])
        .expect("heartbeat period");
    let host_a: usize = a.host.trim_start_matches('h').parse().expect("host number");
    c.script(&["stop", &host_a.to_string()]).expect("stop");
    c.script(&["start", &host_a.to_string()]).expect("start");
    wait_for_or(
        "overlay kept across a swarmd restart",
        CONVERGE,
        || {
            let netns = run("ip", &["netns", "ls"]).ok()?;
            netns.contains(&ns_a).then_some(())?;
            exec(&c, &b.container, &["ping", "-c", "1", "-W", "1", &a.ip]).ok()
        },
        || format!("{}\nlog:\n{}", state(&c, "web"), c.log(host_a)),
    );
    c.ctl(1, &["cluster", "update", "--heartbeat-period", "1s"])
        .expect("heartbeat period");

    // Scale 3 → 1: the removed tasks' entries go from every node.
    c.ctl(1, &["service", "scale", "-d", "web=1"])
        .expect("scale");
    let left = wait_for("1 task left", CONVERGE, || {
        let e = endpoints(&c, "web");
        (e.len() == 1).then_some(e)
    });
    let removed: Vec<&Endpoint> = eps.iter().filter(|e| e.ip != left[0].ip).collect();
    wait_for_or(
        "neighbour entries of removed tasks gone",
        HEAL,
        || {
            let ns = overlay_ns(&left[0].node_id, &net_id);
            let neigh = run("ip", &["-n", &ns, "neigh", "show", "dev", &vx]).ok()?;
            let fdb = run("bridge", &["-n", &ns, "fdb", "show", "dev", &vx]).ok()?;
            removed
                .iter()
                .all(|r| !neigh.contains(&r.ip) && !fdb.contains(&r.ip))
                .then_some(())
        },
        || state(&c, "web"),
    );
    // Nodes left without a task of the network drop its namespace.
    wait_for_or(
        "namespaces of emptied nodes removed",
        HEAL,
        || {
            let netns = run("ip", &["netns", "ls"]).ok()?;
            removed
                .iter()
                .filter(|r| r.node_id != left[0].node_id)
                .all(|r| !netns.contains(&overlay_ns(&r.node_id, &net_id)))
                .then_some(())
        },
        || state(&c, "web"),
    );

    // The network in use cannot go; once unused it goes with everything.
    let err = c.ctl(1, &["network", "rm", "front"]).expect_err("in use");
    assert!(err.to_string().contains("in use"), "{err:#}");
    c.ctl(1, &["service", "rm", "web"]).expect("rm web");
    c.ctl(1, &["network", "rm", "closed"]).expect("rm closed");
    wait_for("no overlay namespace left", CONVERGE, || {
        let netns = run("ip", &["netns", "ls"]).ok()?;
        (!netns.contains(&net_id[..10])).then_some(())
    });
    wait_for("network removed", CONVERGE, || {
        c.ctl(1, &["network", "rm", "front"]).ok()
    });
    drop(c);
}

/// `--data-path-addr` must be one of the host's addresses: `swarmd` says so
/// and exits, instead of sending overlay traffic from nowhere.
#[test]
fn a_data_path_address_not_on_this_host_is_refused() {
    let bin = swarmlet_tests::e2e::build_binaries().expect("binaries");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(bin.join("swarmd"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--control-socket")
        .arg(dir.path().join("ctl.sock"))
        .args([
            "--listen-addr",
            "127.0.0.1:0",
            "--data-path-addr",
            "192.0.2.77",
        ])
        .output()
        .expect("swarmd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data-path-addr 192.0.2.77: not an address of this host"),
        "{err}"
    );
    assert!(!dir.path().join("ctl.sock").exists());
}
