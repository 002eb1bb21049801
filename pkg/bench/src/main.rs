//! Ember's end-to-end benchmark, run as
//! `cargo run --release -p ember-bench -- [--profiles N] [--per-file]`, or
//! `-- --cluster [--seconds S] [--warmup S] [--clients N]` for the push load
//! against real `ember` processes of [`cluster`], or `-- --reads [--hours H]`
//! for what one service's queries fetch from a delayed object store ([`reads`]),
//! `-- --flush-memory [--hours H]` for the peak memory of a flush and a
//! compaction ([`flush`]), or `-- --week [--days D]` for a week of ten pods
//! compacted and queried from S3 far away ([`week`]).
//!
//! On the real profiles of the shared corpus it measures, in one run:
//!
//! - (a) the decode floor: gunzip + pprof decode + validation, no limits;
//! - (b) single-threaded ingest through `Distributor::ingest_pprof` into an
//!   in-memory `Ingester`, which should reach at least half of (a);
//! - (e) folded and (f) JFR uploads of `/ingest`: the parse floor (gunzip +
//!   the `ember_formats` parser) and the full ingest (parse +
//!   `Distributor::ingest_profile`), which should reach a quarter of it;
//! - (c) `SelectMergeStacktraces`, `SelectSeries` and `SelectMergeProfile`
//!   over `N` profiles (10,000 by default) read back from Parquet blocks by a
//!   querier without an ingester, cold and warm;
//! - (d) bytes per stored sample in object storage, symbols included, for
//!   exact copies of the mix (best case), copies with their own values
//!   (realistic) and one service per profile (worst case for symbols).
//!
//! It prints Markdown tables (see `docs/benchmarks.md`) and writes nothing but
//! temporary directories, removed at exit. Throughput loops run whole passes
//! over the mix, interleaved, until decoding alone has used [`MIN_RUN`] of
//! CPU time, and report rates per core from the thread's CPU time (the
//! machine is shared); query latencies are wall-clock.

mod cluster;
mod corpus;
mod flush;
mod formats;
mod ingest;
mod metrics;
mod query;
mod reads;
mod s3;
mod storage;
mod synth;
mod week;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use ember_model::ingest::series_for;

/// Every fallible step of the bench reports through this.
pub(crate) type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The tenant every profile is written to.
pub(crate) const TENANT: &str = "bench";
/// CPU time of the decode loop of (a); the loops of (b) run as many passes.
const MIN_RUN: Duration = Duration::from_secs(2);
/// Services of the main store in (c) and (d): each file of the mix always
/// goes to the same one, as a real service sends the same kinds of profile.
const SERVICES: usize = 5;
/// Profiles stored for each variant of (d); bytes per sample do not depend
/// on the count once it is many passes over the mix.
const VARIANT_PROFILES: usize = 2_000;
/// The profile type the queries of (c) select.
const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

#[derive(Debug)]
struct Args {
    profiles: usize,
    variant_profiles: usize,
    corpus: PathBuf,
    per_file: bool,
    /// Measures only what recording metrics costs the ingest path.
    metrics_overhead: bool,
    /// `Some` runs the cluster mode instead of everything else.
    cluster: Option<cluster::Options>,
    /// `Some(hours)` runs the reads mode instead of everything else.
    reads: Option<usize>,
    /// `Some(days)` runs the week mode instead of everything else.
    week: Option<usize>,
    /// `Some(hours)` runs the flush-memory mode instead of everything else.
    flush_memory: Option<usize>,
}

