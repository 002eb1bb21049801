//! The querier answers `querier.v1.QuerierService` by evaluating every source
//! of a tenant — the ingester's heads (recent data) and the blocks in object
//! storage (older data) — and merging their partial results.
//!
//! A head and the block it becomes share a ULID; heads are collected before
//! blocks are listed, and a block whose ULID is still a head is skipped, so a
//! profile is counted once even while its head is being flushed.
//!
//! In a cluster the heads are on other processes ([`remote`]) and every
//! profile has up to `replication_factor` copies, in ingesters and in the
//! level-1 blocks they flushed. Each query counts each profile ID once
//! ([`ProfileFilter::Once`]), whichever copies it meets. Blocks whose data a
//! compacted block holds ([`ember_block::superseded`]) are not read at all.

mod analyze;
mod blocks;
mod error;
mod heatmap;
mod limits;
mod metrics;
pub mod remote;
mod series;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use ember_limits::{Limits, TenantLimits};
use ember_time::{SharedClock, SystemClock};
use limits::{Abandoned, QueryLimits};

use ember_block::{Block, BlockView, Fetch};
/// The block cache a querier reads through ([`Querier::with_cache`]).
pub use ember_block::{BlockCache, BlockCacheMetrics};
use ember_model::selector::is_bare_name;
use ember_model::{
    Labels, ProfileType, Selector,
    flamegraph::{self, FunctionTree},
    labels::PROFILE_TYPE,
};
use ember_proto::{
    ClientCapabilities, Tenant,
    google::v1::Profile,
    querier::v1::{
        AnalyzeQueryRequest, AnalyzeQueryResponse, DiffRequest, DiffResponse, ProfileFormat,
        ProfileTypesRequest, ProfileTypesResponse, SelectHeatmapRequest, SelectHeatmapResponse,
        SelectMergeProfileRequest, SelectMergeSpanProfileRequest, SelectMergeSpanProfileResponse,
        SelectMergeStacktracesRequest, SelectMergeStacktracesResponse, SelectSeriesRequest,
        SelectSeriesResponse, SeriesRequest, SeriesResponse,
        querier_service_server::QuerierService,
    },
    types::v1::{
        ExemplarType, GetProfileStatsRequest, GetProfileStatsResponse, LabelNamesRequest,
        LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, StackTraceSelector,
    },
};
use ember_query::{
    Downsampling, GoPgo, Need, Plan, ProfileFilter, RecentData, RecentSources, SourceView,
};
use ember_symdb::resolve::PprofBuilder;
pub use error::{Error, Result};
use futures::{StreamExt, TryStreamExt};
pub use metrics::QuerierMetrics;
use object_store::ObjectStore;
pub use remote::{IngesterSet, RemoteIngesters};
use tonic::{Request, Response, Status};
use ulid::Ulid;

/// The block cache of a querier not given one ([`Querier::with_cache`]):
/// the default of `storage.cache.max_size_bytes`.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// Blocks opened and fetched at once by one query.
const BLOCKS_IN_PARALLEL: usize = 16;

/// Flame graphs keep this many nodes unless the request asks otherwise.
pub const DEFAULT_MAX_NODES: usize = 8192;

/// The querier of one process.
#[derive(Debug)]
pub struct Querier {
    /// Where recent data comes from: the ingester of this process, the
    /// ingesters of the cluster, or nowhere (blocks only).
    recent: Option<Arc<dyn RecentData>>,
    store: Arc<dyn ObjectStore>,
    /// Opened blocks; blocks are immutable, so an entry never goes stale. An
    /// entry goes when its block is no longer listed (the compactor deleted it).
    blocks: Mutex<HashMap<(String, Ulid), Arc<Block>>>,
    /// Metas from the bucket index of blocks not opened (not chosen by a
    /// query yet), so that choosing reads the index only for blocks new to
    /// it; gone with their blocks, as `blocks`.
    metas: Mutex<HashMap<(String, Ulid), ember_block::BlockMeta>>,
    /// Footers, pages and symbols of the blocks, shared by every query.
    cache: Arc<BlockCache>,
    metrics: QuerierMetrics,
    /// Each tenant's query limits ([`limits`]).
    limits: QueryLimits,
}

