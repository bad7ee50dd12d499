//! Checks of what a service asks of its containers (mounts, process,
//! privileges, name resolution, templates), with Docker's wording where
//! Docker has one; the canonical forms are filled in (mount type `volume`
//! when unset, capabilities as `CAP_…`). A service that passes starts on
//! any node whose engine has its image and volume driver.

use std::collections::HashSet;

use swarmlet_common::template;
use swarmlet_proto::objects::{Mount, ServiceSpec, Ulimit};

use super::{OpsError, OpsResult};

/// Linux capabilities, as Docker names them without `CAP_`.
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Resource limits `--ulimit` may set.
const ULIMITS: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Signal names (without `SIG`) a container may be stopped with.
const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

const PROPAGATIONS: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn bad(m: impl ToString) -> OpsError {
    OpsError::invalid(m)
}

/// Checks the container options of `spec` and fills in canonical forms.
pub fn check(spec: &mut ServiceSpec) -> OpsResult<()> {
    check_templates(spec)?;
    check_mounts(&mut spec.mounts)?;
    for caps in [&mut spec.cap_add, &mut spec.cap_drop] {
        for cap in caps.iter_mut() {
            *cap = capability(cap)?;
        }
    }
    for u in &spec.ulimits {
        check_ulimit(u)?;
    }
    if !spec.stop_signal.is_empty() {
        check_signal(&spec.stop_signal)?;
    }
    for k in spec.sysctls.keys() {
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(bad(format!("invalid sysctl {k:?}")));
        }
    }
    for s in &spec.dns_servers {
        s.parse::<std::net::IpAddr>()
            .map_err(|_| bad(format!("invalid DNS server {s:?}: expected an IP address")))?;
    }
    for h in &spec.hosts {
        check_host(h)?;
    }
    for g in &spec.groups {
        if g.is_empty() {
            return Err(bad("invalid group: empty"));
        }
    }
    for k in spec.container_labels.keys() {
        if k.is_empty() {
            return Err(bad("container label key must not be empty"));
        }
    }
    if spec.log_driver.is_empty() && !spec.log_options.is_empty() {
        return Err(bad("--log-opt needs --log-driver"));
    }
    Ok(())
}

/// Hostname, environment values and mount sources may hold templates.
fn check_templates(spec: &ServiceSpec) -> OpsResult<()> {
    let values = std::iter::once(spec.hostname.as_str())
        .chain(
            spec.env
                .iter()
                .map(|e| e.split_once('=').map_or("", |(_, v)| v)),
        )
        .chain(spec.mounts.iter().map(|m| m.source.as_str()));
    for v in values {
        template::check(v).map_err(bad)?;
    }
    Ok(())
}

fn check_mounts(mounts: &mut [Mount]) -> OpsResult<()> {
    let mut targets = HashSet::new();
    for m in mounts.iter_mut() {
        if m.r#type.is_empty() {
            m.r#type = "volume".into();
        }
        let kind = m.r#type.clone();
        let invalid = |what: &str| bad(format!("invalid mount config for type {kind:?}: {what}"));
        if m.target.is_empty() {
            return Err(invalid("field Target must not be empty"));
        }
        if !m.target.starts_with('/') {
            return Err(bad(format!(
                "invalid mount target, must be an absolute path: {}",
                m.target
            )));
        }
        if !targets.insert(m.target.clone()) {
            return Err(bad(format!("duplicate mount point: {}", m.target)));
        }
        let volume_opts = !m.volume_driver.is_empty()
            || !m.volume_options.is_empty()
            || !m.volume_labels.is_empty()
            || m.volume_nocopy;
        let tmpfs_opts = m.tmpfs_size_bytes != 0 || m.tmpfs_mode != 0;
        match kind.as_str() {
            "bind" => {
                if m.source.is_empty() {
                    return Err(invalid("field Source must not be empty"));
                }
                if !m.source.starts_with('/') && !m.source.starts_with("{{") {
                    return Err(invalid(&format!(
                        "invalid mount path: '{}' mount path must be absolute",
                        m.source
                    )));
                }
                if volume_opts || tmpfs_opts {
                    return Err(invalid("only bind options apply to a bind mount"));
                }
                if !m.bind_propagation.is_empty()
                    && !PROPAGATIONS.contains(&m.bind_propagation.as_str())
                {
                    return Err(invalid(&format!(
                        "invalid bind propagation {:?}",
                        m.bind_propagation
                    )));
                }
            }
            "volume" => {
                if tmpfs_opts || !m.bind_propagation.is_empty() {
                    return Err(invalid("only volume options apply to a volume mount"));
                }
                if m.source.starts_with('/') {
                    return Err(invalid(&format!(
                        "{} is a path, not a volume name: use type=bind",
                        m.source
                    )));
                }
            }
            "tmpfs" => {
                if !m.source.is_empty() {
                    return Err(invalid("field Source must not be specified"));
                }
                if volume_opts || !m.bind_propagation.is_empty() {
                    return Err(invalid("only tmpfs options apply to a tmpfs mount"));
                }
                if m.tmpfs_size_bytes < 0 {
                    return Err(invalid("tmpfs-size must not be negative"));
                }
                if m.tmpfs_mode > 0o7777 {
                    return Err(invalid(&format!("invalid tmpfs-mode {:o}", m.tmpfs_mode)));
                }
            }
            other => {
                return Err(bad(format!(
                    "invalid mount type {other:?}: expected bind, volume or tmpfs"
                )))
            }
        }
    }
    Ok(())
}

