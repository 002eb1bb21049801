//! The sections the server itself reads: the listener (`server`) and tenancy (`auth`).

use std::path::PathBuf;
use std::time::Duration;

use ember_config::{Documented, Secret, duration};
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// The HTTP and gRPC listener, shared by every target (`server`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to serve HTTP and gRPC on.
    ///
    /// Default `0.0.0.0`, every interface.
    pub http_listen_address: String,
    /// Port to serve HTTP and gRPC on; 0 picks a free port.
    ///
    /// Default 4040, where the Pyroscope SDKs push.
    pub http_listen_port: u16,
    /// Time in-flight requests get after a shutdown signal.
    ///
    /// Default 30s.
    #[serde(with = "duration")]
    pub graceful_shutdown_timeout: Duration,
    /// Largest request body accepted, before decompression.
    ///
    /// Default 16 MiB.
    pub max_request_body_bytes: u64,
    /// PEM certificate chain to serve HTTPS with; empty: plain HTTP.
    ///
    /// Read again when the file changes. HTTP, Connect and gRPC share the port
    /// and so the certificate.
    pub http_tls_cert_path: PathBuf,
    /// PEM private key of http_tls_cert_path.
    pub http_tls_key_path: PathBuf,
    /// PEM CA bundle of client certificates; set, every client must present one it signed.
    pub http_tls_ca_path: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_listen_address: "0.0.0.0".to_string(),
            http_listen_port: 4040,
            graceful_shutdown_timeout: Duration::from_secs(30),
            max_request_body_bytes: 16 * MIB,
            http_tls_cert_path: PathBuf::new(),
            http_tls_key_path: PathBuf::new(),
            http_tls_ca_path: PathBuf::new(),
        }
    }
}

impl ServerConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> ember_config::Result<()> {
        if self.http_listen_address.trim().is_empty() {
            return Err(ember_config::Error::invalid(
                "server.http_listen_address must not be empty, use 0.0.0.0 for every interface",
            ));
        }
        if self.max_request_body_bytes == 0 {
            return Err(ember_config::Error::invalid(
                "server.max_request_body_bytes must be greater than 0",
            ));
        }
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        if set(&self.http_tls_cert_path) != set(&self.http_tls_key_path) {
            return Err(ember_config::Error::invalid(
                "server.http_tls_cert_path and server.http_tls_key_path go together: set both or neither",
            ));
        }
        if set(&self.http_tls_ca_path) && !set(&self.http_tls_cert_path) {
            return Err(ember_config::Error::invalid(
                "server.http_tls_ca_path needs server.http_tls_cert_path and server.http_tls_key_path",
            ));
        }
        Ok(())
    }

    /// Returns whether the port serves HTTPS.
    pub fn tls(&self) -> bool {
        !self.http_tls_cert_path.as_os_str().is_empty()
    }
}

/// How this process calls the ingesters of its cluster (`ingester_client`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterClientConfig {
    /// Call ingesters over TLS (they serve HTTPS with -server.http-tls-cert-path).
    pub tls_enabled: bool,
    /// PEM CA bundle that verifies ingesters' certificates; empty: the system's roots.
    pub tls_ca_path: PathBuf,
    /// Name the ingesters' certificates are issued to; empty: the address dialled.
    pub tls_server_name: String,
}

/// Tenancy and authentication (`auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Read the tenant from X-Scope-OrgID; when off every request is tenant anonymous.
    ///
    /// With `tokens_file` the tenant always comes from the credential (and
    /// `X-Scope-OrgID` picks one of its tenants), whatever this says.
    pub multitenancy_enabled: bool,
    /// YAML file of credentials (bearer tokens, basic auth) and their tenants; empty: no authentication.
    ///
    /// When set, every request but `/ready`, the liveness endpoint and
    /// `/metrics` needs a credential of the file; the file is read again when
    /// it changes. See `docs/operations.md`.
    pub tokens_file: PathBuf,
    /// Bearer token Ember processes of a cluster send each other; required with tokens_file in a cluster.
    ///
    /// Ingesters take `ingester.v1` calls, and any tenant, from a caller that
    /// presents it. Set it from a secret (`EMBER_AUTH_CLUSTER_TOKEN`); it never
    /// appears in `Debug` output.
    pub cluster_token: Secret,
}

impl AuthConfig {
    /// Returns whether requests need credentials.
    pub fn enabled(&self) -> bool {
        !self.tokens_file.as_os_str().is_empty()
    }

    /// Checks what serde cannot; `clustered` is whether the targets run as
    /// separate processes.
    pub fn validate(&self, clustered: bool) -> ember_config::Result<()> {
        if self.enabled() && clustered && self.cluster_token.is_empty() {
            return Err(ember_config::Error::invalid(
                "auth.cluster_token is required with auth.tokens_file in a cluster, so that ingesters can tell their peers from clients: set EMBER_AUTH_CLUSTER_TOKEN on every process",
            ));
        }
        Ok(())
    }
}
