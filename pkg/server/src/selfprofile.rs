//! Ember profiles itself: `/debug/pprof/profile?seconds=N` (a gzipped pprof
//! CPU profile, as Go's `net/http/pprof` serves it, so `go tool pprof`, the
//! agent and Alloy read it), and with `-self-profiling.enabled` a CPU profile
//! of every interval pushed into Ember's own distributor as service `ember`.
//!
//! The sampler is the `pprof` crate's (`SIGPROF` every 10 ms, stacks unwound
//! in the signal handler); its report is turned into a `google.v1.Profile`
//! here. The sampler is process-wide, so one profile runs at a time: a request
//! waits for the one running (the self-profiling loop's included) for up to
//! [`WAIT_FOR_PROFILER`], then gets 409.
//!
//! There is no heap profile: Ember runs on the system allocator, which keeps
//! no allocation samples; `/debug/pprof/heap` says so with 501.

use std::{
    collections::HashMap,
    io::Write,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use ember_agent::PushSink;
use ember_config::{Documented, duration};
use ember_proto::{
    google::v1::{Function, Line, Location, Profile, Sample, ValueType},
    push::v1::{PushRequest, RawProfileSeries, RawSample},
    types::v1::LabelPair,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

/// Self-profiling (`self_profiling`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct SelfProfilingConfig {
    /// Pushes Ember's own CPU profile as service `ember` every interval.
    ///
    /// Into this process's distributor, or to client.url when none runs here.
    /// Default false.
    pub enabled: bool,
    /// Length of each pushed CPU profile.
    ///
    /// Default 15s; between 1s and 5m.
    #[serde(with = "duration")]
    pub interval: Duration,
}

impl Default for SelfProfilingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: Duration::from_secs(15),
        }
    }
}

impl SelfProfilingConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> ember_config::Result<()> {
        if !(Duration::from_secs(1)..=MAX_SECONDS_DURATION).contains(&self.interval) {
            return Err(ember_config::Error::invalid(format!(
                "self_profiling.interval is {:?}: use 1s to 5m",
                self.interval
            )));
        }
        Ok(())
    }
}

/// Samples per second.
const FREQUENCY: i32 = 100;
/// Longest CPU profile a request may ask for, in seconds.
pub const MAX_SECONDS: u64 = 300;
const MAX_SECONDS_DURATION: Duration = Duration::from_secs(MAX_SECONDS);
/// How long a request waits for the profile that runs before it.
pub const WAIT_FOR_PROFILER: Duration = Duration::from_secs(60);

/// Why a CPU profile was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("another CPU profile has been running for over {0:?}; try again later")]
    Busy(Duration),
    #[error("the CPU profiler failed: {0}")]
    Sampler(String),
}

