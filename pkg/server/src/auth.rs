//! Built-in authentication: credentials from `-auth.tokens-file`, each a bearer
//! token or a username and password (plain or bcrypt), with the tenants it may
//! use.
//!
//! ```yaml
//! - {token: "s3cr3t-a", tenants: [team-a]}
//! - {username: alloy, password: "$2b$12$...", tenants: [team-a, team-b]}
//! ```
//!
//! When the file is set, every request but `/ready`, the liveness endpoint and
//! `/metrics` needs a credential: none or a wrong one is 401 with a `Basic` and a
//! `Bearer` challenge (so browsers, Alloy's `basic_auth`/`bearer_token` and
//! Grafana's datasource auth all work), an `X-Scope-OrgID` outside the
//! credential's tenants is 403 naming the tenant, and a credential with one
//! tenant needs no header. Secrets never reach logs or metrics; tokens and plain
//! passwords are compared in constant time, and a bcrypt verification, slow by
//! design, is remembered (by a SHA-256 of what was presented) until the file
//! changes. The file is read again when it changes; a broken file keeps the
//! credentials that were in force and says why in the log.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use axum::http::HeaderMap;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tracing::{info, warn};

/// How often the credentials file is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Why a request was not let in.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("authentication required: send a bearer token or basic auth credentials")]
    Missing,
    /// A credential that matches none in the file.
    #[error("invalid credentials")]
    Invalid,
    /// A known credential asking for a tenant it may not use.
    #[error("these credentials may not use tenant {tenant:?}")]
    Forbidden {
        /// The tenant asked for in `X-Scope-OrgID`.
        tenant: String,
    },
    /// A credential of several tenants without `X-Scope-OrgID`.
    #[error("these credentials may use tenants {}: set X-Scope-OrgID to one of them", .tenants.join(", "))]
    NoTenant {
        /// The tenants the credential may use.
        tenants: Vec<String>,
    },
}

/// Why a credentials file cannot be used; the message names the entry.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("cannot read credentials file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("credentials file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// One entry of the file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    tenants: Vec<String>,
}

/// What a client presents.
enum Secret {
    Token(String),
    Basic {
        username: String,
        password: Password,
    },
}

enum Password {
    Plain(String),
    Bcrypt(String),
}

struct Credential {
    secret: Secret,
    tenants: Vec<String>,
}

/// The credentials of one version of the file.
struct Credentials {
    entries: Vec<Credential>,
    /// Digests of basic-auth credentials bcrypt verified, with their entry.
    verified: Mutex<HashMap<[u8; 32], usize>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets: only how many there are.
        write!(f, "Credentials({} entries)", self.entries.len())
    }
}

/// Returns whether `text` is a bcrypt hash rather than a plain password.
fn is_bcrypt(text: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p))
}

