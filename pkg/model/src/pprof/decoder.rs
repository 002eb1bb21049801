//! A decoder for the pprof `Profile` message written for its shape, beside
//! prost's generic one.
//!
//! prost decodes each field through generic merge functions, grows every
//! repeated field one push at a time and gives each sample vectors of its
//! own. This decoder reads fields straight from the slice into a
//! [`FlatProfile`]: the samples' frames, values and labels are appended to
//! one vector each, and the other repeated fields are sized before they are
//! filled (by a first pass over the message's keys).
//!
//! It accepts a subset of what prost accepts and decodes it to the same value:
//! anything unusual (a group, a known field with another wire type, a bad
//! varint, invalid UTF-8) makes it give up with `None`, and the caller decodes
//! the payload with prost again, so errors, and rarely used encodings, keep
//! prost's behaviour and messages exactly.

use ember_proto::google::v1::{Function, Label, Line, Mapping, Profile, ValueType};

use super::flat::{FlatProfile, Samples};
use super::tables::{Locations, Strings};

/// One field's payload, by wire type.
enum Field<'a> {
    Varint(u64),
    Fixed64,
    Len(&'a [u8]),
    Fixed32,
}

/// Reads protobuf fields from a slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Returns the next varint, refusing (as prost does) more than ten bytes
    /// and a tenth byte that overflows 64 bits.
    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        let buf = self.buf;
        let first = *buf.first()?;
        if first < 0x80 {
            self.buf = &buf[1..];
            return Some(u64::from(first));
        }
        let mut value = u64::from(first & 0x7f);
        for i in 1..10 {
            let b = *buf.get(i)?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return None;
                }
                self.buf = &buf[i + 1..];
                return Some(value);
            }
        }
        None
    }

    /// Returns the next `len` bytes.
    #[inline(always)]
    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        if len > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Some(head)
    }

    /// Returns the next field as (tag, payload), `None` at the end or on
    /// anything prost would refuse or this decoder leaves to prost (groups).
    #[inline(always)]
    fn field(&mut self) -> Option<(u32, Field<'a>)> {
        let key = self.varint()?;
        let key = u32::try_from(key).ok()?;
        let tag = key >> 3;
        if tag == 0 {
            return None;
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let len = self.varint()?;
                Field::Len(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            _ => return None,
        };
        Some((tag, field))
    }

    /// Calls `f` on every field until the slice ends; `None` when a field
    /// cannot be read or `f` refuses one.
    #[inline(always)]
    fn each(mut self, mut f: impl FnMut(u32, Field<'a>) -> Option<()>) -> Option<()> {
        while !self.buf.is_empty() {
            let (tag, field) = self.field()?;
            f(tag, field)?;
        }
        Some(())
    }
}

/// Decodes `raw` as a `Profile`; `None` when prost must decide (see the module doc).
pub(super) fn decode(raw: &[u8]) -> Option<FlatProfile> {
    let mut counts = [0usize; 7];
    let mut bytes = [0usize; 7];
    Reader::new(raw).each(|tag, field| {
        if let Some(count) = counts.get_mut(tag as usize) {
            *count += 1;
            if let Field::Len(b) = field {
                bytes[tag as usize] += b.len();
            }
        }
        Some(())
    })?;
    let mut p = Profile {
        sample_type: Vec::with_capacity(counts[1]),
        mapping: Vec::with_capacity(counts[3]),
        function: Vec::with_capacity(counts[5]),
        ..Default::default()
    };
    // A frame takes one to three bytes in the profiles seen; the vector
    // grows when a profile's take fewer.
    let mut samples = Samples::with_capacity(counts[2], bytes[2] / 2, counts[2] * counts[1]);
    let mut locations = Locations::with_capacity(counts[4]);
    let mut strings = Strings::with_capacity(counts[6], bytes[6]);
    Reader::new(raw).each(|tag, field| {
        match (tag, field) {
            (1, Field::Len(b)) => p.sample_type.push(value_type(b, ValueType::default())?),
            (2, Field::Len(b)) => sample(b, &mut samples)?,
            (3, Field::Len(b)) => p.mapping.push(mapping(b)?),
            (4, Field::Len(b)) => location(b, &mut locations)?,
            (5, Field::Len(b)) => p.function.push(function(b)?),
            (6, Field::Len(b)) => strings.push(std::str::from_utf8(b).ok()?),
            (7, Field::Varint(v)) => p.drop_frames = v as i64,
            (8, Field::Varint(v)) => p.keep_frames = v as i64,
            (9, Field::Varint(v)) => p.time_nanos = v as i64,
            (10, Field::Varint(v)) => p.duration_nanos = v as i64,
            // A message field seen twice is merged, as prost does.
            (11, Field::Len(b)) => {
                p.period_type = Some(value_type(b, p.period_type.unwrap_or_default())?)
            }
            (12, Field::Varint(v)) => p.period = v as i64,
            (13, field) => repeated(&mut p.comment, field, |v| v as i64)?,
            (14, Field::Varint(v)) => p.default_sample_type = v as i64,
            (1..=14, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    Some(FlatProfile {
        header: p,
        samples,
        strings,
        locations,
    })
}

/// Appends a repeated scalar, packed (one length-delimited run) or not.
#[inline(always)]
fn repeated<T>(out: &mut Vec<T>, field: Field<'_>, f: impl Fn(u64) -> T) -> Option<()> {
    match field {
        Field::Varint(v) => out.push(f(v)),
        Field::Len(b) => {
            // Every varint ends with the one byte below 0x80; there are
            // at most as many as bytes, so a vector with room for that
            // many needs no count.
            if out.capacity() - out.len() < b.len() {
                out.reserve(b.iter().filter(|&&x| x < 0x80).count());
            }
            let mut r = Reader::new(b);
            while !r.buf.is_empty() {
                out.push(f(r.varint()?));
            }
        }
        _ => return None,
    }
    Some(())
}

fn value_type(buf: &[u8], mut vt: ValueType) -> Option<ValueType> {
    Reader::new(buf).each(|tag, field| {
        match (tag, field) {
            (1, Field::Varint(v)) => vt.r#type = v as i64,
            (2, Field::Varint(v)) => vt.unit = v as i64,
            (1..=2, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    Some(vt)
}

/// Appends one sample's frames, values and labels to `out`.
fn sample(buf: &[u8], out: &mut Samples) -> Option<()> {
    Reader::new(buf).each(|tag, field| {
        match (tag, field) {
            (1, field) => repeated(&mut out.location_ids, field, |v| v)?,
            (2, field) => repeated(&mut out.values, field, |v| v as i64)?,
            (3, Field::Len(b)) => out.labels.push(label(b)?),
            (3, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    out.end_sample();
    Some(())
}

fn label(buf: &[u8]) -> Option<Label> {
    let mut l = Label::default();
    Reader::new(buf).each(|tag, field| {
        match (tag, field) {
            (1, Field::Varint(v)) => l.key = v as i64,
            (2, Field::Varint(v)) => l.str = v as i64,
            (3, Field::Varint(v)) => l.num = v as i64,
            (4, Field::Varint(v)) => l.num_unit = v as i64,
            (1..=4, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    Some(l)
}

fn mapping(buf: &[u8]) -> Option<Mapping> {
    let mut m = Mapping::default();
    Reader::new(buf).each(|tag, field| {
        match (tag, field) {
            (1, Field::Varint(v)) => m.id = v,
            (2, Field::Varint(v)) => m.memory_start = v,
            (3, Field::Varint(v)) => m.memory_limit = v,
            (4, Field::Varint(v)) => m.file_offset = v,
            (5, Field::Varint(v)) => m.filename = v as i64,
            (6, Field::Varint(v)) => m.build_id = v as i64,
            (7, Field::Varint(v)) => m.has_functions = v != 0,
            (8, Field::Varint(v)) => m.has_filenames = v != 0,
            (9, Field::Varint(v)) => m.has_line_numbers = v != 0,
            (10, Field::Varint(v)) => m.has_inline_frames = v != 0,
            (1..=10, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    Some(m)
}

/// Appends one location and its lines to `out`.
fn location(buf: &[u8], out: &mut Locations) -> Option<()> {
    let (mut id, mut mapping_id, mut address, mut is_folded) = (0, 0, 0, false);
    Reader::new(buf).each(|tag, field| {
        match (tag, field) {
            (1, Field::Varint(v)) => id = v,
            (2, Field::Varint(v)) => mapping_id = v,
            (3, Field::Varint(v)) => address = v,
            (4, Field::Len(b)) => out.lines.push(line(b)?),
            (5, Field::Varint(v)) => is_folded = v != 0,
            (1..=5, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    out.end_location(id, mapping_id, address, is_folded);
    Some(())
}

fn line(buf: &[u8]) -> Option<Line> {
    let mut l = Line::default();
    Reader::new(buf).each(|tag, field| {
        match (tag, field) {
            (1, Field::Varint(v)) => l.function_id = v,
            (2, Field::Varint(v)) => l.line = v as i64,
            (3, Field::Varint(v)) => l.column = v as i64,
            (1..=3, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    Some(l)
}

fn function(buf: &[u8]) -> Option<Function> {
    let mut f = Function::default();
    Reader::new(buf).each(|tag, field| {
        match (tag, field) {
            (1, Field::Varint(v)) => f.id = v,
            (2, Field::Varint(v)) => f.name = v as i64,
            (3, Field::Varint(v)) => f.system_name = v as i64,
            (4, Field::Varint(v)) => f.filename = v as i64,
            (5, Field::Varint(v)) => f.start_line = v as i64,
            (1..=5, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    Some(f)
}

#[cfg(test)]
mod tests {
    use ember_testkit::pprof::{PprofBuilder, gunzip_if_needed};
    use ember_testkit::testdata;
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    /// Checks the decoder's contract on `bytes`: when it decodes, prost
    /// decodes the same value; when prost refuses, so does it.
    fn agrees_with_prost(bytes: &[u8]) -> std::result::Result<(), String> {
        match (decode(bytes), Profile::decode(bytes)) {
            (Some(fast), Ok(reference)) if fast == FlatProfile::from(reference.clone()) => Ok(()),
            (Some(_), Ok(_)) => Err("decodes to another profile than prost".into()),
            (Some(_), Err(e)) => Err(format!("decodes what prost refuses: {e}")),
            (None, _) => Ok(()),
        }
    }

    fn sample_profile() -> Profile {
        let mut p = PprofBuilder::go_cpu()
            .period_type("cpu", "nanoseconds", 10_000_000)
            .time(1_700_000_000_000_000_000, 10_000_000_000)
            .sample(&["main", "run", "work"], &[3, 30_000_000])
            .sample_with_labels(&["main", "idle"], &[1, 10_000_000], &[("span", "x")])
            .build();
        p.comment = vec![1, 2];
        p.drop_frames = 2;
        p.default_sample_type = 1;
        p.mapping.push(Mapping {
            id: 1,
            memory_start: 0x400000,
            memory_limit: u64::MAX,
            build_id: 1,
            has_functions: true,
            has_inline_frames: true,
            ..Default::default()
        });
        p.location[0].mapping_id = 1;
        p.location[0].address = 0x401000;
        p.location[0].line.push(Line {
            function_id: 2,
            line: -7,
            column: 3,
        });
        p
    }

    #[test]
    fn decodes_every_shared_profile_as_prost_does() {
        let mut fast = 0;
        let mut checked = 0;
        for name in testdata::all_profiles() {
            let Ok(bytes) = gunzip_if_needed(&testdata::read(&name)) else {
                continue;
            };
            checked += 1;
            match (decode(&bytes), Profile::decode(bytes.as_slice())) {
                (Some(p), Ok(reference)) => {
                    assert!(
                        p == FlatProfile::from(reference),
                        "{name}: decodes to another profile"
                    );
                    fast += 1;
                }
                (None, Ok(_)) => panic!("{name}: prost decodes it, the fast decoder gave up"),
                (Some(_), Err(e)) => panic!("{name}: decodes what prost refuses: {e}"),
                (None, Err(_)) => {}
            }
        }
        assert!(
            checked >= 40 && fast >= 40,
            "{fast} of {checked} files decoded"
        );
    }

    #[test]
    fn decodes_every_field_of_a_built_profile() {
        let p = sample_profile();
        assert_eq!(decode(&p.encode_to_vec()), Some(FlatProfile::from(p)));
        assert_eq!(decode(&[]), Some(FlatProfile::default()));
    }

    #[test]
    fn reads_unpacked_repeated_fields_and_merges_a_repeated_message() {
        // sample { location_id: 1 (unpacked), location_id: [2, 300] (packed), value: 5 (unpacked) }
        let mut raw = vec![0x12, 9, 0x08, 1, 0x0a, 3, 2, 0xac, 0x02, 0x10, 5];
        // period_type { type: 1 } then period_type { unit: 2 }: prost merges them.
        raw.extend([0x5a, 2, 0x08, 1, 0x5a, 2, 0x10, 2]);
        // An unknown varint field 20 and an unknown fixed32 field 21 are skipped.
        raw.extend([0xa0, 0x01, 7, 0xad, 0x01, 1, 2, 3, 4]);
        let p = decode(&raw).expect("decoded");
        assert_eq!(p.samples.stack(0), [1, 2, 300]);
        assert_eq!(p.samples.values(0), [5]);
        assert_eq!(p.header.period_type, Some(ValueType { r#type: 1, unit: 2 }));
        assert_eq!(
            FlatProfile::from(Profile::decode(raw.as_slice()).unwrap()),
            p
        );
    }

    #[test]
    fn leaves_groups_wrong_wire_types_and_bad_bytes_to_prost() {
        // An unknown field 20 sent as a group, which prost skips.
        let group = [0xa3, 0x01, 0xa4, 0x01];
        assert_eq!(decode(&group), None);
        assert!(Profile::decode(group.as_slice()).is_ok());
        // time_nanos (9) sent length-delimited; an invalid UTF-8 string; a
        // varint past 64 bits; tag 0; a length past the end.
        for bad in [
            &[0x4a, 0][..],
            &[0x32, 1, 0xff],
            &[
                0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
            &[0x00, 1],
            &[0x12, 5, 0x08],
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
            assert!(Profile::decode(bad).is_err(), "{bad:?}");
        }
        // The largest 10-byte varint is read like prost.
        let max = [
            0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(decode(&max).unwrap().header.time_nanos, -1);
        agrees_with_prost(&max).unwrap();
    }

    proptest! {
        #[test]
        fn agrees_with_prost_on_damaged_profiles(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut raw = sample_profile().encode_to_vec();
            for (at, byte) in edits {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
            if truncate {
                raw.truncate(cut.index(raw.len()));
            }
            prop_assert_eq!(agrees_with_prost(&raw), Ok(()));
        }

        #[test]
        fn agrees_with_prost_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(agrees_with_prost(&raw), Ok(()));
        }
    }
}
