//! `AnalyzeQuery`: what a query would read, estimated without running it.
//!
//! Recent data (the ingesters' heads) is counted exactly: the series that
//! match and the profiles they hold in the range. Blocks are estimated from
//! what the querier already holds for each block, its `meta.json` and series
//! index: a block counts when its time range overlaps the query's and no
//! compacted block supersedes it; its profiles, samples and bytes count in
//! proportion to the share of its series that match (profiles are spread
//! over series roughly evenly, and reading a block's profiles to count them
//! exactly would cost what the query costs).

use std::collections::{BTreeSet, HashSet};

use ember_model::{Labels, Selector};
use ember_proto::querier::v1::{
    AnalyzeQueryRequest, AnalyzeQueryResponse, QueryImpact, QueryScope,
};
use ember_query::{Need, Plan, SourceView};
use ulid::Ulid;

use crate::{Error, Querier, Result, nanos_range};

/// The name Pyroscope gives the ingesters' part of a query.
pub(crate) const SHORT_TERM: &str = "short term storage";
/// The name Pyroscope gives the blocks' part of a query.
pub(crate) const LONG_TERM: &str = "long term storage";

/// Returns the plan of `query`: `<profile type ID>{selector}`, `{selector}`,
/// or empty (everything).
fn plan(req: &AnalyzeQueryRequest) -> Result<Plan> {
    let (start, end) = nanos_range(req.start, req.end)?;
    let query = req.query.trim();
    let (profile_type, selector) = if query.is_empty() {
        (None, Selector::default())
    } else if query.starts_with('{') && !query.contains("__name__") {
        (None, Selector::parse(query)?)
    } else {
        let (t, s) = Selector::parse_profile_query(query)?;
        (Some(t.id()), s)
    };
    Ok(Plan::new(profile_type, vec![selector], start, end))
}

/// Adds what `view` holds of `plan` to `scope`: exactly, by scanning its
/// points (only for in-memory heads).
fn count_recent(
    view: &dyn SourceView,
    plan: &Plan,
    scope: &mut QueryScope,
    series: &mut BTreeSet<Labels>,
) -> ember_query::Result<()> {
    let mut matched = BTreeSet::new();
    ember_query::series_labels(view, plan, &mut |l| {
        matched.insert(l.clone());
    });
    if matched.is_empty() {
        return Ok(());
    }
    let mut profiles = 0u64;
    ember_query::points(view, plan, &mut |_, _| profiles += 1)?;
    scope.series_count += matched.len() as u64;
    scope.profile_count += profiles;
    series.extend(matched);
    Ok(())
}

impl Querier {
    /// Estimates what `req` would read; see the [module docs](self).
    pub async fn estimate(
        &self,
        tenant: &str,
        req: &AnalyzeQueryRequest,
    ) -> Result<AnalyzeQueryResponse> {
        let plan = plan(req)?;
        let mut all_series = BTreeSet::new();
        let mut short = QueryScope {
            component_type: SHORT_TERM.into(),
            ..Default::default()
        };
        let mut heads = HashSet::new();
        if let Some(recent) = &self.recent {
            let sources = recent
                .sources(tenant, &plan, Need::Labels)
                .await
                .map_err(Error::Recent)?;
            heads = sources.heads.clone();
            short.component_count = 1;
            short.block_count = sources.heads.len() as u64;
            for source in &sources.views {
                source.with_view(&mut |view| {
                    count_recent(view, &plan, &mut short, &mut all_series)
                })?;
            }
            for block in &sources.merged {
                count_recent(block, &plan, &mut short, &mut all_series)?;
            }
        }

        let mut long = QueryScope {
            component_type: LONG_TERM.into(),
            component_count: 1,
            ..Default::default()
        };
        let mut bytes_in_range = 0u64;
        let ulids = ember_block::list_blocks(&self.store, tenant)
            .await?
            .into_iter()
            .filter(|u| !heads.contains(u))
            .collect();
        let opened = self.open_blocks(tenant, ulids).await;
        let superseded: HashSet<Ulid> = ember_block::superseded(opened.iter().map(|b| &b.meta));
        // Level-1 blocks of several ingesters hold replicas of the same profiles.
        let mut writers = HashSet::new();
        for block in &opened {
            let meta = &block.meta;
            if !meta.overlaps(plan.start, plan.end)
                || superseded.contains(&meta.ulid)
                || meta.is_downsampled()
            {
                continue;
            }
            bytes_in_range += meta.stats.bytes;
            let matched: Vec<&Labels> = block
                .series
                .iter()
                .filter(|s| plan.matches(&s.labels))
                .map(|s| &s.labels)
                .collect();
            if matched.is_empty() {
                continue;
            }
            if meta.compaction.level <= 1 {
                writers.insert(meta.source.as_str());
            }
            let share = matched.len() as f64 / block.series.len().max(1) as f64;
            let part = |v: u64| (v as f64 * share).round() as u64;
            long.block_count += 1;
            long.series_count += matched.len() as u64;
            long.profile_count += part(meta.stats.profiles);
            long.sample_count += part(meta.stats.samples);
            long.profile_bytes += part(meta.stats.bytes);
            all_series.extend(matched.into_iter().cloned());
        }
        let mut scopes = Vec::new();
        if self.recent.is_some() {
            bytes_in_range += short.profile_bytes;
            scopes.push(short);
        }
        scopes.push(long);
        Ok(AnalyzeQueryResponse {
            query_scopes: scopes,
            query_impact: Some(QueryImpact {
                total_bytes_in_time_range: bytes_in_range,
                total_queried_series: all_series.len() as u64,
                deduplication_needed: writers.len() > 1,
            }),
        })
    }
}
