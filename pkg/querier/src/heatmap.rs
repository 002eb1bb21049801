//! `SelectHeatmap`: per step, how many profiles (or, for span heatmaps, how
//! many spans of profiles) fall in each value range. A span's value is what
//! its profile took inside it; its exemplar names the profile and the span.
//!
//! Steps are those of `SelectSeries` (a profile at `t` lands in the slot
//! `start + k*step` with `(t - step, t]`). The value axis is cut into
//! [`VALUE_BUCKETS`] equal ranges between the smallest and the largest profile
//! value of the answer, so every series and slot share one axis; a slot lists
//! the lower bound and count of its non-empty ranges, lowest first.

use std::collections::BTreeMap;

use ember_proto::{
    querier::v1::{HeatmapQueryType, SelectHeatmapRequest, SelectSeriesRequest},
    types::v1::{Exemplar, ExemplarType, HeatmapSeries, HeatmapSlot},
};
use ember_query::Point;

use crate::{
    Result,
    series::{Bucketing, Groups},
};

/// Value ranges of the heatmap's y axis.
pub(crate) const VALUE_BUCKETS: usize = 20;

#[derive(Debug)]
pub(crate) struct Shape {
    /// Counts spans rather than profiles.
    pub(crate) spans: bool,
    steps: Bucketing,
    exemplars: bool,
    limit: Option<usize>,
}

impl Shape {
    pub(crate) fn new(req: &SelectHeatmapRequest, start_nanos: i64) -> Result<Self> {
        let steps = Bucketing::new(
            &SelectSeriesRequest {
                start: req.start,
                end: req.end,
                step: req.step,
                ..Default::default()
            },
            start_nanos,
        )?;
        Ok(Self {
            spans: req.query_type == HeatmapQueryType::Span as i32,
            steps,
            exemplars: req.exemplar_type != ExemplarType::None as i32,
            limit: req.limit.filter(|l| *l > 0).map(|l| l as usize),
        })
    }

    pub(crate) fn build(&self, groups: Groups) -> Vec<HeatmapSeries> {
        let all = || groups.groups.values().flatten().map(|(p, _, _)| p.total);
        let (Some(lo), Some(hi)) = (all().min(), all().max()) else {
            return Vec::new();
        };
        let width = ((hi - lo) as f64 / VALUE_BUCKETS as f64).max(f64::MIN_POSITIVE);
        let bucket = |v: i64| (((v - lo) as f64 / width) as usize).min(VALUE_BUCKETS - 1);
        let mut out: Vec<(i64, HeatmapSeries)> = Vec::new();
        for (labels, points) in &groups.groups {
            let mut slots: BTreeMap<i64, [i32; VALUE_BUCKETS]> = BTreeMap::new();
            let mut best: BTreeMap<i64, (Point, u32, u64)> = BTreeMap::new();
            for &(p, s, span) in points {
                let t = self.steps.bucket(p.time_nanos);
                slots.entry(t).or_insert([0; VALUE_BUCKETS])[bucket(p.total)] += 1;
                if self.exemplars && p.id != 0 {
                    let e = best.entry(t).or_insert((p, s, span));
                    if p.total > e.0.total {
                        *e = (p, s, span);
                    }
                }
            }
            let slots = slots
                .into_iter()
                .map(|(t, counts)| {
                    let (y_min, counts) = counts
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| **c > 0)
                        .map(|(i, c)| (lo as f64 + i as f64 * width, *c))
                        .unzip();
                    HeatmapSlot {
                        timestamp: t.div_euclid(1_000_000),
                        y_min,
                        counts,
                    }
                })
                .collect();
            let exemplars: Vec<Exemplar> = best
                .values()
                .map(|&(p, s, span)| groups.exemplar(&p, s, span))
                .collect();
            let total = points.iter().map(|(p, _, _)| p.total).sum();
            out.push((
                total,
                HeatmapSeries {
                    labels: labels.to_proto(),
                    slots,
                    exemplars,
                },
            ));
        }
        if let Some(limit) = self.limit {
            out.sort_by_key(|(total, _)| std::cmp::Reverse(*total));
            out.truncate(limit);
        }
        out.into_iter().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use ember_model::{Label, Labels};

    use super::*;

    #[test]
    fn counts_profiles_per_slot_and_value_range() {
        let req = SelectHeatmapRequest {
            start: 1_000,
            end: 61_000,
            step: 10.0,
            query_type: HeatmapQueryType::Individual as i32,
            exemplar_type: ExemplarType::Individual as i32,
            ..Default::default()
        };
        let shape = Shape::new(&req, 1_000_000_000).unwrap();
        let mut groups = Groups::default();
        let labels = Labels::new(vec![Label::new("service_name", "a")]);
        for (id, t, v) in [(1, 2, 0), (2, 3, 100), (3, 4, 100), (4, 12, 50)] {
            let point = Point {
                id,
                time_nanos: t * 1_000_000_000,
                total: v,
            };
            groups.add(&[], &labels, point);
        }
        let series = shape.build(groups);
        assert_eq!(series.len(), 1);
        let slots = &series[0].slots;
        assert_eq!(slots[0].timestamp, 11_000);
        assert_eq!(slots[0].y_min, [0.0, 95.0]);
        assert_eq!(slots[0].counts, [1, 2]);
        assert_eq!(slots[1].y_min, [50.0]);
        assert_eq!(slots[1].counts, [1]);
        let e = &series[0].exemplars;
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].value, 100);
        assert_eq!(e[0].profile_id, ember_query::format_profile_id(2));
    }
}
