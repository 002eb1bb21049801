//! The payload of one write-ahead log record: one accepted profile.
//!
//! # Format, all integers little-endian
//!
//! A cut record (kind 2) says that every profile record of `tenant` since its
//! previous cut record is in the head with this ULID, which becomes the block
//! with this ULID:
//!
//! ```text
//! kind            u8 (2 = cut)
//! tenant          string
//! head ULID       16 bytes, big-endian u128
//! ```
//!
//! A profile record (kind 1):
//!
//! ```text
//! kind            u8 (1 = profile)
//! tenant          string
//! time_nanos      i64
//! profile ID      16 bytes, big-endian u128 (see `ember_model::ProfileId`)
//! series count    u32, then per series:
//!   labels        u32 count, then (name string, value string) pairs
//!   profile type  string (the id, `name:sample_type:sample_unit:period_type:period_unit`)
//!   sample_type   u32 (index into the profile's sample types)
//!   samples       u8 0 (all samples) or 1 followed by u32 count and u32 indices
//! profile         bytes: the prost encoding of `google.v1.Profile`
//! annotations     optional (absent in records written before annotations
//!                 were stored): u32 count, then (key string, value string) pairs
//! ```
//!
//! A string or bytes field is a u32 length followed by that many bytes (UTF-8 for strings).

use ember_model::{
    Label, Labels, ProfileId, ProfileType,
    ingest::{self, Annotation, ProfileWrite, SeriesSpec},
    pprof::{self, FlatProfile},
};
use ulid::Ulid;

const KIND_PROFILE: u8 = 1;
const KIND_CUT: u8 = 2;

/// One decoded record.
#[derive(Debug)]
pub(crate) enum Entry {
    Profile(Box<ProfileRecord>),
    Cut { tenant: String, head: Ulid },
}

/// Returns the record payload saying that `tenant`'s profiles since its last cut
/// are in head `head`.
pub(crate) fn encode_cut(tenant: &str, head: Ulid) -> Vec<u8> {
    let mut out = vec![KIND_CUT];
    put_bytes(&mut out, tenant.as_bytes());
    out.extend_from_slice(&u128::from(head).to_be_bytes());
    out
}

