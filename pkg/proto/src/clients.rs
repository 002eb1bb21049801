//! Connections to other Ember processes, one lazily connected channel per
//! address, shared by every caller.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tonic::{
    Request,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::ingester::v1::ingester_service_client::IngesterServiceClient;

/// The header that carries the tenant between processes, as from clients.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// An ingester as the ring knows it: where to call it, and the availability
/// zone it runs in (empty without zones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngesterAddr {
    /// `host:port` of its `ingester.v1` service.
    pub addr: String,
    /// Its availability zone.
    pub zone: String,
}

/// Clients of `ingester.v1.IngesterService`, by address (`host:port`).
pub struct IngesterClients {
    timeout: Duration,
    /// `Authorization` sent on every call: the cluster's shared token.
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// Set: ingesters serve HTTPS and are verified with it.
    tls: Option<ClientTlsConfig>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl std::fmt::Debug for IngesterClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngesterClients")
            .field("timeout", &self.timeout)
            .field("authenticated", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

impl IngesterClients {
    /// Returns a pool whose calls each give up after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            authorization: None,
            tls: None,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Calls ingesters over TLS, verifying them with the PEM CA bundle
    /// `ca_pem` (the system's roots when `None`) and, when given, as
    /// `server_name` rather than the address dialled.
    pub fn with_tls(mut self, ca_pem: Option<Vec<u8>>, server_name: Option<String>) -> Self {
        let mut tls = ClientTlsConfig::new();
        tls = match ca_pem {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_native_roots(),
        };
        if let Some(name) = server_name {
            tls = tls.domain_name(name);
        }
        self.tls = Some(tls);
        self
    }

    /// Sends `token` as a bearer token on every call, so that ingesters which
    /// require authentication know the caller is a peer.
    pub fn with_token(mut self, token: &str) -> Result<Self, tonic::Status> {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            tonic::Status::invalid_argument("the cluster token is not a valid header value")
        })?;
        self.authorization = Some(value);
        Ok(self)
    }

    /// Returns `message` as a request of `tenant`, with the cluster token.
    pub fn request<T>(&self, tenant: &str, message: T) -> Result<Request<T>, tonic::Status> {
        let mut request = tenant_request(tenant, message)?;
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }

    /// Returns a client of the ingester at `addr`. Connecting is lazy: a dead
    /// address fails the call, not this.
    pub fn get(&self, addr: &str) -> Result<IngesterServiceClient<Channel>, tonic::Status> {
        let mut channels = self.channels.lock().expect("poisoned");
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let invalid = |e: tonic::transport::Error| {
                    tonic::Status::invalid_argument(format!("ingester address {addr:?}: {e}"))
                };
                let mut endpoint =
                    Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(invalid)?;
                if let Some(tls) = &self.tls {
                    endpoint = endpoint.tls_config(tls.clone()).map_err(invalid)?;
                }
                let endpoint = endpoint
                    .connect_timeout(self.timeout.min(Duration::from_secs(2)))
                    .timeout(self.timeout)
                    .tcp_nodelay(true);
                let channel = endpoint.connect_lazy();
                channels.insert(addr.to_owned(), channel.clone());
                channel
            }
        };
        Ok(IngesterServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }
}

/// Returns `message` as a request of `tenant`.
pub fn tenant_request<T>(tenant: &str, message: T) -> Result<Request<T>, tonic::Status> {
    let mut request = Request::new(message);
    let value = MetadataValue::try_from(tenant).map_err(|_| {
        tonic::Status::invalid_argument(format!("tenant {tenant:?} is not a valid header value"))
    })?;
    request.metadata_mut().insert(TENANT_HEADER, value);
    Ok(request)
}
