//! The services Grafana's profiling apps call beside the query API: per-tenant
//! settings ([`crate::settings`]), ad hoc profiles ([`crate::adhoc`]), the
//! tenant's feature flags (`capabilities.v1`), and an `unimplemented` answer
//! for the Grafana Cloud-only services (source code from GitHub, recording
//! and collection rules), which Grafana handles by hiding the feature.
//!
//! They run wherever the querier runs (`-target=all` and `querier`), since
//! the same clients call both, and keep their state in object storage.

use std::sync::Arc;

use axum::{Router, routing::post};
use ember_proto::{
    capabilities::v1::{
        FeatureFlag, GetFeatureFlagsRequest, GetFeatureFlagsResponse,
        feature_flags_service_server::FeatureFlagsService,
    },
    error::Code,
};
use ember_time::SharedClock;
use object_store::ObjectStore;
use tonic::{Request, Response, Status};

use crate::{adhoc::AdHocProfiles, connect, settings::Settings};

/// The querier side's Grafana services.
#[derive(Debug, Clone)]
pub struct GrafanaApi {
    pub settings: Settings,
    pub adhoc: AdHocProfiles,
    pub features: Features,
}

impl GrafanaApi {
    /// Returns the services, keeping their state in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, clock: SharedClock) -> Self {
        Self {
            settings: Settings::new(store.clone(), clock.clone()),
            adhoc: AdHocProfiles::new(store, clock),
            features: Features,
        }
    }
}

/// `capabilities.v1.FeatureFlagsService`: what this server offers, the same
/// for every tenant.
#[derive(Debug, Clone, Copy)]
pub struct Features;

/// The features, as `(name, enabled, description)`.
pub const FEATURES: &[(&str, bool, &str)] = &[
    (
        "utf8LabelNames",
        true,
        "label names may hold any UTF-8 (quote them in selectors); clients opt in with `Accept: ...; allow-utf8-labelnames=true`",
    ),
    (
        "adhocProfiles",
        true,
        "profiles uploaded with adhocprofiles.v1 are kept per tenant",
    ),
    (
        "pluginSettings",
        true,
        "settings.v1 keeps settings per tenant in object storage",
    ),
    (
        "vcsIntegration",
        false,
        "source code from GitHub is a Grafana Cloud feature",
    ),
    (
        "recordingRules",
        false,
        "recording rules are a Grafana Cloud feature",
    ),
];

#[tonic::async_trait]
impl FeatureFlagsService for Features {
    async fn get_feature_flags(
        &self,
        _: Request<GetFeatureFlagsRequest>,
    ) -> Result<Response<GetFeatureFlagsResponse>, Status> {
        Ok(Response::new(GetFeatureFlagsResponse {
            feature_flags: FEATURES
                .iter()
                .map(|&(name, enabled, description)| FeatureFlag {
                    name: name.into(),
                    enabled,
                    description: Some(description.into()),
                    documentation_url: None,
                })
                .collect(),
        }))
    }
}

/// Grafana Cloud-only services and methods, with why they are not offered.
pub const CLOUD_ONLY: &[(&str, &[&str], &str)] = &[
    (
        "vcs.v1.VCSService",
        &[
            "GithubApp",
            "GithubLogin",
            "GithubRefresh",
            "GetFile",
            "GetCommit",
            "GetCommits",
        ],
        "showing source code from GitHub is a Grafana Cloud feature; Ember does not offer it",
    ),
    (
        "settings.v1.RecordingRulesService",
        &[
            "GetRecordingRule",
            "ListRecordingRules",
            "UpsertRecordingRule",
            "DeleteRecordingRule",
        ],
        "recording rules are a Grafana Cloud feature; Ember does not offer them",
    ),
    (
        "settings.v1.CollectionRulesService",
        &[
            "GetCollectionRule",
            "UpsertCollectionRule",
            "ListCollectionRules",
            "DeleteCollectionRule",
        ],
        "collection rules are a Grafana Cloud feature; Ember does not offer them",
    ),
];

/// Connect routes answering `unimplemented` for [`CLOUD_ONLY`].
pub(crate) fn cloud_only_routes() -> Router {
    let mut router = Router::new();
    for &(service, methods, why) in CLOUD_ONLY {
        for method in methods {
            router = router.route(
                &format!("/{service}/{method}"),
                // The body is read (and dropped) so that the connection
                // stays usable: hyper closes one whose request was left unread.
                post(move |_body: axum::body::Bytes| async move {
                    connect::error_response(&Code::Unimplemented.status(why))
                }),
            );
        }
    }
    router
}
