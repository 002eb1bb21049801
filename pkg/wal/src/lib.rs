//! A write-ahead log: the ingester writes every accepted profile here, fsynced,
//! before it acknowledges the push, and replays the log after a crash.
//!
//! # On-disk format (version 2)
//!
//! The log is a directory of segment files named `<sequence>.wal`, the sequence
//! a zero-padded 20-digit decimal number that only grows. Each segment starts with
//! a 12-byte header:
//!
//! ```text
//! magic  "EMBERWAL" (8 bytes)
//! format version, u32 little-endian (2)
//! ```
//!
//! followed by records, each:
//!
//! ```text
//! stored length, u32 little-endian
//! CRC-32 (IEEE, `crc32fast`) of the stored bytes, u32 little-endian
//! stored bytes: the payload's length, u32 little-endian, then the payload
//!   compressed as one zstd frame (level 3; any level reads)
//! ```
//!
//! Version 1 stored the payload as it is; its segments are still replayed. The
//! payload is opaque to this crate; profiles compress about fourfold, so the log
//! writes and fsyncs fewer bytes than the gzipped pushes it holds (0.96 of them
//! for the shared profiles, `ember-bench`), and compression runs in the
//! appending thread, outside the group-commit lock. Appends from many threads are batched:
//! the first waiting appender becomes the leader, writes everything queued with
//! one `write` and one `fsync`, and wakes the others (group commit). An append
//! returns only after the fsync that covers its record.
//!
//! [`replay`] reads every segment in order, checks each record's checksum, then
//! decompresses the intact records of a segment on every core. A record cut
//! short (a torn tail after a crash) ends its segment, which is truncated to its
//! last intact record; a record whose checksum does not match is skipped. Both
//! are reported, never an error, so a damaged log cannot stop the process from
//! starting.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use thiserror::Error;
use tracing::{info, warn};

mod metrics;

pub use metrics::WalMetrics;

/// The segment header's magic bytes.
pub const MAGIC: &[u8; 8] = b"EMBERWAL";
/// The format version written into every segment header.
pub const FORMAT_VERSION: u32 = 2;
/// The last format whose records are stored uncompressed.
const UNCOMPRESSED_VERSION: u32 = 1;
/// zstd's default level: a log smaller than the gzipped pushes it holds
/// (level 1 writes 1.08 times their bytes), for about 3% of a push's CPU.
const ZSTD_LEVEL: i32 = 3;
/// Bytes of the segment header.
pub const HEADER_LEN: u64 = 12;
/// Bytes before each record's payload (length and checksum).
pub const RECORD_HEADER_LEN: u64 = 8;
/// Largest payload accepted; a longer length in a segment is treated as damage.
pub const MAX_RECORD_BYTES: u32 = 1 << 30;

#[derive(Debug, Error)]
pub enum Error {
    #[error("write-ahead log I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "write-ahead log segment {path} has format version {version}, this build reads {FORMAT_VERSION}"
    )]
    Version { path: PathBuf, version: u32 },
    #[error("record of {0} bytes is larger than the write-ahead log's limit")]
    TooLarge(usize),
    #[error("the write-ahead log failed earlier and accepts no more writes: {0}")]
    Failed(String),
    #[error("writing the write-ahead log failed, nothing of this write was kept: {0}")]
    Write(String),
    #[error(
        "write-ahead log directory {} is in use by another process (it holds {}); give each ingester its own directory with -ingester.wal-dir",
        dir.display(),
        dir.join(LOCK_FILE).display()
    )]
    Locked { dir: PathBuf },
}

/// The file a process holds locked while it owns a log directory.
pub const LOCK_FILE: &str = "LOCK";

/// Exclusive ownership of a log directory, as Prometheus locks its TSDB
/// directory: two processes appending to and replaying the same segments would
/// each replay the other's profiles as their own. The lock is an `flock` on
/// [`LOCK_FILE`], released by the kernel when the process ends however it ends,
/// so a crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir` (created if missing), or fails at once with
    /// [`Error::Locked`] when another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: the descriptor is open and owned by `file` for this call.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc != 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            return Err(io_err(&path)(error));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// Returns the locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Options for [`Wal::open`].
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is closed and a new one started once it holds this many bytes.
    pub max_segment_bytes: u64,
    /// Calls `fsync` after each group write; off only for benchmarks.
    pub fsync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            max_segment_bytes: 128 << 20,
            fsync: true,
        }
    }
}

