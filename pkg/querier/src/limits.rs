//! The query limits of each tenant, applied in one place: before a query runs
//! ([`QueryLimits::admit`]: its time range, its flame-graph size, how many of
//! the tenant's queries already run) and while it runs ([`QueryLimits::timed`]).
//!
//! The semantics are Pyroscope's (`pkg/validation`, `ValidateRangeRequest` and
//! `ValidateMaxNodes`), so its operators' settings mean the same here:
//!
//! - `max_query_lookback` clamps: a query starting before now − lookback is read
//!   from now − lookback, and one ending before it answers empty. A label query
//!   (`ProfileTypes`, `LabelNames`, `LabelValues`, `Series`) that gives no range
//!   (start or end 0) is not checked, as in Pyroscope.
//! - `max_query_length` refuses (400) a range longer than the limit, once the
//!   lookback has clamped it. A query of all time (start and end 0, Ember's
//!   shorthand) reads the last `max_query_length` up to now.
//! - `max_flamegraph_nodes_default` is what a query asking for no number of
//!   nodes gets (capped by the maximum); `max_flamegraph_nodes_max` refuses
//!   (400) a query asking for more, or for no limit at all (a negative number).
//! - `max_concurrent_queries` (Ember's: Pyroscope queues in its query frontend
//!   instead) refuses (429) a query while that many of the tenant's run in this
//!   querier. It is refused at once: waiting would hold the connection while
//!   the queries it waits for hold the CPU.
//! - `query_timeout` (Loki's per-tenant name; Pyroscope has none) stops a query
//!   still reading its sources and answers `deadline_exceeded` (408).
//! - `max_query_bytes` (Ember's; Mimir bounds fetched chunk bytes the same way)
//!   refuses (400) a query once the blocks it holds in memory (profile pages and
//!   symbols, fetched or cached) pass the limit, while they are being fetched, so
//!   a query holds at most the limit plus the blocks in flight.
//!
//! A limit of 0 is disabled. Each refusal names the tenant, the limit's key and
//! value, and what to change.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ember_config::duration::format as human;
use ember_limits::{Limits, TenantLimits};
use ember_proto::{
    querier::v1::{
        DiffRequest, ProfileTypesRequest, SelectHeatmapRequest, SelectMergeProfileRequest,
        SelectMergeSpanProfileRequest, SelectMergeStacktracesRequest, SelectSeriesRequest,
        SeriesRequest,
    },
    types::v1::{GetProfileStatsRequest, LabelNamesRequest, LabelValuesRequest},
};
use ember_time::SharedClock;
use tracing::{debug, warn};

use crate::{Error, Result};

/// The latest end a range may have, in unix ms, so that it converts to
/// nanoseconds without overflow.
const MAX_END_MS: i64 = i64::MAX / 1_000_000;

/// Applies each tenant's query limits.
#[derive(Debug)]
pub(crate) struct QueryLimits {
    limits: Arc<dyn TenantLimits>,
    clock: SharedClock,
    /// Queries running per tenant; a tenant with none has no entry.
    running: Running,
}

/// The number of queries each tenant runs.
type Running = Arc<Mutex<HashMap<String, usize>>>;

impl QueryLimits {
    /// Returns the limits of `limits`, with now read from `clock`.
    pub(crate) fn new(limits: Arc<dyn TenantLimits>, clock: SharedClock) -> Self {
        Self {
            limits,
            clock,
            running: Arc::default(),
        }
    }

    /// Checks `request` of `tenant` against the tenant's limits: returns it as
    /// the limits leave it (start clamped, max nodes set) with the permit the
    /// query holds while it runs, `None` when nothing can match (the range lies
    /// wholly before the lookback), or the refusal.
    pub(crate) fn admit<R: Bounded>(
        &self,
        tenant: &str,
        mut request: R,
    ) -> Result<Option<(R, Permit)>> {
        let limits = self.limits.limits(tenant);
        let bounds = Bounds {
            tenant,
            limits: &limits,
            now_ms: self.clock.now_millis(),
        };
        if !request.bound(&bounds)? {
            return Ok(None);
        }
        Ok(Some((
            request,
            self.permit(tenant, limits.max_concurrent_queries)?,
        )))
    }

