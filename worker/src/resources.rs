//! What this host offers to tasks: CPUs and memory, as the scheduler's
//! reservation filter sees them.

use swarmlet_proto::objects::Resources;

/// The CPUs and memory of this host (memory 0 when `/proc/meminfo` is unreadable).
pub fn host_resources() -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_mem_total(&s))
        .unwrap_or(0);
    Resources {
        nano_cpus: cpus * 1_000_000_000,
        memory_bytes: memory,
    }
}

/// `MemTotal:  24591164 kB` → bytes.
fn parse_mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total() {
        let s = "MemTotal:       24591164 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total(s), Some(24591164 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
    }

    #[test]
    fn host_has_cpus() {
        assert!(host_resources().nano_cpus >= 1_000_000_000);
    }
}
