//! Small pprof profiles built by hand, and the gzip layer pprof travels in.
//!
//! [`PprofBuilder`] is the one way tests write a `google.v1.Profile` from
//! stacks of function names: each function gets one function entry and one
//! location with one line. pprof lists a sample's locations leaf first; the
//! builder takes stacks root first, as flame graphs and folded stacks read.

use std::collections::HashMap;
use std::io::{Read, Write};

use ember_proto::google::v1::{Function, Label, Line, Location, Profile, Sample, ValueType};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use prost::Message;

/// Returns whether `data` starts with the gzip magic bytes `1f 8b`.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
}

/// Returns `data` gzipped (fast compression: tests care about the format,
/// not the ratio).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Returns `data` decompressed when it is gzipped, else unchanged.
pub fn gunzip_if_needed(data: &[u8]) -> Result<Vec<u8>, String> {
    if !is_gzip(data) {
        return Ok(data.to_vec());
    }
    let mut out = Vec::new();
    GzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| format!("gunzip: {e}"))?;
    Ok(out)
}

/// Decodes a pprof profile, gzipped or not, as the bytes say and nothing
/// more (no validation, no limits). Fails on anything that is not a valid
/// `Profile` message, including strings that are not UTF-8.
pub fn decode(data: &[u8]) -> Result<Profile, String> {
    let raw = gunzip_if_needed(data)?;
    Profile::decode(raw.as_slice()).map_err(|e| format!("pprof decode: {e}"))
}

/// Builds small pprof profiles with one location (one line) per function.
///
/// Function `n` (counting from 1 in order of first use, leaf frames first)
/// has ID `n` plus the [`id_offset`](Self::id_offset). Its frame is told
/// apart by its name alone: line 1 of the file [`filename`](Self::filename)
/// (`synthetic.go` unless set), address 0, so that the same function is the
/// same frame in every profile built, whatever its ID or the order stacks
/// are added in. Samples are kept as added: identical stacks are not merged.
#[derive(Debug, Clone)]
pub struct PprofBuilder {
    profile: Profile,
    strings: HashMap<String, i64>,
    /// Function name → its location (and function) ID.
    functions: HashMap<String, u64>,
    filename: String,
    id_offset: u64,
}

impl PprofBuilder {
    /// Returns a builder for a profile with the given sample types (type, unit).
    pub fn new(sample_types: &[(&str, &str)]) -> Self {
        let mut b = PprofBuilder {
            profile: Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            filename: "synthetic.go".into(),
            id_offset: 0,
        };
        // pprof requires string 0 to be "".
        b.intern("");
        let sample_type = sample_types
            .iter()
            .map(|(t, unit)| b.value_type(t, unit))
            .collect();
        b.profile.sample_type = sample_type;
        b
    }

