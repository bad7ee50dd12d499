//! gRPC plumbing: channels to managers over mTLS, channels over the local
//! unix control socket, and the message limits of every client and server
//! (the listener's connections are [`crate::listener`]'s).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::tls::MANAGER_SERVER_NAME;

/// Largest gRPC message a Swarmlet client or server accepts or sends, on
/// every service alike (tonic's default is 4 MiB: `service ps` of a large
/// service, or a node's assignments, would fail above it). Streams that can
/// grow without bound are cut into chunks well below it: Raft snapshots
/// (1 MiB) and assignment sets ([`ASSIGNMENT_CHUNK_BYTES`]).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The size assignment messages are cut to (a node's first set holds all
/// its tasks and their secrets).
pub const ASSIGNMENT_CHUNK_BYTES: usize = 1024 * 1024;

/// Raises a generated client's or server's message limits to
/// [`MAX_MESSAGE_BYTES`]; every Swarmlet client and server is built with it.
pub trait WithLimits {
    /// The same client or server with Swarmlet's limits.
    fn with_limits(self) -> Self;
}

macro_rules! with_limits {
    ($($ty:ty),* $(,)?) => {$(
        impl WithLimits for $ty {
            fn with_limits(self) -> Self {
                self.max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }
        }
    )*};
}

with_limits!(
    swarmlet_proto::control::control_client::ControlClient<Channel>,
    swarmlet_proto::local::local_client::LocalClient<Channel>,
    swarmlet_proto::dispatcher::dispatcher_client::DispatcherClient<Channel>,
    swarmlet_proto::ca::ca_client::CaClient<Channel>,
    swarmlet_proto::raft::raft_transport_client::RaftTransportClient<Channel>,
    swarmlet_proto::logs::node_logs_client::NodeLogsClient<Channel>,
);

/// [`WithLimits`] for a generated server around service `S`.
macro_rules! server_limits {
    ($($($seg:ident)::+),* $(,)?) => {$(
        impl<S> WithLimits for swarmlet_proto::$($seg)::+<S>
        where
            S: Send + Sync + 'static,
        {
            fn with_limits(self) -> Self {
                self.max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }
        }
    )*};
}

server_limits!(
    control::control_server::ControlServer,
    local::local_server::LocalServer,
    dispatcher::dispatcher_server::DispatcherServer,
    ca::ca_server::CaServer,
    raft::raft_transport_server::RaftTransportServer,
    logs::node_logs_server::NodeLogsServer,
);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Failures building a channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The address is not `host:port`.
    #[error("invalid address {0:?}: expected HOST:PORT")]
    BadAddress(String),
    /// The name to verify the server by is not a valid DNS name.
    #[error("invalid server name {0:?}")]
    BadServerName(String),
}

/// A lazily connecting channel to `addr` (`host:port`) over TLS with `config`,
/// verifying the server as a manager of this cluster.
pub fn tls_channel(addr: &str, config: Arc<ClientConfig>) -> Result<Channel, ChannelError> {
    tls_channel_verifying(addr, MANAGER_SERVER_NAME, config)
}

/// A lazily connecting channel to `addr` over TLS with `config`, verifying
/// that the server's certificate names `server_name`: the role
/// ([`MANAGER_SERVER_NAME`]) or one node's ID (every node certificate
/// carries its node ID as a name, so a worker can be reached too).
pub fn tls_channel_verifying(
    addr: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<Channel, ChannelError> {
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|_| ChannelError::BadServerName(server_name.to_string()))?;
    if addr
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(ChannelError::BadAddress(addr.to_string()));
    }
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| ChannelError::BadAddress(addr.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let target = addr.to_string();
    let connector = TlsConnector::from(config);
    let connect = tower::service_fn(move |_uri: http::Uri| {
        let target = target.clone();
        let connector = connector.clone();
        let name = server_name.clone();
        async move {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            tcp.set_nodelay(true)?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake timed out")
                })??;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}

/// A lazily connecting channel over the unix socket at `path`.
pub fn unix_channel(path: &Path) -> Channel {
    let path: PathBuf = path.to_path_buf();
    // The URI is not used by the connector; tonic only needs a valid one.
    let endpoint = Endpoint::from_static("http://swarmd.local");
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri: http::Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    }))
}
