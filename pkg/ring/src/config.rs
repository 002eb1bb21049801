//! The `memberlist` section of the configuration.

use std::net::{IpAddr, SocketAddr};

use ember_config::{Documented, Secret};
use serde::{Deserialize, Serialize};

use crate::{DEFAULT_BIND_PORT, RingConfig, Roles};

/// Gossip membership (`memberlist`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct MemberlistConfig {
    /// Address to bind gossip to.
    ///
    /// Default `0.0.0.0`, every interface.
    pub bind_addr: String,
    /// Port for gossip between Ember processes; 0 picks a free port.
    ///
    /// TCP and UDP; default 7946.
    pub bind_port: u16,
    /// Comma-separated host:port of peers to join; repeatable.
    ///
    /// Empty means a cluster of one. Joining is retried until a peer answers,
    /// so processes may start in any order.
    pub join: Vec<String>,
    /// IP other members reach this process at; empty: detected.
    ///
    /// Used for gossip and for this process's HTTP/gRPC port. Empty: the bind
    /// address when it is specific, else the host's first non-loopback IPv4
    /// address.
    pub advertise_addr: String,
    /// Unique name in the ring; empty: <hostname>-<http port>.
    ///
    /// An ingester keeps its name across restarts, and with it its tokens.
    pub node_name: String,
    /// Base64 key (16, 24 or 32 bytes) gossip is sealed with; empty: gossip in the clear.
    ///
    /// Every member must have the same key; a process without it can neither
    /// read the ring nor join it. Set it from a secret
    /// (`EMBER_MEMBERLIST_SECRET_KEY`).
    pub secret_key: Secret,
}

impl Default for MemberlistConfig {
    fn default() -> Self {
        Self {
            bind_addr: "0.0.0.0".to_string(),
            bind_port: DEFAULT_BIND_PORT,
            join: Vec::new(),
            advertise_addr: String::new(),
            node_name: String::new(),
            secret_key: Secret::default(),
        }
    }
}

impl MemberlistConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> ember_config::Result<()> {
        let invalid = |message: String| Err(ember_config::Error::invalid(message));
        if self.join.iter().any(|peer| peer.trim().is_empty()) {
            return invalid("memberlist.join must not contain empty addresses".into());
        }
        if !self.advertise_addr.is_empty() && self.advertise_addr.parse::<IpAddr>().is_err() {
            return invalid(format!(
                "memberlist.advertise_addr {:?} is not an IP address",
                self.advertise_addr
            ));
        }
        if self.bind_addr.parse::<IpAddr>().is_err() {
            return invalid(format!(
                "memberlist.bind_addr {:?} is not an IP address, use 0.0.0.0 for every interface",
                self.bind_addr
            ));
        }
        crate::ring::parse_key(&self.secret_key)
            .map_err(|e| ember_config::Error::invalid(e.to_string()))?;
        Ok(())
    }

    /// Returns the node name: `node_name`, or `<hostname>-<http_port>`.
    pub fn node_name(&self, hostname: &str, http_port: u16) -> String {
        if self.node_name.is_empty() {
            format!("{hostname}-{http_port}")
        } else {
            self.node_name.clone()
        }
    }

    /// Returns how this process takes part in the ring: as `node_name`, with
    /// `roles`, serving HTTP/gRPC on `http_port`. Peers call that port, so
    /// without an advertise address the specific IP the server listens on
    /// (`listen_ip`, if any) is the best guess.
    pub fn ring_config(
        &self,
        node_name: String,
        roles: Roles,
        http_port: u16,
        listen_ip: Option<IpAddr>,
    ) -> ember_config::Result<RingConfig> {
        self.validate()?;
        let bind_ip: IpAddr = self.bind_addr.parse().map_err(|_| {
            ember_config::Error::invalid(format!(
                "memberlist.bind_addr {:?} is not an IP address",
                self.bind_addr
            ))
        })?;
        Ok(RingConfig {
            node_name,
            bind_addr: SocketAddr::new(bind_ip, self.bind_port),
            advertise_addr: self
                .advertise_addr
                .parse()
                .ok()
                .or(listen_ip.filter(|ip| !ip.is_unspecified())),
            join: self.join.clone(),
            roles,
            http_port,
            secret_key: self.secret_key.clone(),
            ..RingConfig::default()
        })
    }
}
