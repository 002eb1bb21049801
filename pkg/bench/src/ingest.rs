//! (a) the decode floor and (b) single-threaded ingest through the real
//! distributor path, both as whole passes over the mix for a minimum time.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use ember_distributor::Distributor;
use ember_ingester::{Ingester, IngesterConfig};
use ember_limits::Limits;
use ember_model::{Labels, ingest::series_for, new_profile_id, pprof};
use ember_time::SystemClock;
use object_store::memory::InMemory;

use crate::{
    BoxResult, TENANT,
    corpus::{Corpus, Input, unlimited},
};

/// Returns the CPU time the calling thread has used so far.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Throughput of one measured loop. Rates use the loop's CPU time, so that
/// they are per core and other processes on the machine skew them less.
#[derive(Debug, Clone)]
pub(crate) struct Rate {
    pub(crate) profiles: u64,
    /// Gzipped input bytes processed.
    pub(crate) bytes: u64,
    /// CPU time of the measuring thread.
    pub(crate) elapsed: Duration,
    pub(crate) wall: Duration,
    /// Time spent per input of the mix, summed over passes.
    pub(crate) per_input: Vec<Duration>,
    pub(crate) passes: u64,
}

impl Rate {
    pub(crate) fn profiles_per_sec(&self) -> f64 {
        self.profiles as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    /// Returns the mean time per profile.
    pub(crate) fn per_profile(&self) -> Duration {
        self.elapsed / self.profiles.max(1) as u32
    }

    /// Returns the mean wall-clock time per pass over the mix for input `i`.
    pub(crate) fn mean(&self, i: usize) -> Duration {
        self.per_input[i] / self.passes.max(1) as u32
    }
}

/// One measured loop: a name for errors and the work done per input.
pub(crate) type Loop<'a, T = Input> = (&'a str, &'a mut dyn FnMut(&T) -> BoxResult<()>);

/// One input of a measured loop: a name for errors and the bytes it counts.
pub(crate) trait Item {
    fn name(&self) -> &str;
    /// Bytes of the payload as uploaded.
    fn bytes(&self) -> usize;
}

impl Item for Input {
    fn name(&self) -> &str {
        &self.name
    }

