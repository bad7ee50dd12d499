//! The real `docker` CLIs against Swarmlet's Engine API subset, on an
//! in-process cluster of 3 managers and 1 worker with the `sim` executor
//! (the control plane; `engine_api_e2e` covers the data plane with real
//! engines): `docker version|info`, `docker node …`, `docker service …`
//! with the CLI's own progress display, networks, secrets and configs,
//! `docker stack deploy|ls|services|ps|rm` from a Compose file, bad input,
//! a follower forwarding to the leader, a worker's refusal, and the API
//! version checks. Each client runs every step: the docker CLI 28
//! (`/usr/local/bin/docker`, when present) and Debian's docker.io 20.10
//! (`/usr/bin/docker`, installed by deploy/setup.sh).

use std::path::{Path, PathBuf};
use std::time::Duration;

use swarmlet_tests::{form_cluster, wait_until, InProcessNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sim(c: &mut swarmd::config::DaemonConfig) {
    c.executor = swarmd::config::ExecutorKind::Sim;
}

/// The docker clients on this machine.
fn clients() -> Vec<&'static str> {
    let all: Vec<_> = ["/usr/local/bin/docker", "/usr/bin/docker"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(
        !all.is_empty(),
        "no docker client: deploy/setup.sh installs docker.io's"
    );
    all
}

/// The Engine API socket of an in-process node.
fn socket(n: &InProcessNode) -> PathBuf {
    swarmd::config::default_engine_api_socket(&n.socket)
}

/// One docker client pointed at one node's Engine API socket.
struct Docker {
    cli: &'static str,
    socket: PathBuf,
    config: PathBuf,
}

/// What a command did.
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Docker {
    async fn run_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Out {
        let mut cmd = tokio::process::Command::new(self.cli);
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_CLI_HINTS", "false")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("docker client starts");
        if let Some(stdin) = child.stdin.as_mut() {
            if let Some(bytes) = input {
                stdin.write_all(bytes).await.expect("stdin");
            }
        }
        drop(child.stdin.take());
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{} {args:?} timed out", self.cli))
            .expect("docker client runs");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
    }

    /// Runs a command that must succeed; its stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run_with_input(args, None).await;
        assert!(
            o.ok,
            "{} {args:?} failed:\n{}\n{}",
            self.cli, o.stdout, o.stderr
        );
        o.stdout
    }

    /// Runs a command that must fail; its stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let o = self.run_with_input(args, None).await;
        assert!(!o.ok, "{} {args:?} succeeded: {}", self.cli, o.stdout);
        o.stderr
    }
}

async fn cluster() -> (tempfile::TempDir, Vec<InProcessNode>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = form_cluster(dir.path(), 3, 1, |i| format!("e{i}"), sim)
        .await
        .unwrap_or_else(|e| panic!("cluster forms: {e:#}"));
    (dir, nodes)
}