    /// Takes one of the `max` places of `tenant`'s running queries.
    fn permit(&self, tenant: &str, max: usize) -> Result<Permit> {
        if max == 0 {
            return Ok(Permit { slot: None });
        }
        let mut running = self.running.lock().expect("poisoned");
        let count = running.entry(tenant.to_owned()).or_insert(0);
        if *count >= max {
            let count = *count;
            drop(running);
            debug!(
                tenant,
                running = count,
                max,
                "query refused by max_concurrent_queries"
            );
            return Err(Error::TooManyQueries(format!(
                "tenant \"{tenant}\" already runs {count} queries, the limit of {max} \
                 (limits.max_concurrent_queries): retry once one has finished, or narrow \
                 the time range or the selector so that queries finish sooner"
            )));
        }
        *count += 1;
        Ok(Permit {
            slot: Some((self.running.clone(), tenant.to_owned())),
        })
    }

    /// Returns a budget of block bytes for one query of `tenant`
    /// (`max_query_bytes`).
    pub(crate) fn budget(&self, tenant: &str) -> Budget {
        Budget {
            tenant: tenant.to_owned(),
            limit: self.limits.limits(tenant).max_query_bytes,
            held: 0,
        }
    }

    /// Runs `work`, a query of `tenant`, for at most the tenant's `query_timeout`.
    pub(crate) async fn timed<T>(
        &self,
        tenant: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let timeout = self.limits.limits(tenant).query_timeout;
        if timeout.is_zero() {
            return work.await;
        }
        // A query that finishes in its first poll is never interrupted, so the
        // time it took is checked as well: every query over the limit is refused.
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(timeout, work).await {
            Ok(result) if started.elapsed() <= timeout => result,
            _ => {
                let limit = human(timeout);
                warn!(tenant, timeout = %limit, "query stopped by query_timeout");
                Err(Error::Timeout(format!(
                    "tenant \"{tenant}\": the query ran longer than the limit of {limit} \
                     (limits.query_timeout): narrow the time range or the selector"
                )))
            }
        }
    }
}

/// The block bytes one query holds, against the tenant's `max_query_bytes`.
#[derive(Debug)]
pub(crate) struct Budget {
    tenant: String,
    limit: u64,
    held: u64,
}

impl Budget {
    /// Counts `bytes` more; refuses the query once it holds more than the limit.
    pub(crate) fn take(&mut self, bytes: usize) -> Result<()> {
        self.held += bytes as u64;
        if self.limit == 0 || self.held <= self.limit {
            return Ok(());
        }
        let tenant = &self.tenant;
        warn!(
            tenant,
            held = self.held,
            limit = self.limit,
            "query refused by max_query_bytes"
        );
        Err(Error::QueryLimit(format!(
            "tenant \"{tenant}\": the query needs at least {} bytes of blocks in memory, more than \
             the limit of {} bytes (limits.max_query_bytes): narrow the time range or the selector",
            self.held, self.limit
        )))
    }
}

/// One of a tenant's running queries; dropping it ends the query.
#[derive(Debug)]
pub(crate) struct Permit {
    slot: Option<(Running, String)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some((running, tenant)) = self.slot.take() else {
            return;
        };
        let mut running = running.lock().expect("poisoned");
        if let Some(count) = running.get_mut(&tenant) {
            *count -= 1;
            if *count == 0 {
                running.remove(&tenant);
            }
        }
    }
}

