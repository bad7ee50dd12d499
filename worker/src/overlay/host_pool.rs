//! The addresses Swarmlet puts in a node's own namespace (`--host-pool`).
//!
//! Two kinds of point-to-point legs live there: the ingress sandbox's leg
//! (published ports go through it) and one leg per task with host-mode
//! ports. Each is a /30 of the pool: the first /30 is the ingress leg, the
//! others are host-mode slots. The default, 198.18.0.0/16 (RFC 2544's
//! benchmarking range), is clear of Docker's pools (172.17–31.0.0/16,
//! 192.168.0.0/16) and of ordinary networks; a pool that overlaps a route
//! the node already has is refused at start-up ([`check_routes`]), since
//! its addresses would shadow that route.

use std::net::Ipv4Addr;

/// The default pool.
pub const DEFAULT: &str = "198.18.0.0/16";

/// A pool of host-side addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPool {
    base: u32,
    prefix: u8,
}

impl Default for HostPool {
    fn default() -> Self {
        HostPool {
            base: u32::from(Ipv4Addr::new(198, 18, 0, 0)),
            prefix: 16,
        }
    }
}

impl std::fmt::Display for HostPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl std::str::FromStr for HostPool {
    type Err = String;

    /// An IPv4 CIDR from /8 to /24 (at least 63 host-mode legs), aligned.
    fn from_str(cidr: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid host pool {cidr:?}: {why}");
        let (ip, len) = cidr
            .split_once('/')
            .ok_or_else(|| bad("expected an IPv4 CIDR such as 198.18.0.0/16"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = len.parse().map_err(|_| bad("bad prefix length"))?;
        if !(8..=24).contains(&prefix) {
            return Err(bad("the prefix length must be between 8 and 24"));
        }
        let base = u32::from(ip);
        if base & !mask(prefix) != 0 {
            return Err(bad("the address has bits beyond the prefix"));
        }
        Ok(HostPool { base, prefix })
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl HostPool {
    /// Number of host-mode slots (/30s after the ingress leg's).
    pub fn slots(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix) - 2)) - 1
    }

    fn pair(&self, index: u32) -> (Ipv4Addr, Ipv4Addr) {
        let net = self.base + (index << 2);
        (Ipv4Addr::from(net + 1), Ipv4Addr::from(net + 2))
    }

    /// The ingress leg: (node side, sandbox side).
    pub fn ingress_leg(&self) -> (Ipv4Addr, Ipv4Addr) {
        self.pair(0)
    }

    /// The host-mode leg of `slot`: (node side, container side).
    pub fn slot_ips(&self, slot: u32) -> (Ipv4Addr, Ipv4Addr) {
        self.pair(1 + slot % self.slots())
    }

    /// The slot of a host-mode leg's node-side address (inverse of
    /// [`slot_ips`](Self::slot_ips)).
    pub fn slot_of(&self, node_side: Ipv4Addr) -> Option<u32> {
        let v = u32::from(node_side);
        if v & mask(self.prefix) != self.base || v & 3 != 1 {
            return None;
        }
        let index = (v - self.base) >> 2;
        (index >= 1).then(|| index - 1)
    }

    /// The first slot from the task's hash on that `taken` does not hold.
    pub fn pick_slot(&self, task_id: &str, taken: &[u32]) -> u32 {
        let slots = self.slots();
        let start = task_id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % slots;
        (0..slots)
            .map(|i| (start + i) % slots)
            .find(|s| !taken.contains(s))
            .unwrap_or(start)
    }

    /// Whether the pool and network `net`/`prefix` share an address.
    pub fn overlaps(&self, net: Ipv4Addr, prefix: u8) -> bool {
        let shorter = prefix.min(self.prefix);
        let m = mask(shorter);
        u32::from(net) & m == self.base & m
    }
}

/// Refuses `pool` when a route of `/proc/net/route` (text given) overlaps
/// it, other than the default route and Swarmlet's own legs (`swi-…`,
/// `swh-…`, left by a previous run).
pub fn check_routes(pool: &HostPool, proc_net_route: &str) -> Result<(), String> {
    for line in proc_net_route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (iface, dest, mask_hex) = (f[0], f[1], f[7]);
        if iface.starts_with("swi-") || iface.starts_with("swh-") {
            continue;
        }
        // The kernel prints the address's bytes as a native-endian number.
        let parse = |h: &str| {
            u32::from_str_radix(h, 16)
                .ok()
                .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
        };
        let (Some(net), Some(m)) = (parse(dest), parse(mask_hex)) else {
            continue;
        };
        let prefix = u32::from(m).count_ones() as u8;
        if prefix == 0 {
            continue;
        }
        if pool.overlaps(net, prefix) {
            return Err(format!(
                "the host pool {pool} overlaps the route {net}/{prefix} on {iface}: choose another with --host-pool"
            ));
        }
    }
    Ok(())
}

/// [`check_routes`] on this node's own routes.
pub fn check_host_routes(pool: &HostPool) -> Result<(), String> {
    let text = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| format!("reading /proc/net/route: {e}"))?;
    check_routes(pool, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_from_the_pool() {
        let pool = HostPool::default();
        assert_eq!(pool.to_string(), DEFAULT);
        assert_eq!(
            pool.ingress_leg(),
            (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2))
        );
        assert_eq!(
            pool.slot_ips(0),
            (Ipv4Addr::new(198, 18, 0, 5), Ipv4Addr::new(198, 18, 0, 6))
        );
        assert_eq!(pool.slot_ips(64).0, Ipv4Addr::new(198, 18, 1, 5));
        assert_eq!(pool.slot_of(Ipv4Addr::new(198, 18, 1, 5)), Some(64));
        assert_eq!(pool.slot_of(Ipv4Addr::new(198, 18, 1, 6)), None);
        assert_eq!(pool.slot_of(Ipv4Addr::new(198, 18, 0, 1)), None, "ingress");
        assert_eq!(pool.slot_of(Ipv4Addr::new(10, 18, 1, 5)), None);
        assert_eq!(pool.slots(), 16383);
        let s = pool.pick_slot("abc", &[]);
        assert_ne!(pool.pick_slot("abc", &[s]), s);
        let small: HostPool = "10.99.7.0/24".parse().expect("pool");
        assert_eq!(small.slots(), 63);
        assert_eq!(small.slot_ips(62).1, Ipv4Addr::new(10, 99, 7, 254));
    }

    #[test]
    fn bad_pools_are_refused() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/25",
            "10.0.0.0/7",
            "10.0.0.1/16",
            "x/16",
        ] {
            assert!(bad.parse::<HostPool>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pool_over_an_existing_route_is_refused() {
        // docker_gwbridge 172.18.0.0/16, the default route, a swarmlet leg.
        let routes =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            docker_gwbridge\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            swi-abc\t000012C6\t00000000\t0001\t0\t0\t0\t FCFFFFFF\t0\t0\t0\n";
        let err = check_routes(&"172.18.0.0/16".parse().expect("pool"), routes)
            .expect_err("overlaps docker_gwbridge");
        assert!(err.contains("172.18.0.0/16 on docker_gwbridge"), "{err}");
        assert!(check_routes(&"172.16.0.0/12".parse().expect("pool"), routes).is_err());
        check_routes(&HostPool::default(), routes).expect("clear");
    }
}
