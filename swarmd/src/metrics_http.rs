//! `--metrics-addr`: Prometheus text on `GET /metrics` over plain HTTP/1.1.
//!
//! A scrape renders the process's in-place figures and, on a manager, the
//! gauges read from its copy of the cluster state. One request per
//! connection; anything but `GET /metrics` gets 404.

use std::sync::Arc;

use anyhow::Context;
use swarmlet_manager::api::grpc::ManagerSlot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// Scrapes answered at once; connections beyond are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its whole request head.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The text of one scrape.
pub fn render(managers: &ManagerSlot) -> String {
    let mut out = String::new();
    swarmlet_common::metrics::global().render(&mut out);
    if let Ok(m) = managers.get() {
        if let Err(e) = swarmlet_manager::metrics::render(&m, &mut out) {
            tracing::warn!("metrics: reading the cluster state: {e}");
        }
    }
    out
}

/// Binds `addr` (a clear error when it cannot) and serves until `shutdown`;
/// returns the bound address (port 0 resolved).
pub async fn start(
    addr: &str,
    managers: ManagerSlot,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!("metrics on http://{bound}/metrics");
    let managers = Arc::new(managers);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                accepted = listener.accept() => {
                    let Ok((conn, _)) = accepted else { continue };
                    // Closed at once beyond the cap: idle clients cannot
                    // take every file descriptor.
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        continue;
                    };
                    let managers = managers.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = answer(conn, &managers).await {
                            tracing::debug!("metrics request: {e}");
                        }
                    });
                }
            }
        }
    });
    Ok((bound, task))
}

async fn answer(mut conn: TcpStream, managers: &ManagerSlot) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    // One deadline for the whole head: a client dripping a byte at a time
    // is cut off as surely as a silent one.
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow client"))??;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = String::from_utf8_lossy(&head);
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next(), parts.next());
    let path = path.map(|p| p.split('?').next().unwrap_or(p));
    let (status, content_type, body) = match (method, path) {
        (Some("GET"), Some("/metrics")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(managers),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "only GET /metrics is served here\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}