/// The process's CPU profiler: one profile at a time.
#[derive(Debug, Clone, Default)]
pub struct Profiler {
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Profiler {
    /// Returns a profiler with nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Profiles the process's CPU for `length`, once the profile before it
    /// ends (waiting at most `wait`).
    pub async fn cpu(&self, length: Duration, wait: Duration) -> Result<Profile, ProfileError> {
        let _running = tokio::time::timeout(wait, self.running.lock())
            .await
            .map_err(|_| ProfileError::Busy(wait))?;
        tokio::task::spawn_blocking(move || sample(length))
            .await
            .map_err(|e| ProfileError::Sampler(e.to_string()))?
    }
}

/// Arms and disarms the CPU timer once. Call it first thing in `main`, before
/// any other thread starts: on some kernels (seen on Linux 6.18) a process-wide
/// `ITIMER_PROF` counts only the CPU time of threads created after it was first
/// armed, so without this the runtime's threads, started before any profile,
/// would never be sampled.
pub fn prime() {
    if let Err(e) = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .build()
    {
        eprintln!("ember: the CPU profiler is unavailable: {e}");
    }
}

/// Samples for `length` on this (blocking) thread and builds the profile.
fn sample(length: Duration) -> Result<Profile, ProfileError> {
    let failed = |e: pprof::Error| ProfileError::Sampler(e.to_string());
    let started = SystemTime::now();
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(failed)?;
    std::thread::sleep(length);
    let report = guard.report().build().map_err(failed)?;
    drop(guard);
    Ok(to_pprof(&report, started, length))
}

/// A `google.v1.Profile` being built: strings, functions and locations
/// de-duplicated.
#[derive(Default)]
struct Builder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64), u64>,
    locations: HashMap<(u64, i64), u64>,
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn location(&mut self, name: &str, file: &str, line: i64) -> u64 {
        let (name, file) = (self.string(name), self.string(file));
        let next = self.functions.len() as u64 + 1;
        let function = *self.functions.entry((name, file)).or_insert(next);
        if function == next {
            self.profile.function.push(Function {
                id: function,
                name,
                system_name: name,
                filename: file,
                ..Default::default()
            });
        }
        let next = self.locations.len() as u64 + 1;
        let location = *self.locations.entry((function, line)).or_insert(next);
        if location == next {
            self.profile.location.push(Location {
                id: location,
                line: vec![Line {
                    function_id: function,
                    line,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        location
    }
}

/// Returns the report as a pprof CPU profile: `samples/count` and
/// `cpu/nanoseconds`, one location per (function, line), leaf first.
fn to_pprof(report: &pprof::Report, started: SystemTime, length: Duration) -> Profile {
    let period = 1_000_000_000 / i64::from(FREQUENCY);
    let mut b = Builder::default();
    b.string("");
    let (samples, count, cpu, nanoseconds) = (
        b.string("samples"),
        b.string("count"),
        b.string("cpu"),
        b.string("nanoseconds"),
    );
    b.profile.sample_type = vec![
        ValueType {
            r#type: samples,
            unit: count,
        },
        ValueType {
            r#type: cpu,
            unit: nanoseconds,
        },
    ];
    b.profile.period_type = Some(ValueType {
        r#type: cpu,
        unit: nanoseconds,
    });
    b.profile.period = period;
    // An index into the string table: the type `go tool pprof` shows first.
    b.profile.default_sample_type = cpu;
    b.profile.time_nanos = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    b.profile.duration_nanos = length.as_nanos() as i64;
    let thread_key = b.string("thread_name");
    for (frames, &n) in &report.data {
        let mut ids = Vec::new();
        // The sampler's own frames (the unwinder in the signal handler) sit on top.
        let mut in_sampler = true;
        for frame in &frames.frames {
            // Inlined functions first, the function they are inlined into last.
            for symbol in frame {
                let name = symbol.name();
                in_sampler = in_sampler && is_sampler_frame(&name);
                if in_sampler {
                    continue;
                }
                let file = symbol.filename().into_owned();
                ids.push(b.location(&name, &file, i64::from(symbol.lineno())));
            }
        }
        let thread = b.string(&frames.thread_name);
        let n = n as i64;
        b.profile.sample.push(Sample {
            location_id: ids,
            value: vec![n, n * period],
            label: vec![ember_proto::google::v1::Label {
                key: thread_key,
                str: thread,
                ..Default::default()
            }],
        });
    }
    b.profile
}

/// Returns whether a frame belongs to the sampler's signal handler.
fn is_sampler_frame(name: &str) -> bool {
    ["backtrace::", "<pprof::", "pprof::", "perf_signal_handler"]
        .iter()
        .any(|p| name.starts_with(p))
        || name.contains("__restore_rt")
}

/// Returns `profile` encoded and gzipped, as `/debug/pprof/profile` serves it.
pub fn gzipped(profile: &Profile) -> Vec<u8> {
    use prost::Message;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())
        .expect("writing to memory never fails");
    gz.finish().expect("writing to memory never fails")
}

/// The query of `/debug/pprof/profile`.
#[derive(Debug, Deserialize)]
pub(crate) struct ProfileQuery {
    seconds: Option<String>,
}

/// `GET /debug/pprof/profile?seconds=N`: N (default 30, 1 to 300) seconds of
/// CPU, gzipped pprof.
pub(crate) async fn profile_handler(
    State(profiler): State<Profiler>,
    Query(query): Query<ProfileQuery>,
) -> Response {
    let seconds = match query.seconds.as_deref().map(str::parse::<u64>) {
        None => 30,
        Some(Ok(s)) if (1..=MAX_SECONDS).contains(&s) => s,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "seconds={:?} is not a whole number of seconds from 1 to {MAX_SECONDS}\n",
                    query.seconds.unwrap_or_default()
                ),
            )
                .into_response();
        }
    };
    match profiler
        .cpu(Duration::from_secs(seconds), WAIT_FOR_PROFILER)
        .await
    {
        Ok(profile) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"profile\"",
                ),
            ],
            gzipped(&profile),
        )
            .into_response(),
        Err(e @ ProfileError::Busy(_)) => (StatusCode::CONFLICT, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `GET /debug/pprof/heap`: not available with the system allocator.
pub(crate) async fn heap_handler() -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        "no heap profile: Ember runs on the system allocator, which keeps no allocation samples; /debug/pprof/profile serves CPU\n",
    )
        .into_response()
}

