//! Starting and stopping the real `ember` binary, on `ember_testkit::process`
//! (finding the binary, logging, waiting for `/ready`) and
//! `ember_testkit::ports`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use ember_testkit::process::{self as launch, NotReady};
use tempfile::TempDir;

use crate::client::Client;

pub use ember_testkit::ports::free_port;

/// The flag that turns multi-tenancy on (tenant from `X-Scope-OrgID`).
pub const MULTITENANCY: &str = "-auth.multitenancy-enabled=true";

/// How long `ember` may take to answer `GET /ready` (override:
/// `EMBER_TEST_READY_TIMEOUT_SECS`).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `ember` may take to flush and exit after SIGTERM (override:
/// `EMBER_TEST_STOP_TIMEOUT_SECS`).
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// Lines of the server's log printed when a test fails.
const LOG_TAIL_LINES: usize = 120;

/// A running `ember -target=all` on a free loopback port.
///
/// Its stdout and stderr go to a log file; the log's tail is printed when the
/// harness gives up on the process and when a test panics while the process is
/// alive (dropping it then). Dropping it kills the process with SIGKILL.
#[derive(Debug)]
pub struct EmberProcess {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    args: Vec<String>,
    starts: usize,
    log_path: PathBuf,
    /// Where the current start's output begins in the log file.
    log_offset: u64,
    /// Whether a start waits for `GET /ready`.
    wait: bool,
    /// Whether the process is stopped with SIGSTOP.
    paused: bool,
    // Held for their lifetimes: removed when the process value is dropped.
    _owned_data_dir: Option<TempDir>,
    _log_dir: TempDir,
}

/// Why a start attempt did not end with a ready server.
enum StartFailure {
    /// The port was taken between choosing it and the server binding it.
    PortTaken,
    Other(String),
}

impl EmberProcess {
    /// Starts `ember -target=all` storing under a fresh temporary directory, with
    /// `args` (Go-style flags such as [`MULTITENANCY`]) after the harness's own.
    pub fn start(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ember-data-")
            .tempdir()
            .expect("create data dir");
        let path = dir.path().to_path_buf();
        Self::spawn(path, Some(dir), args)
    }

    /// Starts `ember -target=all` storing under `data_dir`, which the caller owns.
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Self {
        Self::spawn(data_dir.to_path_buf(), None, args)
    }

    fn spawn(data_dir: PathBuf, owned: Option<TempDir>, args: &[&str]) -> Self {
        let log_dir = tempfile::Builder::new()
            .prefix("ember-log-")
            .tempdir()
            .expect("create log dir");
        let log_path = log_dir.path().join("ember.log");
        let mut process = EmberProcess {
            child: None,
            port: 0,
            data_dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            starts: 0,
            log_path,
            log_offset: 0,
            wait: true,
            paused: false,
            _owned_data_dir: owned,
            _log_dir: log_dir,
        };
        process.launch();
        process
    }

