//! The packed sample storage of a [`MemBlock`](super::MemBlock): each
//! profile row's `(stack-trace ID, value)` pairs and span triples as varints
//! in a few large byte chunks, instead of four vectors per row.
//!
//! Stack-trace IDs are sorted and unique within a row, so they are stored as
//! deltas from the previous one (one or two bytes for most samples); values
//! and span IDs are zigzag varints. A row's bytes are contiguous in one chunk.
//! Chunks grow from [`MIN_CHUNK`] to [`MAX_CHUNK`] bytes, so a head holds at
//! most one partly filled chunk and never copies what it already holds.

/// The first chunk's capacity: small heads stay small.
const MIN_CHUNK: usize = 64 * 1024;
/// The largest chunk capacity (a row larger than this gets a chunk its size).
const MAX_CHUNK: usize = 1024 * 1024;

/// Where a row's bytes are: `len` bytes at `offset` of chunk `chunk`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) chunk: u32,
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

/// Append-only byte chunks.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    chunks: Vec<Vec<u8>>,
    /// Bytes stored, over all chunks.
    stored: usize,
}

impl Chunks {
    /// Stores `bytes` contiguously and returns where.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Span {
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= bytes.len());
        if !fits {
            let capacity = self.stored.clamp(MIN_CHUNK, MAX_CHUNK).max(bytes.len());
            self.chunks.push(Vec::with_capacity(capacity));
        }
        let chunk = self.chunks.len() - 1;
        let c = &mut self.chunks[chunk];
        let offset = c.len();
        c.extend_from_slice(bytes);
        self.stored += bytes.len();
        Span {
            chunk: chunk as u32,
            offset: offset as u32,
            len: bytes.len() as u32,
        }
    }

    /// Returns the bytes stored at `span`.
    pub(crate) fn get(&self, span: Span) -> &[u8] {
        let start = span.offset as usize;
        &self.chunks[span.chunk as usize][start..start + span.len as usize]
    }

    /// Returns the bytes the chunks have allocated.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<Vec<u8>>()
            + self.chunks.iter().map(Vec::capacity).sum::<usize>()
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// Reads varints off a slice the encoder wrote: malformed input cannot
/// occur, so a truncated varint ends as if zero-padded.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    #[inline]
    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        while let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                break;
            }
            shift += 7;
        }
        v
    }
}

/// Encodes one row's pairs as they come, in stack-ID order: equal stacks in
/// a row are summed into one pair. Reused from row to row.
#[derive(Debug, Default)]
pub(crate) struct RowEncoder {
    /// The packed pairs so far.
    pub(crate) bytes: Vec<u8>,
    /// The row's span triples, in any order (see [`encode_spans`]).
    pub(crate) triples: Vec<(u64, u32, i64)>,
    pub(crate) samples: u32,
    pub(crate) total: i64,
    previous: u32,
    pending: Option<(u32, i64)>,
}

impl RowEncoder {
    /// Empties it for the next row, keeping its buffers.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.triples.clear();
        self.samples = 0;
        self.total = 0;
        self.previous = 0;
        self.pending = None;
    }

    /// Adds `value` to `stack`, which is no lower than the last one added.
    #[inline]
    pub(crate) fn push(&mut self, stack: u32, value: i64) {
        match &mut self.pending {
            Some((s, sum)) if *s == stack => *sum = sum.wrapping_add(value),
            _ => {
                self.flush();
                self.pending = Some((stack, value));
            }
        }
    }

    /// Writes the pair being summed; call once the row's pairs are all in.
    pub(crate) fn flush(&mut self) {
        if let Some((stack, value)) = self.pending.take() {
            put_varint(&mut self.bytes, (stack - self.previous) as u64);
            put_varint(&mut self.bytes, zigzag(value));
            self.previous = stack;
            self.samples += 1;
            self.total = self.total.wrapping_add(value);
        }
    }

    /// Returns the bytes it holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.triples.capacity() * size_of::<(u64, u32, i64)>()
    }
}

/// Appends the encoding of sorted, unique `(stack-trace ID, value)` pairs.
#[cfg(test)]
pub(crate) fn encode_samples(out: &mut Vec<u8>, pairs: &[(u32, i64)]) {
    let mut e = RowEncoder::default();
    for &(stack, value) in pairs {
        e.push(stack, value);
    }
    e.flush();
    out.extend_from_slice(&e.bytes);
}