/// Applies the tenant's query limits to a request (see [`limits`]): gives the
/// request as they leave it and the permit the query holds while it runs,
/// returns the RPC's empty answer when nothing can match, or the refusal.
macro_rules! admit {
    ($self:ident, $tenant:expr, $request:expr) => {
        match $self.limits.admit($tenant, $request.into_inner())? {
            Some(admitted) => admitted,
            None => return Ok(Response::new(Default::default())),
        }
    };
}

/// Converts a millisecond range to inclusive nanoseconds; `0, 0` means all time.
fn nanos_range(start_ms: i64, end_ms: i64) -> Result<(i64, i64)> {
    if start_ms == 0 && end_ms == 0 {
        return Ok((i64::MIN, i64::MAX));
    }
    if end_ms < start_ms {
        return Err(Error::InvalidRequest(format!(
            "end ({end_ms}) is before start ({start_ms}); both are unix milliseconds"
        )));
    }
    Ok((
        start_ms.saturating_mul(1_000_000),
        end_ms.saturating_mul(1_000_000).saturating_add(999_999),
    ))
}

fn parse_selectors(matchers: &[String]) -> Result<Vec<Selector>> {
    Ok(ember_query::parse_selectors(matchers)?)
}

/// Applies a request's `stack_trace_selector` and `profile_id_selector` to
/// `plan`; returns the Go PGO trimming asked for, if any (which, as in
/// Pyroscope, replaces the call site).
fn select_samples(
    plan: &mut Plan,
    stack_trace_selector: Option<&StackTraceSelector>,
    profile_ids: &[String],
) -> Result<Option<GoPgo>> {
    plan.ids = ember_query::parse_profile_ids(profile_ids).map_err(Error::InvalidRequest)?;
    let Some(selector) = stack_trace_selector else {
        return Ok(None);
    };
    if let Some(pgo) = &selector.go_pgo {
        return Ok(Some(GoPgo {
            keep_locations: pgo.keep_locations as usize,
            aggregate_callees: pgo.aggregate_callees,
        }));
    }
    if selector.call_site.len() > MAX_CALL_SITE {
        return Err(Error::InvalidRequest(format!(
            "a call site has at most {MAX_CALL_SITE} frames, got {}",
            selector.call_site.len()
        )));
    }
    plan.samples.call_site = selector.call_site.iter().map(|l| l.name.clone()).collect();
    Ok(None)
}

/// Stack depth is limited at ingest; a call site cannot be deeper.
const MAX_CALL_SITE: usize = 1024;
/// Span IDs one request may select.
const MAX_SPANS: usize = 10_000;

/// Returns the nodes a flame graph keeps: `max_nodes` when positive, every
/// node (0) when negative, [`DEFAULT_MAX_NODES`] when absent or 0.
fn max_nodes(requested: Option<i64>) -> usize {
    match requested {
        Some(n) if n > 0 => n as usize,
        Some(n) if n < 0 => 0,
        _ => DEFAULT_MAX_NODES,
    }
}

/// The sources of one query: recent data and prefetched blocks.
struct Sources {
    recent: RecentSources,
    blocks: Vec<BlockView>,
}