/// Set once its owner is dropped: a query that timed out, or whose caller
/// went away, stops its blocking work at the next source it would read.
#[derive(Debug, Default)]
pub(crate) struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    /// Returns the flag the blocking work reads.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// Returns whether `flag`'s owner was dropped.
    pub(crate) fn is_set(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Relaxed)
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The limits of one tenant at one instant, as a request applies them.
#[derive(Debug)]
pub(crate) struct Bounds<'a> {
    tenant: &'a str,
    limits: &'a Limits,
    now_ms: i64,
}

/// Where a range stands against the lookback.
#[derive(Debug, PartialEq, Eq)]
enum Span {
    /// Checked and, if need be, clamped.
    Inside,
    /// Wholly before `min_start`: nothing in it may be read.
    Before { min_start: i64 },
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Bounds<'_> {
    /// Applies the lookback and the length limit to a range of unix ms.
    fn range(&self, start: &mut i64, end: &mut i64) -> Result<Span> {
        if *end < *start {
            // Not a range: the querier explains.
            return Ok(Span::Inside);
        }
        let tenant = self.tenant;
        let all_time = *start == 0 && *end == 0;
        let lookback = millis(self.limits.max_query_lookback);
        let max = self.limits.max_query_length;
        if all_time && !max.is_zero() {
            // All time, as far as the limits reach: the last max_query_length
            // up to now, and no further back than the lookback.
            let from = self.now_ms.saturating_sub(millis(max));
            let min_start = self.now_ms.saturating_sub(lookback);
            (*start, *end) = (
                if lookback > 0 {
                    from.max(min_start)
                } else {
                    from
                },
                self.now_ms,
            );
            debug!(
                tenant,
                start = *start,
                "query of all time read as the last max_query_length"
            );
            return Ok(Span::Inside);
        }
        if lookback > 0 {
            let min_start = self.now_ms.saturating_sub(lookback);
            if all_time {
                (*start, *end) = (min_start, MAX_END_MS);
            } else if *end < min_start {
                debug!(
                    tenant,
                    end = *end,
                    min_start,
                    "query wholly before max_query_lookback"
                );
                return Ok(Span::Before { min_start });
            } else if *start < min_start {
                debug!(
                    tenant,
                    start = *start,
                    min_start,
                    "query start clamped by max_query_lookback"
                );
                *start = min_start;
            }
        }
        if max.is_zero() {
            return Ok(Span::Inside);
        }
        let limit = human(max);
        let length = end.saturating_sub(*start);
        if length > millis(max) {
            let length = human(Duration::from_millis(length.unsigned_abs()));
            return Err(Error::QueryLimit(format!(
                "tenant \"{tenant}\": the query's time range of {length} is longer than the \
                 limit of {limit} (limits.max_query_length): narrow start and end to at most \
                 {limit} apart"
            )));
        }
        Ok(Span::Inside)
    }

    /// Applies the limits to the range of a select query; returns false when
    /// the query can match nothing.
    fn select_range(&self, start: &mut i64, end: &mut i64) -> Result<bool> {
        Ok(self.range(start, end)? == Span::Inside)
    }

    /// Applies the limits to the range of a label query, which need not have one.
    fn label_range(&self, start: &mut i64, end: &mut i64) -> Result<bool> {
        if *start == 0 || *end == 0 {
            return Ok(true);
        }
        self.select_range(start, end)
    }

