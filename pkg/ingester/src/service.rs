//! `ingester.v1.IngesterService`: how distributors write to this ingester
//! and queriers read its heads, in a cluster.

use std::{collections::BTreeSet, sync::Arc};

use ember_model::{Labels, ProfileId, ProfileType, ingest, wire};
use ember_proto::{
    Tenant,
    google::v1::Profile,
    ingester::v1::{
        AnnotatedProfile, MergeProfilesRequest, PushRequest, PushResponse, SelectProfilesResponse,
        SelectRequest, SeriesResponse, ingester_service_server::IngesterService,
    },
};
use ember_query::{Plan, ProfileFilter, SourceView};
use ember_symdb::resolve::PprofBuilder;
use rustc_hash::{FxHashMap, FxHashSet};
use tonic::{Request, Response, Status};

use crate::Ingester;

/// The gRPC face of an [`Ingester`].
#[derive(Debug, Clone)]
pub struct IngesterApi(pub Arc<Ingester>);

/// Returns the plan of a select request.
pub fn plan_of(req: &SelectRequest) -> Result<Plan, Status> {
    if !req.profile_type.is_empty() {
        req.profile_type.parse::<ProfileType>()?;
    }
    let selectors = ember_query::parse_selectors(&req.selectors)?;
    let mut plan = Plan::new(
        (!req.profile_type.is_empty()).then(|| req.profile_type.clone()),
        selectors,
        req.start_nanos,
        req.end_nanos,
    );
    if !req.span_ids.is_empty() {
        plan.samples.spans = Some(Arc::new(req.span_ids.iter().copied().collect()));
    }
    if let Some(selector) = &req.stack_trace_selector {
        plan.samples.call_site = selector.call_site.iter().map(|l| l.name.clone()).collect();
    }
    Ok(plan)
}

/// Calls `f` with each of `tenant`'s heads; once all were read, returns the
/// first error one gave.
fn each_head(
    ingester: &Ingester,
    tenant: &str,
    mut f: impl FnMut(&dyn SourceView) -> ember_query::Result<()>,
) -> Result<(), Status> {
    let mut error = None;
    ingester.with_heads(tenant, &mut |view| {
        if let Err(e) = f(view) {
            error.get_or_insert(e);
        }
    });
    error.map_or(Ok(()), |e| Err(e.into()))
}

impl IngesterApi {
    /// Runs `f` off the async runtime.
    async fn blocking<R: Send + 'static>(
        f: impl FnOnce() -> Result<R, Status> + Send + 'static,
    ) -> Result<R, Status> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Status::from(ember_block::Error::from(e)))?
    }
}

#[tonic::async_trait]
impl IngesterService for IngesterApi {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let ingester = self.0.clone();
        let push = request.into_inner();
        Self::blocking(move || {
            let p = wire::decode_push(push)?;
            ingester.admit_series(&tenant, &p.series, p.max_active_series)?;
            ingester.append_write(&tenant, &p.write())?;
            Ok(Response::new(PushResponse {}))
        })
        .await
    }

    async fn series(
        &self,
        request: Request<SelectRequest>,
    ) -> Result<Response<SeriesResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let plan = plan_of(request.get_ref())?;
        let ingester = self.0.clone();
        Self::blocking(move || {
            let mut out: BTreeSet<Labels> = BTreeSet::new();
            ingester.with_heads(&tenant, &mut |view| {
                ember_query::series_labels(view, &plan, &mut |l| {
                    out.insert(l.clone());
                })
            });
            Ok(Response::new(SeriesResponse {
                series: out
                    .iter()
                    .map(|l| ember_proto::types::v1::Labels {
                        labels: l.to_proto(),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn select_profiles(
        &self,
        request: Request<SelectRequest>,
    ) -> Result<Response<SelectProfilesResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        let plan = plan_of(request.get_ref())?;
        let with_spans = request.get_ref().span_totals;
        let ingester = self.0.clone();
        Self::blocking(move || {
            let mut out = SelectProfilesResponse::default();
            let mut spans: FxHashMap<ProfileId, Vec<(u64, i64)>> = FxHashMap::default();
            if with_spans {
                each_head(&ingester, &tenant, |view| {
                    ember_query::span_points(view, &plan, &mut |_, point, span| {
                        spans.entry(point.id).or_default().push((span, point.total));
                    })
                })?;
            }
            let mut series_index: FxHashMap<Labels, u32> = FxHashMap::default();
            let mut ids: Vec<ProfileId> = Vec::new();
            each_head(&ingester, &tenant, |view| {
                ember_query::points(view, &plan, &mut |labels, point| {
                    let next = series_index.len() as u32;
                    let i = *series_index.entry(labels.clone()).or_insert_with(|| {
                        out.series.push(ember_proto::types::v1::Labels {
                            labels: labels.to_proto(),
                        });
                        next
                    });
                    let annotations = view.annotations(point.id);
                    if !annotations.is_empty() {
                        out.annotated.push(AnnotatedProfile {
                            index: ids.len() as u32,
                            annotations: ingest::annotations_to_proto(annotations),
                        });
                    }
                    for &(span, total) in spans.get(&point.id).into_iter().flatten() {
                        out.span_profiles.push(ids.len() as u32);
                        out.span_ids.push(span);
                        out.span_values.push(total);
                    }
                    ids.push(point.id);
                    out.series_index.push(i);
                    out.time_nanos.push(point.time_nanos);
                    out.totals.push(point.total);
                })
            })?;
            out.ids = wire::encode_ids(ids);
            Ok(Response::new(out))
        })
        .await
    }

    async fn merge_profiles(
        &self,
        request: Request<MergeProfilesRequest>,
    ) -> Result<Response<Profile>, Status> {
        let tenant = Tenant::of(&request)?;
        let req = request.into_inner();
        let select = req.select.unwrap_or_default();
        let profile_type: ProfileType = select.profile_type.parse()?;
        let mut plan = plan_of(&select)?;
        let ids: FxHashSet<ProfileId> = wire::decode_ids(&req.ids)?.into_iter().collect();
        plan.profiles = ProfileFilter::Only(Arc::new(ids));
        let ingester = self.0.clone();
        Self::blocking(move || {
            let mut builder = PprofBuilder::new(
                (&profile_type.sample_type, &profile_type.sample_unit),
                (&profile_type.period_type, &profile_type.period_unit),
                0,
            );
            each_head(&ingester, &tenant, |view| {
                ember_query::merge_pprof(view, &plan, &mut builder)
            })?;
            Ok(Response::new(
                builder.finish(plan.start, plan.end - plan.start),
            ))
        })
        .await
    }
}
