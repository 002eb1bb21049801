//! `status.v1.StatusService` and its HTTP forms (Pyroscope's
//! `/api/v1/status/buildinfo`, `/api/v1/status/config`, `.../config/diff`,
//! `.../config/default`): what binary runs and with which configuration.
//!
//! The configuration is shown as YAML with every secret (keys naming a
//! secret, password, token or access key) replaced by `********`, as
//! Pyroscope masks them. It is rendered once, at startup.

use std::sync::Arc;

use axum::{Json, Router, http::header, response::IntoResponse, routing::get};
use ember_proto::{
    google::api::HttpBody,
    status::v1::{
        GetBuildInfoData, GetBuildInfoRequest, GetBuildInfoResponse, GetConfigRequest,
        status_service_server::StatusService,
    },
};
use serde_yaml::Value;
use tonic::{Request, Response as TonicResponse, Status};

use crate::config::Config;

/// What replaces a secret in a shown configuration.
const MASK: &str = "********";
const YAML: &str = "text/plain; charset=utf-8";

/// The status of this process, rendered at startup.
#[derive(Debug, Clone)]
pub struct StatusApi(Arc<Rendered>);

#[derive(Debug)]
struct Rendered {
    config: String,
    diff: String,
    default: String,
}

/// Returns whether a configuration key holds a secret.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    (key.contains("secret")
        || key.contains("password")
        || key.contains("token")
        || key.ends_with("_key"))
        && !key.ends_with("_file")
        && !key.ends_with("_path")
        && !key.ends_with("_id")
}

/// Replaces every non-empty secret in `value`.
fn mask(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let secret = k.as_str().is_some_and(is_secret);
                match v {
                    Value::String(s) if secret && !s.is_empty() => *s = MASK.to_owned(),
                    _ => mask(v),
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// Returns the keys of `value` that differ from `default`, as a mapping.
fn diff(value: &Value, default: &Value) -> Option<Value> {
    match (value, default) {
        (Value::Mapping(v), Value::Mapping(d)) => {
            let mut out = serde_yaml::Mapping::new();
            for (k, vv) in v {
                match d.get(k) {
                    Some(dv) => {
                        if let Some(changed) = diff(vv, dv) {
                            out.insert(k.clone(), changed);
                        }
                    }
                    None => {
                        out.insert(k.clone(), vv.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Mapping(out))
        }
        (v, d) if v == d => None,
        (v, _) => Some(v.clone()),
    }
}

fn yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

fn to_value(config: &Config) -> Value {
    let mut v = serde_yaml::to_value(config).unwrap_or(Value::Null);
    mask(&mut v);
    v
}

impl StatusApi {
    /// Renders the status of a process running `config`.
    pub fn new(config: &Config) -> Self {
        let running = to_value(config);
        let default = to_value(&Config::default());
        let diff = diff(&running, &default).unwrap_or(Value::Mapping(serde_yaml::Mapping::new()));
        Self(Arc::new(Rendered {
            config: yaml(&running),
            diff: yaml(&diff),
            default: yaml(&default),
        }))
    }

    fn build_info() -> GetBuildInfoResponse {
        GetBuildInfoResponse {
            status: "success".into(),
            data: Some(GetBuildInfoData {
                version: env!("CARGO_PKG_VERSION").into(),
                revision: option_env!("EMBER_GIT_REVISION")
                    .unwrap_or("unknown")
                    .into(),
                branch: option_env!("EMBER_GIT_BRANCH").unwrap_or("unknown").into(),
                build_user: String::new(),
                build_date: option_env!("EMBER_BUILD_DATE").unwrap_or("unknown").into(),
                go_version: format!("rust (edition {})", "2024"),
            }),
        }
    }

    fn body(text: &str) -> HttpBody {
        HttpBody {
            content_type: YAML.into(),
            data: text.as_bytes().to_vec(),
        }
    }

    /// The HTTP routes Pyroscope serves these at.
    pub(crate) fn routes(&self) -> Router {
        let text =
            |s: String| move || async move { ([(header::CONTENT_TYPE, YAML)], s).into_response() };
        Router::new()
            .route(
                "/api/v1/status/buildinfo",
                get(|| async { Json(pbjson_value(&Self::build_info())) }),
            )
            .route("/api/v1/status/config", get(text(self.0.config.clone())))
            .route("/api/v1/status/config/diff", get(text(self.0.diff.clone())))
            .route(
                "/api/v1/status/config/default",
                get(text(self.0.default.clone())),
            )
    }
}

fn pbjson_value(r: &GetBuildInfoResponse) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

#[tonic::async_trait]
impl StatusService for StatusApi {
    async fn get_build_info(
        &self,
        _: Request<GetBuildInfoRequest>,
    ) -> Result<TonicResponse<GetBuildInfoResponse>, Status> {
        Ok(TonicResponse::new(Self::build_info()))
    }

    async fn get_config(
        &self,
        _: Request<GetConfigRequest>,
    ) -> Result<TonicResponse<HttpBody>, Status> {
        Ok(TonicResponse::new(Self::body(&self.0.config)))
    }

    async fn get_diff_config(
        &self,
        _: Request<GetConfigRequest>,
    ) -> Result<TonicResponse<HttpBody>, Status> {
        Ok(TonicResponse::new(Self::body(&self.0.diff)))
    }

    async fn get_default_config(
        &self,
        _: Request<GetConfigRequest>,
    ) -> Result<TonicResponse<HttpBody>, Status> {
        Ok(TonicResponse::new(Self::body(&self.0.default)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_and_diffs_against_defaults() {
        let mut config = Config::default();
        config.storage.s3.secret_access_key = "hunter2".into();
        config.server.http_listen_port = 4041;
        let status = StatusApi::new(&config);
        assert!(!status.0.config.contains("hunter2"), "{}", status.0.config);
        assert!(status.0.config.contains(MASK));
        assert!(
            status.0.diff.contains("http_listen_port: 4041"),
            "{}",
            status.0.diff
        );
        assert!(
            !status.0.diff.contains("replication_factor"),
            "{}",
            status.0.diff
        );
        assert!(!status.0.default.contains("4041"));
        let info = StatusApi::build_info();
        assert_eq!(info.data.unwrap().version, env!("CARGO_PKG_VERSION"));
    }
}
