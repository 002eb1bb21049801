//! Black-box acceptance harness for Ember: starts the real `ember` binary on a free
//! port, talks to it over HTTP the way SDKs, Grafana and `go tool pprof` do, and
//! computes expectations from the profiles themselves.
//!
//! The tests in `tests/tests/e2e/*.rs` are written against the contract in
//! `shared/DESIGN.md`, not against Ember's crates: they only share its wire types
//! (`ember-proto`) and the test support every crate shares (`ember-testkit`:
//! the shared profiles, the pprof builder, ports, launching). That keeps them
//! honest about what a user of the binary sees.
//!
//! - [`EmberProcess`] spawns and stops the binary (SIGTERM, exit code checked).
//! - [`Client`] is a small blocking Connect client (`application/json` and
//!   `application/proto`) with typed helpers for the push and query APIs.
//! - [`pprof`] reads profiles for expectations (sums and leaf function names per
//!   sample type), rewrites their timestamps and builds synthetic ones.
//! - [`flame`] checks and decodes the flame-graph wire form.
//! - [`block`] reads the Parquet blocks that Ember leaves in object storage.
//! - [`s3`] runs a real S3-compatible server (moto) and a proxy that can cut
//!   Ember off from it.
//! - [`faults`] holds what fault-injection tests need: a seeded random
//!   generator, a small `tmpfs` and a file that fills it.
//! - [`testdata`] finds `shared/testdata/profiles`.
//! - [`checks`] holds checks several tests share (finding a profile type ID,
//!   comparing leaf names, proving the server still serves).

pub mod block;
pub mod checks;
pub mod client;
pub mod faults;
pub mod flame;
pub mod pprof;
pub mod process;
pub mod s3;
pub mod testdata;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use client::{
    Client, Codec, ConnectError, HttpResponse, PUSH_PATH, PushEncoding, TimeRange, querier_path,
};
pub use process::{EmberProcess, MULTITENANCY, free_port};

/// Returns the current time in nanoseconds since the unix epoch.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos() as i64
}

/// Returns the current time in milliseconds since the unix epoch.
pub fn now_millis() -> i64 {
    now_nanos() / 1_000_000
}

/// Returns whether the tests run in CI (the `CI` variable is set and not `false`/`0`).
///
/// In CI a missing tool (Go, the Python SDK) fails its test; on a developer's
/// machine the test is skipped with a loud message instead.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Returns the `go` command, or `None` when Go is not installed.
pub fn go_binary() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let candidates = [
        std::env::var_os("EMBER_GO").map(PathBuf::from),
        Some(PathBuf::from("go")),
        Some(PathBuf::from("/usr/lib/go/bin/go")),
        Some(PathBuf::from("/usr/local/go/bin/go")),
    ];
    candidates.into_iter().flatten().find(|go| {
        std::process::Command::new(go)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Builds the standard-library Go program `tests/<program>` (a `main.go`, no
/// modules) with `go` into `dir`; returns the executable. Caches stay in `dir`.
pub fn build_go_program(
    go: &std::path::Path,
    program: &str,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(program)
        .join("main.go");
    let binary = dir.join("go-program");
    let out = std::process::Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .env("HOME", dir)
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build of {} failed: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

/// Fails the calling test in CI, or prints a loud notice outside CI (after which
/// the caller returns, skipping itself), when a tool it drives is missing: a
/// skipped acceptance test proves nothing, so CI never skips.
pub fn skip_or_fail_missing_tool(what: &str, how_to_install: &str) {
    let message = format!("{what} is not available; install it with: {how_to_install}");
    if in_ci() {
        panic!("{message} (CI is set, so this test fails instead of skipping)");
    }
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! SKIPPED: {message}");
    eprintln!("!!! (scripts/test.sh installs it; in CI this test fails instead)");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!();
}

/// Polls `check` every `interval` until it returns `Ok`, and returns that value.
///
/// Panics with the last error once `timeout` has passed: a condition that never
/// becomes true fails the test rather than hanging it.
pub fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(20);
    loop {
        match check() {
            Ok(value) => return value,
            Err(err) if Instant::now() >= deadline => {
                panic!("{what}: still not true after {timeout:?}: {err}")
            }
            Err(_) => {
                std::thread::sleep(interval);
                interval = (interval * 2).min(Duration::from_millis(250));
            }
        }
    }
}

/// Returns a Python interpreter that can `import pyroscope`: `EMBER_PYTHON`
/// (scripts/test.sh points it at its virtualenv), else `python3`.
pub fn python_with_sdk() -> Option<std::path::PathBuf> {
    let python = std::env::var_os("EMBER_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("python3"));
    std::process::Command::new(&python)
        .args(["-c", "import pyroscope"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(python)
}
