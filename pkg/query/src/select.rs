//! Selecting samples within the selected profiles: by call site (Grafana's
//! function details, profilecli `--stacktrace-selector`), by span (traces to
//! profiles) and by profile ID (exemplars, profilecli `--profile-id`); and
//! trimming a merged pprof for Go's profile-guided optimization.

use std::collections::HashMap;
use std::sync::Arc;

use ember_model::ProfileId;
use ember_proto::google::v1::{Line, Location, Profile, Sample};
use ember_symdb::Symbols;
use rustc_hash::FxHashSet;

/// Which samples of the selected profiles count.
#[derive(Debug, Clone, Default)]
pub struct SampleFilter {
    /// Frame names from the root: only stacks that start with them count
    /// (Pyroscope's `StackTraceSelector.call_site`). Empty: every stack.
    pub call_site: Vec<String>,
    /// Only samples taken inside one of these spans count. `None`: every sample.
    pub spans: Option<Arc<FxHashSet<u64>>>,
}

impl SampleFilter {
    /// Returns whether the filter keeps every sample.
    pub fn is_all(&self) -> bool {
        self.call_site.is_empty() && self.spans.is_none()
    }
}

/// Go PGO trimming of a pprof (Pyroscope's `StackTraceSelector.go_pgo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoPgo {
    /// Leaf-most locations kept per stack; 0 keeps them all.
    pub keep_locations: usize,
    /// Drops the line numbers of each stack's leaf, so samples of one callee
    /// at different lines aggregate (its callers keep theirs).
    pub aggregate_callees: bool,
}

const FAILED: u32 = u32::MAX;

/// Returns, per node of the partition's stack tree, whether its stack starts
/// with `call_site` (frame names from the root, inlined functions as frames
/// of their own, as a flame graph draws them). One forward pass: a child's
/// state follows from its parent's.
pub fn call_site_mask(symbols: &Symbols, call_site: &[String]) -> Vec<bool> {
    let n = call_site.len() as u32;
    let tree = &symbols.stacks;
    let mut state = vec![0u32; tree.len()];
    for node in 1..tree.len() {
        let mut s = state[tree.parents[node] as usize];
        if s != FAILED && s < n {
            let location = &symbols.locations[tree.locations[node] as usize];
            for line in location.lines.iter().rev() {
                if s == n {
                    break;
                }
                if symbols.function_name(line.function) == call_site[s as usize] {
                    s += 1;
                } else {
                    s = FAILED;
                    break;
                }
            }
        }
        state[node] = s;
    }
    state.into_iter().map(|s| s == n).collect()
}

