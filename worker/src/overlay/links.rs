//! Netlink operations of the data plane, each on a handle opened inside
//! the right namespace (see [`crate::kernel::netns::run_in`]): the bridge, the
//! VXLAN device, veth pairs, addresses, and the neighbour and FDB entries.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, LinkVxlan};

use super::plan::{OVERLAY_MTU, VXLAN_PORT};
use super::OverlayError;

/// Tries while a VNI is still held by a namespace being torn down (100 ms apart).
const VNI_BUSY_RETRIES: u32 = 50;

fn nl(what: &str, e: rtnetlink::Error) -> OverlayError {
    OverlayError::System(format!("{what}: {e}"))
}

/// A link as listed: index, name, bridge it is enslaved to, whether it is up.
#[derive(Debug, Clone)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Index of the bridge it belongs to.
    pub master: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// Hardware address.
    pub mac: Vec<u8>,
}

/// Every link of the namespace.
pub async fn links(h: &Handle) -> Result<Vec<Link>, OverlayError> {
    let msgs: Vec<_> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("listing links", e))?;
    Ok(msgs
        .into_iter()
        .map(|m| Link {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            name: m
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            master: m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(i) => Some(*i),
                _ => None,
            }),
            mac: m
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Address(b) => Some(b.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
        })
        .collect())
}

/// The link named `name`, if it exists.
pub async fn link(h: &Handle, name: &str) -> Result<Option<Link>, OverlayError> {
    Ok(links(h).await?.into_iter().find(|l| l.name == name))
}

/// Sets a link up.
pub async fn set_up(h: &Handle, index: u32) -> Result<(), OverlayError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| nl("setting a link up", e))
}

/// Deletes a link.
pub async fn delete(h: &Handle, index: u32) -> Result<(), OverlayError> {
    h.link()
        .del(index)
        .execute()
        .await
        .map_err(|e| nl("deleting a link", e))
}

/// The address messages of a link, each with its IPv4 address.
async fn address_messages(
    h: &Handle,
    index: u32,
) -> Result<Vec<(Ipv4Addr, rtnetlink::packet_route::address::AddressMessage)>, OverlayError> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("listing addresses", e))?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| {
            let ip = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })?;
            Some((ip, m))
        })
        .collect())
}

/// IPv4 addresses of a link.
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<Ipv4Addr>, OverlayError> {
    Ok(address_messages(h, index)
        .await?
        .into_iter()
        .map(|(ip, _)| ip)
        .collect())
}

/// Gives a link `ip/prefix` unless it has it.
async fn ensure_address(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), OverlayError> {
    if !addresses(h, index).await?.contains(&ip) {
        h.address()
            .add(index, IpAddr::V4(ip), prefix)
            .execute()
            .await
            .map_err(|e| nl(&format!("adding {ip}/{prefix}"), e))?;
    }
    Ok(())
}

/// Gives link `index` exactly `wanted` (IPv4): a VIP of a removed service
/// must not stay, or the bridge would answer for an address handed out
/// again.
async fn sync_addresses(
    h: &Handle,
    index: u32,
    wanted: &[(Ipv4Addr, u8)],
) -> Result<(), OverlayError> {
    let mut have = Vec::new();
    for (ip, m) in address_messages(h, index).await? {
        if wanted.contains(&(ip, m.header.prefix_len)) {
            have.push(ip);
        } else {
            h.address()
                .del(m)
                .execute()
                .await
                .map_err(|e| nl(&format!("removing {ip}"), e))?;
        }
    }
    for (ip, prefix) in wanted.iter().filter(|(ip, _)| !have.contains(ip)) {
        h.address()
            .add(index, IpAddr::V4(*ip), *prefix)
            .execute()
            .await
            .map_err(|e| nl(&format!("adding {ip}/{prefix}"), e))?;
    }
    Ok(())
}

