//! Turns profile totals into time series: points at `start + k*step`, each
//! aggregating the profiles in `(t - step, t]`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{Error, Result};
use ember_model::{Label, Labels, ProfileId, ingest::Annotation};
use ember_proto::{
    querier::v1::SelectSeriesRequest,
    types::v1::{
        Exemplar, Point as PointProto, ProfileAnnotation, Series, TimeSeriesAggregationType,
    },
};
use ember_query::Point;

/// Profiles grouped by the `group_by` labels of their series, each with the
/// index of its series' labels and its span (0 for a whole profile), for
/// exemplars.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    pub(crate) groups: BTreeMap<Labels, Vec<(Point, u32, u64)>>,
    pub(crate) labels: Vec<Labels>,
    index: HashMap<Labels, u32>,
    /// The series and group key of the last point added: a source's profiles
    /// come sorted by series, so most points repeat them, and comparing labels
    /// costs far less than hashing them and building the key again.
    last: Option<(u32, Labels)>,
    /// The annotations of the profiles that have any.
    annotations: HashMap<ProfileId, Vec<Annotation>>,
}

impl Groups {
    /// Adds the point of a profile of the series with `labels`.
    pub(crate) fn add(&mut self, group_by: &[String], labels: &Labels, point: Point) {
        self.add_span(group_by, labels, point, 0);
    }

    /// Adds the point of one span of a profile of the series with `labels`.
    pub(crate) fn add_span(
        &mut self,
        group_by: &[String],
        labels: &Labels,
        point: Point,
        span: u64,
    ) {
        let last = match self.last.take() {
            Some((series, key)) if self.labels[series as usize] == *labels => (series, key),
            _ => {
                let series = match self.index.get(labels) {
                    Some(&i) => i,
                    None => {
                        let i = self.labels.len() as u32;
                        self.labels.push(labels.clone());
                        self.index.insert(labels.clone(), i);
                        i
                    }
                };
                let key = Labels::new(
                    group_by
                        .iter()
                        .filter_map(|n| labels.get(n).map(|v| Label::new(n.clone(), v)))
                        .collect(),
                );
                (series, key)
            }
        };
        let (series, key) = self.last.insert(last);
        match self.groups.get_mut(key) {
            Some(points) => points.push((point, *series, span)),
            None => {
                self.groups
                    .insert(key.clone(), vec![(point, *series, span)]);
            }
        }
    }

    /// Records what the client attached to profile `id` (sorted, unique).
    pub(crate) fn annotate(&mut self, id: ProfileId, annotations: &[Annotation]) {
        if !annotations.is_empty() {
            self.annotations.insert(id, annotations.to_vec());
        }
    }

    /// Returns the distinct annotations of `points`' profiles, sorted, at
    /// most [`MAX_ANNOTATIONS_PER_POINT`].
    fn point_annotations<'a>(
        &'a self,
        ids: impl Iterator<Item = ProfileId>,
    ) -> Vec<ProfileAnnotation> {
        let mut distinct: BTreeSet<&'a Annotation> = BTreeSet::new();
        for id in ids {
            if let Some(a) = self.annotations.get(&id) {
                distinct.extend(a);
            }
        }
        distinct
            .into_iter()
            .take(MAX_ANNOTATIONS_PER_POINT)
            .map(|a| ProfileAnnotation {
                key: a.key.clone(),
                value: a.value.clone(),
            })
            .collect()
    }

    /// Returns the exemplar of one profile (or of one span of it): its ID,
    /// span, time, value and labels.
    pub(crate) fn exemplar(&self, point: &Point, series: u32, span: u64) -> Exemplar {
        Exemplar {
            timestamp: point.time_nanos.div_euclid(1_000_000),
            profile_id: ember_query::format_profile_id(point.id),
            span_id: if span == 0 {
                String::new()
            } else {
                format!("{span:016x}")
            },
            value: point.total,
            labels: self.labels[series as usize].to_proto(),
        }
    }
}

/// Distinct annotations one point lists: a point may aggregate thousands of
/// profiles, whose annotations are mostly the same few.
const MAX_ANNOTATIONS_PER_POINT: usize = 64;

/// Steps of less than this would let one query ask for billions of points.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// One point being aggregated: sum, count, the largest profile with an ID
/// (and its series) and the annotated profiles.
type Bucket = (i64, i64, Option<(Point, u32)>, Vec<ProfileId>);

#[derive(Debug)]
pub(crate) struct Bucketing {
    start: i64,
    step: i64,
    average: bool,
    limit: Option<usize>,
}

impl Bucketing {
    pub(crate) fn new(req: &SelectSeriesRequest, start_nanos: i64) -> Result<Self> {
        if !(req.step.is_finite() && req.step > 0.0) {
            return Err(Error::InvalidRequest(format!(
                "step must be a positive number of seconds, got {}",
                req.step
            )));
        }
        let step = (req.step * 1e9) as i64;
        let span = (req.end - req.start).saturating_mul(1_000_000);
        if step > 0 && span / step.max(1) > MAX_POINTS_PER_SERIES {
            return Err(Error::InvalidRequest(format!(
                "step {}s over this range gives more than {MAX_POINTS_PER_SERIES} points; use a larger step",
                req.step
            )));
        }
        let average = req.aggregation == Some(TimeSeriesAggregationType::Average as i32);
        Ok(Self {
            start: start_nanos,
            step: step.max(1),
            average,
            limit: req.limit.filter(|l| *l > 0).map(|l| l as usize),
        })
    }

