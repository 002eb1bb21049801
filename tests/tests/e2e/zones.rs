//! Acceptance: zone-aware replication. One distributor, three availability
//! zones of two ingesters each (replication factor 3), one querier. Both
//! ingesters of one zone are killed with SIGKILL under load: pushes go on
//! being acknowledged, and the querier counts every acknowledged profile
//! exactly once while the zone is down and after it comes back.

use std::collections::BTreeMap;
use std::time::Duration;

use ember_tests::{Client, TimeRange, now_nanos};

use crate::cluster::{Cluster, Storage, wait_for_active_ingesters};
use crate::load::{Load, check_exactly_once, counted};

const ZONES: [&str; 6] = ["zone-a", "zone-a", "zone-b", "zone-b", "zone-c", "zone-c"];

/// The zone of each ingester in `client`'s ring, by name.
fn ingester_zones(client: &Client) -> BTreeMap<String, String> {
    let json = client.get("/ring?format=json").json();
    json["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["roles"]["ingester"] == true)
        .map(|m| {
            let field = |name: &str| m[name].as_str().unwrap_or_default().to_owned();
            (field("name"), field("zone"))
        })
        .collect()
}

#[test]
fn zone_aware_cluster_loses_nothing_acknowledged_when_a_whole_zone_is_killed() {
    let Some(storage) = Storage::start("ember-zones") else {
        return;
    };
    let wal = tempfile::tempdir().unwrap();
    let start = now_nanos() - 60_000_000_000;
    let mut cluster = Cluster::start(
        &storage.flag,
        wal.path(),
        &ZONES,
        &["-distributor.zone-awareness-enabled"],
    );
    let (push_client, query_client) = (cluster.distributor.client(), cluster.querier.client());
    wait_for_active_ingesters(&push_client, 6);
    wait_for_active_ingesters(&query_client, 6);
    // Every member gossips its zone.
    let expected: BTreeMap<String, String> = (1..)
        .zip(ZONES)
        .map(|(i, zone)| (format!("ingester-{i}"), zone.to_owned()))
        .collect();
    assert_eq!(ingester_zones(&push_client), expected);
    let html = query_client.get("/ring").text();
    assert!(html.contains("<td>zone-b</td>"), "{html}");

    let load = Load::start(&push_client, false);
    load.wait_for(40, Duration::from_secs(60));
    // Zone a goes down at once: both its ingesters, SIGKILLed.
    cluster.ingesters[0].kill();
    cluster.ingesters[1].kill();
    let acked_at_kill = load.acked_ids();
    // Queried before gossip notices, the querier meets two ingesters that do
    // not answer, more than replication tolerates without zones.
    let in_ring = ingester_zones(&query_client).len();
    let range = || TimeRange::new(start / 1_000_000, now_nanos() / 1_000_000 + 60_000);
    let at_once = counted(&query_client, range());
    eprintln!("queried with {in_ring} ingesters in the querier's ring right after the kill");
    check_exactly_once(&at_once, &acked_at_kill, usize::MAX, "right after the kill");

    // Pushes go on being acknowledged, by zones b and c.
    load.wait_for(acked_at_kill.len() + 60, Duration::from_secs(60));
    wait_for_active_ingesters(&push_client, 4);
    load.wait_for(load.acked() + 60, Duration::from_secs(60));
    let acked_while_down = load.acked_ids();
    let while_down = counted(&query_client, range());
    check_exactly_once(
        &while_down,
        &acked_while_down,
        usize::MAX,
        "with zone a down",
    );

    // Zone a comes back with its write-ahead logs; what was written while it
    // was down is in zones b and c only, and still counted once.
    for ingester in &mut cluster.ingesters[..2] {
        ingester.restart();
        assert!(ingester.log().contains("replayed write-ahead log"));
    }
    wait_for_active_ingesters(&push_client, 6);
    wait_for_active_ingesters(&query_client, 6);
    load.wait_for(load.acked() + 40, Duration::from_secs(60));
    let (acked, sent) = load.finish();
    let after = counted(&query_client, range());
    eprintln!(
        "acknowledged {} ({} at the kill, {} while zone a was down), sent {sent}, counted {}",
        acked.len(),
        acked_at_kill.len(),
        acked_while_down.len(),
        after.len()
    );
    check_exactly_once(&after, &acked, sent, "after zone a came back");
}
