//! Cumulative profiles become deltas per series.
//!
//! Go's `allocs` (heap `alloc_objects`/`alloc_space`), `block` and `mutex`
//! (`contentions`/`delay`) profiles count from the start of the process, so
//! storing them as sent would make every sum over time meaningless. As Grafana
//! Pyroscope does, the distributor keeps, per series, the last cumulative value
//! of each stack and stores only what grew since:
//!
//! - the first profile of a series is the baseline: it is remembered and
//!   nothing of it is stored;
//! - a stack whose value went down means the process restarted: the profile
//!   becomes the new baseline and, again, nothing is stored;
//! - stacks are identified by their frames' content (function, file, line, or
//!   mapping and address when a location has no lines), not by pprof IDs,
//!   which differ from one profile to the next.
//!
//! State is bounded: a series idle for longer than `idle` is forgotten (its
//! next profile is a new baseline), and a tenant keeps at most `max_series`
//! series, the least recently seen going first.

use rustc_hash::FxHashMap;
use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Mutex,
    time::Duration,
};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use ember_model::ingest::SeriesSpec;
use ember_model::pprof::{FlatProfile, LocationRef, Locations};

/// Returns whether a series of this profile name and sample type is cumulative.
pub fn is_cumulative(name: &str, sample_type: &str) -> bool {
    matches!(
        (name, sample_type),
        ("memory", "alloc_objects" | "alloc_space") | ("block" | "mutex", "contentions" | "delay")
    )
}

/// Marks a stack that no sample of a series has.
const ABSENT: usize = usize::MAX;

/// The distinct stacks of a profile's samples, found once for all of its
/// cumulative series (a Go heap profile has two).
struct Stacks {
    /// Each distinct stack's key, in order of first appearance.
    keys: Vec<u64>,
    /// Per sample: its stack's position in `keys`.
    of_sample: Vec<u32>,
}

impl Stacks {
    fn new(by_sample: &[u64]) -> Self {
        let mut index: FxHashMap<u64, u32> =
            FxHashMap::with_capacity_and_hasher(by_sample.len(), Default::default());
        let mut keys = Vec::new();
        let of_sample = by_sample
            .iter()
            .map(|&key| {
                *index.entry(key).or_insert_with(|| {
                    keys.push(key);
                    (keys.len() - 1) as u32
                })
            })
            .collect();
        Self { keys, of_sample }
    }
}

#[derive(Debug)]
struct SeriesState {
    /// Last cumulative value per stack key.
    totals: FxHashMap<u64, i64>,
    seen: Duration,
}

#[derive(Debug, Default)]
struct TenantState {
    series: HashMap<u64, SeriesState>,
    last_purge: Duration,
}

/// The cumulative state of every tenant's cumulative series.
#[derive(Debug)]
pub struct DeltaTracker {
    tenants: Mutex<HashMap<String, TenantState>>,
    max_series: usize,
    idle: Duration,
}

impl Default for DeltaTracker {
    /// Keeps up to 10,000 series per tenant, each for up to an hour without profiles.
    fn default() -> Self {
        Self::new(10_000, Duration::from_secs(3600))
    }
}

/// Hashes of stacks by content, computed once per profile.
struct StackKeys {
    by_sample: Vec<u64>,
}

impl StackKeys {
    fn new(flat: &FlatProfile) -> Self {
        let profile = &flat.header;
        let s = |i: i64| flat.strings.at(i).as_bytes();
        let functions: FxHashMap<u64, u64> = profile
            .function
            .iter()
            .map(|f| (f.id, hash_parts(&[s(f.name), s(f.filename)])))
            .collect();
        let mappings: FxHashMap<u64, u64> = profile
            .mapping
            .iter()
            .map(|m| (m.id, hash_parts(&[s(m.filename)])))
            .collect();
        let mut words = Words::default();
        let locations = LocationHashes::new(&flat.locations, |loc| {
            words.clear();
            if loc.lines.is_empty() {
                words.push(mappings.get(&loc.mapping_id).copied().unwrap_or(0));
                words.push(loc.address);
            } else {
                for line in loc.lines {
                    words.push(functions.get(&line.function_id).copied().unwrap_or(0));
                    words.push(line.line as u64);
                }
                // An end no address-only location has: the two kinds never hash alike.
                words.push(u64::MAX);
            }
            words.hash()
        });
        let by_sample = flat
            .samples
            .iter()
            .map(|sample| {
                words.clear();
                locations.extend(&mut words, sample.stack);
                words.hash()
            })
            .collect();
        Self { by_sample }
    }
}

