//! Service discovery on namespace hosts with real Docker: inside a task,
//! the embedded DNS at 127.0.0.11 resolves a service to its VIP (or its
//! task IPs in dnsrr mode), `tasks.<service>` to the task IPs (following
//! scaling), only on shared networks, and forwards other names upstream (a
//! stand-in upstream in a test host: no query leaves the machine); the VIP
//! balances HTTP by name. Every host runs its own Docker engine
//! (`--engines`), as separate machines do. Needs root and Debian's docker.io.

use std::collections::BTreeSet;
use std::time::Duration;

use swarmlet_tests::e2e::{wait_for_or, FakeUpstream, NsCluster};

const CONVERGE: Duration = Duration::from_secs(60);
const FOLLOW: Duration = Duration::from_secs(15);
const IMAGE: &str = "swarmlet-demo:latest";

/// Running tasks of a service: (name, container ID, IP on its first network).
fn running(c: &NsCluster, service: &str) -> Vec<(String, String, String)> {
    c.running_tasks(service)
        .iter()
        .filter_map(|t| {
            Some((
                t["name"].as_str()?.to_string(),
                t["container_id"].as_str()?.to_string(),
                t["addresses"][0]["ip"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn vip(c: &NsCluster, service: &str) -> String {
    let s = c
        .json(1, &["service", "inspect", service])
        .expect("inspect");
    s["endpoint"]["virtual_ips"][0]["addr"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .expect("a VIP")
        .to_string()
}

/// The addresses `nslookup NAME` prints inside a container (not the
/// server's own).
fn lookup(c: &NsCluster, container: &str, name: &str) -> BTreeSet<String> {
    let out = c
        .docker_for(container, &["exec", container, "nslookup", "-type=a", name])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_string())
        .filter(|a| !a.starts_with("127.0.0.11"))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn state(c: &NsCluster) -> String {
    format!(
        "service ls:\n{}\nh1 log tail:\n{}",
        c.ctl(1, &["service", "ls"]).unwrap_or_default(),
        c.log(1)
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

#[test]
fn services_resolve_by_name_on_shared_networks() {
    let upstream_addr = "10.216.0.13:53";
    let c = NsCluster::up_engines(
        "swdn",
        "10.216.0",
        3,
        &[("SWARMLET_DNS_UPSTREAM", upstream_addr)],
    )
    .expect("cluster up");
    let _upstream = FakeUpstream::start(&c, 3, upstream_addr, "192.0.2.10".parse().expect("ip"))
        .expect("fake upstream");
    for net in ["front", "back"] {
        c.ctl(1, &["network", "create", net])
            .expect("network create");
    }
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec!["service", "create", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        c.ctl(1, &args).expect("service create");
    };
    create("web", &["--replicas", "2", "--network", "front"]);
    create(
        "db",
        &[
            "--replicas",
            "2",
            "--network",
            "front",
            "--endpoint-mode",
            "dnsrr",
        ],
    );
    create("hidden", &["--network", "back"]);
    for (svc, n) in [("web", 2), ("db", 2), ("hidden", 1)] {
        wait_for_or(
            &format!("{svc} running"),
            CONVERGE,
            || (running(&c, svc).len() == n).then_some(()),
            || state(&c),
        );
    }
    let web = running(&c, "web");
    let db = running(&c, "db");
    let asker = &db[0].1;
    let web_vip = vip(&c, "web");

    wait_for_or(
        "web to resolve to its VIP",
        FOLLOW,
        || (lookup(&c, asker, "web") == set(&[&web_vip])).then_some(()),
        || format!("{:?}\n{}", lookup(&c, asker, "web"), state(&c)),
    );
    let web_ips: Vec<&str> = web.iter().map(|t| t.2.as_str()).collect();
    assert_eq!(lookup(&c, asker, "tasks.web"), set(&web_ips));
    let db_ips: Vec<&str> = db.iter().map(|t| t.2.as_str()).collect();
    assert_eq!(
        lookup(&c, &web[0].1, "db"),
        set(&db_ips),
        "dnsrr: the task IPs"
    );
    // Not on a shared network: not a cluster name here, so it goes upstream.
    let hidden = lookup(&c, asker, "hidden");
    assert!(!hidden.contains(&vip(&c, "hidden")), "{hidden:?}");
    // Other names go to the upstream resolver.
    assert_eq!(lookup(&c, asker, "example.org"), set(&["192.0.2.10"]));

    // The VIP balances by name.
    let names: BTreeSet<String> = web.iter().map(|t| t.0.clone()).collect();
    wait_for_or(
        "http://web/ to reach both web tasks",
        FOLLOW,
        || {
            let mut seen = BTreeSet::new();
            for _ in 0..20 {
                if let Ok(body) =
                    c.docker_for(asker, &["exec", asker, "wget", "-qO-", "http://web/"])
                {
                    seen.insert(body.trim().to_string());
                }
            }
            (seen == names).then_some(())
        },
        || state(&c),
    );

    // Answers follow scaling.
    c.ctl(1, &["service", "scale", "-d", "web=1"])
        .expect("scale");
    wait_for_or(
        "tasks.web to follow the scale-down",
        CONVERGE,
        || {
            let left: Vec<String> = running(&c, "web").into_iter().map(|t| t.2).collect();
            let refs: Vec<&str> = left.iter().map(String::as_str).collect();
            (left.len() == 1 && lookup(&c, asker, "tasks.web") == set(&refs)).then_some(())
        },
        || state(&c),
    );
}
