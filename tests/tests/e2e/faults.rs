//! Acceptance: the fault campaign. A cluster of separate processes (one
//! distributor, three ingesters with replication factor 3, one querier, one
//! compactor, blocks on a real S3-compatible server) takes a steady push load
//! while a seeded random schedule SIGKILLs and restarts any of its processes,
//! freezes one with SIGSTOP and thaws it with SIGCONT, cuts the object store off,
//! and fills ingester 1's write-ahead-log disk (a small `tmpfs` of the test's
//! own) until it refuses writes, then frees it.
//!
//! What must hold whatever the schedule: every acknowledged push is counted
//! exactly once, any other push at most once; the ingester whose log cannot be
//! written refuses writes and takes them again once space returns; at the end
//! every process is ready again, and the counts hold through the querier, from
//! the blocks alone once the ingesters flushed, and after the compactor merged
//! them.
//!
//! `EMBER_FAULT_SEED` picks the schedule (default [`DEFAULT_SEED`]) and
//! `EMBER_FAULT_SECONDS` how long faults are injected (default
//! [`DEFAULT_SECONDS`], so that the test takes about three minutes); the test
//! prints every action with its time offset and a summary line. A longer run's
//! result is recorded in `docs/reliability.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{
    Arc, Mutex, RwLock,
    atomic::{AtomicBool, Ordering},
};
use std::time::{Duration, Instant};

use ember_proto::querier::v1::SelectMergeStacktracesRequest;
use ember_tests::faults::{DiskFiller, SeededRng, Tmpfs};
use ember_tests::process::write_file;
use ember_tests::s3::{PausableProxy, S3Server};
use ember_tests::{Client, Codec, EmberProcess, TimeRange, eventually, flame, in_ci, now_nanos};

use crate::agent_support::metric;
use crate::cluster::{Cluster, wait_for_active_ingesters};
use crate::load::{CPU, PUSHERS, SERVICE, VALUE, try_push_response};

/// The schedule's seed when `EMBER_FAULT_SEED` is not set.
const DEFAULT_SEED: u64 = 15;
/// Seconds of faults when `EMBER_FAULT_SECONDS` is not set.
const DEFAULT_SECONDS: u64 = 100;
/// The size of ingester 1's write-ahead-log filesystem.
const WAL_DISK_MIB: u64 = 16;
/// The ingester whose log disk fills up (index into `Cluster::ingesters`).
const FULL_DISK_INGESTER: usize = 0;
/// How long a process may take to be ready again after a fault.
const RECOVERY: Duration = Duration::from_secs(120);
/// The tenant of an Ember without multi-tenancy.
const TENANT: &str = "anonymous";

/// What one push came to, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A 2xx answer.
    Acked,
    /// An answer that is not 2xx, with its status.
    Refused(u16),
    /// No answer: the connection failed, was cut or timed out.
    Unknown,
}

