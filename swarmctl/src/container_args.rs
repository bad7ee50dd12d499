//! The container options of `service create|update` (`--mount`, `--user`,
//! `--cap-add`, `--ulimit`, `--dns`, …), parsed as Docker's CLI parses them
//! and written into the spec. The managers check the values (known
//! capabilities, absolute targets, templates); this module only turns the
//! command line's forms into the spec's.

use anyhow::{anyhow, bail};
use clap::Args;
use swarmlet_proto::objects::{Mount, ServiceSpec, Ulimit};

use crate::kv::pairs;
use crate::service_spec::parse_bytes;

/// Container options of `service create`.
#[derive(Args, Debug, Default)]
pub struct ContainerArgs {
    /// Attach storage: type=bind|volume|tmpfs,source=…,target=…[,readonly]
    /// [,volume-driver=…][,volume-opt=K=V][,volume-label=K=V][,volume-nocopy]
    /// [,tmpfs-size=…][,tmpfs-mode=…][,bind-propagation=…] (repeatable).
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Username or UID, with an optional group: NAME|UID[:GROUP|GID].
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Add a supplementary group (repeatable).
    #[arg(long = "group")]
    group: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Replace the image's entrypoint (words split at spaces).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container hostname; templates like {{.Service.Name}}-{{.Task.Slot}}.
    #[arg(long)]
    hostname: Option<String>,
    /// Run an init process in the container (reaps zombies, forwards signals).
    #[arg(long)]
    init: bool,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Add a Linux capability (repeatable).
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a Linux capability (repeatable).
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Kernel parameter KEY=VALUE (repeatable).
    #[arg(long = "sysctl")]
    sysctl: Vec<String>,
    /// Resource limit NAME=SOFT[:HARD] (repeatable).
    #[arg(long = "ulimit")]
    ulimit: Vec<String>,
    /// Signal that stops the container (default SIGTERM).
    #[arg(long)]
    stop_signal: Option<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    tty: bool,
    /// DNS server the container's names go to (repeatable).
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// DNS search domain (repeatable).
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// DNS resolver option (repeatable).
    #[arg(long = "dns-option")]
    dns_option: Vec<String>,
    /// Extra /etc/hosts entry HOST:IP (repeatable). Also `--host HOST:IP`,
    /// as Docker writes it: after `service create`, a `--host` value
    /// without `://` is an entry, one with it the daemon's address.
    #[arg(long = "add-host", id = "extra_host", value_name = "HOST:IP")]
    host: Vec<String>,
    /// Container label KEY=VALUE (repeatable).
    #[arg(long = "container-label")]
    container_label: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines; repeatable).
    #[arg(long = "env-file")]
    env_file: Vec<String>,
    /// Logging driver of the containers.
    #[arg(long)]
    log_driver: Option<String>,
    /// Logging driver option KEY=VALUE (repeatable).
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
}

impl ContainerArgs {
    /// Writes the options into a new service's `spec`. Variables from
    /// `--env-file` come before `--env`'s, which win.
    pub fn apply(&self, spec: &mut ServiceSpec) -> anyhow::Result<()> {
        spec.mounts = self
            .mount
            .iter()
            .map(|m| parse_mount(m))
            .collect::<anyhow::Result<_>>()?;
        spec.user = self.user.clone().unwrap_or_default();
        spec.groups = self.group.clone();
        spec.workdir = self.workdir.clone().unwrap_or_default();
        spec.entrypoint = words(self.entrypoint.as_deref());
        spec.hostname = self.hostname.clone().unwrap_or_default();
        spec.init = self.init;
        spec.read_only = self.read_only;
        spec.cap_add = self.cap_add.clone();
        spec.cap_drop = self.cap_drop.clone();
        spec.sysctls = pairs(&self.sysctl, "sysctl")?.into_iter().collect();
        spec.ulimits = self
            .ulimit
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<anyhow::Result<_>>()?;
        spec.stop_signal = self.stop_signal.clone().unwrap_or_default();
        spec.tty = self.tty;
        spec.dns_servers = self.dns.clone();
        spec.dns_search = self.dns_search.clone();
        spec.dns_options = self.dns_option.clone();
        spec.hosts = self
            .host
            .iter()
            .map(|h| parse_host(h))
            .collect::<anyhow::Result<_>>()?;
        spec.container_labels = pairs(&self.container_label, "container label")?
            .into_iter()
            .collect();
        let mut env = Vec::new();
        for f in &self.env_file {
            env.extend(read_env_file(f)?);
        }
        env.append(&mut spec.env);
        spec.env = env;
        spec.log_driver = self.log_driver.clone().unwrap_or_default();
        spec.log_options = pairs(&self.log_opt, "log option")?.into_iter().collect();
        Ok(())
    }
}

