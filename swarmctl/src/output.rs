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

/// A duration as Docker words it (go-units' `HumanDuration`): `Less than
/// a second`, `5 seconds`, `About a minute`, `2 minutes`, `About an hour`,
/// `3 hours`, `4 days`, `2 weeks`, `3 months`, `2 years`.
pub fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let minutes = secs / 60;
    // Hours rounded to the nearest, as Go's `d.Round(time.Hour)`.
    let hours = (ms.max(0) + 1_800_000) / 3_600_000;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", ms / 3_600_000 / 24 / 365),
    }
}

/// `Running 2 minutes ago`: a state (capitalised) and how long ago it began.
pub fn state_since(state: &str, since_ms: i64, now_ms: i64) -> String {
    let mut chars = state.chars();
    let capital: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{capital} {} ago", human_duration(now_ms - since_ms))
}

/// Formats a millisecond timestamp as RFC 3339.
pub fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_dockers() {
        let cases = [
            (0, "Less than a second"),
            (1_500, "1 second"),
            (45_000, "45 seconds"),
            (61_000, "About a minute"),
            (150_000, "2 minutes"),
            (3_700_000, "About an hour"),
            (5 * 3_600_000, "5 hours"),
            (3 * 86_400_000, "3 days"),
            (20 * 86_400_000, "2 weeks"),
            (100 * 86_400_000, "3 months"),
            (800 * 86_400_000, "2 years"),
        ];
        for (ms, want) in cases {
            assert_eq!(human_duration(ms), want, "{ms} ms");
        }
        assert_eq!(
            state_since("running", 1_000, 121_000),
            "Running 2 minutes ago"
        );
    }
}
