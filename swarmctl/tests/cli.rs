//! The `swarmctl` binary against in-process daemons: output formats, exit
//! codes and one-line errors, as SPEC.md states them.

use std::process::Output;

use swarmlet_tests::{files_containing, InProcessNode};

fn swarmctl(node: &InProcessNode, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .arg("-H")
        .arg(format!("unix://{}", node.socket.display()))
        .args(args)
        .output()
        .expect("swarmctl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs `args` expecting failure with one stderr line containing `needle`.
fn fails_with(node: &InProcessNode, args: &[&str], needle: &str) {
    let o = swarmctl(node, args);
    assert!(!o.status.success(), "{args:?} should fail");
    let err = stderr(&o);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error for {args:?}: {err}"
    );
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout for a failed {args:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_and_node_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = InProcessNode::new(dir.path(), "alpha");
    let mut b = InProcessNode::new(dir.path(), "beta");
    a.start().await.expect("start");
    b.start().await.expect("start");

    // Not joined yet.
    fails_with(&a, &["node", "ls"], "not a swarm manager");
    let init = swarmctl(&a, &["cluster", "init", "--advertise-addr", &a.addr]);
    assert!(init.status.success(), "{}", stderr(&init));
    assert!(stdout(&init).contains("swarmctl node join --token SWMTKN-1-"));
    fails_with(&a, &["cluster", "init"], "already part of a swarm");

    let token = swarmctl(&a, &["cluster", "join-token", "worker", "-q"]);
    let token = stdout(&token).trim().to_string();
    assert!(token.starts_with("SWMTKN-1-"));
    fails_with(
        &b,
        &["node", "join", "--token", "SWMTKN-1-bad", &a.addr],
        "invalid join token",
    );
    fails_with(
        &b,
        &["node", "join", "--token", &token, "127.0.0.1:1"],
        "unreachable",
    );
    let join = swarmctl(&b, &["node", "join", "--token", &token, &a.addr]);
    assert!(join.status.success(), "{}", stderr(&join));

    // ls --format json (global option after the subcommand) has SPEC's keys.
    let ls = swarmctl(&a, &["node", "ls", "--format", "json"]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    let nodes: serde_json::Value =
        serde_json::from_str(stdout(&ls).trim()).expect("one JSON array");
    let nodes = nodes.as_array().expect("array");
    assert_eq!(nodes.len(), 2);
    for key in [
        "id",
        "hostname",
        "role",
        "status",
        "availability",
        "manager_status",
        "addr",
        "labels",
    ] {
        assert!(nodes[0].get(key).is_some(), "key {key} in {}", nodes[0]);
    }
    let alpha = nodes
        .iter()
        .find(|n| n["hostname"] == "alpha")
        .expect("alpha");
    assert_eq!(alpha["role"], "manager");
    assert_eq!(alpha["manager_status"], "leader");
    let beta = nodes
        .iter()
        .find(|n| n["hostname"] == "beta")
        .expect("beta");
    assert!(beta["manager_status"].is_null());

    // update, inspect by hostname and by ID prefix.
    let up = swarmctl(
        &a,
        &[
            "node",
            "update",
            "--availability",
            "drain",
            "--label-add",
            "zone=a",
            "beta",
        ],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let id = beta["id"].as_str().expect("id");
    let insp = swarmctl(&a, &["--format", "json", "node", "inspect", &id[..6]]);
    let obj: serde_json::Value =
        serde_json::from_str(stdout(&insp).trim()).expect("one JSON object");
    assert_eq!(obj["availability"], "drain");
    assert_eq!(obj["labels"]["zone"], "a");

    // Bad input: one line, non-zero, nothing changed.
    fails_with(&a, &["node", "inspect", "nosuchnode"], "not found");
    fails_with(
        &a,
        &["node", "update", "--availability", "sideways", "beta"],
        "invalid availability",
    );
    fails_with(&a, &["node", "rm", "beta"], "not down");
    fails_with(&a, &["node", "demote", "alpha"], "last manager");
    fails_with(
        &a,
        &["cluster", "update", "--heartbeat-period", "soon"],
        "invalid --heartbeat-period",
    );
    fails_with(&a, &["cluster", "join-token", "boss"], "unknown role");
    // A lifetime shorter than Docker's minimum could lock nodes out for good.
    fails_with(
        &a,
        &["cluster", "update", "--cert-expiry", "59m"],
        "certificate expiry must be at least 1h",
    );
    let ls = swarmctl(&a, &["node", "ls", "--format", "json"]);
    let after: serde_json::Value = serde_json::from_str(stdout(&ls).trim()).expect("json");
    assert_eq!(after.as_array().map(Vec::len), Some(2));

    // cluster inspect and update.
    let upd = swarmctl(&a, &["cluster", "update", "--heartbeat-period", "2s"]);
    assert!(upd.status.success(), "{}", stderr(&upd));
    let insp = swarmctl(&a, &["cluster", "inspect"]);
    let c: serde_json::Value = serde_json::from_str(&stdout(&insp)).expect("json object");
    assert_eq!(c["heartbeat_period_ms"], 2000);
    assert!(c.get("root_ca_key_pem").is_none() && !stdout(&insp).contains("PRIVATE KEY"));

    // The state at rest is root's alone, from creation: the state dirs
    // 0700, every directory in them 0700 and every file 0600, the control
    // socket 0600.
    for node in [&a, &b] {
        assert_private(&node.state_dir);
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(&node.socket).expect("socket").mode() & 0o777;
        assert_eq!(mode, 0o600, "control socket {}", node.socket.display());
    }

    // Autolock: the key is shown when it is turned on and by unlock-key.
    fails_with(&a, &["cluster", "unlock-key"], "no unlock key is set");
    let on = swarmctl(&a, &["cluster", "update", "--autolock=true"]);
    assert!(on.status.success(), "{}", stderr(&on));
    let shown = stdout(&on);
    let key = shown
        .split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no key in {shown}"))
        .to_string();
    let q = swarmctl(&a, &["cluster", "unlock-key", "-q"]);
    assert_eq!(stdout(&q).trim(), key);
    let insp = swarmctl(&a, &["cluster", "inspect"]);
    assert!(
        stdout(&insp).contains("\"autolock\": true"),
        "{}",
        stdout(&insp)
    );
    assert!(!stdout(&insp).contains(&key), "the key is not in inspect");
    let mut unlock = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .arg("-H")
        .arg(format!("unix://{}", a.socket.display()))
        .args(["cluster", "unlock"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut stdin) = unlock.stdin.take() {
        use std::io::Write;
        let _ = writeln!(stdin, "{key}");
    }
    let out = unlock.wait_with_output().expect("unlock");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not locked"), "{}", stderr(&out));
    let off = swarmctl(&a, &["cluster", "update", "--autolock=false"]);
    assert!(off.status.success(), "{}", stderr(&off));
    fails_with(&a, &["cluster", "unlock-key"], "no unlock key is set");

    // node ps validates the node; empty until services exist.
    let ps = swarmctl(&a, &["node", "ps", "beta", "--format", "json"]);
    assert_eq!(stdout(&ps).trim(), "[]");

    // A worker leaves; the manager needs --force.
    fails_with(&a, &["node", "leave"], "--force");
    let leave = swarmctl(&b, &["node", "leave"]);
    assert!(leave.status.success(), "{}", stderr(&leave));

    b.stop().await;
    a.stop().await;
    // A daemon that is not running.
    fails_with(&a, &["node", "ls"], "cannot connect to swarmd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = InProcessNode::new(dir.path(), "alpha");
    a.tune = |c| c.executor = swarmlet_tests::ExecutorKind::Sim;
    a.start().await.expect("start");
    let init = swarmctl(&a, &["cluster", "init"]);
    assert!(init.status.success(), "{}", stderr(&init));

    let create = swarmctl(
        &a,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "sim/app",
            "serve",
            "--port",
            "80",
        ],
    );
    assert!(create.status.success(), "{}", stderr(&create));
    let id = stdout(&create).trim().to_string();
    assert_eq!(id.len(), 25, "create -d prints the service ID: {id}");

    // Without -d, create waits until the service converged.
    let create = swarmctl(
        &a,
        &[
            "service",
            "create",
            "--name",
            "api",
            "--replicas",
            "3",
            "sim/app",
        ],
    );
    assert!(create.status.success(), "{}", stderr(&create));
    let ls = swarmctl(&a, &["service", "ls", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(stdout(&ls).trim()).expect("json array");
    let api = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "api"))
        .expect("api listed");
    for key in [
        "id",
        "name",
        "mode",
        "replicas_running",
        "replicas_desired",
        "image",
        "ports",
    ] {
        assert!(api.get(key).is_some(), "key {key} in {api}");
    }
    assert_eq!(api["replicas_running"], 3);
    assert_eq!(api["mode"], "replicated");

    let ps = swarmctl(&a, &["service", "ps", "api", "--format", "json"]);
    let tasks: serde_json::Value = serde_json::from_str(stdout(&ps).trim()).expect("json array");
    let t = &tasks.as_array().expect("array")[0];
    for key in [
        "id",
        "name",
        "service",
        "slot",
        "node",
        "node_id",
        "desired_state",
        "current_state",
        "error",
        "container_id",
        "addresses",
    ] {
        assert!(t.get(key).is_some(), "key {key} in {t}");
    }
    assert_eq!(t["current_state"], "running");
    assert_eq!(t["node"], "alpha");
    assert!(t["name"].as_str().is_some_and(|n| n.starts_with("api.")));

    let scale = swarmctl(&a, &["service", "scale", "api=1"]);
    assert!(scale.status.success(), "{}", stderr(&scale));
    let ls = swarmctl(&a, &["service", "ls", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(stdout(&ls).trim()).expect("json");
    let api = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "api"))
        .expect("api");
    assert_eq!(api["replicas_desired"], 1);

    fails_with(
        &a,
        &[
            "service",
            "create",
            "--mode",
            "global",
            "--replicas",
            "2",
            "sim/app",
        ],
        "replicated mode",
    );
    fails_with(
        &a,
        &[
            "service",
            "create",
            "--constraint",
            "node.color=blue",
            "sim/app",
        ],
        "invalid constraint",
    );
    fails_with(
        &a,
        &["service", "create", "--name", "web", "sim/app"],
        "already exists",
    );
    fails_with(&a, &["service", "inspect", "nosuch"], "not found");
    fails_with(
        &a,
        &["service", "scale", "api=lots"],
        "invalid replica count",
    );
    fails_with(
        &a,
        &["service", "create", "--reserve-memory", "lots", "sim/app"],
        "invalid --reserve-memory",
    );

    let rm = swarmctl(&a, &["service", "rm", "web", "api"]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    let ls = swarmctl(&a, &["service", "ls", "--format", "json"]);
    assert_eq!(stdout(&ls).trim(), "[]");
    a.stop().await;
}

/// What bash completes for the words of `line` (the last one being typed),
/// with the script `swarmctl completion bash` prints loaded.
fn bash_completes(script: &std::path::Path, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "source {script}\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\n\
         COMP_LINE='{line}'\nCOMP_POINT={point}\n\
         _swarmctl swarmctl '{cur}' '{prev}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = words.join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len().saturating_sub(2)],
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("swarmctl.bash");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(["completion", "bash"])
        .output()
        .expect("swarmctl runs");
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).expect("write script");
    // The script parses.
    let parse = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .expect("bash runs");
    assert!(parse.success());

    assert_eq!(bash_completes(&script, "swarmctl serv"), vec!["service"]);
    let service = bash_completes(&script, "swarmctl service ");
    for sub in ["create", "ls", "ps", "rm", "scale", "update", "inspect"] {
        assert!(service.contains(&sub.to_string()), "{sub} in {service:?}");
    }
    assert!(bash_completes(&script, "swarmctl service create --repl")
        .contains(&"--replicas".to_string()));

    // zsh and fish scripts are produced too.
    for shell in ["zsh", "fish"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
            .args(["completion", shell])
            .output()
            .expect("swarmctl runs");
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
}

/// Reads JSON event lines from a running `swarmctl events` until `want`
/// (type, action, attribute name) were all seen, or the deadline passes.
fn wait_for_events(
    lines: &std::sync::mpsc::Receiver<String>,
    want: &[(&str, &str, &str)],
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    let missing = |seen: &[serde_json::Value]| {
        want.iter()
            .filter(|(t, a, name)| {
                !seen.iter().any(|e| {
                    e["type"] == *t
                        && e["action"] == *a
                        && (name.is_empty() || e["attributes"]["name"] == *name)
                })
            })
            .count()
    };
    while missing(&seen) > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => seen.push(serde_json::from_str(&l).expect("one JSON object per line")),
            Err(_) => panic!("events {want:?} not all seen; got {seen:?}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_follow_a_service_create_scale_and_rm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = InProcessNode::new(dir.path(), "alpha");
    a.tune = |c| c.executor = swarmlet_tests::ExecutorKind::Sim;
    a.start().await.expect("start");
    assert!(swarmctl(&a, &["cluster", "init"]).status.success());

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .arg("-H")
        .arg(format!("unix://{}", a.socket.display()))
        .args(["events", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("swarmctl events runs");
    let out = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });

    // The stream is live once a change made after it started shows up.
    wait_until_events_flow(&a, &lines);
    let create = swarmctl(
        &a,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "evt",
            "--replicas",
            "1",
            "sim/app",
        ],
    );
    assert!(create.status.success(), "{}", stderr(&create));
    let seen = wait_for_events(
        &lines,
        &[("service", "create", "evt"), ("task", "create", "")],
    );
    assert!(seen
        .iter()
        .all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
    assert!(swarmctl(&a, &["service", "scale", "-d", "evt=3"])
        .status
        .success());
    let seen = wait_for_events(&lines, &[("service", "update", "evt")]);
    assert!(!seen.is_empty());
    assert!(swarmctl(&a, &["service", "rm", "evt"]).status.success());
    wait_for_events(&lines, &[("service", "remove", "")]);

    // --since replays what was kept: the create shows up again at once.
    let replay = swarmctl_until_line(&a, &["events", "--since", "5m"], "service create");
    assert!(replay.contains("(name=evt)"), "{replay}");

    let _ = child.kill();
    let _ = child.wait();
    a.stop().await;
}

/// Labels this node until `swarmctl events` reports a node update.
fn wait_until_events_flow(a: &InProcessNode, lines: &std::sync::mpsc::Receiver<String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(
            swarmctl(a, &["node", "update", "--label-add", "probe=1", "alpha"])
                .status
                .success()
        );
        if let Ok(l) = lines.recv_timeout(std::time::Duration::from_millis(500)) {
            if l.contains("\"node\"") {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no events at all");
    }
}

/// Runs `swarmctl args` until a stdout line contains `needle`; that line.
fn swarmctl_until_line(a: &InProcessNode, args: &[&str], needle: &str) -> String {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .arg("-H")
        .arg(format!("unix://{}", a.socket.display()))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("swarmctl runs");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let found = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => break l,
            Ok(_) => {}
            Err(_) => break String::new(),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(!found.is_empty(), "{args:?}: no line with {needle:?}");
    found
}

/// swarmctl with `input` on stdin.
fn swarmctl_stdin(node: &InProcessNode, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .arg("-H")
        .arg(format!("unix://{}", node.socket.display()))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("swarmctl runs");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("stdin");
    }
    child.wait_with_output().expect("swarmctl ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secret_and_config_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = InProcessNode::new(dir.path(), "alpha");
    a.tune = |c| c.executor = swarmlet_tests::ExecutorKind::Sim;
    a.start().await.expect("start");
    assert!(swarmctl(&a, &["cluster", "init"]).status.success());

    let value = b"correct horse battery staple";
    let created = swarmctl_stdin(&a, &["secret", "create", "db", "-"], value);
    assert!(created.status.success(), "{}", stderr(&created));
    let id = stdout(&created).trim().to_string();
    assert_eq!(id.len(), 25, "{id}");
    let again = swarmctl_stdin(&a, &["secret", "create", "db", "-"], b"other");
    assert!(
        stderr(&again).contains("a secret named db already exists"),
        "{}",
        stderr(&again)
    );
    let empty = swarmctl_stdin(&a, &["secret", "create", "nothing", "-"], b"");
    assert!(!empty.status.success() && stderr(&empty).contains("is empty"));
    fails_with(
        &a,
        &["secret", "create", "bad/name", "/dev/null"],
        "invalid secret name",
    );
    fails_with(
        &a,
        &["secret", "create", "x", "/nonexistent/file"],
        "cannot read",
    );
    let big = vec![b'x'; 600 * 1024];
    let too_big = swarmctl_stdin(&a, &["secret", "create", "big", "-"], &big);
    assert!(stderr(&too_big).contains("at most"), "{}", stderr(&too_big));

    let inspect = swarmctl(&a, &["secret", "inspect", "db"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&inspect)).expect("json");
    assert_eq!(
        (v["id"].as_str(), v["size"].as_u64()),
        (Some(id.as_str()), Some(value.len() as u64))
    );
    let ls = swarmctl(&a, &["secret", "ls"]);
    assert!(stdout(&ls).contains("db"));
    let cluster = swarmctl(&a, &["cluster", "inspect"]);
    for out in [stdout(&inspect), stdout(&ls), stdout(&cluster)] {
        assert!(!out.contains("correct horse"), "{out}");
        assert!(!out.contains("data_key"), "{out}");
    }
    // Sealed at rest: the Raft data never holds the bytes; the key file is
    // in the manager's state dir, readable by root only.
    assert!(files_containing(dir.path(), value).is_empty());
    let kek = a.state_dir.join("secrets.kek");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kek)
        .expect("secrets.kek")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let conf = swarmctl_stdin(&a, &["config", "create", "app", "-"], b"debug=1\n");
    assert!(conf.status.success(), "{}", stderr(&conf));
    assert!(stdout(&swarmctl(&a, &["config", "ls"])).contains("app"));
    assert!(!stdout(&swarmctl(&a, &["secret", "ls"])).contains("app"));

    fails_with(
        &a,
        &["service", "create", "-d", "--secret", "nope", "sim/app"],
        "secret nope not found",
    );
    fails_with(
        &a,
        &[
            "service",
            "create",
            "-d",
            "--secret",
            "db,target=/a",
            "--config",
            "app,target=/a",
            "sim/app",
        ],
        "both target /a",
    );
    let svc = swarmctl(
        &a,
        &[
            "service", "create", "-d", "--name", "api", "--secret", "db", "--config", "app",
            "sim/app",
        ],
    );
    assert!(svc.status.success(), "{}", stderr(&svc));
    let spec: serde_json::Value =
        serde_json::from_str(&stdout(&swarmctl(&a, &["service", "inspect", "api"]))).expect("json");
    let text = spec.to_string();
    assert!(
        text.contains("/run/secrets/db") && text.contains("\"/app\""),
        "{text}"
    );
    fails_with(
        &a,
        &["secret", "rm", "db"],
        "secret db is in use by service api",
    );
    fails_with(
        &a,
        &["config", "rm", "app"],
        "config app is in use by service api",
    );
    assert!(swarmctl(&a, &["service", "rm", "api"]).status.success());
    assert!(swarmctl(&a, &["secret", "rm", "db"]).status.success());
    assert!(swarmctl(&a, &["config", "rm", "app"]).status.success());
    fails_with(&a, &["secret", "inspect", "db"], "secret db not found");
    a.stop().await;
}

/// Asserts that `dir` and everything under it is 0700 (directories) or
/// 0600 (files).
fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).expect("stat");
    let mode = meta.mode() & 0o7777;
    if meta.is_dir() {
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        for entry in std::fs::read_dir(dir).expect("ls") {
            assert_private(&entry.expect("entry").path());
        }
    } else {
        assert_eq!(mode, 0o600, "{} is {mode:o}", dir.display());
    }
}

/// `swarmctl run` waits for its container's process to start, then reports
/// how it ended: a command that exits at once still "ran" (its exit code is
/// swarmctl's, as with `docker run`), while one that never starts is an
/// error with the reason. Decided by the task's status (`started`, exit
/// code), not by its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_reports_the_exit_code_or_why_it_did_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = InProcessNode::new(dir.path(), "alpha");
    a.tune = |c| c.executor = swarmlet_tests::ExecutorKind::Sim;
    a.start().await.expect("start");
    let init = swarmctl(&a, &["cluster", "init"]);
    assert!(init.status.success(), "{}", stderr(&init));

    let detached = swarmctl(&a, &["run", "-d", "sim/app"]);
    assert!(detached.status.success(), "{}", stderr(&detached));
    assert!(
        stdout(&detached).trim().starts_with("sim-"),
        "{}",
        stdout(&detached)
    );

    // sim/exit images exit with code 1 as soon as they start.
    let exited = swarmctl(&a, &["run", "sim/exit-now"]);
    assert_eq!(exited.status.code(), Some(1), "{}", stderr(&exited));
    assert!(
        stdout(&exited).contains("simulated task"),
        "{}",
        stdout(&exited)
    );

    // sim/reject images fail to start.
    fails_with(&a, &["run", "sim/reject"], "simulated start failure");
    a.stop().await;
}
