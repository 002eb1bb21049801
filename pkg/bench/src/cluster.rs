//! Push load against real `ember` processes on loopback (`--cluster`):
//! `-target=all` with the write-ahead log's fsync on and off, then one
//! distributor in front of three ingesters with replication factor 3.
//!
//! Client threads push in a closed loop (each sends its next push as soon as
//! the previous one is answered) over their own keep-alive connection, as
//! `POST /push.v1.PusherService/Push` with a `push.v1.PushRequest` body, for a
//! warm-up and then a measured window. Each push carries one gzipped pprof of
//! the mix, with `service_name` one of [`SERVICES`](crate::SERVICES) and the
//! current time as its `time_nanos`. Server processes are killed at the end,
//! also when the bench fails or panics ([`Processes`]), and with the bench
//! itself (`PR_SET_PDEATHSIG`).

use std::{
    io::{Read, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Child,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ember_proto::{
    push::v1::{PushRequest, RawProfileSeries, RawSample},
    types::v1::LabelPair,
};
use ember_testkit::{
    ports::{free_gossip_port, free_port},
    process,
};
use flate2::{Compress, Compression, FlushCompress};
use prost::Message;
use tempfile::TempDir;

use crate::{BoxResult, SERVICES, corpus};

/// The Connect path of a push.
const PUSH_PATH: &str = "/push.v1.PusherService/Push";
/// How long a process may take to answer `GET /ready`, and a cluster to show
/// its ingesters ACTIVE.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Limits lifted on every process: the default 4 MB/s ingestion rate would be
/// the bottleneck, and some files of the mix have more than the default
/// 16,000 samples. Everything else is the server's default.
const LIMIT_FLAGS: &[&str] = &[
    "-limits.ingestion-rate-mb=0",
    "-limits.max-samples-per-profile=0",
    "-limits.max-stack-depth=0",
];

/// Options of the cluster mode.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) clients: usize,
    pub(crate) warmup: Duration,
    pub(crate) measured: Duration,
}

/// One gzipped pprof of the mix, stored so that a push can stamp the current
/// time into it without compressing again: the deflate stream is sync-flushed
/// (it ends on a byte boundary, not final), and each push appends a final
/// stored block holding a `time_nanos` field, which wins over the profile's
/// own as protobuf's last value of a scalar field does, then the gzip trailer.
#[derive(Debug)]
struct Payload {
    /// Gzip header and the sync-flushed deflate stream of the profile.
    head: Vec<u8>,
    /// CRC-32 of the uncompressed profile, continued per push.
    crc: crc32fast::Hasher,
    raw_len: usize,
}

impl Payload {
    fn new(gz: &[u8]) -> BoxResult<Self> {
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut raw)?;
        // Gzip header: magic, deflate, no flags, no mtime, no extra flags, Unix.
        let mut head = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        let mut deflate = Compress::new(Compression::default(), false);
        loop {
            head.reserve(64 * 1024);
            let done = usize::try_from(deflate.total_in())?;
            deflate.compress_vec(&raw[done..], &mut head, FlushCompress::Sync)?;
            if usize::try_from(deflate.total_in())? == raw.len() && head.len() < head.capacity() {
                break;
            }
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&raw);
        Ok(Self {
            head,
            crc,
            raw_len: raw.len(),
        })
    }

    /// Returns the gzipped profile with `time_nanos` set to `time_nanos`.
    fn gzip_at(&self, time_nanos: i64) -> Vec<u8> {
        // Field 9 (`time_nanos`), wire type 0 (varint).
        let mut field = vec![9 << 3];
        let mut v = time_nanos as u64;
        while v >= 0x80 {
            field.push((v as u8) | 0x80);
            v >>= 7;
        }
        field.push(v as u8);
        let mut crc = self.crc.clone();
        crc.update(&field);
        let len = field.len() as u16;
        let mut out = Vec::with_capacity(self.head.len() + field.len() + 13);
        out.extend_from_slice(&self.head);
        // A final stored block: BFINAL = 1, BTYPE = 00, padded to the byte.
        out.push(1);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(&field);
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&((self.raw_len + field.len()) as u32).to_le_bytes());
        out
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Returns the user + system CPU time of process `pid` (`self` for the bench).
fn cpu_time(pid: &str) -> Duration {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces: state is the
    // first, utime and stime the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_secs_f64((field(11) + field(12)) as f64 / ticks)
}

/// One running `ember` process.
#[derive(Debug)]
struct Process {
    role: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Process {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cpu_time(&self) -> Duration {
        cpu_time(&self.child.id().to_string())
    }

    fn log_tail(&self) -> String {
        process::log_tail(&self.log, 30)
    }

    /// Returns an error with the end of the log if the process has exited.
    fn check_running(&mut self) -> BoxResult<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!(
                "ember {} exited ({status}); end of {}:\n{}",
                self.role,
                self.log.display(),
                self.log_tail()
            )
            .into()),
        }
    }
}

