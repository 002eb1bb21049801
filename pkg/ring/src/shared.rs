//! The state the [`Ring`](crate::Ring), the gossip delegate and the background
//! tasks share: the member table and this process's own entry in it.

use std::sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ember_time::SharedClock;
use prometheus::IntCounterVec;

use crate::{
    Member,
    meta::Meta,
    table::{Health, Table},
};

/// State shared by the [`Ring`], the gossip delegate and the background tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// This process's member name; its entry in `table` always exists.
    pub(crate) name: String,
    table: RwLock<Table>,
    /// Heartbeats are stamped and judged with it.
    pub(crate) clock: SharedClock,
    /// Where the gossip delegate counts messages, once metrics are recorded.
    pub(crate) gossip_messages: OnceLock<IntCounterVec>,
}

impl Shared {
    pub(crate) fn new(
        local: Member,
        health: Health,
        zone_awareness: bool,
        clock: SharedClock,
    ) -> Self {
        let mut table = Table::new(health, zone_awareness);
        let name = local.name.clone();
        table.upsert(local);
        Shared {
            name,
            table: RwLock::new(table),
            clock,
            gossip_messages: OnceLock::new(),
        }
    }

    // A panic while holding the lock cannot leave the table half-written
    // (every write is one map operation), so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one gossip message seen in `direction` (`sent` or `received`).
    pub(crate) fn count_gossip(&self, direction: &str) {
        if let Some(c) = self.gossip_messages.get() {
            c.with_label_values(&[direction]).inc();
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<Member> {
        self.read().get(name, self.clock.now())
    }

    pub(crate) fn members(&self) -> Vec<Member> {
        self.read().members(self.clock.now())
    }

    pub(crate) fn ingesters(&self) -> Vec<Member> {
        self.read().ingesters(self.clock.now())
    }

    pub(crate) fn replicas(&self, key: u32, rf: usize) -> Vec<Member> {
        self.read().replicas(key, rf, self.clock.now())
    }

    pub(crate) fn upsert(&self, member: Member) {
        self.write().upsert(member);
    }

    pub(crate) fn remove(&self, name: &str) -> Option<Member> {
        self.write().remove(name)
    }

    pub(crate) fn local(&self) -> Member {
        self.get(&self.name)
            .expect("the local member is never removed")
    }

    pub(crate) fn update_local(&self, f: impl FnOnce(&mut Member)) {
        self.write().update(&self.name, f);
    }

    /// Returns the metadata this process gossips about itself.
    pub(crate) fn local_meta(&self) -> Meta {
        let local = self.local();
        Meta {
            addr: local.addr,
            zone: local.zone,
            roles: local.roles,
            state: local.state,
            num_tokens: local.tokens.len() as u32,
            heartbeat: local.last_heartbeat,
        }
    }
}
