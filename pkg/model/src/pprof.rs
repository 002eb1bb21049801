//! Bounded decoding and validation of pprof payloads.
//!
//! A payload is refused before it can cost more than its limits: a lone gzip
//! member is inflated in one call into a buffer that never grows past
//! `max_decompressed` bytes ([`inflate`]), anything else is read through a
//! counting window, so a zip bomb stops at the limit instead of exhausting
//! memory.
//!
//! The protobuf is read by [`decoder`], written for the `Profile` message,
//! with prost as the reference it falls back to for anything unusual, into a
//! [`FlatProfile`]: its samples in a few flat vectors rather than vectors of
//! their own.

use std::io::Read;

mod decoder;
mod flat;
mod inflate;
mod tables;

use ember_proto::google::v1::Profile;
pub use flat::{FlatProfile, SampleRef, Samples};
use prost::Message;
pub use tables::{LocationRef, Locations, Strings};

use crate::{Error, Result};

/// Bounds applied while decoding one profile.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest accepted payload after decompression.
    pub max_decompressed_bytes: usize,
    /// Largest accepted number of samples (0 = unlimited).
    pub max_samples: usize,
    /// Largest accepted number of frames in one sample (0 = unlimited).
    pub max_stack_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 64 << 20,
            max_samples: 16_000,
            max_stack_depth: 1_000,
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Returns `raw` decompressed when it is gzipped, refusing outputs larger than `max`.
pub fn gunzip_bounded(raw: &[u8], max: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
    if !raw.starts_with(&GZIP_MAGIC) {
        if raw.len() > max {
            return Err(Error::TooLarge(format!(
                "profile is {} bytes, more than the limit of {max} bytes",
                raw.len()
            )));
        }
        return Ok(std::borrow::Cow::Borrowed(raw));
    }
    let hint = gzip_size_hint(raw);
    match inflate::gunzip(raw, hint, max) {
        inflate::Inflated::Whole(out) => return Ok(std::borrow::Cow::Owned(out)),
        inflate::Inflated::TooLarge => return Err(too_large_inflated(max)),
        inflate::Inflated::Other => {}
    }
    let mut out = Vec::with_capacity(hint.min(max.saturating_add(1)));
    // `bufread` reads the slice in place (`read` would copy it through a buffer).
    let mut decoder =
        flate2::bufread::MultiGzDecoder::new(raw).take((max as u64).saturating_add(1));
    decoder
        .read_to_end(&mut out)
        .map_err(|e| Error::Malformed(format!("invalid gzip data in profile: {e}")))?;
    if out.len() > max {
        return Err(too_large_inflated(max));
    }
    Ok(std::borrow::Cow::Owned(out))
}

fn too_large_inflated(max: usize) -> Error {
    Error::TooLarge(format!(
        "profile decompresses to more than the limit of {max} bytes"
    ))
}

/// Returns the capacity to reserve for inflating `raw`: the size its gzip
/// trailer states (ISIZE, the last member's size modulo 4 GiB, so only a
/// hint), plus one byte so that reading to the end needs no reallocation.
fn gzip_size_hint(raw: &[u8]) -> usize {
    match raw.len().checked_sub(4).map(|at| &raw[at..]) {
        Some(&[a, b, c, d]) if raw.len() >= 18 => {
            let stated = u32::from_le_bytes([a, b, c, d]) as usize;
            // A hint beyond what deflate can reach (1032:1) is not believed.
            if stated <= raw.len().saturating_mul(1032) {
                stated.saturating_add(1)
            } else {
                raw.len() * 4
            }
        }
        _ => raw.len() * 4,
    }
}

/// Decodes a pprof payload (gzipped or not) and checks that it is internally consistent.
pub fn decode(raw: &[u8], limits: &DecodeLimits) -> Result<FlatProfile> {
    let bytes = gunzip_bounded(raw, limits.max_decompressed_bytes)?;
    let mut profile = decode_protobuf(&bytes)?;
    validate(&mut profile, limits)?;
    Ok(profile)
}