/// `cap`, as Docker writes it (`CAP_NET_ADMIN`, or `ALL`).
fn capability(cap: &str) -> OpsResult<String> {
    let upper = cap.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if CAPABILITIES.contains(&name) {
        Ok(format!("CAP_{name}"))
    } else {
        Err(bad(format!("unknown capability: {cap:?}")))
    }
}

fn check_ulimit(u: &Ulimit) -> OpsResult<()> {
    if !ULIMITS.contains(&u.name.as_str()) {
        return Err(bad(format!("invalid ulimit type: {}", u.name)));
    }
    if u.soft < -1 || u.hard < -1 {
        return Err(bad(format!(
            "invalid ulimit {}: values must be -1 or more",
            u.name
        )));
    }
    if u.hard != -1 && (u.soft == -1 || u.soft > u.hard) {
        return Err(bad(format!(
            "ulimit {}: soft limit {} is more than the hard limit {}",
            u.name, u.soft, u.hard
        )));
    }
    Ok(())
}

fn check_signal(s: &str) -> OpsResult<()> {
    if let Ok(n) = s.parse::<u32>() {
        return if (1..=64).contains(&n) {
            Ok(())
        } else {
            Err(bad(format!("invalid stop signal {s:?}")))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = name
        .strip_prefix("RTMIN+")
        .or_else(|| name.strip_prefix("RTMAX-"))
        .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n <= 30));
    if SIGNALS.contains(&name) || realtime || name == "RTMIN" || name == "RTMAX" {
        Ok(())
    } else {
        Err(bad(format!("invalid stop signal {s:?}")))
    }
}

