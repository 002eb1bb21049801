//! Assembles every endpoint on one port: gRPC (dispatched by content type),
//! Connect, the legacy Pyroscope HTTP API, and the open paths (`/ready`,
//! `/live`, `/metrics`, `/debug/pprof/*`).
//!
//! The port serves from the moment it is bound ([`serving`]): the open paths at
//! once, everything else 503 with the readiness reasons until the modules are
//! started and the full [`router`] is installed in the [`Slot`]. So an
//! ingester replaying a large write-ahead log answers its probes, and takes no
//! write or query before the replay ends.

use std::{
    convert::Infallible,
    sync::{Arc, OnceLock},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, HeaderValue, header},
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
    grafana::GrafanaApi,
    health::{self, Readiness},
    logging,
    metrics::Metrics,
    render,
    selfprofile::{self, Profiler},
    status::StatusApi,
};
use ember_proto::querier::v1::async_querier_service_server::AsyncQuerierService;
use ember_proto::{
    adhocprofiles::v1::ad_hoc_profile_service_server::{
        AdHocProfileService, AdHocProfileServiceServer,
    },
    capabilities::v1::feature_flags_service_server::{
        FeatureFlagsService, FeatureFlagsServiceServer,
    },
    settings::v1::settings_service_server::{SettingsService, SettingsServiceServer},
    status::v1::status_service_server::{StatusService, StatusServiceServer},
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
    /// Settings, ad hoc profiles and feature flags, where the querier runs.
    pub grafana: Option<GrafanaApi>,
    /// Build information and configuration (`status.v1`), on every target.
    pub status: Option<StatusApi>,
}

/// Paths anyone may call, whatever the authentication: health, metrics and
/// profiling (as Pyroscope serves its pprof endpoints on the server port).
const OPEN_PATHS: &[&str] = &[
    "/ready",
    "/live",
    "/metrics",
    "/debug/pprof/profile",
    "/debug/pprof/heap",
];

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
    let capabilities = ember_proto::ClientCapabilities::from_accept(
        request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    request.extensions_mut().insert(capabilities);
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
        return with_tenant(request, next, tenant).await;
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
    with_tenant(request, next, tenant).await
}