/// A raw HTTP/1.0 request on a unix socket: the whole answer.
async fn raw_http(socket: &Path, request: &str) -> String {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connects");
    s.write_all(request.as_bytes()).await.expect("writes");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("reads");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_cli_drives_the_cluster() {
    let (dir, nodes) = cluster().await;
    // Every node serves the socket 0600.
    for n in &nodes {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(socket(n))
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", socket(n).display());
    }
    let leader = nodes
        .iter()
        .position(InProcessNode::is_leader)
        .expect("a leader");
    let follower = (0..3).find(|i| *i != leader).expect("a follower");

    // Versions: the prefix is checked, /_ping answers with its headers.
    let ping = raw_http(&socket(&nodes[0]), "HEAD /_ping HTTP/1.0\r\n\r\n").await;
    assert!(ping.starts_with("HTTP/1.0 200"), "{ping}");
    for header in [
        "api-version: 1.47",
        "ostype: linux",
        "swarm: active/manager",
    ] {
        assert!(ping.to_lowercase().contains(header), "{header} in {ping}");
    }
    let new = raw_http(&socket(&nodes[0]), "GET /v1.99/version HTTP/1.0\r\n\r\n").await;
    assert!(new.starts_with("HTTP/1.0 400"), "{new}");
    assert!(new.contains("application/json"), "{new}");
    assert!(
        new.contains(r#"{"message":"client version 1.99 is too new"#),
        "{new}"
    );
    let old = raw_http(&socket(&nodes[0]), "GET /v1.40/version HTTP/1.0\r\n\r\n").await;
    assert!(
        old.starts_with("HTTP/1.0 400") && old.contains("too old"),
        "{old}"
    );

    for cli in clients() {
        let config = dir.path().join(format!("config-{}", cli.replace('/', "_")));
        std::fs::create_dir_all(&config).expect("client config dir");
        let via = |i: usize| Docker {
            cli,
            socket: socket(&nodes[i]),
            config: config.clone(),
        };
        let d = via(follower);
        control_plane_through(&d, &nodes, &via(3)).await;
        stack_deploy_through(&d, dir.path()).await;
    }
    let last = Docker {
        cli: clients()[clients().len() - 1],
        socket: socket(&nodes[follower]),
        config: dir.path().join("config-rm"),
    };
    remove_worker(&last, &nodes).await;
    for mut n in nodes {
        n.stop().await;
    }
}

/// Nodes, services, networks, secrets and configs through `d` (a follower:
/// every call goes to the leader through it); `worker` is the worker's
/// socket.
async fn control_plane_through(d: &Docker, nodes: &[InProcessNode], worker: &Docker) {
    let v = d
        .ok(&[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ])
        .await;
    assert!(v.ends_with("linux"), "{v}");
    let info = d
        .ok(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}} {{.Swarm.Managers}}",
        ])
        .await;
    assert_eq!(info, "active true 4 3");

    // Nodes.
    let ls = d
        .ok(&[
            "node",
            "ls",
            "--format",
            "{{.Hostname}} {{.Status}} {{.ManagerStatus}}",
        ])
        .await;
    assert_eq!(ls.lines().count(), 4, "{ls}");
    assert_eq!(
        ls.lines().filter(|l| l.ends_with("Leader")).count(),
        1,
        "{ls}"
    );
    assert!(ls.contains("e3 Ready"), "{ls}");
    d.ok(&["node", "update", "--availability", "drain", "e3"])
        .await;
    let a = d
        .ok(&[
            "node",
            "inspect",
            "e3",
            "--format",
            "{{.Spec.Availability}}",
        ])
        .await;
    assert_eq!(a, "drain");
    d.ok(&[
        "node",
        "update",
        "--availability",
        "active",
        "--label-add",
        "zone=a",
        "e3",
    ])
    .await;
    let spec = d
        .ok(&[
            "node",
            "inspect",
            "e3",
            "--format",
            "{{.Spec.Availability}} {{.Spec.Labels.zone}}",
        ])
        .await;
    assert_eq!(spec, "active a");
    d.ok(&["node", "promote", "e3"]).await;
    wait_for_role(d, "e3", "manager").await;
    d.ok(&["node", "demote", "e3"]).await;
    wait_for_role(d, "e3", "worker").await;
    // (The 20.10 client words a 404 itself: "No such node: nosuch".)
    let e = d.fails(&["node", "inspect", "nosuch"]).await;
    assert!(e.contains("nosuch"), "{e}");

    // A worker answers 503 and names the managers (once the demoted node
    // has stopped its manager).
    wait_until(
        "e3 to stop its manager",
        Duration::from_secs(30),
        || async { nodes[3].manager().is_none().then_some(()) },
    )
    .await;
    let e = worker.fails(&["service", "ls"]).await;
    assert!(e.contains("not a swarm manager"), "{e}");
    assert!(e.contains(&nodes[0].addr), "the managers are named: {e}");

    // A service, waited for with the CLI's own progress display.
    let out = d
        .ok(&[
            "service",
            "create",
            "--name",
            "web",
            "-p",
            "8080:80",
            "--replicas",
            "3",
            "--update-monitor",
            "1s",
            "busybox",
            "sleep",
            "1000",
        ])
        .await;
    assert!(out.contains("converged"), "{out}");
    let ls = d
        .ok(&[
            "service",
            "ls",
            "--format",
            "{{.Name}} {{.Mode}} {{.Replicas}} {{.Ports}}",
        ])
        .await;
    assert_eq!(ls, "web replicated 3/3 *:8080->80/tcp");
    let ps = d
        .ok(&[
            "service",
            "ps",
            "web",
            "--format",
            "{{.Name}} {{.CurrentState}}",
        ])
        .await;
    assert_eq!(ps.lines().count(), 3, "{ps}");
    assert!(ps.lines().all(|l| l.contains(" Running ")), "{ps}");
    assert!(ps.contains("web.1 ") && ps.contains("web.3 "), "{ps}");
    let image = || async {
        d.ok(&[
            "service",
            "inspect",
            "web",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}} {{.Spec.Mode.Replicated.Replicas}}",
        ])
        .await
    };
    d.ok(&["service", "update", "--image", "busybox:1", "web"])
        .await;
    assert_eq!(image().await, "busybox:1 3");
    let out = d.ok(&["service", "scale", "web=5"]).await;
    assert!(out.contains("scaled to 5"), "{out}");
    assert_eq!(image().await, "busybox:1 5");
    let ls = d.ok(&["service", "ls", "--format", "{{.Replicas}}"]).await;
    assert_eq!(ls, "5/5");
    d.ok(&["service", "rollback", "web"]).await;
    assert!(image().await.starts_with("busybox:latest"), "rolled back");
    let e = d
        .fails(&[
            "service", "create", "--name", "web2", "-p", "8080:80", "busybox",
        ])
        .await;
    assert!(e.contains("8080"), "a port conflict is named: {e}");
    let e = d
        .fails(&[
            "service",
            "create",
            "--name",
            "bad",
            "--network",
            "nosuch",
            "busybox",
        ])
        .await;
    // (The 20.10 client looks the network up itself: "No such network".)
    assert!(
        e.contains("network nosuch not found") || e.contains("No such network: nosuch"),
        "{e}"
    );
    let e = d
        .fails(&["service", "create", "--name", "bad name", "busybox"])
        .await;
    assert!(e.contains("invalid service name"), "{e}");
    let e = d.fails(&["service", "inspect", "nosuch"]).await;
    assert!(
        e.to_lowercase().contains("no such service") || e.contains("not found"),
        "{e}"
    );
    d.ok(&["service", "rm", "web"]).await;
    assert_eq!(d.ok(&["service", "ls", "-q"]).await, "");

    // A network, a secret and a config, used by a service.
    d.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        "front",
    ])
    .await;
    let nets = d
        .ok(&[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ])
        .await;
    assert!(nets.contains("front overlay swarm"), "{nets}");
    let e = d.fails(&["network", "create", "local"]).await;
    assert!(e.contains("overlay"), "{e}");
    let o = d
        .run_with_input(&["secret", "create", "s1", "-"], Some(b"hush"))
        .await;
    assert!(o.ok, "{}", o.stderr);
    let o = d
        .run_with_input(&["config", "create", "c1", "-"], Some(b"k=v"))
        .await;
    assert!(o.ok, "{}", o.stderr);
    d.ok(&[
        "service",
        "create",
        "-d",
        "--name",
        "app",
        "--network",
        "front",
        "--secret",
        "s1",
        "--config",
        "source=c1,target=/etc/c1",
        "busybox",
    ])
    .await;
    let refs = d
        .ok(&["service", "inspect", "app", "--format", "{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}} {{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}}:{{.File.Name}}{{end}}"])
        .await;
    assert_eq!(refs, "s1 c1:/etc/c1");
    let e = d.fails(&["network", "rm", "front"]).await;
    assert!(e.contains("in use by service app"), "{e}");
    d.ok(&["service", "rm", "app"]).await;
    d.ok(&["network", "rm", "front"]).await;
    d.ok(&["secret", "rm", "s1"]).await;
    d.ok(&["config", "rm", "c1"]).await;
    assert_eq!(d.ok(&["secret", "ls", "-q"]).await, "");
    assert_eq!(d.ok(&["config", "ls", "-q"]).await, "");
}

