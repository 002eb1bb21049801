//! Conversions between `ingester.v1` messages and the model: the one place both
//! sides of the distributor-to-ingester and querier-to-ingester calls share, so
//! neither reaches into the other.

use ember_proto::ingester::v1 as pb;

use crate::{
    Error, Labels, ProfileId, ProfileType, Result,
    ingest::{self, Annotation, ProfileWrite, SeriesSpec},
    pprof::{self, FlatProfile},
};

/// Returns the push request for one profile; the profile is encoded once for
/// every replica.
pub fn push_request(w: &ProfileWrite<'_>) -> pb::PushRequest {
    pb::PushRequest {
        id: w.id.to_be_bytes().to_vec(),
        time_nanos: w.time_nanos,
        series: w
            .series
            .iter()
            .map(|s| pb::SeriesSpec {
                labels: s.labels.to_proto(),
                profile_type: s.profile_type.id(),
                sample_type: s.sample_type as u32,
                has_samples: s.samples.is_some(),
                samples: s.samples.clone().unwrap_or_default(),
            })
            .collect(),
        profile: w
            .encoded
            .map_or_else(|| w.profile.encode_to_vec(), <[u8]>::to_vec),
        max_active_series: w.max_active_series.min(u32::MAX as usize) as u32,
        annotations: ingest::annotations_to_proto(w.annotations),
    }
}

/// Validation without limits: the distributor enforced the tenant's.
pub const UNBOUNDED: pprof::DecodeLimits = pprof::DecodeLimits {
    max_decompressed_bytes: usize::MAX >> 1,
    max_samples: 0,
    max_stack_depth: 0,
};

/// A decoded push request.
#[derive(Debug)]
pub struct Push {
    pub id: ProfileId,
    pub time_nanos: i64,
    pub series: Vec<SeriesSpec>,
    pub profile: FlatProfile,
    /// The profile as received, for the write-ahead log.
    pub encoded: Vec<u8>,
    pub max_active_series: usize,
    pub annotations: Vec<Annotation>,
}

impl Push {
    /// Returns the push as the write it asks for.
    pub fn write(&self) -> ProfileWrite<'_> {
        ProfileWrite {
            id: self.id,
            profile: &self.profile,
            series: &self.series,
            time_nanos: self.time_nanos,
            max_active_series: self.max_active_series,
            annotations: &self.annotations,
            encoded: Some(&self.encoded),
        }
    }
}

fn bad(message: String) -> Error {
    Error::Malformed(message)
}

/// Decodes and checks a push request: every series must name a sample type
/// and samples the profile has.
pub fn decode_push(request: pb::PushRequest) -> Result<Push> {
    let id = decode_id(&request.id)?;
    let mut profile =
        pprof::decode_protobuf(&request.profile).map_err(|e| bad(format!("profile: {e}")))?;
    // The distributor validated it; checking again keeps a bad peer from
    // corrupting the head.
    pprof::validate(&mut profile, &UNBOUNDED).map_err(|e| bad(format!("profile: {e}")))?;
    let series = request
        .series
        .into_iter()
        .map(|s| {
            let profile_type: ProfileType = s
                .profile_type
                .parse()
                .map_err(|e| bad(format!("profile type {:?}: {e}", s.profile_type)))?;
            let sample_type = s.sample_type as usize;
            if sample_type >= profile.header.sample_type.len() {
                return Err(bad(format!(
                    "series sample type {sample_type} is beyond the profile's {}",
                    profile.header.sample_type.len()
                )));
            }
            if let Some(&i) = s
                .samples
                .iter()
                .find(|&&i| i as usize >= profile.samples.len())
            {
                return Err(bad(format!(
                    "series sample {i} is beyond the profile's {}",
                    profile.samples.len()
                )));
            }
            Ok(SeriesSpec {
                labels: Labels::from_proto(&s.labels),
                profile_type,
                sample_type,
                samples: s.has_samples.then_some(s.samples),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let annotations = ingest::annotations(&request.annotations)?;
    Ok(Push {
        id,
        time_nanos: request.time_nanos,
        series,
        profile,
        encoded: request.profile,
        max_active_series: request.max_active_series as usize,
        annotations,
    })
}

/// Decodes one 16-byte profile ID.
pub fn decode_id(bytes: &[u8]) -> Result<ProfileId> {
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| bad(format!("a profile ID has 16 bytes, not {}", bytes.len())))?;
    Ok(ProfileId::from_be_bytes(bytes))
}

/// Decodes concatenated 16-byte profile IDs.
pub fn decode_ids(bytes: &[u8]) -> Result<Vec<ProfileId>> {
    if !bytes.len().is_multiple_of(16) {
        return Err(bad(format!(
            "profile IDs take 16 bytes each; {} bytes is not a multiple",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| ProfileId::from_be_bytes(c.try_into().expect("16 bytes")))
        .collect())
}

/// Encodes profile IDs as concatenated 16-byte big-endian values.
pub fn encode_ids(ids: impl IntoIterator<Item = ProfileId>) -> Vec<u8> {
    ids.into_iter().flat_map(|id| id.to_be_bytes()).collect()
}