/// Runs the request as `tenant`, whom the response names too (for the request log).
async fn with_tenant(mut request: Request, next: Next, tenant: String) -> Response {
    request.extensions_mut().insert(Tenant(tenant.clone()));
    let mut response = next.run(request).await;
    response.extensions_mut().insert(Tenant(tenant));
    response
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
        router = connect_route!(
            router,
            q,
            max,
            "/querier.v1.QuerierService/AnalyzeQuery",
            analyze_query
        );
        let merge = crate::async_query::AsyncMerge(q.clone());
        router = connect_route!(
            router,
            merge,
            max,
            "/querier.v1.AsyncQuerierService/SelectMergeProfileAsync",
            select_merge_profile_async
        );
    }
    if let Some(g) = &s.grafana {
        let (settings, adhoc, features) = (&g.settings, &g.adhoc, &g.features);
        router = connect_route!(
            router,
            settings,
            max,
            "/settings.v1.SettingsService/Get",
            get
        );
        router = connect_route!(
            router,
            settings,
            max,
            "/settings.v1.SettingsService/Set",
            set
        );
        router = connect_route!(
            router,
            adhoc,
            max,
            "/adhocprofiles.v1.AdHocProfileService/Upload",
            upload
        );
        router = connect_route!(
            router,
            adhoc,
            max,
            "/adhocprofiles.v1.AdHocProfileService/Get",
            get
        );
        router = connect_route!(
            router,
            adhoc,
            max,
            "/adhocprofiles.v1.AdHocProfileService/List",
            list
        );
        router = connect_route!(
            router,
            features,
            max,
            "/capabilities.v1.FeatureFlagsService/GetFeatureFlags",
            get_feature_flags
        );
        router = router.merge(crate::grafana::cloud_only_routes());
    }
    if let Some(st) = &s.status {
        router = connect_route!(
            router,
            st,
            max,
            "/status.v1.StatusService/GetBuildInfo",
            get_build_info
        );
        router = connect_route!(
            router,
            st,
            max,
            "/status.v1.StatusService/GetConfig",
            get_config
        );
        router = connect_route!(
            router,
            st,
            max,
            "/status.v1.StatusService/GetDiffConfig",
            get_diff_config
        );
        router = connect_route!(
            router,
            st,
            max,
            "/status.v1.StatusService/GetDefaultConfig",
            get_default_config
        );
        router = router.merge(st.routes());
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
        routes = routes.add_service(
            ember_proto::querier::v1::async_querier_service_server::AsyncQuerierServiceServer::new(
                crate::async_query::AsyncMerge(q.clone()),
            )
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX),
        );
    }
    if let Some(g) = &s.grafana {
        routes = routes
            .add_service(SettingsServiceServer::new(g.settings.clone()))
            .add_service(
                AdHocProfileServiceServer::new(g.adhoc.clone()).max_decoding_message_size(max),
            )
            .add_service(FeatureFlagsServiceServer::new(g.features));
    }
    if let Some(st) = &s.status {
        routes = routes.add_service(StatusServiceServer::new(st.clone()));
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

/// What every target serves from the moment its port is bound.
#[derive(Debug, Clone)]
pub struct Open {
    pub readiness: Readiness,
    pub metrics: Metrics,
    pub profiler: Profiler,
}

/// Where the full [`router`] is installed, once, when the modules are ready.
#[derive(Debug, Clone, Default)]
pub struct Slot(Arc<OnceLock<Router>>);

impl Slot {
    /// Installs the full router; later calls change nothing.
    pub fn install(&self, router: Router) {
        let _ = self.0.set(router);
    }
}

/// The most of a request's body read before answering it 503 while the
/// modules are not ready; a larger body's client may see its connection
/// closed instead.
const NOT_READY_BODY_BYTES: usize = 16 << 20;

/// Returns the answer to a request that comes before the modules are ready:
/// 503 with the reasons, as a gRPC or a Connect error.
fn not_ready(request: &Request, readiness: &Readiness) -> Response {
    let reasons = readiness.reasons();
    let why = if reasons.is_empty() {
        "starting".to_owned()
    } else {
        reasons.join("; ")
    };
    let status = Code::Unavailable.status(format!("not ready: {why}"));
    if is_grpc(request) {
        status.into_http()
    } else {
        connect::error_response(&status)
    }
}

/// Returns what the port serves from the moment it is bound: the open paths,
/// and the router in `slot` once installed (503 before), each request counted
/// in the metrics and logged.
pub fn serving(open: Open, slot: Slot) -> Router {
    let readiness = open.readiness.clone();
    let rest = tower::service_fn(move |request: Request<Body>| {
        let (slot, readiness) = (slot.clone(), readiness.clone());
        async move {
            Ok::<_, Infallible>(match slot.0.get() {
                Some(app) => app.clone().oneshot(request).await.into_response(),
                None => {
                    let response = not_ready(&request, &readiness);
                    // Answering before the client has sent its body (a push,
                    // say) makes its write fail with a broken pipe, and it
                    // never reads the 503: the body is read, to a bound, first.
                    let _ = axum::body::to_bytes(request.into_body(), NOT_READY_BODY_BYTES).await;
                    response
                }
            })
        }
    });
    Router::new()
        .route("/ready", get(health::ready).with_state(open.readiness))
        .route("/live", get(health::live))
        .route(
            "/metrics",
            get(crate::metrics::handler).with_state(open.metrics.clone()),
        )
        .route(
            "/debug/pprof/profile",
            get(selfprofile::profile_handler).with_state(open.profiler),
        )
        .route("/debug/pprof/heap", get(selfprofile::heap_handler))
        .fallback_service(rest)
        .layer(middleware::from_fn(logging::log_request))
        .layer(middleware::from_fn_with_state(
            open.metrics,
            crate::metrics::record,
        ))
}

/// Builds the application the modules serve, installed in [`serving`]'s slot.
pub fn router(s: Services) -> Router {
    let http = Router::new()
        .merge(connect_routes(&s))
        .merge(render::routes(s.querier.clone()))
        .merge(crate::ingest::routes(s.distributor.clone()))
        .merge(ember_ui::routes(s.querier.clone()))
        .merge(s.ring.router())
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
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::health::reason;

    async fn call(app: &Router, method: &str, path: &str, content_type: &str) -> Response {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap()
    }

    async fn text(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn until_the_router_is_installed_only_the_open_paths_answer() {
        let readiness = Readiness::new();
        let replaying =
            "replaying write-ahead log: 40%, 4,000 of 10,000 records (rebuilding heads)";
        readiness.set(reason::WAL_REPLAY, replaying);
        let slot = Slot::default();
        let app = serving(
            Open {
                readiness: readiness.clone(),
                metrics: Metrics::new(),
                profiler: Profiler::new(),
            },
            slot.clone(),
        );
        let live = call(&app, "GET", "/live", "").await;
        assert_eq!(live.status(), 200);
        let ready = call(&app, "GET", "/ready", "").await;
        assert_eq!(ready.status(), 503);
        assert_eq!(text(ready).await, format!("{replaying}\n"));
        assert_eq!(call(&app, "GET", "/metrics", "").await.status(), 200);

        let push = call(
            &app,
            "POST",
            "/push.v1.PusherService/Push",
            "application/proto",
        )
        .await;
        assert_eq!(push.status(), 503);
        let body = text(push).await;
        assert!(
            body.contains("unavailable") && body.contains(replaying),
            "{body}"
        );
        let grpc = call(
            &app,
            "POST",
            "/push.v1.PusherService/Push",
            "application/grpc",
        )
        .await;
        assert_eq!(grpc.headers()["grpc-status"], "14", "gRPC's UNAVAILABLE");

        // The body is read before the answer, so that a client still sending
        // it reads the 503 instead of a broken pipe.
        let sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let chunks = {
            let sent = sent.clone();
            futures::stream::iter([b"profile".to_vec(), b" bytes".to_vec()]).chain(
                futures::stream::once(async move {
                    sent.store(true, std::sync::atomic::Ordering::SeqCst);
                    Vec::new()
                }),
            )
        };
        let request = Request::builder()
            .method("POST")
            .uri("/ingest?name=x")
            .body(Body::from_stream(chunks.map(Ok::<_, Infallible>)))
            .unwrap();
        let refused = app.clone().oneshot(request).await.unwrap();
        assert_eq!(refused.status(), 503);
        assert!(
            sent.load(std::sync::atomic::Ordering::SeqCst),
            "the body was not read"
        );

        slot.install(Router::new().route("/x", get(|| async { "x" })));
        readiness.clear(reason::WAL_REPLAY);
        assert_eq!(text(call(&app, "GET", "/x", "").await).await, "x");
        assert_eq!(call(&app, "GET", "/ready", "").await.status(), 200);
    }

    #[test]
    fn tenant_ids_are_path_safe() {
        assert!(valid_tenant("team-a_1"));
        assert!(!valid_tenant("../etc"));
        assert!(!valid_tenant("a/b"));
        assert!(!valid_tenant(""));
    }
}
