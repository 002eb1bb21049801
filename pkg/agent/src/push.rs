//! Pushing scraped profiles to distributors: a bounded buffer, batching, retries.
//!
//! The buffer holds at most `client.buffer_max_profiles` profiles and
//! `client.buffer_max_bytes` bytes. When distributors are down, a failed batch goes
//! back to the front of the buffer and the oldest profiles beyond the bound are
//! dropped and counted (`ember_agent_dropped_profiles_total{reason="buffer_full"}`),
//! so memory stays bounded and the newest profiles are delivered once a distributor
//! is back. A refusal (4xx other than 429) is not retried: the batch is dropped as
//! `rejected`.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ember_proto::Tenant;
use ember_proto::push::v1::pusher_service_client::PusherServiceClient;
use ember_proto::push::v1::pusher_service_server::PusherService;
use ember_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use ember_proto::types::v1::LabelPair;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use prost::Message;
use tokio::sync::Notify;
use tonic::transport::Channel;
use tracing::{debug, warn};

use crate::client::{HttpClient, http_client, http_client_trusting, roots_from};
use crate::config::{ClientConfig, PushProtocol};
use crate::metrics::AgentMetrics;

/// Why a push failed, and whether trying again may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PushError {
    /// What went wrong.
    pub message: String,
    /// False when the distributor refused the profiles themselves (4xx).
    pub retryable: bool,
}

impl PushError {
    fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let retryable = matches!(
            status.code(),
            Code::Unavailable
                | Code::ResourceExhausted
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Internal
                | Code::Unknown
                | Code::Cancelled
        );
        Self {
            message: format!("{:?}: {}", status.code(), status.message()),
            retryable,
        }
    }
}

/// Where pushes go: in-process or a remote distributor.
pub trait PushSink: Send + Sync + std::fmt::Debug {
    /// Sends one request for `tenant`.
    fn push(
        &self,
        tenant: String,
        request: PushRequest,
    ) -> BoxFuture<'static, Result<(), PushError>>;
}

/// Calls a [`PusherService`] (the distributor) directly, for `-target=all`.
#[derive(Debug)]
pub struct InProcess<S>(pub Arc<S>);

impl<S: PusherService + std::fmt::Debug> PushSink for InProcess<S> {
    fn push(
        &self,
        tenant: String,
        request: PushRequest,
    ) -> BoxFuture<'static, Result<(), PushError>> {
        let service = self.0.clone();
        Box::pin(async move {
            let mut request = tonic::Request::new(request);
            request.extensions_mut().insert(Tenant(tenant));
            service
                .push(request)
                .await
                .map(|_| ())
                .map_err(|s| PushError::from_status(&s))
        })
    }
}

/// Connect unary `POST {url}/push.v1.PusherService/Push`, `application/proto`, gzip.
#[derive(Debug)]
struct Connect {
    http: HttpClient,
    url: String,
    send_tenant: bool,
    /// `Authorization` of every push, from `client.bearer_token` or `client.basic_auth`.
    authorization: Option<String>,
}

impl PushSink for Connect {
    fn push(
        &self,
        tenant: String,
        request: PushRequest,
    ) -> BoxFuture<'static, Result<(), PushError>> {
        let http = self.http.clone();
        let url = format!(
            "{}/push.v1.PusherService/Push",
            self.url.trim_end_matches('/')
        );
        let send_tenant = self.send_tenant;
        let authorization = self.authorization.clone();
        Box::pin(async move {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let body = gz
                .write_all(&request.encode_to_vec())
                .and_then(|()| gz.finish())
                .map_err(|e| PushError {
                    message: format!("gzip: {e}"),
                    retryable: false,
                })?;
            let mut builder = http::Request::post(&url)
                .header("content-type", "application/proto")
                .header("content-encoding", "gzip")
                .header("connect-protocol-version", "1");
            if send_tenant {
                builder = builder.header("x-scope-orgid", &tenant);
            }
            if let Some(authorization) = &authorization {
                builder = builder.header("authorization", authorization);
            }
            let request = builder
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| PushError {
                    message: format!("bad request to {url}: {e}"),
                    retryable: false,
                })?;
            let response = http.request(request).await.map_err(|e| PushError {
                message: format!("POST {url}: {e}"),
                retryable: true,
            })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            Err(PushError {
                message: format!("POST {url}: {status}: {}", text.trim()),
                retryable: status.is_server_error() || status.as_u16() == 429,
            })
        })
    }
}

