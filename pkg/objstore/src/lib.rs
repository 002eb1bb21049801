//! Builds the object store from configuration.
//!
//! Every other crate takes an `Arc<dyn ObjectStore>` and never knows which cloud it
//! talks to (DESIGN.md §3); this crate is the one place that turns the `storage` section
//! of the configuration into such a store: local filesystem (the default, under
//! `./data`), S3 and S3-compatible servers, Google Cloud Storage, Azure Blob Storage, or
//! memory for tests. Building does no I/O against the cloud: a wrong bucket or bad
//! credentials show up on the first request, not here.

mod config;
mod metrics;

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;

pub use object_store;

pub use config::{
    AzureConfig, Backend, CacheConfig, FilesystemConfig, GcsConfig, S3Config, StorageConfig,
};
pub use metrics::{Instrumented, OPERATIONS, ObjstoreMetrics, instrument};

/// Errors from validating storage configuration and building a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key the selected backend needs is empty.
    #[error("{key} is required when storage.backend is {backend}")]
    MissingKey {
        /// Full configuration key, e.g. `storage.s3.bucket_name`.
        key: &'static str,
        /// The backend that needs it.
        backend: Backend,
    },
    /// One of two keys that only make sense together is set without the other.
    #[error("{key} is required when {other} is set")]
    MissingPair {
        /// The missing key.
        key: &'static str,
        /// The key that is set.
        other: &'static str,
    },
    /// `storage.backend` names no known backend.
    #[error("unknown storage backend {0:?}, expected one of filesystem, s3, gcs, azure, memory")]
    UnknownBackend(String),
    /// The filesystem backend's directory could not be created.
    #[error("cannot create storage directory {}: {source}", path.display())]
    CreateDir {
        /// The directory from `storage.filesystem.dir`.
        path: PathBuf,
        /// Why creating it failed.
        source: std::io::Error,
    },
    /// The `object_store` builder refused the configuration.
    #[error("cannot build {backend} object store: {source}")]
    Build {
        /// The backend being built.
        backend: Backend,
        /// The builder's error.
        source: object_store::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds the object store that `cfg` describes, after [`StorageConfig::validate`].
///
/// The filesystem backend creates its directory if missing. Cloud backends start from
/// their standard environment (`AWS_*`, `GOOGLE_*`, `AZURE_*` variables, workload
/// identity, instance metadata) and then apply the keys set in `cfg`, so explicit
/// configuration wins and empty credentials fall back to the platform's.
pub fn build(cfg: &StorageConfig) -> Result<Arc<dyn ObjectStore>> {
    cfg.validate()?;
    let backend = cfg.backend;
    let build_err = |source| Error::Build { backend, source };
    let store: Arc<dyn ObjectStore> = match backend {
        Backend::Filesystem => {
            let dir = &cfg.filesystem.dir;
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.clone(),
                source,
            })?;
            // Deleting a block's last file removes its directory, as an
            // object store would: readers never list a deleted block.
            Arc::new(
                LocalFileSystem::new_with_prefix(dir)
                    .map_err(build_err)?
                    .with_automatic_cleanup(true),
            )
        }
        Backend::Memory => Arc::new(InMemory::new()),
        Backend::S3 => Arc::new(s3_builder(&cfg.s3).build().map_err(build_err)?),
        Backend::Gcs => {
            let gcs = &cfg.gcs;
            let mut builder =
                GoogleCloudStorageBuilder::from_env().with_bucket_name(&gcs.bucket_name);
            if !gcs.service_account_path.is_empty() {
                builder = builder.with_service_account_path(&gcs.service_account_path);
            }
            Arc::new(builder.build().map_err(build_err)?)
        }
        Backend::Azure => {
            let azure = &cfg.azure;
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_account(&azure.account_name)
                .with_container_name(&azure.container_name);
            if !azure.account_key.is_empty() {
                builder = builder.with_access_key(&azure.account_key);
            }
            if !azure.endpoint.is_empty() {
                builder = builder
                    .with_allow_http(azure.endpoint.starts_with("http://"))
                    .with_endpoint(azure.endpoint.clone());
            }
            Arc::new(builder.build().map_err(build_err)?)
        }
    };
    tracing::info!(backend = %backend, store = %store, "object store ready");
    Ok(store)
}

