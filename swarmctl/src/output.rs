//! Connecting to the daemon, and printing tables, JSON and errors.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use tonic::transport::Channel;

/// A channel to the daemon named by `-H` (only `unix://` for now).
pub fn connect(host: &str) -> anyhow::Result<Channel> {
    let Some(path) = host.strip_prefix("unix://") else {
        bail!("unsupported host {host:?}: use unix:///path/to/swarmd.sock");
    };
    let path = PathBuf::from(path);
    if !path.exists() {
        bail!(
            "cannot connect to swarmd at {}: is it running?",
            path.display()
        );
    }
    Ok(swarmlet_common::grpc::unix_channel(&path))
}

/// A gRPC status as a one-line error.
pub fn status(s: tonic::Status) -> anyhow::Error {
    if s.code() == tonic::Code::Unavailable && s.message().contains("connect") {
        return anyhow!("cannot connect to swarmd: {}", s.message());
    }
    anyhow!("{}", s.message())
}

/// Collapses a message to one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints rows as an aligned table under `headers`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{:<w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Prints a JSON value on one line.
pub fn json(v: &serde_json::Value) {
    println!("{v}");
}

/// Formats a millisecond timestamp as RFC 3339.
pub fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