/// Pusher threads sending profiles `0, 1, 2, ...` (see [`try_push`]) to
/// whichever address the distributor has now, recording each push's outcome.
struct FaultLoad {
    outcomes: Arc<Mutex<BTreeMap<usize, Outcome>>>,
    /// Refusals by status and message (digits left out, so that one reason
    /// is one entry).
    reasons: Arc<Mutex<BTreeMap<String, usize>>>,
    target: Arc<RwLock<String>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FaultLoad {
    fn start(distributor: &str) -> Self {
        let outcomes = Arc::new(Mutex::new(BTreeMap::new()));
        let reasons = Arc::new(Mutex::new(BTreeMap::new()));
        let target = Arc::new(RwLock::new(distributor.to_owned()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..PUSHERS)
            .map(|p| {
                let (outcomes, reasons) = (outcomes.clone(), reasons.clone());
                let (target, stop) = (target.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut client = Client::new(&target.read().unwrap());
                    for id in (p..).step_by(PUSHERS) {
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        let now = target.read().unwrap().clone();
                        if client.base_url() != now {
                            client = Client::new(&now);
                        }
                        let outcome = match try_push_response(&client, id) {
                            Ok(r) if r.is_success() => Outcome::Acked,
                            Ok(r) => {
                                let text = r.text().replace(|c: char| c.is_ascii_digit(), "");
                                let reason = format!("{} {text}", r.status);
                                *reasons.lock().unwrap().entry(reason).or_default() += 1;
                                Outcome::Refused(r.status)
                            }
                            Err(_) => Outcome::Unknown,
                        };
                        outcomes.lock().unwrap().insert(id, outcome);
                        // A steady load, not a flood: two cores serve six
                        // processes and moto.
                        let pause = if outcome == Outcome::Acked { 10 } else { 50 };
                        std::thread::sleep(Duration::from_millis(pause));
                    }
                })
            })
            .collect();
        Self {
            outcomes,
            reasons,
            target,
            stop,
            threads,
        }
    }

    /// Points the pushers at a restarted distributor.
    fn retarget(&self, distributor: &str) {
        *self.target.write().unwrap() = distributor.to_owned();
    }

    fn acked(&self) -> usize {
        let outcomes = self.outcomes.lock().unwrap();
        outcomes.values().filter(|o| **o == Outcome::Acked).count()
    }

    fn wait_for_acked(&self, n: usize, within: Duration) {
        eventually("pushes acknowledged", within, || {
            let acked = self.acked();
            if acked >= n {
                Ok(())
            } else {
                Err(format!("{acked} acknowledged"))
            }
        });
    }

    /// Stops the pushers; returns every push's outcome by id, and the
    /// refusals by reason.
    fn finish(self) -> (BTreeMap<usize, Outcome>, BTreeMap<String, usize>) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            t.join().unwrap();
        }
        let outcomes = self.outcomes.lock().unwrap().clone();
        let reasons = self.reasons.lock().unwrap().clone();
        (outcomes, reasons)
    }
}

/// A process of the cluster that faults pick from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Distributor,
    Ingester(usize),
    Querier,
    Compactor,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Member::Distributor => f.write_str("distributor"),
            Member::Ingester(i) => write!(f, "ingester-{}", i + 1),
            Member::Querier => f.write_str("querier"),
            Member::Compactor => f.write_str("compactor"),
        }
    }
}

/// Every process of the campaign.
struct Processes {
    cluster: Cluster,
    compactor: EmberProcess,
}

impl Processes {
    fn all(&self) -> Vec<Member> {
        let mut all = vec![Member::Distributor];
        all.extend((0..self.cluster.ingesters.len()).map(Member::Ingester));
        all.extend([Member::Querier, Member::Compactor]);
        all
    }

    fn get_ref(&self, member: Member) -> &EmberProcess {
        match member {
            Member::Distributor => &self.cluster.distributor,
            Member::Ingester(i) => &self.cluster.ingesters[i],
            Member::Querier => &self.cluster.querier,
            Member::Compactor => &self.compactor,
        }
    }

    fn get(&mut self, member: Member) -> &mut EmberProcess {
        match member {
            Member::Distributor => &mut self.cluster.distributor,
            Member::Ingester(i) => &mut self.cluster.ingesters[i],
            Member::Querier => &mut self.cluster.querier,
            Member::Compactor => &mut self.compactor,
        }
    }
}

/// Ingester 1's small log disk, and the file that fills it while full.
struct FullDisk {
    disk: Tmpfs,
    filler: Option<DiskFiller>,
}

/// The campaign's state: what is broken now, and what was done.
struct Campaign {
    rng: SeededRng,
    started: Instant,
    processes: Processes,
    proxy: PausableProxy,
    load: FaultLoad,
    outage_until: Option<Instant>,
    disk: Option<FullDisk>,
    full_until: Option<Instant>,
    /// Since when, and from how many ingested profiles, ingester 1 is to
    /// take writes again after its disk was freed.
    recovering: Option<(Instant, f64)>,
    /// Faults injected, by kind.
    injected: BTreeMap<&'static str, usize>,
    /// Ingester 1's refused log writes seen while its disk was full.
    refused_while_full: f64,
}

