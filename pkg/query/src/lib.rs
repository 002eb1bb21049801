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

use ember_block::{BlockMeta, BlockView, MemBlock, ProfileVisitor, SeriesEntry, SpanSamples};
use ember_model::{
    Labels, ProfileId, Selector, flamegraph::FunctionTree, ingest::Annotation, labels::PROFILE_TYPE,
};
use ember_symdb::{Symbols, resolve};
use rustc_hash::FxHashSet;
use ulid::Ulid;

mod recent;
mod select;
#[cfg(test)]
mod tests;

pub use ember_block::Error;
pub use recent::{Need, RecentData, RecentSources, SharedSource};
pub use select::{
    GoPgo, SampleFilter, apply_go_pgo, call_site_mask, format_profile_id, parse_profile_id,
    parse_profile_ids, parse_span_ids,
};
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
    /// Visits the samples taken inside spans of the profiles of selected
    /// series within `[start, end]` ([`ProfileVisitor::visit_spans`]). A
    /// source without span samples visits nothing.
    fn scan_spans(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        let _ = (selected, start, end, visitor);
        Ok(())
    }
    /// Returns whether the totals this source reports already apply the
    /// plan's [`SampleFilter`] (an ingester's answer), so they are used as is.
    fn presampled(&self) -> bool {
        false
    }
    /// Returns what the client attached to profile `id` (a row ID), sorted;
    /// empty for most profiles, and for sources that store none.
    fn annotations(&self, id: ProfileId) -> &[Annotation] {
        let _ = id;
        &[]
    }
    /// Returns the `(span, total)` pairs of profile `id` when the source's
    /// answer carries them instead of span samples (an ingester's list).
    fn span_totals(&self, id: ProfileId) -> &[(u64, i64)] {
        let _ = id;
        &[]
    }
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

    fn annotations(&self, id: ProfileId) -> &[Annotation] {
        BlockView::annotations(self).get(&id).map_or(&[], |a| a)
    }

    fn scan_spans(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        BlockView::scan_spans(self, selected, start, end, visitor)
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
        MemBlock::scan(self, selected, start, end, with_samples, visitor);
        Ok(())
    }

    fn symbols(&self, partition: u32) -> Option<&Symbols> {
        MemBlock::symbols(self, partition)
    }

    fn annotations(&self, id: ProfileId) -> &[Annotation] {
        MemBlock::annotations(self).get(&id).map_or(&[], |a| a)
    }

    fn scan_spans(
        &self,
        selected: &[bool],
        start: i64,
        end: i64,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        MemBlock::scan_spans(self, selected, start, end, visitor);
        Ok(())
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
    /// When set, only these profiles count (a `profile_id_selector`); profiles
    /// without an ID then never do.
    pub ids: Option<Arc<FxHashSet<ProfileId>>>,
    /// Which samples of the counted profiles count.
    pub samples: SampleFilter,
    /// Whether pre-aggregated copies of blocks may answer.
    pub downsampling: Downsampling,
}

/// Whether a query may read pre-aggregated copies of blocks
/// ([`ember_block::downsample`]) instead of raw blocks: only where a copy
/// gives exactly the raw answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Downsampling {
    /// Raw blocks only: the query needs profile IDs, spans, annotations or
    /// the times of single profiles.
    #[default]
    Off,
    /// The query sums over its range (a flame graph, a pprof merge).
    Totals,
    /// The query sums per time-series step: points at `start + k*step`
    /// (nanoseconds), each of `(t - step, t]`.
    Steps { start: i64, step: i64 },
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
    ids: Option<&'a FxHashSet<ProfileId>>,
    inner: &'a mut dyn ProfileVisitor,
}

