//! A steady push load for crash tests: pusher threads send profiles whose one
//! stack ends in a function unique to each push, so a flame graph tells how
//! many times each push was counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use ember_tests::client::push_request;
use ember_tests::pprof::PprofBuilder;
use ember_tests::{
    Client, Codec, HttpResponse, PUSH_PATH, TimeRange, eventually, flame, now_nanos,
};
use prost::Message;

pub(crate) const SERVICE: &str = "crash-recovery";
pub(crate) const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// The CPU value of each push's one sample.
pub(crate) const VALUE: i64 = 7_000;
pub(crate) const PUSHERS: usize = 4;

/// Pushes profile `id`, whose one stack ends in a function unique to it;
/// returns the HTTP status, or the transport error.
pub(crate) fn try_push(client: &Client, id: usize) -> Result<u16, String> {
    try_push_response(client, id).map(|r| r.status)
}

/// Pushes profile `id` like [`try_push`]; returns the whole answer.
pub(crate) fn try_push_response(client: &Client, id: usize) -> Result<HttpResponse, String> {
    let leaf = format!("push_{id}");
    let pprof = PprofBuilder::go_cpu()
        .time(now_nanos(), 10_000_000_000)
        .sample(&["main", &leaf], &[1, VALUE])
        .encode();
    let body = push_request(&[("service_name", SERVICE)], &pprof).encode_to_vec();
    client.try_request(
        "POST",
        PUSH_PATH,
        &[("Content-Type", Codec::Proto.content_type())],
        Some(&body),
    )
}

/// Pushes profile `id`; returns whether the server acknowledged it (HTTP 200).
pub(crate) fn push(client: &Client, id: usize) -> bool {
    try_push(client, id) == Ok(200)
}

/// Returns each push's CPU total in the flame graph, by push id.
pub(crate) fn counted(client: &Client, range: TimeRange) -> BTreeMap<usize, i64> {
    counted_in(client, SERVICE, range)
}

/// Returns each push's CPU total in `service`'s flame graph, by push id: the
/// pushes are one stack `main;push_<id>` each, and the graph holds nothing else.
pub(crate) fn counted_in(client: &Client, service: &str, range: TimeRange) -> BTreeMap<usize, i64> {
    let fg = client.flame_graph(
        None,
        CPU,
        &format!(r#"{{service_name="{service}"}}"#),
        range,
        Some(1 << 20),
        Codec::Proto,
    );
    let nodes = flame::checked_nodes(&fg, service);
    let counted: BTreeMap<usize, i64> = flame::tree(&nodes)
        .into_iter()
        .filter_map(|(path, (total, _))| {
            let id = path.get(1)?.strip_prefix("push_")?.parse().ok()?;
            (path.len() == 2).then_some((id, total))
        })
        .collect();
    assert_eq!(
        fg.total,
        counted.values().sum::<i64>(),
        "the graph holds only the load's pushes"
    );
    counted
}

pub(crate) fn check_exactly_once(
    counted: &BTreeMap<usize, i64>,
    acked: &BTreeSet<usize>,
    sent: usize,
    when: &str,
) {
    for id in acked {
        assert_eq!(
            counted.get(id).copied(),
            Some(VALUE),
            "{when}: acknowledged push {id} must be counted exactly once"
        );
    }
    for (id, total) in counted {
        assert!(*id < sent, "{when}: push {id} was never sent");
        // A push in flight at the kill may or may not have been stored, but never twice.
        assert_eq!(*total, VALUE, "{when}: push {id} counted {total}");
    }
}

/// Pusher threads sending profiles `0, 1, 2, ...` until stopped.
pub(crate) struct Load {
    acked: Arc<Mutex<BTreeSet<usize>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<usize>>,
}

impl Load {
    /// Starts [`PUSHERS`] threads pushing through `client`. With
    /// `stop_on_refusal`, a pusher stops at its first unacknowledged push
    /// (its server is gone); otherwise it goes on.
    pub(crate) fn start(client: &Client, stop_on_refusal: bool) -> Self {
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..PUSHERS)
            .map(|p| {
                let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut sent = 0;
                    // Ids p, p + PUSHERS, ...
                    while !stop.load(Ordering::Acquire) {
                        let id = p + sent * PUSHERS;
                        sent += 1;
                        if push(&client, id) {
                            acked.lock().unwrap().insert(id);
                        } else if stop_on_refusal {
                            break;
                        } else {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    sent
                })
            })
            .collect();
        Self {
            acked,
            stop,
            threads,
        }
    }

    /// Returns how many pushes were acknowledged so far.
    pub(crate) fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Returns the ids acknowledged so far.
    pub(crate) fn acked_ids(&self) -> BTreeSet<usize> {
        self.acked.lock().unwrap().clone()
    }

    /// Waits until at least `n` pushes were acknowledged.
    pub(crate) fn wait_for(&self, n: usize, within: Duration) {
        eventually("pushes acknowledged", within, || {
            let acked = self.acked();
            if acked >= n {
                Ok(())
            } else {
                Err(format!("{acked} acknowledged"))
            }
        });
    }

    /// Stops the pushers; returns the acknowledged ids and how many ids were used.
    pub(crate) fn finish(self) -> (BTreeSet<usize>, usize) {
        self.stop.store(true, Ordering::Release);
        let sent = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .max()
            .unwrap_or(0);
        let acked = self.acked.lock().unwrap().clone();
        (acked, sent * PUSHERS)
    }
}
