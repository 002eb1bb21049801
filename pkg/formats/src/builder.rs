//! Builds a pprof [`Profile`] from stacks of function names, interning
//! strings, functions, locations and identical stacks.

use ember_proto::google::v1::{Function, Line, Location, Profile, Sample, ValueType};
use rustc_hash::FxHashMap;

use crate::{Error, Limits, Result, types::ProfileKind};

/// Accumulates samples keyed by stack; identical stacks are summed.
#[derive(Debug)]
pub struct ProfileBuilder {
    profile: Profile,
    strings: FxHashMap<String, i64>,
    /// Function name (string index) → location ID; one function per location.
    locations: FxHashMap<i64, u64>,
    stacks: FxHashMap<Vec<u64>, usize>,
    limits: Limits,
    what: &'static str,
}

impl ProfileBuilder {
    /// Starts a profile with `sample_types` (type, unit) and the period of `kind`.
    pub fn new(
        what: &'static str,
        sample_types: &[(&str, &str)],
        period: Option<(&str, &str, i64)>,
        limits: Limits,
    ) -> Self {
        let mut b = Self {
            profile: Profile::default(),
            strings: FxHashMap::default(),
            locations: FxHashMap::default(),
            stacks: FxHashMap::default(),
            limits,
            what,
        };
        b.intern("");
        for (t, u) in sample_types {
            let vt = ValueType {
                r#type: b.intern(t),
                unit: b.intern(u),
            };
            b.profile.sample_type.push(vt);
        }
        if let Some((t, u, p)) = period {
            b.profile.period_type = Some(ValueType {
                r#type: b.intern(t),
                unit: b.intern(u),
            });
            b.profile.period = p;
        }
        b
    }

    /// Starts a one-sample-type profile of `kind`.
    pub fn for_kind(what: &'static str, kind: &ProfileKind, limits: Limits) -> Self {
        let period = (!kind.period_type.is_empty() || kind.period != 0).then_some((
            kind.period_type.as_str(),
            kind.period_unit.as_str(),
            kind.period,
        ));
        Self::new(
            what,
            &[(kind.sample_type.as_str(), kind.sample_unit.as_str())],
            period,
            limits,
        )
    }

    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    /// Returns the location ID of a frame named `name`.
    pub fn location(&mut self, name: &str) -> u64 {
        let name = self.intern(name);
        if let Some(&id) = self.locations.get(&name) {
            return id;
        }
        let id = self.profile.location.len() as u64 + 1;
        self.profile.function.push(Function {
            id,
            name,
            system_name: name,
            ..Default::default()
        });
        self.profile.location.push(Location {
            id,
            line: vec![Line {
                function_id: id,
                line: 0,
                column: 0,
            }],
            ..Default::default()
        });
        self.locations.insert(name, id);
        id
    }

    /// Adds `values` to the stack `leaf_first` (location IDs, leaf first).
    /// Zero-valued samples are dropped.
    pub fn add(&mut self, leaf_first: Vec<u64>, values: &[i64]) -> Result<()> {
        debug_assert_eq!(values.len(), self.profile.sample_type.len());
        if values.iter().all(|v| *v == 0) {
            return Ok(());
        }
        self.limits.check_depth(self.what, leaf_first.len())?;
        if let Some(&i) = self.stacks.get(&leaf_first) {
            let sample = &mut self.profile.sample[i];
            for (acc, v) in sample.value.iter_mut().zip(values) {
                *acc = acc.saturating_add(*v);
            }
            return Ok(());
        }
        if self.limits.max_samples > 0 && self.profile.sample.len() >= self.limits.max_samples {
            return Err(Error::Unprocessable(format!(
                "{} has more than {} distinct stacks, the limit of samples per profile",
                self.what, self.limits.max_samples
            )));
        }
        self.stacks
            .insert(leaf_first.clone(), self.profile.sample.len());
        self.profile.sample.push(Sample {
            location_id: leaf_first,
            value: values.to_vec(),
            label: Vec::new(),
        });
        Ok(())
    }

    /// Adds `value` to the stack of frame names given root first.
    pub fn add_names_root_first<S: AsRef<str>>(
        &mut self,
        root_first: &[S],
        value: i64,
    ) -> Result<()> {
        self.limits.check_depth(self.what, root_first.len())?;
        let ids: Vec<u64> = root_first
            .iter()
            .rev()
            .map(|n| self.location(n.as_ref()))
            .collect();
        self.add(ids, &[value])
    }

    /// Returns whether no sample was added.
    pub fn is_empty(&self) -> bool {
        self.profile.sample.is_empty()
    }

    /// Sets the profile's start time and duration.
    pub fn time(&mut self, time_nanos: i64, duration_nanos: i64) {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
    }

    /// Returns the profile.
    pub fn build(self) -> Profile {
        self.profile
    }
}