/// Container options of `service update`: `--X-add`/`--X-rm` for lists,
/// a new value for the rest.
#[derive(Args, Debug, Default)]
pub struct ContainerUpdateArgs {
    /// Add or replace a mount (same form as create's --mount).
    #[arg(long = "mount-add")]
    mount_add: Vec<String>,
    /// Remove a mount by its target path.
    #[arg(long = "mount-rm")]
    mount_rm: Vec<String>,
    /// New user (NAME|UID[:GROUP|GID]).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Add a supplementary group.
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Remove a supplementary group.
    #[arg(long = "group-rm")]
    group_rm: Vec<String>,
    /// New working directory.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// New entrypoint ("" gives the image's back).
    #[arg(long)]
    entrypoint: Option<String>,
    /// New hostname template.
    #[arg(long)]
    hostname: Option<String>,
    /// Run an init process (--init=false to stop).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    init: Option<bool>,
    /// Read-only root filesystem (--read-only=false to stop).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    read_only: Option<bool>,
    /// Add a capability (and stop dropping it).
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability (and stop adding it).
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Add or change a kernel parameter KEY=VALUE.
    #[arg(long = "sysctl-add")]
    sysctl_add: Vec<String>,
    /// Remove a kernel parameter.
    #[arg(long = "sysctl-rm")]
    sysctl_rm: Vec<String>,
    /// Add or replace a resource limit NAME=SOFT[:HARD].
    #[arg(long = "ulimit-add")]
    ulimit_add: Vec<String>,
    /// Remove a resource limit by name.
    #[arg(long = "ulimit-rm")]
    ulimit_rm: Vec<String>,
    /// New stop signal.
    #[arg(long)]
    stop_signal: Option<String>,
    /// Pseudo-TTY on or off.
    #[arg(short = 't', long, num_args = 0..=1, default_missing_value = "true")]
    tty: Option<bool>,
    /// Add a DNS server.
    #[arg(long = "dns-add")]
    dns_add: Vec<String>,
    /// Remove a DNS server.
    #[arg(long = "dns-rm")]
    dns_rm: Vec<String>,
    /// Add a DNS search domain.
    #[arg(long = "dns-search-add")]
    dns_search_add: Vec<String>,
    /// Remove a DNS search domain.
    #[arg(long = "dns-search-rm")]
    dns_search_rm: Vec<String>,
    /// Add a DNS resolver option.
    #[arg(long = "dns-option-add")]
    dns_option_add: Vec<String>,
    /// Remove a DNS resolver option.
    #[arg(long = "dns-option-rm")]
    dns_option_rm: Vec<String>,
    /// Add an /etc/hosts entry HOST:IP.
    #[arg(long = "host-add")]
    host_add: Vec<String>,
    /// Remove /etc/hosts entries of a host (HOST or HOST:IP).
    #[arg(long = "host-rm")]
    host_rm: Vec<String>,
    /// Add or change a container label KEY=VALUE.
    #[arg(long = "container-label-add")]
    container_label_add: Vec<String>,
    /// Remove a container label.
    #[arg(long = "container-label-rm")]
    container_label_rm: Vec<String>,
    /// New logging driver.
    #[arg(long)]
    log_driver: Option<String>,
    /// Logging driver option KEY=VALUE (replaces the options).
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
}

