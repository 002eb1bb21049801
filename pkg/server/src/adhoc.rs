//! `adhocprofiles.v1.AdHocProfileService`: profiles uploaded from the UI
//! (Grafana's "ad hoc profiles" view), kept per tenant and drawn on demand.
//!
//! An upload is a base64 pprof (gzipped or not) or folded stacks
//! (`a;b;c 12` lines). It is decoded once to refuse what cannot be drawn,
//! then kept as written under `<tenant>/adhoc/<ULID>/profile` with
//! `<tenant>/adhoc/<ULID>/meta.json` (`{"version": 1, "name", "uploadedAt"}`)
//! beside it; the ULID is the ID clients see. `Get` decodes the profile
//! again and answers, as Pyroscope does, a flamebearer profile JSON string
//! for one of its sample types (the first when none is asked for), with the
//! list of every sample type it holds.
//!
//! Bounds: an upload is at most [`MAX_PROFILE_BYTES`] decoded (and
//! decompressed), and a tenant keeps at most [`MAX_PROFILES`] uploads.

use std::sync::Arc;

use base64::Engine;
use ember_model::{
    flamegraph::{self, FunctionTree},
    pprof::DecodeLimits,
};
use ember_proto::{
    Tenant,
    adhocprofiles::v1::{
        AdHocProfilesGetRequest, AdHocProfilesGetResponse, AdHocProfilesListRequest,
        AdHocProfilesListResponse, AdHocProfilesProfileMetadata, AdHocProfilesUploadRequest,
        ad_hoc_profile_service_server::AdHocProfileService,
    },
    error::Code,
    google::v1::Profile,
};
use ember_time::SharedClock;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tonic::{Request, Response, Status};
use tracing::info;
use ulid::Ulid;

/// Largest profile kept, after base64 decoding and decompression.
pub const MAX_PROFILE_BYTES: usize = 16 << 20;
/// Most uploads one tenant keeps.
pub const MAX_PROFILES: usize = 1000;
/// Longest profile name, in bytes.
const MAX_NAME_BYTES: usize = 1024;
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    version: u32,
    name: String,
    #[serde(rename = "uploadedAt")]
    uploaded_at: i64,
}

/// The ad hoc profiles of every tenant, in one object store.
#[derive(Debug, Clone)]
pub struct AdHocProfiles {
    store: Arc<dyn ObjectStore>,
    clock: SharedClock,
}

fn prefix(tenant: &str) -> Path {
    Path::from(format!("{tenant}/adhoc"))
}

fn object(tenant: &str, id: Ulid, file: &str) -> Path {
    Path::from(format!("{tenant}/adhoc/{id}/{file}"))
}

fn internal(e: impl std::fmt::Display) -> Status {
    Code::Internal.status(format!("ad hoc profiles storage: {e}"))
}

fn decode_limits() -> DecodeLimits {
    DecodeLimits {
        max_decompressed_bytes: MAX_PROFILE_BYTES,
        max_samples: 0,
        max_stack_depth: 0,
    }
}

/// Decodes an uploaded profile: pprof (gzipped or not), else folded stacks.
fn parse(raw: &[u8]) -> Result<Profile, Status> {
    let bytes = ember_model::pprof::gunzip_bounded(raw, MAX_PROFILE_BYTES)
        .map_err(|e| ember_proto::error::status(&e))?;
    let pprof_error = match ember_model::pprof::decode(&bytes, &decode_limits()) {
        Ok(p) => return Ok(p.into_profile()),
        Err(e) => e,
    };
    let looks_like_text = std::str::from_utf8(&bytes).is_ok_and(|t| {
        t.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| {
            l.rsplit_once(' ')
                .is_some_and(|(_, v)| v.trim().parse::<i64>().is_ok())
        })
    });
    if !looks_like_text {
        return Err(Code::Unprocessable.status(format!(
            "the profile is neither pprof ({pprof_error}) nor folded stacks (\"a;b;c 12\" lines)"
        )));
    }
    ember_formats::folded::parse(&bytes, &ember_formats::folded::FoldedOptions::default())
        .map_err(|e| Code::Unprocessable.status(format!("folded stacks: {e}")))
}

