//! Legs: veths between the node's namespace and another one (the ingress
//! sandbox, or a container with host-mode ports).

use std::net::Ipv4Addr;

use super::{links, run_in, OverlayError};
use crate::kernel::netns;

/// A veth between the node's namespace and another one: the ingress
/// sandbox ([`ingress`]) or a container with host-mode ports
/// ([`hostports`]).
pub(super) struct Leg {
    /// Its name in the node's namespace.
    pub(super) node_side: String,
    /// The other end's name until it is moved and renamed.
    pub(super) temp: String,
    pub(super) node_ip: (Ipv4Addr, u8),
    /// The other namespace.
    pub(super) inner_ns: std::path::PathBuf,
    pub(super) inner_name: &'static str,
    pub(super) inner_ip: (Ipv4Addr, u8),
}

/// Makes the leg exist and be configured on both sides: routed (and
/// localhost, `route_localnet`) traffic from the node reaches the other
/// side, whose default route leads back through the leg.
pub(super) async fn ensure_leg(leg: Leg) -> Result<(), OverlayError> {
    let Leg {
        node_side,
        temp,
        node_ip,
        inner_ns,
        inner_name,
        inner_ip,
    } = leg;
    let (temp2, into) = (temp.clone(), inner_ns.clone());
    run_in(&netns::host_ns(), move |h| async move {
        if links::link(&h, &node_side).await?.is_none() {
            links::create_leg(&h, &node_side, &temp2, node_ip, &into).await?;
        }
        netns::set_sysctl("ipv4/ip_forward", "1")?;
        netns::set_sysctl(&format!("ipv4/conf/{node_side}/route_localnet"), "1")?;
        Ok(())
    })
    .await?;
    run_in(&inner_ns, move |h| async move {
        links::configure_leg(&h, &temp, inner_name, inner_ip, node_ip.0).await
    })
    .await
}