/// The `ember` processes of one setup and their directories. Dropping it
/// kills every process with SIGKILL, so a failing or panicking bench leaves
/// none behind; nothing needs flushing, the data is thrown away.
#[derive(Debug)]
struct Processes {
    bin: PathBuf,
    running: Vec<Process>,
    dir: TempDir,
}

impl Processes {
    fn new() -> BoxResult<Self> {
        Ok(Self {
            bin: process::ember_binary()?,
            running: Vec::new(),
            dir: tempfile::Builder::new()
                .prefix("ember-bench-cluster-")
                .tempdir()?,
        })
    }

    /// Starts `ember` with `args` after the loopback, port and storage flags
    /// and waits until it is ready; `name` names its directory and log.
    fn start(&mut self, role: &'static str, name: &str, args: &[String]) -> BoxResult<usize> {
        let port = free_port();
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data)?;
        let log = self.dir.path().join(format!("{name}.log"));
        let mut cmd = process::ember_command(&self.bin, port, &data);
        cmd.args(LIMIT_FLAGS).args(args).current_dir(&data);
        process::log_output(&mut cmd, &log)?;
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                // Killed with the bench, even by a signal that skips Drop.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        self.running.push(Process {
            role,
            child,
            port,
            log,
        });
        let p = self.running.last_mut().expect("just pushed");
        let url = format!("{}/ready", p.url());
        match process::wait_ready(&mut p.child, &url, START_TIMEOUT) {
            Ok(()) => Ok(self.running.len() - 1),
            Err(why) => Err(format!(
                "ember {name} did not get ready: {why}; end of {}:\n{}",
                p.log.display(),
                p.log_tail()
            )
            .into()),
        }
    }

    /// Waits until the ring seen by process `i` has `n` ACTIVE ingesters.
    fn wait_for_ingesters(&mut self, i: usize, n: usize) -> BoxResult<()> {
        let url = format!("{}/ring?format=json", self.running[i].url());
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut last = String::new();
            if let Ok(resp) = agent.get(&url).call() {
                let json: serde_json::Value = serde_json::from_str(&resp.into_string()?)?;
                let members = json["members"].as_array().cloned().unwrap_or_default();
                let active = members
                    .iter()
                    .filter(|m| m["roles"]["ingester"].as_bool() == Some(true))
                    .filter(|m| m["state"].as_str() == Some("ACTIVE"))
                    .count();
                if active == n {
                    return Ok(());
                }
                last = format!("{active} ACTIVE ingesters");
            }
            for p in &mut self.running {
                p.check_running()?;
            }
            if Instant::now() > deadline {
                return Err(format!("ring never showed {n} ACTIVE ingesters ({last})").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.running {
            process::kill(&mut p.child);
        }
    }
}

/// The processes a setup runs.
#[derive(Debug, Clone, Copy)]
enum Topology {
    /// One `-target=all`; `fsync` is `ingester.wal_fsync`.
    Single { fsync: bool },
    /// One distributor and three ingesters, replication factor 3.
    Cluster,
}

/// Starts `topology`; returns its processes and the index of the one that
/// takes pushes.
fn start(topology: Topology) -> BoxResult<(Processes, usize)> {
    let mut procs = Processes::new()?;
    match topology {
        Topology::Single { fsync } => {
            let args = [
                "-target=all".to_string(),
                format!("-memberlist.bind-port={}", free_gossip_port()),
                format!("-ingester.wal-fsync={fsync}"),
            ];
            let i = procs.start("all", "all", &args)?;
            Ok((procs, i))
        }
        Topology::Cluster => {
            let seed = free_gossip_port();
            let args = [
                "-target=distributor".to_string(),
                format!("-memberlist.bind-port={seed}"),
                "-memberlist.node-name=distributor".to_string(),
            ];
            let d = procs.start("distributor", "distributor", &args)?;
            for n in 1..=3 {
                let name = format!("ingester-{n}");
                let args = [
                    "-target=ingester".to_string(),
                    format!("-memberlist.join=127.0.0.1:{seed}"),
                    format!("-memberlist.bind-port={}", free_gossip_port()),
                    format!("-memberlist.node-name={name}"),
                ];
                procs.start("ingester", &name, &args)?;
            }
            procs.wait_for_ingesters(d, 3)?;
            Ok((procs, d))
        }
    }
}

/// What one client thread saw in the measured window.
#[derive(Debug, Default)]
struct ClientLog {
    /// Latency of each successful push answered in the window, in µs.
    latencies_us: Vec<u32>,
    bytes: u64,
    errors: u64,
    /// Failed pushes during the warm-up.
    warmup_errors: u64,
    first_error: Option<String>,
}

fn push_body(service: &str, gz: Vec<u8>) -> Vec<u8> {
    PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![LabelPair {
                name: "service_name".into(),
                value: service.into(),
            }],
            samples: vec![RawSample {
                raw_profile: gz,
                id: String::new(),
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Pushes in a closed loop until `end`, from payload `start` of the mix on,
/// recording pushes answered between `from` and `end`; `n` names the client.
fn client(
    url: &str,
    payloads: &[Payload],
    (n, start): (usize, usize),
    from: Instant,
    end: Instant,
) -> ClientLog {
    // One agent per thread: ureq keeps one idle connection per host and agent.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut log = ClientLog::default();
    let mut buf = Vec::new();
    let mut k = start;
    while Instant::now() < end {
        let payload = &payloads[k % payloads.len()];
        let service = format!("bench-svc-{}", k % SERVICES);
        k += 1;
        let gz = payload.gzip_at(now_nanos());
        let bytes = gz.len() as u64;
        let body = push_body(&service, gz);
        let sent = Instant::now();
        let result = agent
            .post(url)
            .set("Content-Type", "application/proto")
            .send_bytes(&body);
        let error = match result {
            Ok(resp) => {
                buf.clear();
                match resp.into_reader().read_to_end(&mut buf) {
                    Ok(_) => None,
                    Err(e) => Some(format!("reading the answer: {e}")),
                }
            }
            Err(ureq::Error::Status(code, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                Some(format!("HTTP {code}: {}", text.trim()))
            }
            Err(e) => Some(e.to_string()),
        };
        let done = Instant::now();
        if done > end {
            break;
        }
        match error {
            None if done >= from => {
                log.latencies_us
                    .push(u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX));
                log.bytes += bytes;
            }
            None => {}
            Some(e) => {
                if done >= from {
                    log.errors += 1;
                } else {
                    log.warmup_errors += 1;
                }
                if log.first_error.is_none() {
                    eprintln!("client {n}: push failed: {e}");
                    log.first_error = Some(e);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    log
}

/// The measurements of one setup.
#[derive(Debug)]
struct Outcome {
    name: &'static str,
    window: Duration,
    pushes: usize,
    bytes: u64,
    /// Sorted latencies of successful pushes, µs.
    latencies_us: Vec<u32>,
    errors: u64,
    warmup_errors: u64,
    /// Server CPU time in the window by role, in order of first appearance.
    server_cpu: Vec<(&'static str, Duration)>,
    bench_cpu: Duration,
}

impl Outcome {
    fn per_sec(&self) -> f64 {
        self.pushes as f64 / self.window.as_secs_f64()
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let v = &self.latencies_us;
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        f64::from(v[i]) / 1e3
    }

    fn server_cpu(&self) -> Duration {
        self.server_cpu.iter().map(|(_, d)| *d).sum()
    }

    fn per_push_ms(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e3 / self.pushes.max(1) as f64
    }
}

fn measure(
    name: &'static str,
    topology: Topology,
    payloads: &Arc<Vec<Payload>>,
    opts: &Options,
) -> BoxResult<Outcome> {
    eprintln!("{name}: starting...");
    let (mut procs, entry) = start(topology)?;
    let url = format!("{}{PUSH_PATH}", procs.running[entry].url());
    eprintln!(
        "{name}: {} client(s), {:?} warm-up, {:?} measured...",
        opts.clients, opts.warmup, opts.measured
    );
    let from = Instant::now() + opts.warmup;
    let end = from + opts.measured;
    let threads: Vec<_> = (0..opts.clients)
        .map(|n| {
            let (url, payloads) = (url.clone(), payloads.clone());
            // Clients start at different places of the mix.
            let start = n * payloads.len() / opts.clients;
            std::thread::spawn(move || client(&url, &payloads, (n, start), from, end))
        })
        .collect();
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let server_before: Vec<Duration> = procs.running.iter().map(Process::cpu_time).collect();
    let bench_before = cpu_time("self");
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let server_after: Vec<Duration> = procs.running.iter().map(Process::cpu_time).collect();
    let bench_after = cpu_time("self");
    let logs: Vec<ClientLog> = threads
        .into_iter()
        .map(|t| t.join().map_err(|_| "a client thread panicked"))
        .collect::<Result<_, _>>()?;
    for p in &mut procs.running {
        p.check_running()?;
    }

    let mut server_cpu: Vec<(&'static str, Duration)> = Vec::new();
    for (p, (before, after)) in procs
        .running
        .iter()
        .zip(server_before.iter().zip(&server_after))
    {
        let used = after.saturating_sub(*before);
        match server_cpu.iter_mut().find(|(role, _)| *role == p.role) {
            Some((_, d)) => *d += used,
            None => server_cpu.push((p.role, used)),
        }
    }
    let mut latencies_us: Vec<u32> = logs
        .iter()
        .flat_map(|l| l.latencies_us.iter().copied())
        .collect();
    latencies_us.sort_unstable();
    let outcome = Outcome {
        name,
        window: opts.measured,
        pushes: latencies_us.len(),
        bytes: logs.iter().map(|l| l.bytes).sum(),
        latencies_us,
        errors: logs.iter().map(|l| l.errors).sum(),
        warmup_errors: logs.iter().map(|l| l.warmup_errors).sum(),
        server_cpu,
        bench_cpu: bench_after.saturating_sub(bench_before),
    };
    drop(procs);
    Ok(outcome)
}

/// Loads the mix, checks that stamped payloads decode with the stamped time,
/// runs the three setups in turn and prints their table.
pub(crate) fn run(corpus_dir: &Path, opts: &Options) -> BoxResult<()> {
    let corpus = corpus::load(corpus_dir)
        .map_err(|e| format!("reading corpus {}: {e}", corpus_dir.display()))?;
    if corpus.inputs.is_empty() {
        return Err(format!("no decodable profiles in {}", corpus_dir.display()).into());
    }
    let mut payloads = Vec::with_capacity(corpus.inputs.len());
    for input in &corpus.inputs {
        let payload = Payload::new(&input.gz)?;
        let t = now_nanos();
        let decoded = ember_model::pprof::decode(&payload.gzip_at(t), &corpus::unlimited())
            .map_err(|e| format!("{}: stamped payload does not decode: {e}", input.name))?;
        if decoded.header.time_nanos != t || decoded.samples.len() != input.profile.samples.len() {
            return Err(format!("{}: stamped payload decodes differently", input.name).into());
        }
        payloads.push(payload);
    }
    let pass: usize = payloads.iter().map(|p| p.gzip_at(now_nanos()).len()).sum();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "mix: {} files, {:.2} MB gzipped a pass ({:.1} KB a push on average); {} clients, {} s warm-up, {} s measured; {} cores; load average at start: {}",
        payloads.len(),
        pass as f64 / 1e6,
        pass as f64 / 1e3 / payloads.len() as f64,
        opts.clients,
        opts.warmup.as_secs(),
        opts.measured.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let payloads = Arc::new(payloads);
    let setups = [
        (
            "`-target=all`, WAL fsync on (default)",
            Topology::Single { fsync: true },
        ),
        (
            "`-target=all`, `-ingester.wal-fsync=false`",
            Topology::Single { fsync: false },
        ),
        (
            "1 distributor + 3 ingesters, RF 3, fsync on",
            Topology::Cluster,
        ),
    ];
    let mut outcomes = Vec::new();
    for (name, topology) in setups {
        outcomes.push(measure(name, topology, &payloads, opts)?);
    }
    print_outcomes(&outcomes);
    Ok(())
}

fn print_outcomes(outcomes: &[Outcome]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| setup | pushes/s | MB/s (gzipped pprof) | p50 / p99 / max latency | errors (warm-up) | server CPU per push | cores busy: servers + bench |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for o in outcomes {
        let roles: Vec<String> = o
            .server_cpu
            .iter()
            .map(|(role, d)| format!("{role} {:.1}", o.per_push_ms(*d)))
            .collect();
        let split = if roles.len() > 1 {
            format!(" ({})", roles.join(" + "))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.2} | {:.1} / {:.1} / {:.1} ms | {} ({}) | {:.1} ms{split} | {:.2} + {:.2} |",
            o.name,
            o.per_sec(),
            o.bytes as f64 / 1e6 / o.window.as_secs_f64(),
            o.quantile_ms(0.5),
            o.quantile_ms(0.99),
            o.quantile_ms(1.0),
            o.errors,
            o.warmup_errors,
            o.per_push_ms(o.server_cpu()),
            o.server_cpu().as_secs_f64() / o.window.as_secs_f64(),
            o.bench_cpu.as_secs_f64() / o.window.as_secs_f64(),
        );
    }
}