const USAGE: &str =
    "usage: ember-bench [--profiles N] [--variant-profiles N] [--corpus DIR] [--per-file]
       ember-bench --metrics-overhead [--corpus DIR]
       ember-bench --cluster [--seconds S] [--warmup S] [--clients N] [--corpus DIR]
       ember-bench --reads [--hours H] [--corpus DIR]
       ember-bench --week [--days D]
       ember-bench --flush-memory [--hours H]

  --profiles N          profiles stored and queried in (c) and (d) (default 10000)
  --variant-profiles N  profiles stored for each other variant of (d) (default 2000, 0 skips)
  --corpus DIR          pprof files to use (default: the shared test corpus)
  --per-file            also print decode and ingest time per file of the mix
  --metrics-overhead    instead, measure the metric calls of the ingest path against (b)
  --cluster             instead, push to real `ember` processes (EMBER_BIN, else `ember`
                        next to this binary): -target=all with WAL fsync on and off,
                        then 1 distributor + 3 ingesters
  --seconds S           measured time of each cluster setup (default 20)
  --warmup S            pushes before measuring, per cluster setup (default 5)
  --clients N           closed-loop client threads (default 8)
  --reads               instead, write H hourly blocks of ten services into a store that
                        delays every read request 20 ms, then count what one service's
                        flame graph and SelectSeries fetch, cold and warm
  --hours H             hours of blocks for --reads and --flush-memory (default 24)
  --flush-memory        instead, measure the peak RSS of flushing one head of H hours of
                        ten pods' synthetic CPU profiles, and of compacting H hourly blocks
  --week                instead, write D days of one service's ten pods (synthetic CPU
                        profiles every 15 s), compact them with their pre-aggregated
                        copies, then time the whole range's flame graph and SelectSeries
                        from moto S3 (EMBER_MOTO_SERVER) behind a 20 ms proxy, or from an
                        in-memory store with reads delayed 20 ms without it
  --days D              days of profiles for --week (default 7)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        profiles: 10_000,
        variant_profiles: VARIANT_PROFILES,
        // Set once the flags are read: finding the default may fail.
        corpus: PathBuf::new(),
        per_file: false,
        metrics_overhead: false,
        cluster: None,
        reads: None,
        week: None,
        flush_memory: None,
    };
    let mut hours = 24;
    let mut reads_mode = false;
    let mut flush_mode = false;
    let mut days = 7;
    let mut week_mode = false;
    let mut corpus = None;
    let mut cluster = cluster::Options {
        clients: 8,
        warmup: Duration::from_secs(5),
        measured: Duration::from_secs(20),
    };
    let mut cluster_mode = false;
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, flag: &str| {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--profiles" => args.profiles = number(it.next(), "--profiles")?,
            "--variant-profiles" => {
                args.variant_profiles = number(it.next(), "--variant-profiles")?;
            }
            "--corpus" => corpus = Some(it.next().map(PathBuf::from).ok_or(USAGE)?),
            "--per-file" => args.per_file = true,
            "--metrics-overhead" => args.metrics_overhead = true,
            "--cluster" => cluster_mode = true,
            "--reads" => reads_mode = true,
            "--flush-memory" => flush_mode = true,
            "--hours" => hours = number(it.next(), "--hours")?,
            "--week" => week_mode = true,
            "--days" => days = number(it.next(), "--days")?,
            "--seconds" => {
                cluster.measured = Duration::from_secs(number(it.next(), "--seconds")? as u64)
            }
            "--warmup" => {
                cluster.warmup = Duration::from_secs(number(it.next(), "--warmup")? as u64)
            }
            "--clients" => cluster.clients = number(it.next(), "--clients")?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.profiles == 0 {
        return Err("--profiles must be at least 1".into());
    }
    if cluster.clients == 0 || cluster.measured.is_zero() {
        return Err("--clients and --seconds must be at least 1".into());
    }
    if cluster_mode {
        args.cluster = Some(cluster);
    }
    if (reads_mode || flush_mode) && hours == 0 {
        return Err("--hours must be at least 1".into());
    }
    args.reads = reads_mode.then_some(hours);
    args.flush_memory = flush_mode.then_some(hours);
    if week_mode {
        if days == 0 {
            return Err("--days must be at least 1".into());
        }
        args.week = Some(days);
    }
    args.corpus = match corpus {
        Some(dir) => dir,
        None => corpus::default_dir().map_err(|e| format!("{e}; or pass --corpus DIR"))?,
    };
    Ok(args)
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

/// Returns the profile type with the most samples in one pass over the mix.
fn heaviest_type(corpus: &corpus::Corpus) -> String {
    let mut samples: BTreeMap<String, usize> = BTreeMap::new();
    for input in &corpus.inputs {
        for s in series_for(&input.profile, &input.labels) {
            let n = s.samples.map_or(input.profile.samples.len(), |v| v.len());
            *samples.entry(s.profile_type.id()).or_default() += n;
        }
    }
    samples
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(t, _)| t)
        .unwrap_or_default()
}