    /// Returns a CPU profile builder like Go's: `samples/count` and `cpu/nanoseconds`,
    /// period type `cpu/nanoseconds`, period 10 ms.
    pub fn go_cpu() -> Self {
        PprofBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]).period_type(
            "cpu",
            "nanoseconds",
            10_000_000,
        )
    }

    /// Sets the period type and period.
    pub fn period_type(mut self, t: &str, unit: &str, period: i64) -> Self {
        self.profile.period_type = Some(self.value_type(t, unit));
        self.profile.period = period;
        self
    }

    /// Sets `time_nanos` and `duration_nanos`.
    pub fn time(mut self, time_nanos: i64, duration_nanos: i64) -> Self {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
        self
    }

    /// Sets the file name of the functions added from now on; `""` leaves
    /// them without one (string 0), so the string table holds only names.
    pub fn filename(mut self, filename: &str) -> Self {
        self.filename = filename.into();
        self
    }

    /// Numbers the functions and locations added from now on from
    /// `offset + 1` on: two profiles of the same stacks with other offsets
    /// differ in their IDs alone, as two profiles of one process may.
    pub fn id_offset(mut self, offset: u64) -> Self {
        self.id_offset = offset;
        self
    }

    /// Adds a sample whose stack is `root_first` (function names, root first) with
    /// one value per sample type.
    pub fn sample(self, root_first: &[&str], values: &[i64]) -> Self {
        self.sample_with_labels(root_first, values, &[])
    }

    /// Adds a sample with pprof string labels.
    pub fn sample_with_labels(
        mut self,
        root_first: &[&str],
        values: &[i64],
        labels: &[(&str, &str)],
    ) -> Self {
        assert_eq!(
            values.len(),
            self.profile.sample_type.len(),
            "one value per sample type"
        );
        let location_id = root_first
            .iter()
            .rev()
            .map(|name| self.location(name))
            .collect();
        let label = labels
            .iter()
            .map(|(k, v)| Label {
                key: self.intern(k),
                str: self.intern(v),
                ..Default::default()
            })
            .collect();
        self.profile.sample.push(Sample {
            location_id,
            value: values.to_vec(),
            label,
        });
        self
    }

    /// Returns the profile.
    pub fn build(self) -> Profile {
        self.profile
    }

    /// Returns the profile encoded (not gzipped).
    pub fn encode(self) -> Vec<u8> {
        self.profile.encode_to_vec()
    }

    fn intern(&mut self, s: &str) -> i64 {
        let table = &mut self.profile.string_table;
        *self.strings.entry(s.to_owned()).or_insert_with(|| {
            table.push(s.to_owned());
            table.len() as i64 - 1
        })
    }

    fn value_type(&mut self, t: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.intern(t),
            unit: self.intern(unit),
        }
    }

    /// Returns the location ID of `function`, adding the function first.
    fn location(&mut self, function: &str) -> u64 {
        if let Some(&id) = self.functions.get(function) {
            return id;
        }
        let id = self.id_offset + self.profile.function.len() as u64 + 1;
        let name = self.intern(function);
        let filename = self.filename.clone();
        let filename = self.intern(&filename);
        self.profile.function.push(Function {
            id,
            name,
            system_name: name,
            filename,
            start_line: 1,
        });
        self.profile.location.push(Location {
            id,
            line: vec![Line {
                function_id: id,
                line: 1,
                column: 0,
            }],
            ..Default::default()
        });
        self.functions.insert(function.to_string(), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_leaf_first_samples_with_one_location_per_function() {
        let p = PprofBuilder::go_cpu()
            .time(7, 8)
            .sample(&["main", "work"], &[1, 10])
            .sample_with_labels(&["main"], &[2, 20], &[("span", "x")])
            .build();
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(0), "");
        let types: Vec<_> = p
            .sample_type
            .iter()
            .map(|v| (s(v.r#type), s(v.unit)))
            .collect();
        assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
        let period = p.period_type.unwrap();
        assert_eq!(
            (s(period.r#type), s(period.unit), p.period),
            ("cpu", "nanoseconds", 10_000_000)
        );
        assert_eq!((p.time_nanos, p.duration_nanos), (7, 8));
        let names: Vec<&str> = p.function.iter().map(|f| s(f.name)).collect();
        assert_eq!(names, ["work", "main"], "leaf frames are added first");
        assert_eq!(p.sample[0].location_id, [1, 2]);
        assert_eq!(p.sample[1].location_id, [2]);
        assert_eq!(s(p.sample[1].label[0].key), "span");
        assert_eq!(s(p.sample[1].label[0].str), "x");
        assert!(p.function.iter().all(|f| s(f.filename) == "synthetic.go"));
        for (i, (f, l)) in p.function.iter().zip(&p.location).enumerate() {
            assert_eq!(
                (f.id, l.id, l.line[0].function_id),
                (i as u64 + 1, f.id, f.id)
            );
        }
        assert_eq!(decode(&gzip(&p.encode_to_vec())).unwrap(), p);
    }

    /// Returns each function's frame: (name, file, line, address).
    fn frames(p: &Profile) -> Vec<(String, String, i64, u64)> {
        let s = |i: i64| p.string_table[i as usize].clone();
        let mut frames: Vec<_> = p
            .location
            .iter()
            .map(|l| {
                let f = p.function.iter().find(|f| f.id == l.line[0].function_id);
                let f = f.unwrap();
                (s(f.name), s(f.filename), l.line[0].line, l.address)
            })
            .collect();
        frames.sort();
        frames
    }

    #[test]
    fn a_function_is_one_frame_whatever_its_id_or_order() {
        let cpu = || PprofBuilder::new(&[("cpu", "nanoseconds")]);
        let p = cpu()
            .sample(&["main", "a"], &[1])
            .sample(&["main", "b"], &[2])
            .build();
        let offset = cpu()
            .id_offset(100)
            .sample(&["main", "b"], &[2])
            .sample(&["main", "a"], &[1])
            .build();
        assert_eq!(offset.function[0].id, 101);
        assert_eq!(offset.sample[1].location_id, [103, 102]);
        assert_eq!(frames(&offset), frames(&p));
        assert_eq!(frames(&p)[0], ("a".into(), "synthetic.go".into(), 1, 0));
    }

    #[test]
    fn an_empty_filename_adds_no_string() {
        let p = PprofBuilder::new(&[("cpu", "nanoseconds")])
            .filename("")
            .sample(&["a", "b"], &[1])
            .build();
        assert_eq!(p.string_table, ["", "cpu", "nanoseconds", "b", "a"]);
        assert!(p.function.iter().all(|f| f.filename == 0));
    }

    #[test]
    fn gunzip_leaves_plain_bytes_alone_and_refuses_broken_gzip() {
        assert_eq!(gunzip_if_needed(b"plain").unwrap(), b"plain");
        assert_eq!(gunzip_if_needed(&gzip(b"zipped")).unwrap(), b"zipped");
        assert!(gunzip_if_needed(&[0x1f, 0x8b, 1, 2]).is_err());
        assert!(decode(b"\xff\xff garbage").is_err());
    }
}
