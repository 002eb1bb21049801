//! The ring's metrics, registered into the process's registry. The member
//! gauges are read from the member table at scrape time, so they are never
//! stale; gossip messages are counted by the memberlist delegate.
//!
//! - `ember_ring_members{state}`: members by state (`JOINING`, `ACTIVE`,
//!   `LEAVING`), except that members whose heartbeat is too old count as
//!   `unhealthy` whatever their state.
//! - `ember_ring_oldest_heartbeat_age_seconds`: the age of the oldest heartbeat.
//! - `ember_ring_gossip_messages_total{direction}`: `received` counts member
//!   updates (joins, updates, leaves) the delegate is told of; `sent` counts
//!   the times memberlist asks it for this member's metadata to gossip.
//! - `ember_ingester_ring_state{state}`: in an ingester, 1 for its own state
//!   and 0 for the others.

use std::sync::{Arc, OnceLock, Weak};

use prometheus::{
    Gauge, IntCounterVec, IntGaugeVec, Opts, Registry,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use crate::{State, shared::Shared};

const STATES: [State; 3] = [State::Joining, State::Active, State::Leaving];
const UNHEALTHY: &str = "unhealthy";

/// The ring's metrics; [`Ring::record_metrics`](crate::Ring::record_metrics)
/// connects them to a ring. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RingMetrics {
    /// Gossip messages the delegate saw, by direction (`sent`, `received`).
    pub gossip_messages: IntCounterVec,
    /// The ring the scrape-time gauges read.
    ring: Arc<OnceLock<Weak<Shared>>>,
}

impl RingMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gossip_messages = IntCounterVec::new(
            Opts::new(
                "ember_ring_gossip_messages_total",
                "Gossip messages the ring's delegate saw, by direction",
            ),
            &["direction"],
        )?;
        let ring = Arc::new(OnceLock::new());
        let collector = MemberGauges {
            ring: ring.clone(),
            members: IntGaugeVec::new(
                Opts::new("ember_ring_members", "Ring members by state"),
                &["state"],
            )?,
            oldest_heartbeat_age: Gauge::new(
                "ember_ring_oldest_heartbeat_age_seconds",
                "Age of the oldest heartbeat among ring members",
            )?,
            ingester_state: IntGaugeVec::new(
                Opts::new(
                    "ember_ingester_ring_state",
                    "1 for this ingester's ring state, 0 for the others",
                ),
                &["state"],
            )?,
        };
        registry.register(Box::new(gossip_messages.clone()))?;
        registry.register(Box::new(collector))?;
        gossip_messages.with_label_values(&["sent"]);
        gossip_messages.with_label_values(&["received"]);
        Ok(Self {
            gossip_messages,
            ring,
        })
    }

    /// Makes the gauges read `shared`; the first ring connected wins.
    pub(crate) fn connect(&self, shared: &Arc<Shared>) {
        let _ = self.ring.set(Arc::downgrade(shared));
    }
}

/// Gauges computed from the member table when scraped.
struct MemberGauges {
    ring: Arc<OnceLock<Weak<Shared>>>,
    members: IntGaugeVec,
    oldest_heartbeat_age: Gauge,
    ingester_state: IntGaugeVec,
}

impl MemberGauges {
    fn refresh(&self, shared: &Shared) {
        let now = shared.clock.now();
        let members = shared.members();
        for state in STATES {
            let n = members
                .iter()
                .filter(|m| m.healthy && m.state == state)
                .count();
            self.members
                .with_label_values(&[state.as_str()])
                .set(n as i64);
        }
        let unhealthy = members.iter().filter(|m| !m.healthy).count();
        self.members
            .with_label_values(&[UNHEALTHY])
            .set(unhealthy as i64);
        let oldest = members
            .iter()
            .filter_map(|m| now.duration_since(m.last_heartbeat).ok())
            .max()
            .unwrap_or_default();
        self.oldest_heartbeat_age.set(oldest.as_secs_f64());
        let local = shared.local();
        if local.roles.ingester {
            for state in STATES {
                self.ingester_state
                    .with_label_values(&[state.as_str()])
                    .set(i64::from(state == local.state));
            }
        }
    }
}

impl Collector for MemberGauges {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.members.desc();
        d.extend(self.oldest_heartbeat_age.desc());
        d.extend(self.ingester_state.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(shared) = self.ring.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        self.refresh(&shared);
        let mut families = self.members.collect();
        families.extend(self.oldest_heartbeat_age.collect());
        families.extend(self.ingester_state.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use ember_time::SystemClock;

    use super::*;
    use crate::{Member, Ring, Roles};

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn member_gauges_follow_the_ring_when_scraped() {
        let registry = Registry::new();
        let metrics = RingMetrics::register(&registry).unwrap();
        // Nothing connected yet: no member gauges, no error.
        assert!(!text(&registry).contains("ember_ring_members"));
        let clock = SystemClock::shared();
        let ring = Ring::single(
            Member {
                name: "one".into(),
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
                last_heartbeat: clock.now(),
                healthy: true,
            },
            clock,
        );
        ring.record_metrics(&metrics);
        let t = text(&registry);
        assert!(t.contains("ember_ring_members{state=\"JOINING\"} 1"), "{t}");
        assert!(t.contains("ember_ring_members{state=\"ACTIVE\"} 0"), "{t}");
        assert!(
            t.contains("ember_ingester_ring_state{state=\"JOINING\"} 1"),
            "{t}"
        );
        ring.set_state(State::Active);
        let t = text(&registry);
        assert!(t.contains("ember_ring_members{state=\"ACTIVE\"} 1"), "{t}");
        assert!(
            t.contains("ember_ingester_ring_state{state=\"ACTIVE\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("ember_ingester_ring_state{state=\"JOINING\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("ember_ring_gossip_messages_total{direction=\"sent\"} 0"),
            "{t}"
        );
    }
}
