//! Where a querier finds data that is not yet in object storage: one trait,
//! [`RecentData`], implemented by the ingester of this process (its heads) and
//! by the querier's client of the cluster's ingesters (their answers), so the
//! querier evaluates both the same way.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use ember_block::MemBlock;
use ember_model::ProfileId;
use rustc_hash::FxHashSet;
use tonic::Status;
use ulid::Ulid;

use crate::{Plan, Result, SourceView};

/// What a query needs from each source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The label sets of matching series.
    Labels,
    /// One point (ID, series, time, total) per profile.
    Points,
    /// One point per span of each profile: the total of its samples taken
    /// inside the span (span heatmaps).
    SpanPoints,
    /// Stack traces and their values.
    Samples,
}

/// A source that is read while it may still be written (a head behind a
/// lock): it lends a view for the length of a call.
pub trait SharedSource: Send + Sync {
    /// Calls `f` with a view of the source.
    fn with_view(&self, f: &mut dyn FnMut(&dyn SourceView) -> Result<()>) -> Result<()>;
}

/// The recent data of one tenant for one query.
#[derive(Default)]
pub struct RecentSources {
    /// Sources evaluated with the query's plan, as blocks are.
    pub views: Vec<Arc<dyn SharedSource>>,
    /// Stack traces the answering ingesters already selected and merged:
    /// evaluated with [`Plan::preselected`].
    pub merged: Vec<MemBlock>,
    /// Profile IDs `merged` holds, so that other sources skip their copies.
    pub counted: FxHashSet<ProfileId>,
    /// IDs of heads: a block with one of these IDs is still a head here, and
    /// reading both would count its profiles twice.
    pub heads: HashSet<Ulid>,
}

impl Debug for RecentSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentSources")
            .field("views", &self.views.len())
            .field("merged", &self.merged.len())
            .field("counted", &self.counted.len())
            .field("heads", &self.heads)
            .finish()
    }
}

/// Recent data, wherever it lives.
#[async_trait::async_trait]
pub trait RecentData: Send + Sync + Debug {
    /// Returns the recent sources of `tenant` that may hold what `need` asks
    /// of `plan`, or the status of why they cannot be had (too many
    /// ingesters down).
    async fn sources(
        &self,
        tenant: &str,
        plan: &Plan,
        need: Need,
    ) -> std::result::Result<RecentSources, Status>;
}