/// Returns the sample type names of `profile`, in order.
fn sample_types(profile: &Profile) -> Vec<String> {
    let s = |i: i64| {
        profile
            .string_table
            .get(i as usize)
            .cloned()
            .unwrap_or_default()
    };
    profile.sample_type.iter().map(|t| s(t.r#type)).collect()
}

/// Returns the call tree of sample type `index` of `profile`.
pub(crate) fn tree_of(profile: &Profile, index: usize) -> FunctionTree {
    let strings = &profile.string_table;
    let name = |i: i64| strings.get(i as usize).map_or("", String::as_str);
    let functions: std::collections::HashMap<u64, &str> = profile
        .function
        .iter()
        .map(|f| (f.id, name(f.name)))
        .collect();
    let locations: std::collections::HashMap<u64, Vec<String>> = profile
        .location
        .iter()
        .map(|l| {
            // Lines are innermost first; the stack is built root first.
            let mut frames: Vec<String> = l
                .line
                .iter()
                .rev()
                .map(|line| {
                    functions
                        .get(&line.function_id)
                        .map_or_else(|| format!("{:#x}", l.address), |f| (*f).to_owned())
                })
                .collect();
            if frames.is_empty() {
                frames.push(format!("{:#x}", l.address));
            }
            (l.id, frames)
        })
        .collect();
    let mut tree = FunctionTree::new();
    let mut stack: Vec<&str> = Vec::new();
    for sample in &profile.sample {
        let Some(&value) = sample.value.get(index) else {
            continue;
        };
        if value <= 0 {
            continue;
        }
        stack.clear();
        for id in sample.location_id.iter().rev() {
            if let Some(frames) = locations.get(id) {
                stack.extend(frames.iter().map(String::as_str));
            }
        }
        tree.insert_stack(&stack, value);
    }
    tree
}

/// Returns the flamebearer `units` of a sample type, as Pyroscope's UI reads them.
fn units(sample_unit: &str, sample_type: &str) -> &'static str {
    match sample_unit {
        "bytes" => "bytes",
        "nanoseconds" | "microseconds" | "milliseconds" | "seconds" => "samples",
        _ if sample_type.contains("object") => "objects",
        _ if sample_type.contains("goroutine") => "goroutines",
        _ => "samples",
    }
}

impl AdHocProfiles {
    /// Returns the service storing in `store`; `clock` stamps uploads.
    pub fn new(store: Arc<dyn ObjectStore>, clock: SharedClock) -> Self {
        Self { store, clock }
    }

    async fn ids(&self, tenant: &str) -> Result<Vec<Ulid>, Status> {
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix(tenant)))
            .await
            .map_err(internal)?;
        let mut ids: Vec<Ulid> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn meta(&self, tenant: &str, id: Ulid) -> Result<Meta, Status> {
        let bytes = self.read(tenant, id, "meta.json").await?;
        let meta: Meta = serde_json::from_slice(&bytes).map_err(internal)?;
        if meta.version > FORMAT_VERSION {
            return Err(internal(format!(
                "ad hoc profile {id} has format version {}, newer than this binary's",
                meta.version
            )));
        }
        Ok(meta)
    }

    async fn read(&self, tenant: &str, id: Ulid, file: &str) -> Result<bytes::Bytes, Status> {
        match self.store.get(&object(tenant, id, file)).await {
            Ok(r) => r.bytes().await.map_err(internal),
            Err(object_store::Error::NotFound { .. }) => Err(Code::NotFound.status(format!(
                "no ad hoc profile {id}: list them with AdHocProfileService/List"
            ))),
            Err(e) => Err(internal(e)),
        }
    }

    /// Answers for `profile` as stored under `id`.
    fn answer(
        id: Ulid,
        meta: &Meta,
        profile: &Profile,
        sample_type: Option<&str>,
        max_nodes: Option<i64>,
    ) -> Result<AdHocProfilesGetResponse, Status> {
        let types = sample_types(profile);
        let index = match sample_type.filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => types.iter().position(|x| x == t).ok_or_else(|| {
                Code::BadRequest.status(format!(
                    "the profile has no sample type {t:?}; it has {}",
                    types.join(", ")
                ))
            })?,
        };
        let Some(chosen) = types.get(index).cloned() else {
            return Err(Code::Unprocessable.status("the profile has no sample types"));
        };
        let unit = profile
            .sample_type
            .get(index)
            .and_then(|t| profile.string_table.get(t.unit as usize))
            .map_or("", String::as_str);
        let max_nodes = match max_nodes {
            Some(n) if n > 0 => n as usize,
            _ => ember_querier::DEFAULT_MAX_NODES,
        };
        let fg = tree_of(profile, index).to_flamegraph(max_nodes);
        let sample_rate = if unit == "nanoseconds" {
            1_000_000_000
        } else {
            100
        };
        let flamebearer_profile = json!({
            "version": 1,
            "flamebearer": flamegraph::flamebearer_json(&fg),
            "metadata": {
                "format": "single",
                "spyName": "",
                "sampleRate": sample_rate,
                "units": units(unit, &chosen),
                "name": chosen,
            },
        });
        Ok(AdHocProfilesGetResponse {
            id: id.to_string(),
            name: meta.name.clone(),
            uploaded_at: meta.uploaded_at,
            profile_type: chosen,
            profile_types: types,
            flamebearer_profile: flamebearer_profile.to_string(),
        })
    }

    /// Stores an upload and answers as `Get` would for its first sample type.
    pub async fn store(
        &self,
        tenant: &str,
        req: AdHocProfilesUploadRequest,
    ) -> Result<AdHocProfilesGetResponse, Status> {
        if req.name.len() > MAX_NAME_BYTES {
            return Err(Code::BadRequest.status(format!(
                "the profile name is longer than {MAX_NAME_BYTES} bytes"
            )));
        }
        if req.profile.len() > MAX_PROFILE_BYTES / 3 * 4 + 4 {
            return Err(Code::TooLarge.status(format!(
                "the profile is larger than the {MAX_PROFILE_BYTES} bytes allowed"
            )));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(req.profile.trim())
            .map_err(|e| Code::BadRequest.status(format!("the profile is not base64: {e}")))?;
        let raw_for_parse = raw.clone();
        let profile = tokio::task::spawn_blocking(move || parse(&raw_for_parse))
            .await
            .map_err(internal)??;
        if self.ids(tenant).await?.len() >= MAX_PROFILES {
            return Err(Code::TooLarge.status(format!(
                "the tenant already keeps {MAX_PROFILES} ad hoc profiles, the most allowed"
            )));
        }
        let now = self.clock.now_millis();
        // The injected clock gives the time part; `Ulid::new` only the randomness.
        let id = Ulid::from_parts(now.max(0) as u64, Ulid::new().random());
        let meta = Meta {
            version: FORMAT_VERSION,
            name: req.name,
            uploaded_at: now,
        };
        // The profile first: a listed ID (its meta.json) always has one.
        self.store
            .put(&object(tenant, id, "profile"), PutPayload::from(raw))
            .await
            .map_err(internal)?;
        let meta_bytes = serde_json::to_vec(&meta).map_err(internal)?;
        self.store
            .put(
                &object(tenant, id, "meta.json"),
                PutPayload::from(meta_bytes),
            )
            .await
            .map_err(internal)?;
        info!(tenant, id = %id, name = %meta.name, "ad hoc profile stored");
        tokio::task::spawn_blocking(move || Self::answer(id, &meta, &profile, None, req.max_nodes))
            .await
            .map_err(internal)?
    }

    /// Returns a stored profile's flame graph.
    pub async fn load(
        &self,
        tenant: &str,
        req: AdHocProfilesGetRequest,
    ) -> Result<AdHocProfilesGetResponse, Status> {
        let id: Ulid = req.id.trim().parse().map_err(|_| {
            Code::BadRequest.status(format!("{:?} is not an ad hoc profile ID", req.id))
        })?;
        let meta = self.meta(tenant, id).await?;
        let raw = self.read(tenant, id, "profile").await?;
        tokio::task::spawn_blocking(move || {
            let profile = parse(&raw)?;
            Self::answer(
                id,
                &meta,
                &profile,
                req.profile_type.as_deref(),
                req.max_nodes,
            )
        })
        .await
        .map_err(internal)?
    }

    /// Lists the tenant's profiles, oldest first.
    pub async fn all(&self, tenant: &str) -> Result<Vec<AdHocProfilesProfileMetadata>, Status> {
        let ids = self.ids(tenant).await?;
        let metas = futures::stream::iter(ids.into_iter().map(|id| async move {
            match self.meta(tenant, id).await {
                Ok(m) => Ok(Some(AdHocProfilesProfileMetadata {
                    id: id.to_string(),
                    name: m.name,
                    uploaded_at: m.uploaded_at,
                })),
                // Still being uploaded.
                Err(s) if Code::of(&s) == Code::NotFound => Ok(None),
                Err(s) => Err(s),
            }
        }))
        .buffered(16)
        .try_collect::<Vec<_>>()
        .await?;
        Ok(metas.into_iter().flatten().collect())
    }
}

#[tonic::async_trait]
impl AdHocProfileService for AdHocProfiles {
    async fn upload(
        &self,
        request: Request<AdHocProfilesUploadRequest>,
    ) -> Result<Response<AdHocProfilesGetResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        Ok(Response::new(
            self.store(&tenant, request.into_inner()).await?,
        ))
    }

    async fn get(
        &self,
        request: Request<AdHocProfilesGetRequest>,
    ) -> Result<Response<AdHocProfilesGetResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        Ok(Response::new(
            self.load(&tenant, request.into_inner()).await?,
        ))
    }

    async fn list(
        &self,
        request: Request<AdHocProfilesListRequest>,
    ) -> Result<Response<AdHocProfilesListResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        Ok(Response::new(AdHocProfilesListResponse {
            profiles: self.all(&tenant).await?,
        }))
    }
}
