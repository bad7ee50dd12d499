//! Applying nftables changes: one `nft -j -f -` transaction (JSON through
//! the `nftables` crate) run inside the namespace that holds the table,
//! checking whether a table still exists, and deleting the conntrack
//! entries of backends that went away.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::netns;
use super::KernelError;

fn nft_error(e: nftables::helper::NftablesError) -> KernelError {
    KernelError::System(format!("nft: {e}"))
}

/// The commands that make table `ip <table>` anew, whole, within one
/// transaction: added (so that deleting cannot fail), deleted, added.
pub fn replace_table(table: &str) -> [Value; 3] {
    let t = json!({"table": {"family": "ip", "name": table}});
    [json!({"add": t}), json!({"delete": t}), json!({"add": t})]
}

/// `add chain`: base chain `name` of table `ip <table>` (`kind` `nat` or
/// `filter`, on `hook` at priority `prio`), policy accept.
pub fn add_base_chain(table: &str, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {"family": "ip", "table": table, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}})
}

/// `add rule`: `expr` at the end of chain `chain` of table `ip <table>`.
pub fn add_rule(table: &str, chain: &str, expr: Value) -> Value {
    json!({"add": {"rule": {"family": "ip", "table": table, "chain": chain, "expr": expr}}})
}

/// Applies `commands` as one transaction in the calling thread's namespace.
pub fn apply_here(commands: &[Value]) -> Result<(), KernelError> {
    if commands.is_empty() {
        return Ok(());
    }
    let payload = json!({ "nftables": commands }).to_string();
    let started = std::time::Instant::now();
    let res = nftables::helper::apply_ruleset_raw(
        &payload,
        nftables::helper::DEFAULT_NFT,
        nftables::helper::DEFAULT_ARGS,
    );
    swarmlet_common::metrics::global()
        .nftables_apply_seconds
        .observe(started.elapsed());
    res.map(|_| ()).map_err(nft_error)
}

/// Whether table `ip <table>` with its chain `chain` exists in the calling
/// thread's namespace (a firewall reload or `nft flush ruleset` deletes
/// them).
///
/// Asks for that one chain: `nft list tables` loads every table whole
/// (54 ms with 1,000 services programmed, against 14 ms for one chain),
/// and this runs every few seconds.
pub fn has_chain_here(table: &str, chain: &str) -> Result<bool, KernelError> {
    let out = Command::new("nft")
        .args(["list", "chain", "ip", table, chain])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| KernelError::System(format!("running nft: {e}")))?;
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such file or directory") {
        return Ok(false);
    }
    Err(KernelError::System(format!(
        "nft list chain ip {table} {chain}: {}",
        err.trim()
    )))
}

/// Deletes the connections whose replies come from `ips` (backends that
/// left the load balancer), in the calling thread's namespace. Missing
/// entries and a missing `conntrack` tool are not errors: the first means
/// there is nothing to do, the second is logged.
pub fn drop_connections_here(ips: &[std::net::Ipv4Addr]) {
    for ip in ips {
        let res = Command::new("conntrack")
            .args(["-D", "--reply-src", &ip.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(e) = res {
            tracing::warn!(error = %e, "conntrack is not available: connections to removed backends stay until they time out");
            return;
        }
    }
}

/// Where `dockerd` shares the node's namespace, its iptables FORWARD policy
/// is DROP, and an accept in our own table cannot override it: published
/// ports routed to the ingress sandbox or a host-mode leg through `legs`
/// (iptables interface patterns: `swh-+`) need accepts in
/// Docker's documented `DOCKER-USER` chain. Adds them (once) when that
/// chain exists in the calling thread's namespace; does nothing otherwise.
pub fn docker_user_accept_here(legs: &[&str]) {
    let iptables = |args: &[&str]| {
        Command::new("iptables")
            .args(["-w", "2"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !iptables(&["-S", "DOCKER-USER"]) {
        return;
    }
    for (leg, dir) in legs.iter().flat_map(|l| [(*l, "-i"), (*l, "-o")]) {
        let rule = ["DOCKER-USER", dir, leg, "-j", "ACCEPT"];
        let mut check = vec!["-C"];
        check.extend_from_slice(&rule);
        if !iptables(&check) {
            let mut insert = vec!["-I"];
            insert.extend_from_slice(&rule);
            if !iptables(&insert) {
                tracing::warn!(
                    leg,
                    "could not add the DOCKER-USER accept for the ingress leg"
                );
            }
        }
    }
}

/// Removes the accepts [`docker_user_accept_here`] added for `legs`
/// (`node leave`).
pub fn docker_user_remove_here(legs: &[&str]) {
    for (leg, dir) in legs.iter().flat_map(|l| [(*l, "-i"), (*l, "-o")]) {
        let _ = Command::new("iptables")
            .args(["-w", "2", "-D", "DOCKER-USER", dir, leg, "-j", "ACCEPT"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Applies `commands` in the namespace at `ns`.
pub async fn apply_in(ns: &Path, commands: Vec<Value>) -> Result<(), KernelError> {
    if commands.is_empty() {
        return Ok(());
    }
    netns::run_blocking_in(ns, move || apply_here(&commands)).await
}
