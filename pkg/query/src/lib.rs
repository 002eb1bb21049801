//! Query evaluation over one source of profiles.
//!
//! An ingester's in-memory head and a stored block both look like a
//! [`SourceView`]: a list of series, a scan over profiles, and symbols per
//! partition. Every query is evaluated the same way on either: select the
//! series by label matchers, sum values per stack-trace ID into a dense vector
//! per partition, then resolve each partition's stack tree once. The
//! functions here are synchronous and CPU-bound; callers run them off the
//! async runtime.

use std::sync::{Arc, Mutex};

use ember_block::{BlockView, MemBlock, ProfileVisitor, SeriesEntry};
use ember_model::{Labels, ProfileId, Selector, flamegraph::FunctionTree, labels::PROFILE_TYPE};
use ember_symdb::{Symbols, resolve};
use rustc_hash::FxHashSet;
use ulid::Ulid;

mod recent;

pub use ember_block::Error;
pub use recent::{Need, RecentData, RecentSources, SharedSource};
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One source of profiles, readable synchronously.
pub trait SourceView {
    /// Returns the block ID (a head has the ID its block will have).
    fn id(&self) -> Ulid;
    /// Returns the series, indexed by series reference.
    fn series(&self) -> &[SeriesEntry];
    /// Returns the (min, max) profile time in nanoseconds, if any profile.
    fn time_range(&self) -> Option<(i64, i64)>;
    /// Visits the profiles of selected series within `[start, end]`.
    fn scan(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()>;
    /// Returns the symbols of a partition.
    fn symbols(&self, partition: u32) -> Option<&Symbols>;
}

impl SourceView for BlockView {
    fn id(&self) -> Ulid {
        self.block.meta.ulid
    }

    fn series(&self) -> &[SeriesEntry] {
        &self.block.series
    }

    fn time_range(&self) -> Option<(i64, i64)> {
        let m = &self.block.meta;
        (m.stats.profiles > 0).then_some((m.min_time_nanos, m.max_time_nanos))
    }

    fn scan(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        BlockView::scan(self, selected, start, end, with_samples, visitor)
    }

    fn symbols(&self, partition: u32) -> Option<&Symbols> {
        BlockView::symbols(self, partition)
    }
}

impl SourceView for MemBlock {
    fn id(&self) -> Ulid {
        self.ulid()
    }

    fn series(&self) -> &[SeriesEntry] {
        MemBlock::series(self)
    }

    fn time_range(&self) -> Option<(i64, i64)> {
        MemBlock::time_range(self)
    }

    fn scan(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        for p in self.profiles() {
            if selected[p.series as usize] && p.time_nanos >= start && p.time_nanos <= end {
                let samples = with_samples.then_some((&p.stacktrace_ids[..], &p.values[..]));
                visitor.visit(p.id, p.series, p.time_nanos, p.total, samples);
            }
        }
        Ok(())
    }

    fn symbols(&self, partition: u32) -> Option<&Symbols> {
        MemBlock::symbols(self, partition)
    }
}

/// What to read: a profile type, a selector and a time range.
#[derive(Debug, Clone)]
pub struct Plan {
    /// A profile type ID; `None` selects every type (label and series queries).
    pub profile_type: Option<String>,
    /// A series is selected when any selector matches; none selects all.
    pub selectors: Vec<Selector>,
    /// Inclusive bounds in nanoseconds.
    pub start: i64,
    pub end: i64,
    /// Which of the selected profiles count.
    pub profiles: ProfileFilter,
}

/// Which profiles a query counts, by [`ProfileId`].
///
/// Replicas of a profile share its ID: ingesters hold up to
/// `replication_factor` copies, and so do the level-1 blocks they flush until
/// the compactor merges them. Profiles with ID 0 (written before IDs existed)
/// always count.
#[derive(Debug, Clone, Default)]
pub enum ProfileFilter {
    /// Every profile counts (a single copy of everything, e.g. one ingester's heads).
    #[default]
    All,
    /// Each ID counts the first time any source shows it. Stateful: one per
    /// evaluation, shared by all of its sources.
    Once(Arc<Mutex<FxHashSet<ProfileId>>>),
    /// Only these IDs count: a querier that already chose which replica
    /// answers for each profile.
    Only(Arc<FxHashSet<ProfileId>>),
}

impl ProfileFilter {
    /// Returns a [`ProfileFilter::Once`] for which `seen` are already counted.
    pub fn once_except(seen: FxHashSet<ProfileId>) -> Self {
        Self::Once(Arc::new(Mutex::new(seen)))
    }