/// Makes sure `lo` and the bridge (with the gateway address and the
/// node's load-balancer address, when it has one) exist and are up; the
/// bridge takes `mac` (the one other nodes derive from the load-balancer
/// IP, so that frames for it are the bridge's own). Returns its index.
pub async fn ensure_bridge(
    h: &Handle,
    name: &str,
    addresses: &[(Ipv4Addr, u8)],
    mac: Option<[u8; 6]>,
) -> Result<u32, OverlayError> {
    if let Some(lo) = link(h, "lo").await? {
        if !lo.up {
            set_up(h, lo.index).await?;
        }
    }
    let bridge = match link(h, name).await? {
        Some(l) => l,
        None => {
            h.link()
                .add(LinkBridge::new(name).mtu(OVERLAY_MTU).up().build())
                .execute()
                .await
                .map_err(|e| nl("creating the bridge", e))?;
            link(h, name)
                .await?
                .ok_or_else(|| OverlayError::System("the bridge vanished".into()))?
        }
    };
    sync_addresses(h, bridge.index, addresses).await?;
    if let Some(mac) = mac.filter(|m| bridge.mac != m.as_slice()) {
        h.link()
            .set(
                LinkUnspec::new_with_index(bridge.index)
                    .address(mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| nl("setting the bridge's address", e))?;
    }
    if !bridge.up {
        set_up(h, bridge.index).await?;
    }
    Ok(bridge.index)
}

/// In the node's namespace: creates the VXLAN device (its UDP socket stays
/// here, on the node's routing), then moves it into the namespace at `into`.
pub async fn create_vxlan(
    h: &Handle,
    name: &str,
    vni: u32,
    local: Ipv4Addr,
    into: &Path,
) -> Result<(), OverlayError> {
    if let Some(stale) = link(h, name).await? {
        delete(h, stale.index).await?;
    }
    // A namespace just deleted (the network's last task left a moment ago)
    // is torn down by the kernel in the background; until then its VXLAN
    // device still holds the VNI on this node's socket (EEXIST).
    let mut attempt = 0;
    loop {
        let added = h
            .link()
            .add(
                LinkVxlan::new(name, vni)
                    .port(VXLAN_PORT)
                    .local(local)
                    .learning(false)
                    .proxy(true)
                    .udp_csum(false)
                    .mtu(OVERLAY_MTU)
                    .build(),
            )
            .execute()
            .await;
        match added {
            Ok(()) => break,
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code() == -libc::EEXIST && attempt < VNI_BUSY_RETRIES =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(nl(&format!("creating {name}"), e)),
        }
    }
    let index = link(h, name)
        .await?
        .ok_or_else(|| OverlayError::System(format!("{name} vanished")))?
        .index;
    let target = std::fs::File::open(into)
        .map_err(|e| OverlayError::System(format!("opening {}: {e}", into.display())))?;
    let moved = h
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .setns_by_fd(target.as_raw_fd())
                .build(),
        )
        .execute()
        .await;
    if let Err(e) = moved {
        let _ = delete(h, index).await;
        return Err(nl(&format!("moving {name}"), e));
    }
    Ok(())
}