/// Docker's `service create --host HOST:IP` and swarmctl's global
/// `--host URI` share a name: in the options of `service create` (before
/// the image), a `--host` whose value has no `://` is rewritten as
/// `--add-host`. `takes_value` says which options of `service create`
/// take a value (so the image, where the options end, is found).
pub fn rewrite_host_entries(
    args: Vec<std::ffi::OsString>,
    takes_value: impl Fn(&str) -> bool,
) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    // Up to `service create`, as is (a global option's value may sit there).
    let mut seen = Vec::new();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().to_string();
        out.push(a);
        if s.starts_with('-') {
            if !s.contains('=') && takes_value(&s) {
                if let Some(v) = it.next() {
                    out.push(v);
                }
            }
            continue;
        }
        seen.push(s);
        if seen.len() >= 3 && seen[seen.len() - 2..] == ["service", "create"] {
            break;
        }
    }
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().to_string();
        if !s.starts_with('-') || s == "--" {
            // The image: the command follows, untouched.
            out.push(a);
            break;
        }
        if let Some(v) = s.strip_prefix("--host=") {
            if !v.contains("://") {
                out.push(format!("--add-host={v}").into());
                continue;
            }
        }
        if s == "--host" {
            if let Some(v) = it.peek().map(|v| v.to_string_lossy().to_string()) {
                if !v.contains("://") {
                    out.push("--add-host".into());
                    out.extend(it.next());
                    continue;
                }
            }
        }
        let value_follows = !s.contains('=') && takes_value(&s);
        out.push(a);
        if value_follows {
            out.extend(it.next());
        }
    }
    out.extend(it);
    out
}

/// Removes from `list` what `rm` names, then adds what `add` holds (once).
fn edit(list: &mut Vec<String>, add: &[String], rm: &[String]) {
    list.retain(|x| !rm.contains(x));
    for a in add {
        if !list.contains(a) {
            list.push(a.clone());
        }
    }
}

