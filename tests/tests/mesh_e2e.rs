//! The routing mesh on namespace hosts with real Docker: a published port
//! answers on every host (also one without a task of the service, and on
//! localhost), spread over every task; scaling down takes the removed tasks
//! out at once; `nft flush ruleset` on a host, or deleting its ingress
//! sandbox, heals within seconds; a UDP port is published too; a
//! `mode=host` port answers on its task's node only; `node leave` cleans
//! its node. Every host runs its own Docker engine in its namespace
//! (`--engines`), as separate machines do, so the mesh crosses each engine's
//! FORWARD chain (policy DROP) through Swarmlet's `DOCKER-USER` accepts.
//! Needs root and Debian's docker.io.

use std::collections::BTreeSet;
use std::time::Duration;

use swarmlet_tests::e2e::{wait_for_or, NsCluster};

const CONVERGE: Duration = Duration::from_secs(60);
const HEAL: Duration = Duration::from_secs(10);
const IMAGE: &str = "swarmlet-demo:latest";

/// Names of the running tasks of a service.
fn running(c: &NsCluster, service: &str) -> BTreeSet<String> {
    c.running_tasks(service)
        .iter()
        .filter_map(|t| Some(t["name"].as_str()?.to_string()))
        .collect()
}

fn state(c: &NsCluster, service: &str) -> String {
    let mut out = format!(
        "service ps:\n{}\n",
        c.ctl(1, &["service", "ps", service]).unwrap_or_default()
    );
    for h in 1..=c.hosts {
        out.push_str(&format!(
            "h{h} ruleset:\n{}\nh{h} log tail:\n{}\n",
            c.on_host(h, "nft", &["list", "ruleset"])
                .unwrap_or_else(|e| e.to_string()),
            c.log(h)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    out
}

/// Requests `url` from host `from` until every name in `want` answered.
fn reaches_all(c: &NsCluster, from: usize, url: &str, want: &BTreeSet<String>) -> bool {
    let mut seen = BTreeSet::new();
    for _ in 0..(want.len() * 15) {
        if let Ok(body) = c.http_get(from, url) {
            seen.insert(body.trim().to_string());
        }
        if &seen == want {
            return true;
        }
    }
    false
}

#[test]
fn published_port_answers_on_every_host_and_follows_the_tasks() {
    let c = NsCluster::up_engines("swmh", "10.217.0", 4, &[]).expect("cluster up");
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
            "--publish",
            "8080:80",
            "--constraint",
            "node.hostname!=h4",
            IMAGE,
        ],
    )
    .expect("service create");
    let names = wait_for_or(
        "3 running tasks",
        CONVERGE,
        || Some(running(&c, "web")).filter(|r| r.len() == 3),
        || state(&c, "web"),
    );

    // Every host's published port (h4 runs no task) reaches every task.
    for h in 1..=4 {
        let url = format!("http://{}:8080/", c.host_ip(h));
        wait_for_or(
            &format!("{url} to reach all three tasks from h4"),
            CONVERGE,
            || reaches_all(&c, 4, &url, &names).then_some(()),
            || state(&c, "web"),
        );
    }
    // Localhost on a host without a task.
    wait_for_or(
        "localhost:8080 on h4",
        HEAL,
        || c.http_get(4, "http://127.0.0.1:8080/").ok(),
        || state(&c, "web"),
    );

    // A firewall reload on h3 deletes its tables (Docker's too): the mesh
    // comes back. (h3, so that h4 keeps its engine's chains for the `node
    // leave` check at the end.)
    c.on_host(3, "nft", &["flush", "ruleset"])
        .expect("nft flush");
    wait_for_or(
        "h3 to serve 8080 again after nft flush ruleset",
        HEAL,
        || {
            c.http_get(3, &format!("http://{}:8080/", c.host_ip(3)))
                .ok()
        },
        || state(&c, "web"),
    );

    // A deleted ingress sandbox comes back (with its leg and rules).
    let h4 = c.json(1, &["node", "inspect", "h4"]).expect("node inspect");
    let h4_id = h4["id"].as_str().expect("node id").to_string();
    swarmlet_tests::e2e::run(
        "ip",
        &["netns", "del", &format!("ingress_sbox-{}", &h4_id[..8])],
    )
    .expect("delete the sandbox");
    wait_for_or(
        "h4 to serve 8080 again after its sandbox was deleted",
        HEAL,
        || {
            c.http_get(4, &format!("http://{}:8080/", c.host_ip(4)))
                .ok()
        },
        || state(&c, "web"),
    );

    // Scale 3 → 1: the removed tasks never answer again.
    c.ctl(1, &["service", "scale", "-d", "web=1"])
        .expect("scale");
    let left = wait_for_or(
        "one running task",
        CONVERGE,
        || Some(running(&c, "web")).filter(|r| r.len() == 1),
        || state(&c, "web"),
    );
    let only = left.iter().next().cloned().unwrap_or_default();
    // The view reaches every node within moments; then only `only` answers.
    wait_for_or(
        "every host to send only to the remaining task",
        HEAL,
        || {
            (1..=4)
                .all(|h| {
                    c.http_get(4, &format!("http://{}:8080/", c.host_ip(h)))
                        .is_ok_and(|b| b.trim() == only)
                })
                .then_some(())
        },
        || state(&c, "web"),
    );
    for round in 0..5 {
        for h in 1..=4 {
            let body = c
                .http_get(4, &format!("http://{}:8080/", c.host_ip(h)))
                .unwrap_or_else(|e| format!("failed: {e}"));
            assert_eq!(
                body.trim(),
                only,
                "round {round}: h{h} answered from a removed task or failed"
            );
        }
    }

    // A UDP published port, on a host without the task.
    c.ctl(
        1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "echo",
            "--publish",
            "5353:53/udp",
            "--constraint",
            "node.hostname==h1",
            IMAGE,
            "udp-echo",
            "53",
        ],
    )
    .expect("service create udp");
    let echo = wait_for_or(
        "the udp service",
        CONVERGE,
        || Some(running(&c, "echo")).filter(|r| r.len() == 1),
        || state(&c, "echo"),
    );
    let task = echo.iter().next().cloned().unwrap_or_default();
    let to = format!("{}:5353", c.host_ip(3));
    let answer = wait_for_or(
        "an answer on UDP 5353 through h3",
        CONVERGE,
        || {
            c.udp_exchange(4, &to, "ping", Duration::from_millis(500))
                .ok()
        },
        || {
            let mut out = state(&c, "echo");
            for h in 1..=c.hosts {
                out.push_str(&format!(
                    "h{h} conntrack:\n{}\n",
                    c.on_host(h, "conntrack", &["-L", "-p", "udp"])
                        .unwrap_or_else(|e| e.to_string())
                ));
            }
            let sboxes = swarmlet_tests::e2e::run("ip", &["netns", "ls"]).unwrap_or_default();
            for ns in sboxes.lines().filter_map(|l| l.split_whitespace().next()) {
                if ns.starts_with("ingress_sbox-") {
                    out.push_str(&format!(
                        "{ns} conntrack:\n{}\n",
                        swarmlet_tests::e2e::run(
                            "ip",
                            &["netns", "exec", ns, "conntrack", "-L", "-p", "udp"]
                        )
                        .unwrap_or_else(|e| e.to_string())
                    ));
                }
            }
            out
        },
    );
    assert_eq!(answer, format!("{task} ping"));

    // mode=host: the task's own node only, at the target port.
    c.ctl(
        1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "hostmode",
            "--publish",
            "mode=host,published=9080,target=80",
            "--constraint",
            "node.hostname==h2",
            IMAGE,
        ],
    )
    .expect("service create host mode");
    let on_h2 = format!("http://{}:9080/", c.host_ip(2));
    let body = wait_for_or(
        "the host-mode port on h2",
        CONVERGE,
        || c.http_get(4, &on_h2).ok(),
        || state(&c, "hostmode"),
    );
    assert_eq!(body.trim(), "hostmode.1");
    assert_eq!(
        c.http_get(2, "http://127.0.0.1:9080/")
            .unwrap_or_default()
            .trim(),
        "hostmode.1",
        "localhost on the task's node"
    );
    for h in [1, 3, 4] {
        assert!(
            c.http_get(4, &format!("http://{}:9080/", c.host_ip(h)))
                .is_err(),
            "h{h} has no task of the host-mode service and must not answer"
        );
    }
    c.ctl(1, &["service", "rm", "hostmode"])
        .expect("service rm");
    wait_for_or(
        "the host-mode port to close with its task",
        CONVERGE,
        || c.http_get(4, &on_h2).is_err().then_some(()),
        || state(&c, "hostmode"),
    );

    // `node leave` on h4 cleans the node: its ingress sandbox and its
    // routing-mesh table go with it.
    let sbox = format!("ingress_sbox-{}", &h4_id[..8]);
    let table = format!("swarmlet-mesh-{}", &h4_id[..8]);
    let netns_ls = || swarmlet_tests::e2e::run("ip", &["netns", "ls"]).unwrap_or_default();
    assert!(netns_ls().contains(&sbox));
    let user = c
        .on_host(4, "iptables", &["-S", "DOCKER-USER"])
        .expect("h4's engine has its DOCKER-USER chain");
    assert!(user.contains(&format!("-i swi-{}", &h4_id[..8])), "{user}");
    c.ctl(4, &["node", "leave"]).expect("node leave");
    assert!(!netns_ls().contains(&sbox), "the sandbox stayed");
    let tables = c.on_host(4, "nft", &["list", "tables"]).unwrap_or_default();
    assert!(!tables.contains(&table), "the mesh table stayed: {tables}");
    // And on h4's own engine: Swarmlet's DOCKER-USER accepts went, Docker's
    // chain stayed; no container of the node is left.
    let user = c
        .on_host(4, "iptables", &["-S", "DOCKER-USER"])
        .expect("h4's engine keeps its DOCKER-USER chain");
    assert!(!user.contains("swi-") && !user.contains("swh-"), "{user}");
    let filter = format!("label=com.swarmlet.node.id={h4_id}");
    let left = c
        .docker_on(4, &["ps", "-aq", "--filter", &filter])
        .expect("docker ps");
    assert!(left.is_empty(), "h4's containers stayed: {left}");
}
