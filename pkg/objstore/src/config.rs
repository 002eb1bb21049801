//! The `storage` section of the Ember configuration.
//!
//! These structs are embedded in the server's configuration under the `storage` key, so
//! every key and every message names the full path an operator writes
//! (`storage.s3.bucket_name`). Key names follow Grafana Pyroscope's where it has one,
//! so a Pyroscope `storage:` block carries over.
//!
//! Secrets (`storage.s3.secret_access_key`, `storage.azure.account_key`) never appear in
//! `Debug` output, so a config logged at startup does not leak them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ember_config::Documented;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where blocks are stored: the `storage` section of the configuration.
///
/// Only the sub-section named by [`StorageConfig::backend`] is used; the others may stay
/// at their (empty) defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Object store for blocks: filesystem, s3, gcs, azure or memory.
    ///
    /// `storage.backend`; `memory` loses everything on exit (tests).
    pub backend: Backend,
    /// Settings for the filesystem backend.
    pub filesystem: FilesystemConfig,
    /// Settings for the S3 backend.
    pub s3: S3Config,
    /// Settings for the GCS backend.
    pub gcs: GcsConfig,
    /// Settings for the Azure backend.
    pub azure: AzureConfig,
    /// The querier's in-memory cache of what it reads from blocks.
    pub cache: CacheConfig,
}

impl StorageConfig {
    /// Checks that the section of the selected backend has every key it needs.
    ///
    /// The error names the missing key as written in the configuration file, e.g.
    /// `storage.s3.bucket_name is required when storage.backend is s3`.
    pub fn validate(&self) -> Result<()> {
        let backend = self.backend;
        let require = |key: &'static str, value: &str| {
            if value.trim().is_empty() {
                Err(Error::MissingKey { key, backend })
            } else {
                Ok(())
            }
        };
        match backend {
            Backend::Filesystem => {
                if self.filesystem.dir.as_os_str().is_empty() {
                    return Err(Error::MissingKey {
                        key: "storage.filesystem.dir",
                        backend,
                    });
                }
            }
            Backend::Memory => {}
            Backend::S3 => {
                let s3 = &self.s3;
                require("storage.s3.bucket_name", &s3.bucket_name)?;
                match (s3.access_key_id.is_empty(), s3.secret_access_key.is_empty()) {
                    (false, true) => {
                        return Err(Error::MissingPair {
                            key: "storage.s3.secret_access_key",
                            other: "storage.s3.access_key_id",
                        });
                    }
                    (true, false) => {
                        return Err(Error::MissingPair {
                            key: "storage.s3.access_key_id",
                            other: "storage.s3.secret_access_key",
                        });
                    }
                    _ => {}
                }
            }
            Backend::Gcs => require("storage.gcs.bucket_name", &self.gcs.bucket_name)?,
            Backend::Azure => {
                require("storage.azure.account_name", &self.azure.account_name)?;
                require("storage.azure.container_name", &self.azure.container_name)?;
            }
        }
        Ok(())
    }
}

/// The kind of object store blocks are written to (`storage.backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Documented)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory on the local disk: the default, so `ember` alone stores under `./data`.
    #[default]
    Filesystem,
    /// Amazon S3 or an S3-compatible server (MinIO, Ceph, R2...).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
    /// Process memory; lost on exit. For tests.
    Memory,
}

impl Backend {
    /// Every backend, in the order the help text lists them.
    pub const ALL: [Backend; 5] = [
        Backend::Filesystem,
        Backend::S3,
        Backend::Gcs,
        Backend::Azure,
        Backend::Memory,
    ];

    /// Returns the name used in configuration files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Filesystem => "filesystem",
            Backend::S3 => "s3",
            Backend::Gcs => "gcs",
            Backend::Azure => "azure",
            Backend::Memory => "memory",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Backend::ALL
            .into_iter()
            .find(|backend| backend.as_str() == s.trim())
            .ok_or_else(|| Error::UnknownBackend(s.to_string()))
    }
}

/// The querier's cache of block reads (`storage.cache`): Parquet footers and
/// page indexes, the symbols of each service, and the column pages queries
/// fetched, least recently used evicted first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Bytes of block footers, symbols and column pages the querier keeps in memory.
    ///
    /// Least recently used entries go first; 0 turns the cache off, so every
    /// query reads object storage again. Default 268435456 (256 MiB).
    pub max_size_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            // As `ember_querier::DEFAULT_CACHE_BYTES`, which a querier built
            // without configuration uses.
            max_size_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Settings for the local filesystem backend (`storage.filesystem`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Directory for blocks with the filesystem backend.
    ///
    /// Created if missing. Relative paths are resolved against the working
    /// directory when the store is built. Default `./data`.
    pub dir: PathBuf,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./data"),
        }
    }
}