    /// Starts the binary again on the same data directory and arguments (after
    /// [`stop`](Self::stop) or [`kill`](Self::kill)); the port changes, so take a
    /// new [`client`](Self::client).
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart() needs the previous process stopped first"
        );
        self.launch();
    }

    fn launch(&mut self) {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match self.try_launch() {
                Ok(()) => return,
                Err(StartFailure::PortTaken) if attempt < ATTEMPTS => {
                    eprintln!("ember could not bind its port (attempt {attempt}), retrying");
                }
                Err(StartFailure::PortTaken) => {
                    self.fail("ember could not bind a free port three times")
                }
                Err(StartFailure::Other(why)) => self.fail(&why),
            }
        }
    }

    fn try_launch(&mut self) -> Result<(), StartFailure> {
        let bin = ember_binary();
        let port = free_port();
        let mut cmd = launch::ember_command(&bin, port, &self.data_dir);
        // `-target=all` unless the test names its own targets (e.g. `-target=agent`).
        let own_target = self
            .args
            .iter()
            .any(|a| a.starts_with("-target=") || a.starts_with("--target="));
        if !own_target {
            cmd.arg("-target=all");
        }
        cmd.arg(format!(
            "-memberlist.bind-port={}",
            ember_testkit::ports::free_gossip_port()
        ))
        .args(&self.args);

        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open log file");
        let argv: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        writeln!(
            log,
            "===== ember start #{} ({}): {} {}",
            self.starts,
            self.log_path.display(),
            bin.display(),
            argv.join(" ")
        )
        .expect("write log file");
        self.log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        launch::log_output(&mut cmd, &self.log_path).expect("open log file");

        let child = cmd
            // Keep a stray default `./data` out of the repository.
            .current_dir(self._log_dir.path())
            .env("RUST_BACKTRACE", "1")
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}\n(build it first: `cargo build --bin ember`, \
                     or point EMBER_BIN at it)",
                    bin.display()
                )
            });
        self.port = port;
        self.child = Some(child);
        if !self.wait {
            return Ok(());
        }
        self.wait_ready()
    }

    /// Starts the binary again like [`restart`](Self::restart), but returns
    /// once it runs, without waiting for `GET /ready` (to watch it start, e.g.
    /// replay its write-ahead log); [`wait_until_ready`](Self::wait_until_ready) waits.
    pub fn restart_without_waiting(&mut self) {
        assert!(
            self.child.is_none(),
            "restart_without_waiting() needs the previous process stopped first"
        );
        self.wait = false;
        let launched = self.try_launch();
        self.wait = true;
        if let Err(StartFailure::Other(why)) = launched {
            self.fail(&why);
        }
    }

    /// Waits until `GET /ready` answers 200, failing the test when it does not in time.
    pub fn wait_until_ready(&mut self) {
        match self.wait_ready() {
            Ok(()) => {}
            Err(StartFailure::PortTaken) => self.fail("ember could not bind its port"),
            Err(StartFailure::Other(why)) => self.fail(&why),
        }
    }

    fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let timeout = env_duration("EMBER_TEST_READY_TIMEOUT_SECS", READY_TIMEOUT);
        let url = format!("{}/ready", self.base_url());
        let child = self.child.as_mut().expect("child");
        match launch::wait_ready(child, &url, timeout) {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status)) => {
                self.child = None;
                let log = self.log_since_start().to_lowercase();
                if log.contains("address already in use") || log.contains("addrinuse") {
                    return Err(StartFailure::PortTaken);
                }
                Err(StartFailure::Other(format!(
                    "ember exited before it was ready: {status}"
                )))
            }
            Err(NotReady::TimedOut { timeout, last }) => Err(StartFailure::Other(format!(
                "ember was not ready after {timeout:?} ({last})"
            ))),
        }
    }

    /// Returns the port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns a client for the running server.
    pub fn client(&self) -> Client {
        assert!(self.child.is_some(), "ember is not running");
        Client::new(&self.base_url())
    }

    /// Returns the storage directory (`-storage.filesystem.dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Returns the file that holds the server's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Returns whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Sends SIGTERM, waits for the process to flush and exit, and asserts that it
    /// exited with code 0.
    pub fn stop(&mut self) -> ExitStatus {
        let timeout = env_duration("EMBER_TEST_STOP_TIMEOUT_SECS", STOP_TIMEOUT);
        self.resume();
        let pid = self.pid();
        signal(pid, libc::SIGTERM);
        let status = self.wait_exit(timeout).unwrap_or_else(|| {
            self.kill();
            self.fail(&format!(
                "ember did not exit within {timeout:?} after SIGTERM (killed it)"
            ))
        });
        if status.code() != Some(0) {
            self.fail(&format!("ember exited with {status} after SIGTERM, not 0"));
        }
        status
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed) and reaps it.
    pub fn kill(&mut self) {
        self.paused = false;
        if let Some(mut child) = self.child.take() {
            launch::kill(&mut child);
        }
    }

    /// Freezes the process with SIGSTOP: it keeps its sockets but answers
    /// nothing, as a machine that hangs would, until [`resume`](Self::resume).
    pub fn pause(&mut self) {
        signal(self.pid(), libc::SIGSTOP);
        self.paused = true;
    }

    /// Lets a [`pause`](Self::pause)d process run again with SIGCONT; does
    /// nothing to one that is not paused.
    pub fn resume(&mut self) {
        if self.paused && self.child.is_some() {
            signal(self.pid(), libc::SIGCONT);
        }
        self.paused = false;
    }

    /// Returns whether the process is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn pid(&self) -> libc::pid_t {
        let child = self.child.as_ref().expect("ember is not running");
        libc::pid_t::try_from(child.id()).expect("pid fits pid_t")
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Returns the last lines of the server's log.
    pub fn log_tail(&self) -> String {
        launch::log_tail(&self.log_path, LOG_TAIL_LINES)
    }

    fn log_since_start(&self) -> String {
        let log = std::fs::read(&self.log_path).unwrap_or_default();
        let from = usize::try_from(self.log_offset).unwrap_or(0).min(log.len());
        String::from_utf8_lossy(&log[from..]).into_owned()
    }

    /// Returns the whole log of the server so far.
    pub fn log(&self) -> String {
        launch::read_log(&self.log_path)
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n----- last {LOG_TAIL_LINES} lines of {} -----\n{}\n----- end of ember log -----",
            self.log_path.display(),
            self.log_tail()
        )
    }
}

impl Drop for EmberProcess {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- ember ({}) log tail, {} -----\n{}\n----- end of ember log -----",
                if running {
                    "was running"
                } else {
                    "had stopped"
                },
                self.log_path.display(),
                self.log_tail()
            );
        }
    }
}

/// Returns the `ember` binary (see [`launch::ember_binary`]), panicking with
/// how to build it when there is none.
pub fn ember_binary() -> PathBuf {
    launch::ember_binary().unwrap_or_else(|e| panic!("{e}"))
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child,
    // which has not been reaped yet, so the pid cannot have been reused.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

fn env_duration(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(default)
}

/// Writes `contents` to a new file in `dir`; a small convenience for tests.
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    File::create(&path)
        .and_then(|mut f| f.write_all(contents))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Runs `command` to completion with its stdout and stderr in `log_path`,
/// failing the calling test when it cannot start, exits unsuccessfully or
/// runs longer than `timeout`; returns what it logged.
pub fn run_logged(
    mut command: std::process::Command,
    what: &str,
    log_path: &std::path::Path,
    timeout: std::time::Duration,
) -> String {
    use std::process::Stdio;
    let log = std::fs::File::create(log_path).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish in {timeout:?}:\n{}",
                std::fs::read_to_string(log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(log_path).unwrap_or_default();
    assert!(status.success(), "{what} failed ({status}):\n{output}");
    output
}
