//! Real gossip between rings on 127.0.0.1: joining, state changes, leaving,
//! and failure detection of a member that stops without leaving.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use ember_ring::{Ring, RingConfig, Roles, State};
use ember_time::SystemClock;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(name: &str, port: u16, join: &[SocketAddr]) -> RingConfig {
    RingConfig {
        node_name: name.to_owned(),
        bind_addr: SocketAddr::new(LOCALHOST, port),
        advertise_addr: Some(LOCALHOST),
        join: join.iter().map(SocketAddr::to_string).collect(),
        roles: Roles {
            ingester: true,
            ..Roles::default()
        },
        // "state-b" runs in "zone-b".
        zone: format!("zone-{}", name.rsplit('-').next().unwrap_or_default()),
        zone_awareness: true,
        http_port: 4040,
        num_tokens: 16,
        secret_key: ember_config::Secret::default(),
        heartbeat_period: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_secs(5),
    }
}

async fn start(name: &str, join: &[SocketAddr]) -> Arc<Ring> {
    Ring::start(config(name, 0, join), SystemClock::shared())
        .await
        .unwrap()
}

fn gossip_addr(ring: &Ring) -> SocketAddr {
    ring.gossip_addr().unwrap()
}

fn names(ring: &Ring) -> Vec<String> {
    ring.members().into_iter().map(|m| m.name).collect()
}