/// Hashes byte strings as one, each ended by its length so that no two
/// splits of the same bytes agree.
fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h = Xxh3::new();
    for part in parts {
        h.update(part);
        h.update(&(part.len() as u64).to_le_bytes());
    }
    h.digest()
}

/// 64-bit words hashed at once: one pass of xxh3 over their bytes, in
/// place, instead of a streaming update per word.
#[derive(Default)]
struct Words(Vec<u64>);

impl Words {
    fn clear(&mut self) {
        self.0.clear();
    }

    fn push(&mut self, word: u64) {
        self.0.push(word);
    }

    fn extend(&mut self, words: impl Iterator<Item = u64>) {
        self.0.extend(words);
    }

    fn hash(&self) -> u64 {
        xxh3_64(bytemuck::cast_slice(&self.0))
    }
}

/// The content hash of every location, by pprof ID: indexed by ID when the
/// IDs are 1..=n, as profilers write them (slot 0 holds 0, which no hash
/// needs), else in a map.
enum LocationHashes {
    Dense(Vec<u64>),
    Sparse(FxHashMap<u64, u64>),
}

impl LocationHashes {
    fn new(locations: &Locations, mut hash: impl FnMut(LocationRef<'_>) -> u64) -> Self {
        if locations.ids().iter().zip(1..).all(|(&id, i)| id == i) {
            Self::Dense(
                std::iter::once(0)
                    .chain(locations.iter().map(hash))
                    .collect(),
            )
        } else {
            Self::Sparse(locations.iter().map(|l| (l.id, hash(l))).collect())
        }
    }

    /// Appends the hash of each location of `stack` to `words`, or the ID
    /// itself where none has it (validation leaves none). The table is
    /// chosen once a stack, so that the loop over frames is one load each.
    fn extend(&self, words: &mut Words, stack: &[u64]) {
        match self {
            Self::Dense(hashes) => words.extend(
                stack
                    .iter()
                    .map(|&id| hashes.get(id as usize).copied().unwrap_or(id)),
            ),
            Self::Sparse(hashes) => words.extend(
                stack
                    .iter()
                    .map(|&id| hashes.get(&id).copied().unwrap_or(id)),
            ),
        }
    }
}

fn series_key(spec: &SeriesSpec) -> u64 {
    let mut h = Xxh3::new();
    spec.labels.hash(&mut h);
    h.finish()
}

impl DeltaTracker {
    /// Returns a tracker keeping at most `max_series` series per tenant, each
    /// forgotten after `idle` without profiles.
    pub fn new(max_series: usize, idle: Duration) -> Self {
        Self {
            tenants: Mutex::new(HashMap::new()),
            max_series: max_series.max(1),
            idle,
        }
    }

    /// Returns how many series of `tenant` have a baseline.
    pub fn tracked(&self, tenant: &str) -> usize {
        self.tenants
            .lock()
            .expect("poisoned")
            .get(tenant)
            .map_or(0, |t| t.series.len())
    }

