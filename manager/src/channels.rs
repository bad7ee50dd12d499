//! Mutual-TLS channels from this manager to other nodes, made once per
//! (server name, address) and shared: to the leader (forwarding), to other
//! managers (the secrets key) and to any node (its logs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::ClientConfig;
use swarmlet_common::grpc::tls_channel_verifying;
use swarmlet_common::tls::MANAGER_SERVER_NAME;
use tonic::transport::Channel;

use crate::ops::{OpsError, OpsResult};

/// The channels of one manager, with its client certificate.
pub struct Channels {
    client_tls: Arc<ClientConfig>,
    /// Channels by (expected server name, address).
    cache: Mutex<HashMap<(String, String), Channel>>,
}

impl Channels {
    /// Channels presenting the certificate in `client_tls`.
    pub fn new(client_tls: Arc<ClientConfig>) -> Self {
        Channels {
            client_tls,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A channel to the manager at `addr` (it must present a manager
    /// certificate).
    pub fn to_manager(&self, addr: &str) -> OpsResult<Channel> {
        self.cached(MANAGER_SERVER_NAME, addr)
    }

    /// A channel to node `node_id` at `addr`, whatever its role: the server
    /// must present that node's own certificate.
    pub fn to_node(&self, node_id: &str, addr: &str) -> OpsResult<Channel> {
        self.cached(node_id, addr)
    }

    fn cached(&self, server_name: &str, addr: &str) -> OpsResult<Channel> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| OpsError::internal("channel cache poisoned"))?;
        let key = (server_name.to_string(), addr.to_string());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let c = tls_channel_verifying(addr, server_name, self.client_tls.clone())
            .map_err(OpsError::invalid)?;
        cache.insert(key, c.clone());
        Ok(c)
    }
}
