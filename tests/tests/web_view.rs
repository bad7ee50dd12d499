//! The browser view (`swarmd --web-addr`) on an in-process cluster of three
//! `sim` managers, over plain HTTP: the page and its assets come from the
//! daemon itself with a same-origin Content-Security-Policy, `/api/view`
//! lists the nodes with their roles and leader, the event stream pushes a
//! new view within a second of a service's tasks running, and a view bound
//! beyond loopback asks for the cluster's web token (query once, then an
//! HttpOnly cookie).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use swarmlet_proto::control::{CreateServiceRequest, ListTasksRequest, WebTokenRequest};
use swarmlet_proto::objects::ServiceSpec;
use swarmlet_tests::{form_cluster, wait_until, InProcessNode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn tune(c: &mut swarmd::config::DaemonConfig) {
    c.executor = swarmd::config::ExecutorKind::Sim;
    // The first node serves beyond loopback (a token is required), the
    // others on loopback.
    c.web_addr = Some(
        if c.hostname == "w0" {
            "0.0.0.0:0"
        } else {
            "127.0.0.1:0"
        }
        .into(),
    );
}

fn web_addr(n: &InProcessNode) -> SocketAddr {
    let bound = n
        .daemon
        .as_ref()
        .and_then(|d| d.web_addr)
        .expect("the web view is served");
    SocketAddr::from(([127, 0, 0, 1], bound.port()))
}

/// One HTTP/1.0 request: status line, headers and body.
async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n{cookie}\r\n").as_bytes())
        .await
        .expect("writes");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("reads");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_view_is_served_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = form_cluster(dir.path(), 3, 0, |i| format!("w{i}"), tune)
        .await
        .unwrap_or_else(|e| panic!("cluster forms: {e:#}"));
    let open = web_addr(&nodes[1]);

    // The page and its assets, from the daemon, same origin only.
    let (head, body) = get(open, "/", None).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains(r#"<script src="/app.js""#), "{body}");
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "no other origin"
    );
    for asset in ["/app.js", "/app.css"] {
        let (head, body) = get(open, asset, None).await;
        assert!(
            head.starts_with("HTTP/1.0 200") && !body.is_empty(),
            "{asset}: {head}"
        );
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{asset}: no other origin"
        );
    }

    // The view: three managers, one leader.
    let (head, body) = get(open, "/api/view", None).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("json");
    let listed = view["nodes"].as_array().expect("nodes");
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|n| n["role"] == "manager" && n["status"] == "ready"));
    assert_eq!(listed.iter().filter(|n| n["leader"] == true).count(), 1);

    // Live: a view with the service's 3 running tasks arrives within a
    // second of them running.
    let mut stream = tokio::net::TcpStream::connect(open)
        .await
        .expect("connects");
    stream
        .write_all(b"GET /api/events HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .expect("writes");
    let mut lines = BufReader::new(stream).lines();
    let seen = tokio::spawn(async move {
        let mut event = String::new();
        loop {
            let Ok(Some(line)) = lines.next_line().await else {
                return None;
            };
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_string();
            } else if let Some(data) = line.strip_prefix("data: ") {
                if event != "view" {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(data).ok()?;
                let running = v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|n| n["cards"].as_array().cloned().unwrap_or_default())
                    .filter(|c| c["service"] == "web" && c["state"] == "running")
                    .count();
                if running == 3 {
                    return Some(Instant::now());
                }
            }
        }
    });
    let mut control = nodes[0].control();
    control
        .create_service(CreateServiceRequest {
            spec: Some(ServiceSpec {
                name: "web".into(),
                image: "sim/app".into(),
                replicas: 3,
                ..Default::default()
            }),
        })
        .await
        .expect("service create");
    let running_at = wait_until("3 running tasks", Duration::from_secs(30), || {
        let mut c = control.clone();
        async move {
            let tasks = c
                .list_tasks(ListTasksRequest {
                    service: "web".into(),
                    node: String::new(),
                })
                .await
                .ok()?
                .into_inner()
                .tasks;
            let running = tasks
                .iter()
                .filter_map(|t| t.task.as_ref())
                .filter(|t| swarmlet_common::task_state::is_running(t))
                .count();
            (running == 3).then(Instant::now)
        }
    })
    .await;
    let shown_at = tokio::time::timeout(Duration::from_secs(10), seen)
        .await
        .expect("the page's stream shows them")
        .expect("stream task")
        .expect("a view with 3 running cards");
    let lag = shown_at.saturating_duration_since(running_at);
    assert!(lag < Duration::from_secs(1), "shown {lag:?} after running");

    // Beyond loopback: the token, once in the address, then as a cookie.
    let guarded = web_addr(&nodes[0]);
    let (head, _) = get(guarded, "/", None).await;
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");
    let (head, _) = get(guarded, "/api/view", None).await;
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");
    let token = control
        .get_web_token(WebTokenRequest { rotate: false })
        .await
        .expect("web token")
        .into_inner()
        .token;
    assert!(token.starts_with("SWMWEB-1-"), "{token}");
    let (head, _) = get(guarded, "/?token=SWMWEB-1-wrong", None).await;
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");
    let (head, _) = get(guarded, &format!("/?token={token}"), None).await;
    assert!(head.starts_with("HTTP/1.0 303"), "{head}");
    let lower = head.to_lowercase();
    assert!(lower.contains("set-cookie: swarmlet_web="), "{head}");
    assert!(lower.contains("httponly"), "{head}");
    let cookie = format!("swarmlet_web={token}");
    let (head, body) = get(guarded, "/api/view", Some(&cookie)).await;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(!body.contains(&token), "the token is never on the page");
    // A rotated token shuts the old one out.
    control
        .get_web_token(WebTokenRequest { rotate: true })
        .await
        .expect("rotates");
    let (head, _) = get(guarded, "/api/view", Some(&cookie)).await;
    assert!(head.starts_with("HTTP/1.0 401"), "{head}");

    for mut n in nodes {
        n.stop().await;
    }
}