/// gRPC `push.v1.PusherService/Push` over plaintext HTTP/2.
#[derive(Debug)]
struct Grpc {
    client: PusherServiceClient<Channel>,
    send_tenant: bool,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl PushSink for Grpc {
    fn push(
        &self,
        tenant: String,
        request: PushRequest,
    ) -> BoxFuture<'static, Result<(), PushError>> {
        let mut client = self.client.clone();
        let send_tenant = self.send_tenant;
        let authorization = self.authorization.clone();
        Box::pin(async move {
            let mut request = tonic::Request::new(request);
            if send_tenant && let Ok(value) = tenant.parse() {
                request.metadata_mut().insert("x-scope-orgid", value);
            }
            if let Some(value) = authorization {
                request.metadata_mut().insert("authorization", value);
            }
            client
                .push(request)
                .await
                .map(|_| ())
                .map_err(|s| PushError::from_status(&s))
        })
    }
}

/// Returns the sink for a remote `client.url` (which must not be empty).
pub fn remote(client: &ClientConfig) -> ember_config::Result<Arc<dyn PushSink>> {
    let send_tenant = !client.tenant_id.is_empty();
    let invalid = |m: String| ember_config::Error::invalid(format!("client: {m}"));
    let authorization = client.authorization();
    match client.protocol {
        PushProtocol::Connect => Ok(Arc::new(Connect {
            http: if client.tls_ca_path.as_os_str().is_empty() {
                http_client()
            } else {
                http_client_trusting(roots_from(&client.tls_ca_path).map_err(invalid)?)
            },
            url: client.url.clone(),
            send_tenant,
            authorization,
        })),
        PushProtocol::Grpc => {
            let channel = tonic::transport::Endpoint::from_shared(client.url.clone())
                .map_err(|e| {
                    ember_config::Error::invalid(format!("client.url {:?}: {e}", client.url))
                })?
                .connect_timeout(client.timeout)
                .connect_lazy();
            let client = PusherServiceClient::new(channel)
                .send_compressed(tonic::codec::CompressionEncoding::Gzip);
            Ok(Arc::new(Grpc {
                client,
                send_tenant,
                authorization: authorization
                    .map(|a| a.parse())
                    .transpose()
                    .map_err(|_| invalid("the credentials are not a valid header value".into()))?,
            }))
        }
    }
}

/// A scraped profile waiting to be pushed.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) labels: Vec<LabelPair>,
    pub(crate) raw: Bytes,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: u64,
}

/// The bounded buffer between scrape loops and the pusher.
#[derive(Debug)]
pub(crate) struct Buffer {
    queue: Mutex<Queue>,
    notify: Notify,
    max_profiles: usize,
    max_bytes: u64,
    metrics: AgentMetrics,
}

