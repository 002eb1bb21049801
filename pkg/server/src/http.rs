//! Assembles every endpoint on one port: gRPC (dispatched by content type),
//! Connect, the legacy Pyroscope HTTP API, `/ready` and `/metrics`.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use ember_config::Secret;
use ember_distributor::Distributor;
use ember_proto::{
    Tenant,
    error::Code,
    push::v1::pusher_service_server::{PusherService, PusherServiceServer},
    querier::v1::querier_service_server::{QuerierService, QuerierServiceServer},
};
use ember_querier::Querier;
use tonic::codec::CompressionEncoding;
use tower::ServiceExt;

use crate::{
    auth::{self, AuthError, Authenticator},
    connect,
    metrics::Metrics,
    render,
};

/// What the HTTP layer serves; absent services answer 404.
#[derive(Debug, Clone)]
pub struct Services {
    pub distributor: Option<Distributor>,
    pub querier: Option<Arc<Querier>>,
    /// The ingester's `ingester.v1` service, in a cluster.
    pub ingester: Option<ember_ingester::IngesterApi>,
    /// Membership, shown at `/ring`.
    pub ring: Arc<ember_ring::Ring>,
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    pub multitenancy: bool,
    pub max_body_bytes: usize,
    /// Largest `ingester.v1` request an ingester decodes: a distributor
    /// forwards profiles decompressed, so this bounds by the largest
    /// decompressed profile any tenant may push.
    pub max_ingester_request_bytes: usize,
    /// The agent, whose `/targets` page is served when it runs.
    pub agent: Option<ember_agent::Agent>,
    /// Who may call, when `-auth.tokens-file` is set.
    pub auth: Option<Arc<Authenticator>>,
    /// The token cluster peers present (`-auth.cluster-token`).
    pub cluster_token: Secret,
}

/// Paths anyone may call, whatever the authentication: health and metrics.
const OPEN_PATHS: &[&str] = &["/ready", "/metrics"];

/// How a request's tenant is found.
#[derive(Debug)]
struct Tenancy {
    multitenancy: bool,
    auth: Option<Arc<Authenticator>>,
    cluster_token: Secret,
}

/// Returns the answer to a request whose credentials were refused.
fn refused(error: &AuthError) -> Response {
    let code = match error {
        AuthError::Forbidden { .. } => Code::Forbidden,
        _ => Code::Unauthenticated,
    };
    let mut response = connect::error_response(&code.status(error.to_string()));
    if code == Code::Unauthenticated {
        for challenge in auth::CHALLENGES {
            response.headers_mut().append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
    }
    response
}

/// Returns whether the request carries the cluster's token.
fn from_peer(headers: &HeaderMap, token: &Secret) -> bool {
    use subtle::ConstantTimeEq;
    !token.is_empty()
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| bool::from(v.trim().as_bytes().ct_eq(token.expose().as_bytes())))
}

/// Puts the request's [`Tenant`] into its extensions, or refuses it: from its
/// credentials when authentication is on, else from `X-Scope-OrgID`.
async fn tenant(State(tenancy): State<Arc<Tenancy>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) {
        return next.run(request).await;
    }
    if let Some(auth) = tenancy.auth.clone() {
        let tenant = if from_peer(request.headers(), &tenancy.cluster_token) {
            match request
                .headers()
                .get("x-scope-orgid")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
            {
                Some(t) if valid_tenant(t) => t.to_owned(),
                _ => {
                    return connect::error_response(
                        &Code::BadRequest
                            .status("a call between Ember processes needs a valid X-Scope-OrgID"),
                    );
                }
            }
        } else {
            let headers = request.headers().clone();
            // A new basic-auth credential costs a bcrypt verification.
            match tokio::task::spawn_blocking(move || auth.tenant(&headers)).await {
                Ok(Ok(tenant)) => tenant,
                Ok(Err(e)) => return refused(&e),
                Err(e) => {
                    return connect::error_response(&Code::Internal.status(e.to_string()));
                }
            }
        };
        request.extensions_mut().insert(Tenant(tenant));
        return next.run(request).await;
    }
    let tenant = if tenancy.multitenancy {
        match request
            .headers()
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
        {
            Some(t) if valid_tenant(t) => t.to_owned(),
            Some(t) => return connect::error_response(&Code::BadRequest.status(format!(
                "invalid tenant {t:?} in X-Scope-OrgID: use up to 150 letters, digits and !-_.*'()"
            ))),
            None => {
                if path == "/targets" {
                    return next.run(request).await;
                }
                return connect::error_response(
                    &Code::Unauthenticated.status("no tenant: set the X-Scope-OrgID header"),
                );
            }
        }
    } else {
        Tenant::ANONYMOUS.to_owned()
    };
    request.extensions_mut().insert(Tenant(tenant));
    next.run(request).await
}

