//! Synthetic CPU profiles of long-running services, for datasets too large
//! to build from the shared corpus: days or weeks of pods pushing every 15 s.
//!
//! Each service has a fixed call graph (every function calls the same few
//! others), and its stacks are paths down that graph from `main`. A profile
//! is 15 s at 100 Hz: 1,500 samples drawn from the service's stacks with
//! Zipf-skewed frequencies, so a few hot paths dominate and the long tail
//! varies from one profile to the next, as with a real service. Values are
//! the draws' counts (`samples`) and their CPU time (`cpu` nanoseconds).

use ember_model::pprof::{FlatProfile, Locations, Samples, Strings};
use ember_proto::google::v1::{Function, Line, Location, Profile, ValueType};

/// Functions in a service's call graph.
const FUNCTIONS: usize = 600;
/// Callees of each function.
const CALLEES: usize = 4;
/// Distinct stacks a service runs.
const STACKS: usize = 4_000;
/// Stack depths, from `main` to the leaf.
const DEPTHS: std::ops::Range<usize> = 6..32;
/// Samples of a 15 s profile at 100 Hz.
pub(crate) const SAMPLES_PER_PROFILE: usize = 1_500;
/// The sampling period: 10 ms.
const PERIOD_NANOS: i64 = 10_000_000;
/// Profile duration.
pub(crate) const PROFILE_NANOS: i64 = 15_000_000_000;
/// Zipf exponent of stack frequencies.
const SKEW: f64 = 1.5;

/// A cheap pseudo-random sequence (SplitMix64).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce5_e4b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A uniform number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One service's call graph and the stacks it runs.
#[derive(Debug)]
pub(crate) struct Service {
    /// The string table, function and location tables every profile shares.
    strings: Strings,
    functions: Vec<Function>,
    locations: Locations,
    /// Location IDs of each stack, leaf first (pprof's order).
    stacks: Vec<Vec<u64>>,
    /// Cumulative Zipf weights of the stacks, in [0, 1].
    cdf: Vec<f64>,
}

impl Service {
    /// Builds the call graph of service `index`; the same index gives the same
    /// graph.
    pub(crate) fn new(index: usize) -> Self {
        let mut rng = Rng::new(0x5eed ^ (index as u64).wrapping_mul(0x1000_0001));
        let mut strings = vec![
            String::new(),
            "samples".into(),
            "count".into(),
            "cpu".into(),
            "nanoseconds".into(),
        ];
        let mut functions = Vec::with_capacity(FUNCTIONS);
        let mut locations = Vec::with_capacity(FUNCTIONS);
        for f in 0..FUNCTIONS {
            let id = f as u64 + 1;
            let name = if f == 0 {
                "main.main".to_owned()
            } else {
                format!("svc{index}/pkg{}.(*Handler{}).step{f}", f % 23, f % 7)
            };
            strings.push(name);
            strings.push(format!("svc{index}/pkg{}/file{}.go", f % 23, f % 41));
            functions.push(Function {
                id,
                name: strings.len() as i64 - 2,
                system_name: strings.len() as i64 - 2,
                filename: strings.len() as i64 - 1,
                start_line: 10,
            });
            locations.push(Location {
                id,
                address: 0x40_0000 + id * 0x40,
                line: vec![Line {
                    function_id: id,
                    line: 10 + (f as i64 % 200),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        // Function 0 is `main`; every function calls `CALLEES` fixed others
        // further down, so stacks are paths of a fixed graph.
        let callees: Vec<[usize; CALLEES]> = (0..FUNCTIONS)
            .map(|f| {
                std::array::from_fn(|_| 1 + (f + 1 + rng.below(FUNCTIONS - 1)) % (FUNCTIONS - 1))
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut stacks = Vec::with_capacity(STACKS);
        while stacks.len() < STACKS {
            let depth = DEPTHS.start + rng.below(DEPTHS.end - DEPTHS.start);
            let mut path = vec![0usize];
            while path.len() < depth {
                let from = *path.last().expect("non-empty");
                path.push(callees[from][rng.below(CALLEES)]);
            }
            if seen.insert(path.clone()) {
                stacks.push(path.iter().rev().map(|&f| f as u64 + 1).collect());
            }
        }
        let weights: Vec<f64> = (1..=STACKS).map(|r| (r as f64).powf(-SKEW)).collect();
        let sum: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / sum;
                acc
            })
            .collect();
        Self {
            strings: strings.iter().collect(),
            functions,
            locations: Locations::from(&locations[..]),
            stacks,
            cdf,
        }
    }

    /// Returns a 15 s CPU profile ending at `time_nanos`, its samples drawn
    /// from `seed`.
    pub(crate) fn cpu_profile(&self, seed: u64, time_nanos: i64) -> FlatProfile {
        let mut rng = Rng::new(seed);
        let mut counts = vec![0u32; self.stacks.len()];
        for _ in 0..SAMPLES_PER_PROFILE {
            let u = rng.unit();
            let i = self
                .cdf
                .partition_point(|&c| c < u)
                .min(self.stacks.len() - 1);
            counts[i] += 1;
        }
        let hit = || self.stacks.iter().zip(&counts).filter(|(_, n)| **n > 0);
        let frames = hit().map(|(stack, _)| stack.len()).sum();
        let mut samples = Samples::with_capacity(hit().count(), frames, 2 * hit().count());
        for (stack, &n) in hit() {
            samples.push(stack, &[i64::from(n), i64::from(n) * PERIOD_NANOS], &[]);
        }
        let header = Profile {
            sample_type: vec![
                ValueType { r#type: 1, unit: 2 },
                ValueType { r#type: 3, unit: 4 },
            ],
            function: self.functions.clone(),
            time_nanos: time_nanos - PROFILE_NANOS,
            duration_nanos: PROFILE_NANOS,
            period_type: Some(ValueType { r#type: 3, unit: 4 }),
            period: PERIOD_NANOS,
            ..Default::default()
        };
        FlatProfile {
            header,
            samples,
            strings: self.strings.clone(),
            locations: self.locations.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_graph_is_fixed_and_its_profiles_vary() {
        let (a, b) = (Service::new(3), Service::new(3));
        assert_eq!(a.stacks, b.stacks);
        let (p, q) = (a.cpu_profile(1, 0), a.cpu_profile(2, 0));
        let total = |p: &FlatProfile| p.samples.iter().map(|s| s.values[0]).sum::<i64>();
        assert_eq!(total(&p), SAMPLES_PER_PROFILE as i64);
        assert_eq!(total(&q), SAMPLES_PER_PROFILE as i64);
        assert_ne!(p.samples, q.samples);
        // Skewed: the hottest stack takes a large share, and far fewer
        // distinct stacks than samples are hit.
        let hottest = p.samples.iter().map(|s| s.values[0]).max().unwrap();
        assert!(hottest > 50, "hottest stack has {hottest} samples");
        assert!(
            p.samples.len() < SAMPLES_PER_PROFILE / 2,
            "{} stacks",
            p.samples.len()
        );
        let mut p = p;
        ember_model::pprof::validate(&mut p, &Default::default()).unwrap();
    }
}