/// Formats a profile ID as Pyroscope shows them: a UUID.
pub fn format_profile_id(id: ProfileId) -> String {
    let h = format!("{id:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses a profile ID: a UUID (with or without hyphens) or a ULID.
pub fn parse_profile_id(s: &str) -> Result<ProfileId, String> {
    let s = s.trim();
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32
        && let Ok(id) = u128::from_str_radix(&hex, 16)
    {
        return Ok(id);
    }
    if let Ok(ulid) = s.parse::<ulid::Ulid>() {
        return Ok(ulid.0);
    }
    Err(format!("profile ID {s:?} is neither a UUID nor a ULID"))
}

/// Parses profile IDs; `None` when there are none (no selection).
pub fn parse_profile_ids(ids: &[String]) -> Result<Option<Arc<FxHashSet<ProfileId>>>, String> {
    if ids.is_empty() {
        return Ok(None);
    }
    let ids = ids
        .iter()
        .map(|s| parse_profile_id(s))
        .collect::<Result<_, _>>()?;
    Ok(Some(Arc::new(ids)))
}

/// Parses span IDs (16 hex digits each).
pub fn parse_span_ids(ids: &[String]) -> Result<FxHashSet<u64>, String> {
    ids.iter()
        .map(|s| {
            ember_block::parse_span_id(s.trim())
                .ok_or_else(|| format!("span ID {s:?} is not a non-zero ID of up to 16 hex digits"))
        })
        .collect()
}

/// Trims every stack of `profile` to its `keep_locations` leaf-most
/// locations and, with `aggregate_callees`, drops the leaf's line numbers;
/// samples that become equal are summed.
pub fn apply_go_pgo(profile: &mut Profile, pgo: GoPgo) {
    // A leaf without line numbers, by (mapping, functions): one per callee.
    let mut leaves: HashMap<(u64, Vec<u64>), u64> = HashMap::new();
    let by_id: HashMap<u64, usize> = profile
        .location
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id, i))
        .collect();
    let mut next_id = profile.location.iter().map(|l| l.id).max().unwrap_or(0) + 1;
    let mut samples: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut out: Vec<Sample> = Vec::with_capacity(profile.sample.len());
    for mut sample in std::mem::take(&mut profile.sample) {
        if pgo.keep_locations > 0 {
            sample.location_id.truncate(pgo.keep_locations);
        }
        if pgo.aggregate_callees
            && let Some(leaf) = sample.location_id.first_mut()
            && let Some(&i) = by_id.get(leaf)
        {
            let original = profile.location[i].clone();
            let key = (
                original.mapping_id,
                original.line.iter().map(|l| l.function_id).collect(),
            );
            *leaf = *leaves.entry(key).or_insert_with(|| {
                let copy = Location {
                    id: next_id,
                    address: 0,
                    line: original
                        .line
                        .iter()
                        .map(|l| Line {
                            function_id: l.function_id,
                            line: 0,
                            column: 0,
                        })
                        .collect(),
                    ..original
                };
                next_id += 1;
                profile.location.push(copy);
                next_id - 1
            });
        }
        match samples.get(&sample.location_id) {
            Some(&i) => {
                for (a, b) in out[i].value.iter_mut().zip(&sample.value) {
                    *a += b;
                }
            }
            None => {
                samples.insert(sample.location_id.clone(), out.len());
                out.push(sample);
            }
        }
    }
    profile.sample = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_symdb::SymbolsBuilder;
    use ember_testkit::pprof::PprofBuilder;

    fn profile(stacks: &[(&[&str], i64)]) -> Profile {
        stacks
            .iter()
            .fold(PprofBuilder::new(&[("cpu", "nanoseconds")]), |b, (s, v)| {
                b.sample(s, &[*v])
            })
            .build()
    }

    #[test]
    fn call_site_mask_keeps_stacks_under_the_prefix() {
        let mut b = SymbolsBuilder::new();
        let stacks: &[(&[&str], i64)] = &[
            (&["main", "a", "b"], 1),
            (&["main", "a"], 2),
            (&["main", "c", "a", "b"], 4),
            (&["main"], 8),
        ];
        let ids = b.add_profile(&profile(stacks).into());
        let mask = call_site_mask(b.symbols(), &["main".into(), "a".into()]);
        let kept: Vec<bool> = ids.iter().map(|&id| mask[id as usize]).collect();
        assert_eq!(kept, [true, true, false, false]);
        let all = call_site_mask(b.symbols(), &["main".into()]);
        assert!(ids.iter().all(|&id| all[id as usize]));
        let none = call_site_mask(b.symbols(), &["a".into()]);
        assert!(ids.iter().all(|&id| !none[id as usize]));
    }

    #[test]
    fn profile_ids_round_trip_as_uuids_and_parse_as_ulids() {
        let id: ProfileId = 0x0123_4567_89ab_cdef_0011_2233_4455_6677;
        let s = format_profile_id(id);
        assert_eq!(s, "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(parse_profile_id(&s).unwrap(), id);
        assert_eq!(parse_profile_id(&s.replace('-', "")).unwrap(), id);
        let ulid = ulid::Ulid(id);
        assert_eq!(parse_profile_id(&ulid.to_string()).unwrap(), id);
        let err = parse_profile_id("nope").unwrap_err().to_string();
        assert!(err.contains("neither a UUID nor a ULID"), "{err}");
    }

    #[test]
    fn span_ids_must_be_hex() {
        let ids = parse_span_ids(&["9a517183f26a089d".into()]).unwrap();
        assert!(ids.contains(&0x9a51_7183_f26a_089d));
        assert!(parse_span_ids(&["xyz".into()]).is_err());
        assert!(parse_span_ids(&["0000000000000000".into()]).is_err());
    }

    fn pprof_with(stacks: &[(Vec<u64>, i64)], locations: u64) -> Profile {
        Profile {
            location: (1..=locations)
                .map(|id| Location {
                    id,
                    line: vec![Line {
                        function_id: id,
                        line: 10 + id as i64,
                        column: 0,
                    }],
                    ..Default::default()
                })
                .collect(),
            sample: stacks
                .iter()
                .map(|(s, v)| Sample {
                    location_id: s.clone(),
                    value: vec![*v],
                    label: vec![],
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn go_pgo_keeps_leaf_locations_and_merges() {
        // Leaf first: [leaf, caller, root].
        let mut p = pprof_with(
            &[(vec![1, 2, 3], 5), (vec![1, 2, 4], 7), (vec![2, 3], 1)],
            4,
        );
        apply_go_pgo(
            &mut p,
            GoPgo {
                keep_locations: 2,
                aggregate_callees: false,
            },
        );
        let got: Vec<(Vec<u64>, i64)> = p
            .sample
            .iter()
            .map(|s| (s.location_id.clone(), s.value[0]))
            .collect();
        assert_eq!(got, [(vec![1, 2], 12), (vec![2, 3], 1)]);
    }

    #[test]
    fn go_pgo_aggregate_callees_drops_leaf_lines_only() {
        let mut p = pprof_with(&[(vec![1, 2], 5), (vec![3, 2], 2)], 3);
        // Locations 1 and 3: one callee at two lines.
        p.location[2].line[0].function_id = 1;
        apply_go_pgo(
            &mut p,
            GoPgo {
                keep_locations: 0,
                aggregate_callees: true,
            },
        );
        assert_eq!(p.sample.len(), 1, "one callee, one sample");
        assert_eq!(p.sample[0].value[0], 7);
        let leaf = p.sample[0].location_id[0];
        let caller = p.sample[0].location_id[1];
        let line = |id: u64| p.location.iter().find(|l| l.id == id).unwrap().line[0].line;
        assert_eq!(line(leaf), 0);
        assert_eq!(line(caller), 12);
    }
}