/// An /etc/hosts entry as Docker's API holds it: `IP HOSTNAME [ALIAS…]`.
fn check_host(entry: &str) -> OpsResult<()> {
    let mut words = entry.split_whitespace();
    let ip_ok = words
        .next()
        .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok());
    if !ip_ok || words.next().is_none() {
        return Err(bad(format!(
            "invalid host entry {entry:?}: expected HOST:IP"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, target: &str) -> Mount {
        Mount {
            r#type: kind.into(),
            source: source.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    fn with_mounts(mounts: Vec<Mount>) -> OpsResult<ServiceSpec> {
        let mut spec = ServiceSpec {
            mounts,
            ..Default::default()
        };
        check(&mut spec).map(|()| spec)
    }

    fn refused(r: OpsResult<ServiceSpec>) -> String {
        match r {
            Err(OpsError::InvalidArgument(m)) => m,
            other => panic!("not refused as invalid: {other:?}"),
        }
    }

    #[test]
    fn good_mounts_pass_and_a_type_defaults_to_volume() {
        let spec = with_mounts(vec![
            mount("", "data", "/data"),
            mount("bind", "/srv/{{.Node.Hostname}}", "/srv"),
            Mount {
                tmpfs_size_bytes: 1 << 20,
                tmpfs_mode: 0o700,
                ..mount("tmpfs", "", "/tmp")
            },
            mount("volume", "", "/anonymous"),
        ])
        .expect("valid");
        assert_eq!(spec.mounts[0].r#type, "volume");
    }

    #[test]
    fn bad_mounts_are_refused_in_one_line() {
        let cases = [
            (
                mount("volume", "data", ""),
                "field Target must not be empty",
            ),
            (mount("volume", "data", "data"), "must be an absolute path"),
            (mount("bind", "", "/x"), "field Source must not be empty"),
            (mount("bind", "rel", "/x"), "mount path must be absolute"),
            (mount("tmpfs", "x", "/x"), "Source must not be specified"),
            (mount("nfs", "x", "/x"), "invalid mount type \"nfs\""),
            (mount("volume", "/abs", "/x"), "use type=bind"),
            (
                Mount {
                    tmpfs_size_bytes: 10,
                    ..mount("volume", "v", "/x")
                },
                "only volume options",
            ),
            (
                mount("bind", "{{.Bogus}}", "/x"),
                "unknown field \".Bogus\"",
            ),
        ];
        for (m, want) in cases {
            let msg = refused(with_mounts(vec![m.clone()]));
            assert!(msg.contains(want), "{m:?}: {msg}");
            assert!(!msg.contains('\n'));
        }
        let dup = refused(with_mounts(vec![
            mount("volume", "a", "/d"),
            mount("tmpfs", "", "/d"),
        ]));
        assert_eq!(dup, "duplicate mount point: /d");
    }

    #[test]
    fn capabilities_are_known_and_written_as_docker_does() {
        let mut spec = ServiceSpec {
            cap_add: vec!["net_admin".into(), "CAP_SYS_TIME".into()],
            cap_drop: vec!["all".into()],
            ..Default::default()
        };
        check(&mut spec).expect("known");
        assert_eq!(spec.cap_add, ["CAP_NET_ADMIN", "CAP_SYS_TIME"]);
        assert_eq!(spec.cap_drop, ["ALL"]);
        let mut spec = ServiceSpec {
            cap_add: vec!["NET_SUPERPOWER".into()],
            ..Default::default()
        };
        let e = check(&mut spec).expect_err("unknown");
        assert_eq!(e.to_string(), "unknown capability: \"NET_SUPERPOWER\"");
    }

    #[test]
    fn ulimits_signals_hosts_dns_and_templates() {
        let ok = |f: fn(&mut ServiceSpec)| {
            let mut spec = ServiceSpec::default();
            f(&mut spec);
            check(&mut spec)
        };
        assert!(ok(|s| s.ulimits.push(Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 2048
        }))
        .is_ok());
        assert!(ok(|s| s.ulimits.push(Ulimit {
            name: "nofile".into(),
            soft: 4096,
            hard: 2048
        }))
        .is_err());
        assert!(ok(|s| s.ulimits.push(Ulimit {
            name: "files".into(),
            soft: 1,
            hard: 1
        }))
        .is_err());
        assert!(ok(|s| s.stop_signal = "SIGUSR1".into()).is_ok());
        assert!(ok(|s| s.stop_signal = "quit".into()).is_ok());
        assert!(ok(|s| s.stop_signal = "9".into()).is_ok());
        assert!(ok(|s| s.stop_signal = "SIGNOPE".into()).is_err());
        assert!(ok(|s| s.hosts.push("10.0.0.5 db".into())).is_ok());
        assert!(ok(|s| s.hosts.push("db".into())).is_err());
        assert!(ok(|s| s.dns_servers.push("9.9.9.9".into())).is_ok());
        assert!(ok(|s| s.dns_servers.push("dns.example".into())).is_err());
        assert!(ok(|s| s.hostname = "{{.Service.Name}}-{{.Task.Slot}}".into()).is_ok());
        assert!(ok(|s| s.hostname = "{{.Service.Name".into()).is_err());
        assert!(ok(|s| s.env.push("WHERE={{.Node.Hostname}}".into())).is_ok());
        assert!(ok(|s| s.env.push("WHERE={{.Node.Rack}}".into())).is_err());
        assert!(ok(|s| {
            s.log_options.insert("max-size".into(), "1m".into());
        })
        .is_err());
    }
}