impl Sources {
    /// Calls `f` with every source and the plan to evaluate it with; the
    /// plan's filter counts each profile ID once over all of them.
    fn each(
        self,
        plan: &Plan,
        f: &mut dyn FnMut(&dyn SourceView, &Plan) -> ember_query::Result<()>,
    ) -> Result<()> {
        let Sources { recent, blocks } = self;
        let mut ranges =
            Vec::with_capacity(recent.views.len() + recent.merged.len() + blocks.len());
        for source in &recent.views {
            source.with_view(&mut |view| {
                ranges.push(view.time_range());
                Ok(())
            })?;
        }
        ranges.extend(recent.merged.iter().map(|b| b.time_range()));
        ranges.extend(blocks.iter().map(|b| b.time_range()));
        let overlapping = overlapping(&ranges);
        let mut plan = plan.clone();
        plan.profiles = ProfileFilter::once_except(recent.counted);
        for source in &recent.views {
            source.with_view(&mut |view| f(view, &plan))?;
        }
        let preselected = plan.preselected();
        for block in &recent.merged {
            f(block, &preselected)?;
        }
        // A compacted block holds each profile once, and one whose time range
        // meets no other source's shares no profile with them (replicas of a
        // profile have its time): its IDs need not be tracked, which is a set
        // insert per profile, a third of a long time series query.
        let mut alone = plan.clone();
        alone.profiles = ProfileFilter::All;
        let first_block = ranges.len() - blocks.len();
        for (block, overlaps) in blocks.iter().zip(&overlapping[first_block..]) {
            let deduplicated = block.block.meta.compaction.level > 1;
            f(
                block,
                if deduplicated && !overlaps {
                    &alone
                } else {
                    &plan
                },
            )?;
        }
        Ok(())
    }
}

/// Returns, for each time range, whether it meets another one (`None`, an
/// empty source, meets none).
fn overlapping(ranges: &[Option<(i64, i64)>]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..ranges.len()).filter(|&i| ranges[i].is_some()).collect();
    order.sort_unstable_by_key(|&i| ranges[i]);
    let mut out = vec![false; ranges.len()];
    // Sorted by start, a range meets an earlier one when it starts before the
    // latest end so far, and a later one when the next starts before its end.
    let mut latest_end = i64::MIN;
    for (k, &i) in order.iter().enumerate() {
        let (start, end) = ranges[i].expect("filtered");
        let next_start = order.get(k + 1).map(|&j| ranges[j].expect("filtered").0);
        out[i] = start <= latest_end || next_start.is_some_and(|n| n <= end);
        latest_end = latest_end.max(end);
    }
    out
}

