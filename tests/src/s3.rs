//! A real S3-compatible server for the tests, and a proxy that can make it
//! unreachable.
//!
//! [`S3Server`] runs `moto_server` (moto in server mode, pinned in
//! `tests/python/s3-requirements.txt`, installed by `scripts/test.sh`) on a free
//! loopback port with one bucket. Ember reaches it through the `object_store`
//! crate exactly as it reaches AWS, MinIO or Ceph: signed requests, path-style
//! URLs. The tests read the bucket directly over moto's path-style HTTP API,
//! which checks no signatures.
//!
//! [`PausableProxy`] sits between Ember and moto. While paused it closes every
//! open connection and every new one right after accepting it, so Ember sees the
//! S3 server as down, while moto keeps what it already stores in memory: an
//! outage, not a data loss.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ember_testkit::process as launch;
use tempfile::TempDir;

use crate::process::free_port;

/// The variable naming the `moto_server` executable.
pub const MOTO_SERVER_VAR: &str = "EMBER_MOTO_SERVER";

/// How `moto_server` is installed, for the message when it is missing.
pub const MOTO_INSTALL_HINT: &str = "bash scripts/test.sh (a virtualenv with \
     tests/python/s3-requirements.txt under $CARGO_TARGET_DIR/moto-venv), or point \
     EMBER_MOTO_SERVER at a moto_server";

/// How long moto may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Returns the `moto_server` executable: `EMBER_MOTO_SERVER`, else
/// `moto-venv/bin/moto_server` in the Cargo target directory of this test
/// binary, where `scripts/test.sh` installs the pinned version; `None` when
/// there is neither. A `moto_server` on `PATH` is not used: its version is
/// anyone's guess.
pub fn moto_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(MOTO_SERVER_VAR) {
        let path = PathBuf::from(path);
        // A variable that names nothing is a broken setup, not a missing tool.
        assert!(
            path.is_file(),
            "{MOTO_SERVER_VAR}={} does not exist",
            path.display()
        );
        return Some(path);
    }
    // target/<profile>/deps/<test> → target/moto-venv/bin/moto_server
    let exe = std::env::current_exe().ok()?;
    let in_target = exe.ancestors().nth(3)?.join("moto-venv/bin/moto_server");
    in_target.is_file().then_some(in_target)
}

/// One object of a bucket listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct S3Object {
    /// The object key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A `moto_server` on a free loopback port with one bucket, killed on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    bucket: String,
    agent: ureq::Agent,
    log_path: PathBuf,
    _dir: TempDir,
}

impl S3Server {
    /// Starts `moto_server` and creates `bucket`; `None` (after
    /// [`skip_or_fail_missing_tool`](crate::skip_or_fail_missing_tool), which
    /// panics in CI) when moto is not installed.
    pub fn start(bucket: &str) -> Option<Self> {
        let Some(binary) = moto_server_binary() else {
            crate::skip_or_fail_missing_tool(
                "moto_server (moto[server] from PyPI)",
                MOTO_INSTALL_HINT,
            );
            return None;
        };
        Some(Self::start_with(&binary, bucket))
    }

