//! A profile's string table and locations, each in a few flat vectors
//! rather than an allocation a string and a vector of lines a location.

use ember_proto::google::v1::{Line, Location};
use prost::{
    bytes::BufMut,
    encoding::{self, WireType},
};

/// A string table: all the strings in one buffer, with where each starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Strings {
    bytes: String,
    /// String `i` is `bytes[starts[i]..starts[i + 1]]`; one entry more than
    /// there are strings.
    starts: Vec<usize>,
}

impl Default for Strings {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl Strings {
    pub fn with_capacity(strings: usize, bytes: usize) -> Self {
        let mut starts = Vec::with_capacity(strings + 1);
        starts.push(0);
        Self {
            bytes: String::with_capacity(bytes),
            starts,
        }
    }

    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&str> {
        let (&start, &end) = (self.starts.get(i)?, self.starts.get(i + 1)?);
        Some(&self.bytes[start..end])
    }

    /// String `i`, or the empty string when the table has none: what a
    /// reference that validation did not check reads as.
    #[inline]
    pub fn at(&self, i: i64) -> &str {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.get(i))
            .unwrap_or("")
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.starts.windows(2).map(|w| &self.bytes[w[0]..w[1]])
    }

    pub fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.starts.push(self.bytes.len());
    }

    pub(super) fn encoded_len(&self) -> usize {
        self.iter()
            .map(|s| encoding::key_len(6) + encoding::encoded_len_varint(s.len() as u64) + s.len())
            .sum()
    }

    /// Writes the strings as `Profile.string_table` (field 6).
    pub(super) fn encode(&self, buf: &mut impl BufMut) {
        for s in self.iter() {
            encoding::encode_key(6, WireType::LengthDelimited, buf);
            encoding::encode_varint(s.len() as u64, buf);
            buf.put_slice(s.as_bytes());
        }
    }
}

impl<S: AsRef<str>> FromIterator<S> for Strings {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = Self::default();
        for s in iter {
            out.push(s.as_ref());
        }
        out
    }
}

/// One location, borrowed from [`Locations`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocationRef<'a> {
    pub id: u64,
    pub mapping_id: u64,
    pub address: u64,
    pub is_folded: bool,
    /// The last is the caller; earlier ones are inlined into it.
    pub lines: &'a [Line],
}

/// A profile's locations: their scalar fields side by side, and every
/// location's lines in one vector, with where each location's lines start.
#[derive(Clone, Debug, PartialEq)]
pub struct Locations {
    pub(super) ids: Vec<u64>,
    mapping_ids: Vec<u64>,
    addresses: Vec<u64>,
    folded: Vec<bool>,
    /// Location `i`'s lines are `lines[line_starts[i]..line_starts[i + 1]]`.
    line_starts: Vec<usize>,
    pub(super) lines: Vec<Line>,
}

