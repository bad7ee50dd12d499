//! End to end with real Docker on namespace hosts (`deploy/cluster.sh`),
//! each host with its own Docker engine (`--engines`), as separate machines:
//! spread over hosts, adoption across a swarmd restart, drain, a global
//! service, a killed host, an update rolled back when the new tasks turn
//! unhealthy, a missing image, secrets and configs. Runs as root
//! (deploy/test.sh).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use swarmlet_tests::e2e::{run, wait_for, wait_for_or, NsCluster};
use swarmlet_tests::files_containing;

const CONVERGE: Duration = Duration::from_secs(60);
const IMAGE: &str = "swarmlet-demo:latest";

/// Running tasks of a service: (task name, node hostname, container ID).
fn running(c: &NsCluster, service: &str) -> Vec<(String, String, String)> {
    let Ok(Value::Array(tasks)) = c.json(1, &["service", "ps", service]) else {
        return Vec::new();
    };
    tasks
        .iter()
        .filter(|t| t["desired_state"] == "running" && t["current_state"] == "running")
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_string(),
                t["node"].as_str().unwrap_or("").to_string(),
                t["container_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn wait_running(c: &NsCluster, service: &str, n: usize) -> Vec<(String, String, String)> {
    wait_for_or(
        &format!("{n} running tasks of {service}"),
        CONVERGE,
        || {
            let r = running(c, service);
            (r.len() == n).then_some(r)
        },
        || service_state(c, service),
    )
}

/// What a failed wait prints: the service and its tasks as the CLI shows them.
fn service_state(c: &NsCluster, service: &str) -> String {
    let show = |args: &[&str]| c.ctl(1, args).unwrap_or_else(|e| format!("{e:#}"));
    format!(
        "service inspect:\n{}\nservice ps:\n{}",
        show(&["service", "inspect", service]),
        show(&["service", "ps", service])
    )
}

fn hosts_of(tasks: &[(String, String, String)]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (_, h, _) in tasks {
        *m.entry(h.clone()).or_default() += 1;
    }
    m
}

#[test]
fn docker_cluster_end_to_end() {
    let c = NsCluster::up_engines("swe2e", "10.211.0", 3, &[]).expect("cluster up");

    // A replicated service spreads over the 3 hosts; each container answers
    // with its task name.
    c.ctl(
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "3",
            IMAGE,
        ],
    )
    .expect("create web");
    let tasks = wait_running(&c, "web", 3);
    assert_eq!(hosts_of(&tasks).len(), 3, "{tasks:?}");
    for (name, _, container) in &tasks {
        let body = wait_for("the web server answers", CONVERGE, || {
            c.docker_for(
                container,
                &["exec", container, "wget", "-q", "-O-", "http://127.0.0.1/"],
            )
            .ok()
        });
        assert_eq!(body.trim(), name);
        let labels = c
            .docker_for(
                container,
                &["inspect", "-f", "{{json .Config.Labels}}", container],
            )
            .expect("inspect");
        assert!(labels.contains("com.swarmlet.task.id"), "{labels}");
    }

    // Logs from every node, each line tagged with its task and node.
    let logs = wait_for("every task's output", CONVERGE, || {
        let out = c.ctl(1, &["service", "logs", "--tail", "10", "web"]).ok()?;
        (out.lines().filter(|l| l.contains("| serving web.")).count() == 3).then_some(out)
    });
    for (name, host, _) in &tasks {
        assert!(
            logs.lines().any(|l| l.starts_with(&format!("{name}."))
                && l.contains(&format!("@{host} | serving {name} on port 80"))),
            "{logs}"
        );
    }

    // swarmd restarted on h2: its container keeps running, same ID. A
    // longer heartbeat period keeps the restart from counting as a failure.
    c.ctl(1, &["cluster", "update", "--heartbeat-period", "5s"])
        .expect("heartbeat period");
    let on_h2: Vec<String> = tasks
        .iter()
        .filter(|t| t.1 == "h2")
        .map(|t| t.2.clone())
        .collect();
    c.script(&["stop", "2"]).expect("stop h2");
    c.script(&["start", "2"]).expect("start h2");
    wait_for("h2 ready again", CONVERGE, || {
        let nodes = c.json(1, &["node", "ls"]).ok()?;
        nodes
            .as_array()?
            .iter()
            .any(|n| n["hostname"] == "h2" && n["status"] == "ready")
            .then_some(())
    });
    let deadline = std::time::Instant::now() + CONVERGE;
    let after = loop {
        let tasks = c.json(1, &["service", "ps", "web"]).unwrap_or_default();
        let adopted = tasks.as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                t["node"] == "h2"
                    && t["current_state"] == "running"
                    && t["desired_state"] == "running"
                    && t["container_id"] == on_h2[0].as_str()
            })
        });
        let r = running(&c, "web");
        if adopted && r.len() == 3 {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "h2's task not adopted: {tasks:#}\nh2's log:\n{}",
            c.log(2)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let after_h2: Vec<String> = after
        .iter()
        .filter(|t| t.1 == "h2")
        .map(|t| t.2.clone())
        .collect();
    assert_eq!(on_h2, after_h2, "adopted, not restarted");
    assert_eq!(
        c.docker_on(2, &["inspect", "-f", "{{.State.Running}}", &on_h2[0]])
            .expect("inspect"),
        "true",
        "h2's log:\n{}",
        c.log(2)
    );

    c.ctl(1, &["cluster", "update", "--heartbeat-period", "1s"])
        .expect("heartbeat period");

    // Drain h3: its task moves to h1 or h2, and its container goes away.
    let on_h3: Vec<String> = after
        .iter()
        .filter(|t| t.1 == "h3")
        .map(|t| t.2.clone())
        .collect();
    c.ctl(1, &["node", "update", "--availability", "drain", "h3"])
        .expect("drain");
    wait_for("drained h3 empty", CONVERGE, || {
        let r = running(&c, "web");
        (r.len() == 3 && r.iter().all(|t| t.1 != "h3")).then_some(())
    });
    wait_for("h3's container removed", CONVERGE, || {
        c.docker_on(3, &["inspect", &on_h3[0]])
            .is_err()
            .then_some(())
    });

    // A global service: one task per active node (h3 drained).
    c.ctl(
        1,
        &[
            "service", "create", "-d", "--name", "agent", "--mode", "global", IMAGE,
        ],
    )
    .expect("global");
    let g = wait_running(&c, "agent", 2);
    assert_eq!(
        hosts_of(&g).keys().cloned().collect::<HashSet<_>>(),
        HashSet::from(["h1".to_string(), "h2".to_string()])
    );
    c.ctl(1, &["node", "update", "--availability", "active", "h3"])
        .expect("activate");
    wait_running(&c, "agent", 3);

    // A missing image: the task says so (no registry is tried here).
    c.ctl(
        1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "ghost",
            "nosuchimage:1",
        ],
    )
    .expect("create ghost");
    let err = wait_for("ghost's error", CONVERGE, || {
        let tasks = c.json(1, &["service", "ps", "ghost"]).ok()?;
        tasks
            .as_array()?
            .iter()
            .filter_map(|t| t["error"].as_str())
            .find(|e| !e.is_empty())
            .map(str::to_string)
    });
    assert!(err.contains("nosuchimage:1 not found"), "{err}");
    c.ctl(1, &["service", "rm", "ghost"]).expect("rm ghost");

    // An update whose new tasks turn unhealthy is rolled back.
    let update = c.ctl(
        1,
        &[
            "service",
            "update",
            "--health-cmd",
            "false",
            "--health-interval",
            "500ms",
            "--health-retries",
            "1",
            "--update-failure-action",
            "rollback",
            "--update-monitor",
            "3s",
            "web",
        ],
    );
    assert!(update.is_err(), "the update must report the rollback");
    let inspect = wait_for_or(
        "rollback completed",
        CONVERGE,
        || {
            let v = c.json(1, &["service", "inspect", "web"]).ok()?;
            (v["update_status"]["state"] == "rollback_completed").then_some(v)
        },
        || service_state(&c, "web"),
    );
    assert!(inspect["spec"].get("healthcheck").is_none(), "{inspect}");
    wait_running(&c, "web", 3);

    secrets_and_configs(&c);

    // A host killed: its tasks run on the others.
    c.script(&["kill", "3"]).expect("kill h3");
    wait_for("web off h3", CONVERGE, || {
        let r = running(&c, "web");
        (r.len() == 3 && r.iter().all(|t| t.1 != "h3")).then_some(())
    });

    let node_ids: Vec<String> = c
        .json(1, &["node", "ls"])
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(node_ids.len(), 3);
    // Every engine held only its own node's containers.
    for h in 1..=3 {
        let labels = c
            .docker_on(
                h,
                &[
                    "ps",
                    "-a",
                    "--format",
                    "{{.Label \"com.swarmlet.node.id\"}}",
                ],
            )
            .expect("docker ps");
        let owners: HashSet<&str> = labels.lines().filter(|l| !l.is_empty()).collect();
        assert!(
            owners.len() <= 1,
            "h{h}'s engine runs several nodes' containers: {owners:?}"
        );
    }
    let engines_dir = c.dir().join("c");
    drop(c);
    // The engines went with the cluster: no dockerd or containerd of theirs
    // runs, and their data is gone.
    let procs = run("ps", &["-eo", "args"]).unwrap_or_default();
    let root = engines_dir.display().to_string();
    assert!(
        !procs.lines().any(|p| p.contains(&root)),
        "engine processes left: {procs}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(!mounts.contains(&root), "engine mounts left: {mounts}");
    let runtime = run("ls", &["/run/swarmlet-engines"]).unwrap_or_default();
    assert!(
        !runtime.contains("swe2e-"),
        "engine runtime dirs left: {runtime}"
    );
    let netns = std::process::Command::new("ip")
        .args(["netns", "ls"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(!netns.contains("swe2e-"), "namespaces left: {netns}");
}

/// A secret and a config reach the task as files (the secret on tmpfs),
/// and the secret's bytes are nowhere else: not in inspect output, not in
/// any node's state dir (Raft data included), not in Docker's files.
fn secrets_and_configs(c: &NsCluster) {
    let value = format!("s3cr3t-{}", std::process::id());
    let src = std::path::PathBuf::from(format!("/dev/shm/swe2e-secret-{}", std::process::id()));
    std::fs::write(&src, &value).expect("write the secret's source");
    let created = c.ctl(1, &["secret", "create", "db-pass", &src.to_string_lossy()]);
    let _ = std::fs::remove_file(&src);
    created.expect("secret create");
    let conf = c.dir().join("app.conf");
    std::fs::write(&conf, "level=debug\n").expect("write the config's source");
    c.ctl(
        1,
        &["config", "create", "app-conf", &conf.to_string_lossy()],
    )
    .expect("config create");
    let _ = std::fs::remove_file(&conf);

    c.ctl(
        1,
        &[
            "service",
            "create",
            "--name",
            "vault",
            "--secret",
            "db-pass",
            "--config",
            "app-conf,target=/etc/app.conf",
            IMAGE,
        ],
    )
    .expect("create vault");
    let tasks = wait_running(c, "vault", 1);
    let container = &tasks[0].2;
    let exec = |cmd: &[&str]| {
        let mut args = vec!["exec", container.as_str()];
        args.extend_from_slice(cmd);
        c.docker_for(container, &args)
    };
    let read = exec(&["cat", "/run/secrets/db-pass"]).expect("cat secret");
    assert_eq!(read, value);
    let read = exec(&["cat", "/etc/app.conf"]).expect("cat config");
    assert_eq!(read.trim(), "level=debug");
    let mounts = exec(&["cat", "/proc/mounts"]).expect("mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /run/secrets/db-pass tmpfs ") && l.contains("ro,")),
        "{mounts}"
    );

    // Nowhere else.
    for args in [
        vec!["secret", "inspect", "db-pass"],
        vec!["secret", "ls"],
        vec!["service", "inspect", "vault"],
        vec!["cluster", "inspect"],
    ] {
        let out = c.ctl(1, &args).expect("inspect");
        assert!(!out.contains(&value), "{args:?} shows the secret: {out}");
    }
    let docker_inspect = c
        .docker_for(container, &["inspect", container])
        .expect("docker inspect");
    assert!(!docker_inspect.contains(&value));
    // The cluster's directory holds every node's state dir and every
    // engine's data root (Docker's files of the task's container included).
    let on_disk = files_containing(c.dir(), value.as_bytes());
    assert!(on_disk.is_empty(), "the secret is on disk: {on_disk:?}");

    // In use: refused; after the service goes: removed, and its files too.
    let refused = c.ctl(1, &["secret", "rm", "db-pass"]).expect_err("in use");
    assert!(
        refused.to_string().contains("in use by service vault"),
        "{refused}"
    );
    let shm_before = files_containing(std::path::Path::new("/dev/shm"), value.as_bytes());
    assert_eq!(shm_before.len(), 1, "{shm_before:?}");
    c.ctl(1, &["service", "rm", "vault"]).expect("rm vault");
    wait_for("the secret's tmpfs file removed", CONVERGE, || {
        files_containing(std::path::Path::new("/dev/shm"), value.as_bytes())
            .is_empty()
            .then_some(())
    });
    c.ctl(1, &["secret", "rm", "db-pass"]).expect("secret rm");
    c.ctl(1, &["config", "rm", "app-conf"]).expect("config rm");
    let left = c.json(1, &["secret", "ls"]).expect("secret ls");
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left}");
}