impl Campaign {
    fn say(&self, what: &str) {
        eprintln!(
            "[faults +{:7.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn count(&mut self, kind: &'static str) {
        *self.injected.entry(kind).or_default() += 1;
    }

    /// Ends the outage and frees the disk once their time is up.
    fn expire(&mut self, now: Instant) {
        if self.outage_until.is_some_and(|t| t <= now) {
            self.end_outage();
        }
        if self.full_until.is_some_and(|t| t <= now) {
            self.free_disk();
        }
        if let Some((since, before)) = self.recovering {
            let ingester = &self.processes.cluster.ingesters[FULL_DISK_INGESTER];
            let ingested = try_metric(ingester, "ember_ingester_ingested_profiles_total");
            if let Some(now) = ingested.filter(|n| *n > before) {
                self.recovering = None;
                self.say(&format!(
                    "{} takes writes again, {:.1?} after its disk was freed ({} profiles since)",
                    Member::Ingester(FULL_DISK_INGESTER),
                    since.elapsed(),
                    now - before
                ));
            } else if since.elapsed() > RECOVERY {
                panic!(
                    "{} takes no writes {RECOVERY:?} after its log disk was freed",
                    Member::Ingester(FULL_DISK_INGESTER)
                );
            }
        }
    }

    fn end_outage(&mut self) {
        if self.outage_until.take().is_some() {
            self.proxy.resume();
            self.say("object store reachable again");
        }
    }

    /// Sleeps `length`, ending the outage and freeing the disk on time meanwhile.
    fn sleep(&mut self, length: Duration) {
        let until = Instant::now() + length;
        while Instant::now() < until {
            self.expire(Instant::now());
            std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
        }
        self.expire(Instant::now());
    }

    /// Returns the ingesters that may be faulted now: at most one ingester is
    /// impaired at a time (its log disk full counts), so the cluster stays
    /// mostly available.
    fn ingester_faults_allowed(&self) -> bool {
        self.full_until.is_none() && self.recovering.is_none()
    }

    /// Picks and injects one fault.
    fn inject(&mut self) {
        const KINDS: [&str; 4] = ["sigkill", "sigstop", "s3 outage", "disk full"];
        let outage = self.outage_until.is_some();
        let weights = [
            4,
            3,
            if outage { 0 } else { 2 },
            if self.disk.is_some() && self.ingester_faults_allowed() {
                2
            } else {
                0
            },
        ];
        match KINDS[self.rng.weighted(&weights)] {
            "sigkill" => {
                // Without the store, a restarted distributor, querier or
                // compactor is not ready until it returns: only ingesters
                // restart through an outage.
                let candidates: Vec<Member> = self
                    .processes
                    .all()
                    .into_iter()
                    .filter(|m| match m {
                        Member::Ingester(_) => self.ingester_faults_allowed(),
                        _ => !outage,
                    })
                    .collect();
                if let Some(member) = self.pick(&candidates) {
                    self.sigkill(member);
                }
            }
            "sigstop" => {
                let candidates: Vec<Member> = self
                    .processes
                    .all()
                    .into_iter()
                    .filter(|m| !matches!(m, Member::Ingester(_)) || self.ingester_faults_allowed())
                    .collect();
                if let Some(member) = self.pick(&candidates) {
                    self.sigstop(member);
                }
            }
            "s3 outage" => {
                let length = Duration::from_millis(self.rng.between(4_000, 20_000));
                self.proxy.pause();
                self.outage_until = Some(Instant::now() + length);
                self.count("s3 outage");
                self.say(&format!("object store cut off for {length:?}"));
            }
            "disk full" => self.fill_disk(),
            other => unreachable!("{other}"),
        }
    }

    fn pick(&mut self, candidates: &[Member]) -> Option<Member> {
        (!candidates.is_empty())
            .then(|| candidates[self.rng.below(candidates.len() as u64) as usize])
    }

    fn sigkill(&mut self, member: Member) {
        let down = Duration::from_millis(self.rng.between(0, 2_000));
        self.say(&format!("sigkill {member}, restart in {down:?}"));
        self.processes.get(member).kill();
        self.count("sigkill");
        self.sleep(down);
        let restarted = Instant::now();
        self.processes.get(member).restart();
        self.say(&format!(
            "{member} ready again after {:.1?}",
            restarted.elapsed()
        ));
        match member {
            Member::Distributor => {
                let url = self.processes.cluster.distributor.base_url();
                self.load.retarget(&url);
                // Ready is not yet knowing the ring: it learns its members
                // from gossip, and refuses writes (503) until a majority is in.
                let restarted = Instant::now();
                self.wait_for_ring();
                self.say(&format!(
                    "{member} sees every ingester ACTIVE {:.1?} later",
                    restarted.elapsed()
                ));
            }
            Member::Ingester(_) => self.wait_for_ring(),
            _ => {}
        }
    }

    fn sigstop(&mut self, member: Member) {
        let length = Duration::from_millis(self.rng.between(1_000, 8_000));
        self.say(&format!("sigstop {member} for {length:?}"));
        self.processes.get(member).pause();
        self.count("sigstop");
        self.sleep(length);
        self.processes.get(member).resume();
        self.say(&format!("sigcont {member}"));
        if matches!(member, Member::Ingester(_) | Member::Distributor) {
            // A member frozen longer than failure detection was declared dead:
            // it must come back into the ring.
            self.wait_for_ring();
        }
    }

    /// Waits until the distributor sees every ingester ACTIVE again.
    fn wait_for_ring(&mut self) {
        let n = self.processes.cluster.ingesters.len();
        wait_for_active_ingesters(&self.processes.cluster.distributor.client(), n);
    }

    /// Fills ingester 1's log disk, and waits until it refuses log writes.
    fn fill_disk(&mut self) {
        let length = Duration::from_millis(self.rng.between(4_000, 12_000));
        let ingester = self.processes.cluster.ingesters[FULL_DISK_INGESTER].client();
        let failures_before = wal_append_failures(&ingester);
        let disk = self.disk.as_mut().expect("a disk to fill");
        let filler = DiskFiller::fill(&disk.disk.dir().join("filler"), WAL_DISK_MIB << 21)
            .unwrap_or_else(|e| panic!("filling the log disk: {e}"));
        let (bytes, free) = (filler.bytes(), disk.disk.free_bytes());
        disk.filler = Some(filler);
        self.full_until = Some(Instant::now() + length);
        self.count("disk full");
        self.say(&format!(
            "{} log disk filled ({bytes} B of filler, {free} B free) for {length:?}",
            Member::Ingester(FULL_DISK_INGESTER)
        ));
        // Every push reaches every ingester (rf 3 of 3), so the full log
        // refuses the next ones; the distributor logs each refusal (503,
        // gRPC UNAVAILABLE) and acknowledges with the two others.
        let refused = eventually(
            "the ingester with a full log disk refuses writes",
            Duration::from_secs(30),
            || {
                let now = wal_append_failures(&ingester);
                if now > failures_before {
                    Ok(now - failures_before)
                } else {
                    Err(format!("{now} failed log appends"))
                }
            },
        );
        self.refused_while_full += refused;
        self.say(&format!(
            "{} refuses log writes: {refused} failed appends so far",
            Member::Ingester(FULL_DISK_INGESTER)
        ));
    }

    /// Frees ingester 1's log disk; [`expire`](Self::expire) then watches it
    /// take writes again (without blocking: this may run while the
    /// distributor is frozen).
    fn free_disk(&mut self) {
        self.full_until = None;
        let Some(filler) = self.disk.as_mut().and_then(|d| d.filler.take()) else {
            return;
        };
        let ingester = &self.processes.cluster.ingesters[FULL_DISK_INGESTER];
        if let Some(failures) = try_metric(ingester, "ember_ingester_wal_append_failures_total") {
            self.refused_while_full = self.refused_while_full.max(failures);
        }
        let ingested = try_metric(ingester, "ember_ingester_ingested_profiles_total")
            .expect("the ingester with the full disk answers its metrics");
        filler.free();
        self.recovering = Some((Instant::now(), ingested));
        self.say(&format!(
            "{} log disk freed",
            Member::Ingester(FULL_DISK_INGESTER)
        ));
    }

    /// Ends every fault and waits until every process is ready and every
    /// ingester ACTIVE in the distributor's and the querier's rings.
    fn heal(&mut self) {
        self.end_outage();
        self.free_disk();
        for member in self.processes.all() {
            let process = self.processes.get(member);
            process.resume();
            let client = process.client();
            eventually(
                &format!("{member} ready after the campaign"),
                RECOVERY,
                || {
                    if client.is_ready() {
                        Ok(())
                    } else {
                        Err(client
                            .try_request("GET", "/ready", &[], None)
                            .map(|r| r.text())
                            .unwrap_or_else(|e| e))
                    }
                },
            );
        }
        let n = self.processes.cluster.ingesters.len();
        wait_for_active_ingesters(&self.processes.cluster.distributor.client(), n);
        wait_for_active_ingesters(&self.processes.cluster.querier.client(), n);
        while self.recovering.is_some() {
            self.sleep(Duration::from_millis(100));
        }
        self.say("every process ready, every ingester ACTIVE");
    }
}

/// Returns the sum of a metric's samples, or `None` when the process does not
/// answer (it is frozen or being restarted).
fn try_metric(process: &EmberProcess, name: &str) -> Option<f64> {
    let response = Client::new(&process.base_url())
        .try_request("GET", "/metrics", &[], None)
        .ok()
        .filter(|r| r.status == 200)?;
    Some(
        response
            .text()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

fn wal_append_failures(ingester: &Client) -> f64 {
    metric(ingester, "ember_ingester_wal_append_failures_total", &[])
}

/// Returns each push's CPU total in the flame graph, by push id, or why the
/// query failed (the querier may still be catching up with a block listing).
fn try_counted(client: &Client, range: TimeRange) -> Result<BTreeMap<usize, i64>, String> {
    let req = SelectMergeStacktracesRequest {
        profile_type_id: CPU.to_owned(),
        label_selector: format!(r#"{{service_name="{SERVICE}"}}"#),
        start: range.start,
        end: range.end,
        max_nodes: Some(1 << 20),
        ..Default::default()
    };
    let fg = client
        .select_merge_stacktraces(None, &req, Codec::Proto)
        .map_err(|e| {
            // Only an unavailable store or ingester is worth waiting for.
            assert!(e.status >= 500, "the query is refused: {e}");
            e.to_string()
        })?;
    let nodes = flame::nodes(&fg).map_err(|e| format!("malformed flame graph: {e}"))?;
    let mut counted = BTreeMap::new();
    for (path, (total, _)) in flame::tree(&nodes) {
        let id = path
            .get(1)
            .and_then(|leaf| leaf.strip_prefix("push_"))
            .and_then(|id| id.parse::<usize>().ok());
        match (path.len(), id) {
            (2, Some(id)) => {
                counted.insert(id, total);
            }
            (1, _) => {}
            _ => return Err(format!("a stack the load never pushed: {path:?}")),
        }
    }
    let sum: i64 = counted.values().sum();
    if sum != fg.total {
        return Err(format!(
            "the graph's total {} is not its pushes' {sum}",
            fg.total
        ));
    }
    Ok(counted)
}

/// Counts through the querier, retrying failed answers for a while; when
/// they keep failing, prints what the bucket and every process's log say about
/// the block named in the error before failing the test.
fn counted(
    processes: &Processes,
    s3: &S3Server,
    range: TimeRange,
    when: &str,
) -> BTreeMap<usize, i64> {
    let client = processes.cluster.querier.client();
    let deadline = Instant::now() + RECOVERY;
    loop {
        let err = match try_counted(&client, range) {
            Ok(counted) => return counted,
            Err(err) => err,
        };
        if Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if let Some(ulid) = err
            .split(&format!("{TENANT}/blocks/"))
            .nth(1)
            .and_then(|rest| rest.get(..26))
        {
            eprintln!("----- the bucket under {TENANT}/blocks/{ulid}/ -----");
            for object in s3.list(&format!("{TENANT}/blocks/{ulid}/")) {
                eprintln!("{} ({} B)", object.key, object.size);
            }
            if let Some(meta) = s3.get(&format!("{TENANT}/blocks/{ulid}/meta.json")) {
                eprintln!("meta.json: {}", String::from_utf8_lossy(&meta));
            }
            for member in processes.all() {
                let process = processes.get_ref(member);
                eprintln!("----- {member} log lines naming {ulid} -----");
                for line in process.log().lines().filter(|l| l.contains(ulid)) {
                    eprintln!("{line}");
                }
            }
        }
        panic!("no whole answer {when} within {RECOVERY:?}: {err}");
    }
}

/// What a count showed.
#[derive(Debug, PartialEq, Eq)]
struct Tally {
    /// Pushes counted at all.
    stored: usize,
    /// Pushes counted exactly once.
    once: usize,
    /// Violations of the invariant, described.
    violations: Vec<String>,
}

/// Checks every push: an acknowledged one is counted exactly once, any other
/// at most once, and nothing is counted that was never sent.
fn tally(counted: &BTreeMap<usize, i64>, outcomes: &BTreeMap<usize, Outcome>) -> Tally {
    let mut violations = Vec::new();
    for (id, outcome) in outcomes {
        let total = counted.get(id).copied().unwrap_or(0);
        match outcome {
            Outcome::Acked if total != VALUE => violations.push(format!(
                "acknowledged push {id} counted {} times",
                total as f64 / VALUE as f64
            )),
            _ if total != 0 && total != VALUE => violations.push(format!(
                "push {id} ({outcome:?}) counted {} times",
                total as f64 / VALUE as f64
            )),
            _ => {}
        }
    }
    for id in counted.keys().filter(|id| !outcomes.contains_key(id)) {
        violations.push(format!("push {id} counted but never sent"));
    }
    Tally {
        stored: counted.len(),
        once: counted.values().filter(|t| **t == VALUE).count(),
        violations,
    }
}

fn check(tally: &Tally, when: &str) {
    const SHOWN: usize = 20;
    assert!(
        tally.violations.is_empty(),
        "{when}: {} violations, the first {SHOWN}:\n{}",
        tally.violations.len(),
        tally.violations[..tally.violations.len().min(SHOWN)].join("\n")
    );
}

fn env_u64(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Mounts the small log disk of ingester 1 under `wal`, or says why not
/// (outside CI the disk fault is then skipped; in CI the test fails).
fn mount_wal_disk(wal: &Path) -> Option<Tmpfs> {
    let dir = wal.join((FULL_DISK_INGESTER + 1).to_string());
    match Tmpfs::mount(&dir, WAL_DISK_MIB) {
        Ok(disk) => Some(disk),
        Err(why) if in_ci() => panic!("the full-disk fault needs a tmpfs: {why}"),
        Err(why) => {
            eprintln!("!!! SKIPPED the full-disk fault: {why} (tests run as root in CI)");
            None
        }
    }
}

#[test]
fn fault_campaign_loses_and_doubles_no_acknowledged_push() {
    let seed = env_u64("EMBER_FAULT_SEED", DEFAULT_SEED);
    let seconds = env_u64("EMBER_FAULT_SECONDS", DEFAULT_SECONDS);
    let Some(s3) = S3Server::start("ember-faults") else {
        return;
    };
    let proxy = PausableProxy::start(s3.addr());
    let conf = tempfile::tempdir().unwrap();
    let config = write_file(
        conf.path(),
        "ember.yaml",
        s3.storage_yaml(&proxy.endpoint()).as_bytes(),
    );
    let storage = format!("-config.file={}", config.display());
    let wal = tempfile::tempdir().unwrap();
    let disk = mount_wal_disk(wal.path());
    let start = now_nanos() - 60_000_000_000;
    let cluster = Cluster::start(&storage, wal.path(), &["", "", ""], &[]);
    let compactor = EmberProcess::start(&[
        &storage,
        "-target=compactor",
        "-compactor.block-ranges=10s,40s",
        "-compactor.compaction-interval=2s",
        "-compactor.settle-delay=2s",
        "-compactor.deletion-delay=10s",
    ]);
    wait_for_active_ingesters(&cluster.distributor.client(), 3);
    wait_for_active_ingesters(&cluster.querier.client(), 3);
    let load = FaultLoad::start(&cluster.distributor.base_url());
    load.wait_for_acked(40, Duration::from_secs(60));

    let mut campaign = Campaign {
        rng: SeededRng::new(seed),
        started: Instant::now(),
        processes: Processes { cluster, compactor },
        proxy,
        load,
        outage_until: None,
        disk: disk.map(|disk| FullDisk { disk, filler: None }),
        full_until: None,
        recovering: None,
        injected: BTreeMap::new(),
        refused_while_full: 0.0,
    };
    campaign.say(&format!(
        "fault campaign: seed {seed}, {seconds} s of faults"
    ));
    let end = campaign.started + Duration::from_secs(seconds);
    while Instant::now() < end {
        let gap = Duration::from_millis(campaign.rng.between(1_000, 4_000));
        campaign.sleep(gap);
        if Instant::now() < end {
            campaign.inject();
        }
    }
    campaign.heal();
    // Writes go on after the faults: the cluster is whole again.
    let healed = campaign.load.acked();
    campaign
        .load
        .wait_for_acked(healed + 100, Duration::from_secs(60));
    let Campaign {
        processes: mut p,
        proxy: _proxy,
        load,
        injected,
        refused_while_full,
        started,
        disk,
        ..
    } = campaign;
    let (outcomes, reasons) = load.finish();
    for (reason, n) in &reasons {
        eprintln!("[faults] refused {n} times: {reason}");
    }
    let acked: BTreeSet<usize> = outcomes
        .iter()
        .filter(|(_, o)| **o == Outcome::Acked)
        .map(|(id, _)| *id)
        .collect();
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    for o in outcomes.values() {
        if let Outcome::Refused(status) = o {
            *refused.entry(*status).or_default() += 1;
        }
    }
    let unknown = outcomes
        .values()
        .filter(|o| **o == Outcome::Unknown)
        .count();
    if disk.is_some() && injected.contains_key("disk full") {
        assert!(
            refused_while_full > 0.0,
            "the full log disk refused nothing"
        );
    }

    let range = TimeRange::new(start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    let through_querier = tally(&counted(&p, &s3, range, "after the campaign"), &outcomes);
    check(&through_querier, "through the querier after the campaign");

    // Heads flushed: the blocks alone hold everything (three copies each).
    for ingester in &mut p.cluster.ingesters {
        ingester.stop();
    }
    let flushed = now_nanos();
    let from_blocks = tally(&counted(&p, &s3, range, "from blocks"), &outcomes);
    check(&from_blocks, "from blocks only");

    // The compactor merges what is settled, and deletes the sources later.
    let compactor = p.compactor.client();
    let compacted_before = metric(&compactor, "ember_compactor_blocks_compacted_total", &[]);
    eventually("a compaction pass after the last flush", RECOVERY, || {
        let last = metric(
            &compactor,
            "ember_compactor_last_successful_run_timestamp_seconds",
            &[],
        );
        if last * 1e9 > (flushed + 3_000_000_000) as f64 {
            Ok(())
        } else {
            Err(format!("last successful pass at {last}"))
        }
    });
    let compacted = metric(&compactor, "ember_compactor_blocks_compacted_total", &[]);
    let after_compaction = tally(&counted(&p, &s3, range, "after compaction"), &outcomes);
    check(&after_compaction, "after compaction");
    assert_eq!(
        after_compaction.stored, from_blocks.stored,
        "compaction changes no count"
    );
    let blocks = s3.blocks(TENANT).len();

    let kinds: Vec<String> = injected.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!(
        "[faults +{:7.1}s] summary: seed {seed}, {seconds} s of faults; faults: {}; \
         pushes: {} sent, {} acknowledged, {} refused {refused:?}, {} unknown; \
         stored {}, counted once {} (querier), {} (blocks), {} (compacted); \
         full-disk log writes refused {refused_while_full}; \
         blocks compacted {compacted} ({} before the final pass), {blocks} blocks left",
        started.elapsed().as_secs_f64(),
        kinds.join(", "),
        outcomes.len(),
        acked.len(),
        refused.values().sum::<usize>(),
        unknown,
        through_querier.stored,
        through_querier.once,
        from_blocks.once,
        after_compaction.once,
        compacted_before,
    );
    assert!(
        through_querier.once >= acked.len(),
        "every acknowledged push is counted once"
    );
    // Every process ends cleanly.
    for member in [Member::Compactor, Member::Querier, Member::Distributor] {
        let status = p.get(member).stop();
        assert_eq!(status.code(), Some(0), "{member} exit status");
    }
    drop(disk);
}

#[test]
fn the_tally_finds_lost_doubled_and_never_sent_pushes() {
    let outcomes = BTreeMap::from([
        (0, Outcome::Acked),
        (1, Outcome::Acked),
        (2, Outcome::Acked),
        (3, Outcome::Refused(503)),
        (4, Outcome::Unknown),
        (5, Outcome::Unknown),
    ]);
    // 0 once, 1 lost, 2 twice, 3 stored although refused (allowed), 4 twice,
    // 5 not stored (allowed), 9 never sent.
    let counted = BTreeMap::from([
        (0, VALUE),
        (2, 2 * VALUE),
        (3, VALUE),
        (4, 2 * VALUE),
        (9, VALUE),
    ]);
    let tally = tally(&counted, &outcomes);
    assert_eq!(
        tally.violations,
        [
            "acknowledged push 1 counted 0 times",
            "acknowledged push 2 counted 2 times",
            "push 4 (Unknown) counted 2 times",
            "push 9 counted but never sent",
        ]
    );
    assert_eq!((tally.stored, tally.once), (5, 3));
}

/// The campaign found it: the distributor of [`Cluster`] is the only seed
/// (`-memberlist.join` names it, and it names no one), so once the others have
/// declared it dead and stopped gossiping to it, a restarted distributor knew
/// no member and refused every push, for good, unless they join it again.
#[test]
fn a_seed_restarted_after_the_others_declared_it_dead_learns_the_ring_again() {
    let Some(moto) = crate::cluster::Storage::start("ember-faults-seed") else {
        return;
    };
    let wal = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(&moto.flag, wal.path(), &["", "", ""], &[]);
    wait_for_active_ingesters(&cluster.distributor.client(), 3);
    cluster.distributor.kill();
    // Failure detection (~4 s) plus memberlist's gossip to the dead (15 s).
    std::thread::sleep(Duration::from_secs(22));
    cluster.distributor.restart();
    wait_for_active_ingesters(&cluster.distributor.client(), 3);
}