/// In the node's namespace: the ingress sandbox's leg, a veth pair with
/// `host` here (given `host_ip`, up) and `temp` moved into the namespace at
/// `into`. Replaces a half-made pair.
pub async fn create_leg(
    h: &Handle,
    host: &str,
    temp: &str,
    host_ip: (Ipv4Addr, u8),
    into: &Path,
) -> Result<(), OverlayError> {
    for stale in [host, temp] {
        if let Some(l) = link(h, stale).await? {
            delete(h, l.index).await?;
        }
    }
    h.link()
        .add(LinkVeth::new(host, temp).build())
        .execute()
        .await
        .map_err(|e| nl("creating the ingress leg", e))?;
    let all = links(h).await?;
    let index_of = |n: &str| all.iter().find(|l| l.name == n).map(|l| l.index);
    let (Some(host_ix), Some(temp_ix)) = (index_of(host), index_of(temp)) else {
        return Err(OverlayError::System("the ingress leg vanished".into()));
    };
    let target = std::fs::File::open(into)
        .map_err(|e| OverlayError::System(format!("opening {}: {e}", into.display())))?;
    h.link()
        .set(
            LinkUnspec::new_with_index(temp_ix)
                .setns_by_fd(target.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(|e| nl("moving the ingress leg", e))?;
    ensure_address(h, host_ix, host_ip.0, host_ip.1).await?;
    set_up(h, host_ix).await
}

/// Inside the sandbox: renames `temp` to `name`, gives it `ip`, sets it up
/// and routes everything else through `gateway` (replies to clients of
/// published ports).
pub async fn configure_leg(
    h: &Handle,
    temp: &str,
    name: &str,
    ip: (Ipv4Addr, u8),
    gateway: Ipv4Addr,
) -> Result<(), OverlayError> {
    let l = match link(h, name).await? {
        Some(l) => l,
        None => {
            let l = link(h, temp)
                .await?
                .ok_or_else(|| OverlayError::System(format!("{temp} is not in the sandbox")))?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(l.index)
                        .name(name.to_string())
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| nl(&format!("renaming {temp}"), e))?;
            l
        }
    };
    ensure_address(h, l.index, ip.0, ip.1).await?;
    if !l.up {
        set_up(h, l.index).await?;
    }
    let routes: Vec<_> = h
        .route()
        .get(rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("listing routes", e))?;
    let has_default = routes.iter().any(|r| {
        r.header.destination_prefix_length == 0
            && r.header.table == rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN
    });
    if !has_default {
        h.route()
            .add(
                rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| nl("adding the default route", e))?;
    }
    Ok(())
}

/// Turns MAC learning off on the VXLAN device's bridge port: the bridge
/// must not remember a remote MAC as "behind the VXLAN port", or a task
/// that later gets the same IP (and so the same MAC) on this node would
/// never receive frames coming in over VXLAN. Frames to unknown MACs are
/// flooded to the local ports and the VXLAN device, whose own FDB sends
/// them to the right node.
pub async fn no_learning_on_port(h: &Handle, index: u32) -> Result<(), OverlayError> {
    h.link()
        .set_port(
            rtnetlink::LinkBridgePort::new(index)
                .learning(false)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| nl("turning off learning on the VXLAN port", e))
}

/// Enslaves a link to the bridge and sets it up.
pub async fn enslave(h: &Handle, index: u32, bridge: u32) -> Result<(), OverlayError> {
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| nl("adding a port to the bridge", e))
}

/// Creates a veth pair: `host` on the bridge, `temp` moved into the
/// namespace of process `pid`.
pub async fn create_veth(
    h: &Handle,
    host: &str,
    temp: &str,
    bridge: u32,
    pid: u32,
) -> Result<(), OverlayError> {
    for stale in [host, temp] {
        if let Some(l) = link(h, stale).await? {
            delete(h, l.index).await?;
        }
    }
    h.link()
        .add(LinkVeth::new(host, temp).mtu(OVERLAY_MTU).build())
        .execute()
        .await
        .map_err(|e| nl("creating a veth pair", e))?;
    let all = links(h).await?;
    let index_of = |n: &str| all.iter().find(|l| l.name == n).map(|l| l.index);
    let (Some(host_ix), Some(temp_ix)) = (index_of(host), index_of(temp)) else {
        return Err(OverlayError::System("the veth pair vanished".into()));
    };
    enslave(h, host_ix, bridge).await?;
    h.link()
        .set(
            LinkUnspec::new_with_index(temp_ix)
                .setns_by_pid(pid)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| nl("moving the veth into the container", e))
}