/// Tenant IDs become object-storage prefixes, so only safe characters pass.
pub(crate) fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 150
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c))
}

/// Registers a Connect route for one unary method of a service.
macro_rules! connect_route {
    ($router:expr, $service:expr, $max:expr, $path:literal, $method:ident) => {{
        let service = $service.clone();
        let max = $max;
        $router.route(
            $path,
            post(
                move |tenant: axum::Extension<Tenant>, headers: HeaderMap, body: Bytes| {
                    let service = service.clone();
                    async move {
                        connect::unary(tenant.0, headers, body, max, |r| async move {
                            service.$method(r).await
                        })
                        .await
                    }
                },
            ),
        )
    }};
}

fn connect_routes(s: &Services) -> Router {
    let mut router = Router::new();
    let max = s.max_body_bytes;
    if let Some(d) = &s.distributor {
        router = connect_route!(router, d, max, "/push.v1.PusherService/Push", push);
        router = connect_route!(
            router,
            d,
            max,
            "/push.v1.PusherService/GetFeatureFlags",
            get_feature_flags
        );
    }
    if let Some(q) = &s.querier {
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/ProfileTypes",
            profile_types
        );
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/LabelValues",
            label_values
        );
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/LabelNames",
            label_names
        );
        router = connect_route!(router, q, max, "/querier.v1.QuerierService/Series", series);
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/SelectMergeStacktraces",
            select_merge_stacktraces
        );
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/SelectMergeProfile",
            select_merge_profile
        );
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/SelectSeries",
            select_series
        );
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/SelectMergeSpanProfile",
            select_merge_span_profile
        );
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/SelectHeatmap",
            select_heatmap
        );
        router = connect_route!(router, q, max, "/querier.v1.QuerierService/Diff", diff);
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/GetProfileStats",
            get_profile_stats
        );
    }
    router
}

fn grpc_routes(s: &Services) -> Router {
    let max = s.max_body_bytes;
    let mut routes = tonic::service::Routes::default();
    if let Some(d) = &s.distributor {
        routes = routes.add_service(
            PusherServiceServer::new(d.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max),
        );
    }
    if let Some(i) = &s.ingester {
        routes = routes.add_service(
            ember_proto::ingester::v1::ingester_service_server::IngesterServiceServer::new(
                i.clone(),
            )
            .max_decoding_message_size(s.max_ingester_request_bytes)
            .max_encoding_message_size(usize::MAX),
        );
    }
    if let Some(q) = &s.querier {
        routes = routes.add_service(
            QuerierServiceServer::from_arc(q.clone())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max),
        );
    }
    routes.prepare().into_axum_router()
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

async fn ready(State(ready): State<Arc<AtomicBool>>) -> Response {
    if ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Builds the whole application.
pub fn router(s: Services) -> Router {
    let http = Router::new()
        .merge(connect_routes(&s))
        .merge(render::routes(s.querier.clone()))
        .merge(crate::ingest::routes(s.distributor.clone()))
        .merge(ember_ui::routes(s.querier.clone()))
        .route("/ready", get(ready).with_state(s.ready.clone()))
        .merge(s.ring.router())
        .route(
            "/metrics",
            get(crate::metrics::handler).with_state(s.metrics.clone()),
        )
        .merge(s.agent.as_ref().map(|a| a.routes()).unwrap_or_default())
        .layer(DefaultBodyLimit::max(s.max_body_bytes));
    let grpc = grpc_routes(&s);
    let dispatch = tower::service_fn(move |request: Request<Body>| {
        let target = if is_grpc(&request) {
            grpc.clone()
        } else {
            http.clone()
        };
        async move { Ok::<_, Infallible>(target.oneshot(request).await.into_response()) }
    });
    Router::new()
        .fallback_service(dispatch)
        .layer(middleware::from_fn_with_state(
            Arc::new(Tenancy {
                multitenancy: s.multitenancy,
                auth: s.auth.clone(),
                cluster_token: s.cluster_token.clone(),
            }),
            tenant,
        ))
        .layer(middleware::from_fn_with_state(
            s.metrics.clone(),
            crate::metrics::record,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_path_safe() {
        assert!(valid_tenant("team-a_1"));
        assert!(!valid_tenant("../etc"));
        assert!(!valid_tenant("a/b"));
        assert!(!valid_tenant(""));
    }
}