/// One profile as logged.
#[derive(Debug)]
pub(crate) struct ProfileRecord {
    pub(crate) tenant: String,
    pub(crate) time_nanos: i64,
    pub(crate) id: ProfileId,
    pub(crate) series: Vec<SeriesSpec>,
    pub(crate) profile: FlatProfile,
    pub(crate) annotations: Vec<Annotation>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Returns the record payload for one profile, with the profile's encoding
/// as the write carries it ([`ProfileWrite::encoded`]) or encoded here.
pub(crate) fn encode(tenant: &str, w: &ProfileWrite<'_>) -> Vec<u8> {
    let ProfileWrite {
        id,
        profile,
        series,
        time_nanos,
        annotations,
        encoded,
        ..
    } = *w;
    let profile_len = encoded.map_or_else(|| profile.encoded_len(), <[u8]>::len);
    let mut out = Vec::with_capacity(profile_len + 256);
    out.push(KIND_PROFILE);
    put_bytes(&mut out, tenant.as_bytes());
    out.extend_from_slice(&time_nanos.to_le_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(series.len() as u32).to_le_bytes());
    for s in series {
        out.extend_from_slice(&(s.labels.len() as u32).to_le_bytes());
        for l in s.labels.iter() {
            put_bytes(&mut out, l.name.as_bytes());
            put_bytes(&mut out, l.value.as_bytes());
        }
        put_bytes(&mut out, s.profile_type.id().as_bytes());
        out.extend_from_slice(&(s.sample_type as u32).to_le_bytes());
        match &s.samples {
            None => out.push(0),
            Some(indices) => {
                out.push(1);
                out.extend_from_slice(&(indices.len() as u32).to_le_bytes());
                for i in indices {
                    out.extend_from_slice(&i.to_le_bytes());
                }
            }
        }
    }
    out.extend_from_slice(&(profile_len as u32).to_le_bytes());
    match encoded {
        Some(bytes) => out.extend_from_slice(bytes),
        None => profile.encode(&mut out),
    }
    if !annotations.is_empty() {
        out.extend_from_slice(&(annotations.len() as u32).to_le_bytes());
        for a in annotations {
            put_bytes(&mut out, a.key.as_bytes());
            put_bytes(&mut out, a.value.as_bytes());
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("record ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|e| e.to_string())
    }
}

/// Returns whether `payload` is a cut record, without decoding it.
pub(crate) fn is_cut(payload: &[u8]) -> bool {
    payload.first() == Some(&KIND_CUT)
}

/// Decodes a payload written by [`encode`].
pub(crate) fn decode(payload: &[u8]) -> Result<Entry, String> {
    let mut r = Reader(payload);
    match r.u8()? {
        KIND_PROFILE => decode_profile(r).map(|p| Entry::Profile(Box::new(p))),
        KIND_CUT => {
            let tenant = r.string()?;
            let head = u128::from_be_bytes(r.take(16)?.try_into().expect("16 bytes"));
            Ok(Entry::Cut {
                tenant,
                head: Ulid::from(head),
            })
        }
        kind => Err(format!("unknown record kind {kind}")),
    }
}

fn decode_profile(mut r: Reader<'_>) -> Result<ProfileRecord, String> {
    let tenant = r.string()?;
    let time_nanos = r.i64()?;
    let id = ProfileId::from_be_bytes(r.take(16)?.try_into().expect("16 bytes"));
    let n = r.u32()?;
    let mut series = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let labels = r.u32()?;
        let mut pairs = Vec::with_capacity(labels.min(1024) as usize);
        for _ in 0..labels {
            let name = r.string()?;
            let value = r.string()?;
            pairs.push(Label::new(name, value));
        }
        let profile_type: ProfileType = r.string()?.parse().map_err(|e| format!("{e}"))?;
        let sample_type = r.u32()? as usize;
        let samples = match r.u8()? {
            0 => None,
            _ => {
                let count = r.u32()?;
                let mut v = Vec::with_capacity(count.min(1 << 20) as usize);
                for _ in 0..count {
                    v.push(r.u32()?);
                }
                Some(v)
            }
        };
        series.push(SeriesSpec {
            labels: Labels::new(pairs),
            profile_type,
            sample_type,
            samples,
        });
    }
    // The server's own decoder, as for pushes; a replica logs the profile as
    // received, before the ingester's validation repaired it
    // (`wire::decode_push`), so `decode` repairs it the same way.
    let profile =
        pprof::decode(r.bytes()?, &ember_model::wire::UNBOUNDED).map_err(|e| e.to_string())?;
    let mut annotations = Vec::new();
    if !r.0.is_empty() {
        let count = r.u32()?;
        if count as usize > ingest::MAX_ANNOTATIONS_PER_PROFILE {
            return Err(format!("record has {count} annotations"));
        }
        for _ in 0..count {
            let key = r.string()?;
            let value = r.string()?;
            annotations.push(Annotation { key, value });
        }
    }
    Ok(ProfileRecord {
        tenant,
        time_nanos,
        id,
        series,
        profile,
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use ember_proto::google::v1::{Profile, ValueType};

    use super::*;

    fn profile() -> FlatProfile {
        Profile {
            string_table: vec!["".into(), "cpu".into(), "nanoseconds".into()],
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            ..Profile::default()
        }
        .into()
    }

    fn write<'a>(profile: &'a FlatProfile, annotations: &'a [Annotation]) -> ProfileWrite<'a> {
        ProfileWrite {
            id: 42,
            profile,
            series: &[],
            time_nanos: 7,
            max_active_series: 0,
            annotations,
            encoded: None,
        }
    }

    fn decoded(payload: &[u8]) -> ProfileRecord {
        match decode(payload).unwrap() {
            Entry::Profile(r) => *r,
            Entry::Cut { .. } => panic!("not a profile record"),
        }
    }

    #[test]
    fn annotations_round_trip_and_older_records_have_none() {
        let profile = profile();
        let annotations = [Annotation {
            key: "pyroscope.ingest.throttled".into(),
            value: "{}".into(),
        }];
        let r = decoded(&encode("t", &write(&profile, &annotations)));
        assert_eq!((r.id, r.time_nanos), (42, 7));
        assert_eq!(r.annotations, annotations);
        // A record without annotations ends after the profile, as every
        // record did before annotations were logged.
        let plain = encode("t", &write(&profile, &[]));
        let with = encode("t", &write(&profile, &annotations));
        assert!(with.starts_with(&plain));
        assert!(decoded(&plain).annotations.is_empty());
        // A cut-off annotation section is damage, not silence.
        assert!(decode(&with[..with.len() - 1]).is_err());
    }
}