/// `docker node rm`: refused for a node that is up, then forced.
async fn remove_worker(d: &Docker, nodes: &[InProcessNode]) {
    let e = d.fails(&["node", "rm", "e3"]).await;
    assert!(e.contains("e3"), "{e}");
    d.ok(&["node", "rm", "--force", "e3"]).await;
    let ls = d.ok(&["node", "ls", "--format", "{{.Hostname}}"]).await;
    assert!(!ls.contains("e3"), "{ls}");
    assert_eq!(ls.lines().count(), nodes.len() - 1);
}

async fn wait_for_role(d: &Docker, node: &str, role: &str) {
    wait_until(
        &format!("{node} to be a {role}"),
        Duration::from_secs(30),
        || async {
            let r = d
                .ok(&["node", "inspect", node, "--format", "{{.Spec.Role}}"])
                .await;
            (r == role).then_some(())
        },
    )
    .await;
}

/// The Compose file of the stack test: two services on a stack network,
/// with a published port, replicas, placement, resources, restart policy,
/// update config, a health check, a secret, a config and a named volume.
const COMPOSE: &str = r#"
version: "3.8"
services:
  web:
    image: busybox:latest
    command: ["httpd", "-f", "-p", "80"]
    ports: ["8090:80"]
    networks: [back]
    deploy:
      replicas: 2
      placement:
        constraints: [node.role == manager]
      resources:
        limits: {cpus: "0.5", memory: 64M}
        reservations: {memory: 16M}
      restart_policy: {condition: on-failure, delay: 2s, max_attempts: 3}
      update_config: {parallelism: 1, delay: 1s, order: start-first}
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
    secrets: [token]
    configs:
      - source: settings
        target: /etc/settings.conf
    volumes:
      - data:/data
  db:
    image: IMAGE_OF_DB
    command: ["sleep", "1000"]
    networks: [back]
