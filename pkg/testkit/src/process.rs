//! Launching servers for tests and benchmarks: finding the `ember` binary,
//! starting it (or another server) with its output in a log file, waiting
//! until it answers, reading the log's tail when something went wrong.
//!
//! The policies around it differ and stay with their users: the end-to-end
//! harness (`ember_tests::EmberProcess`) panics with the log, retries a port
//! that was taken and restarts on the same data; the benchmark returns
//! errors and ties the processes' lives to its own.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The variable that names the `ember` binary to run.
pub const EMBER_BIN_VAR: &str = "EMBER_BIN";

/// Returns the `ember` binary: `EMBER_BIN`, else `ember` in the Cargo target
/// directory of the running executable (beside a bench binary,
/// `target/<profile>/ember`, or one level up from a test binary in
/// `target/<profile>/deps/`); an error saying how to build it otherwise.
pub fn ember_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os(EMBER_BIN_VAR) {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("ember"))
        .collect();
    candidates
        .iter()
        .find(|bin| bin.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "no ember binary at {candidates:?}: build it with `cargo build --bin ember` \
                 (scripts/test.sh does; add --release for a release build), or set {EMBER_BIN_VAR}"
            )
        })
}

/// Returns a command that runs `bin` serving HTTP on 127.0.0.1:`port` and
/// storing under `data_dir`, with no `EMBER_*` variable of the caller's.
///
/// The server reads its configuration from `EMBER_*` variables and refuses
/// unknown ones; launched servers are configured by flags alone, so none of
/// a test's own variables (`EMBER_BIN`, `EMBER_TESTDATA`...) nor a
/// developer's settings leak into them.
pub fn ember_command(bin: &Path, port: u16, data_dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EMBER_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("-server.http-listen-address=127.0.0.1")
        .arg(format!("-server.http-listen-port={port}"))
        .arg(format!("-storage.filesystem.dir={}", data_dir.display()));
    cmd
}

/// Sends `cmd`'s stdout and stderr to the end of the file `log` (created
/// when missing) and gives it no stdin.
pub fn log_output(cmd: &mut Command, log: &Path) -> std::io::Result<()> {
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out));
    Ok(())
}

/// Returns the text of a log file, lossily decoded ("" when unreadable).
pub fn read_log(log: &Path) -> String {
    std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Returns the last `lines` lines of a log file.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = read_log(log);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills `child` with SIGKILL and reaps it; a child that has exited already
/// is only reaped.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Why a server did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// It exited first.
    Exited(ExitStatus),
    /// It did not answer in time; the last answer or error.
    TimedOut {
        /// How long it was given.
        timeout: Duration,
        /// What the last attempt got.
        last: String,
    },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "it exited with {status}"),
            NotReady::TimedOut { timeout, last } => {
                write!(f, "it did not answer 2xx within {timeout:?} ({last})")
            }
        }
    }
}

/// Polls `GET url` until it answers 2xx, failing as soon as `child` exits
/// or once `timeout` has passed.
pub fn wait_ready(child: &mut Child, url: &str, timeout: Duration) -> Result<(), NotReady> {
    let deadline = Instant::now() + timeout;
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(NotReady::Exited(status));
        }
        let last = match agent.get(url).call() {
            Ok(resp) if (200..300).contains(&resp.status()) => return Ok(()),
            Ok(resp) => format!("GET {url} answered {}", resp.status()),
            Err(ureq::Error::Status(code, _)) => format!("GET {url} answered {code}"),
            Err(e) => format!("GET {url} failed: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut { timeout, last });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn ember_commands_pass_no_ember_variables() {
        let cmd = ember_command(Path::new("ember"), 4321, Path::new("/data"));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "-server.http-listen-address=127.0.0.1",
                "-server.http-listen-port=4321",
                "-storage.filesystem.dir=/data"
            ]
        );
        for (key, value) in cmd.get_envs() {
            assert!(
                !key.to_string_lossy().starts_with("EMBER_") || value.is_none(),
                "{key:?} is passed on"
            );
        }
    }

    #[test]
    fn logs_output_and_reads_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out.log");
        std::fs::write(&log, "before\n").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two >&2; echo three"]);
        log_output(&mut cmd, &log).unwrap();
        assert!(cmd.status().unwrap().success());
        assert_eq!(log_tail(&log, 2), "two\nthree");
        assert!(read_log(&log).starts_with("before\none\n"), "appends");
        assert_eq!(read_log(&dir.path().join("missing.log")), "");
    }

    /// Returns the URL of a port nothing listens on any more.
    fn closed_url() -> String {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}/ready")
    }

    #[test]
    fn waiting_ends_when_the_server_exits_or_time_is_up() {
        let mut exits = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        match wait_ready(&mut exits, &closed_url(), Duration::from_secs(60)) {
            Err(NotReady::Exited(status)) => assert_eq!(status.code(), Some(3)),
            other => panic!("expected an exit, got {other:?}"),
        }
        let mut sleeps = Command::new("sleep").arg("60").spawn().unwrap();
        let waited = wait_ready(&mut sleeps, &closed_url(), Duration::ZERO);
        kill(&mut sleeps);
        match waited {
            Err(e @ NotReady::TimedOut { .. }) => {
                assert!(e.to_string().contains("failed"), "{e}")
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn waiting_ends_at_the_first_2xx() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ready", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        });
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let waited = wait_ready(&mut child, &url, Duration::from_secs(60));
        kill(&mut child);
        waited.unwrap();
        server.join().unwrap();
    }
}
