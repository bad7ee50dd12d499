//! IP address management for overlay networks (pure functions): subnets
//! from the cluster's default pool, VNIs from 4096 up, and free addresses
//! inside a subnet. Only IPv4.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The first VNI Swarmlet hands out (as Docker does).
pub const FIRST_VNI: u32 = 4096;

/// An IPv4 subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// Network address (host bits zero).
    pub base: u32,
    /// Prefix length.
    pub len: u32,
}

/// Why a subnet or address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Not `a.b.c.d/len`.
    #[error("invalid subnet {0:?}: expected an IPv4 CIDR like 10.0.9.0/24")]
    BadSubnet(String),
    /// Not an IPv4 address inside the subnet.
    #[error("invalid gateway {0:?}: expected an IPv4 address inside the subnet")]
    BadGateway(String),
    /// Overlaps an existing network.
    #[error("subnet {0} overlaps network {1}")]
    Overlap(String, String),
    /// The default pool has no free subnet left.
    #[error("the default address pool {0} has no free /{1} subnet left")]
    PoolExhausted(String, u32),
}

impl Subnet {
    /// Parses `a.b.c.d/len` (host bits must be zero; len 8–30).
    pub fn parse(s: &str) -> Result<Self, IpamError> {
        let bad = || IpamError::BadSubnet(s.to_string());
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u32 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(bad());
        }
        let base = u32::from(ip);
        if base & !mask(len) != 0 {
            return Err(bad());
        }
        Ok(Subnet { base, len })
    }

    /// Number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.len)
    }

    /// Whether `ip` is a host address of this subnet.
    pub fn contains(&self, ip: u32) -> bool {
        ip & mask(self.len) == self.base
    }

    /// Whether the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let len = self.len.min(other.len);
        self.base & mask(len) == other.base & mask(len)
    }

    /// The first host address (the default gateway).
    pub fn first_host(&self) -> u32 {
        self.base + 1
    }

    /// `a.b.c.d/len`.
    pub fn display(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

fn mask(len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

/// Parses a gateway for `subnet`.
pub fn parse_gateway(subnet: &Subnet, gw: &str) -> Result<u32, IpamError> {
    let ip: Ipv4Addr = gw
        .parse()
        .map_err(|_| IpamError::BadGateway(gw.to_string()))?;
    let ip = u32::from(ip);
    if !subnet.contains(ip) || ip == subnet.base || ip == subnet.base + subnet.size() as u32 - 1 {
        return Err(IpamError::BadGateway(gw.to_string()));
    }
    Ok(ip)
}

/// The first `/mask_len` of `pool` overlapping none of `taken`.
pub fn next_subnet(pool: &str, mask_len: u32, taken: &[Subnet]) -> Result<Subnet, IpamError> {
    let p = Subnet::parse(pool)?;
    let exhausted = || IpamError::PoolExhausted(pool.to_string(), mask_len);
    if mask_len < p.len || mask_len > 30 {
        return Err(exhausted());
    }
    let step = 1u64 << (32 - mask_len);
    let count = p.size() / step;
    (0..count)
        .map(|i| Subnet {
            base: (p.base as u64 + i * step) as u32,
            len: mask_len,
        })
        .find(|s| !taken.iter().any(|t| t.overlaps(s)))
        .ok_or_else(exhausted)
}

/// The smallest VNI ≥ [`FIRST_VNI`] not in `used`.
pub fn next_vni(used: &HashSet<u32>) -> u32 {
    (FIRST_VNI..)
        .find(|v| !used.contains(v))
        .unwrap_or(FIRST_VNI)
}

/// The lowest free host address of `subnet` (not the gateway, not `used`).
pub fn next_address(subnet: &Subnet, used: &HashSet<u32>) -> Option<u32> {
    let last = subnet.base as u64 + subnet.size() - 1;
    (subnet.base as u64 + 1..last)
        .map(|ip| ip as u32)
        .find(|ip| !used.contains(ip))
}

/// `a.b.c.d/len` → the address as a number.
pub fn parse_address(cidr: &str) -> Option<u32> {
    let ip = cidr.split('/').next()?;
    ip.parse::<Ipv4Addr>().ok().map(u32::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        let a = Subnet::parse("10.0.1.0/24").expect("valid");
        assert_eq!(a.display(), "10.0.1.0/24");
        assert!(Subnet::parse("10.0.1.1/24").is_err(), "host bits set");
        assert!(Subnet::parse("10.0.1.0").is_err());
        assert!(Subnet::parse("300.0.1.0/24").is_err());
        let wide = Subnet::parse("10.0.0.0/16").expect("valid");
        assert!(a.overlaps(&wide) && wide.overlaps(&a));
        assert!(!a.overlaps(&Subnet::parse("10.0.2.0/24").expect("valid")));
        assert_eq!(parse_gateway(&a, "10.0.1.1").expect("gw"), a.first_host());
        assert!(parse_gateway(&a, "10.0.2.1").is_err());
        assert!(parse_gateway(&a, "10.0.1.255").is_err());
    }

    #[test]
    fn pool_vni_and_addresses() {
        let first = next_subnet("10.0.0.0/8", 24, &[]).expect("free");
        assert_eq!(first.display(), "10.0.0.0/24");
        let second = next_subnet("10.0.0.0/8", 24, &[first]).expect("free");
        assert_eq!(second.display(), "10.0.1.0/24");
        let tiny = next_subnet("10.9.0.0/24", 25, &[]).expect("free");
        assert!(next_subnet("10.9.0.0/24", 24, &[tiny]).is_err());
        assert_eq!(next_vni(&HashSet::from([4096, 4097])), 4098);
        let s = Subnet::parse("10.0.3.0/30").expect("valid");
        let gw = s.first_host();
        let mut used = HashSet::from([gw]);
        let ip = next_address(&s, &used).expect("one left");
        assert_eq!(Ipv4Addr::from(ip).to_string(), "10.0.3.2");
        used.insert(ip);
        assert_eq!(next_address(&s, &used), None, "exhausted");
        assert_eq!(parse_address("10.0.3.2/30"), Some(ip));
    }
}
