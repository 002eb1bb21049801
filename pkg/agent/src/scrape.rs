//! Scrape loops: one task per target, started and stopped as discovery changes.
//!
//! A target's first scrape waits an offset derived from a hash of the target, spread
//! over the interval, so many targets do not fire at once and a restart keeps the
//! same rhythm. Each scrape holds one of `max_concurrent_scrapes` permits, has a
//! timeout (a sampled CPU scrape gets its seconds on top), reads at most
//! `body_size_limit` bytes, and checks that the answer is a pprof profile before it
//! is buffered. A failure is recorded on the target and nowhere else.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ember_proto::google::v1::Profile;
use ember_proto::types::v1::LabelPair;
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::client::{HttpClient, http_client};
use crate::discovery::Update;
use crate::metrics::AgentMetrics;
use crate::push::{Buffer, Item};
use crate::{ActiveTarget, Shared, Target, TargetStatus};

/// What every scrape loop shares.
#[derive(Debug)]
pub(crate) struct ScrapeContext {
    http: HttpClient,
    permits: Semaphore,
    buffer: Arc<Buffer>,
    metrics: AgentMetrics,
}

impl ScrapeContext {
    pub(crate) fn new(max_concurrent: usize, buffer: Arc<Buffer>, metrics: AgentMetrics) -> Self {
        Self {
            http: http_client(),
            permits: Semaphore::new(max_concurrent.max(1)),
            buffer,
            metrics,
        }
    }
}

/// Applies discovery updates: starts loops for new targets, stops gone ones.
pub(crate) async fn manage(
    mut updates: mpsc::Receiver<Update>,
    shared: Arc<Shared>,
    ctx: Arc<ScrapeContext>,
) {
    let mut groups: HashMap<String, Vec<Target>> = HashMap::new();
    let mut running: HashMap<String, AbortOnDrop> = HashMap::new();
    while let Some(update) = updates.recv().await {
        if update.targets.is_empty() {
            groups.remove(&update.group);
        } else {
            groups.insert(update.group, update.targets);
        }
        // Drain what else is queued before reconciling, so a list of a thousand pods
        // is applied once.
        while let Ok(update) = updates.try_recv() {
            if update.targets.is_empty() {
                groups.remove(&update.group);
            } else {
                groups.insert(update.group, update.targets);
            }
        }
        let desired: BTreeMap<String, &Target> =
            groups.values().flatten().map(|t| (t.key(), t)).collect();
        let mut active = shared.active.lock().expect("not poisoned");
        running.retain(|key, _| {
            let keep = desired.contains_key(key);
            if !keep {
                active.remove(key);
                debug!(target = key, "target gone");
            }
            keep
        });
        for (key, target) in &desired {
            if running.contains_key(key) {
                continue;
            }
            let status = Arc::new(Mutex::new(TargetStatus::default()));
            let handle = tokio::spawn(scrape_loop((*target).clone(), status.clone(), ctx.clone()));
            running.insert(key.clone(), AbortOnDrop(handle));
            active.insert(
                key.clone(),
                ActiveTarget {
                    target: (*target).clone(),
                    status,
                },
            );
        }
        ctx.metrics.targets.reset();
        for a in active.values() {
            ctx.metrics
                .targets
                .with_label_values(&[&a.target.job])
                .inc();
        }
        info!(targets = active.len(), "scrape targets updated");
    }
    // Discovery is over (static targets only): the loops run until the manager is
    // aborted, which drops and so stops them.
    std::future::pending::<()>().await;
    drop(running);
}

/// Stops a scrape loop when its target goes away or the manager stops.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forgets every target (their loops end with the manager task).
pub(crate) fn stop_all(shared: &Shared) -> usize {
    let mut active = shared.active.lock().expect("not poisoned");
    let n = active.len();
    active.clear();
    n
}

/// Returns the start offset of a target: a stable point within its interval.
fn offset(target: &Target) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    target.key().hash(&mut h);
    let nanos = target.interval.as_nanos().max(1) as u64;
    Duration::from_nanos(h.finish() % nanos)
}