impl ContainerUpdateArgs {
    /// Applies the changes to `spec`.
    pub fn apply(&self, spec: &mut ServiceSpec) -> anyhow::Result<()> {
        spec.mounts.retain(|m| !self.mount_rm.contains(&m.target));
        for m in &self.mount_add {
            let m = parse_mount(m)?;
            spec.mounts.retain(|x| x.target != m.target);
            spec.mounts.push(m);
        }
        if let Some(u) = &self.user {
            spec.user = u.clone();
        }
        edit(&mut spec.groups, &self.group_add, &self.group_rm);
        if let Some(w) = &self.workdir {
            spec.workdir = w.clone();
        }
        if self.entrypoint.is_some() {
            spec.entrypoint = words(self.entrypoint.as_deref());
        }
        if let Some(h) = &self.hostname {
            spec.hostname = h.clone();
        }
        if let Some(v) = self.init {
            spec.init = v;
        }
        if let Some(v) = self.read_only {
            spec.read_only = v;
        }
        // Docker: adding a capability also stops dropping it, and back.
        let same = |a: &String, b: &String| {
            let norm = |s: &str| {
                s.to_ascii_uppercase()
                    .trim_start_matches("CAP_")
                    .to_string()
            };
            norm(a) == norm(b)
        };
        for c in &self.cap_add {
            spec.cap_drop.retain(|d| !same(d, c));
            if !spec.cap_add.iter().any(|x| same(x, c)) {
                spec.cap_add.push(c.clone());
            }
        }
        for c in &self.cap_drop {
            spec.cap_add.retain(|a| !same(a, c));
            if !spec.cap_drop.iter().any(|x| same(x, c)) {
                spec.cap_drop.push(c.clone());
            }
        }
        for k in &self.sysctl_rm {
            spec.sysctls.remove(k);
        }
        spec.sysctls.extend(pairs(&self.sysctl_add, "sysctl")?);
        spec.ulimits.retain(|u| !self.ulimit_rm.contains(&u.name));
        for u in &self.ulimit_add {
            let u = parse_ulimit(u)?;
            spec.ulimits.retain(|x| x.name != u.name);
            spec.ulimits.push(u);
        }
        if let Some(s) = &self.stop_signal {
            spec.stop_signal = s.clone();
        }
        if let Some(t) = self.tty {
            spec.tty = t;
        }
        edit(&mut spec.dns_servers, &self.dns_add, &self.dns_rm);
        edit(
            &mut spec.dns_search,
            &self.dns_search_add,
            &self.dns_search_rm,
        );
        edit(
            &mut spec.dns_options,
            &self.dns_option_add,
            &self.dns_option_rm,
        );
        for h in &self.host_rm {
            let (name, ip) = h
                .split_once(':')
                .map_or((h.as_str(), None), |(n, i)| (n, Some(i)));
            spec.hosts.retain(|e| {
                let mut w = e.split_whitespace();
                let (e_ip, e_names): (&str, Vec<&str>) = (w.next().unwrap_or(""), w.collect());
                !(e_names.contains(&name) && ip.is_none_or(|ip| ip == e_ip))
            });
        }
        for h in &self.host_add {
            let entry = parse_host(h)?;
            if !spec.hosts.contains(&entry) {
                spec.hosts.push(entry);
            }
        }
        for k in &self.container_label_rm {
            spec.container_labels.remove(k);
        }
        spec.container_labels
            .extend(pairs(&self.container_label_add, "container label")?);
        if let Some(d) = &self.log_driver {
            spec.log_driver = d.clone();
        }
        if !self.log_opt.is_empty() {
            spec.log_options = pairs(&self.log_opt, "log option")?.into_iter().collect();
        }
        Ok(())
    }
}

fn words(v: Option<&str>) -> Vec<String> {
    v.map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A `true`/`false` option value; a key alone is `true`.
fn flag(value: Option<&str>, whole: &str) -> anyhow::Result<bool> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => bail!("invalid --mount {whole:?}: expected true or false in {value:?}"),
    }
}

/// One `--mount` value, as Docker's CLI reads it (CSV of KEY[=VALUE]).
pub fn parse_mount(v: &str) -> anyhow::Result<Mount> {
    let mut m = Mount::default();
    for field in v.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let value_of = |what: &str| {
            value.ok_or_else(|| anyhow!("invalid --mount {v:?}: {what} needs a value"))
        };
        match key.as_str() {
            "type" => m.r#type = value_of("type")?.to_string(),
            "source" | "src" => m.source = value_of("source")?.to_string(),
            "target" | "destination" | "dst" => m.target = value_of("target")?.to_string(),
            "readonly" | "ro" => m.read_only = flag(value, v)?,
            "volume-driver" => m.volume_driver = value_of("volume-driver")?.to_string(),
            "volume-opt" => {
                let (k, val) = value_of("volume-opt")?
                    .split_once('=')
                    .ok_or_else(|| anyhow!("invalid --mount {v:?}: volume-opt needs KEY=VALUE"))?;
                m.volume_options.insert(k.to_string(), val.to_string());
            }
            "volume-label" => {
                let (k, val) = value_of("volume-label")?.split_once('=').ok_or_else(|| {
                    anyhow!("invalid --mount {v:?}: volume-label needs KEY=VALUE")
                })?;
                m.volume_labels.insert(k.to_string(), val.to_string());
            }
            "volume-nocopy" => m.volume_nocopy = flag(value, v)?,
            "tmpfs-size" => {
                m.tmpfs_size_bytes =
                    parse_bytes("tmpfs-size", &Some(value_of("tmpfs-size")?.to_string()))?
            }
            "tmpfs-mode" => {
                let mode = value_of("tmpfs-mode")?;
                m.tmpfs_mode = u32::from_str_radix(mode, 8).map_err(|_| {
                    anyhow!("invalid --mount {v:?}: tmpfs-mode {mode:?} is not octal")
                })?
            }
            "bind-propagation" => m.bind_propagation = value_of("bind-propagation")?.to_string(),
            "" => {}
            other => bail!("invalid --mount {v:?}: unexpected key {other:?}"),
        }
    }
    if m.target.is_empty() {
        bail!("invalid --mount {v:?}: target is required");
    }
    Ok(m)
}

