//! The member table: every known member and the token ring built from them.
//!
//! Kept apart from gossip so the replica walk can be tested without sockets:
//! the gossip delegate only inserts and removes members here.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use crate::{Member, State, tokens::TokenRing};

/// How a member's health is judged.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Health {
    /// Healthy while the last heartbeat is at most this old.
    Heartbeat(Duration),
    /// A fixed ring without gossip: its one member is this process, which is
    /// alive for as long as anyone can ask it.
    Always,
}

/// Members by name, and the token ring of those that are ingesters.
#[derive(Debug)]
pub(crate) struct Table {
    members: BTreeMap<String, Member>,
    ring: TokenRing,
    health: Health,
    /// Whether replicas of a key go to distinct zones first.
    zone_awareness: bool,
}

impl Table {
    /// Returns an empty table; with `zone_awareness`, [`Table::replicas`]
    /// spreads a key's replicas over zones.
    pub(crate) fn new(health: Health, zone_awareness: bool) -> Self {
        Table {
            members: BTreeMap::new(),
            ring: TokenRing::default(),
            health,
            zone_awareness,
        }
    }

    /// Inserts or replaces a member; rebuilds the ring only when the member's
    /// tokens changed, not on state or heartbeat updates.
    pub(crate) fn upsert(&mut self, member: Member) {
        let tokens = |m: &Member| m.roles.ingester.then(|| m.tokens.clone());
        let old = self.members.get(&member.name).map(tokens);
        let rebuild = old.is_none_or(|old| old != tokens(&member));
        self.members.insert(member.name.clone(), member);
        if rebuild {
            self.rebuild();
        }
    }