/// Decodes an uncompressed pprof protobuf, without validating it.
pub fn decode_protobuf(bytes: &[u8]) -> Result<FlatProfile> {
    if let Some(profile) = decoder::decode(bytes) {
        return Ok(profile);
    }
    Profile::decode(bytes)
        .map(FlatProfile::from)
        .map_err(|e| Error::Malformed(format!("invalid pprof protobuf: {e}")))
}

/// Gives every element its 1-based position as ID when the IDs are not
/// unique and non-zero: some profilers (.NET) write 0 for every function and
/// refer to functions by position, as Pyroscope accepts.
fn number_by_position<T>(items: &mut [T], id: impl Fn(&mut T) -> &mut u64) {
    // Most profilers number 1, 2, 3...: unique without a set.
    if items
        .iter_mut()
        .enumerate()
        .all(|(i, item)| *id(item) == i as u64 + 1)
    {
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    if items.iter_mut().all(|item| {
        let v = *id(item);
        v != 0 && seen.insert(v)
    }) {
        return;
    }
    for (i, item) in items.iter_mut().enumerate() {
        *id(item) = i as u64 + 1;
    }
}

/// Checks references and limits; repairs what is harmless to repair (an empty
/// string table gets its mandatory leading empty string; zero or duplicate IDs
/// become positions).
pub fn validate(flat: &mut FlatProfile, limits: &DecodeLimits) -> Result<()> {
    let FlatProfile {
        header: profile,
        samples,
        strings: string_table,
        locations,
    } = flat;
    number_by_position(&mut profile.function, |f| &mut f.id);
    number_by_position(&mut locations.ids, |id| id);
    number_by_position(&mut profile.mapping, |m| &mut m.id);
    if string_table.is_empty() {
        string_table.push("");
    }
    if string_table.get(0) != Some("") {
        return Err(Error::Unprocessable(
            "invalid pprof: string_table[0] must be the empty string".into(),
        ));
    }
    let strings = string_table.len() as i64;
    let check_str = |idx: i64, what: &str| -> Result<()> {
        if idx < 0 || idx >= strings {
            return Err(Error::Unprocessable(format!(
                "invalid pprof: {what} refers to string {idx}, but the string table has {strings} entries"
            )));
        }
        Ok(())
    };
    if profile.sample_type.is_empty() && !samples.is_empty() {
        return Err(Error::Unprocessable(
            "invalid pprof: the profile has samples but no sample_type".into(),
        ));
    }
    for vt in profile.sample_type.iter().chain(profile.period_type.iter()) {
        check_str(vt.r#type, "a value type")?;
        check_str(vt.unit, "a value unit")?;
    }
    for f in &profile.function {
        check_str(f.name, "function name")?;
        check_str(f.system_name, "function system_name")?;
        check_str(f.filename, "function filename")?;
    }
    for m in &profile.mapping {
        check_str(m.filename, "mapping filename")?;
        check_str(m.build_id, "mapping build_id")?;
    }
    if limits.max_samples > 0 && samples.len() > limits.max_samples {
        return Err(Error::Unprocessable(format!(
            "profile has {} samples, more than the limit of {}",
            samples.len(),
            limits.max_samples
        )));
    }

    let function_ids: IdSet = profile.function.iter().map(|f| f.id).collect();
    let mapping_ids: IdSet = profile.mapping.iter().map(|m| m.id).collect();
    for loc in locations.iter() {
        if loc.mapping_id != 0 && !mapping_ids.contains(loc.mapping_id) {
            return Err(Error::Unprocessable(format!(
                "invalid pprof: location {} refers to missing mapping {}",
                loc.id, loc.mapping_id
            )));
        }
        for line in loc.lines {
            if line.function_id != 0 && !function_ids.contains(line.function_id) {
                return Err(Error::Unprocessable(format!(
                    "invalid pprof: location {} refers to missing function {}",
                    loc.id, line.function_id
                )));
            }
        }
    }
    // Profilers number locations 1..=n: then one pass over all the frames,
    // without a branch a frame, shows that every one resolves, and only a
    // damaged profile is searched frame by frame for the one that does not.
    let n = locations.len() as u64;
    let all_resolve = locations.ids().iter().zip(1..).all(|(&l, id)| l == id)
        && !samples
            .location_ids
            .iter()
            .fold(false, |bad, &id| bad | (id.wrapping_sub(1) >= n));
    let location_ids: Option<IdSet> =
        (!all_resolve).then(|| locations.ids().iter().copied().collect());
    let types = profile.sample_type.len();
    for (i, sample) in samples.iter().enumerate() {
        if sample.values.len() != types {
            return Err(Error::Unprocessable(format!(
                "invalid pprof: sample {i} has {} values but the profile declares {types} sample types",
                sample.values.len()
            )));
        }
        if limits.max_stack_depth > 0 && sample.stack.len() > limits.max_stack_depth {
            return Err(Error::Unprocessable(format!(
                "sample {i} has a stack of {} frames, more than the limit of {}",
                sample.stack.len(),
                limits.max_stack_depth
            )));
        }
        if let Some(ids) = &location_ids
            && let Some(missing) = sample.stack.iter().find(|id| !ids.contains(**id))
        {
            return Err(Error::Unprocessable(format!(
                "invalid pprof: sample {i} refers to missing location {missing}"
            )));
        }
        for label in sample.labels {
            check_str(label.key, "a sample label key")?;
            check_str(label.str, "a sample label value")?;
        }
    }
    Ok(())
}

/// A set of pprof IDs: dense IDs (the common case, 1..=n) use a bitmap, others a hash set.
enum IdSet {
    Dense(Vec<bool>),
    Sparse(std::collections::HashSet<u64>),
}

impl IdSet {
    fn contains(&self, id: u64) -> bool {
        match self {
            IdSet::Dense(bits) => bits.get(id as usize).copied().unwrap_or(false),
            IdSet::Sparse(set) => set.contains(&id),
        }
    }
}

impl FromIterator<u64> for IdSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let ids: Vec<u64> = iter.into_iter().collect();
        let max = ids.iter().copied().max().unwrap_or(0);
        if max <= (ids.len() as u64) * 2 + 1024 {
            let mut bits = vec![false; max as usize + 1];
            for id in ids {
                bits[id as usize] = true;
            }
            IdSet::Dense(bits)
        } else {
            IdSet::Sparse(ids.into_iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use ember_testkit::pprof::{PprofBuilder, gzip};

    use super::*;

    /// One sample of 5 on the stack `main`: function 1, location 1.
    fn tiny() -> Profile {
        PprofBuilder::new(&[("cpu", "nanoseconds")])
            .sample(&["main"], &[5])
            .build()
    }

    #[test]
    fn decodes_plain_and_gzipped() {
        let raw = tiny().encode_to_vec();
        let limits = DecodeLimits::default();
        assert_eq!(decode(&raw, &limits).unwrap(), tiny().into());
        assert_eq!(decode(&gzip(&raw), &limits).unwrap(), tiny().into());
    }

    /// The decode before the dedicated decoder and `bufread`: kept as the
    /// reference the shared profiles must decode to, errors included.
    fn reference_decode(raw: &[u8], limits: &DecodeLimits) -> Result<FlatProfile> {
        let bytes = if raw.starts_with(&GZIP_MAGIC) {
            let max = limits.max_decompressed_bytes;
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(raw)
                .take((max as u64).saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| Error::Malformed(format!("invalid gzip data in profile: {e}")))?;
            if out.len() > max {
                return Err(Error::TooLarge(format!(
                    "profile decompresses to more than the limit of {max} bytes"
                )));
            }
            out
        } else if raw.len() > limits.max_decompressed_bytes {
            return Err(Error::TooLarge(format!(
                "profile is {} bytes, more than the limit of {} bytes",
                raw.len(),
                limits.max_decompressed_bytes
            )));
        } else {
            raw.to_vec()
        };
        let profile = Profile::decode(bytes.as_slice())
            .map_err(|e| Error::Malformed(format!("invalid pprof protobuf: {e}")))?;
        let mut profile = FlatProfile::from(profile);
        validate(&mut profile, limits)?;
        Ok(profile)
    }

    #[test]
    fn decodes_every_shared_profile_as_before() {
        let files = ember_testkit::testdata::all_profiles();
        assert!(files.len() >= 40, "{} shared profiles", files.len());
        let limits = [
            DecodeLimits::default(),
            DecodeLimits {
                max_decompressed_bytes: 100_000,
                max_samples: 100,
                max_stack_depth: 10,
            },
        ];
        for name in &files {
            let raw = ember_testkit::testdata::read(name);
            for limits in &limits {
                let (new, old) = (decode(&raw, limits), reference_decode(&raw, limits));
                match (&new, &old) {
                    (Ok(new), Ok(old)) => assert!(new == old, "{name}: another profile"),
                    (Err(new), Err(old)) => assert_eq!(new.to_string(), old.to_string(), "{name}"),
                    _ => panic!(
                        "{name}: {:?} before, {:?} now",
                        old.as_ref().err(),
                        new.err()
                    ),
                }
            }
        }
    }

    #[test]
    fn inflates_concatenated_members_and_ignores_a_wrong_size_trailer() {
        let raw = tiny().encode_to_vec();
        let (head, tail) = raw.split_at(raw.len() / 2);
        let mut two = gzip(head);
        two.extend(gzip(tail));
        assert_eq!(
            decode(&two, &DecodeLimits::default()).unwrap(),
            tiny().into()
        );

        let mut lying = gzip(&raw);
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode(&lying, &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err}");
    }

    #[test]
    fn refuses_gzip_bomb_without_inflating_it() {
        let bomb = gzip(&vec![0u8; 10 << 20]);
        let limits = DecodeLimits {
            max_decompressed_bytes: 1 << 20,
            ..Default::default()
        };
        let err = decode(&bomb, &limits).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{err}");
        // A trailer that understates the size only makes the buffer grow, to the limit.
        let mut liar = bomb.clone();
        let at = liar.len() - 4;
        liar[at..].copy_from_slice(&10u32.to_le_bytes());
        let err = decode(&liar, &limits).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{err}");
    }

    #[test]
    fn refuses_garbage_and_dangling_references() {
        let limits = DecodeLimits::default();
        let err = decode(b"\xff\xff\xff garbage", &limits).unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err}");

        let mut p = tiny();
        p.sample[0].location_id = vec![7];
        let err = decode(&p.encode_to_vec(), &limits).unwrap_err();
        assert!(err.to_string().contains("missing location 7"), "{err}");

        let mut p = tiny();
        p.function[0].name = 99;
        let err = decode(&p.encode_to_vec(), &limits).unwrap_err();
        assert!(err.to_string().contains("string 99"), "{err}");
    }

    #[test]
    fn checks_frames_of_locations_numbered_otherwise_than_one_to_n() {
        let p = PprofBuilder::new(&[("cpu", "nanoseconds")])
            .id_offset(100)
            .sample(&["main", "work"], &[5])
            .build();
        assert!(p.location.iter().all(|l| l.id > 100));
        let limits = DecodeLimits::default();
        assert_eq!(
            decode(&p.encode_to_vec(), &limits).unwrap(),
            p.clone().into()
        );
        let mut damaged = p;
        damaged.sample[0].location_id[1] = 1;
        let err = decode(&damaged.encode_to_vec(), &limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("sample 0 refers to missing location 1"),
            "{err}"
        );
    }

    #[test]
    fn numbers_zero_ids_by_position() {
        let mut p = tiny();
        p.function[0].id = 0;
        let decoded = decode(&p.encode_to_vec(), &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.header.function[0].id, 1);
    }

    #[test]
    fn enforces_sample_and_depth_limits() {
        let mut p = tiny();
        p.sample[0].location_id = vec![1; 5];
        let limits = DecodeLimits {
            max_stack_depth: 4,
            ..Default::default()
        };
        let err = decode(&p.encode_to_vec(), &limits).unwrap_err();
        assert!(err.to_string().contains("5 frames"), "{err}");
    }
}