    /// Turns the cumulative series among `series` into deltas, in place: their
    /// values in `profile` become what grew since the series' previous
    /// profile, and series that are a baseline (first profile, or a reset) are
    /// removed from `series`, so nothing of them is stored. Returns whether
    /// any series was cumulative, i.e. whether `profile` may have changed.
    pub fn apply(
        &self,
        tenant: &str,
        profile: &mut FlatProfile,
        series: &mut Vec<SeriesSpec>,
        now: Duration,
    ) -> bool {
        let cumulative =
            |s: &SeriesSpec| is_cumulative(&s.profile_type.name, &s.profile_type.sample_type);
        if !series.iter().any(cumulative) {
            return false;
        }
        let stacks = Stacks::new(&StackKeys::new(profile).by_sample);
        let samples = &mut profile.samples;
        let mut tenants = self.tenants.lock().expect("poisoned");
        let state = tenants.entry(tenant.to_owned()).or_default();
        let mut keep = Vec::with_capacity(series.len());
        // Per distinct stack, for the series at hand: its first sample in
        // the series (`ABSENT` when none has it) and its summed value; and
        // the stacks the series has, so that a series of a few samples (split
        // off by a pprof label) costs its samples, not the profile's stacks.
        let mut sums: Vec<(usize, i64)> = vec![(ABSENT, 0); stacks.keys.len()];
        let mut touched: Vec<u32> = Vec::with_capacity(stacks.keys.len());
        let mut deltas: Vec<(usize, i64)> = Vec::with_capacity(stacks.keys.len());
        for spec in series.drain(..) {
            if !cumulative(&spec) {
                keep.push(spec);
                continue;
            }
            let column = spec.sample_type;
            for &stack in &touched {
                sums[stack as usize] = (ABSENT, 0);
            }
            touched.clear();
            // Sum duplicates of a stack: the delta goes to its first sample.
            let mut add = |i: usize| {
                let stack = stacks.of_sample[i];
                let (first, sum) = &mut sums[stack as usize];
                if *first == ABSENT {
                    *first = i;
                    touched.push(stack);
                }
                *sum = sum.saturating_add(samples.values(i)[column]);
            };
            match &spec.samples {
                Some(indices) => indices.iter().for_each(|&i| add(i as usize)),
                None => (0..samples.len()).for_each(add),
            }
            let summed = || {
                touched.iter().map(|&stack| {
                    let (first, v) = sums[stack as usize];
                    (stacks.keys[stack as usize], first, v)
                })
            };
            let baseline = || SeriesState {
                totals: summed().map(|(key, _, v)| (key, v)).collect(),
                seen: now,
            };
            let key = series_key(&spec);
            let Some(prev) = state.series.get_mut(&key) else {
                state.series.insert(key, baseline());
                continue;
            };
            // One lookup a stack: the totals are updated as they are read,
            // since a reset replaces them all anyway.
            deltas.clear();
            let mut reset = false;
            for (stack, first, v) in summed() {
                let before = match prev.totals.insert(stack, v) {
                    Some(before) => {
                        reset |= v < before;
                        before
                    }
                    None => 0,
                };
                deltas.push((first, v - before));
            }
            if reset {
                *prev = baseline();
                continue;
            }
            match &spec.samples {
                Some(indices) => indices
                    .iter()
                    .for_each(|&i| samples.values_mut(i as usize)[column] = 0),
                None => samples.for_each_values_mut(|v| v[column] = 0),
            }
            for &(first, delta) in &deltas {
                samples.values_mut(first)[column] = delta;
            }
            prev.seen = now;
            keep.push(spec);
        }
        *series = keep;
        self.evict(state, now);
        true
    }

    fn evict(&self, state: &mut TenantState, now: Duration) {
        let idle = self.idle;
        if now.saturating_sub(state.last_purge) >= idle / 4 || state.series.len() > self.max_series
        {
            state
                .series
                .retain(|_, s| now.saturating_sub(s.seen) < idle);
            state.last_purge = now;
        }
        if state.series.len() > self.max_series {
            let mut seen: Vec<(Duration, u64)> =
                state.series.iter().map(|(k, s)| (s.seen, *k)).collect();
            seen.sort_unstable();
            let excess = state.series.len() - self.max_series;
            for (_, k) in seen.into_iter().take(excess) {
                state.series.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests;