    /// Removes a member, returning it if it was known.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Member> {
        let removed = self.members.remove(name)?;
        if removed.roles.ingester {
            self.rebuild();
        }
        Some(removed)
    }

    /// Changes a member's state in place; the ring does not depend on it.
    pub(crate) fn update(&mut self, name: &str, f: impl FnOnce(&mut Member)) {
        if let Some(member) = self.members.get_mut(name) {
            f(member);
        }
    }

    fn rebuild(&mut self) {
        self.ring = TokenRing::new(
            self.members
                .values()
                .filter(|m| m.roles.ingester)
                .map(|m| (m.name.as_str(), m.tokens.as_slice())),
        );
    }

    /// Returns a copy of the member with `healthy` judged at `now`.
    pub(crate) fn get(&self, name: &str, now: SystemTime) -> Option<Member> {
        self.members.get(name).map(|m| self.snapshot(m, now))
    }

    fn snapshot(&self, member: &Member, now: SystemTime) -> Member {
        let mut member = member.clone();
        match self.health {
            Health::Heartbeat(timeout) => {
                // A heartbeat from the future (clock skew) counts as fresh.
                member.healthy = now
                    .duration_since(member.last_heartbeat)
                    .map_or(true, |age| age <= timeout);
            }
            Health::Always => {
                member.last_heartbeat = now;
                member.healthy = true;
            }
        }
        member
    }

    /// Returns every member, sorted by name.
    pub(crate) fn members(&self, now: SystemTime) -> Vec<Member> {
        self.members
            .values()
            .map(|m| self.snapshot(m, now))
            .collect()
    }

    /// Returns the members that are ingesters, in any state, sorted by name.
    pub(crate) fn ingesters(&self, now: SystemTime) -> Vec<Member> {
        self.members
            .values()
            .filter(|m| m.roles.ingester)
            .map(|m| self.snapshot(m, now))
            .collect()
    }

    /// Returns whether `member` takes writes at `now`: ACTIVE and healthy.
    fn writable(&self, member: &Member, now: SystemTime) -> bool {
        member.state == State::Active && self.snapshot(member, now).healthy
    }

    /// Returns up to `rf` distinct active, healthy ingesters for `key` in ring
    /// order (see [`crate::Ring::replicas`]).
    pub(crate) fn replicas(&self, key: u32, rf: usize, now: SystemTime) -> Vec<Member> {
        let mut replicas: Vec<Member> = Vec::with_capacity(rf);
        let writable = |name: &str| {
            self.members
                .get(name)
                .filter(|m| self.writable(m, now))
                .map(|m| self.snapshot(m, now))
        };
        if self.zone_awareness {
            // First one replica per zone, as dskit places them. Only zones
            // with a writable ingester count, so that the walk does not look
            // for a zone that is down.
            let zones: BTreeSet<&str> = self
                .members
                .values()
                .filter(|m| m.roles.ingester && self.writable(m, now))
                .map(|m| m.zone.as_str())
                .collect();
            let wanted = rf.min(zones.len());
            for name in self.ring.walk(key) {
                if replicas.len() == wanted {
                    break;
                }
                if let Some(member) = writable(name)
                    && replicas.iter().all(|r| r.zone != member.zone)
                {
                    replicas.push(member);
                }
            }
        }
        // Then, or without zone awareness, the next distinct ingesters
        // clockwise: with fewer zones than `rf`, a zone holds more than one.
        for name in self.ring.walk(key) {
            if replicas.len() >= rf {
                break;
            }
            if replicas.iter().all(|r| r.name != name)
                && let Some(member) = writable(name)
            {
                replicas.push(member);
            }
        }
        replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Roles;

    const TIMEOUT: Duration = Duration::from_secs(60);

    fn member(name: &str, tokens: &[u32], state: State, now: SystemTime) -> Member {
        Member {
            name: name.to_owned(),
            addr: format!("{name}:4040"),
            zone: String::new(),
            roles: Roles {
                ingester: true,
                ..Roles::default()
            },
            state,
            tokens: tokens.to_vec(),
            last_heartbeat: now,
            healthy: true,
        }
    }

    fn names(members: &[Member]) -> Vec<&str> {
        members.iter().map(|m| m.name.as_str()).collect()
    }

    /// a: 10, 40; b: 20, 50; c: 30; d: 35 — all active.
    fn table(now: SystemTime) -> Table {
        let mut table = Table::new(Health::Heartbeat(TIMEOUT), false);
        table.upsert(member("a", &[10, 40], State::Active, now));
        table.upsert(member("b", &[20, 50], State::Active, now));
        table.upsert(member("c", &[30], State::Active, now));
        table.upsert(member("d", &[35], State::Active, now));
        table
    }

    #[test]
    fn replicas_walk_clockwise_and_are_distinct() {
        let now = SystemTime::now();
        let table = table(now);
        assert_eq!(names(&table.replicas(15, 3, now)), ["b", "c", "d"]);
        // From 36: a(40), b(50), then wraps to a(10, taken), b(20, taken), c(30).
        assert_eq!(names(&table.replicas(36, 3, now)), ["a", "b", "c"]);
        assert_eq!(
            names(&table.replicas(51, 2, now)),
            ["a", "b"],
            "wraps around"
        );
        assert_eq!(
            names(&table.replicas(40, 1, now)),
            ["a"],
            "token equal to key owns it"
        );
        assert!(table.replicas(40, 0, now).is_empty());
    }

    #[test]
    fn replicas_skip_joining_leaving_and_unhealthy() {
        let now = SystemTime::now();
        let mut table = table(now);
        table.update("b", |m| m.state = State::Joining);
        table.update("c", |m| m.state = State::Leaving);
        assert_eq!(names(&table.replicas(15, 2, now)), ["d", "a"]);
        table.update("d", |m| {
            m.last_heartbeat = now - TIMEOUT - Duration::from_secs(1)
        });
        assert_eq!(
            names(&table.replicas(15, 2, now)),
            ["a"],
            "fewer when fewer qualify"
        );
        assert!(!table.get("d", now).unwrap().healthy);
        // Unhealthy and non-active members are still listed.
        assert_eq!(names(&table.ingesters(now)), ["a", "b", "c", "d"]);
    }

    #[test]
    fn replicas_returns_fewer_when_fewer_exist() {
        let now = SystemTime::now();
        let mut table = table(now);
        assert_eq!(table.replicas(0, 10, now).len(), 4);
        for name in ["a", "b", "c"] {
            table.remove(name);
        }
        assert_eq!(names(&table.replicas(0, 3, now)), ["d"]);
        table.remove("d");
        assert!(table.replicas(0, 3, now).is_empty());
    }

    #[test]
    fn non_ingesters_own_no_tokens() {
        let now = SystemTime::now();
        let mut table = Table::new(Health::Heartbeat(TIMEOUT), false);
        let mut distributor = member("dist", &[10], State::Active, now);
        distributor.roles = Roles {
            distributor: true,
            ..Roles::default()
        };
        table.upsert(distributor);
        table.upsert(member("ing", &[20], State::Active, now));
        assert_eq!(names(&table.replicas(5, 3, now)), ["ing"]);
        assert_eq!(names(&table.members(now)), ["dist", "ing"]);
        assert_eq!(names(&table.ingesters(now)), ["ing"]);
    }

    #[test]
    fn token_changes_rebuild_the_ring() {
        let now = SystemTime::now();
        let mut table = table(now);
        table.upsert(member("a", &[16], State::Active, now));
        assert_eq!(names(&table.replicas(15, 1, now)), ["a"]);
        assert_eq!(names(&table.replicas(36, 1, now)), ["b"]);
    }

    /// Six ingesters in three zones, named `<zone><n>`, with the tokens of
    /// [`crate::tokens`]: what a real cluster of 3 zones × 2 ingesters owns.
    fn zoned_table(now: SystemTime) -> Table {
        let mut table = Table::new(Health::Heartbeat(TIMEOUT), true);
        for zone in ["a", "b", "c"] {
            for n in 1..=2 {
                let name = format!("{zone}{n}");
                let mut m = member(&name, &crate::tokens(&name, 128), State::Active, now);
                m.zone = format!("zone-{zone}");
                table.upsert(m);
            }
        }
        table
    }

    fn zones(members: &[Member]) -> BTreeSet<&str> {
        members.iter().map(|m| m.zone.as_str()).collect()
    }

    /// Keys spread over the ring, so that every ingester owns some of them.
    fn keys() -> impl Iterator<Item = u32> {
        (0..1000u32).map(|i| i.wrapping_mul(0x9e37_79b9))
    }

    #[test]
    fn zone_aware_replicas_land_in_distinct_zones() {
        let now = SystemTime::now();
        let table = zoned_table(now);
        let mut first = BTreeSet::new();
        for key in keys() {
            let replicas = table.replicas(key, 3, now);
            assert_eq!(replicas.len(), 3, "key {key}");
            assert_eq!(
                zones(&replicas).len(),
                3,
                "key {key}: {:?}",
                names(&replicas)
            );
            first.insert(replicas[0].name.clone());
        }
        assert_eq!(first.len(), 6, "every ingester owns keys: {first:?}");
        // The owner of a key is the same with or without zones: the walk
        // starts where it always did, only later picks skip a zone.
        let mut plain = Table::new(Health::Heartbeat(TIMEOUT), false);
        for m in table.ingesters(now) {
            plain.upsert(m);
        }
        for key in keys() {
            assert_eq!(
                table.replicas(key, 3, now)[0].name,
                plain.replicas(key, 3, now)[0].name
            );
        }
        assert!(
            keys().any(|key| zones(&plain.replicas(key, 3, now)).len() < 3),
            "the plain walk is not zone-aware by chance"
        );
    }

    #[test]
    fn fewer_zones_than_replicas_fill_from_the_zones_there_are() {
        let now = SystemTime::now();
        let mut table = zoned_table(now);
        table.remove("c1");
        table.remove("c2");
        for key in keys() {
            let replicas = table.replicas(key, 3, now);
            assert_eq!(replicas.len(), 3, "key {key}");
            assert_eq!(zones(&replicas), BTreeSet::from(["zone-a", "zone-b"]));
            // Both zones come first, then the fill.
            assert_ne!(replicas[0].zone, replicas[1].zone, "key {key}");
        }
        table.remove("b1");
        table.remove("b2");
        let replicas = table.replicas(7, 3, now);
        assert_eq!(replicas.len(), 2, "one zone of two: both of its ingesters");
        assert_eq!(zones(&replicas), BTreeSet::from(["zone-a"]));
        // A replication factor below the number of zones stays below it.
        let table = zoned_table(now);
        for key in keys() {
            assert_eq!(zones(&table.replicas(key, 2, now)).len(), 2);
        }
    }

    #[test]
    fn zone_aware_replicas_skip_joining_leaving_and_unhealthy() {
        let now = SystemTime::now();
        let mut table = zoned_table(now);
        table.update("a1", |m| m.state = State::Leaving);
        table.update("b1", |m| m.state = State::Joining);
        table.update("c1", |m| {
            m.last_heartbeat = now - TIMEOUT - Duration::from_secs(1)
        });
        for key in keys() {
            let replicas = table.replicas(key, 3, now);
            // The other ingester of each zone takes its zone's replica.
            assert_eq!(names(&replicas).len(), 3);
            assert!(
                replicas
                    .iter()
                    .all(|r| ["a2", "b2", "c2"].contains(&r.name.as_str())),
                "key {key}: {:?}",
                names(&replicas)
            );
        }
        // A zone with no writable ingester is not waited for: the others fill.
        table.update("c2", |m| m.state = State::Leaving);
        for key in keys() {
            let replicas = table.replicas(key, 3, now);
            assert_eq!(names(&replicas).len(), 2, "only a2 and b2 take writes");
            assert_eq!(zones(&replicas), BTreeSet::from(["zone-a", "zone-b"]));
        }
    }
}