    /// Returns the first point's time and the step, in nanoseconds.
    pub(crate) fn steps(&self) -> (i64, i64) {
        (self.start, self.step)
    }

    /// Returns the point time (ns) of the bucket holding `t`.
    pub(crate) fn bucket(&self, t: i64) -> i64 {
        let k = (t - self.start + self.step - 1).div_euclid(self.step);
        self.start + k * self.step
    }

    /// Returns one series per group; with `exemplars`, each point names the
    /// profile of largest value among those it aggregates.
    pub(crate) fn aggregate(&mut self, groups: Groups, exemplars: bool) -> Vec<Series> {
        let mut series: Vec<(i64, Series)> = groups
            .groups
            .iter()
            .map(|(labels, points)| {
                let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
                for &(p, s, _) in points {
                    let b = buckets.entry(self.bucket(p.time_nanos)).or_default();
                    b.0 += p.total;
                    b.1 += 1;
                    if exemplars && p.id != 0 && b.2.is_none_or(|(e, _)| p.total > e.total) {
                        b.2 = Some((p, s));
                    }
                    if groups.annotations.contains_key(&p.id) {
                        b.3.push(p.id);
                    }
                }
                let total: i64 = points.iter().map(|(p, _, _)| p.total).sum();
                let points = buckets
                    .into_iter()
                    .map(|(t, (sum, n, exemplar, annotated))| PointProto {
                        value: if self.average {
                            sum as f64 / n as f64
                        } else {
                            sum as f64
                        },
                        timestamp: t.div_euclid(1_000_000),
                        annotations: groups.point_annotations(annotated.into_iter()),
                        exemplars: exemplar
                            .map(|(p, s)| groups.exemplar(&p, s, 0))
                            .into_iter()
                            .collect(),
                    })
                    .collect();
                (
                    total,
                    Series {
                        labels: labels.to_proto(),
                        points,
                    },
                )
            })
            .collect();
        if let Some(limit) = self.limit {
            // Keep the `limit` largest series, still in label order.
            let mut largest: Vec<usize> = (0..series.len()).collect();
            largest.sort_by_key(|&i| std::cmp::Reverse(series[i].0));
            largest.truncate(limit);
            let mut keep = vec![false; series.len()];
            largest.into_iter().for_each(|i| keep[i] = true);
            let mut i = 0;
            series.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        series.into_iter().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(step: f64, aggregation: Option<TimeSeriesAggregationType>) -> SelectSeriesRequest {
        SelectSeriesRequest {
            start: 1_000,
            end: 61_000,
            step,
            aggregation: aggregation.map(|a| a as i32),
            ..Default::default()
        }
    }

    #[test]
    fn buckets_are_left_open_right_closed() {
        let b = Bucketing::new(&req(10.0, None), 1_000_000_000).unwrap();
        let s = 1_000_000_000;
        assert_eq!(b.bucket(s), s);
        assert_eq!(b.bucket(s + 1), s + 10_000_000_000);
        assert_eq!(b.bucket(s + 10_000_000_000), s + 10_000_000_000);
    }

    #[test]
    fn sums_or_averages_per_bucket() {
        let points = [
            Point {
                id: 0,
                time_nanos: 2_000_000_000,
                total: 4,
            },
            Point {
                id: 0,
                time_nanos: 3_000_000_000,
                total: 2,
            },
            Point {
                id: 0,
                time_nanos: 12_000_000_000,
                total: 7,
            },
        ];
        let groups = || {
            let mut g = Groups::default();
            for (i, &p) in points.iter().enumerate() {
                let labels = Labels::new(vec![Label::new("i", i.to_string())]);
                g.add(
                    &[],
                    &labels,
                    Point {
                        id: i as u128 + 1,
                        ..p
                    },
                );
            }
            g
        };
        let mut sum = Bucketing::new(&req(10.0, None), 1_000_000_000).unwrap();
        let s = sum.aggregate(groups(), true);
        let values: Vec<(i64, f64)> = s[0].points.iter().map(|p| (p.timestamp, p.value)).collect();
        assert_eq!(values, [(11_000, 6.0), (21_000, 7.0)]);
        // The first point's exemplar is its larger profile (4, the first).
        let e = &s[0].points[0].exemplars;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].value, 4);
        assert_eq!(e[0].timestamp, 2_000);
        assert_eq!(e[0].profile_id, ember_query::format_profile_id(1));
        assert_eq!(e[0].labels[0].value, "0");
        assert!(
            sum.aggregate(groups(), false)[0].points[0]
                .exemplars
                .is_empty()
        );
        let mut avg = Bucketing::new(
            &req(10.0, Some(TimeSeriesAggregationType::Average)),
            1_000_000_000,
        )
        .unwrap();
        assert_eq!(avg.aggregate(groups(), false)[0].points[0].value, 3.0);
    }

    #[test]
    fn rejects_bad_steps() {
        assert!(Bucketing::new(&req(0.0, None), 0).is_err());
        assert!(Bucketing::new(&req(0.001, None), 0).is_err());
    }
}
