//! Helpers shared by the `agent_*` tests: a tiny HTTP/1.1 server on std threads (fake
//! pprof targets, a fake distributor, a fake Kubernetes API), starting
//! `ember -target=agent` with a configuration file, and reading `/targets` and
//! `/metrics`.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ember_tests::{Client, EmberProcess, process::write_file};
use serde_json::Value;

/// A request as the fake servers see it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Path with query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub type Handler = Arc<dyn Fn(Request, &mut TcpStream) + Send + Sync>;

/// A fake HTTP server: one thread per connection, the handler writes the response.
pub struct FakeServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    pub fn start(handler: Handler) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"), handler)
    }

    pub fn start_on(listener: TcpListener, handler: Handler) -> Self {
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || serve_connection(stream, handler));
            }
        });
        FakeServer { port, stop }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_connection(mut stream: TcpStream, handler: Handler) {
    let Ok(read) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        handler(
            Request {
                method,
                path,
                headers,
                body,
            },
            &mut stream,
        );
        // Handlers answer with Content-Length (keep-alive) or close the stream.
    }
}

/// Writes a complete response with a body.
pub fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// An `ember` process and the directory holding its configuration file.
pub struct Agent {
    pub process: EmberProcess,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub fn client(&self) -> Client {
        self.process.client()
    }
}

/// Starts `ember` with `config` (YAML) as its configuration file and `args`; pass
/// `-target=agent` to run only the agent.
pub fn start_with_config(config: &str, args: &[&str]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "ember.yaml", config.as_bytes());
    let flag = format!("-config.file={}", path.display());
    let mut all: Vec<&str> = vec![&flag];
    all.extend_from_slice(args);
    Agent {
        process: EmberProcess::start(&all),
        _dir: dir,
    }
}

/// Returns `/targets` as JSON: the `activeTargets` array.
pub fn targets(client: &Client) -> Vec<Value> {
    let response = client.get("/targets?format=json");
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Returns the sum of a metric's samples whose line contains every part of `with`.
pub fn metric(client: &Client, name: &str, with: &[&str]) -> f64 {
    client
        .get("/metrics")
        .text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Returns a small gzipped memory pprof whose one value is `seq * 1024`, so a
/// receiver can tell which scrape it came from.
pub fn numbered_pprof(seq: i64) -> Vec<u8> {
    let raw = ember_tests::pprof::PprofBuilder::new(&[("alloc_space", "bytes")])
        .period_type("space", "bytes", 524_288)
        .time(ember_tests::now_nanos(), 0)
        .sample(&["main.main", "main.allocate"], &[seq.max(1) * 1024])
        .encode();
    ember_tests::client::gzip(&raw)
}

/// Job settings that scrape only the memory endpoint, for tests about scraping
/// itself rather than profile types.
pub const MEMORY_ONLY: &str = "    profiling_config:
      pprof_config:
        process_cpu: {enabled: false}
        goroutine: {enabled: false}
        block: {enabled: false}
        mutex: {enabled: false}
";

pub fn wait(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
}
