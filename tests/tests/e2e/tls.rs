//! Acceptance: with `-server.http-tls-cert-path` and `-server.http-tls-key-path`
//! Ember serves HTTPS with a test CA's certificate, reads a renewed certificate
//! without a restart, and an agent configured with the CA pushes over it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_tests::process::write_file;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

use crate::agent_support::{FakeServer, MEMORY_ONLY, numbered_pprof, respond, start_with_config};

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(name: &str) -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("ember test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Returns the status of `GET path` over HTTPS, trusting only `ca_pem`, or why
/// no answer came.
fn https_get(port: u16, ca_pem: &str, path: &str) -> Result<u16, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A peer closing without close_notify still leaves a whole response.
    let _ = tls.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP response: {text:?}"))
}

/// Writes the server's certificate and key where the flags point.
fn install(dir: &Path, pki: &Pki) {
    write_file(dir, "tls.crt", pki.cert_pem.as_bytes());
    write_file(dir, "tls.key", pki.key_pem.as_bytes());
}

/// Polls until `check` holds, or panics saying `what`.
fn until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        ember_testkit::process::kill(&mut self.child);
    }
}

fn start_https(dir: &Path, pki: &Pki) -> Server {
    start_https_with(dir, pki, &[])
}

/// Starts Ember serving HTTPS with `pki`'s certificate, with more flags.
fn start_https_with(dir: &Path, pki: &Pki, args: &[&str]) -> Server {
    install(dir, pki);
    let port = ember_tests::free_port();
    let binary = ember_tests::process::ember_binary();
    let data = dir.join("data");
    let mut command = ember_testkit::process::ember_command(&binary, port, &data);
    command
        .arg(format!(
            "-memberlist.bind-port={}",
            ember_tests::free_port()
        ))
        .arg(format!(
            "-server.http-tls-cert-path={}",
            dir.join("tls.crt").display()
        ))
        .arg(format!(
            "-server.http-tls-key-path={}",
            dir.join("tls.key").display()
        ))
        .args(args);
    ember_testkit::process::log_output(&mut command, &dir.join("ember.log")).unwrap();
    let child = command.spawn().expect("start ember");
    let server = Server { child, port };
    until("ember serves HTTPS", Duration::from_secs(30), || {
        https_get(port, &pki.ca_pem, "/ready") == Ok(200)
    });
    server
}

#[test]
fn https_with_a_test_ca_a_renewed_certificate_and_an_agent_pushing_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = pki("one");
    let server = start_https(dir.path(), &first);

    // Plain HTTP on the same port gets no answer of Ember's.
    let plain = ember_tests::Client::new(&format!("http://127.0.0.1:{}", server.port)).try_request(
        "GET",
        "/ready",
        &[],
        None,
    );
    assert!(
        !plain.is_ok_and(|r| r.status == 200),
        "plain HTTP was served"
    );

    // The agent verifies Ember with the CA and pushes over HTTPS.
    let target = FakeServer::start(Arc::new(|_req, stream| {
        respond(
            stream,
            "200 OK",
            "application/octet-stream",
            &numbered_pprof(1),
        )
    }));
    let ca = write_file(dir.path(), "ca.pem", first.ca_pem.as_bytes());
    let config = format!(
        "scrape_configs:
  - job_name: tls
    scrape_interval: 1s
    static_configs:
      - targets: ['{}']
        labels: {{service_name: tls-app}}
{MEMORY_ONLY}client:
  url: https://127.0.0.1:{}
  tls_ca_path: {}
  batch_wait: 50ms
",
        target.address(),
        server.port,
        ca.display()
    );
    let agent = start_with_config(&config, &["-target=agent"]);
    until(
        "the agent's pushes arrive over HTTPS",
        Duration::from_secs(30),
        || {
            crate::agent_support::metric(&agent.client(), "ember_agent_pushed_profiles_total", &[])
                >= 1.0
        },
    );

    // A renewed certificate from another CA is served without a restart: new
    // connections trust the new CA and no longer the old one.
    let second = pki("two");
    std::thread::sleep(Duration::from_millis(1100));
    install(dir.path(), &second);
    until(
        "the renewed certificate is served",
        Duration::from_secs(10),
        || https_get(server.port, &second.ca_pem, "/ready") == Ok(200),
    );
    assert!(
        https_get(server.port, &first.ca_pem, "/ready").is_err(),
        "the old certificate is still served"
    );
}

#[test]
fn distributors_replicate_to_ingesters_over_tls_with_the_cluster_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("cluster");
    let ca = write_file(dir.path(), "ca.pem", pki.ca_pem.as_bytes());
    let tokens = write_file(
        dir.path(),
        "tokens.yaml",
        b"- {token: client-token, tenants: [t1]}\n",
    );
    let tokens_flag = format!("-auth.tokens-file={}", tokens.display());
    let gossip = ember_tests::free_port();
    let ingester = start_https_with(
        dir.path(),
        &pki,
        &[
            "-target=ingester",
            &format!("-memberlist.bind-port={gossip}"),
            "-memberlist.node-name=ingester-tls",
            &tokens_flag,
            "-auth.cluster-token=peer-secret",
        ],
    );
    // Everything but health and metrics needs a credential, peers' calls too.
    assert_eq!(https_get(ingester.port, &pki.ca_pem, "/ring"), Ok(401));
    assert_eq!(https_get(ingester.port, &pki.ca_pem, "/metrics"), Ok(200));

    let distributor = ember_tests::EmberProcess::start(&[
        "-target=distributor",
        &format!("-memberlist.join=127.0.0.1:{gossip}"),
        "-distributor.replication-factor=1",
        "-ingester-client.tls-enabled",
        &format!("-ingester-client.tls-ca-path={}", ca.display()),
        &tokens_flag,
        "-auth.cluster-token=peer-secret",
    ]);
    let raw = ember_tests::pprof::with_time_nanos(
        &ember_tests::testdata::read("cpu.pb.gz"),
        ember_tests::now_nanos(),
    );
    let body = prost::Message::encode_to_vec(&ember_tests::client::push_request(
        &[("service_name", "tls-cluster")],
        &raw,
    ));
    let push = || {
        distributor.client().request(
            "POST",
            ember_tests::PUSH_PATH,
            &[
                ("content-type", "application/proto"),
                ("authorization", "Bearer client-token"),
            ],
            Some(&body),
        )
    };
    // The ring needs a moment to gossip the ingester ACTIVE.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = push();
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a push is not replicated over TLS: {} {}\n{}\ningester:\n{}",
            r.status,
            r.text(),
            distributor.log_tail(),
            ember_testkit::process::log_tail(&dir.path().join("ember.log"), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(dir.path().join("ember.log")).unwrap();
    assert!(!log.contains("peer-secret") && !log.contains("client-token"));
}