impl Default for Locations {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Locations {
    pub fn with_capacity(locations: usize) -> Self {
        let mut line_starts = Vec::with_capacity(locations + 1);
        line_starts.push(0);
        Self {
            ids: Vec::with_capacity(locations),
            mapping_ids: Vec::with_capacity(locations),
            addresses: Vec::with_capacity(locations),
            folded: Vec::with_capacity(locations),
            line_starts,
            lines: Vec::with_capacity(locations),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The locations' IDs, in order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    #[inline]
    pub fn get(&self, i: usize) -> LocationRef<'_> {
        LocationRef {
            id: self.ids[i],
            mapping_id: self.mapping_ids[i],
            address: self.addresses[i],
            is_folded: self.folded[i],
            lines: &self.lines[self.line_starts[i]..self.line_starts[i + 1]],
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = LocationRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Appends a location whose lines are `lines`.
    pub fn push(
        &mut self,
        id: u64,
        mapping_id: u64,
        address: u64,
        is_folded: bool,
        lines: &[Line],
    ) {
        self.lines.extend_from_slice(lines);
        self.end_location(id, mapping_id, address, is_folded);
    }

    /// Appends a location whose lines were appended to `lines` last.
    #[inline]
    pub(super) fn end_location(&mut self, id: u64, mapping_id: u64, address: u64, is_folded: bool) {
        self.ids.push(id);
        self.mapping_ids.push(mapping_id);
        self.addresses.push(address);
        self.folded.push(is_folded);
        self.line_starts.push(self.lines.len());
    }

    pub(super) fn to_locations(&self) -> Vec<Location> {
        self.iter()
            .map(|l| Location {
                id: l.id,
                mapping_id: l.mapping_id,
                address: l.address,
                line: l.lines.to_vec(),
                is_folded: l.is_folded,
            })
            .collect()
    }

    fn body_len(l: &LocationRef<'_>) -> usize {
        let scalar = |tag, v: u64| {
            if v == 0 {
                0
            } else {
                encoding::uint64::encoded_len(tag, &v)
            }
        };
        scalar(1, l.id)
            + scalar(2, l.mapping_id)
            + scalar(3, l.address)
            + encoding::message::encoded_len_repeated(4, l.lines)
            + if l.is_folded {
                encoding::bool::encoded_len(5, &true)
            } else {
                0
            }
    }

    pub(super) fn encoded_len(&self) -> usize {
        self.iter()
            .map(|l| {
                let body = Self::body_len(&l);
                encoding::key_len(4) + encoding::encoded_len_varint(body as u64) + body
            })
            .sum()
    }

    /// Writes the locations as `Profile.location` (field 4).
    pub(super) fn encode(&self, buf: &mut impl BufMut) {
        for l in self.iter() {
            encoding::encode_key(4, WireType::LengthDelimited, buf);
            encoding::encode_varint(Self::body_len(&l) as u64, buf);
            for (tag, v) in [(1, l.id), (2, l.mapping_id), (3, l.address)] {
                if v != 0 {
                    encoding::uint64::encode(tag, &v, buf);
                }
            }
            encoding::message::encode_repeated(4, l.lines, buf);
            if l.is_folded {
                encoding::bool::encode(5, &true, buf);
            }
        }
    }
}

impl From<&[Location]> for Locations {
    fn from(locations: &[Location]) -> Self {
        let mut out = Self::with_capacity(locations.len());
        for l in locations {
            out.push(l.id, l.mapping_id, l.address, l.is_folded, &l.line);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_read_back_and_a_reference_out_of_the_table_is_empty() {
        let strings: Strings = ["", "main", "", "é"].into_iter().collect();
        assert_eq!(strings.len(), 4);
        assert_eq!(strings.iter().collect::<Vec<_>>(), ["", "main", "", "é"]);
        assert_eq!(
            (strings.get(1), strings.get(3), strings.get(4)),
            (Some("main"), Some("é"), None)
        );
        assert_eq!(
            (strings.at(1), strings.at(-1), strings.at(9)),
            ("main", "", "")
        );
    }

    #[test]
    fn each_location_keeps_its_own_lines() {
        let line = |function_id| Line {
            function_id,
            line: 7,
            column: 0,
        };
        let mut locations = Locations::default();
        locations.push(1, 0, 0x10, false, &[line(1), line(2)]);
        locations.push(2, 3, 0x20, true, &[]);
        locations.push(3, 0, 0, false, &[line(4)]);
        let got: Vec<(u64, Vec<u64>)> = locations
            .iter()
            .map(|l| (l.id, l.lines.iter().map(|l| l.function_id).collect()))
            .collect();
        assert_eq!(got, [(1, vec![1, 2]), (2, vec![]), (3, vec![4])]);
        let second = locations.get(1);
        assert_eq!(
            (second.mapping_id, second.address, second.is_folded),
            (3, 0x20, true)
        );
        assert_eq!(Locations::from(&locations.to_locations()[..]), locations);
    }
}
