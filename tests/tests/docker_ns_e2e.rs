//! A node in the same network namespace as `dockerd`, as on a real host
//! (DESIGN.md's pitfall: Docker's iptables FORWARD policy is DROP there).
//! One `swarmd` in this test's namespace publishes a port; it answers on
//! localhost and, routed through Docker's FORWARD chain, from a scratch
//! namespace behind a veth the test made. Everything the node and the test
//! created is removed at the end, also on failure: containers, the node's
//! namespaces, its `swarmlet-mesh-…` table and `DOCKER-USER` accepts, the
//! veth and the scratch namespace. Needs root, dockerd and the demo image.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use swarmlet_tests::e2e::{build_binaries, docker, run, wait_for_or};

const PORT: &str = "18481";
const SCRATCH_NS: &str = "swdk-client";
const HOST_VETH: &str = "swdk-r";
const HOST_IP: &str = "10.219.0.1";

struct Node {
    bin: PathBuf,
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    node_id: Option<String>,
}

impl Node {
    fn sock(&self) -> String {
        format!("unix://{}", self.dir.path().join("ctl.sock").display())
    }

    fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let bin = self.bin.join("swarmctl");
        let sock = self.sock();
        let mut all = vec!["-H", sock.as_str()];
        all.extend_from_slice(args);
        run(&bin.display().to_string(), &all)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = d.wait();
        }
        if let Some(id) = &self.node_id {
            let short = &id[..8];
            let label = format!("label=com.swarmlet.node.id={id}");
            if let Ok(ids) = docker(&["ps", "-aq", "--filter", &label]) {
                for c in ids.lines().filter(|l| !l.is_empty()) {
                    let _ = docker(&["rm", "-f", c]);
                }
            }
            let list = run("ip", &["netns", "ls"]).unwrap_or_default();
            for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
                if ns.starts_with(&format!("ovl-{short}-")) || ns == format!("ingress_sbox-{short}")
                {
                    let _ = run("ip", &["netns", "del", ns]);
                }
            }
            let _ = run(
                "nft",
                &["delete", "table", "ip", &format!("swarmlet-mesh-{short}")],
            );
            // The node's leg, and the host-mode legs' pattern (this test's
            // node is the only one in this namespace).
            for leg in [format!("swi-{short}"), "swh-+".to_string()] {
                for dir in ["-i", "-o"] {
                    let _ = run(
                        "iptables",
                        &["-D", "DOCKER-USER", dir, &leg, "-j", "ACCEPT"],
                    );
                }
            }
        }
        let _ = run("ip", &["netns", "del", SCRATCH_NS]);
        let _ = run("ip", &["link", "del", HOST_VETH]);
    }
}

#[test]
fn published_port_on_a_node_sharing_dockers_namespace() {
    let bin = build_binaries().expect("binaries");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node {
        bin: bin.clone(),
        daemon: None,
        node_id: None,
        dir,
    };
    let log = std::fs::File::create(node.dir.path().join("swarmd.log")).expect("log");
    let daemon = Command::new(bin.join("swarmd"))
        .arg("--state-dir")
        .arg(node.dir.path().join("state"))
        .arg("--control-socket")
        .arg(node.dir.path().join("ctl.sock"))
        .args(["--listen-addr", "127.0.0.1:14481", "--hostname", "dockerns"])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("swarmd");
    node.daemon = Some(daemon);
    wait_for_or(
        "the control socket",
        Duration::from_secs(20),
        || node.dir.path().join("ctl.sock").exists().then_some(()),
        String::new,
    );
    node.ctl(&["cluster", "init", "--advertise-addr", "127.0.0.1"])
        .expect("cluster init");
    let nodes = node
        .ctl(&["--format", "json", "node", "ls"])
        .expect("node ls");
    let nodes: serde_json::Value = serde_json::from_str(&nodes).expect("json");
    node.node_id = nodes[0]["id"].as_str().map(String::from);
    assert!(node.node_id.is_some(), "{nodes}");
    node.ctl(&[
        "service",
        "create",
        "-d",
        "--name",
        "hostweb",
        "--publish",
        &format!("{PORT}:80"),
        "swarmlet-demo:latest",
    ])
    .expect("service create");
    let explain = || {
        format!(
            "service ps:\n{}\nlog:\n{}",
            node.ctl(&["service", "ps", "hostweb"]).unwrap_or_default(),
            std::fs::read_to_string(node.dir.path().join("swarmd.log")).unwrap_or_default()
        )
    };
    let local = format!("http://127.0.0.1:{PORT}/");
    let body = wait_for_or(
        "the published port on localhost",
        Duration::from_secs(60),
        || run("curl", &["-s", "-f", "-m", "2", &local]).ok(),
        explain,
    );
    assert_eq!(body.trim(), "hostweb.1");

    // A client in a namespace of its own, routed through this namespace's
    // FORWARD chain (Docker's DROP policy) to the ingress sandbox.
    run("ip", &["netns", "add", SCRATCH_NS]).expect("netns");
    run(
        "ip",
        &[
            "link", "add", HOST_VETH, "type", "veth", "peer", "name", "swdk-n",
        ],
    )
    .expect("veth");
    run("ip", &["link", "set", "swdk-n", "netns", SCRATCH_NS]).expect("move");
    run(
        "ip",
        &["addr", "add", &format!("{HOST_IP}/30"), "dev", HOST_VETH],
    )
    .expect("addr");
    run("ip", &["link", "set", HOST_VETH, "up"]).expect("up");
    run(
        "ip",
        &[
            "-n",
            SCRATCH_NS,
            "addr",
            "add",
            "10.219.0.2/30",
            "dev",
            "swdk-n",
        ],
    )
    .expect("addr");
    run("ip", &["-n", SCRATCH_NS, "link", "set", "swdk-n", "up"]).expect("up");
    let remote = format!("http://{HOST_IP}:{PORT}/");
    let body = wait_for_or(
        "the published port from another namespace",
        Duration::from_secs(20),
        || {
            run(
                "ip",
                &[
                    "netns", "exec", SCRATCH_NS, "curl", "-s", "-f", "-m", "2", &remote,
                ],
            )
            .ok()
        },
        explain,
    );
    assert_eq!(body.trim(), "hostweb.1");
}
