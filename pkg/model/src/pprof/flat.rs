//! A decoded profile whose samples, strings and locations are stored flat.
//!
//! prost's `Profile` gives each sample vectors of its own for its frames,
//! values and labels: two or three allocations a sample (the shared mix
//! averages 1,800 samples a profile, seven in ten of its allocations), freed
//! one by one when the profile is dropped, and likewise a string each and a
//! vector of lines a location. [`Samples`] keeps all the samples' frames in
//! one vector, their values in another and their labels in a third, with
//! where each sample starts; [`Strings`] and [`Locations`] do the same for
//! the string table and the locations. The rest (sample types, functions,
//! mappings) stays prost's.

use ember_proto::google::v1::{Label, Profile, Sample};

use super::tables::{Locations, Strings};
use prost::{
    Message,
    bytes::BufMut,
    encoding::{self, WireType},
};

/// A pprof profile with its samples, strings and locations flat.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlatProfile {
    /// Everything else: `header.sample`, `header.string_table` and
    /// `header.location` are always empty.
    pub header: Profile,
    pub samples: Samples,
    pub strings: Strings,
    pub locations: Locations,
}

/// The samples of a profile, in three flat vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    /// Sample `i`'s frames are `location_ids[stack_starts[i]..stack_starts[i + 1]]`,
    /// leaf first; its values and labels likewise. Each `*_starts` holds one
    /// entry more than there are samples.
    pub(super) stack_starts: Vec<usize>,
    pub(super) location_ids: Vec<u64>,
    pub(super) value_starts: Vec<usize>,
    pub(super) values: Vec<i64>,
    pub(super) label_starts: Vec<usize>,
    pub(super) labels: Vec<Label>,
}

/// One sample, borrowed from [`Samples`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleRef<'a> {
    /// Location IDs, leaf first.
    pub stack: &'a [u64],
    pub values: &'a [i64],
    pub labels: &'a [Label],
}

impl Default for Samples {
    fn default() -> Self {
        Self::with_capacity(0, 0, 0)
    }
}

