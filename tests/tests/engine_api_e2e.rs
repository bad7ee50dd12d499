//! The `docker` CLI against Swarmlet's Engine API on namespace hosts with
//! their own Docker engines (the data plane; `engine_api` covers the
//! control plane in-process): a service created with `docker service
//! create -p` answers on every host's published port from every task,
//! `docker service logs` shows the tasks' output with Docker's
//! `name.slot.id@node` prefixes, and a `docker stack deploy`ed service
//! reaches another of its stack by its Compose name (a network alias).
//! Needs root and Debian's docker.io.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use swarmlet_tests::e2e::{run, wait_for_or, NsCluster};

const CONVERGE: Duration = Duration::from_secs(90);
const IMAGE: &str = "swarmlet-demo:latest";

/// The newest docker client on this machine.
fn cli() -> &'static str {
    if Path::new("/usr/local/bin/docker").exists() {
        "/usr/local/bin/docker"
    } else {
        "/usr/bin/docker"
    }
}

/// `docker ARGS` against host `h`'s Engine API.
fn api(c: &NsCluster, h: usize, args: &[&str]) -> anyhow::Result<String> {
    let host = format!("unix://{}", c.engine_api_socket(h));
    let mut all = vec!["-H", host.as_str()];
    all.extend_from_slice(args);
    run(cli(), &all)
}

fn state(c: &NsCluster) -> String {
    let mut out = format!(
        "service ls:\n{}\nservice ps:\n{}\n",
        c.ctl(1, &["service", "ls"]).unwrap_or_default(),
        c.ctl(1, &["service", "ps", "--all"]).unwrap_or_default()
    );
    for h in 1..=c.hosts {
        out.push_str(&format!(
            "h{h} log tail:\n{}\n",
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

#[test]
fn docker_cli_services_and_stacks_on_real_engines() {
    let c = NsCluster::up_engines("sweap", "10.224.0", 3, &[]).expect("cluster up");

    // A published service, created and waited for by the CLI.
    let out = api(
        &c,
        1,
        &[
            "service",
            "create",
            "--name",
            "web",
            "-p",
            "8080:80",
            "--replicas",
            "3",
            IMAGE,
        ],
    )
    .unwrap_or_else(|e| panic!("service create: {e}\n{}", state(&c)));
    assert!(out.contains("converged"), "{out}");
    let names: BTreeSet<String> = c
        .running_tasks("web")
        .iter()
        .filter_map(|t| Some(t["name"].as_str()?.to_string()))
        .collect();
    assert_eq!(names.len(), 3, "{}", state(&c));
    for h in 1..=3 {
        let url = format!("http://{}:8080/", c.host_ip(h));
        wait_for_or(
            &format!("{url} to reach all three tasks"),
            CONVERGE,
            || {
                let mut seen = BTreeSet::new();
                for _ in 0..45 {
                    if let Ok(body) = c.http_get(1, &url) {
                        seen.insert(body.trim().to_string());
                    }
                    if seen == names {
                        return Some(());
                    }
                }
                None
            },
            || state(&c),
        );
    }

    // The tasks' output, with Docker's prefixes.
    let logs = wait_for_or(
        "every task's first line in docker service logs",
        CONVERGE,
        || {
            let l = api(&c, 1, &["service", "logs", "web"]).ok()?;
            (l.lines().filter(|l| l.contains("| serving web.")).count() == 3).then_some(l)
        },
        || state(&c),
    );
    for line in logs.lines() {
        assert!(line.starts_with("web."), "{line}");
        assert!(line.contains("@h"), "the node is named: {line}");
    }
    api(&c, 1, &["service", "rm", "web"]).expect("service rm");

    // A stack: `client` reaches `web` by its Compose name on the stack's
    // network.
    let dir = tempfile::tempdir().expect("tempdir");
    let compose = dir.path().join("compose.yml");
    std::fs::write(
        &compose,
        format!(
            r#"
version: "3.8"
services:
  web:
    image: {IMAGE}
    ports: ["8081:80"]
    networks: [back]
    deploy:
      replicas: 2
      placement:
        constraints: [node.hostname != h3]
      resources:
        limits: {{cpus: "0.5", memory: 64M}}
      restart_policy: {{condition: on-failure, delay: 1s, max_attempts: 3}}
      update_config: {{parallelism: 1, delay: 1s}}
    healthcheck:
      test: ["CMD", "true"]
      interval: 2s
    secrets: [token]
    configs:
      - source: settings
        target: /etc/settings.conf
    volumes:
      - data:/data
  client:
    image: {IMAGE}
    command: ["sleep", "100000"]
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
"#
        ),
    )
    .expect("compose file");
    std::fs::write(dir.path().join("token.txt"), "t0ken-e2e").expect("secret file");
    std::fs::write(dir.path().join("settings.conf"), "mode=e2e").expect("config file");
    let file = compose.display().to_string();
    api(&c, 1, &["stack", "deploy", "-c", &file, "app"]).expect("stack deploy");
    let client = wait_for_or(
        "the stack's tasks to run",
        CONVERGE,
        || {
            let web = c.running_tasks("app_web");
            let client = c.running_tasks("app_client");
            (web.len() == 2 && client.len() == 1)
                .then(|| client[0]["container_id"].as_str().map(str::to_string))
                .flatten()
        },
        || state(&c),
    );
    let web_tasks: BTreeSet<String> = c
        .running_tasks("app_web")
        .iter()
        .filter_map(|t| Some(t["name"].as_str()?.to_string()))
        .collect();
    wait_for_or(
        "client to reach web by name",
        CONVERGE,
        || {
            let body = c
                .docker_for(&client, &["exec", &client, "wget", "-qO-", "http://web/"])
                .ok()?;
            web_tasks.contains(body.trim()).then_some(())
        },
        || state(&c),
    );
    // What the Compose file gave the web tasks is in their containers.
    let web_task = c.running_tasks("app_web")[0]["container_id"]
        .as_str()
        .map(str::to_string)
        .expect("a web container");
    let read = |path: &str| {
        c.docker_for(&web_task, &["exec", &web_task, "cat", path])
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    assert_eq!(read("/run/secrets/token"), "t0ken-e2e");
    assert_eq!(read("/etc/settings.conf"), "mode=e2e");
    let mounts = c
        .docker_for(
            &web_task,
            &[
                "inspect",
                "-f",
                "{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}{{.HostConfig.Memory}}",
                &web_task,
            ],
        )
        .expect("inspect");
    assert!(mounts.contains("app_data:/data"), "{mounts}");
    assert!(mounts.ends_with(&(64u64 << 20).to_string()), "{mounts}");
    for h in 1..=3 {
        let url = format!("http://{}:8081/", c.host_ip(h));
        wait_for_or(
            &format!("{url} to answer"),
            CONVERGE,
            || c.http_get(1, &url).ok(),
            || state(&c),
        );
    }
    api(&c, 1, &["stack", "rm", "app"]).expect("stack rm");
    let left = api(
        &c,
        1,
        &[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.stack.namespace=app",
        ],
    )
    .expect("network ls");
    assert_eq!(left, "", "the stack's network is removed");
}