    /// Starts the given `moto_server` and creates `bucket`.
    pub fn start_with(binary: &Path, bucket: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ember-moto-")
            .tempdir()
            .expect("create moto dir");
        let log_path = dir.path().join("moto.log");
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build();
        let mut server = S3Server {
            child: None,
            port: 0,
            bucket: bucket.to_string(),
            agent,
            log_path,
            _dir: dir,
        };
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match server.launch(binary) {
                Ok(()) => break,
                Err(why) if attempt < ATTEMPTS => {
                    eprintln!("moto_server did not start (attempt {attempt}): {why}; retrying")
                }
                Err(why) => server.fail(&format!("moto_server did not start: {why}")),
            }
        }
        let resp = server.request("PUT", &format!("/{bucket}"), None);
        if !(200..300).contains(&resp.0) {
            server.fail(&format!(
                "creating bucket {bucket} answered {}: {}",
                resp.0,
                String::from_utf8_lossy(&resp.1)
            ));
        }
        server
    }

    fn launch(&mut self, binary: &Path) -> Result<(), String> {
        let port = free_port();
        let mut cmd = Command::new(binary);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(self._dir.path());
        launch::log_output(&mut cmd, &self.log_path).expect("open moto log");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        self.port = port;
        let url = format!("{}/", self.endpoint());
        let child = self.child.insert(child);
        match launch::wait_ready(child, &url, START_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(why) => {
                self.kill();
                Err(why.to_string())
            }
        }
    }

    /// Returns `http://127.0.0.1:<port>`, the server's own address.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Returns the bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Returns the `storage` section of an Ember configuration file that stores
    /// in this bucket through `endpoint` (this server's, or a proxy's).
    pub fn storage_yaml(&self, endpoint: &str) -> String {
        format!(
            "storage:\n  backend: s3\n  s3:\n    endpoint: {endpoint}\n    bucket_name: {}\n    \
             region: us-east-1\n    access_key_id: ember-test\n    secret_access_key: ember-test\n    \
             insecure: true\n    force_path_style: true\n",
            self.bucket
        )
    }

    /// Sends a path-style request; returns the status and the body.
    ///
    /// moto checks no signature (unless told to), but serves objects only to
    /// requests that carry credentials, so a well-formed `Authorization` header
    /// with a dummy signature stands in for SigV4 signing.
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
            Credential=ember-test/20260101/us-east-1/s3/aws4_request, \
            SignedHeaders=host, Signature=00";
        let url = format!("{}{path}", self.endpoint());
        let req = self
            .agent
            .request(method, &url)
            .set("Authorization", AUTHORIZATION);
        let resp = crate::client::send(req, body)
            .unwrap_or_else(|e| self.fail(&format!("{method} {url}: {e}")));
        let status = resp.status();
        let mut bytes = Vec::new();
        resp.into_reader()
            .read_to_end(&mut bytes)
            .unwrap_or_else(|e| self.fail(&format!("{method} {url}: reading body: {e}")));
        (status, bytes)
    }

    /// Returns every object whose key starts with `prefix`, sorted by key.
    pub fn list(&self, prefix: &str) -> Vec<S3Object> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{}?list-type=2&prefix={}", self.bucket, url_encode(prefix));
            if let Some(token) = &token {
                path.push_str(&format!("&continuation-token={}", url_encode(token)));
            }
            let (status, body) = self.request("GET", &path, None);
            let xml = String::from_utf8_lossy(&body);
            if status != 200 {
                self.fail(&format!("listing {path} answered {status}: {xml}"));
            }
            for contents in xml.split("<Contents>").skip(1) {
                let key = xml_element(contents, "Key").expect("<Key> in <Contents>");
                let size = xml_element(contents, "Size")
                    .and_then(|s| s.parse().ok())
                    .expect("<Size> in <Contents>");
                out.push(S3Object { key, size });
            }
            match xml_element(&xml, "NextContinuationToken") {
                Some(next) if xml_element(&xml, "IsTruncated").as_deref() == Some("true") => {
                    token = Some(next)
                }
                _ => break,
            }
        }
        out.sort();
        out
    }

    /// Returns an object's bytes, or `None` when it does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = format!("/{}/{}", self.bucket, key);
        match self.request("GET", &path, None) {
            (200, body) => Some(body),
            (404, _) => None,
            (status, body) => self.fail(&format!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            )),
        }
    }

    /// Returns the ULIDs of `tenant`'s complete blocks: those with a
    /// `meta.json`, which Ember uploads last.
    pub fn blocks(&self, tenant: &str) -> BTreeSet<String> {
        let prefix = format!("{tenant}/blocks/");
        self.list(&prefix)
            .into_iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(&prefix)?;
                let (ulid, file) = rest.split_once('/')?;
                (file == "meta.json").then(|| ulid.to_string())
            })
            .collect()
    }

    /// Returns a block's parsed `meta.json`.
    pub fn block_meta(&self, tenant: &str, ulid: &str) -> serde_json::Value {
        let key = format!("{tenant}/blocks/{ulid}/meta.json");
        let bytes = self
            .get(&key)
            .unwrap_or_else(|| self.fail(&format!("{key} does not exist")));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"))
    }

    /// Returns a listing of the whole bucket, for failure messages.
    pub fn describe(&self) -> String {
        let objects = self.list("");
        if objects.is_empty() {
            return "(empty bucket)".into();
        }
        objects
            .iter()
            .map(|o| format!("{} ({} B)", o.key, o.size))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Returns the last lines of moto's log.
    pub fn log_tail(&self) -> String {
        launch::log_tail(&self.log_path, 40)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            launch::kill(&mut child);
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n----- last lines of {} -----\n{}\n----- end of moto log -----",
            self.log_path.display(),
            self.log_tail()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- moto log tail, {} -----\n{}\n----- end of moto log -----",
                self.log_path.display(),
                self.log_tail()
            );
        }
    }
}

