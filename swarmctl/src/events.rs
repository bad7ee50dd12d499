//! `swarmctl events [--since DUR]`: the cluster's changes as they happen,
//! one line each (`--format json`: one JSON object each), until interrupted.

use std::time::Duration;

use clap::Args;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{Event, EventsRequest};

use crate::globals::{Format, Globals};
use crate::output::{connect, status};

/// `swarmctl events …`
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Also show the events of this recent past first (e.g. 10m, 1h30m).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
}

/// An RFC 3339 time with milliseconds.
fn time_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// `2026-11-26T00:39:00.123Z service create <id> (name=web)`, as `docker
/// events` prints.
fn line(e: &Event) -> String {
    let mut attrs: Vec<(&String, &String)> = e.attributes.iter().collect();
    attrs.sort();
    let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut out = format!("{} {} {} {}", time_ms(e.time_ms), e.r#type, e.action, e.id);
    if !attrs.is_empty() {
        out.push_str(&format!(" ({})", attrs.join(", ")));
    }
    out
}

fn json(e: &Event) -> serde_json::Value {
    serde_json::json!({
        "time": time_ms(e.time_ms),
        "type": e.r#type,
        "action": e.action,
        "id": e.id,
        "attributes": e.attributes,
    })
}

/// Runs `swarmctl events`.
pub async fn run(cli: &Globals, args: &EventsArgs) -> anyhow::Result<()> {
    let since_ms = match args.since {
        Some(d) => {
            let from = std::time::SystemTime::now()
                .checked_sub(d)
                .unwrap_or(std::time::UNIX_EPOCH);
            let ms = from
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            i64::try_from(ms).unwrap_or(i64::MAX).max(1)
        }
        None => 0,
    };
    let mut client = ControlClient::new(connect(&cli.host)?).with_limits();
    let mut events = client
        .events(EventsRequest { since_ms })
        .await
        .map_err(status)?
        .into_inner();
    while let Some(e) = events.message().await.map_err(status)? {
        match cli.format {
            Format::Json => crate::output::json(&json(&e)),
            Format::Table => println!("{}", line(&e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_object() {
        let mut e = Event {
            time_ms: 1_700_000_000_123,
            r#type: "service".into(),
            action: "create".into(),
            id: "abc".into(),
            ..Default::default()
        };
        e.attributes.insert("name".into(), "web".into());
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20.123Z service create abc (name=web)"
        );
        assert_eq!(json(&e)["attributes"]["name"], "web");
    }
}
