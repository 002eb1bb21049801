//! Reading pprof profiles for expectations, rewriting their timestamps, and
//! building small synthetic ones (with `ember_testkit::pprof`'s builder,
//! re-exported here with its gzip helpers).
//!
//! Stack conventions of pprof, which the expectations follow: a sample's
//! `location_id[0]` is the leaf (innermost) frame and the last one the root; a
//! location with several lines holds inlined calls, `line[0]` the innermost
//! inlined function and the last line its caller. So the leaf frame of a sample is
//! the function of `location_id[0]`'s `line[0]`, and the root-first stack of
//! function names is every location's lines, innermost first, reversed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use ember_proto::google::v1::{Function, Line, Location, Profile, Sample, ValueType};
use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

pub use ember_testkit::pprof::{PprofBuilder, decode, gunzip_if_needed, gzip, is_gzip};

/// Returns `data` (a pprof, gzipped or not) with `time_nanos` set to `time_nanos`,
/// gzipped again if it was gzipped.
///
/// It appends a `time_nanos` field instead of re-encoding: protobuf takes the last
/// value of a scalar field, and every other byte stays exactly as the profiler
/// wrote it (even strings that are not UTF-8).
pub fn with_time_nanos(data: &[u8], time_nanos: i64) -> Vec<u8> {
    let mut raw = gunzip_if_needed(data).expect("gunzip profile");
    // Field 9 (time_nanos), wire type 0 (varint).
    raw.push(9 << 3);
    prost::encoding::encode_varint(time_nanos as u64, &mut raw);
    if is_gzip(data) {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&raw).expect("gzip");
        enc.finish().expect("gzip")
    } else {
        raw
    }
}

/// What a query must show for one sample type of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleTypeExpectation {
    /// The index of the sample type in the profile.
    pub index: usize,
    /// The sample type, e.g. `cpu`.
    pub sample_type: String,
    /// Its unit, e.g. `nanoseconds`.
    pub sample_unit: String,
    /// The sum of this type's values over all samples.
    pub sum: i64,
    /// The non-empty function names of the leaf frames of samples whose value is
    /// not zero.
    pub leaves: BTreeSet<String>,
    /// How many distinct leaf locations of samples with a non-zero value have no
    /// function name (no line, or an empty name): how a server names those is not
    /// fixed by the contract, so each may show up under a name of its own.
    pub unnamed_leaves: usize,
}

/// Returns the string at `index` in the profile's string table ("" when out of range).
pub fn string(profile: &Profile, index: i64) -> &str {
    usize::try_from(index)
        .ok()
        .and_then(|i| profile.string_table.get(i))
        .map(String::as_str)
        .unwrap_or("")
}

/// Resolves location IDs to locations and function IDs to names.
#[derive(Debug)]
pub struct Symbols<'a> {
    profile: &'a Profile,
    locations: HashMap<u64, &'a Location>,
    functions: HashMap<u64, &'a Function>,
}

impl<'a> Symbols<'a> {
    /// Indexes the profile's locations and functions.
    ///
    /// Some profilers (.NET's) leave every function or location ID at 0; as
    /// Pyroscope does, such tables are then indexed by position (ID = index + 1),
    /// which is what their references use.
    pub fn new(profile: &'a Profile) -> Self {
        fn index<T>(items: &[T], id: impl Fn(&T) -> u64) -> HashMap<u64, &T> {
            let positional = items.iter().any(|t| id(t) == 0);
            items
                .iter()
                .enumerate()
                .map(|(i, t)| (if positional { i as u64 + 1 } else { id(t) }, t))
                .collect()
        }
        Symbols {
            profile,
            locations: index(&profile.location, |l| l.id),
            functions: index(&profile.function, |f| f.id),
        }
    }

    /// Returns the name of a line's function ("" when unknown).
    pub fn line_name(&self, line: &Line) -> &'a str {
        self.functions
            .get(&line.function_id)
            .map(|f| string(self.profile, f.name))
            .unwrap_or("")
    }

    /// Returns the function name of the sample's leaf frame, `None` when the
    /// leaf location has no line or its function has no name.
    pub fn leaf_name(&self, sample: &Sample) -> Option<&'a str> {
        let leaf = self.locations.get(sample.location_id.first()?)?;
        let name = self.line_name(leaf.line.first()?);
        (!name.is_empty()).then_some(name)
    }

    /// Returns the sample's stack as function names, root first, with inlined
    /// frames expanded; a location without lines contributes `""`.
    pub fn stack_root_first(&self, sample: &Sample) -> Vec<String> {
        let mut leaf_first = Vec::new();
        for id in &sample.location_id {
            match self.locations.get(id) {
                Some(loc) if !loc.line.is_empty() => {
                    leaf_first.extend(loc.line.iter().map(|l| self.line_name(l).to_string()))
                }
                _ => leaf_first.push(String::new()),
            }
        }
        leaf_first.reverse();
        leaf_first
    }
}

