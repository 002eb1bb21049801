//! A real S3-compatible server for the benchmark, far away: `moto_server` on a
//! loopback port, reached through a proxy that holds back every request
//! [`REQUEST_DELAY`](crate::reads::REQUEST_DELAY) before passing it on.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use ember_objstore::{Backend, S3Config, StorageConfig};
use object_store::ObjectStore;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::BoxResult;

/// The variable naming the `moto_server` executable, as in the tests.
pub(crate) const MOTO_SERVER_VAR: &str = "EMBER_MOTO_SERVER";
const BUCKET: &str = "ember-bench";

/// A `moto_server` with one bucket, killed on drop.
#[derive(Debug)]
pub(crate) struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// moto serves objects only to requests with credentials, but checks no
/// signature: a well-formed header stands in for SigV4.
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=ember-bench/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

impl Moto {
    /// Returns the `moto_server` that `EMBER_MOTO_SERVER` names, if set.
    pub(crate) fn binary() -> Option<PathBuf> {
        std::env::var_os(MOTO_SERVER_VAR).map(PathBuf::from)
    }

    /// Starts `binary` on a free port and creates the bucket.
    pub(crate) fn start(binary: &Path) -> BoxResult<Self> {
        let port = free_port()?;
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
        let moto = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        let url = format!("http://{}", moto.addr);
        let deadline = Instant::now() + Duration::from_secs(60);
        while agent.get(&format!("{url}/")).call().is_err() {
            if Instant::now() > deadline {
                return Err(format!("{} did not answer within 60 s", binary.display()).into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        agent
            .put(&format!("{url}/{BUCKET}"))
            .set("Authorization", AUTHORIZATION)
            .call()
            .map_err(|e| format!("creating bucket {BUCKET}: {e}"))?;
        Ok(moto)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Returns an S3 store of the bucket reached at `addr`.
pub(crate) fn store(addr: SocketAddr) -> BoxResult<Arc<dyn ObjectStore>> {
    let cfg = StorageConfig {
        backend: Backend::S3,
        s3: S3Config {
            endpoint: format!("http://{addr}"),
            bucket_name: BUCKET.into(),
            region: "us-east-1".into(),
            access_key_id: "ember-bench".into(),
            secret_access_key: "ember-bench".into(),
            insecure: true,
            force_path_style: true,
        },
        ..Default::default()
    };
    Ok(ember_objstore::build(&cfg)?)
}

/// Starts a TCP proxy to `upstream` that holds back the first bytes of every
/// request by `delay`: a connection's next read from the client after the
/// server has answered is a new request. Returns its address.
pub(crate) async fn delaying_proxy(upstream: SocketAddr, delay: Duration) -> BoxResult<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(upstream).await {
                    let _ = relay(client, server, delay).await;
                }
            });
        }
    });
    Ok(addr)
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let new_request = Arc::new(AtomicBool::new(true));
    let answered = new_request.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_rx.read(&mut buf).await?;
            if n == 0 {
                return server_tx.shutdown().await;
            }
            if new_request.swap(false, Ordering::AcqRel) {
                tokio::time::sleep(delay).await;
            }
            server_tx.write_all(&buf[..n]).await?;
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = server_rx.read(&mut buf).await?;
            if n == 0 {
                return client_tx.shutdown().await;
            }
            answered.store(true, Ordering::Release);
            client_tx.write_all(&buf[..n]).await?;
        }
    };
    tokio::try_join!(upstream, downstream).map(|_| ())
}