/// Settings for Amazon S3 and S3-compatible servers (`storage.s3`).
///
/// Credentials left empty fall back to the standard AWS chain (`AWS_*` environment
/// variables, web identity for EKS, ECS task role, EC2 instance metadata).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// S3 server host:port or URL; empty for AWS by region.
    ///
    /// A URL may carry its scheme; without one, `insecure` picks HTTP.
    pub endpoint: String,
    /// S3 bucket for blocks.
    ///
    /// Required with the s3 backend.
    pub bucket_name: String,
    /// S3 region; empty for us-east-1 or AWS_REGION.
    pub region: String,
    /// S3 access key ID; empty for the AWS credential chain.
    ///
    /// Given together with `secret_access_key` or not at all.
    pub access_key_id: String,
    /// S3 secret access key.
    ///
    /// Never shown in `Debug` output.
    pub secret_access_key: String,
    /// Use plain HTTP for an endpoint without a scheme.
    ///
    /// For a local MinIO, say.
    pub insecure: bool,
    /// Always put the bucket in the URL path, not the host.
    ///
    /// Otherwise the bucket goes in the host name for AWS and Google endpoints
    /// and in the path for other servers, as minio-go does.
    pub force_path_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket_name", &self.bucket_name)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &Redacted(&self.secret_access_key))
            .field("insecure", &self.insecure)
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// Settings for Google Cloud Storage (`storage.gcs`).
///
/// Without `service_account_path` the application default credentials are used
/// (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's login, or the metadata server).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    /// GCS bucket for blocks.
    ///
    /// Required with the gcs backend.
    pub bucket_name: String,
    /// GCS service account JSON key file; empty for application default credentials.
    pub service_account_path: String,
}

/// Settings for Azure Blob Storage (`storage.azure`).
///
/// Without `account_key` the client authenticates with a managed identity or the
/// `AZURE_*` environment variables.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    /// Azure storage account name.
    ///
    /// Required with the azure backend.
    pub account_name: String,
    /// Azure storage account key; empty for managed identity.
    ///
    /// Base64; never shown in `Debug` output.
    pub account_key: String,
    /// Azure container for blocks.
    ///
    /// Required with the azure backend.
    pub container_name: String,
    /// Azure blob service URL; empty for the public cloud.
    ///
    /// Empty means `https://<account_name>.blob.core.windows.net`. An
    /// `http://` URL (Azurite, say) enables plain HTTP.
    pub endpoint: String,
}

impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConfig")
            .field("account_name", &self.account_name)
            .field("account_key", &Redacted(&self.account_key))
            .field("container_name", &self.container_name)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// Shows whether a secret is set without showing it.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_filesystem_under_data() {
        let cfg = StorageConfig::default();
        assert_eq!(cfg.backend, Backend::Filesystem);
        assert_eq!(cfg.filesystem.dir, PathBuf::from("./data"));
        cfg.validate().unwrap();
    }

    #[test]
    fn backend_names_round_trip() {
        for backend in Backend::ALL {
            assert_eq!(backend.as_str().parse::<Backend>().unwrap(), backend);
            let yaml = serde_yaml::to_string(&backend).unwrap();
            assert_eq!(yaml.trim(), backend.as_str());
        }
        let err = "s4".parse::<Backend>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown storage backend \"s4\", expected one of filesystem, s3, gcs, azure, memory"
        );
    }

    #[test]
    fn s3_requires_bucket_name() {
        let cfg = StorageConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "storage.s3.bucket_name is required when storage.backend is s3"
        );
    }

    #[test]
    fn s3_keys_come_in_pairs() {
        let mut cfg = StorageConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        cfg.s3.bucket_name = "profiles".into();
        cfg.s3.access_key_id = "AKIA".into();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "storage.s3.secret_access_key is required when storage.s3.access_key_id is set"
        );
        cfg.s3.secret_access_key = "secret".into();
        cfg.validate().unwrap();
    }

    #[test]
    fn gcs_and_azure_name_missing_keys() {
        let gcs = StorageConfig {
            backend: Backend::Gcs,
            ..Default::default()
        };
        assert_eq!(
            gcs.validate().unwrap_err().to_string(),
            "storage.gcs.bucket_name is required when storage.backend is gcs"
        );
        let mut azure = StorageConfig {
            backend: Backend::Azure,
            ..Default::default()
        };
        assert_eq!(
            azure.validate().unwrap_err().to_string(),
            "storage.azure.account_name is required when storage.backend is azure"
        );
        azure.azure.account_name = "acct".into();
        assert_eq!(
            azure.validate().unwrap_err().to_string(),
            "storage.azure.container_name is required when storage.backend is azure"
        );
    }

    #[test]
    fn filesystem_requires_dir() {
        let mut cfg = StorageConfig::default();
        cfg.filesystem.dir = PathBuf::new();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "storage.filesystem.dir is required when storage.backend is filesystem"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let mut cfg = StorageConfig::default();
        cfg.s3.access_key_id = "AKIAEXAMPLE".into();
        cfg.s3.secret_access_key = "wJalrXUtnFEMI".into();
        cfg.azure.account_key = "c2VjcmV0a2V5".into();
        let debug = format!("{cfg:?}");
        assert!(debug.contains("AKIAEXAMPLE"), "{debug}");
        assert!(!debug.contains("wJalrXUtnFEMI"), "{debug}");
        assert!(!debug.contains("c2VjcmV0a2V5"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn yaml_rejects_unknown_keys() {
        let err = serde_yaml::from_str::<StorageConfig>("s3:\n  bucket: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `bucket`"), "{err}");
    }

    #[test]
    fn yaml_partial_section_keeps_defaults() {
        let cfg: StorageConfig =
            serde_yaml::from_str("backend: s3\ns3:\n  bucket_name: profiles\n").unwrap();
        assert_eq!(cfg.backend, Backend::S3);
        assert_eq!(cfg.s3.bucket_name, "profiles");
        assert_eq!(cfg.filesystem, FilesystemConfig::default());
    }
}
