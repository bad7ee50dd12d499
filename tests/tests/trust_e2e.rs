//! The trust boundary as a user meets it, on namespace hosts with real
//! Docker: one manager (h1) and one worker (h2). `service logs` reads the
//! worker's tasks too and fails when a node cannot be read; swarmd's own
//! port cannot be published; the state dirs of the real binaries are root's
//! alone.

use std::path::Path;
use std::time::Duration;

use swarmlet_tests::e2e::{wait_for, NsCluster};

const CONVERGE: Duration = Duration::from_secs(60);
const IMAGE: &str = "swarmlet-demo:latest";

/// Asserts `path` and everything under it is 0700 (directories) or 0600
/// (files and sockets).
fn assert_private(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).expect("stat");
    let mode = meta.mode() & 0o7777;
    if meta.is_dir() {
        assert_eq!(mode, 0o700, "{} is {mode:o}", path.display());
        for entry in std::fs::read_dir(path).expect("ls") {
            assert_private(&entry.expect("entry").path());
        }
    } else {
        assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
    }
}

#[test]
fn worker_logs_daemon_ports_and_private_state() {
    let c = NsCluster::up_env("swtr", "10.220.0", 2, &[("MANAGERS", "1")]).expect("cluster up");
    let nodes = c.json(1, &["node", "ls"]).expect("node ls");
    let h2 = nodes
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["hostname"] == "h2"))
        .expect("h2 listed");
    assert_eq!(h2["role"], "worker");

    // A task on the worker: its output is read like the manager's.
    c.ctl(
        1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            IMAGE,
        ],
    )
    .expect("create web");
    wait_for("a task on each host", CONVERGE, || {
        let hosts: std::collections::HashSet<String> = c
            .running_tasks("web")
            .iter()
            .filter_map(|t| t["node"].as_str().map(String::from))
            .collect();
        (hosts.len() == 2).then_some(())
    });
    let logs = wait_for("both tasks' output", CONVERGE, || {
        let out = c.ctl(1, &["service", "logs", "--tail", "5", "web"]).ok()?;
        (out.contains("@h1 | serving") && out.contains("@h2 | serving")).then_some(out)
    });
    assert!(!logs.contains("cannot read logs"), "{logs}");

    // swarmd's own port is not for services; nothing is created.
    let err = c
        .ctl(
            1,
            &[
                "service", "create", "-d", "--name", "grab", "-p", "4242:80", IMAGE,
            ],
        )
        .expect_err("publishing swarmd's port");
    assert!(err.to_string().contains("swarmd's own port"), "{err:#}");
    let services = c.json(1, &["service", "ls"]).expect("service ls");
    assert_eq!(services.as_array().map(Vec::len), Some(1), "{services}");

    // State at rest: root's alone, in both real daemons' state dirs.
    for h in ["h1", "h2"] {
        assert_private(&c.dir().join("c").join(h));
    }

    // A node that cannot be read makes `service logs` fail, naming it.
    c.script(&["kill", "2"]).expect("kill h2");
    let err = c
        .ctl(1, &["service", "logs", "--tail", "1", "web"])
        .expect_err("h2 unreadable");
    assert!(err.to_string().contains("could not be read: h2"), "{err:#}");
}