impl Querier {
    /// Returns a querier of the blocks in `store` and, if any, the recent
    /// data of `recent`, with no query limits and a block cache of
    /// [`DEFAULT_CACHE_BYTES`].
    pub fn new(recent: Option<Arc<dyn RecentData>>, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            recent,
            store,
            blocks: Mutex::new(HashMap::new()),
            metas: Mutex::new(HashMap::new()),
            cache: Arc::new(BlockCache::new(
                DEFAULT_CACHE_BYTES,
                ember_block::BlockCacheMetrics::detached(),
            )),
            metrics: QuerierMetrics::detached(),
            limits: QueryLimits::new(Arc::new(Limits::unlimited()), SystemClock::shared()),
        }
    }

    /// Returns the querier reading blocks through `cache`.
    pub fn with_cache(mut self, cache: Arc<BlockCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Records requests and what each query reads into `metrics`.
    pub fn with_metrics(mut self, metrics: QuerierMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Returns the querier applying each tenant's query limits from `limits`,
    /// with now (for `max_query_lookback`) read from `clock`.
    pub fn with_limits(mut self, limits: Arc<dyn TenantLimits>, clock: SharedClock) -> Self {
        self.limits = QueryLimits::new(limits, clock);
        self
    }

    /// Collects the sources of `tenant` that may hold data of `plan`.
    async fn sources(&self, tenant: &str, plan: &Plan, need: Need) -> Result<Sources> {
        let (start, end) = (plan.start, plan.end);
        // A call site needs the stack tree even to draw time series.
        let with_symbols = need == Need::Samples || !plan.samples.call_site.is_empty();
        // Heads first: see the module docs for why the order matters.
        let recent = match &self.recent {
            Some(recent) => recent
                .sources(tenant, plan, need)
                .await
                .map_err(Error::Recent)?,
            None => RecentSources::default(),
        };
        let ulids = ember_block::list_blocks(&self.store, tenant).await?;
        // Forget blocks the compactor deleted.
        let listed: HashSet<Ulid> = ulids.iter().copied().collect();
        let keep = |(t, u): &(String, Ulid)| t != tenant || listed.contains(u);
        self.blocks.lock().expect("poisoned").retain(|k, _| keep(k));
        self.metas.lock().expect("poisoned").retain(|k, _| keep(k));
        let candidates: Vec<Ulid> = ulids
            .into_iter()
            .filter(|u| !recent.heads.contains(u))
            .collect();
        let chosen = self.blocks_for(tenant, plan, candidates).await;
        // Only the selected series' pages, columns and symbols.
        let samples = need == Need::Samples || !plan.samples.is_all();
        let spans = plan.samples.spans.is_some() || need == Need::SpanPoints;
        let fetches: Vec<_> = chosen
            .into_iter()
            .map(|block| {
                let want = Fetch {
                    selected: plan.select(&block.series),
                    start,
                    end,
                    samples,
                    spans,
                    symbols: with_symbols,
                };
                async move { block.fetch(&want).await }
            })
            .collect();
        let mut budget = self.limits.budget(tenant);
        let mut fetched = futures::stream::iter(fetches).buffered(BLOCKS_IN_PARALLEL);
        let mut blocks: Vec<BlockView> = Vec::new();
        while let Some(view) = fetched.try_next().await? {
            budget.take(view.held_bytes())?;
            blocks.push(view);
        }
        Ok(Sources { recent, blocks })
    }

    /// Runs `f` over every source of the plan off the async runtime, for at
    /// most the tenant's `query_timeout`.
    async fn evaluate<R: Send + 'static>(
        &self,
        tenant: &str,
        plan: &Plan,
        need: Need,
        mut acc: R,
        f: impl Fn(&dyn SourceView, &Plan, &mut R) -> ember_query::Result<()> + Send + 'static,
    ) -> Result<R> {
        // Dropped when the query ends, times out or is abandoned: then the
        // blocking work below reads no further source.
        let abandoned = Abandoned::default();
        let stop = abandoned.flag();
        let metrics = self.metrics.clone();
        self.limits
            .timed(tenant, async move {
                let _abandoned = abandoned;
                let sources = self.sources(tenant, plan, need).await?;
                let plan = plan.clone();
                tokio::task::spawn_blocking(move || {
                    let bytes = sources.blocks.iter().map(BlockView::fetched_bytes).sum();
                    let read = metrics::ReadCounts::default();
                    sources.each(&plan, &mut |view, plan| {
                        if Abandoned::is_set(&stop) {
                            return Ok(());
                        }
                        let counted = metrics::Counted {
                            inner: view,
                            counts: &read,
                        };
                        f(&counted, plan, &mut acc)
                    })?;
                    metrics.read(&read, bytes);
                    Ok(acc)
                })
                .await?
            })
            .await
    }

    /// Returns the labels of every series matching `plan`, de-duplicated.
    async fn series_labels(&self, tenant: &str, plan: &Plan) -> Result<BTreeSet<Labels>> {
        self.evaluate(
            tenant,
            plan,
            Need::Labels,
            BTreeSet::new(),
            |view, plan, out| {
                ember_query::series_labels(view, plan, &mut |l| {
                    out.insert(l.clone());
                });
                Ok(())
            },
        )
        .await
    }

    /// Merges the selected profiles into a function-name tree.
    pub async fn merge_tree(&self, tenant: &str, plan: &Plan) -> Result<FunctionTree> {
        self.evaluate(
            tenant,
            plan,
            Need::Samples,
            FunctionTree::new(),
            ember_query::merge_tree,
        )
        .await
    }

    fn stacktraces_plan(req: &SelectMergeStacktracesRequest) -> Result<Plan> {
        req.profile_type_id.parse::<ProfileType>()?;
        let (start, end) = nanos_range(req.start, req.end)?;
        let mut plan = Plan::new(
            Some(req.profile_type_id.clone()),
            parse_selectors(std::slice::from_ref(&req.label_selector))?,
            start,
            end,
        );
        // Go PGO trims pprof; a flame graph has nothing to trim.
        select_samples(
            &mut plan,
            req.stack_trace_selector.as_ref(),
            &req.profile_id_selector,
        )?;
        plan.downsampling = Downsampling::Totals;
        Ok(plan)
    }

    /// Returns every selected profile's point (with `spans`, a point per span
    /// of each profile), grouped by the `group_by` labels of its series, with
    /// the series' labels.
    async fn grouped_points(
        &self,
        tenant: &str,
        plan: &Plan,
        group_by: &[String],
        spans: bool,
    ) -> Result<series::Groups> {
        let group_by = group_by.to_vec();
        let need = if spans {
            Need::SpanPoints
        } else {
            Need::Points
        };
        self.evaluate(
            tenant,
            plan,
            need,
            series::Groups::default(),
            move |view, plan, out| {
                if spans {
                    return ember_query::span_points(view, plan, &mut |labels, point, span| {
                        out.add_span(&group_by, labels, point, span)
                    });
                }
                ember_query::points(view, plan, &mut |labels, point| {
                    out.add(&group_by, labels, point);
                    out.annotate(point.id, view.annotations(point.id));
                })
            },
        )
        .await
    }

    fn span_plan(req: &SelectMergeSpanProfileRequest) -> Result<Plan> {
        req.profile_type_id.parse::<ProfileType>()?;
        let (start, end) = nanos_range(req.start, req.end)?;
        if req.span_selector.len() > MAX_SPANS {
            return Err(Error::InvalidRequest(format!(
                "a span selector holds at most {MAX_SPANS} span IDs, got {}",
                req.span_selector.len()
            )));
        }
        let mut plan = Plan::new(
            Some(req.profile_type_id.clone()),
            parse_selectors(std::slice::from_ref(&req.label_selector))?,
            start,
            end,
        );
        let spans =
            ember_query::parse_span_ids(&req.span_selector).map_err(Error::InvalidRequest)?;
        plan.samples.spans = Some(Arc::new(spans));
        Ok(plan)
    }

    /// Returns the flame graph of `plan` with at most `max_nodes` nodes.
    /// Merges the stacks `plan` selects into a flame graph, or into Pyroscope's
    /// tree bytes when `format` is `PROFILE_FORMAT_TREE`; any other value,
    /// unknown ones included, gets the documented default: a flame graph.
    async fn merged(
        &self,
        tenant: &str,
        plan: &Plan,
        max_nodes: usize,
        format: i32,
    ) -> Result<(Option<ember_proto::querier::v1::FlameGraph>, Vec<u8>)> {
        let tree = self.merge_tree(tenant, plan).await?;
        let as_tree = format == ProfileFormat::Tree as i32;
        Ok(tokio::task::spawn_blocking(move || {
            if as_tree {
                (None, tree.to_tree_bytes(max_nodes))
            } else {
                (Some(tree.to_flamegraph(max_nodes)), Vec::new())
            }
        })
        .await?)
    }
}

