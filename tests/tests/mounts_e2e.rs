//! End to end with real Docker (a namespace host with its own engine): what
//! a Docker Swarm user puts in a service reaches its containers — a named
//! volume outlives its tasks (scaled to 0 and back, the file is still
//! there), a read-only bind mount, a tmpfs mount, `--user`, a hostname
//! template (`web-1`, `web-2`), and a bind source missing on the node
//! rejects the task with Docker's reason instead of retrying it. Runs as
//! root (deploy/test.sh).

use std::time::Duration;

use swarmlet_tests::e2e::{wait_for, wait_for_or, NsCluster};

const CONVERGE: Duration = Duration::from_secs(60);
const IMAGE: &str = "swarmlet-demo:latest";

/// The container IDs of the running tasks of `service`, once there are `n`.
fn containers(c: &NsCluster, service: &str, n: usize) -> Vec<String> {
    wait_for_or(
        &format!("{n} running tasks of {service}"),
        CONVERGE,
        || {
            let ids: Vec<String> = c
                .running_tasks(service)
                .iter()
                .filter_map(|t| t["container_id"].as_str().map(str::to_string))
                .collect();
            (ids.len() == n).then_some(ids)
        },
        || c.ctl(1, &["service", "ps", service]).unwrap_or_default(),
    )
}

/// `sh -c SCRIPT` in `container`: its output, or the error.
fn exec(c: &NsCluster, container: &str, script: &str) -> anyhow::Result<String> {
    c.docker_for(container, &["exec", container, "sh", "-c", script])
}

#[test]
fn mounts_and_container_options_reach_the_tasks() {
    let c = NsCluster::up_engines("swmnt", "10.222.0", 1, &[]).expect("cluster up");
    let create = |args: &[&str]| {
        let mut all = vec!["service", "create", "-d"];
        all.extend_from_slice(args);
        c.ctl(1, &all).expect("service create")
    };

    // A named volume: written by one task, read by the next one on the node.
    create(&[
        "--name",
        "db",
        "--mount",
        "type=volume,source=dbdata,target=/data",
        IMAGE,
        "sh",
        "-c",
        "[ -f /data/first ] || hostname > /data/first; exec sleep 1000",
    ]);
    let first = containers(&c, "db", 1);
    let written = wait_for("the file in the volume", CONVERGE, || {
        exec(&c, &first[0], "cat /data/first").ok()
    });
    let volume = c
        .docker_on(
            1,
            &["volume", "inspect", "-f", "{{json .Labels}}", "dbdata"],
        )
        .expect("the volume exists on the node");
    assert!(volume.contains("com.swarmlet.volume"), "{volume}");
    c.ctl(1, &["service", "scale", "-d", "db=0"])
        .expect("scale 0");
    wait_for("no db task running", CONVERGE, || {
        c.running_tasks("db").is_empty().then_some(())
    });
    c.ctl(1, &["service", "scale", "-d", "db=1"])
        .expect("scale 1");
    let second = containers(&c, "db", 1);
    assert_ne!(first, second, "a new task");
    let read = exec(&c, &second[0], "cat /data/first").expect("read back");
    assert_eq!(read, written, "the volume kept the first task's file");

    // A read-only bind mount of a directory on the node, a tmpfs, a user
    // and a hostname template.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("hello"), "from the node").expect("write");
    let bind = format!(
        "type=bind,source={},target=/srv,readonly",
        dir.path().display()
    );
    create(&[
        "--name",
        "web",
        "--replicas",
        "2",
        "--mount",
        &bind,
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=1m",
        "--user",
        "1000",
        "--hostname",
        "{{.Service.Name}}-{{.Task.Slot}}",
        "--env",
        "WHERE={{.Node.Hostname}}",
        "--host",
        "db:10.0.0.5",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let web = containers(&c, "web", 2);
    let mut hostnames = Vec::new();
    for id in &web {
        assert_eq!(
            exec(&c, id, "cat /srv/hello").expect("read"),
            "from the node"
        );
        assert!(
            exec(&c, id, "echo x > /srv/new").is_err(),
            "the bind mount is read-only"
        );
        let mounts = exec(&c, id, "cat /proc/mounts").expect("mounts");
        assert!(
            mounts
                .lines()
                .any(|l| l.contains(" /scratch tmpfs ") && l.contains("size=1024k")),
            "{mounts}"
        );
        assert_eq!(exec(&c, id, "id -u").expect("id"), "1000");
        assert_eq!(exec(&c, id, "echo $WHERE").expect("env"), "h1");
        let hosts = exec(&c, id, "cat /etc/hosts").expect("hosts");
        assert!(
            hosts
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["10.0.0.5", "db"]),
            "{hosts}"
        );
        hostnames.push(exec(&c, id, "hostname").expect("hostname"));
    }
    hostnames.sort();
    assert_eq!(hostnames, ["web-1", "web-2"]);
    let inspect = c.json(1, &["service", "inspect", "web"]).expect("inspect");
    let container = &inspect["spec"]["container"];
    assert_eq!(container["user"], "1000");
    assert_eq!(container["mounts"][0]["type"], "bind");
    assert_eq!(container["mounts"][0]["readonly"], true);

    // A bind source the node lacks: rejected with the engine's reason.
    create(&[
        "--name",
        "nosrc",
        "--mount",
        "type=bind,source=/nonexistent/swarmlet-test,target=/x",
        IMAGE,
    ]);
    let error = wait_for("the task rejected", CONVERGE, || {
        let tasks = c.json(1, &["service", "ps", "nosrc"]).ok()?;
        tasks.as_array()?.iter().find_map(|t| {
            (t["current_state"] == "rejected")
                .then(|| t["error"].as_str().unwrap_or("").to_string())
        })
    });
    assert!(
        error.contains("/nonexistent/swarmlet-test"),
        "the reason names the path: {error}"
    );

    // Bad input changes nothing: one line, non-zero exit.
    for (args, want) in [
        (
            vec!["--mount", "type=bind,target=/x"],
            "field Source must not be empty",
        ),
        (
            vec!["--mount", "type=volume,source=v,target=rel"],
            "absolute path",
        ),
        (vec!["--cap-add", "NET_SUPERPOWER"], "unknown capability"),
        (vec!["--ulimit", "nofile=lots"], "invalid --ulimit"),
        (vec!["--hostname", "{{.Service.Nme}}"], "unknown field"),
    ] {
        let mut all = vec!["service", "create", "-d", "--name", "bad"];
        all.extend(args.iter().copied());
        all.push(IMAGE);
        let e = c.ctl(1, &all).expect_err("refused");
        assert!(format!("{e:#}").contains(want), "{args:?}: {e:#}");
    }
    assert!(
        c.ctl(1, &["service", "inspect", "bad"]).is_err(),
        "nothing was created"
    );
}
