//! Health: why a process is not ready (`/ready`), whether it is alive
//! (`/live`), and the periodic object-store check behind one of the reasons.
//!
//! [`Readiness`] is a set of named reasons; each module sets its own and
//! clears it when it no longer holds (the ingester while it replays its
//! write-ahead log, the ring while this ingester is not ACTIVE, the storage
//! check while the object store does not answer). A reason may be live: a
//! function asked on every `/ready`, so that the replay's percentage is
//! current. `/ready` answers 200 `ready` with no reason, else 503 with one
//! reason per line. `/live` answers 200 whenever the process serves HTTP at
//! all: it is served from the moment the port is bound, before any module has
//! started, so a long replay never gets a process restarted by its liveness
//! probe.
//!
//! A reason either blocks readiness or only degrades it: a degraded process
//! answers 200 and lists the reason under `ready`. The object store's reason
//! degrades a process that runs an ingester (its write-ahead log still takes
//! writes durably and flushes retry, so it must keep taking traffic through an
//! outage) and blocks the others (a querier or compactor without its store
//! cannot do its work).

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use tracing::{info, warn};

/// Names of the reasons the modules set.
pub mod reason {
    /// The modules are starting; cleared once the server takes requests.
    pub const STARTING: &str = "starting";
    /// The ingester replays its write-ahead log.
    pub const WAL_REPLAY: &str = "wal-replay";
    /// This ingester is not ACTIVE in the ring.
    pub const RING: &str = "ring";
    /// The object store does not answer.
    pub const OBJECT_STORE: &str = "object-store";
    /// The process is shutting down.
    pub const SHUTDOWN: &str = "shutdown";
}

type Live = Arc<dyn Fn() -> Option<String> + Send + Sync>;

enum Reason {
    Fixed {
        why: String,
        blocks: bool,
    },
    /// Asked on every read; `None` means it does not hold right now. Blocks.
    Live(Live),
}

/// The reasons a process is not ready, by name; shared by every module.
#[derive(Clone, Default)]
pub struct Readiness {
    reasons: Arc<Mutex<BTreeMap<&'static str, Reason>>>,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("reasons", &self.reasons())
            .finish()
    }
}

impl Readiness {
    /// Returns a readiness with no reason: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) the reason `name`, which blocks readiness.
    pub fn set(&self, name: &'static str, why: impl Into<String>) {
        self.lock().insert(
            name,
            Reason::Fixed {
                why: why.into(),
                blocks: true,
            },
        );
    }

    /// Sets (or replaces) the reason `name`, which only degrades readiness:
    /// `/ready` still answers 200, and names it.
    pub fn set_degraded(&self, name: &'static str, why: impl Into<String>) {
        self.lock().insert(
            name,
            Reason::Fixed {
                why: why.into(),
                blocks: false,
            },
        );
    }

    /// Sets the reason `name` to `why`, asked on every read: it holds while
    /// `why` returns `Some`.
    pub fn set_live(
        &self,
        name: &'static str,
        why: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) {
        self.lock().insert(name, Reason::Live(Arc::new(why)));
    }

    /// Clears the reason `name`, if set.
    pub fn clear(&self, name: &'static str) {
        self.lock().remove(name);
    }

    /// Returns the reasons that hold now, ordered by name, each with
    /// whether it blocks readiness.
    fn all(&self) -> Vec<(String, bool)> {
        // Live reasons are asked outside the lock: they read other modules' state.
        let reasons: Vec<_> = self
            .lock()
            .values()
            .map(|r| match r {
                Reason::Fixed { why, blocks } => Ok((why.clone(), *blocks)),
                Reason::Live(f) => Err(f.clone()),
            })
            .collect();
        reasons
            .into_iter()
            .filter_map(|r| match r {
                Ok(reason) => Some(reason),
                Err(f) => f().map(|why| (why, true)),
            })
            .collect()
    }