/// Polls `check` until it holds, panicking with `what` after `limit`;
/// returns how long it took.
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn three(prefix: &str) -> [Arc<Ring>; 3] {
    let a = start(&format!("{prefix}-a"), &[]).await;
    let b = start(&format!("{prefix}-b"), &[gossip_addr(&a)]).await;
    let c = start(&format!("{prefix}-c"), &[gossip_addr(&a)]).await;
    let rings = [a, b, c];
    let took = eventually("every ring sees all three", Duration::from_secs(10), || {
        rings.iter().all(|r| r.members().len() == 3)
    })
    .await;
    println!("{prefix}: three members converged in {took:?}");
    rings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_change_state_and_leave() {
    let [a, b, c] = three("state").await;
    assert_eq!(names(&a), ["state-a", "state-b", "state-c"]);
    for ring in [&a, &b, &c] {
        assert_eq!(ring.ingesters().len(), 3);
        assert!(
            ring.members()
                .iter()
                .all(|m| m.state == State::Joining && m.healthy)
        );
        assert!(ring.replicas(0, 3).is_empty(), "no ingester is ACTIVE yet");
    }
    let seen_by_a = a
        .members()
        .into_iter()
        .find(|m| m.name == "state-b")
        .unwrap();
    assert_eq!(seen_by_a.addr, "127.0.0.1:4040");
    assert_eq!(seen_by_a.zone, "zone-b", "the zone travels in the metadata");
    assert_eq!(seen_by_a.tokens, ember_ring::tokens("state-b", 16));

    b.set_state(State::Active);
    assert_eq!(b.state(), State::Active);
    let took = eventually("a and c see b ACTIVE", Duration::from_secs(5), || {
        [&a, &c].iter().all(|r| {
            let replicas = r.replicas(12345, 3);
            replicas.len() == 1 && replicas[0].name == "state-b"
        })
    })
    .await;
    println!("state change propagated in {took:?}");

    // Heartbeats keep flowing: b's timestamp as seen by a moves forward.
    let before = a.members()[1].last_heartbeat;
    eventually(
        "a sees a newer heartbeat from b",
        Duration::from_secs(5),
        || a.members()[1].last_heartbeat > before,
    )
    .await;

    c.leave(Duration::from_secs(2)).await;
    assert_eq!(c.state(), State::Leaving);
    let took = eventually("a and b drop c", Duration::from_secs(5), || {
        names(&a) == ["state-a", "state-b"] && names(&b) == ["state-a", "state-b"]
    })
    .await;
    println!("leave propagated in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_detection_removes_a_member_that_stops_without_leaving() {
    let [a, b, c] = three("crash").await;
    // Like SIGKILL: memberlist stops without telling anyone.
    drop(c);
    let took = eventually("a and b drop c", Duration::from_secs(30), || {
        names(&a) == ["crash-a", "crash-b"] && names(&b) == ["crash-a", "crash-b"]
    })
    .await;
    println!("failure detected in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_retries_until_a_seed_starts() {
    // A port for the seed, free for now; the seed binds it later.
    let port = ember_testkit::ports::free_gossip_port();
    let seed_addr = SocketAddr::new(LOCALHOST, port);
    let early = start("retry-early", &[seed_addr]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(names(&early), ["retry-early"]);

    let seed = Ring::start(config("retry-seed", port, &[]), SystemClock::shared())
        .await
        .unwrap();
    assert_eq!(seed.gossip_addr(), Some(seed_addr));
    let took = eventually(
        "the early member joins the late seed",
        Duration::from_secs(10),
        || names(&seed) == ["retry-early", "retry-seed"] && names(&early).len() == 2,
    )
    .await;
    println!("joined a late seed {took:?} after it started");
}

/// Starts a ring gossiping with `key` (base64; empty: in the clear).
async fn start_sealed(name: &str, key: &str, join: &[SocketAddr]) -> Arc<Ring> {
    let config = RingConfig {
        secret_key: key.into(),
        ..config(name, 0, join)
    };
    Ring::start(config, SystemClock::shared()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_gossip_admits_only_members_with_the_key() {
    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    const OTHER: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let a = start_sealed("sealed-a", KEY, &[]).await;
    let b = start_sealed("sealed-b", KEY, &[gossip_addr(&a)]).await;
    eventually(
        "the member with the key joins",
        Duration::from_secs(10),
        || names(&a) == ["sealed-a", "sealed-b"] && names(&b).len() == 2,
    )
    .await;

    let wrong = start_sealed("sealed-wrong", OTHER, &[gossip_addr(&a)]).await;
    let clear = start_sealed("sealed-clear", "", &[gossip_addr(&a)]).await;
    // Long enough for several join attempts and gossip rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(names(&a), ["sealed-a", "sealed-b"]);
    assert_eq!(names(&b), ["sealed-a", "sealed-b"]);
    assert_eq!(names(&wrong), ["sealed-wrong"]);
    assert_eq!(names(&clear), ["sealed-clear"]);
}

#[tokio::test]
async fn rejects_configurations_that_cannot_work() {
    let mut bad = config("", 0, &[]);
    let err = Ring::start(bad.clone(), SystemClock::shared())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("node name is empty"), "{err}");

    bad.node_name = "x".into();
    bad.heartbeat_timeout = bad.heartbeat_period;
    let err = Ring::start(bad, SystemClock::shared()).await.unwrap_err();
    assert!(err.to_string().contains("heartbeat_timeout"), "{err}");

    let short_key = RingConfig {
        secret_key: "c2hvcnQ=".into(),
        ..config("short-key", 0, &[])
    };
    let err = Ring::start(short_key, SystemClock::shared())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("memberlist.secret_key"), "{err}");

    let taken = std::net::TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Ring::start(config("busy", port, &[]), SystemClock::shared())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("memberlist.bind-port"), "{err}");
}

#[tokio::test]
async fn single_ring_serves_its_one_member() {
    let ring = Ring::single(
        ember_ring::Member {
            name: "all".into(),
            addr: "127.0.0.1:4040".into(),
            zone: String::new(),
            roles: Roles {
                ingester: true,
                distributor: true,
                querier: true,
                compactor: true,
            },
            state: State::Joining,
            tokens: Vec::new(),
            last_heartbeat: std::time::SystemTime::UNIX_EPOCH,
            healthy: true,
        },
        SystemClock::shared(),
    );
    assert_eq!(ring.gossip_addr(), None);
    assert!(ring.replicas(7, 1).is_empty(), "JOINING gets no writes");
    ring.set_state(State::Active);
    let replicas = ring.replicas(7, 3);
    assert_eq!(replicas.len(), 1);
    assert!(replicas[0].healthy);
    assert_eq!(replicas[0].tokens.len(), ember_ring::DEFAULT_NUM_TOKENS);
    ring.leave(Duration::from_secs(1)).await;
    assert_eq!(ring.state(), State::Leaving);
}