    /// Returns the number of flame-graph nodes a query asking for `requested`
    /// gets: positive, or negative for no limit.
    fn max_nodes(&self, requested: Option<i64>) -> Result<i64> {
        let tenant = self.tenant;
        let max = i64::try_from(self.limits.max_flamegraph_nodes_max).unwrap_or(i64::MAX);
        let default = i64::try_from(self.limits.max_flamegraph_nodes_default).unwrap_or(i64::MAX);
        match requested.unwrap_or(0) {
            0 => Ok(match (default, max) {
                (0, 0) => -1,
                (0, max) => max,
                (default, 0) => default,
                (default, max) => default.min(max),
            }),
            n if max > 0 && n < 0 => Err(Error::QueryLimit(format!(
                "tenant \"{tenant}\": max_nodes {n} asks for every flame-graph node, more than \
                 the limit of {max} (limits.max_flamegraph_nodes_max): ask for at most {max} nodes"
            ))),
            n if max > 0 && n > max => Err(Error::QueryLimit(format!(
                "tenant \"{tenant}\": max_nodes {n} is more than the limit of {max} \
                 (limits.max_flamegraph_nodes_max): ask for at most {max} nodes"
            ))),
            n => Ok(n),
        }
    }
}

/// A request the query limits apply to.
pub(crate) trait Bounded {
    /// Applies `bounds`: clamps the range, sets the number of nodes, or
    /// refuses. Returns false when the request can match nothing.
    fn bound(&mut self, bounds: &Bounds<'_>) -> Result<bool>;
}

macro_rules! label_query {
    ($($request:ty),* $(,)?) => {
        $(impl Bounded for $request {
            fn bound(&mut self, bounds: &Bounds<'_>) -> Result<bool> {
                bounds.label_range(&mut self.start, &mut self.end)
            }
        })*
    };
}

label_query!(
    ProfileTypesRequest,
    LabelNamesRequest,
    LabelValuesRequest,
    SeriesRequest
);

impl Bounded for SelectMergeStacktracesRequest {
    fn bound(&mut self, bounds: &Bounds<'_>) -> Result<bool> {
        if !bounds.select_range(&mut self.start, &mut self.end)? {
            return Ok(false);
        }
        self.max_nodes = Some(bounds.max_nodes(self.max_nodes)?);
        Ok(true)
    }
}

impl Bounded for SelectMergeSpanProfileRequest {
    fn bound(&mut self, bounds: &Bounds<'_>) -> Result<bool> {
        if !bounds.select_range(&mut self.start, &mut self.end)? {
            return Ok(false);
        }
        self.max_nodes = Some(bounds.max_nodes(self.max_nodes)?);
        Ok(true)
    }
}

impl Bounded for SelectHeatmapRequest {
    fn bound(&mut self, bounds: &Bounds<'_>) -> Result<bool> {
        bounds.select_range(&mut self.start, &mut self.end)
    }
}

/// Its `max_nodes` is not checked: a merged pprof is never truncated.
impl Bounded for SelectMergeProfileRequest {
    fn bound(&mut self, bounds: &Bounds<'_>) -> Result<bool> {
        bounds.select_range(&mut self.start, &mut self.end)
    }
}

impl Bounded for SelectSeriesRequest {
    fn bound(&mut self, bounds: &Bounds<'_>) -> Result<bool> {
        bounds.select_range(&mut self.start, &mut self.end)
    }
}

/// Each side's range is checked; a side wholly before the lookback is read
/// as its first millisecond. Both sides get the larger of their `max_nodes`,
/// as in Pyroscope.
impl Bounded for DiffRequest {
    fn bound(&mut self, bounds: &Bounds<'_>) -> Result<bool> {
        let mut requested: Option<i64> = None;
        for side in [self.left.as_mut(), self.right.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Span::Before { min_start } = bounds.range(&mut side.start, &mut side.end)? {
                (side.start, side.end) = (min_start, min_start);
            }
            let n = side.max_nodes.unwrap_or(0);
            requested = Some(requested.map_or(n, |r| r.max(n)));
        }
        let max_nodes = bounds.max_nodes(requested)?;
        for side in [self.left.as_mut(), self.right.as_mut()]
            .into_iter()
            .flatten()
        {
            side.max_nodes = Some(max_nodes);
        }
        Ok(true)
    }
}

/// No range: only the number of running queries applies.
impl Bounded for GetProfileStatsRequest {
    fn bound(&mut self, _: &Bounds<'_>) -> Result<bool> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
