//! The node's upstream resolvers, and forwarding a query to them.
//!
//! Upstreams come from `$SWARMLET_DNS_UPSTREAM` (comma-separated
//! `IP[:PORT]`, for operators who want other resolvers than the host's and
//! for tests that must not send queries off the machine) or else from the
//! `nameserver` lines of `/etc/resolv.conf`. Queries are forwarded from the
//! node's own namespace (where those resolvers are reachable), over UDP, to
//! each upstream in turn until one answers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

/// The environment variable that overrides `/etc/resolv.conf`.
pub const UPSTREAM_ENV: &str = "SWARMLET_DNS_UPSTREAM";

/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Parses `IP[:PORT]` (port 53 by default).
fn parse_server(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

/// The `nameserver` entries of a resolv.conf text.
pub fn from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(parse_server)
        .collect()
}

/// The node's upstream resolvers.
pub fn system_upstreams() -> Vec<SocketAddr> {
    if let Ok(list) = std::env::var(UPSTREAM_ENV) {
        return list.split(',').filter_map(parse_server).collect();
    }
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| from_resolv_conf(&t))
        .unwrap_or_default()
}

/// Asks the upstreams `query` (recursion desired); the first answer.
pub async fn forward(upstreams: &[SocketAddr], query: Query) -> Option<Message> {
    let mut msg = Message::new();
    msg.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(query);
    let bytes = msg.to_bytes().ok()?;
    for server in upstreams {
        let bind: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.send_to(&bytes, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await
        {
            if from != *server {
                continue;
            }
            match Message::from_bytes(&buf[..n]) {
                Ok(answer) if answer.id() == msg.id() => return Some(answer),
                _ => continue,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_from_resolv_conf() {
        let text = "# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::1\noptions ndots:0\n";
        let got = from_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "192.0.2.53:53".parse().unwrap_or(got[0]),
                "[2001:db8::1]:53".parse().unwrap_or(got[1])
            ]
        );
        assert_eq!(parse_server("10.0.0.1:5353"), "10.0.0.1:5353".parse().ok());
    }
}