/// Inside the container: renames `temp` to `ifname`, gives it its MAC,
/// MTU and address, and sets it (and `lo`) up.
pub async fn configure_container_if(
    h: &Handle,
    temp: &str,
    ifname: &str,
    mac: [u8; 6],
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), OverlayError> {
    let l = link(h, temp)
        .await?
        .ok_or_else(|| OverlayError::System(format!("{temp} is not in the container")))?;
    h.link()
        .set(
            LinkUnspec::new_with_index(l.index)
                .name(ifname.to_string())
                .address(mac.to_vec())
                .mtu(OVERLAY_MTU)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| nl(&format!("configuring {ifname}"), e))?;
    ensure_address(h, l.index, ip, prefix).await?;
    set_up(h, l.index).await?;
    if let Some(lo) = link(h, "lo").await? {
        if !lo.up {
            set_up(h, lo.index).await?;
        }
    }
    Ok(())
}

/// Permanent neighbour entries (IP → MAC) on link `index`.
pub async fn neighbours(
    h: &Handle,
    index: u32,
) -> Result<BTreeMap<Ipv4Addr, [u8; 6]>, OverlayError> {
    let msgs: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("listing neighbours", e))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
        .filter_map(|m| Some((dst_v4(m)?, lladdr(m)?)))
        .collect())
}

/// FDB entries of the VXLAN device `index` added with `self` (MAC →
/// remote node IP).
pub async fn fdb(h: &Handle, index: u32) -> Result<BTreeMap<[u8; 6], Ipv4Addr>, OverlayError> {
    let mut req = h.neighbours().get();
    req.message_mut().header.family = AddressFamily::Bridge;
    let msgs: Vec<NeighbourMessage> = req
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("listing FDB entries", e))?;
    Ok(msgs
        .iter()
        .filter(|m| {
            m.header.ifindex == index
                && m.header.flags.contains(NeighbourFlags::Own)
                && m.header.state == NeighbourState::Permanent
        })
        .filter_map(|m| Some((lladdr(m)?, dst_v4(m)?)))
        .collect())
}

fn dst_v4(m: &NeighbourMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        _ => None,
    })
}

fn lladdr(m: &NeighbourMessage) -> Option<[u8; 6]> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => b.as_slice().try_into().ok(),
        _ => None,
    })
}

/// Adds (or replaces) the permanent neighbour `ip → mac` on link `index`.
pub async fn put_neighbour(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> Result<(), OverlayError> {
    h.neighbours()
        .add(index, IpAddr::V4(ip))
        .link_layer_address(&mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(|e| nl(&format!("adding neighbour {ip}"), e))
}

/// Deletes the neighbour entry of `ip` on link `index`.
pub async fn delete_neighbour(h: &Handle, index: u32, ip: Ipv4Addr) -> Result<(), OverlayError> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = index;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    h.neighbours()
        .del(m)
        .execute()
        .await
        .map_err(|e| nl(&format!("deleting neighbour {ip}"), e))
}

/// Adds (or replaces) `bridge fdb add MAC dev VXLAN dst NODE self permanent`.
pub async fn put_fdb(
    h: &Handle,
    index: u32,
    mac: [u8; 6],
    node: Ipv4Addr,
) -> Result<(), OverlayError> {
    h.neighbours()
        .add_bridge(index, &mac)
        .flags(NeighbourFlags::Own)
        .state(NeighbourState::Permanent)
        .destination(IpAddr::V4(node))
        .replace()
        .execute()
        .await
        .map_err(|e| nl("adding an FDB entry", e))
}

/// Deletes the `self` FDB entry of `mac` (towards `node`) on link `index`.
pub async fn delete_fdb(
    h: &Handle,
    index: u32,
    mac: [u8; 6],
    node: Ipv4Addr,
) -> Result<(), OverlayError> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.flags = NeighbourFlags::Own;
    m.header.state = NeighbourState::Permanent;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            node,
        )));
    h.neighbours()
        .del(m)
        .execute()
        .await
        .map_err(|e| nl("deleting an FDB entry", e))
}