    /// Returns the reasons that block readiness now, ordered by name.
    pub fn reasons(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|(why, blocks)| blocks.then_some(why))
            .collect()
    }

    /// Returns whether no reason blocks readiness.
    pub fn is_ready(&self) -> bool {
        self.reasons().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Reason>> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `GET /ready`: 200 `ready` (then any degrading reason, one per line), or
/// 503 with one reason per line.
pub(crate) async fn ready(State(readiness): State<Readiness>) -> Response {
    let reasons = readiness.all();
    let status = if reasons.iter().any(|(_, blocks)| *blocks) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut body = String::new();
    if status == StatusCode::OK {
        body.push_str("ready\n");
    }
    for (why, _) in reasons {
        body.push_str(&why);
        body.push('\n');
    }
    (status, body).into_response()
}

/// `GET /live`: 200 while the process serves.
pub(crate) async fn live() -> Response {
    (StatusCode::OK, "live\n").into_response()
}

/// How often the object store is checked.
pub const OBJECT_STORE_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long one check may take before the store counts as unreachable.
pub const OBJECT_STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The key the check asks for. It need not exist: "not found" is an answer.
const MARKER: &str = "ember-health-check";

/// Returns whether the store answers: a `head` of [`MARKER`], one request,
/// whose "not found" counts as an answer. An error (refused connection, bad
/// credentials, unreadable directory) or no answer within `timeout` is the
/// reason it is unreachable.
pub async fn check_object_store(store: &dyn ObjectStore, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, store.head(&Path::from(MARKER))).await {
        Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Checks the store every `every` (at once first) and sets or clears
/// [`reason::OBJECT_STORE`], blocking readiness when `blocks`, else
/// degrading it; runs until the process exits.
pub fn watch_object_store(
    store: Arc<dyn ObjectStore>,
    readiness: Readiness,
    every: Duration,
    blocks: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_down = false;
        loop {
            tick.tick().await;
            match check_object_store(store.as_ref(), OBJECT_STORE_CHECK_TIMEOUT).await {
                Ok(()) => {
                    if was_down {
                        info!("object store reachable again");
                    }
                    was_down = false;
                    readiness.clear(reason::OBJECT_STORE);
                }
                Err(error) => {
                    if !was_down {
                        warn!(%error, "object store unreachable");
                    }
                    was_down = true;
                    let why = format!("object store unreachable: {error}");
                    if blocks {
                        readiness.set(reason::OBJECT_STORE, why);
                    } else {
                        readiness.set_degraded(reason::OBJECT_STORE, why);
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn reasons_are_set_cleared_and_asked_live() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        readiness.set(reason::STARTING, "starting");
        let percent = Arc::new(AtomicU32::new(40));
        let p = percent.clone();
        readiness.set_live(reason::WAL_REPLAY, move || {
            let p = p.load(Ordering::Relaxed);
            (p < 100).then(|| format!("replaying write-ahead log: {p}%"))
        });
        assert_eq!(
            readiness.reasons(),
            vec!["starting", "replaying write-ahead log: 40%"]
        );
        percent.store(70, Ordering::Relaxed);
        readiness.clear(reason::STARTING);
        assert_eq!(readiness.reasons(), vec!["replaying write-ahead log: 70%"]);
        percent.store(100, Ordering::Relaxed);
        assert!(readiness.is_ready(), "a live reason that no longer holds");
    }

    #[tokio::test]
    async fn ready_lists_every_reason_on_its_own_line() {
        let readiness = Readiness::new();
        let response = ready(State(readiness.clone())).await;
        assert_eq!(response.status(), StatusCode::OK);
        readiness.set_degraded(reason::OBJECT_STORE, "object store unreachable: refused");
        let response = ready(State(readiness.clone())).await;
        assert_eq!(response.status(), StatusCode::OK, "only degraded");
        let body = axum::body::to_bytes(response.into_body(), 1 << 10)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "ready\nobject store unreachable: refused\n"
        );
        readiness.set(reason::RING, "not ACTIVE in the ring (JOINING)");
        let response = ready(State(readiness)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 10)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "object store unreachable: refused\nnot ACTIVE in the ring (JOINING)\n"
        );
    }

    #[tokio::test]
    async fn a_missing_marker_is_an_answer_and_an_unreadable_store_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        assert_eq!(
            check_object_store(&store, OBJECT_STORE_CHECK_TIMEOUT).await,
            Ok(())
        );
        // A file where the store's directory should be: every request fails.
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let broken = object_store::local::LocalFileSystem::new_with_prefix(&file).unwrap();
        let error = check_object_store(&broken, OBJECT_STORE_CHECK_TIMEOUT)
            .await
            .unwrap_err();
        assert!(!error.is_empty());
    }
}
