//! The browser view in a real browser: headless Chromium (Debian's) runs in
//! host h1's namespace of a 3-host namespace cluster and opens h1's view
//! (`swarmd --web-addr 127.0.0.1:9900`). The page lists the 3 nodes with
//! their roles; `service create --replicas 3` shows 3 running cards within
//! a second of the tasks running; a killed host's column turns down and its
//! cards move to the others; the browser asked nothing of another origin
//! (its network log); a screenshot is saved under target/artifacts/.
//! Needs root and Debian's docker.io and chromium.

use std::time::{Duration, Instant};

use serde_json::Value;
use swarmlet_tests::browser::{Browser, CHROMIUM};
use swarmlet_tests::e2e::NsCluster;

const PAGE: &str = "http://127.0.0.1:9900/";
const IMAGE: &str = "swarmlet-demo:latest";

/// Nodes as the page shows them: hostname, role, status.
const NODES: &str = "JSON.stringify([...document.querySelectorAll('[data-node]')].map(n => [n.dataset.node, n.dataset.role, n.dataset.status]))";

/// Running `web` cards per node, as the page shows them.
const WEB_CARDS: &str = "JSON.stringify([...document.querySelectorAll('[data-node]')].map(n => [n.dataset.node, n.querySelectorAll('.card.running[data-service=web]').length]))";

/// The browser, driven from this synchronous test.
struct Page {
    rt: tokio::runtime::Runtime,
    b: Option<Browser>,
}

impl Page {
    fn eval(&mut self, expression: &str) -> Value {
        let b = self.b.as_mut().expect("browser");
        self.rt.block_on(b.eval(expression)).unwrap_or(Value::Null)
    }

    /// Polls `expression` until `done`; its value.
    fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        expression: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = parse(&self.eval(expression));
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for the page to show {what}; last: {v:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // The browser's process group ends here, inside the runtime.
        let _guard = self.rt.enter();
        self.b.take();
    }
}

fn parse(v: &Value) -> Vec<Value> {
    v.as_str()
        .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
        .unwrap_or_default()
}

fn running_cards(v: &[Value]) -> u64 {
    v.iter().map(|n| n[1].as_u64().unwrap_or(0)).sum()
}

#[test]
fn the_browser_shows_the_cluster_live() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} missing: deploy/setup.sh installs chromium"
    );
    let c = NsCluster::up_env(
        "swweb",
        "10.225.0",
        3,
        &[("SWARMD_ARGS", "--web-addr 127.0.0.1:9900")],
    )
    .expect("cluster up");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let browser = rt
        .block_on(Browser::launch(&c.host_ns(1)))
        .expect("chromium starts");
    let mut page = Page {
        rt,
        b: Some(browser),
    };
    {
        let Page { rt, b } = &mut page;
        rt.block_on(b.as_mut().expect("browser").navigate(PAGE))
            .expect("the page loads");
    }

    // Three nodes with their roles (h1–h3 are managers).
    let nodes = page.until("3 nodes", Duration::from_secs(20), NODES, |v| v.len() == 3);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n[0], format!("h{}", i + 1), "{nodes:?}");
        assert_eq!(n[1], "manager", "{nodes:?}");
        assert_eq!(n[2], "ready", "{nodes:?}");
    }

    // Three running cards within a second of the tasks running.
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
            IMAGE,
        ],
    )
    .expect("service create");
    let deadline = Instant::now() + Duration::from_secs(90);
    while c.running_tasks("web").len() != 3 {
        assert!(Instant::now() < deadline, "web never ran 3 tasks");
        std::thread::sleep(Duration::from_millis(20));
    }
    let running_at = Instant::now();
    page.until(
        "3 running web cards",
        Duration::from_secs(10),
        WEB_CARDS,
        |v| running_cards(v) == 3,
    );
    let lag = running_at.elapsed();
    assert!(
        lag < Duration::from_secs(1),
        "the page showed them {lag:?} after they ran"
    );

    // h3 dies: its column turns down and its cards move to h1 and h2.
    c.script(&["kill", "3"]).expect("kill h3");
    page.until("h3 down", Duration::from_secs(30), NODES, |v| {
        v.iter().any(|n| n[0] == "h3" && n[2] == "down")
    });
    page.until(
        "3 running web cards on h1 and h2",
        Duration::from_secs(60),
        WEB_CARDS,
        |v| running_cards(v) == 3 && v.iter().all(|n| n[0] != "h3" || n[1].as_u64() == Some(0)),
    );

    // Nothing asked of another origin.
    let urls = page.b.as_ref().expect("browser").requested_urls();
    assert!(!urls.is_empty(), "the network log recorded the page");
    for u in &urls {
        assert!(
            u.starts_with(PAGE),
            "a request left for another origin: {u}"
        );
    }

    // The screenshot, as an artifact of the run.
    let png = {
        let Page { rt, b } = &mut page;
        rt.block_on(b.as_mut().expect("browser").screenshot())
            .expect("screenshot")
    };
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    let path = dir.join("web_e2e.png");
    std::fs::write(&path, &png).expect("screenshot written");
    println!("screenshot: {}", path.display());
}