networks:
  back:
    driver: overlay
volumes:
  data:
secrets:
  token:
    file: ./token.txt
configs:
  settings:
    file: ./settings.conf
"#;

/// `docker stack deploy|ls|services|ps|rm` through `d`.
async fn stack_deploy_through(d: &Docker, dir: &Path) {
    let stack_dir = dir.join("stack");
    std::fs::create_dir_all(&stack_dir).expect("stack dir");
    std::fs::write(stack_dir.join("token.txt"), "t0ken").expect("secret file");
    std::fs::write(stack_dir.join("settings.conf"), "a=1").expect("config file");
    let compose = stack_dir.join("compose.yml");
    let file = compose.display().to_string();
    std::fs::write(&compose, COMPOSE.replace("IMAGE_OF_DB", "busybox:latest")).expect("compose");
    d.ok(&["stack", "deploy", "-c", &file, "app"]).await;
    assert_eq!(
        d.ok(&["stack", "ls", "--format", "{{.Name}} {{.Services}}"])
            .await,
        "app 2"
    );
    wait_until("the stack converges", Duration::from_secs(60), || async {
        let s = d
            .ok(&[
                "stack",
                "services",
                "app",
                "--format",
                "{{.Name}} {{.Replicas}}",
            ])
            .await;
        (s.contains("app_web 2/2") && s.contains("app_db 1/1")).then_some(())
    })
    .await;
    let ps = d
        .ok(&[
            "stack",
            "ps",
            "app",
            "--format",
            "{{.Name}} {{.CurrentState}}",
        ])
        .await;
    assert_eq!(
        ps.lines().filter(|l| l.contains("Running")).count(),
        3,
        "{ps}"
    );
    // What the Compose file asked for is in the specs.
    let web = d
        .ok(&[
            "service",
            "inspect",
            "app_web",
            "--format",
            "{{json .Spec}}",
        ])
        .await;
    let web: serde_json::Value = serde_json::from_str(&web).expect("json");
    let cs = &web["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Healthcheck"]["Test"][1], "true", "{web}");
    assert_eq!(cs["Secrets"][0]["SecretName"], "app_token");
    assert_eq!(cs["Configs"][0]["File"]["Name"], "/etc/settings.conf");
    assert_eq!(cs["Mounts"][0]["Source"], "app_data");
    assert_eq!(
        web["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"],
        64 << 20
    );
    assert_eq!(
        web["TaskTemplate"]["RestartPolicy"]["Condition"],
        "on-failure"
    );
    assert_eq!(web["UpdateConfig"]["Order"], "start-first");
    assert_eq!(web["Labels"]["com.docker.stack.namespace"], "app");
    assert_eq!(web["EndpointSpec"]["Ports"][0]["PublishedPort"], 8090);
    let version = |name: &'static str| async move {
        d.ok(&["service", "inspect", name, "--format", "{{.Version.Index}}"])
            .await
    };
    let (web_v, db_v) = (version("app_web").await, version("app_db").await);

    // A second deploy with one changed image updates only that service.
    std::fs::write(&compose, COMPOSE.replace("IMAGE_OF_DB", "busybox:1")).expect("compose");
    d.ok(&["stack", "deploy", "-c", &file, "app"]).await;
    assert_eq!(version("app_web").await, web_v, "web is unchanged");
    assert_ne!(version("app_db").await, db_v, "db is updated");
    let image = d
        .ok(&[
            "service",
            "inspect",
            "app_db",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
        ])
        .await;
    assert_eq!(image, "busybox:1");

    // stack rm removes everything it made.
    d.ok(&["stack", "rm", "app"]).await;
    let label = "label=com.docker.stack.namespace=app";
    assert_eq!(d.ok(&["service", "ls", "-q", "--filter", label]).await, "");
    assert_eq!(d.ok(&["network", "ls", "-q", "--filter", label]).await, "");
    assert_eq!(d.ok(&["secret", "ls", "-q", "--filter", label]).await, "");
    assert_eq!(d.ok(&["config", "ls", "-q", "--filter", label]).await, "");
    assert_eq!(d.ok(&["stack", "ls", "--format", "{{.Name}}"]).await, "");
}