impl Admitted<'_> {
    fn admit(&self, id: ProfileId) -> bool {
        self.ids.is_none_or(|ids| ids.contains(&id)) && self.filter.admit(id)
    }
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
        if self.admit(id) {
            self.inner.visit(id, series, time_nanos, total, samples);
        }
    }

    fn visit_spans(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        total: i64,
        spans: SpanSamples<'_>,
    ) {
        if self.admit(id) {
            self.inner.visit_spans(id, series, time_nanos, total, spans);
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
    /// Returns the plan for a source whose series, profiles and spans the
    /// answering ingester already selected: the same type, range and call
    /// site (selecting a call site twice changes nothing), nothing else.
    pub fn preselected(&self) -> Plan {
        let mut plan = Plan::new(self.profile_type.clone(), Vec::new(), self.start, self.end);
        plan.samples.call_site = self.samples.call_site.clone();
        plan
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
            ids: None,
            samples: SampleFilter::default(),
            downsampling: Downsampling::Off,
        }
    }

    /// Returns the coarsest of `copies` that answers this plan exactly in
    /// place of raw block `raw`: a copy of `raw` lying inside the range, at a
    /// resolution the steps are multiples of; `None` reads `raw`.
    pub fn copy_for<'a>(
        &self,
        raw: &BlockMeta,
        copies: impl IntoIterator<Item = &'a BlockMeta>,
    ) -> Option<&'a BlockMeta> {
        if self.ids.is_some() || self.samples.spans.is_some() {
            return None;
        }
        let fits = |copy: &BlockMeta| {
            let r = copy.resolution_nanos;
            let inside = copy.min_time_nanos >= self.start && copy.max_time_nanos <= self.end;
            inside
                && copy.downsamples(raw)
                && match self.downsampling {
                    Downsampling::Off => false,
                    Downsampling::Totals => true,
                    // Annotations are listed on points; copies have none.
                    Downsampling::Steps { start, step } => {
                        start.rem_euclid(r) == 0
                            && step.rem_euclid(r) == 0
                            && raw.stats.annotations == 0
                    }
                }
        };
        copies
            .into_iter()
            .filter(|c| fits(c))
            .max_by_key(|c| (c.resolution_nanos, std::cmp::Reverse(c.ulid)))
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
            ids: self.ids.as_deref(),
            inner: visitor,
        };
        view.scan(&selected, self.start, self.end, with_samples, &mut admitted)
    }

    /// Scans the span samples of the selected profiles of `view` that the
    /// filter admits.
    pub fn scan_spans(
        &self,
        view: &dyn SourceView,
        visitor: &mut dyn ProfileVisitor,
    ) -> Result<()> {
        let selected = self.select(view.series());
        let mut admitted = Admitted {
            filter: &self.profiles,
            ids: self.ids.as_deref(),
            inner: visitor,
        };
        view.scan_spans(&selected, self.start, self.end, &mut admitted)
    }
}

/// Sums values per stack-trace ID, one dense vector per partition.
struct StackSums<'a> {
    series: &'a [SeriesEntry],
    sums: Vec<Vec<i64>>,
    /// For span scans: the spans whose samples count.
    spans: Option<&'a FxHashSet<u64>>,
}

impl StackSums<'_> {
    /// Returns the sums of `series`'s partition, sized for stack `max`.
    fn partition(&mut self, series: u32, max: u32) -> &mut Vec<i64> {
        let partition = self.series[series as usize].partition as usize;
        if self.sums.len() <= partition {
            self.sums.resize_with(partition + 1, Vec::new);
        }
        let sums = &mut self.sums[partition];
        if sums.len() <= max as usize {
            sums.resize(max as usize + 1, 0);
        }
        sums
    }
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
        // IDs are sorted, so the last one bounds the vector.
        let Some(&max) = ids.last() else { return };
        let sums = self.partition(series, max);
        for (&id, &v) in ids.iter().zip(values) {
            sums[id as usize] += v;
        }
    }

    fn visit_spans(&mut self, _: ProfileId, series: u32, _: i64, _: i64, s: SpanSamples<'_>) {
        let Some(wanted) = self.spans else { return };
        let Some(&max) = s.stacktrace_ids.iter().max() else {
            return;
        };
        if !s.spans.iter().any(|span| wanted.contains(span)) {
            return;
        }
        let sums = self.partition(series, max);
        for ((span, &id), &v) in s.spans.iter().zip(s.stacktrace_ids).zip(s.values) {
            if wanted.contains(span) {
                sums[id as usize] += v;
            }
        }
    }
}

