//! The agent's HTTP client, shared by scrapes and Connect pushes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{CertificateDer, pem::PemObject};

/// The HTTP client for scrapes and Connect pushes (http and https, HTTP/1.1).
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Returns an HTTP client that speaks http and https with the system's roots.
pub(crate) fn http_client() -> HttpClient {
    client_with(None)
}

/// Returns the roots of the CA bundle (PEM) at `path`.
pub(crate) fn roots_from(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading CA bundle {}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA bundle {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("CA bundle {} holds no certificate", path.display()));
    }
    Ok(roots)
}

/// Returns an HTTP client that trusts `roots` (a private CA) instead of the system's.
pub(crate) fn http_client_trusting(roots: rustls::RootCertStore) -> HttpClient {
    client_with(Some(roots))
}

fn client_with(roots: Option<rustls::RootCertStore>) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    // Both ring and aws-lc-rs may be compiled into the binary, so the provider is
    // named rather than guessed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let with_roots = |roots: rustls::RootCertStore| {
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector(http.clone())
    };
    let https = match roots {
        Some(roots) => with_roots(roots),
        None => match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b.https_or_http().enable_http1().wrap_connector(http),
            Err(e) => {
                tracing::warn!(error = %e, "no system TLS roots; https targets will fail");
                with_roots(rustls::RootCertStore::empty())
            }
        },
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https)
}