/// One record read back by [`replay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence of the segment that holds it.
    pub segment: u64,
    /// Byte offset of the record header in the segment.
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// Why part of a segment was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The segment ends inside a record (a write cut short by a crash).
    TornTail,
    /// The record's checksum does not match its payload.
    BadChecksum,
    /// The segment header is missing or not a write-ahead log header.
    BadHeader,
}

/// One skipped stretch of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub segment: u64,
    pub offset: u64,
    pub bytes: u64,
    pub damage: Damage,
}

/// What [`replay`] read and what it skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: usize,
    pub skipped: Vec<Skipped>,
}

impl ReplayReport {
    /// Returns how many damaged stretches were skipped.
    pub fn skipped_count(&self) -> usize {
        self.skipped.len()
    }
}

/// How far a [`replay_with`] has read, readable from other threads while it
/// runs: bytes of segment files read out of their total.
#[derive(Debug, Default)]
pub struct ReplayProgress {
    bytes_total: AtomicU64,
    bytes_read: AtomicU64,
}

impl ReplayProgress {
    /// Returns the bytes of every segment file to read (0 until the replay starts).
    pub fn bytes_total(&self) -> u64 {
        self.bytes_total.load(Ordering::Relaxed)
    }

    /// Returns the bytes read and checked so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }
}

/// Returns a record's stored bytes: the payload's length, then its zstd frame.
/// The frame goes straight after the length, in room for zstd's bound.
fn compress(compressor: &mut zstd::bulk::Compressor<'_>, payload: &[u8]) -> Vec<u8> {
    let mut stored = vec![0u8; 4 + zstd::zstd_safe::compress_bound(payload.len())];
    stored[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let frame = compressor
        .compress_to_buffer(payload, &mut stored[4..])
        .expect("zstd compresses any input within its bound");
    stored.truncate(4 + frame);
    stored
}

/// zstd compression contexts kept between appends: a context's match tables
/// are allocated and set up when it is made, which a record need not pay.
/// Appenders take one each, so the pool holds as many as appended at once,
/// up to `MAX_IDLE`.
#[derive(Default)]
struct Compressors(Mutex<Vec<zstd::bulk::Compressor<'static>>>);

impl Compressors {
    /// Idle contexts kept; more are dropped when returned.
    const MAX_IDLE: usize = 16;

    fn compress(&self, payload: &[u8]) -> Vec<u8> {
        let idle = self.0.lock().expect("poisoned").pop();
        let mut compressor = idle.unwrap_or_else(|| {
            zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd context at a valid level")
        });
        let stored = compress(&mut compressor, payload);
        let mut pool = self.0.lock().expect("poisoned");
        if pool.len() < Self::MAX_IDLE {
            pool.push(compressor);
        }
        stored
    }
}

impl std::fmt::Debug for Compressors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressors").finish_non_exhaustive()
    }
}

/// Returns the payload of stored bytes, or `None` when they do not decompress
/// to the length they claim.
fn decompress(decompressor: &mut zstd::bulk::Decompressor<'_>, stored: &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?) as usize;
    if len > MAX_RECORD_BYTES as usize {
        return None;
    }
    decompressor
        .decompress(&stored[4..], len)
        .ok()
        .filter(|p| p.len() == len)
}

/// Decompresses the stored bytes of `records` (offset, bytes), in order, on
/// every core: a replay is otherwise bound by one thread inflating the whole
/// log. Each thread takes a contiguous share and keeps one zstd context for
/// it. Adds each record's bytes to `read` as it is done.
fn decompress_all(records: &[(usize, &[u8])], read: &AtomicU64) -> Vec<Option<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = records.len().div_ceil(threads).max(1);
    let inflate = |part: &[(usize, &[u8])]| -> Vec<Option<Vec<u8>>> {
        let mut decompressor = zstd::bulk::Decompressor::new().expect("a zstd context");
        part.iter()
            .map(|(_, stored)| {
                let payload = decompress(&mut decompressor, stored);
                read.fetch_add(RECORD_HEADER_LEN + stored.len() as u64, Ordering::Relaxed);
                payload
            })
            .collect()
    };
    if records.len() <= share {
        return inflate(records);
    }
    std::thread::scope(|s| {
        let parts: Vec<_> = records
            .chunks(share)
            .map(|part| s.spawn(move || inflate(part)))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("decompressing a log record panicked"))
            .collect()
    })
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Returns the sequences of the segments in `dir`, in order.
pub fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads every record of every segment in `dir`, oldest first.
///
/// Damage is skipped and reported (also with `warn!`): a torn tail is
/// truncated away so the segment is clean afterwards, a record with a bad
/// checksum is skipped and the records after it are kept. Only I/O errors and
/// an unknown format version fail.
pub fn replay(dir: &Path) -> Result<(Vec<Record>, ReplayReport)> {
    replay_with(dir, &ReplayProgress::default())
}