/// Everything one run measures.
#[derive(Debug)]
struct Results {
    ingest: ingest::IngestResults,
    formats: formats::FormatResults,
    stored: query::Stored,
    footprint: storage::Footprint,
    cpu: query::QueryResults,
    heavy: query::Flame,
    /// (d) variants: label, profiles stored, footprint.
    variants: Vec<(&'static str, usize, storage::Footprint)>,
    /// The heads of the variants before their flush, in the same order.
    variant_heads: Vec<query::HeadFootprint>,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // The cluster mode runs on the main thread, outside any runtime: the
    // servers it starts die with the thread that started them.
    let result = match &args.cluster {
        Some(options) => cluster::run(&args.corpus, options),
        None => tokio::runtime::Runtime::new()
            .map_err(Into::into)
            .and_then(|rt| rt.block_on(run(args))),
    };
    if let Err(e) = result {
        eprintln!("ember-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> BoxResult<()> {
    if let Some(days) = args.week {
        let results = week::run(days).await?;
        week::print(&results);
        return Ok(());
    }
    if let Some(hours) = args.flush_memory {
        flush::print(&flush::run(hours).await?);
        return Ok(());
    }
    let corpus = corpus::load(&args.corpus)
        .map_err(|e| format!("reading corpus {}: {e}", args.corpus.display()))?;
    if corpus.inputs.is_empty() {
        return Err(format!("no decodable profiles in {}", args.corpus.display()).into());
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "mix: {} files, {:.2} MB gzipped, {} samples per pass; load average at start: {}",
        corpus.inputs.len(),
        corpus.gz_bytes() as f64 / 1e6,
        corpus.samples(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    for (name, reason) in &corpus.skipped {
        println!("skipped: {name} ({reason})");
    }

    if let Some(hours) = args.reads {
        let results = reads::run(&corpus, hours).await?;
        reads::print(&results);
        return Ok(());
    }
    if args.metrics_overhead {
        eprintln!("(b) ingest and its metric calls, interleaved, {MIN_RUN:?} of ingest...");
        return tokio::task::block_in_place(|| metrics::run(&corpus, MIN_RUN));
    }
    eprintln!("(a, b) decode and ingest, interleaved, {MIN_RUN:?} of decoding...");
    let ingest = tokio::task::block_in_place(|| ingest::run(&corpus, MIN_RUN))?;
    let folded = formats::folded_uploads(&corpus);
    let jfr = [formats::jfr_upload(&formats::default_jfr())?];
    eprintln!(
        "(e, f) folded and JFR parse and ingest, interleaved, {MIN_RUN:?} of parsing each..."
    );
    let formats = tokio::task::block_in_place(|| formats::run(&folded, &jfr, MIN_RUN))?;

    eprintln!("(c) storing {} profiles...", args.profiles);
    let dir = tempfile::tempdir()?;
    let by_file = |_: usize, k: usize| format!("svc-{}", k % SERVICES);
    let stored = query::store_profiles(&corpus, args.profiles, dir.path(), by_file, false).await?;
    let footprint = storage::measure(dir.path())?;
    eprintln!("(c) querying...");
    let cpu = query::run(&stored, CPU_TYPE).await?;
    let heavy = query::flame(&stored, &heaviest_type(&corpus)).await?;

    let mut variants = Vec::new();
    let mut variant_heads = Vec::new();
    let n = args.variant_profiles;
    if n > 0 {
        eprintln!("(d) storing {n} jittered profiles, then {n} with one service each...");
        let dir = tempfile::tempdir()?;
        let jittered = query::store_profiles(&corpus, n, dir.path(), by_file, true).await?;
        variant_heads.push(jittered.head);
        variants.push((
            "5 services, each copy with its own values",
            n,
            storage::measure(dir.path())?,
        ));
        let dir = tempfile::tempdir()?;
        let unique = |i: usize, _: usize| format!("unique-{i}");
        let unique = query::store_profiles(&corpus, n, dir.path(), unique, false).await?;
        variant_heads.push(unique.head);
        variants.push((
            "one service per profile (worst case for symbols)",
            n,
            storage::measure(dir.path())?,
        ));
    }

    let results = Results {
        ingest,
        formats,
        stored,
        footprint,
        cpu,
        heavy,
        variants,
        variant_heads,
    };
    print_results(&results);
    if args.per_file {
        print_per_file(&corpus, &results.ingest);
    }
    Ok(())
}

fn flame_row(f: &query::Flame) {
    let s = &f.split;
    println!(
        "| (c) `SelectMergeStacktraces` {}: {} profiles ({} rows, {} samples), cold / warm | {} / {} ({} names) | < 1 s: {} |",
        f.profile_type,
        s.profiles,
        s.rows,
        s.samples,
        ms(f.latency.cold),
        ms(f.latency.warm),
        f.names,
        verdict(f.latency.cold.max(f.latency.warm) < Duration::from_secs(1))
    );
}

fn footprint_row(label: &str, n: usize, fp: &storage::Footprint, aim: &str) {
    let profiles = fp.file("profiles.parquet");
    let other = fp.total() - profiles - fp.symbols();
    println!(
        "| (d) bytes/sample, {n} profiles, {label}: total (profiles + symbols + series, meta) | {:.2} ({:.2} + {:.2} + {:.2}) | {aim} |",
        fp.per_sample(fp.total()),
        fp.per_sample(profiles),
        fp.per_sample(fp.symbols()),
        fp.per_sample(other),
    );
}

fn head_row(label: &str, n: usize, h: &query::HeadFootprint) {
    println!(
        "| (c) head resident bytes/sample before the flush, {n} profiles, {label}: heap (`ember_ingester_head_bytes`) / RSS growth of the appends | {:.2} ({:.1} MB) / {:.2} ({:.1} MB), {} samples | ≤ 15: {} |",
        h.per_sample(h.bytes),
        h.bytes as f64 / 1e6,
        h.per_sample(h.rss_growth),
        h.rss_growth as f64 / 1e6,
        h.samples,
        verdict(h.per_sample(h.bytes) <= 15.0)
    );
}

fn split_row(f: &query::Flame) {
    let s = &f.split;
    println!(
        "| (c) flame graph {}: open blocks / load symbols (once per querier); read profiles.parquet / scan + sum / scan + sum + resolve (`merge_tree`) / `to_flamegraph` (per query) | {} / {}; {} / {} / {} / {} |",
        f.profile_type,
        ms(s.open),
        ms(s.symbols),
        ms(s.fetch),
        ms(s.scan),
        ms(s.merge_tree),
        ms(s.to_flamegraph)
    );
}

fn format_rows(step: &str, parser: &str, f: &formats::FormatRates) {
    println!(
        "| {step} parse floor: gunzip + {parser}, 1 core ({} uploads, {:.0} KB, {} profiles, {} samples a pass) | {:.1} MB/s, {:.0} uploads/s | — |",
        f.uploads,
        f.bytes as f64 / 1e3,
        f.profiles,
        f.samples,
        f.parse.mb_per_sec(),
        f.parse.profiles_per_sec()
    );
    println!(
        "| {step} ingest: parse + `Distributor::ingest_profile` into an `Ingester`, 1 core | {:.1} MB/s, {:.0} uploads/s = {:.1}% of its floor | ≥ 25% of its floor: {} |",
        f.ingest.mb_per_sec(),
        f.ingest.profiles_per_sec(),
        f.ratio() * 100.0,
        verdict(f.ratio() >= 0.25)
    );
}

fn print_results(r: &Results) {
    let ing = &r.ingest;
    let ratio = ing.ingest.mb_per_sec() / ing.decode.mb_per_sec();
    let n = r.stored.profiles;
    println!();
    println!("| step | result | aim |");
    println!("|---|---|---|");
    println!(
        "| (a) decode floor: gunzip + decode + validate, 1 core | {:.1} MB/s, {:.0} profiles/s | — |",
        ing.decode.mb_per_sec(),
        ing.decode.profiles_per_sec()
    );
    println!(
        "| (b) ingest: `Distributor::ingest_pprof` into an `Ingester`, 1 core | {:.1} MB/s, {:.0} profiles/s = {:.1}% of (a) | ≥ 50% of (a): {} |",
        ing.ingest.mb_per_sec(),
        ing.ingest.profiles_per_sec(),
        ratio * 100.0,
        verdict(ratio >= 0.5)
    );
    format_rows("(e) folded", "`folded::parse`", &r.formats.folded);
    format_rows("(f) JFR", "`jfr::parse`", &r.formats.jfr);
    println!(
        "| (c) store {n} profiles: append (decoded) / `flush_all` to Parquet | {} / {} | — |",
        ms(r.stored.append),
        ms(r.stored.flush)
    );
    flame_row(&r.cpu.flame);
    flame_row(&r.heavy);
    println!(
        "| (c) `SelectSeries` {CPU_TYPE} by service, step 300 s, cold / warm | {} / {} ({} series) | — |",
        ms(r.cpu.series.cold),
        ms(r.cpu.series.warm),
        r.cpu.series_count
    );
    println!(
        "| (c) `SelectMergeProfile` {CPU_TYPE}, cold / warm | {} / {} ({} samples) | — |",
        ms(r.cpu.merge_profile.cold),
        ms(r.cpu.merge_profile.warm),
        r.cpu.pprof_samples
    );
    let exact = "5 services, exact copies of the mix";
    let met = r.footprint.per_sample(r.footprint.total()) < 5.0;
    footprint_row(exact, n, &r.footprint, &format!("< 5: {}", verdict(met)));
    for (label, n, fp) in &r.variants {
        footprint_row(label, *n, fp, "—");
    }
    head_row(exact, n, &r.stored.head);
    for ((label, n, _), head) in r.variants.iter().zip(&r.variant_heads) {
        head_row(label, *n, head);
    }

    println!();
    println!("| where the time goes | time |");
    println!("|---|---|");
    println!(
        "| (a) per profile: decode / of which gunzip | {} / {} |",
        us(ing.decode.per_profile()),
        us(ing.gunzip.per_profile())
    );
    let rest = ing
        .ingest
        .per_profile()
        .saturating_sub(ing.decode.per_profile() + ing.append.per_profile());
    println!(
        "| (b) per profile: `ingest_pprof` = decode (a) + series split and `Ingester::append` + the rest (delta of cumulative types, limits, series admission) | {} = {} + {} + {} |",
        us(ing.ingest.per_profile()),
        us(ing.decode.per_profile()),
        us(ing.append.per_profile()),
        us(rest)
    );
    println!(
        "| (b) per profile: `Ingester::append` / with the write-ahead log and fsync (one thread, so no group commit; the profile encoded for the log) | {} / {} |",
        us(ing.append.per_profile()),
        us(ing.append_wal.per_profile())
    );
    println!(
        "| (b) per profile: `ingest_pprof` / the same into an `Ingester` with the write-ahead log, no fsync (the server's path but the disk's wait) | {} / {} ({:.1} MB/s) |",
        us(ing.ingest.per_profile()),
        us(ing.ingest_wal.per_profile()),
        ing.ingest_wal.mb_per_sec()
    );
    println!(
        "| (b) write-ahead log bytes per gzipped byte received | {:.2} ({:.1} MB of log for {:.1} MB of pushes) |",
        ing.wal_bytes as f64 / ing.ingest_wal.bytes.max(1) as f64,
        ing.wal_bytes as f64 / 1e6,
        ing.ingest_wal.bytes as f64 / 1e6
    );
    let (replayed, replay) = ing.replay;
    println!(
        "| (b) write-ahead log replay by a new ingester (as after SIGKILL): `Ingester::open`, wall clock / profiles a second, vs (b) ingest | {:.0} ms for {replayed} profiles / {:.0} profiles/s = {:.1}× (b) |",
        replay.as_secs_f64() * 1e3,
        replayed as f64 / replay.as_secs_f64(),
        replayed as f64 / replay.as_secs_f64() / ing.ingest.profiles_per_sec(),
    );
    for (step, f) in [
        ("(e) folded", &r.formats.folded),
        ("(f) JFR", &r.formats.jfr),
    ] {
        println!(
            "| {step} per upload: ingest = parse + the rest | {} = {} + {} |",
            us(f.ingest.per_profile()),
            us(f.parse.per_profile()),
            us(f.ingest.per_profile().saturating_sub(f.parse.per_profile()))
        );
    }
    split_row(&r.cpu.flame);
    split_row(&r.heavy);

    let fp = &r.footprint;
    let files: Vec<String> = fp
        .files
        .iter()
        .map(|(name, bytes)| format!("{name} {:.1} KB", *bytes as f64 / 1e3))
        .collect();
    println!();
    println!(
        "stored: {} block(s), {} samples, {:.2} MB: {}",
        fp.blocks,
        fp.samples,
        fp.total() as f64 / 1e6,
        files.join(", ")
    );
    println!(
        "wall clock: (a) {:.1} s, (b) {:.1} s for {} and {} profiles; rates above use the thread's CPU time",
        ing.decode.wall.as_secs_f64(),
        ing.ingest.wall.as_secs_f64(),
        ing.decode.profiles,
        ing.ingest.profiles
    );
}

fn print_per_file(corpus: &corpus::Corpus, ing: &ingest::IngestResults) {
    println!();
    println!(
        "| file (wall clock per profile) | KB gz | samples | decode | ingest | append | ingest / decode |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, input) in corpus.inputs.iter().enumerate() {
        let (d, g, a) = (ing.decode.mean(i), ing.ingest.mean(i), ing.append.mean(i));
        println!(
            "| {} | {:.1} | {} | {} | {} | {} | {:.2} |",
            input.name,
            input.gz.len() as f64 / 1e3,
            input.profile.samples.len(),
            us(d),
            us(g),
            us(a),
            g.as_secs_f64() / d.as_secs_f64()
        );
    }
}