    /// Returns whether a profile with `id` counts (and, for `Once`, marks it seen).
    pub fn admit(&self, id: ProfileId) -> bool {
        match self {
            _ if id == 0 => true,
            Self::All => true,
            Self::Once(seen) => seen.lock().expect("poisoned").insert(id),
            Self::Only(ids) => ids.contains(&id),
        }
    }
}

/// A visitor that forwards only the profiles the plan's filter admits.
struct Admitted<'a> {
    filter: &'a ProfileFilter,
    inner: &'a mut dyn ProfileVisitor,
}

impl ProfileVisitor for Admitted<'_> {
    fn visit(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        total: i64,
        samples: Option<(&[u32], &[i64])>,
    ) {
        if self.filter.admit(id) {
            self.inner.visit(id, series, time_nanos, total, samples);
        }
    }
}

/// Parses label selectors, skipping blank ones (a request may send `""`).
pub fn parse_selectors(matchers: &[String]) -> ember_model::Result<Vec<Selector>> {
    matchers
        .iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| Selector::parse(m))
        .collect()
}

impl Plan {
    /// Returns the plan for a source whose series the answering ingester
    /// already selected: the same type and range, no selectors.
    pub fn preselected(&self) -> Plan {
        Plan::new(self.profile_type.clone(), Vec::new(), self.start, self.end)
    }

    /// Returns a plan that counts every selected profile.
    pub fn new(
        profile_type: Option<String>,
        selectors: Vec<Selector>,
        start: i64,
        end: i64,
    ) -> Self {
        Self {
            profile_type,
            selectors,
            start,
            end,
            profiles: ProfileFilter::All,
        }
    }

    /// Returns whether a series with `labels` is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.profile_type
            .as_deref()
            .is_none_or(|t| labels.get(PROFILE_TYPE) == Some(t))
            && (self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches(labels)))
    }

    /// Returns whether `view` can hold profiles of this plan's time range.
    pub fn overlaps(&self, view: &dyn SourceView) -> bool {
        view.time_range()
            .is_some_and(|(lo, hi)| lo <= self.end && hi >= self.start)
    }

    /// Returns a selection bitmap over `series`.
    pub fn select(&self, series: &[SeriesEntry]) -> Vec<bool> {
        series.iter().map(|s| self.matches(&s.labels)).collect()
    }

    /// Scans the selected profiles of `view` that the filter admits.
    pub fn scan(
        &self,
        view: &dyn SourceView,
        with_samples: bool,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        let selected = self.select(view.series());
        let mut admitted = Admitted {
            filter: &self.profiles,
            inner: visitor,
        };
        view.scan(&selected, self.start, self.end, with_samples, &mut admitted)
    }
}

/// Sums values per stack-trace ID, one dense vector per partition.
struct StackSums<'a> {
    series: &'a [SeriesEntry],
    sums: Vec<Vec<i64>>,
}

impl ProfileVisitor for StackSums<'_> {
    fn visit(
        &mut self,
        _id: ProfileId,
        series: u32,
        _time: i64,
        _total: i64,
        samples: Option<(&[u32], &[i64])>,
    ) {
        let Some((ids, values)) = samples else { return };
        let partition = self.series[series as usize].partition as usize;
        if self.sums.len() <= partition {
            self.sums.resize_with(partition + 1, Vec::new);
        }
        let sums = &mut self.sums[partition];
        if let Some(&max) = ids.last() {
            // IDs are sorted, so the last one bounds the vector.
            if sums.len() <= max as usize {
                sums.resize(max as usize + 1, 0);
            }
        }
        for (&id, &v) in ids.iter().zip(values) {
            sums[id as usize] += v;
        }
    }
}