async fn scrape_loop(target: Target, status: Arc<Mutex<TargetStatus>>, ctx: Arc<ScrapeContext>) {
    let start = tokio::time::Instant::now() + offset(&target);
    let mut ticker = tokio::time::interval_at(start, target.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let kind = target.kind.to_string();
    let labels = [target.job.as_str(), kind.as_str()];
    let mut pushed_labels: Vec<LabelPair> = target
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| LabelPair {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    pushed_labels.push(LabelPair {
        name: "__name__".into(),
        value: target.kind.profile_name().into(),
    });
    loop {
        ticker.tick().await;
        let Ok(_permit) = ctx.permits.acquire().await else {
            return;
        };
        let started = Instant::now();
        let at = chrono::Utc::now();
        ctx.metrics.scrapes.with_label_values(&labels).inc();
        let timeout = target.timeout + Duration::from_secs(target.seconds().unwrap_or(0));
        let result = match tokio::time::timeout(timeout, scrape_once(&ctx.http, &target)).await {
            Ok(result) => result,
            Err(_) => Err(format!("scrape timed out after {timeout:?}")),
        };
        let elapsed = started.elapsed();
        ctx.metrics
            .scrape_duration
            .with_label_values(&[&target.job])
            .observe(elapsed.as_secs_f64());
        let mut s = status.lock().expect("not poisoned");
        s.last_scrape = Some(at);
        s.last_duration = Some(elapsed);
        match result {
            Ok(body) => {
                s.last_error = None;
                s.last_bytes = body.len() as u64;
                ctx.metrics
                    .scraped_bytes
                    .with_label_values(&labels)
                    .inc_by(body.len() as u64);
                drop(s);
                ctx.buffer.add(Item {
                    labels: pushed_labels.clone(),
                    raw: body,
                });
            }
            Err(e) => {
                debug!(url = target.url(), error = %e, "scrape failed");
                ctx.metrics.scrape_failures.with_label_values(&labels).inc();
                s.last_error = Some(e);
            }
        }
    }
}

/// Fetches a target once and checks that the answer is a pprof profile.
pub(crate) async fn scrape_once(http: &HttpClient, target: &Target) -> Result<Bytes, String> {
    let url = target.url();
    let request = http::Request::get(&url)
        .header(
            "user-agent",
            concat!("ember-agent/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("invalid URL {url}: {e}"))?;
    let response = http
        .request(request)
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    let status = response.status();
    let limit = target.body_size_limit as usize;
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > target.body_size_limit
    {
        return Err(format!(
            "response is {length} bytes, more than body_size_limit ({limit} bytes)"
        ));
    }
    let body = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("response is larger than body_size_limit ({limit} bytes)")
            } else {
                format!("reading the response of {url}: {e}")
            }
        })?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("GET {url}: HTTP {status}: {}", text.trim()));
    }
    let checked = body.clone();
    let max = limit.saturating_mul(8).max(64 << 20);
    tokio::task::spawn_blocking(move || check_pprof(&checked, max))
        .await
        .map_err(|e| format!("checking the profile: {e}"))??;
    Ok(body)
}

/// Returns an error unless `body` (gzipped or not) decodes as a pprof profile with at
/// least one sample type.
pub(crate) fn check_pprof(body: &[u8], max_decompressed: usize) -> Result<(), String> {
    let not_pprof = |why: String| format!("response is not a pprof profile: {why}");
    let mut raw = Vec::new();
    let data: &[u8] = if body.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(body)
            .take(max_decompressed as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(|e| not_pprof(format!("bad gzip: {e}")))?;
        if raw.len() > max_decompressed {
            return Err(not_pprof(format!(
                "more than {max_decompressed} bytes once decompressed"
            )));
        }
        &raw
    } else {
        body
    };
    let profile = Profile::decode(data).map_err(|e| not_pprof(e.to_string()))?;
    if profile.sample_type.is_empty() {
        let start = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        return Err(not_pprof(format!(
            "no sample types (starts with {start:?})"
        )));
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_proto::google::v1::ValueType;

    #[test]
    fn pprof_check() {
        let profile = Profile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            string_table: vec!["".into(), "cpu".into(), "nanoseconds".into()],
            ..Default::default()
        };
        let raw = profile.encode_to_vec();
        assert!(check_pprof(&raw, 1 << 20).is_ok());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        assert!(check_pprof(&gz.finish().unwrap(), 1 << 20).is_ok());
        let err = check_pprof(b"<html>hello</html>", 1 << 20).unwrap_err();
        assert!(err.starts_with("response is not a pprof profile"), "{err}");
        assert!(check_pprof(&[0x1f, 0x8b, 1, 2, 3], 1 << 20).is_err());
    }
}
