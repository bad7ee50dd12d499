//! Cluster events (`swarmctl events`): every change the store applies to a
//! node, service, task, network, secret or config, kept in memory.
//!
//! The store records each applied row change here ([`EventLog::record`]:
//! cheap, the row's bytes are kept as they are); a subscriber gets the
//! recent ones it asks for, then the live ones, and [`to_event`] turns a
//! row change into the API's [`Event`] (decoding the object for its name)
//! only when someone reads it. Every manager applies every entry, so any
//! manager serves the same events. The last [`KEPT`] events are kept for
//! `--since`; a restarted manager starts with none (Docker keeps 1,000).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use prost::Message;
use swarmlet_common::names::{role_name, status_name};
use swarmlet_common::task_state::state_name;
use swarmlet_proto::control::Event;
use swarmlet_proto::objects::{
    Network, Node, NodeRole, NodeStatus, Secret, Service, Task, TaskState,
};
use tokio::sync::broadcast;

/// Events kept for `--since`.
pub const KEPT: usize = 4096;

/// Live events a slow subscriber may fall behind by before it skips some.
const LIVE_BUFFER: usize = 1024;

/// The kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The row did not exist.
    Create,
    /// The row existed.
    Update,
    /// The row was deleted.
    Remove,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Remove => "remove",
        }
    }
}

/// One applied row change, as the store saw it.
#[derive(Debug)]
pub struct RowChange {
    /// Order of application on this manager.
    pub seq: u64,
    /// When it was applied (ms since the epoch).
    pub time_ms: i64,
    /// Store table.
    pub table: String,
    /// Row key (the object ID).
    pub key: String,
    /// What happened.
    pub action: Action,
    /// The object's new prost bytes (empty on remove).
    pub value: Vec<u8>,
}

/// The event type of a store table, for the tables that have events.
pub fn event_type(table: &str) -> Option<&'static str> {
    Some(match table {
        "nodes" => "node",
        "services" => "service",
        "tasks" => "task",
        "networks" => "network",
        "secrets" => "secret",
        "configs" => "config",
        _ => return None,
    })
}

#[derive(Default)]
struct Ring {
    next_seq: u64,
    kept: VecDeque<Arc<RowChange>>,
}

/// Recent events and the live feed.
pub struct EventLog {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<RowChange>>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            ring: Mutex::new(Ring::default()),
            live: broadcast::channel(LIVE_BUFFER).0,
        }
    }
}

impl EventLog {
    /// Records one applied change of `table` (ignored for tables without
    /// events).
    pub fn record(&self, table: &str, key: &str, action: Action, value: &[u8]) {
        if event_type(table).is_none() {
            return;
        }
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        ring.next_seq += 1;
        let change = Arc::new(RowChange {
            seq: ring.next_seq,
            time_ms: swarmlet_common::clock::now_ms(),
            table: table.to_string(),
            key: key.to_string(),
            action,
            value: value.to_vec(),
        });
        if ring.kept.len() == KEPT {
            ring.kept.pop_front();
        }
        ring.kept.push_back(change.clone());
        // Sent under the lock, so a subscriber's replay and its live feed
        // neither overlap nor leave a gap.
        let _ = self.live.send(change);
    }

    /// The kept events applied at or after `since_ms` (none when 0), and a
    /// receiver of every later one.
    pub fn subscribe(
        &self,
        since_ms: i64,
    ) -> (Vec<Arc<RowChange>>, broadcast::Receiver<Arc<RowChange>>) {
        let Ok(ring) = self.ring.lock() else {
            return (Vec::new(), self.live.subscribe());
        };
        let replay = if since_ms > 0 {
            ring.kept
                .iter()
                .filter(|c| c.time_ms >= since_ms)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        (replay, self.live.subscribe())
    }
}

/// The stream of `swarmctl events`: the kept events since `since_ms`, then
/// the live ones until the client goes. A client too slow for the live
/// feed skips what it missed (logged), as `docker events` does.
pub fn stream(log: &EventLog, since_ms: i64) -> futures::stream::BoxStream<'static, Event> {
    use futures::StreamExt;
    let (replay, live) = log.subscribe(since_ms);
    let replay = futures::stream::iter(replay.into_iter().map(|c| to_event(&c)));
    let live = futures::stream::unfold(live, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(c) => return Some((to_event(&c), rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "an events client fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    replay.chain(live).boxed()
}

/// The API event of a row change.
pub fn to_event(c: &RowChange) -> Event {
    let mut attributes = HashMap::new();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            attributes.insert(k.to_string(), v);
        }
    };
    if c.action != Action::Remove {
        match c.table.as_str() {
            "nodes" => {
                if let Ok(n) = Node::decode(c.value.as_slice()) {
                    put("name", n.hostname);
                    put(
                        "state",
                        status_name(NodeStatus::try_from(n.status).unwrap_or_default()).into(),
                    );
                    put(
                        "role",
                        role_name(NodeRole::try_from(n.role).unwrap_or_default()).into(),
                    );
                }
            }
            "services" => {
                if let Ok(s) = Service::decode(c.value.as_slice()) {
                    put("name", s.spec.map(|s| s.name).unwrap_or_default());
                }
            }
            "tasks" => {
                if let Ok(t) = Task::decode(c.value.as_slice()) {
                    put("service", t.service_id);
                    if t.slot > 0 {
                        put("slot", t.slot.to_string());
                    }
                    put("node", t.node_id);
                    let state = t.status.map(|s| s.state).unwrap_or_default();
                    put(
                        "state",
                        state_name(TaskState::try_from(state).unwrap_or_default()).into(),
                    );
                }
            }
            "networks" => {
                if let Ok(n) = Network::decode(c.value.as_slice()) {
                    put("name", n.spec.map(|s| s.name).unwrap_or_default());
                }
            }
            // A config row has a secret row's layout; the bytes stay sealed.
            "secrets" | "configs" => {
                if let Ok(s) = Secret::decode(c.value.as_slice()) {
                    put("name", s.name);
                }
            }
            _ => {}
        }
    }
    Event {
        time_ms: c.time_ms,
        r#type: event_type(&c.table).unwrap_or_default().to_string(),
        action: c.action.name().to_string(),
        id: c.key.clone(),
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_recent_ones_and_feeds_the_live_ones() {
        let log = EventLog::default();
        let svc = Service {
            id: "s1".into(),
            spec: Some(swarmlet_proto::objects::ServiceSpec {
                name: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        log.record("services", "s1", Action::Create, &svc.encode_to_vec());
        log.record("raft_members", "x", Action::Create, b"");
        let (replay, mut live) = log.subscribe(1);
        assert_eq!(replay.len(), 1, "only tables with events are kept");
        let e = to_event(&replay[0]);
        assert_eq!(
            (e.r#type.as_str(), e.action.as_str()),
            ("service", "create")
        );
        assert_eq!(e.attributes.get("name").map(String::as_str), Some("web"));
        assert!(log.subscribe(0).0.is_empty(), "no replay without --since");

        log.record("services", "s1", Action::Remove, b"");
        let next = live.try_recv().expect("live event");
        assert_eq!(to_event(&next).action, "remove");
        assert!(next.seq > replay[0].seq);
    }

    #[test]
    fn keeps_at_most_kept() {
        let log = EventLog::default();
        for i in 0..KEPT + 10 {
            log.record("tasks", &i.to_string(), Action::Update, b"");
        }
        let (replay, _) = log.subscribe(1);
        assert_eq!(replay.len(), KEPT);
        assert_eq!(replay[0].key, "10");
    }
}