/// [`replay`], counting the bytes it reads in `progress` as it goes.
pub fn replay_with(dir: &Path, progress: &ReplayProgress) -> Result<(Vec<Record>, ReplayReport)> {
    let mut records = Vec::new();
    let mut report = ReplayReport::default();
    let sequences = segments(dir)?;
    let total: u64 = sequences
        .iter()
        .filter_map(|&seq| fs::metadata(segment_path(dir, seq)).ok())
        .map(|m| m.len())
        .sum();
    progress.bytes_total.store(total, Ordering::Relaxed);
    // Bytes of the segments before the one being read.
    let mut before = 0u64;
    for seq in sequences {
        let path = segment_path(dir, seq);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io_err(&path))?;
        report.segments += 1;
        let first_skipped = report.skipped.len();
        let mut skip = |offset: u64, bytes: u64, damage: Damage| {
            warn!(segment = seq, offset, bytes, ?damage, path = %path.display(), "skipping damaged write-ahead log data");
            report.skipped.push(Skipped {
                segment: seq,
                offset,
                bytes,
                damage,
            });
        };
        if data.len() < HEADER_LEN as usize || &data[..8] != MAGIC {
            skip(0, data.len() as u64, Damage::BadHeader);
            // Nothing in it can be trusted; leave an empty, valid segment.
            rewrite_header(&path)?;
            before += data.len() as u64;
            continue;
        }
        let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION && version != UNCOMPRESSED_VERSION {
            return Err(Error::Version { path, version });
        }
        // Checksums first, in order; then the intact records' payloads,
        // decompressed on every core.
        let mut intact = Vec::new();
        let mut pos = HEADER_LEN as usize;
        let mut truncate_at = None;
        while pos < data.len() {
            let rest = &data[pos..];
            if rest.len() < RECORD_HEADER_LEN as usize {
                skip(pos as u64, rest.len() as u64, Damage::TornTail);
                truncate_at = Some(pos);
                break;
            }
            let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            let end = RECORD_HEADER_LEN as usize + len as usize;
            if len > MAX_RECORD_BYTES || rest.len() < end {
                skip(pos as u64, rest.len() as u64, Damage::TornTail);
                truncate_at = Some(pos);
                break;
            }
            let stored = &rest[RECORD_HEADER_LEN as usize..end];
            if crc32fast::hash(stored) == crc {
                intact.push((pos, stored));
            } else {
                skip(pos as u64, end as u64, Damage::BadChecksum);
            }
            pos += end;
        }
        let payloads = if version == UNCOMPRESSED_VERSION {
            intact
                .iter()
                .map(|(_, stored)| Some(stored.to_vec()))
                .collect()
        } else {
            decompress_all(&intact, &progress.bytes_read)
        };
        for ((pos, stored), payload) in intact.iter().zip(payloads) {
            match payload {
                Some(payload) => {
                    records.push(Record {
                        segment: seq,
                        offset: *pos as u64,
                        payload,
                    });
                    report.records += 1;
                }
                // Its checksum matched: written so by a broken writer, not torn.
                None => skip(
                    *pos as u64,
                    RECORD_HEADER_LEN + stored.len() as u64,
                    Damage::BadChecksum,
                ),
            }
        }
        // In the order of the segment, as the records are.
        report.skipped[first_skipped..].sort_by_key(|s| s.offset);
        before += data.len() as u64;
        progress.bytes_read.store(before, Ordering::Relaxed);
        if let Some(at) = truncate_at {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(at as u64).map_err(io_err(&path))?;
            f.sync_all().map_err(io_err(&path))?;
        }
    }
    Ok((records, report))
}

fn rewrite_header(path: &Path) -> Result<()> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(&header()).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