#[tonic::async_trait]
impl QuerierService for Querier {
    async fn profile_types(
        &self,
        request: Request<ProfileTypesRequest>,
    ) -> Result<Response<ProfileTypesResponse>, Status> {
        self.metrics
            .time("ProfileTypes", async move {
                let tenant = Tenant::of(&request)?;
                let (req, _query) = admit!(self, &tenant, request);
                let (start, end) = nanos_range(req.start, req.end)?;
                let plan = Plan::new(None, Vec::new(), start, end);
                let types: BTreeSet<ProfileType> = self
                    .series_labels(&tenant, &plan)
                    .await?
                    .iter()
                    .filter_map(|l| l.get(PROFILE_TYPE)?.parse().ok())
                    .collect();
                Ok(Response::new(ProfileTypesResponse {
                    profile_types: types.iter().map(ProfileType::to_proto).collect(),
                }))
            })
            .await
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        self.metrics
            .time("LabelValues", async move {
                let tenant = Tenant::of(&request)?;
                let (req, _query) = admit!(self, &tenant, request);
                let (start, end) = nanos_range(req.start, req.end)?;
                let plan = Plan::new(None, parse_selectors(&req.matchers)?, start, end);
                let values: BTreeSet<String> = self
                    .series_labels(&tenant, &plan)
                    .await?
                    .iter()
                    .filter_map(|l| l.get(&req.name).map(str::to_owned))
                    .collect();
                Ok(Response::new(LabelValuesResponse {
                    names: values.into_iter().collect(),
                }))
            })
            .await
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        self.metrics
            .time("LabelNames", async move {
                let tenant = Tenant::of(&request)?;
                let utf8 = ClientCapabilities::of(&request).allow_utf8_label_names;
                let (req, _query) = admit!(self, &tenant, request);
                let (start, end) = nanos_range(req.start, req.end)?;
                let plan = Plan::new(None, parse_selectors(&req.matchers)?, start, end);
                // As Pyroscope: a client that cannot quote label names is not shown
                // the names it could not filter on.
                let names: BTreeSet<String> = self
                    .series_labels(&tenant, &plan)
                    .await?
                    .iter()
                    .flat_map(|l| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
                    .filter(|n| utf8 || is_bare_name(n))
                    .collect();
                Ok(Response::new(LabelNamesResponse {
                    names: names.into_iter().collect(),
                }))
            })
            .await
    }

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<SeriesResponse>, Status> {
        self.metrics
            .time("Series", async move {
                let tenant = Tenant::of(&request)?;
                let utf8 = ClientCapabilities::of(&request).allow_utf8_label_names;
                let (req, _query) = admit!(self, &tenant, request);
                let (start, end) = nanos_range(req.start, req.end)?;
                let plan = Plan::new(None, parse_selectors(&req.matchers)?, start, end);
                let keep: BTreeSet<&str> = req.label_names.iter().map(String::as_str).collect();
                let mut out: BTreeSet<Labels> = BTreeSet::new();
                for labels in self.series_labels(&tenant, &plan).await? {
                    if !utf8 && labels.iter().any(|l| !is_bare_name(&l.name)) {
                        out.insert(Labels::new(
                            labels
                                .iter()
                                .filter(|l| is_bare_name(&l.name))
                                .filter(|l| keep.is_empty() || keep.contains(l.name.as_str()))
                                .cloned()
                                .collect(),
                        ));
                    } else if keep.is_empty() {
                        out.insert(labels);
                    } else {
                        out.insert(Labels::new(
                            labels
                                .iter()
                                .filter(|l| keep.contains(l.name.as_str()))
                                .cloned()
                                .collect(),
                        ));
                    }
                }
                Ok(Response::new(SeriesResponse {
                    labels_set: out
                        .iter()
                        .map(|l| ember_proto::types::v1::Labels {
                            labels: l.to_proto(),
                        })
                        .collect(),
                }))
            })
            .await
    }

    async fn select_merge_stacktraces(
        &self,
        request: Request<SelectMergeStacktracesRequest>,
    ) -> Result<Response<SelectMergeStacktracesResponse>, Status> {
        self.metrics
            .time("SelectMergeStacktraces", async move {
                let tenant = Tenant::of(&request)?;
                let (req, _query) = admit!(self, &tenant, request);
                let plan = Self::stacktraces_plan(&req)?;
                let (flamegraph, tree) = self
                    .merged(&tenant, &plan, max_nodes(req.max_nodes), req.format)
                    .await?;
                Ok(Response::new(SelectMergeStacktracesResponse {
                    flamegraph,
                    tree,
                }))
            })
            .await
    }

    async fn select_merge_span_profile(
        &self,
        request: Request<SelectMergeSpanProfileRequest>,
    ) -> Result<Response<SelectMergeSpanProfileResponse>, Status> {
        self.metrics
            .time("SelectMergeSpanProfile", async move {
                let tenant = Tenant::of(&request)?;
                let (req, _query) = admit!(self, &tenant, request);
                let plan = Self::span_plan(&req)?;
                let (flamegraph, tree) = self
                    .merged(&tenant, &plan, max_nodes(req.max_nodes), req.format)
                    .await?;
                Ok(Response::new(SelectMergeSpanProfileResponse {
                    flamegraph,
                    tree,
                }))
            })
            .await
    }

    async fn select_heatmap(
        &self,
        request: Request<SelectHeatmapRequest>,
    ) -> Result<Response<SelectHeatmapResponse>, Status> {
        self.metrics
            .time("SelectHeatmap", async move {
                let tenant = Tenant::of(&request)?;
                let (req, _query) = admit!(self, &tenant, request);
                req.profile_type_id
                    .parse::<ProfileType>()
                    .map_err(Error::from)?;
                let (start, end) = nanos_range(req.start, req.end)?;
                let plan = Plan::new(
                    Some(req.profile_type_id.clone()),
                    parse_selectors(std::slice::from_ref(&req.label_selector))?,
                    start,
                    end,
                );
                let shape = heatmap::Shape::new(&req, start)?;
                let points = self
                    .grouped_points(&tenant, &plan, &req.group_by, shape.spans)
                    .await?;
                Ok(Response::new(SelectHeatmapResponse {
                    series: shape.build(points),
                }))
            })
            .await
    }

    async fn select_merge_profile(
        &self,
        request: Request<SelectMergeProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        self.metrics
            .time("SelectMergeProfile", async move {
                let tenant = Tenant::of(&request)?;
                let (req, _query) = admit!(self, &tenant, request);
                let profile_type: ProfileType = req.profile_type_id.parse().map_err(Error::from)?;
                let (start, end) = nanos_range(req.start, req.end)?;
                let mut plan = Plan::new(
                    Some(req.profile_type_id.clone()),
                    parse_selectors(std::slice::from_ref(&req.label_selector))?,
                    start,
                    end,
                );
                let go_pgo = select_samples(
                    &mut plan,
                    req.stack_trace_selector.as_ref(),
                    &req.profile_id_selector,
                )?;
                plan.downsampling = Downsampling::Totals;
                let builder = PprofBuilder::new(
                    (&profile_type.sample_type, &profile_type.sample_unit),
                    (&profile_type.period_type, &profile_type.period_unit),
                    0,
                );
                let builder = self
                    .evaluate(
                        &tenant,
                        &plan,
                        Need::Samples,
                        builder,
                        ember_query::merge_pprof,
                    )
                    .await?;
                let (time_nanos, duration) = if req.start == 0 && req.end == 0 {
                    (0, 0)
                } else {
                    (start, end - start)
                };
                let mut profile = builder.finish(time_nanos, duration);
                if let Some(pgo) = go_pgo {
                    profile = tokio::task::spawn_blocking(move || {
                        ember_query::apply_go_pgo(&mut profile, pgo);
                        profile
                    })
                    .await
                    .map_err(Error::from)?;
                }
                Ok(Response::new(profile))
            })
            .await
    }

    async fn select_series(
        &self,
        request: Request<SelectSeriesRequest>,
    ) -> Result<Response<SelectSeriesResponse>, Status> {
        self.metrics
            .time("SelectSeries", async move {
                let tenant = Tenant::of(&request)?;
                let (req, _query) = admit!(self, &tenant, request);
                req.profile_type_id
                    .parse::<ProfileType>()
                    .map_err(Error::from)?;
                let (start, end) = nanos_range(req.start, req.end)?;
                let mut plan = Plan::new(
                    Some(req.profile_type_id.clone()),
                    parse_selectors(std::slice::from_ref(&req.label_selector))?,
                    start,
                    end,
                );
                // Go PGO trims pprof; a time series has nothing to trim.
                select_samples(&mut plan, req.stack_trace_selector.as_ref(), &[])?;
                let mut shape = series::Bucketing::new(&req, start)?;
                // Pyroscope gives individual profiles for span exemplars too when
                // spans are not asked for: Ember has no per-span series.
                let exemplars = matches!(
                    ExemplarType::try_from(req.exemplar_type),
                    Ok(ExemplarType::Individual | ExemplarType::Span)
                );
                if !exemplars {
                    let (start, step) = shape.steps();
                    plan.downsampling = Downsampling::Steps { start, step };
                }
                let points = self
                    .grouped_points(&tenant, &plan, &req.group_by, false)
                    .await?;
                Ok(Response::new(SelectSeriesResponse {
                    series: shape.aggregate(points, exemplars),
                }))
            })
            .await
    }

    async fn diff(&self, request: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        self.metrics
            .time("Diff", async move {
                let tenant = Tenant::of(&request)?;
                let (req, _query) = admit!(self, &tenant, request);
                let (Some(left), Some(right)) = (req.left, req.right) else {
                    return Err(
                        Error::InvalidRequest("diff needs both left and right".into()).into(),
                    );
                };
                let (left_plan, right_plan) = (
                    Self::stacktraces_plan(&left)?,
                    Self::stacktraces_plan(&right)?,
                );
                let (l, r) = tokio::try_join!(
                    self.merge_tree(&tenant, &left_plan),
                    self.merge_tree(&tenant, &right_plan)
                )?;
                let max_nodes = max_nodes(left.max_nodes.or(right.max_nodes));
                let diff = tokio::task::spawn_blocking(move || flamegraph::diff(&l, &r, max_nodes))
                    .await
                    .map_err(Error::from)?;
                Ok(Response::new(DiffResponse {
                    flamegraph: Some(diff),
                }))
            })
            .await
    }

    async fn analyze_query(
        &self,
        request: Request<AnalyzeQueryRequest>,
    ) -> Result<Response<AnalyzeQueryResponse>, Status> {
        let tenant = Tenant::of(&request)?;
        Ok(Response::new(
            self.estimate(&tenant, request.get_ref()).await?,
        ))
    }

    async fn get_profile_stats(
        &self,
        request: Request<GetProfileStatsRequest>,
    ) -> Result<Response<GetProfileStatsResponse>, Status> {
        self.metrics
            .time("GetProfileStats", async move {
                let tenant = Tenant::of(&request)?;
                let (_, _query) = admit!(self, &tenant, request);
                let plan = Plan::new(None, Vec::new(), i64::MIN, i64::MAX);
                let range = self
                    .evaluate(
                        &tenant,
                        &plan,
                        // Points carry times; label answers span the whole range asked.
                        Need::Points,
                        None,
                        |view, _, acc: &mut Option<(i64, i64)>| {
                            if let Some((lo, hi)) = view.time_range() {
                                *acc = Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                            }
                            Ok(())
                        },
                    )
                    .await?;
                Ok(Response::new(match range {
                    Some((lo, hi)) => GetProfileStatsResponse {
                        data_ingested: true,
                        oldest_profile_time: lo.div_euclid(1_000_000),
                        newest_profile_time: hi.div_euclid(1_000_000),
                    },
                    None => GetProfileStatsResponse {
                        data_ingested: false,
                        oldest_profile_time: 0,
                        newest_profile_time: 0,
                    },
                }))
            })
            .await
    }
}