impl Samples {
    /// Returns no samples, with room for `samples` of `frames` frames and
    /// `values` values in all.
    pub fn with_capacity(samples: usize, frames: usize, values: usize) -> Self {
        let starts = || {
            let mut v = Vec::with_capacity(samples + 1);
            v.push(0);
            v
        };
        Self {
            stack_starts: starts(),
            location_ids: Vec::with_capacity(frames),
            value_starts: starts(),
            values: Vec::with_capacity(values),
            label_starts: starts(),
            labels: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.stack_starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i`'s location IDs, leaf first.
    #[inline]
    pub fn stack(&self, i: usize) -> &[u64] {
        &self.location_ids[self.stack_starts[i]..self.stack_starts[i + 1]]
    }

    #[inline]
    pub fn values(&self, i: usize) -> &[i64] {
        &self.values[self.value_starts[i]..self.value_starts[i + 1]]
    }

    #[inline]
    pub fn values_mut(&mut self, i: usize) -> &mut [i64] {
        &mut self.values[self.value_starts[i]..self.value_starts[i + 1]]
    }

    #[inline]
    pub fn labels(&self, i: usize) -> &[Label] {
        &self.labels[self.label_starts[i]..self.label_starts[i + 1]]
    }

    /// Whether any sample carries a label.
    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    /// Every sample's labels, one sample after the other.
    pub fn all_labels(&self) -> &[Label] {
        &self.labels
    }

    #[inline]
    pub fn get(&self, i: usize) -> SampleRef<'_> {
        SampleRef {
            stack: self.stack(i),
            values: self.values(i),
            labels: self.labels(i),
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = SampleRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Calls `f` on every sample's values.
    pub fn for_each_values_mut(&mut self, mut f: impl FnMut(&mut [i64])) {
        for w in self.value_starts.windows(2) {
            f(&mut self.values[w[0]..w[1]]);
        }
    }

    pub fn push(&mut self, stack: &[u64], values: &[i64], labels: &[Label]) {
        self.location_ids.extend_from_slice(stack);
        self.values.extend_from_slice(values);
        self.labels.extend_from_slice(labels);
        self.end_sample();
    }

    /// Ends the sample whose frames, values and labels were appended last.
    #[inline]
    pub(super) fn end_sample(&mut self) {
        self.stack_starts.push(self.location_ids.len());
        self.value_starts.push(self.values.len());
        self.label_starts.push(self.labels.len());
    }

    /// Returns the samples as prost's messages.
    pub fn to_samples(&self) -> Vec<Sample> {
        self.iter()
            .map(|s| Sample {
                location_id: s.stack.to_vec(),
                value: s.values.to_vec(),
                label: s.labels.to_vec(),
            })
            .collect()
    }

    fn sample_body_len(&self, i: usize) -> usize {
        encoding::uint64::encoded_len_packed(1, self.stack(i))
            + encoding::int64::encoded_len_packed(2, self.values(i))
            + encoding::message::encoded_len_repeated(3, self.labels(i))
    }

    /// The length of the samples encoded as `Profile.sample` (field 2).
    fn encoded_len(&self) -> usize {
        (0..self.len())
            .map(|i| {
                let body = self.sample_body_len(i);
                encoding::key_len(2) + encoding::encoded_len_varint(body as u64) + body
            })
            .sum()
    }

    fn encode(&self, buf: &mut impl BufMut) {
        for i in 0..self.len() {
            encoding::encode_key(2, WireType::LengthDelimited, buf);
            encoding::encode_varint(self.sample_body_len(i) as u64, buf);
            encoding::uint64::encode_packed(1, self.stack(i), buf);
            encoding::int64::encode_packed(2, self.values(i), buf);
            encoding::message::encode_repeated(3, self.labels(i), buf);
        }
    }
}

impl From<&[Sample]> for Samples {
    fn from(samples: &[Sample]) -> Self {
        let frames = samples.iter().map(|s| s.location_id.len()).sum();
        let values = samples.iter().map(|s| s.value.len()).sum();
        let mut out = Self::with_capacity(samples.len(), frames, values);
        for s in samples {
            out.push(&s.location_id, &s.value, &s.label);
        }
        out
    }
}

impl From<Profile> for FlatProfile {
    fn from(mut profile: Profile) -> Self {
        let samples = Samples::from(&profile.sample[..]);
        let strings = profile.string_table.iter().collect();
        let locations = Locations::from(&profile.location[..]);
        profile.sample = Vec::new();
        profile.string_table = Vec::new();
        profile.location = Vec::new();
        Self {
            header: profile,
            samples,
            strings,
            locations,
        }
    }
}

impl FlatProfile {
    /// Returns the profile as prost's message.
    pub fn to_profile(&self) -> Profile {
        self.clone().into_profile()
    }

    pub fn into_profile(self) -> Profile {
        Profile {
            sample: self.samples.to_samples(),
            string_table: self.strings.iter().map(str::to_owned).collect(),
            location: self.locations.to_locations(),
            ..self.header
        }
    }

    /// The length of [`Self::encode_to_vec`], without encoding.
    pub fn encoded_len(&self) -> usize {
        self.header.encoded_len()
            + self.samples.encoded_len()
            + self.locations.encoded_len()
            + self.strings.encoded_len()
    }

    /// Returns the protobuf encoding of the profile, the bytes prost writes
    /// for [`Self::to_profile`].
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf
    }

    /// Appends [`Self::encode_to_vec`] to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        let h = &self.header;
        // Fields in order of their numbers, as prost writes them: the
        // samples (2) between the sample types (1) and the mappings (3).
        encoding::message::encode_repeated(1, &h.sample_type, buf);
        self.samples.encode(buf);
        encoding::message::encode_repeated(3, &h.mapping, buf);
        self.locations.encode(buf);
        encoding::message::encode_repeated(5, &h.function, buf);
        self.strings.encode(buf);
        for (tag, value) in [
            (7, h.drop_frames),
            (8, h.keep_frames),
            (9, h.time_nanos),
            (10, h.duration_nanos),
        ] {
            if value != 0 {
                encoding::int64::encode(tag, &value, buf);
            }
        }
        if let Some(period_type) = &h.period_type {
            encoding::message::encode(11, period_type, buf);
        }
        if h.period != 0 {
            encoding::int64::encode(12, &h.period, buf);
        }
        encoding::int64::encode_packed(13, &h.comment, buf);
        if h.default_sample_type != 0 {
            encoding::int64::encode(14, &h.default_sample_type, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use ember_testkit::pprof::gunzip_if_needed;
    use ember_testkit::testdata;

    use super::*;

    #[test]
    fn keeps_every_sample_of_the_shared_profiles_and_encodes_them_as_prost_does() {
        let mut checked = 0;
        for name in testdata::all_profiles() {
            let Ok(bytes) = gunzip_if_needed(&testdata::read(&name)) else {
                continue;
            };
            let Ok(mut profile) = Profile::decode(bytes.as_slice()) else {
                continue;
            };
            profile.comment = vec![3, 1];
            profile.drop_frames = 2;
            profile.default_sample_type = 1;
            let flat = FlatProfile::from(profile.clone());
            assert_eq!(flat.samples.len(), profile.sample.len(), "{name}");
            for (i, s) in profile.sample.iter().enumerate() {
                let got = flat.samples.get(i);
                assert_eq!(got.stack, &s.location_id[..], "{name}: sample {i}");
                assert_eq!(got.values, &s.value[..], "{name}: sample {i}");
                assert_eq!(got.labels, &s.label[..], "{name}: sample {i}");
            }
            assert!(flat.to_profile() == profile, "{name}");
            let encoded = profile.encode_to_vec();
            assert!(flat.encode_to_vec() == encoded, "{name}: other bytes");
            assert_eq!(flat.encoded_len(), encoded.len(), "{name}");
            checked += 1;
        }
        assert!(checked >= 40, "{checked} profiles checked");
    }

    #[test]
    fn starts_every_sample_where_the_previous_ended() {
        let mut s = Samples::default();
        assert!(s.is_empty() && !s.has_labels());
        let label = Label {
            key: 1,
            str: 2,
            ..Default::default()
        };
        s.push(&[1, 2, 3], &[10], &[]);
        s.push(&[], &[20], &[label]);
        s.push(&[4], &[30], &[]);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s.stack(0), s.stack(1), s.stack(2)),
            (&[1, 2, 3][..], &[][..], &[4][..])
        );
        assert_eq!(
            (s.labels(0), s.labels(1), s.labels(2)),
            (&[][..], &[label][..], &[][..])
        );
        s.values_mut(1)[0] = 21;
        s.for_each_values_mut(|v| v[0] += 1);
        let values: Vec<i64> = s.iter().map(|x| x.values[0]).collect();
        assert_eq!(values, [11, 22, 31]);
        assert!(s.has_labels());
    }
}