/// Returns per-partition sums of the selected profiles of `view`.
fn stack_sums(view: &dyn SourceView, plan: &Plan) -> Result<Vec<Vec<i64>>> {
    let mut sums = StackSums {
        series: view.series(),
        sums: Vec::new(),
        spans: plan.samples.spans.as_deref(),
    };
    if sums.spans.is_some() {
        plan.scan_spans(view, &mut sums)?;
    } else {
        plan.scan(view, true, &mut sums)?;
    }
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
            if !plan.samples.call_site.is_empty() {
                let mask = call_site_mask(symbols, &plan.samples.call_site);
                for (sum, keep) in sums.iter_mut().zip(mask) {
                    if !keep {
                        *sum = 0;
                    }
                }
            }
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

/// Calls `out` with the series labels, time and total of every selected
/// profile. With a [`SampleFilter`], a profile's total is that of its
/// selected samples, and profiles with none are left out.
pub fn points(
    view: &dyn SourceView,
    plan: &Plan,
    out: &mut dyn FnMut(&Labels, Point),
) -> Result<()> {
    if !plan.overlaps(view) {
        return Ok(());
    }
    let filtered = !plan.samples.is_all() && !view.presampled();
    let mut totals = Totals {
        view,
        out,
        call_site: filtered.then_some(&plan.samples.call_site[..]),
        spans: plan.samples.spans.as_deref().filter(|_| filtered),
        masks: Vec::new(),
        error: None,
    };
    if totals.spans.is_some() {
        plan.scan_spans(view, &mut totals)?;
    } else {
        plan.scan(view, filtered, &mut totals)?;
    }
    totals.error.map_or(Ok(()), Err)
}

/// Calls `out` with the series labels, point and span of every span of the
/// selected profiles: the point's total is what the profile took inside that
/// span. Profiles without spans give nothing.
pub fn span_points(
    view: &dyn SourceView,
    plan: &Plan,
    out: &mut dyn FnMut(&Labels, Point, u64),
) -> Result<()> {
    if !plan.overlaps(view) {
        return Ok(());
    }
    let mut totals = SpanTotals { view, out };
    if view.presampled() {
        plan.scan(view, false, &mut totals)
    } else {
        plan.scan_spans(view, &mut totals)
    }
}

struct SpanTotals<'a, 'b> {
    view: &'a dyn SourceView,
    out: &'b mut dyn FnMut(&Labels, Point, u64),
}

impl ProfileVisitor for SpanTotals<'_, '_> {
    /// A presampled source's profile, with its span totals at hand.
    fn visit(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        _: i64,
        _: Option<(&[u32], &[i64])>,
    ) {
        let labels = &self.view.series()[series as usize].labels;
        for &(span, total) in self.view.span_totals(id) {
            (self.out)(
                labels,
                Point {
                    id,
                    time_nanos,
                    total,
                },
                span,
            );
        }
    }

    fn visit_spans(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        _: i64,
        s: SpanSamples<'_>,
    ) {
        let labels = &self.view.series()[series as usize].labels;
        // Sorted by span: one run per span.
        let mut i = 0;
        while i < s.spans.len() {
            let span = s.spans[i];
            let mut total = 0;
            while i < s.spans.len() && s.spans[i] == span {
                total += s.values[i];
                i += 1;
            }
            (self.out)(
                labels,
                Point {
                    id,
                    time_nanos,
                    total,
                },
                span,
            );
        }
    }
}

/// Reports one point per profile, summing only the selected samples when a
/// call site or spans are set.
struct Totals<'a, 'b> {
    view: &'a dyn SourceView,
    out: &'b mut dyn FnMut(&Labels, Point),
    call_site: Option<&'a [String]>,
    spans: Option<&'a FxHashSet<u64>>,
    /// Per partition, made on first use: which stacks are under the call site.
    masks: Vec<Option<Vec<bool>>>,
    error: Option<Error>,
}

impl Totals<'_, '_> {
    /// Returns the call-site mask of `series`'s partition (`None`: no call site).
    fn mask(&mut self, series: u32) -> Option<&[bool]> {
        let call_site = self.call_site.filter(|c| !c.is_empty())?;
        let partition = self.view.series()[series as usize].partition as usize;
        if self.masks.len() <= partition {
            self.masks.resize(partition + 1, None);
        }
        if self.masks[partition].is_none() {
            match partition_symbols(self.view, partition) {
                Ok(symbols) => self.masks[partition] = Some(call_site_mask(symbols, call_site)),
                Err(e) => {
                    self.error.get_or_insert(e);
                    return Some(&[]);
                }
            }
        }
        self.masks[partition].as_deref()
    }

    fn report(&mut self, id: ProfileId, series: u32, time_nanos: i64, total: i64) {
        let labels = &self.view.series()[series as usize].labels;
        (self.out)(
            labels,
            Point {
                id,
                time_nanos,
                total,
            },
        );
    }
}

impl ProfileVisitor for Totals<'_, '_> {
    fn visit(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        total: i64,
        samples: Option<(&[u32], &[i64])>,
    ) {
        let total = match (samples, self.mask(series)) {
            (Some((ids, values)), Some(mask)) => {
                let mut kept = 0;
                let mut any = false;
                for (&id, &v) in ids.iter().zip(values) {
                    if mask.get(id as usize).copied().unwrap_or(false) {
                        kept += v;
                        any = true;
                    }
                }
                if !any {
                    return;
                }
                kept
            }
            _ => total,
        };
        self.report(id, series, time_nanos, total);
    }

    fn visit_spans(
        &mut self,
        id: ProfileId,
        series: u32,
        time_nanos: i64,
        _: i64,
        s: SpanSamples<'_>,
    ) {
        let Some(wanted) = self.spans else { return };
        let mut kept = 0;
        let mut any = false;
        let mask = self.mask(series).map(<[bool]>::to_vec);
        for ((span, &stack), &v) in s.spans.iter().zip(s.stacktrace_ids).zip(s.values) {
            let under = mask
                .as_ref()
                .is_none_or(|m| m.get(stack as usize).copied().unwrap_or(false));
            if under && wanted.contains(span) {
                kept += v;
                any = true;
            }
        }
        if any {
            self.report(id, series, time_nanos, kept);
        }
    }
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
