//! Ranged reads of Parquet files in object storage: a file's footer (with its
//! page indexes), then only the byte ranges a query needs, through the
//! [`BlockCache`].
//!
//! Ranges a few KiB apart are fetched as one request ([`COALESCE_GAP`]); the
//! requests of one file run concurrently ([`MAX_CONCURRENT_REQUESTS`]). The
//! fetched ranges become a [`Sparse`] file that Parquet's synchronous reader
//! decodes off the async runtime: it asks only for the pages the same row
//! selection chose, so a range that was not fetched is a bug, reported as a
//! Parquet error rather than a silent read.

use std::{
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Buf, Bytes};
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, path::Path};
use parquet::{
    errors::ParquetError,
    file::{
        metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader},
        reader::{ChunkReader, Length},
    },
};

use tracing::debug;

use crate::{
    Result,
    cache::{BlockCache, Key, Value},
};

/// Ranges closer than this are fetched in one request: a request costs tens
/// of milliseconds on S3, a few KiB cost next to nothing.
pub(crate) const COALESCE_GAP: u64 = 16 * 1024;
/// Requests in flight per file.
pub(crate) const MAX_CONCURRENT_REQUESTS: usize = 8;
/// How much of a file's end is read first when its footer size is unknown
/// (blocks written before the footer sizes were recorded).
const FOOTER_GUESS: u64 = 64 * 1024;

/// What a read fetched from object storage (cache hits excluded). Shared by
/// the concurrent fetches of one query.
#[derive(Debug, Default)]
pub struct Fetched {
    bytes: AtomicU64,
    requests: AtomicU64,
}

impl Fetched {
    fn add(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns the bytes fetched.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Returns the requests made.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A Parquet file's decoded footer, page indexes included when it has them.
#[derive(Debug)]
pub(crate) struct Footer {
    pub(crate) metadata: Arc<ParquetMetaData>,
    pub(crate) size: u64,
}

/// Where a file's footer starts, when the writer recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHint {
    pub(crate) size: u64,
    /// Bytes at the end of the file: page indexes, metadata, length and magic.
    pub(crate) footer: u64,
}

/// Returns the bytes at the end of a Parquet file that hold its page indexes
/// and metadata, read from the file: what the writer's count must match.
#[cfg(test)]
pub(crate) fn footer_len(file: &Bytes) -> Result<u64> {
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Skip)
        .parse_and_finish(file)?;
    let size = file.len() as u64;
    let tail = &file[file.len() - 8..file.len() - 4];
    let metadata_len = u32::from_le_bytes(tail.try_into().expect("4 bytes")) as u64;
    let mut start = size - 8 - metadata_len;
    for rg in metadata.row_groups() {
        for c in rg.columns() {
            for r in [c.column_index_range(), c.offset_index_range()]
                .into_iter()
                .flatten()
            {
                start = start.min(r.start);
            }
        }
    }
    Ok(size - start)
}