/// Returns, for each sample type of `profile`, what a flame graph must show.
pub fn expectations(profile: &Profile) -> Vec<SampleTypeExpectation> {
    let symbols = Symbols::new(profile);
    profile
        .sample_type
        .iter()
        .enumerate()
        .map(|(index, vt)| {
            let mut exp = SampleTypeExpectation {
                index,
                sample_type: string(profile, vt.r#type).to_string(),
                sample_unit: string(profile, vt.unit).to_string(),
                sum: 0,
                leaves: BTreeSet::new(),
                unnamed_leaves: 0,
            };
            let mut unnamed = BTreeSet::new();
            for sample in &profile.sample {
                let value = sample.value.get(index).copied().unwrap_or(0);
                exp.sum += value;
                if value != 0 {
                    match symbols.leaf_name(sample) {
                        Some(name) => {
                            exp.leaves.insert(name.to_string());
                        }
                        None => {
                            unnamed.insert(sample.location_id.first().copied());
                        }
                    }
                }
            }
            exp.unnamed_leaves = unnamed.len();
            exp
        })
        .collect()
}

/// Returns the profile's sample type and unit pairs.
pub fn sample_types(profile: &Profile) -> Vec<(String, String)> {
    profile
        .sample_type
        .iter()
        .map(|vt| {
            (
                string(profile, vt.r#type).to_string(),
                string(profile, vt.unit).to_string(),
            )
        })
        .collect()
}

/// Returns the profile's period type and unit ("" when absent).
pub fn period_type(profile: &Profile) -> (String, String) {
    match &profile.period_type {
        Some(vt) => (
            string(profile, vt.r#type).to_string(),
            string(profile, vt.unit).to_string(),
        ),
        None => (String::new(), String::new()),
    }
}

/// Returns the distinct sets of string labels on samples (pprof labels such as
/// Go's `pprof.Do` labels), each sorted by key.
pub fn sample_label_sets(profile: &Profile) -> BTreeSet<Vec<(String, String)>> {
    profile
        .sample
        .iter()
        .map(|s| {
            let mut set: Vec<(String, String)> = s
                .label
                .iter()
                .filter(|l| l.str != 0)
                .map(|l| {
                    (
                        string(profile, l.key).to_string(),
                        string(profile, l.str).to_string(),
                    )
                })
                .collect();
            set.sort();
            set
        })
        .collect()
}

/// The flame-graph tree a profile's sample type must give: for every root-first
/// path of function names, its (total, self).
pub fn expected_tree(profile: &Profile, index: usize) -> BTreeMap<Vec<String>, (i64, i64)> {
    let symbols = Symbols::new(profile);
    let mut tree: BTreeMap<Vec<String>, (i64, i64)> = BTreeMap::new();
    for sample in &profile.sample {
        let value = sample.value.get(index).copied().unwrap_or(0);
        if value == 0 {
            continue;
        }
        let stack = symbols.stack_root_first(sample);
        for depth in 1..=stack.len() {
            let node = tree.entry(stack[..depth].to_vec()).or_default();
            node.0 += value;
            if depth == stack.len() {
                node.1 += value;
            }
        }
    }
    tree
}

/// A pprof profile decoded leniently: strings as bytes, so that a profile whose
/// strings are not UTF-8 still gives its sample types and values.
#[derive(Clone, PartialEq, Message)]
pub struct LossyProfile {
    /// `Profile.sample_type`.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// `Profile.sample`.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// `Profile.string_table`, as bytes.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_table: Vec<Vec<u8>>,
}

/// A sample type (type, unit) with the sum of its values.
pub type TypeSum = ((String, String), i64);

/// Returns each sample type (type, unit; strings repaired lossily) with the sum
/// of its values, for profiles that [`decode`] refuses.
pub fn lossy_sums(data: &[u8]) -> Result<Vec<TypeSum>, String> {
    let raw = gunzip_if_needed(data)?;
    let p = LossyProfile::decode(raw.as_slice()).map_err(|e| format!("pprof decode: {e}"))?;
    let s = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| p.string_table.get(i))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    Ok(p.sample_type
        .iter()
        .enumerate()
        .map(|(i, vt)| {
            let sum = p
                .sample
                .iter()
                .map(|smp| smp.value.get(i).copied().unwrap_or(0))
                .sum();
            ((s(vt.r#type), s(vt.unit)), sum)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_time_nanos_wins() {
        let bytes = PprofBuilder::go_cpu()
            .time(1, 2)
            .sample(&["main", "work"], &[1, 10])
            .encode();
        let rewritten = with_time_nanos(&bytes, 1_700_000_000_000_000_000);
        assert_eq!(
            decode(&rewritten).unwrap().time_nanos,
            1_700_000_000_000_000_000
        );
        let gz = gzip(&bytes);
        let rewritten = with_time_nanos(&gz, 42);
        assert!(is_gzip(&rewritten));
        assert_eq!(decode(&rewritten).unwrap().time_nanos, 42);
    }

    #[test]
    fn expectations_follow_pprof_stack_order() {
        let p = PprofBuilder::go_cpu()
            .sample(&["main", "a", "b"], &[1, 10])
            .sample(&["main", "a"], &[2, 20])
            .sample(&["main", "c"], &[0, 0])
            .build();
        let exp = expectations(&p);
        assert_eq!(exp.len(), 2);
        assert_eq!(exp[1].sum, 30);
        assert_eq!(
            exp[1].leaves,
            ["a", "b"].iter().map(|s| s.to_string()).collect()
        );
        let tree = expected_tree(&p, 1);
        assert_eq!(tree[&vec!["main".to_string()]], (30, 0));
        assert_eq!(tree[&vec!["main".to_string(), "a".to_string()]], (30, 20));
    }

    #[test]
    fn inlined_lines_expand_innermost_first() {
        let mut p = PprofBuilder::go_cpu().sample(&["main"], &[1, 1]).build();
        // Give the single location a second line: line[0] = inlined callee.
        p.string_table.push("inlined".into());
        p.function.push(Function {
            id: 99,
            name: p.string_table.len() as i64 - 1,
            ..Default::default()
        });
        let caller = p.location[0].line[0];
        p.location[0].line = vec![
            Line {
                function_id: 99,
                line: 5,
                column: 0,
            },
            caller,
        ];
        let symbols = Symbols::new(&p);
        assert_eq!(symbols.leaf_name(&p.sample[0]), Some("inlined"));
        assert_eq!(
            symbols.stack_root_first(&p.sample[0]),
            vec!["main", "inlined"]
        );
    }
}