/// Decodes `count` pairs that [`encode_samples`] wrote, replacing the
/// contents of `stacks` and `values`.
pub(crate) fn decode_samples(
    bytes: &[u8],
    count: usize,
    stacks: &mut Vec<u32>,
    values: &mut Vec<i64>,
) {
    stacks.clear();
    values.clear();
    stacks.reserve(count);
    values.reserve(count);
    let mut r = Reader { bytes, at: 0 };
    let mut stack = 0u32;
    for _ in 0..count {
        stack = stack.wrapping_add(r.varint() as u32);
        stacks.push(stack);
        values.push(unzigzag(r.varint()));
    }
}

/// Appends the encoding of `(span, stack-trace ID, value)` triples sorted by
/// span then stack: the span as a delta from the previous one, the stack as a
/// delta from the previous stack of the same span.
pub(crate) fn encode_spans(out: &mut Vec<u8>, triples: &[(u64, u32, i64)]) {
    let (mut span, mut stack) = (0u64, 0u32);
    for &(s, st, v) in triples {
        put_varint(out, s - span);
        if s != span {
            stack = 0;
        }
        put_varint(out, (st - stack) as u64);
        put_varint(out, zigzag(v));
        (span, stack) = (s, st);
    }
}

/// Decodes `count` triples that [`encode_spans`] wrote into the three
/// columns, replacing their contents.
pub(crate) fn decode_spans(
    bytes: &[u8],
    count: usize,
    spans: &mut Vec<u64>,
    stacks: &mut Vec<u32>,
    values: &mut Vec<i64>,
) {
    spans.clear();
    stacks.clear();
    values.clear();
    let mut r = Reader { bytes, at: 0 };
    let (mut span, mut stack) = (0u64, 0u32);
    for _ in 0..count {
        let d = r.varint();
        if d != 0 {
            stack = 0;
        }
        span = span.wrapping_add(d);
        stack = stack.wrapping_add(r.varint() as u32);
        spans.push(span);
        stacks.push(stack);
        values.push(unzigzag(r.varint()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn samples_round_trip(mut pairs in proptest::collection::vec((any::<u32>(), any::<i64>()), 0..200)) {
            pairs.sort_unstable_by_key(|p| p.0);
            pairs.dedup_by_key(|p| p.0);
            let mut out = Vec::new();
            encode_samples(&mut out, &pairs);
            let (mut stacks, mut values) = (vec![7], vec![7]);
            decode_samples(&out, pairs.len(), &mut stacks, &mut values);
            let back: Vec<(u32, i64)> = stacks.into_iter().zip(values).collect();
            prop_assert_eq!(back, pairs);
        }

        #[test]
        fn spans_round_trip(mut triples in proptest::collection::vec((0u64..5, 0u32..50, any::<i64>()), 0..200)) {
            triples.sort_unstable_by_key(|t| (t.0, t.1));
            triples.dedup_by_key(|t| (t.0, t.1));
            let mut out = Vec::new();
            encode_spans(&mut out, &triples);
            let (mut spans, mut stacks, mut values) = (Vec::new(), Vec::new(), Vec::new());
            decode_spans(&out, triples.len(), &mut spans, &mut stacks, &mut values);
            let back: Vec<(u64, u32, i64)> = spans.into_iter().zip(stacks).zip(values).map(|((a, b), c)| (a, b, c)).collect();
            prop_assert_eq!(back, triples);
        }
    }

    #[test]
    fn chunks_keep_rows_contiguous_and_grow() {
        let mut c = Chunks::default();
        let a = c.push(&[1, 2, 3]);
        let big = vec![9u8; MAX_CHUNK + 5];
        let b = c.push(&big);
        let d = c.push(&[4]);
        assert_eq!(c.get(a), [1, 2, 3]);
        assert_eq!(c.get(b), &big[..]);
        assert_eq!(c.get(d), [4]);
        assert_eq!((a.chunk, b.chunk, d.chunk), (0, 1, 2));
        assert!(c.heap_bytes() >= MIN_CHUNK + big.len());
    }
}