#[derive(Debug)]
struct State {
    file: Arc<File>,
    /// Sequence of the segment being written.
    seq: u64,
    /// Bytes in the current segment, header included.
    size: u64,
    /// Encoded records waiting for the next group write.
    queue: Vec<u8>,
    /// Ticket of the last record queued.
    queued: u64,
    /// Every ticket up to this one is written: durable, unless it is in
    /// `failed_batches`.
    synced: u64,
    /// A leader is writing outside the lock.
    writing: bool,
    /// Groups whose write failed (a full disk, say) and were cut off the
    /// segment again: their tickets get the error. Each entry goes once every
    /// appender of it has been told.
    failed_batches: Vec<FailedBatch>,
    /// The segment could not be restored after a failed write; the log takes
    /// no more records.
    failed: Option<String>,
}

/// Tickets `from..=to` were not written, for `why`.
#[derive(Debug)]
struct FailedBatch {
    from: u64,
    to: u64,
    why: String,
    /// Appenders of the batch not yet told.
    waiting: u64,
}

/// An open write-ahead log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// Held for as long as the log is open.
    _lock: DirLock,
    options: WalOptions,
    state: Mutex<State>,
    done: Condvar,
    metrics: WalMetrics,
    compressors: Compressors,
}

impl Wal {
    /// Opens the log in `dir` (created if missing) for appending, after taking
    /// its lock. Appends go to a new segment after the existing ones; [`replay`]
    /// them before.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Self> {
        Self::open_locked(DirLock::acquire(dir)?, options)
    }

    /// [`Wal::open`] in a directory already locked, e.g. while it was replayed.
    pub fn open_locked(lock: DirLock, options: WalOptions) -> Result<Self> {
        let dir = lock.dir().to_path_buf();
        let dir = dir.as_path();
        let seq = segments(dir)?.last().map_or(1, |s| s + 1);
        let file = create_segment(dir, seq)?;
        info!(dir = %dir.display(), segment = seq, "opened write-ahead log");
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            options,
            state: Mutex::new(State {
                file: Arc::new(file),
                seq,
                size: HEADER_LEN,
                queue: Vec::new(),
                queued: 0,
                synced: 0,
                writing: false,
                failed_batches: Vec::new(),
                failed: None,
            }),
            done: Condvar::new(),
            metrics: WalMetrics::detached(),
            compressors: Compressors::default(),
        })
    }

    /// Records appends, fsyncs and segments into `metrics` from now on,
    /// starting with the segments already in the directory.
    pub fn with_metrics(mut self, metrics: WalMetrics) -> Self {
        match segments(&self.dir) {
            Ok(s) => metrics.segments.set(s.len() as i64),
            Err(e) => warn!(error = %e, "counting write-ahead log segments failed"),
        }
        self.metrics = metrics;
        self
    }

    /// Returns the directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the sequence of the segment being written.
    pub fn current_segment(&self) -> u64 {
        self.lock().seq
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("poisoned")
    }

    /// Appends `payload` and returns once it is durable (written and fsynced),
    /// with the sequence of a segment at or before the one that holds it.
    ///
    /// A write that fails (the disk is full) fails the appends of its group
    /// and is cut off the segment again, so the next appends are tried afresh:
    /// the log recovers by itself when space returns.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        let started = std::time::Instant::now();
        let result = self.append_timed(payload);
        self.metrics
            .append_duration
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.append_failures.inc();
        }
        result
    }

    fn append_timed(&self, payload: &[u8]) -> Result<u64> {
        if payload.len() > MAX_RECORD_BYTES as usize {
            return Err(Error::TooLarge(payload.len()));
        }
        let stored = self.compressors.compress(payload);
        let len = u32::try_from(stored.len())
            .ok()
            .filter(|&l| l <= MAX_RECORD_BYTES)
            .ok_or(Error::TooLarge(payload.len()))?;
        let mut s = self.lock();
        if let Some(why) = &s.failed {
            return Err(Error::Failed(why.clone()));
        }
        let segment = s.seq;
        s.queue.extend_from_slice(&len.to_le_bytes());
        s.queue
            .extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
        s.queue.extend_from_slice(&stored);
        s.queued += 1;
        let ticket = s.queued;
        loop {
            if let Some(why) = &s.failed {
                return Err(Error::Failed(why.clone()));
            }
            if s.synced >= ticket {
                if let Some(i) = s
                    .failed_batches
                    .iter()
                    .position(|b| (b.from..=b.to).contains(&ticket))
                {
                    let batch = &mut s.failed_batches[i];
                    let why = batch.why.clone();
                    batch.waiting -= 1;
                    if batch.waiting == 0 {
                        s.failed_batches.swap_remove(i);
                    }
                    return Err(Error::Write(why));
                }
                return Ok(segment);
            }
            if s.writing {
                s = self.done.wait(s).expect("poisoned");
                continue;
            }
            // Become the leader: write and sync everything queued so far.
            s = self.write_queued(s);
        }
    }

    /// Writes the queue as one group outside the lock; returns the lock again.
    fn write_queued<'a>(&'a self, mut s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let batch = std::mem::take(&mut s.queue);
        let target = s.queued;
        let first = s.synced + 1;
        let file = s.file.clone();
        let seq = s.seq;
        let good = s.size;
        s.writing = true;
        drop(s);
        let result = (&*file).write_all(&batch).and_then(|()| {
            if self.options.fsync {
                let started = std::time::Instant::now();
                let synced = file.sync_data();
                self.metrics
                    .fsync_duration
                    .observe(started.elapsed().as_secs_f64());
                synced
            } else {
                Ok(())
            }
        });
        let mut s = self.lock();
        s.writing = false;
        match result {
            Ok(()) => {
                s.synced = target;
                s.size += batch.len() as u64;
                self.metrics.written_bytes.inc_by(batch.len() as u64);
                if s.size >= self.options.max_segment_bytes
                    && let Err(e) = self.rotate_locked(&mut s)
                {
                    // Not fatal: the current segment grows until a rotation works.
                    warn!(error = %e, "starting a new write-ahead log segment failed");
                }
            }
            Err(e) => {
                let path = segment_path(&self.dir, seq);
                warn!(path = %path.display(), error = %e, "write-ahead log write failed");
                // Cut the partial group off, so the segment ends at its last
                // whole record and the next group is written after it.
                let restored = file
                    .set_len(good)
                    .and_then(|()| (&*file).seek(SeekFrom::Start(good)).map(|_| ()));
                match restored {
                    Ok(()) => {
                        s.failed_batches.push(FailedBatch {
                            from: first,
                            to: target,
                            why: format!("{}: {e}", path.display()),
                            waiting: target - first + 1,
                        });
                        s.synced = target;
                    }
                    Err(cut) => {
                        warn!(path = %path.display(), error = %cut, "cutting a failed write off the write-ahead log failed");
                        s.failed = Some(format!("{}: {e}; then {cut}", path.display()));
                    }
                }
            }
        }
        self.done.notify_all();
        s
    }

    /// Closes the current segment and starts a new one. Returns the sequence of
    /// the closed segment: every record appended before this call is in it or
    /// in an earlier one.
    pub fn rotate(&self) -> Result<u64> {
        let mut s = self.lock();
        loop {
            if let Some(why) = &s.failed {
                return Err(Error::Failed(why.clone()));
            }
            if s.writing {
                s = self.done.wait(s).expect("poisoned");
            } else if s.synced < s.queued {
                s = self.write_queued(s);
            } else {
                break;
            }
        }
        let closed = s.seq;
        self.rotate_locked(&mut s)?;
        Ok(closed)
    }

    fn rotate_locked(&self, s: &mut State) -> Result<()> {
        let seq = s.seq + 1;
        let file = create_segment(&self.dir, seq)?;
        s.file = Arc::new(file);
        s.seq = seq;
        s.size = HEADER_LEN;
        self.metrics.segments.inc();
        Ok(())
    }

    /// Deletes every closed segment with a sequence below `checkpoint` (the
    /// current segment is never deleted). Returns how many were deleted.
    pub fn delete_before(&self, checkpoint: u64) -> Result<usize> {
        let current = self.current_segment();
        let mut deleted = 0;
        for seq in segments(&self.dir)? {
            if seq >= checkpoint || seq >= current {
                break;
            }
            let path = segment_path(&self.dir, seq);
            fs::remove_file(&path).map_err(io_err(&path))?;
            self.metrics.segments.dec();
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<File> {
    let path = segment_path(dir, seq);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(&header()).map_err(io_err(&path))?;
    f.sync_all().map_err(io_err(&path))?;
    sync_dir(dir)?;
    Ok(f)
}

/// Makes a created or removed file name durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests;