/// Returns a view of `store` in which every path lives under `prefix`, e.g. one tenant's
/// directory. An empty prefix returns `store` itself.
pub fn prefixed(store: Arc<dyn ObjectStore>, prefix: impl Into<Path>) -> Arc<dyn ObjectStore> {
    let prefix = prefix.into();
    if prefix.as_ref().is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

/// How the S3 client reaches the bucket: the URL it talks to and how the bucket is named.
#[derive(Debug, PartialEq, Eq)]
struct S3Addressing {
    /// Endpoint for `object_store`: with the bucket in the host name when
    /// `virtual_hosted`, without the bucket otherwise; `None` for AWS by region.
    endpoint: Option<String>,
    /// Whether the bucket goes in the host name rather than the path.
    virtual_hosted: bool,
    /// Whether plain HTTP is allowed.
    allow_http: bool,
}

/// Works out the addressing the way minio-go (and so Pyroscope) does: virtual-hosted
/// for AWS and Google endpoints, path style for everything else (MinIO, Ceph...), path
/// style always with `force_path_style`, and path style for dotted bucket names over
/// HTTPS, whose host names the wildcard certificate does not cover.
fn s3_addressing(cfg: &S3Config) -> S3Addressing {
    let bucket = cfg.bucket_name.trim();
    let dotted = bucket.contains('.');
    let endpoint = cfg.endpoint.trim().trim_end_matches('/');
    if endpoint.is_empty() {
        return S3Addressing {
            endpoint: None,
            virtual_hosted: !cfg.force_path_style && !dotted,
            allow_http: false,
        };
    }
    let (scheme, authority) = match endpoint.split_once("://") {
        Some((scheme, authority)) => (scheme.to_ascii_lowercase(), authority),
        None if cfg.insecure => ("http".to_string(), endpoint),
        None => ("https".to_string(), endpoint),
    };
    let host = authority.split(['/', ':']).next().unwrap_or_default();
    let host = host.to_ascii_lowercase();
    let cloud_host = host.ends_with(".amazonaws.com")
        || host == "amazonaws.com"
        || host == "storage.googleapis.com";
    let virtual_hosted = !cfg.force_path_style && cloud_host && !(dotted && scheme == "https");
    let endpoint = if virtual_hosted {
        format!("{scheme}://{bucket}.{authority}")
    } else {
        format!("{scheme}://{authority}")
    };
    S3Addressing {
        endpoint: Some(endpoint),
        virtual_hosted,
        allow_http: scheme == "http" || cfg.insecure,
    }
}

/// Returns an S3 builder from the AWS environment overlaid with `cfg`.
fn s3_builder(cfg: &S3Config) -> AmazonS3Builder {
    let addressing = s3_addressing(cfg);
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(cfg.bucket_name.trim())
        .with_virtual_hosted_style_request(addressing.virtual_hosted);
    if let Some(endpoint) = addressing.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(addressing.allow_http);
    }
    if !cfg.region.is_empty() {
        builder = builder.with_region(&cfg.region);
    }
    if !cfg.access_key_id.is_empty() {
        builder = builder
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(&cfg.secret_access_key);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::{ObjectStoreExt, PutPayload};

    async fn round_trip(store: &dyn ObjectStore) {
        let path = Path::from("tenant-a/blocks/01J0000000000000000000000/meta.json");
        store
            .put(&path, PutPayload::from_static(b"{\"version\":1}"))
            .await
            .unwrap();
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"{\"version\":1}");

        let listed: Vec<_> = store
            .list(Some(&Path::from("tenant-a/blocks")))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed, vec![path.to_string()]);
        let other: Vec<_> = store
            .list(Some(&Path::from("tenant-b")))
            .try_collect()
            .await
            .unwrap();
        assert!(other.is_empty());
    }

    #[tokio::test]
    async fn filesystem_round_trip_creates_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("data");
        let cfg = StorageConfig {
            filesystem: FilesystemConfig { dir: dir.clone() },
            ..Default::default()
        };
        let store = build(&cfg).unwrap();
        round_trip(store.as_ref()).await;
        let on_disk = dir.join("tenant-a/blocks/01J0000000000000000000000/meta.json");
        assert_eq!(std::fs::read(on_disk).unwrap(), b"{\"version\":1}");

        // A deleted block leaves no empty directory for listings to find.
        let path = Path::from("tenant-a/blocks/01J0000000000000000000000/meta.json");
        store.delete(&path).await.unwrap();
        assert!(
            !dir.join("tenant-a/blocks/01J0000000000000000000000")
                .exists()
        );
    }

    #[tokio::test]
    async fn memory_round_trip() {
        let cfg = StorageConfig {
            backend: Backend::Memory,
            ..Default::default()
        };
        let store = build(&cfg).unwrap();
        round_trip(store.as_ref()).await;
    }

    #[tokio::test]
    async fn prefixed_store_writes_under_prefix() {
        let cfg = StorageConfig {
            backend: Backend::Memory,
            ..Default::default()
        };
        let store = build(&cfg).unwrap();
        let tenant = prefixed(Arc::clone(&store), "tenant-a");
        tenant
            .put(
                &Path::from("blocks/x/meta.json"),
                PutPayload::from_static(b"1"),
            )
            .await
            .unwrap();
        store
            .head(&Path::from("tenant-a/blocks/x/meta.json"))
            .await
            .unwrap();
        let listed: Vec<_> = tenant
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed, vec!["blocks/x/meta.json".to_string()]);
        assert!(Arc::ptr_eq(&prefixed(Arc::clone(&store), ""), &store));
    }

    #[test]
    fn build_validates_first() {
        let cfg = StorageConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        let err = build(&cfg).err().unwrap().to_string();
        assert_eq!(
            err,
            "storage.s3.bucket_name is required when storage.backend is s3"
        );
    }

    #[test]
    fn filesystem_dir_that_is_a_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let cfg = StorageConfig {
            filesystem: FilesystemConfig { dir: file.clone() },
            ..Default::default()
        };
        let err = build(&cfg).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot create storage directory {}",
                file.display()
            )),
            "{err}"
        );
    }

    fn s3(endpoint: &str, bucket: &str) -> S3Config {
        S3Config {
            endpoint: endpoint.into(),
            bucket_name: bucket.into(),
            ..Default::default()
        }
    }

    #[test]
    fn s3_addressing_aws_by_region() {
        assert_eq!(
            s3_addressing(&s3("", "profiles")),
            S3Addressing {
                endpoint: None,
                virtual_hosted: true,
                allow_http: false
            }
        );
        let mut cfg = s3("", "profiles");
        cfg.force_path_style = true;
        assert!(!s3_addressing(&cfg).virtual_hosted);
        assert!(!s3_addressing(&s3("", "my.profiles")).virtual_hosted);
    }

    #[test]
    fn s3_addressing_aws_endpoint_is_virtual_hosted() {
        assert_eq!(
            s3_addressing(&s3("s3.eu-west-1.amazonaws.com", "profiles")),
            S3Addressing {
                endpoint: Some("https://profiles.s3.eu-west-1.amazonaws.com".into()),
                virtual_hosted: true,
                allow_http: false
            }
        );
        let mut cfg = s3("https://s3.eu-west-1.amazonaws.com/", "profiles");
        cfg.force_path_style = true;
        assert_eq!(
            s3_addressing(&cfg),
            S3Addressing {
                endpoint: Some("https://s3.eu-west-1.amazonaws.com".into()),
                virtual_hosted: false,
                allow_http: false
            }
        );
    }

    #[test]
    fn s3_addressing_minio_is_path_style() {
        let mut cfg = s3("minio:9000", "profiles");
        cfg.insecure = true;
        assert_eq!(
            s3_addressing(&cfg),
            S3Addressing {
                endpoint: Some("http://minio:9000".into()),
                virtual_hosted: false,
                allow_http: true
            }
        );
        assert_eq!(
            s3_addressing(&s3("minio:9000", "profiles"))
                .endpoint
                .as_deref(),
            Some("https://minio:9000")
        );
        let explicit = s3_addressing(&s3("http://127.0.0.1:9000", "profiles"));
        assert_eq!(explicit.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(explicit.allow_http);
    }

    #[test]
    fn cloud_builders_accept_config_without_network() {
        let mut s3_cfg = StorageConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        s3_cfg.s3 = s3("127.0.0.1:9000", "profiles");
        s3_cfg.s3.insecure = true;
        s3_cfg.s3.region = "eu-west-1".into();
        s3_cfg.s3.access_key_id = "minio".into();
        s3_cfg.s3.secret_access_key = "minio123".into();
        let store = build(&s3_cfg).unwrap();
        assert!(store.to_string().contains("profiles"), "{store}");

        let mut azure_cfg = StorageConfig {
            backend: Backend::Azure,
            ..Default::default()
        };
        azure_cfg.azure.account_name = "devstoreaccount1".into();
        azure_cfg.azure.container_name = "profiles".into();
        azure_cfg.azure.account_key = "c2VjcmV0".into();
        azure_cfg.azure.endpoint = "http://127.0.0.1:10000/devstoreaccount1".into();
        let store = build(&azure_cfg).unwrap();
        assert!(store.to_string().contains("profiles"), "{store}");

        let mut gcs_cfg = StorageConfig {
            backend: Backend::Gcs,
            ..Default::default()
        };
        gcs_cfg.gcs.bucket_name = "profiles".into();
        let store = build(&gcs_cfg).unwrap();
        assert!(store.to_string().contains("profiles"), "{store}");
    }
}