/// `NAME=SOFT[:HARD]` (the hard limit defaults to the soft one).
pub fn parse_ulimit(v: &str) -> anyhow::Result<Ulimit> {
    let bad =
        || anyhow!("invalid --ulimit {v:?}: expected NAME=SOFT[:HARD], e.g. nofile=1024:2048");
    let (name, limits) = v.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (s, h),
        None => (limits, limits),
    };
    let n = |s: &str| s.trim().parse::<i64>().map_err(|_| bad());
    Ok(Ulimit {
        name: name.trim().to_string(),
        soft: n(soft)?,
        hard: n(hard)?,
    })
}

/// `HOST:IP` as the spec keeps it (Docker's API form `IP HOST`).
pub fn parse_host(v: &str) -> anyhow::Result<String> {
    let (host, ip) = v
        .split_once(':')
        .filter(|(h, ip)| !h.is_empty() && !ip.is_empty())
        .ok_or_else(|| anyhow!("invalid --host {v:?}: expected HOST:IP"))?;
    Ok(format!("{ip} {host}"))
}

/// The variables of an `--env-file`: `KEY=VALUE` lines; blank lines and
/// `#` comments skipped; a bare `KEY` takes this shell's value, if any.
fn read_env_file(path: &str) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read --env-file {path}: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('=') {
            out.push(line.to_string());
        } else if let Ok(value) = std::env::var(line.trim()) {
            out.push(format!("{}={value}", line.trim()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_as_docker_writes_them() {
        let m =
            parse_mount("type=volume,source=data,target=/data,volume-opt=type=tmpfs,volume-nocopy")
                .expect("volume");
        assert_eq!(
            (m.r#type.as_str(), m.source.as_str(), m.target.as_str()),
            ("volume", "data", "/data")
        );
        assert_eq!(
            m.volume_options.get("type").map(String::as_str),
            Some("tmpfs")
        );
        assert!(m.volume_nocopy);
        let m = parse_mount("type=bind,src=/srv,dst=/srv,readonly").expect("bind");
        assert!(m.read_only);
        let m = parse_mount("type=bind,src=/srv,dst=/srv,ro=false").expect("bind rw");
        assert!(!m.read_only);
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770").expect("tmpfs");
        assert_eq!(m.tmpfs_size_bytes, 64 << 20);
        assert_eq!(m.tmpfs_mode, 0o1770);
        for (bad, want) in [
            ("type=volume,source=x", "target is required"),
            (
                "type=volume,target=/x,colour=red",
                "unexpected key \"colour\"",
            ),
            ("type=tmpfs,target=/x,tmpfs-mode=9", "not octal"),
            (
                "type=bind,target=/x,readonly=maybe",
                "expected true or false",
            ),
        ] {
            let e = parse_mount(bad).expect_err(bad).to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn a_host_entry_after_service_create_is_not_the_daemon_address() {
        let flags = ["-d", "--detach", "--init", "-t", "--tty", "--read-only"];
        let takes_value = |s: &str| !flags.contains(&s);
        let rewrite = |line: &[&str]| -> Vec<String> {
            let args = line.iter().map(std::ffi::OsString::from).collect();
            rewrite_host_entries(args, takes_value)
                .into_iter()
                .map(|a| a.to_string_lossy().to_string())
                .collect()
        };
        assert_eq!(
            rewrite(&[
                "swarmctl",
                "-H",
                "unix:///s.sock",
                "service",
                "create",
                "-d",
                "--host",
                "db:10.0.0.5",
                "--host=cache:10.0.0.6",
                "--host",
                "unix:///t.sock",
                "img",
                "curl",
                "--host",
                "x:1"
            ]),
            [
                "swarmctl",
                "-H",
                "unix:///s.sock",
                "service",
                "create",
                "-d",
                "--add-host",
                "db:10.0.0.5",
                "--add-host=cache:10.0.0.6",
                "--host",
                "unix:///t.sock",
                "img",
                "curl",
                "--host",
                "x:1"
            ],
            "entries become --add-host; a URI and the command are left alone"
        );
        let other = ["swarmctl", "service", "ls", "--host", "unix:///s.sock"];
        assert_eq!(rewrite(&other), other);
        // An option's value that reads `create` is not the subcommand.
        let named = [
            "swarmctl",
            "service",
            "update",
            "--image",
            "create",
            "--host-add",
            "a:1",
            "web",
        ];
        assert_eq!(rewrite(&named), named);
    }

    #[test]
    fn ulimits_and_hosts() {
        let u = parse_ulimit("nofile=1024:2048").expect("ulimit");
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("nproc=64").expect("one value");
        assert_eq!((u.soft, u.hard), (64, 64));
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("nofile=lots").is_err());
        assert_eq!(parse_host("db:10.0.0.5").expect("host"), "10.0.0.5 db");
        assert_eq!(parse_host("v6:fd00::1").expect("v6"), "fd00::1 v6");
        assert!(parse_host("db").is_err());
    }

    #[test]
    fn create_writes_every_option_and_update_edits_them() {
        let dir = tempfile::tempdir().expect("dir");
        let env_file = dir.path().join("env");
        std::fs::write(&env_file, "# comment\nA=from-file\n\nB=2\n").expect("write");
        let args = ContainerArgs {
            mount: vec!["type=volume,source=d,target=/d".into()],
            user: Some("1000".into()),
            cap_add: vec!["NET_ADMIN".into()],
            ulimit: vec!["nofile=10:20".into()],
            host: vec!["db:10.0.0.5".into()],
            env_file: vec![env_file.to_string_lossy().to_string()],
            init: true,
            ..Default::default()
        };
        let mut spec = ServiceSpec {
            env: vec!["A=from-flag".into()],
            ..Default::default()
        };
        args.apply(&mut spec).expect("create");
        assert_eq!(
            spec.env,
            ["A=from-file", "B=2", "A=from-flag"],
            "--env last: it wins"
        );
        assert_eq!(spec.user, "1000");
        assert!(spec.init);
        assert_eq!(spec.hosts, ["10.0.0.5 db"]);

        let update = ContainerUpdateArgs {
            mount_add: vec![
                "type=tmpfs,target=/t".into(),
                "type=volume,source=e,target=/d".into(),
            ],
            cap_drop: vec!["net_admin".into()],
            ulimit_rm: vec!["nofile".into()],
            host_rm: vec!["db".into()],
            init: Some(false),
            ..Default::default()
        };
        update.apply(&mut spec).expect("update");
        let targets: Vec<&str> = spec.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/t", "/d"]);
        assert_eq!(spec.mounts[1].source, "e", "same target: replaced");
        assert!(spec.cap_add.is_empty(), "dropping stops adding");
        assert_eq!(spec.cap_drop, ["net_admin"]);
        assert!(spec.ulimits.is_empty());
        assert!(spec.hosts.is_empty());
        assert!(!spec.init);
        let rm = ContainerUpdateArgs {
            mount_rm: vec!["/t".into()],
            ..Default::default()
        };
        rm.apply(&mut spec).expect("rm");
        assert_eq!(spec.mounts.len(), 1);
    }
}