impl Credentials {
    fn parse(path: &Path, text: &str) -> Result<Self, FileError> {
        let invalid = |message: String| FileError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let entries: Vec<Entry> = serde_yaml::from_str::<Option<Vec<Entry>>>(text)
            .map_err(|e| {
                invalid(format!(
                    "{e}; write a list of {{token, tenants}} or {{username, password, tenants}}"
                ))
            })?
            .unwrap_or_default();
        let mut out = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let at = format!("entry {i}");
            if entry.tenants.is_empty() {
                return Err(invalid(format!(
                    "{at} has no tenants; list the tenants it may use"
                )));
            }
            if let Some(t) = entry.tenants.iter().find(|t| !crate::http::valid_tenant(t)) {
                return Err(invalid(format!(
                    "{at}: tenant {t:?} is not a valid tenant ID (up to 150 letters, digits and !-_.*'())"
                )));
            }
            let secret = match (entry.token, entry.username, entry.password) {
                (Some(token), None, None) if !token.is_empty() => Secret::Token(token),
                (None, Some(username), Some(password))
                    if !username.is_empty() && !password.is_empty() =>
                {
                    if username.contains(':') {
                        return Err(invalid(format!(
                            "{at}: a username cannot contain ':' (basic auth splits on it)"
                        )));
                    }
                    let password = if is_bcrypt(&password) {
                        password.parse::<bcrypt::HashParts>().map_err(|e| {
                            invalid(format!(
                                "{at}: the bcrypt password hash does not parse: {e}"
                            ))
                        })?;
                        Password::Bcrypt(password)
                    } else {
                        Password::Plain(password)
                    };
                    Secret::Basic { username, password }
                }
                _ => {
                    return Err(invalid(format!(
                        "{at} needs either a non-empty token, or a non-empty username and password"
                    )));
                }
            };
            out.push(Credential {
                secret,
                tenants: entry.tenants,
            });
        }
        Ok(Self {
            entries: out,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the index of the entry the `Authorization` header names.
    fn find(&self, authorization: &str) -> Result<usize, AuthError> {
        let (scheme, value) = authorization
            .trim()
            .split_once(' ')
            .ok_or(AuthError::Invalid)?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            // Every token is compared, in constant time, whatever matches first.
            let mut found = None;
            for (i, c) in self.entries.iter().enumerate() {
                if let Secret::Token(token) = &c.secret
                    && bool::from(token.as_bytes().ct_eq(value.as_bytes()))
                {
                    found.get_or_insert(i);
                }
            }
            return found.ok_or(AuthError::Invalid);
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(AuthError::Invalid);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| AuthError::Invalid)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Invalid)?;
        let (user, pass) = decoded.split_once(':').ok_or(AuthError::Invalid)?;
        let digest: [u8; 32] = Sha256::digest(decoded.as_bytes()).into();
        if let Some(&i) = self.verified.lock().expect("poisoned").get(&digest) {
            return Ok(i);
        }
        let mut found = None;
        for (i, c) in self.entries.iter().enumerate() {
            let Secret::Basic { username, password } = &c.secret else {
                continue;
            };
            if !bool::from(username.as_bytes().ct_eq(user.as_bytes())) {
                continue;
            }
            let ok = match password {
                Password::Plain(p) => bool::from(p.as_bytes().ct_eq(pass.as_bytes())),
                Password::Bcrypt(hash) => bcrypt::verify(pass, hash).unwrap_or(false),
            };
            if ok {
                found.get_or_insert(i);
            }
        }
        let i = found.ok_or(AuthError::Invalid)?;
        self.verified.lock().expect("poisoned").insert(digest, i);
        Ok(i)
    }
}

/// Checks requests against the credentials file, which it re-reads when it changes.
#[derive(Debug)]
pub struct Authenticator {
    path: PathBuf,
    current: RwLock<(Arc<Credentials>, Option<SystemTime>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Authenticator {
    /// Reads the credentials file; a file that cannot be used stops the start.
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let mtime = modified(path);
        let credentials = Self::read(path)?;
        info!(path = %path.display(), credentials = credentials.entries.len(), "loaded credentials");
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new((Arc::new(credentials), mtime)),
        })
    }

    fn read(path: &Path) -> Result<Credentials, FileError> {
        let text = std::fs::read_to_string(path).map_err(|error| FileError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Credentials::parse(path, &text)
    }

    /// Reads the file again if it changed since it was last read; a file that
    /// cannot be used leaves the credentials in force.
    pub fn reload_if_changed(&self) -> Result<bool, FileError> {
        let mtime = modified(&self.path);
        if mtime == self.current.read().expect("poisoned").1 {
            return Ok(false);
        }
        let result = Self::read(&self.path);
        let mut current = self.current.write().expect("poisoned");
        // Remember the time either way, so a broken file is reported once.
        current.1 = mtime;
        let credentials = result?;
        info!(path = %self.path.display(), credentials = credentials.entries.len(), "reloaded credentials");
        current.0 = Arc::new(credentials);
        Ok(true)
    }

    /// Re-reads the file every [`RELOAD_INTERVAL`] while the process runs.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Err(e)) => warn!(error = %e, "keeping the previous credentials"),
                Err(e) => warn!(error = %e, "reloading credentials failed"),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Returns the tenant a request acts as: its `X-Scope-OrgID` if the
    /// credential may use it, else the credential's only tenant. CPU-bound
    /// once per new basic-auth credential (bcrypt): call it off the runtime.
    pub fn tenant(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        let credentials = self.current.read().expect("poisoned").0.clone();
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Invalid)?;
        let entry = &credentials.entries[credentials.find(authorization)?];
        let asked = headers
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match asked {
            Some(t) if entry.tenants.iter().any(|allowed| allowed == t) => Ok(t.to_owned()),
            Some(t) => Err(AuthError::Forbidden {
                tenant: t.to_owned(),
            }),
            None if entry.tenants.len() == 1 => Ok(entry.tenants[0].clone()),
            None => Err(AuthError::NoTenant {
                tenants: entry.tenants.clone(),
            }),
        }
    }
}