/// Returns the footer of `path`, from the cache or the store.
pub(crate) async fn footer(
    store: &Arc<dyn ObjectStore>,
    cache: &BlockCache,
    path: &Path,
    hint: Option<FileHint>,
    fetched: &Fetched,
) -> Result<Arc<Footer>> {
    let key = Key::Footer(path.clone());
    if let Some(Value::Footer(f)) = cache.get(&key) {
        return Ok(f);
    }
    let hinted = match hint {
        Some(h) => match footer_at(store, path, h, fetched).await {
            Ok(metadata) => Some((h.size, metadata)),
            Err(error) => {
                // Not where series.parquet says: read the file's end instead.
                debug!(%path, %error, "footer not at its recorded offset");
                None
            }
        },
        None => None,
    };
    let (size, metadata) = match hinted {
        Some(found) => found,
        None => {
            let (mut size, mut tail) = suffix(store, path, FOOTER_GUESS, fetched).await?;
            loop {
                let mut reader =
                    ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional);
                match reader.try_parse_sized(&tail, size) {
                    Ok(()) => break (size, reader.finish()?),
                    Err(ParquetError::NeedMoreData(needed))
                        if (needed as u64) > tail.len() as u64 =>
                    {
                        (size, tail) = suffix(store, path, needed as u64, fetched).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };
    Ok(remember(cache, key, metadata, size))
}

/// Returns the footer of `file`, fetched whole: decoded once, then cached.
pub(crate) fn footer_of_whole(
    cache: &BlockCache,
    path: &Path,
    file: &Sparse,
) -> Result<Arc<Footer>> {
    let key = Key::Footer(path.clone());
    if let Some(Value::Footer(f)) = cache.get(&key) {
        return Ok(f);
    }
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(file)?;
    Ok(remember(cache, key, metadata, file.size))
}

fn remember(cache: &BlockCache, key: Key, metadata: ParquetMetaData, size: u64) -> Arc<Footer> {
    let weight = metadata.memory_size() as u64;
    let footer = Arc::new(Footer {
        metadata: Arc::new(metadata),
        size,
    });
    cache.insert(key, Value::Footer(footer.clone()), weight);
    footer
}

/// Reads the footer of `path` where `hint` says it is, in one request.
async fn footer_at(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    hint: FileHint,
    fetched: &Fetched,
) -> Result<ParquetMetaData> {
    let start = hint.size.saturating_sub(hint.footer);
    let tail = store.get_range(path, start..hint.size).await?;
    fetched.add(tail.len());
    let mut reader = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional);
    reader.try_parse_sized(&tail, hint.size)?;
    Ok(reader.finish()?)
}

/// Fetches the last `n` bytes of `path`; returns the file's size and them.
async fn suffix(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    n: u64,
    fetched: &Fetched,
) -> Result<(u64, Bytes)> {
    let options = GetOptions {
        range: Some(GetRange::Suffix(n)),
        ..Default::default()
    };
    let result = store.get_opts(path, options).await?;
    let size = result.meta.size;
    let bytes = result.bytes().await?;
    fetched.add(bytes.len());
    Ok((size, bytes))
}

/// Returns `ranges` sorted, with overlapping ones merged.
fn normalize(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.start < r.end);
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Groups sorted, disjoint `ranges` into requests: ranges at most `gap`
/// bytes apart share one. Returns each request's range and its members.
fn coalesce(ranges: &[Range<u64>], gap: u64) -> Vec<(Range<u64>, Range<usize>)> {
    let mut out: Vec<(Range<u64>, Range<usize>)> = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        match out.last_mut() {
            Some((req, members)) if r.start <= req.end + gap => {
                req.end = r.end;
                members.end = i + 1;
            }
            _ => out.push((r.clone(), i..i + 1)),
        }
    }
    out
}

/// Returns the byte `ranges` of the file at `path` (of `size` bytes), each
/// from the cache or fetched (and then cached).
pub(crate) async fn fetch(
    store: &Arc<dyn ObjectStore>,
    cache: &BlockCache,
    path: &Path,
    size: u64,
    ranges: Vec<Range<u64>>,
    fetched: &Fetched,
) -> Result<Sparse> {
    let ranges = normalize(ranges);
    let mut parts: Vec<(u64, Bytes)> = Vec::with_capacity(ranges.len());
    let mut missing = Vec::new();
    for r in ranges {
        match cache.get(&Key::Page(path.clone(), r.start, r.end)) {
            Some(Value::Page(b)) => parts.push((r.start, b)),
            _ => missing.push(r),
        }
    }
    let requests = coalesce(&missing, COALESCE_GAP);
    // Futures that own what they use: borrowing futures in a stream make
    // the callers' futures not `Send` (rust-lang/rust#102211).
    let gets: Vec<_> = requests
        .iter()
        .map(|(req, _)| {
            let (store, path, req) = (store.clone(), path.clone(), req.clone());
            async move { store.get_range(&path, req).await }
        })
        .collect();
    let responses: Vec<Bytes> = futures::stream::iter(gets)
        .buffered(MAX_CONCURRENT_REQUESTS)
        .try_collect()
        .await?;
    for b in &responses {
        fetched.add(b.len());
    }
    for ((req, members), bytes) in requests.into_iter().zip(responses) {
        if bytes.len() as u64 != req.end - req.start {
            return Err(crate::Error::Corrupt {
                block: path.to_string(),
                message: format!(
                    "asked for bytes {}..{}, got {}",
                    req.start,
                    req.end,
                    bytes.len()
                ),
            });
        }
        for r in &missing[members] {
            let part = bytes.slice((r.start - req.start) as usize..(r.end - req.start) as usize);
            cache.insert(
                Key::Page(path.clone(), r.start, r.end),
                Value::Page(part.clone()),
                part.len() as u64,
            );
            parts.push((r.start, part));
        }
    }
    parts.sort_by_key(|(start, _)| *start);
    Ok(Sparse { size, parts })
}

/// A Parquet file of which only some byte ranges are in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sparse {
    size: u64,
    /// Disjoint ranges by start offset.
    parts: Vec<(u64, Bytes)>,
}

impl Sparse {
    /// Returns the bytes from `start` to the end of the range holding it.
    fn from(&self, start: u64) -> Option<Bytes> {
        let i = self.parts.partition_point(|(s, _)| *s <= start);
        let (s, b) = self.parts.get(i.checked_sub(1)?)?;
        let offset = (start - s) as usize;
        (offset <= b.len()).then(|| b.slice(offset..))
    }

    /// Returns a file held whole.
    #[cfg(test)]
    pub(crate) fn whole(bytes: Bytes) -> Self {
        Self {
            size: bytes.len() as u64,
            parts: vec![(0, bytes)],
        }
    }

    /// Returns the bytes held.
    pub(crate) fn held(&self) -> usize {
        self.parts.iter().map(|(_, b)| b.len()).sum()
    }
}

impl Length for Sparse {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Sparse {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.from(start)
            .map(Buf::reader)
            .ok_or_else(|| ParquetError::General(format!("bytes at {start} were not fetched")))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self.from(start) {
            Some(b) if b.len() >= length => Ok(b.slice(..length)),
            _ => Err(ParquetError::General(format!(
                "bytes {start}..{} were not fetched",
                start + length as u64
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_coalesce() {
        assert_eq!(normalize(vec![5..9, 0..3, 2..4, 9..9]), vec![0..4, 5..9]);
        let r = vec![0..10, 20..30, 100_000..100_010];
        assert_eq!(
            coalesce(&r, 16),
            vec![(0..30, 0..2), (100_000..100_010, 2..3)]
        );
    }

    #[test]
    fn sparse_serves_only_what_it_holds() {
        let s = Sparse {
            size: 100,
            parts: vec![
                (10, Bytes::from_static(b"abcd")),
                (50, Bytes::from_static(b"xy")),
            ],
        };
        assert_eq!(s.get_bytes(11, 2).unwrap(), Bytes::from_static(b"bc"));
        assert_eq!(s.get_bytes(50, 2).unwrap(), Bytes::from_static(b"xy"));
        assert!(s.get_bytes(12, 4).is_err());
        assert!(s.get_bytes(0, 1).is_err());
        assert!(s.get_read(60).is_err());
    }
}