    fn bytes(&self) -> usize {
        self.gz.len()
    }
}

/// Runs the loops in rounds, each round one pass over the mix per loop, until
/// the first loop has used `min` of CPU time. Interleaving the loops exposes
/// them all to the same background load, so their ratios stay meaningful on
/// a shared machine.
pub(crate) fn run_rounds<T: Item>(
    min: Duration,
    items: &[T],
    loops: &mut [Loop<'_, T>],
) -> BoxResult<Vec<Rate>> {
    let bytes: usize = items.iter().map(Item::bytes).sum();
    let mut rates = vec![
        Rate {
            profiles: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            wall: Duration::ZERO,
            per_input: vec![Duration::ZERO; items.len()],
            passes: 0,
        };
        loops.len()
    ];
    while rates[0].passes == 0 || rates[0].elapsed < min {
        for ((name, f), rate) in loops.iter_mut().zip(&mut rates) {
            let (wall, cpu) = (Instant::now(), thread_cpu_time());
            for (i, input) in items.iter().enumerate() {
                let t = Instant::now();
                f(input).map_err(|e| format!("{name} {}: {e}", input.name()))?;
                rate.per_input[i] += t.elapsed();
            }
            rate.elapsed += thread_cpu_time() - cpu;
            rate.wall += wall.elapsed();
            rate.passes += 1;
            rate.profiles += items.len() as u64;
            rate.bytes += bytes as u64;
        }
    }
    Ok(rates)
}

/// The results of (a) and (b), with the splits that say where ingest time goes.
#[derive(Debug)]
pub(crate) struct IngestResults {
    /// (a) gunzip + protobuf decode + validation.
    pub(crate) decode: Rate,
    /// The gunzip part of (a) alone.
    pub(crate) gunzip: Rate,
    /// (b) `Distributor::ingest_pprof`, one thread.
    pub(crate) ingest: Rate,
    /// Part of (b): series split + `Ingester::append` of decoded profiles, as
    /// the distributor does it but without its delta step and limit checks.
    pub(crate) append: Rate,
    /// `append` with the write-ahead log, fsync on (one thread: no group commit).
    pub(crate) append_wal: Rate,
    /// (b) into an `Ingester` with the write-ahead log, fsync off: the server's
    /// path but the disk's wait.
    pub(crate) ingest_wal: Rate,
    /// Bytes of write-ahead log segments `ingest_wal` left, to compare with
    /// the gzipped bytes it took (`ingest_wal.bytes`).
    pub(crate) wal_bytes: u64,
    /// The replay of those segments by a new ingester, as after a SIGKILL:
    /// the profiles it rebuilt and the wall time of `Ingester::open`.
    pub(crate) replay: (u64, Duration),
}

pub(crate) fn new_ingester() -> Arc<Ingester> {
    Arc::new(Ingester::new(
        IngesterConfig::default(),
        Arc::new(InMemory::new()),
        SystemClock::shared(),
    ))
}

/// Measures (a) and (b) on one thread, interleaved, until decoding alone
/// has used `min` of CPU time.
pub(crate) fn run(corpus: &Corpus, min: Duration) -> BoxResult<IngestResults> {
    let limits = unlimited();
    let mut decode = |i: &Input| -> BoxResult<()> {
        pprof::decode(&i.gz, &limits)?;
        Ok(())
    };
    let mut gunzip = |i: &Input| -> BoxResult<()> {
        pprof::gunzip_bounded(&i.gz, limits.max_decompressed_bytes)?;
        Ok(())
    };
    // No rate, size, label or series limit; decoding as in (a).
    let distributor_into = |sink: Arc<Ingester>| {
        Distributor::new(
            sink,
            Arc::new(Limits {
                max_decompressed_profile_size_bytes: limits.max_decompressed_bytes as u64,
                ..Limits::unlimited()
            }),
            SystemClock::shared(),
        )
    };
    let distributor = distributor_into(new_ingester());
    let mut ingest = |i: &Input| -> BoxResult<()> {
        distributor.ingest_pprof(TENANT, &i.labels, &i.gz)?;
        Ok(())
    };
    let ingester = new_ingester();
    let mut append = |i: &Input| append_to(&ingester, i);
    let wal_dirs = (tempfile::tempdir()?, tempfile::tempdir()?);
    let with_wal = |dir: &std::path::Path, fsync: bool| {
        let open = Ingester::open(
            IngesterConfig {
                wal_fsync: fsync,
                ..IngesterConfig::default()
            },
            Arc::new(InMemory::new()),
            SystemClock::shared(),
            dir,
        );
        // `run` is called from `block_in_place` on the runtime.
        tokio::runtime::Handle::current().block_on(open)
    };
    let (synced, unsynced) = (
        with_wal(wal_dirs.0.path(), true)?,
        Arc::new(with_wal(wal_dirs.1.path(), false)?),
    );
    let mut append_wal = |i: &Input| append_to(&synced, i);
    let logging = distributor_into(unsynced.clone());
    // Without deltas: the mix repeats each cumulative profile unchanged, so
    // its deltas would be zeros, which log far smaller than real ones.
    let no_delta: HashMap<&str, Labels> = corpus
        .inputs
        .iter()
        .map(|i| {
            let mut labels = i.labels.clone();
            labels.set("__delta__", "false");
            (i.name.as_str(), labels)
        })
        .collect();
    let mut ingest_wal = |i: &Input| -> BoxResult<()> {
        logging.ingest_pprof(TENANT, &no_delta[i.name.as_str()], &i.gz)?;
        Ok(())
    };
    let mut rates = run_rounds(
        min,
        &corpus.inputs,
        &mut [
            ("decode", &mut decode),
            ("gunzip", &mut gunzip),
            ("ingest", &mut ingest),
            ("append", &mut append),
            ("append+wal", &mut append_wal),
            ("ingest+wal-nosync", &mut ingest_wal),
        ],
    )?
    .into_iter();
    let mut next = || rates.next().expect("one rate per loop");
    let wal_bytes = ember_wal::segments(wal_dirs.1.path())?
        .into_iter()
        .map(|seq| {
            let path = wal_dirs.1.path().join(format!("{seq:020}.wal"));
            std::fs::metadata(path).map_or(0, |m| m.len())
        })
        .sum();
    // The process is not stopped: nothing is flushed or checkpointed, so the
    // new ingester finds the log as a killed one leaves it.
    let rows = |i: &Ingester| -> u64 { i.heads(TENANT).iter().map(|h| h.counts().profiles).sum() };
    let logged = rows(&unsynced);
    drop((logging, unsynced));
    let started = Instant::now();
    let replayed = with_wal(wal_dirs.1.path(), false)?;
    let replay_time = started.elapsed();
    if rows(&replayed) != logged {
        return Err(format!(
            "replay rebuilt {} profile rows of {logged}",
            rows(&replayed)
        )
        .into());
    }
    let (decode, gunzip, ingest, append, append_wal, ingest_wal) =
        (next(), next(), next(), next(), next(), next());
    Ok(IngestResults {
        replay: (ingest_wal.profiles, replay_time),
        decode,
        gunzip,
        ingest,
        append,
        append_wal,
        ingest_wal,
        wal_bytes,
    })
}

/// Appends one input of the mix to `ingester`, as the distributor would
/// after decoding.
fn append_to(ingester: &Ingester, i: &Input) -> BoxResult<()> {
    let series = series_for(&i.profile, &i.labels);
    let time = i.profile.header.time_nanos.max(1);
    ingester.append(TENANT, &i.profile, &series, time, new_profile_id())?;
    Ok(())
}