/// Returns per-partition sums of the selected profiles of `view`.
fn stack_sums(view: &dyn SourceView, plan: &Plan) -> Result<Vec<Vec<i64>>> {
    let mut sums = StackSums {
        series: view.series(),
        sums: Vec::new(),
    };
    plan.scan(view, true, &mut sums)?;
    Ok(sums.sums)
}

fn partition_symbols(view: &dyn SourceView, partition: usize) -> Result<&Symbols> {
    view.symbols(partition as u32)
        .ok_or_else(|| Error::Corrupt {
            block: view.id().to_string(),
            message: format!("symbols of partition {partition} are missing"),
        })
}

/// Calls `f` with the symbols and per-node sums of every partition that has
/// selected samples; `sums` is sized to the partition's stack tree.
fn for_each_partition(
    view: &dyn SourceView,
    plan: &Plan,
    f: &mut dyn FnMut(&Symbols, &[i64]),
) -> Result<()> {
    for (partition, mut sums) in stack_sums(view, plan)?.into_iter().enumerate() {
        if sums.iter().any(|v| *v != 0) {
            let symbols = partition_symbols(view, partition)?;
            if sums.len() > symbols.stacks.len() {
                return Err(Error::Corrupt {
                    block: view.id().to_string(),
                    message: format!(
                        "a profile refers to a stack trace beyond partition {partition}'s tree"
                    ),
                });
            }
            sums.resize(symbols.stacks.len(), 0);
            f(symbols, &sums);
        }
    }
    Ok(())
}

/// Adds the selected profiles of `view` to a function-name tree.
pub fn merge_tree(view: &dyn SourceView, plan: &Plan, tree: &mut FunctionTree) -> Result<()> {
    if !plan.overlaps(view) {
        return Ok(());
    }
    for_each_partition(view, plan, &mut |symbols, sums| {
        resolve::add_to_function_tree(symbols, sums, tree)
    })
}

/// Adds the selected profiles of `view` to a pprof profile.
pub fn merge_pprof(
    view: &dyn SourceView,
    plan: &Plan,
    out: &mut resolve::PprofBuilder,
) -> Result<()> {
    if !plan.overlaps(view) {
        return Ok(());
    }
    for_each_partition(view, plan, &mut |symbols, sums| out.add(symbols, sums))
}

/// One profile's total, for time series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub id: ProfileId,
    pub time_nanos: i64,
    pub total: i64,
}

/// Calls `out` with the series labels, time and total of every selected profile.
pub fn points(
    view: &dyn SourceView,
    plan: &Plan,
    out: &mut dyn FnMut(&Labels, Point),
) -> Result<()> {
    if !plan.overlaps(view) {
        return Ok(());
    }
    struct Totals<'a, 'b> {
        series: &'a [SeriesEntry],
        out: &'b mut dyn FnMut(&Labels, Point),
    }
    impl ProfileVisitor for Totals<'_, '_> {
        fn visit(
            &mut self,
            id: ProfileId,
            series: u32,
            time_nanos: i64,
            total: i64,
            _: Option<(&[u32], &[i64])>,
        ) {
            (self.out)(
                &self.series[series as usize].labels,
                Point {
                    id,
                    time_nanos,
                    total,
                },
            );
        }
    }
    let mut totals = Totals {
        series: view.series(),
        out,
    };
    plan.scan(view, false, &mut totals)
}

/// Calls `out` with the labels of every selected series of `view`.
pub fn series_labels<'a>(view: &'a dyn SourceView, plan: &Plan, out: &mut dyn FnMut(&'a Labels)) {
    if !plan.overlaps(view) {
        return;
    }
    for s in view.series() {
        if plan.matches(&s.labels) {
            out(&s.labels);
        }
    }
}