impl Buffer {
    pub(crate) fn new(client: &ClientConfig, metrics: AgentMetrics) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            max_profiles: client.buffer_max_profiles,
            max_bytes: client.buffer_max_bytes,
            metrics,
        }
    }

    /// Adds a profile, dropping the oldest beyond the bound.
    pub(crate) fn add(&self, item: Item) {
        let mut q = self.queue.lock().expect("not poisoned");
        q.bytes += item.raw.len() as u64;
        q.items.push_back(item);
        self.enforce_bound(&mut q);
        drop(q);
        self.notify.notify_one();
    }

    /// Puts a batch that could not be pushed back in front, oldest first.
    fn requeue(&self, batch: Vec<Item>) {
        let mut q = self.queue.lock().expect("not poisoned");
        for item in batch.into_iter().rev() {
            q.bytes += item.raw.len() as u64;
            q.items.push_front(item);
        }
        self.enforce_bound(&mut q);
    }

    fn enforce_bound(&self, q: &mut Queue) {
        let mut dropped = 0;
        while q.items.len() > self.max_profiles || q.bytes > self.max_bytes {
            let Some(old) = q.items.pop_front() else {
                break;
            };
            q.bytes -= old.raw.len() as u64;
            dropped += 1;
        }
        if dropped > 0 {
            self.metrics
                .dropped_profiles
                .with_label_values(&["buffer_full"])
                .inc_by(dropped);
            warn!(
                dropped,
                "push buffer full: dropped the oldest profiles while distributors are unreachable"
            );
        }
        self.metrics.buffered_profiles.set(q.items.len() as i64);
    }

    fn take(&self, max: usize) -> Vec<Item> {
        let mut q = self.queue.lock().expect("not poisoned");
        let n = q.items.len().min(max);
        let batch: Vec<Item> = q.items.drain(..n).collect();
        q.bytes -= batch.iter().map(|i| i.raw.len() as u64).sum::<u64>();
        self.metrics.buffered_profiles.set(q.items.len() as i64);
        batch
    }

    fn len(&self) -> usize {
        self.queue.lock().expect("not poisoned").items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn request(batch: &[Item]) -> PushRequest {
    PushRequest {
        series: batch
            .iter()
            .map(|item| RawProfileSeries {
                labels: item.labels.clone(),
                samples: vec![RawSample {
                    raw_profile: item.raw.to_vec(),
                    id: String::new(),
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Pushes from `buffer` to `sink` until aborted.
pub(crate) async fn run(buffer: Arc<Buffer>, sink: Arc<dyn PushSink>, client: ClientConfig) {
    let tenant = if client.tenant_id.is_empty() {
        Tenant::ANONYMOUS.to_string()
    } else {
        client.tenant_id.clone()
    };
    let metrics = buffer.metrics.clone();
    let mut backoff = client.min_backoff;
    loop {
        // Wait for work; a notification may come between the check and the wait,
        // which `Notify` keeps as a permit.
        while buffer.is_empty() {
            buffer.notify.notified().await;
        }
        if buffer.len() < client.batch_max_profiles {
            tokio::time::sleep(client.batch_wait).await;
        }
        let batch = buffer.take(client.batch_max_profiles);
        if batch.is_empty() {
            continue;
        }
        let result =
            tokio::time::timeout(client.timeout, sink.push(tenant.clone(), request(&batch)))
                .await
                .unwrap_or_else(|_| {
                    Err(PushError {
                        message: format!("push timed out after {:?}", client.timeout),
                        retryable: true,
                    })
                });
        match result {
            Ok(()) => {
                debug!(profiles = batch.len(), "pushed");
                metrics.pushed_profiles.inc_by(batch.len() as u64);
                backoff = client.min_backoff;
            }
            Err(e) if !e.retryable => {
                metrics.push_failures.inc();
                metrics
                    .dropped_profiles
                    .with_label_values(&["rejected"])
                    .inc_by(batch.len() as u64);
                warn!(profiles = batch.len(), error = %e, "distributor refused profiles, dropped them");
            }
            Err(e) => {
                metrics.push_failures.inc();
                warn!(profiles = batch.len(), error = %e, retry_in = ?backoff, "push failed, will retry");
                buffer.requeue(batch);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(client.max_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8) -> Item {
        Item {
            labels: Vec::new(),
            raw: Bytes::from(vec![n; 10]),
        }
    }

    #[test]
    fn buffer_drops_oldest_beyond_bound() {
        let registry = prometheus::Registry::new();
        let metrics = AgentMetrics::register(&registry).unwrap();
        let client = ClientConfig {
            buffer_max_profiles: 3,
            ..Default::default()
        };
        let buffer = Buffer::new(&client, metrics.clone());
        for n in 0..5 {
            buffer.add(item(n));
        }
        let batch = buffer.take(2);
        assert_eq!(batch[0].raw[0], 2);
        buffer.add(item(5));
        buffer.add(item(6));
        // 4, 5, 6 queued; the failed batch (2, 3) goes back in front and is the oldest.
        buffer.requeue(batch);
        let rest: Vec<u8> = buffer.take(10).iter().map(|i| i.raw[0]).collect();
        assert_eq!(rest, vec![4, 5, 6]);
        assert_eq!(
            metrics
                .dropped_profiles
                .with_label_values(&["buffer_full"])
                .get(),
            4
        );
        let by_bytes = Buffer::new(
            &ClientConfig {
                buffer_max_bytes: 25,
                ..Default::default()
            },
            metrics,
        );
        for n in 0..3 {
            by_bytes.add(item(n));
        }
        assert_eq!(by_bytes.len(), 2);
    }
}