/// Pushes a CPU profile of every `interval` into `sink` as service `ember`
/// with label `target`, until the process exits.
pub fn run_loop(
    profiler: Profiler,
    sink: Arc<dyn PushSink>,
    tenant: String,
    target: String,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    info!(interval = ?interval, target, "self-profiling: pushing ember's own cpu profile");
    tokio::spawn(async move {
        loop {
            // Waits out any /debug/pprof/profile request, however long it is.
            let profile = match profiler.cpu(interval, Duration::MAX).await {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "self-profiling: cpu profile failed");
                    tokio::time::sleep(interval).await;
                    continue;
                }
            };
            let request = PushRequest {
                series: vec![RawProfileSeries {
                    labels: [
                        ("service_name", "ember"),
                        ("__name__", "process_cpu"),
                        ("target", target.as_str()),
                    ]
                    .into_iter()
                    .map(|(name, value)| LabelPair {
                        name: name.into(),
                        value: value.into(),
                    })
                    .collect(),
                    samples: vec![RawSample {
                        raw_profile: gzipped(&profile),
                        id: String::new(),
                    }],
                    ..Default::default()
                }],
            };
            match sink.push(tenant.clone(), request).await {
                Ok(()) => debug!(samples = profile.sample.len(), "self-profiling: pushed"),
                Err(e) => warn!(error = %e, "self-profiling: push failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(until: std::time::Instant) -> u64 {
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        x
    }

    #[test]
    fn a_cpu_profile_holds_this_process_functions_and_decodes() {
        // As `main` does: before the threads to be sampled start.
        prime();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(a_cpu_profile());
    }

    async fn a_cpu_profile() {
        let busy =
            std::thread::spawn(|| spin(std::time::Instant::now() + Duration::from_millis(1500)));
        let profiler = Profiler::new();
        let profile = profiler
            .cpu(Duration::from_secs(1), Duration::from_secs(5))
            .await
            .unwrap();
        busy.join().unwrap();
        assert!(!profile.sample.is_empty());
        let leaves: Vec<&str> = profile
            .sample
            .iter()
            .filter_map(|s| s.location_id.first())
            .map(|&id| {
                let function = profile.location[id as usize - 1].line[0].function_id;
                let name = profile.function[function as usize - 1].name;
                profile.string_table[name as usize].as_str()
            })
            .collect();
        assert!(
            leaves.iter().all(|l| !is_sampler_frame(l)),
            "the sampler's frames are cut: {leaves:?}"
        );
        assert_eq!(profile.string_table[0], "");
        assert_eq!(
            profile.string_table[profile.default_sample_type as usize],
            "cpu"
        );
        let names: Vec<&str> = profile
            .function
            .iter()
            .map(|f| profile.string_table[f.name as usize].as_str())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("selfprofile::tests::a_cpu_profile")),
            "{names:?}"
        );
        for sample in &profile.sample {
            assert_eq!(sample.value[1], sample.value[0] * 10_000_000);
            for id in &sample.location_id {
                assert!(*id >= 1 && *id as usize <= profile.location.len());
            }
        }
        let bytes = gzipped(&profile);
        let decoded =
            ember_model::pprof::decode(&bytes, &ember_model::pprof::DecodeLimits::default());
        assert!(decoded.is_ok(), "{:?}", decoded.err());
    }

    #[tokio::test]
    async fn a_second_profile_waits_then_is_refused() {
        let profiler = Profiler::new();
        let first = {
            let p = profiler.clone();
            tokio::spawn(async move { p.cpu(Duration::from_secs(2), Duration::ZERO).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = profiler
            .cpu(Duration::from_secs(1), Duration::from_millis(100))
            .await;
        assert!(matches!(second, Err(ProfileError::Busy(_))), "{second:?}");
        assert!(first.await.unwrap().is_ok());
    }

    #[test]
    fn the_interval_is_bounded() {
        let mut config = SelfProfilingConfig::default();
        assert!(config.validate().is_ok());
        config.interval = Duration::from_millis(10);
        assert!(config.validate().is_err());
    }
}
