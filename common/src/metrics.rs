//! Process-wide metrics and their Prometheus text rendering.
//!
//! The figures measured where the work happens (Raft proposals, scheduler
//! passes, dispatcher sessions, nftables applies) live in one static
//! [`Metrics`] ([`global`]): atomics, no locks, cheap enough for every call.
//! Figures read from the cluster state at scrape time (nodes and tasks by
//! state, the Raft term) are rendered by their owner with [`gauge_family`].
//! `swarmd --metrics-addr` serves the text on `/metrics`.
//!
//! One process is one node in production; the in-process test clusters
//! share one registry between their nodes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// A number that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A number that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// A latency distribution in seconds (Prometheus histogram).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; `+Inf` last).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// The figures measured in place.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Times this process saw the Raft leader change to a new one.
    pub raft_leader_changes: Counter,
    /// Time from proposing a change to its being applied on this manager.
    pub raft_proposal_seconds: Histogram,
    /// Duration of one scheduling pass of the leader.
    pub scheduler_pass_seconds: Histogram,
    /// Workers holding an assignments session with this manager.
    pub dispatcher_sessions: Gauge,
    /// Duration of one nftables transaction (load balancer, routing mesh).
    pub nftables_apply_seconds: Histogram,
}

impl Metrics {
    /// Appends the Prometheus text of these figures to `out`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP swarmlet_raft_leader_changes_total Raft leader changes seen.\n\
             # TYPE swarmlet_raft_leader_changes_total counter\n\
             swarmlet_raft_leader_changes_total {}",
            self.raft_leader_changes.get()
        );
        self.raft_proposal_seconds.render(
            out,
            "swarmlet_raft_proposal_seconds",
            "Time from proposal to apply on this manager.",
        );
        self.scheduler_pass_seconds.render(
            out,
            "swarmlet_scheduler_pass_seconds",
            "Duration of the leader's scheduling passes.",
        );
        let _ = writeln!(
            out,
            "# HELP swarmlet_dispatcher_sessions Worker sessions held by this manager.\n\
             # TYPE swarmlet_dispatcher_sessions gauge\n\
             swarmlet_dispatcher_sessions {}",
            self.dispatcher_sessions.get()
        );
        self.nftables_apply_seconds.render(
            out,
            "swarmlet_nftables_apply_seconds",
            "Duration of one nftables transaction on this node.",
        );
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

/// Appends a gauge family with one sample per `(label value, value)`:
/// `name{label="value"} n`.
pub fn gauge_family(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, i64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (value, n) in samples {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

/// Appends one unlabelled gauge.
pub fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 20.00305"), "{out}");
    }

    #[test]
    fn families_have_help_and_type() {
        let mut out = String::new();
        gauge_family(&mut out, "t", "Tasks.", "state", &[("running", 3)]);
        assert_eq!(
            out,
            "# HELP t Tasks.\n# TYPE t gauge\nt{state=\"running\"} 3\n"
        );
    }
}
