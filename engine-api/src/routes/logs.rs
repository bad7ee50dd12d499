//! `/services/{id}/logs` and `/tasks/{id}/logs`: the tasks' output in
//! Docker's stream framing (an 8-byte header per frame: stream 1 stdout or
//! 2 stderr, three zero bytes, the payload length big-endian; no framing
//! for a TTY service), one line per frame. With `details=1` each line
//! starts with `com.docker.swarm.node.id=…,com.docker.swarm.service.id=…,
//! com.docker.swarm.task.id=…` and a space, which the CLI turns into its
//! `name.slot.id@node |` prefix; with `timestamps=1` a timestamp (when the
//! manager received the line) comes first.
//!
//! `since` is not supported (the nodes read from the start or the tail).

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use swarmlet_proto::logs::LogLine;

use super::{flag, Query};
use crate::backend::Backend;
use crate::error::{ApiError, ApiResult};

/// What a line is tagged with.
#[derive(Clone)]
struct Context {
    node_id: String,
    service_id: String,
    task_id: String,
}

/// How lines are written.
#[derive(Clone, Copy)]
struct Format {
    multiplexed: bool,
    details: bool,
    timestamps: bool,
    stdout: bool,
    stderr: bool,
}

/// One line as a frame.
fn frame(f: Format, stderr: bool, ctx: Option<&Context>, line: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(line.len() + 128);
    if f.timestamps {
        let now = std::time::SystemTime::now();
        payload.extend_from_slice(humantime::format_rfc3339_nanos(now).to_string().as_bytes());
        payload.push(b' ');
    }
    if f.details {
        if let Some(c) = ctx {
            payload.extend_from_slice(
                format!(
                    "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={} ",
                    c.node_id, c.service_id, c.task_id
                )
                .as_bytes(),
            );
        }
    }
    payload.extend_from_slice(line);
    if !f.multiplexed {
        return payload;
    }
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(if stderr { 2 } else { 1 });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The frames of one chunk from a node (split into lines).
fn frames(f: Format, line: &LogLine, ctx: Option<&Context>) -> Vec<u8> {
    if (line.stderr && !f.stderr) || (!line.stderr && !f.stdout) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for piece in line.data.split_inclusive(|b| *b == b'\n') {
        out.extend(frame(f, line.stderr, ctx, piece));
    }
    out
}

fn tail_of(q: &HashMap<String, String>) -> ApiResult<i64> {
    match q.get("tail").map(String::as_str) {
        None | Some("") | Some("all") => Ok(-1),
        Some(n) => n
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid tail {n:?}: a number or all"))),
    }
}

/// Streams the logs of `service_ref`'s tasks (only `task_id`'s if given).
async fn stream(
    b: &Backend,
    service_ref: &str,
    task_id: Option<&str>,
    q: &HashMap<String, String>,
) -> ApiResult<Response> {
    let service = b.service(service_ref).await?;
    let tty = service.spec.as_ref().is_some_and(|s| s.tty);
    let f = Format {
        multiplexed: !tty,
        details: flag(q, "details"),
        timestamps: flag(q, "timestamps"),
        stdout: flag(q, "stdout"),
        stderr: flag(q, "stderr"),
    };
    if !f.stdout && !f.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tasks = b.tasks(&service.id, "").await?;
    let nodes = b.nodes().await?;
    let node_by_host: HashMap<String, String> = nodes
        .iter()
        .map(|n| (n.hostname.clone(), n.id.clone()))
        .collect();
    let mut by_container: HashMap<String, Context> = HashMap::new();
    let mut by_node: HashMap<String, Context> = HashMap::new();
    for t in tasks.iter().filter_map(|i| i.task.as_ref()) {
        let ctx = Context {
            node_id: t.node_id.clone(),
            service_id: t.service_id.clone(),
            task_id: t.id.clone(),
        };
        if let Some(c) = t.status.as_ref().map(|s| s.container_id.clone()) {
            if !c.is_empty() && task_id.is_none_or(|id| id == t.id) {
                by_container.insert(c, ctx.clone());
            }
        }
        by_node.entry(t.node_id.clone()).or_insert(ctx);
    }
    let lines = b
        .service_logs(&service.id, flag(q, "follow"), tail_of(q)?)
        .await?;
    let only_task = task_id.is_some();
    let body = lines.filter_map(move |line| {
        let out = match line {
            Ok(l) if l.unreadable => {
                // A node that could not be read: its message, tagged with a
                // task of that node so that the CLI can name it.
                let host = l.source.rsplit('@').next().unwrap_or_default();
                let ctx = node_by_host.get(host).and_then(|n| by_node.get(n));
                Some(Ok::<_, std::io::Error>(Bytes::from(frames(f, &l, ctx))))
            }
            Ok(l) => match by_container.get(&l.container_id) {
                Some(ctx) => Some(Ok(Bytes::from(frames(f, &l, Some(ctx))))),
                None if only_task => None,
                None => Some(Ok(Bytes::from(frames(f, &l, None)))),
            },
            Err(e) => Some(Err(std::io::Error::other(e.message().to_string()))),
        };
        std::future::ready(out)
    });
    let content_type = if f.multiplexed {
        "application/vnd.docker.multiplexed-stream"
    } else {
        "application/vnd.docker.raw-stream"
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /services/{id}/logs`.
pub async fn service(
    State(b): State<Backend>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    stream(&b, &id, None, &q).await
}

/// `GET /tasks/{id}/logs`.
pub async fn task(
    State(b): State<Backend>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let t = b.task(&id).await?;
    let t = t.task.unwrap_or_default();
    stream(&b, &t.service_id, Some(&t.id), &q).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_stream_and_length() {
        let f = Format {
            multiplexed: true,
            details: true,
            timestamps: false,
            stdout: true,
            stderr: true,
        };
        let ctx = Context {
            node_id: "n".into(),
            service_id: "s".into(),
            task_id: "t".into(),
        };
        let line = LogLine {
            data: b"a\nb\n".to_vec(),
            stderr: true,
            ..Default::default()
        };
        let out = frames(f, &line, Some(&ctx));
        let first = b"com.docker.swarm.node.id=n,com.docker.swarm.service.id=s,com.docker.swarm.task.id=t a\n";
        assert_eq!(out[0], 2, "stderr");
        assert_eq!(&out[4..8], &(first.len() as u32).to_be_bytes());
        assert_eq!(&out[8..8 + first.len()], first);
        assert_eq!(out.len(), 2 * (8 + first.len()), "one frame per line");
        let only_stdout = Format { stderr: false, ..f };
        assert!(frames(only_stdout, &line, Some(&ctx)).is_empty());
    }
}