/// The challenges of a 401: browsers and clients learn both schemes work.
pub const CHALLENGES: [&str; 2] = [
    "Basic realm=\"ember\", charset=\"UTF-8\"",
    "Bearer realm=\"ember\"",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn headers(auth: Option<&str>, tenant: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert("authorization", a.parse().unwrap());
        }
        if let Some(t) = tenant {
            h.insert("x-scope-orgid", t.parse().unwrap());
        }
        h
    }

    fn basic(user: &str, pass: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {b64}")
    }

    #[test]
    fn every_credential_case() {
        let hash = bcrypt::hash("hunter2", 4).unwrap();
        let (_dir, path) = file(&format!(
            "- {{token: s3cr3t-a, tenants: [team-a]}}\n\
             - {{username: alloy, password: \"{hash}\", tenants: [team-a, team-b]}}\n\
             - {{username: plain, password: plain-pw-q7, tenants: [team-c]}}\n"
        ));
        let auth = Authenticator::open(&path).unwrap();
        let t = |a: Option<&str>, tenant: Option<&str>| auth.tenant(&headers(a, tenant));
        assert_eq!(t(None, None), Err(AuthError::Missing));
        assert_eq!(t(Some("Bearer nope"), None), Err(AuthError::Invalid));
        assert_eq!(t(Some("Bearer s3cr3t-a"), None), Ok("team-a".into()));
        assert_eq!(
            t(Some("bearer s3cr3t-a"), Some("team-a")),
            Ok("team-a".into())
        );
        assert_eq!(
            t(Some("Bearer s3cr3t-a"), Some("team-b")),
            Err(AuthError::Forbidden {
                tenant: "team-b".into()
            })
        );
        let alloy = basic("alloy", "hunter2");
        assert_eq!(t(Some(&alloy), Some("team-b")), Ok("team-b".into()));
        // The second time comes from the cache of verified credentials.
        assert_eq!(t(Some(&alloy), Some("team-a")), Ok("team-a".into()));
        assert!(matches!(
            t(Some(&alloy), None),
            Err(AuthError::NoTenant { .. })
        ));
        assert_eq!(
            t(Some(&basic("alloy", "wrong")), None),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            t(Some(&basic("plain", "plain-pw-q7")), None),
            Ok("team-c".into())
        );
        assert_eq!(
            t(Some(&basic("plain", "plain-pW-q7")), None),
            Err(AuthError::Invalid)
        );
        assert_eq!(t(Some("Digest x"), None), Err(AuthError::Invalid));
        assert!(!format!("{auth:?}").contains("s3cr3t"));
        // A secret long enough that no random part of the output (the
        // temporary path, a hash) can contain it by chance.
        assert!(!format!("{auth:?}").contains("plain-pw-q7"));
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_old() {
        let (_dir, path) = file("- {token: one, tenants: [a]}\n");
        let auth = Authenticator::open(&path).unwrap();
        let bearer = |t: &str| auth.tenant(&headers(Some(&format!("Bearer {t}")), None));
        assert!(bearer("one").is_ok());
        std::fs::write(&path, "- {token: two, tenants: [a]}\n").unwrap();
        // File systems keep modification times to the second at worst.
        let later = SystemTime::now() + Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(auth.reload_if_changed().unwrap());
        assert!(bearer("one").is_err() && bearer("two").is_ok());
        std::fs::write(&path, "- {token: three}\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(2))
            .unwrap();
        let err = auth.reload_if_changed().unwrap_err().to_string();
        assert!(err.contains("tenants"), "{err}");
        assert!(
            bearer("two").is_ok(),
            "the broken file left the credentials in force"
        );
    }

    #[test]
    fn bad_files_say_which_entry_is_wrong() {
        for (text, want) in [
            ("- {tenants: [a]}\n", "entry 0 needs either"),
            ("- {token: x, tenants: []}\n", "entry 0 has no tenants"),
            (
                "- {token: x, username: u, password: p, tenants: [a]}\n",
                "entry 0 needs either",
            ),
            (
                "- {token: x, tenants: [a]}\n- {token: y, tenants: ['../x']}\n",
                "entry 1: tenant",
            ),
            (
                "- {username: u, password: \"$2b$12$short\", tenants: [a]}\n",
                "bcrypt",
            ),
            ("- {token: x, tenants: [a], role: admin}\n", "unknown field"),
            ("token: x\n", "write a list"),
        ] {
            let (_dir, path) = file(text);
            let err = Authenticator::open(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