/// Returns the text of the first `<name>` element in `xml`, unescaped.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// State shared by the proxy's threads.
#[derive(Debug)]
struct ProxyShared {
    upstream: SocketAddr,
    paused: AtomicBool,
    stopping: AtomicBool,
    /// Both ends of every forwarded connection, by connection id, so that a
    /// pause can cut them.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    next_id: AtomicU64,
    forwarded: AtomicUsize,
    refused: AtomicUsize,
}

impl ProxyShared {
    fn cut_all(&self) {
        for (_, (client, upstream)) in self.open.lock().expect("poisoned").drain() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

/// A TCP proxy on a free loopback port that forwards to one upstream address
/// until [`pause`](Self::pause)d; dropping it stops it.
#[derive(Debug)]
pub struct PausableProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    accept: Option<JoinHandle<()>>,
}

impl PausableProxy {
    /// Starts forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(ProxyShared {
            upstream,
            paused: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            forwarded: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("s3-proxy-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .expect("spawn proxy thread")
        };
        PausableProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Returns `http://127.0.0.1:<port>`, the address to give Ember.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes the upstream unreachable: open connections are cut and new ones are
    /// closed as soon as they are accepted.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
        self.shared.cut_all();
    }

    /// Forwards again.
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// Returns how many connections were closed unanswered while paused.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Returns how many connections were forwarded.
    pub fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.paused.store(true, Ordering::SeqCst);
        self.shared.cut_all();
        // Wake the accept loop so that it sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.paused.load(Ordering::SeqCst) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let upstream = match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) {
            Ok(upstream) => upstream,
            Err(_) => {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let clones = (client.try_clone(), upstream.try_clone());
        let (Ok(client_copy), Ok(upstream_copy)) = clones else {
            continue;
        };
        shared
            .open
            .lock()
            .expect("poisoned")
            .insert(id, (client_copy, upstream_copy));
        // A pause between the check above and the insert must cut this one too.
        if shared.paused.load(Ordering::SeqCst) {
            shared.cut_all();
            continue;
        }
        shared.forwarded.fetch_add(1, Ordering::SeqCst);
        let ends = Arc::new(AtomicUsize::new(2));
        for (from, to) in [
            (client.try_clone(), upstream.try_clone()),
            (upstream.try_clone(), client.try_clone()),
        ] {
            let (Ok(mut from), Ok(mut to)) = (from, to) else {
                continue;
            };
            let (shared, ends) = (shared.clone(), ends.clone());
            let _ = std::thread::Builder::new()
                .name("s3-proxy-copy".into())
                .spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    // Pass the half-close on; the other direction ends by itself.
                    let _ = to.shutdown(Shutdown::Write);
                    if ends.fetch_sub(1, Ordering::SeqCst) == 1 {
                        shared.open.lock().expect("poisoned").remove(&id);
                    }
                });
        }
    }
}
