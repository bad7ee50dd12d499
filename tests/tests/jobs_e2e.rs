//! End to end with real Docker (a namespace host with its own engine):
//! jobs run to completion. A replicated job of 5 with `--max-concurrent 2`
//! completes, never running more than 2 tasks at once, and `service create`
//! without `-d` waits for it; a job whose task fails exits the create
//! non-zero; `service update --force` runs a job again; a global job runs
//! once per node. Runs as root (deploy/test.sh).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmlet_tests::e2e::{wait_for, NsCluster};

const IMAGE: &str = "swarmlet-demo:latest";

/// The tasks of `service` in `state` (by `service ps`).
fn count(c: &NsCluster, service: &str, state: &str) -> usize {
    c.json(1, &["service", "ps", service])
        .ok()
        .and_then(|v| v.as_array().cloned())
        .map(|tasks| tasks.iter().filter(|t| t["current_state"] == state).count())
        .unwrap_or(0)
}

#[test]
fn jobs_run_to_completion() {
    let c = Arc::new(NsCluster::up_engines("swjob", "10.223.0", 2, &[]).expect("cluster up"));

    // Watch how many tasks run at once while the job goes.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (c, done, most) = (c.clone(), done.clone(), most.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let running = count(&c, "batch", "running");
                most.fetch_max(running, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    let out = c
        .ctl(
            1,
            &[
                "service",
                "create",
                "--name",
                "batch",
                "--mode",
                "replicated-job",
                "--replicas",
                "5",
                "--max-concurrent",
                "2",
                IMAGE,
                "sh",
                "-c",
                "sleep 2",
            ],
        )
        .expect("the job completes");
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    assert_eq!(count(&c, "batch", "complete"), 5, "{out}");
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 2, "at most 2 at once, saw {most}");
    assert!(most >= 1, "the watcher saw tasks run");
    // 5 tasks of 2 s, 2 at a time: at least 3 rounds.
    assert!(took >= Duration::from_secs(6), "took {took:?}");
    let ls = c.ctl(1, &["service", "ls"]).expect("ls");
    assert!(ls.contains("(5/5 completed)"), "{ls}");

    // update --force runs it again: 5 more completions.
    c.ctl(1, &["service", "update", "--force", "batch"])
        .expect("runs again");
    wait_for("the second run", Duration::from_secs(60), || {
        (count(&c, "batch", "complete") >= 10).then_some(())
    });

    // A global job: once on each of the 2 nodes.
    c.ctl(
        1,
        &[
            "service",
            "create",
            "--name",
            "each",
            "--mode",
            "global-job",
            IMAGE,
            "true",
        ],
    )
    .expect("global job");
    let nodes: std::collections::HashSet<String> = c
        .json(1, &["service", "ps", "each"])
        .expect("ps")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|t| t["current_state"] == "complete")
        .filter_map(|t| t["node"].as_str().map(str::to_string))
        .collect();
    assert_eq!(nodes.len(), 2, "{nodes:?}");

    // A job whose task fails: create exits non-zero, naming the failure.
    let e = c
        .ctl(
            1,
            &[
                "service",
                "create",
                "--name",
                "broken",
                "--mode",
                "replicated-job",
                "--restart-max-attempts",
                "1",
                IMAGE,
                "sh",
                "-c",
                "exit 3",
            ],
        )
        .expect_err("the job fails");
    let msg = format!("{e:#}");
    assert!(msg.contains("job broken failed"), "{msg}");
    assert!(msg.contains("non-zero exit (3)"), "{msg}");

    // Bad input: --max-concurrent outside a replicated job.
    let e = c
        .ctl(
            1,
            &[
                "service",
                "create",
                "-d",
                "--name",
                "x",
                "--max-concurrent",
                "2",
                IMAGE,
            ],
        )
        .expect_err("refused");
    assert!(format!("{e:#}").contains("replicated-job"), "{e:#}");
}
