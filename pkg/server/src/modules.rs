//! The module graph: what each `-target` starts, in which order, and how it stops
//! (as Pyroscope's module manager does).
//!
//! A target is a set of modules; each module declares the modules it needs (which
//! are started with it) and those it must start after when they run in the same
//! process (an in-process ingester before the distributor that writes to it).
//! [`resolve`] turns targets into the start order; processes stop in reverse, so
//! that whoever asks for data stops before whoever serves it: the HTTP server drains
//! first, the agent pushes what it buffered, and the ingester flushes only once no
//! write can reach it. Adding a module is one entry in [`Module::ALL`] and its two
//! dependency lists.

use std::collections::BTreeSet;
use std::fmt;

use crate::target::{Target, expand};

/// A part of an Ember process with its own start and stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Module {
    /// The bound HTTP/gRPC port: bound first, since ring members advertise it.
    Listener,
    /// The object store blocks live in.
    Storage,
    /// Membership: gossip in a cluster, a ring of one for `-target=all`.
    Ring,
    /// Write-ahead log, heads, flushes (replays the log on start).
    Ingester,
    /// Push validation, limits and replication.
    Distributor,
    /// Queries over recent data and blocks.
    Querier,
    /// Block merges and retention.
    Compactor,
    /// Scraping `/debug/pprof` and pushing.
    Agent,
    /// The HTTP/gRPC server: serves every module above, drains on shutdown.
    Server,
}

impl Module {
    /// Every module, in the order `-modules` lists them.
    pub const ALL: [Module; 9] = [
        Module::Listener,
        Module::Storage,
        Module::Ring,
        Module::Ingester,
        Module::Distributor,
        Module::Querier,
        Module::Compactor,
        Module::Agent,
        Module::Server,
    ];

    /// Returns the module's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Module::Listener => "listener",
            Module::Storage => "storage",
            Module::Ring => "ring",
            Module::Ingester => "ingester",
            Module::Distributor => "distributor",
            Module::Querier => "querier",
            Module::Compactor => "compactor",
            Module::Agent => "agent",
            Module::Server => "server",
        }
    }

    /// Returns the modules this one needs: they start with it, before it.
    pub fn needs(self) -> &'static [Module] {
        match self {
            Module::Listener | Module::Storage => &[],
            Module::Ring => &[Module::Listener],
            Module::Ingester => &[Module::Storage, Module::Ring],
            Module::Distributor => &[Module::Ring],
            Module::Querier => &[Module::Storage, Module::Ring],
            Module::Compactor => &[Module::Storage],
            Module::Agent => &[],
            Module::Server => &[Module::Listener, Module::Ring],
        }
    }

    /// Returns the modules this one starts after when they run in the same
    /// process, without needing them: it uses them in-process if they are there.
    pub fn after(self) -> &'static [Module] {
        match self {
            Module::Distributor | Module::Querier => &[Module::Ingester],
            Module::Agent => &[Module::Distributor],
            // The server serves whatever runs, and starts serving last.
            Module::Server => &[
                Module::Ingester,
                Module::Distributor,
                Module::Querier,
                Module::Compactor,
                Module::Agent,
            ],
            _ => &[],
        }
    }

    /// Returns the module of a component target.
    fn of(target: Target) -> Option<Module> {
        match target {
            Target::All => None,
            Target::Agent => Some(Module::Agent),
            Target::Distributor => Some(Module::Distributor),
            Target::Ingester => Some(Module::Ingester),
            Target::Querier => Some(Module::Querier),
            Target::Compactor => Some(Module::Compactor),
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Returns the modules `targets` run, in start order: every target's module,
/// what it needs (transitively) and the server, each after everything it needs
/// or starts after.
pub fn resolve(targets: &[Target]) -> Vec<Module> {
    let mut wanted: BTreeSet<Module> = expand(targets)
        .into_iter()
        .filter_map(Module::of)
        .chain([Module::Server])
        .collect();
    let mut pending: Vec<Module> = wanted.iter().copied().collect();
    while let Some(module) = pending.pop() {
        for &need in module.needs() {
            if wanted.insert(need) {
                pending.push(need);
            }
        }
    }
    // Kahn's algorithm over `needs` and `after`, both restricted to the modules
    // that run; ties go in `Module::ALL` order, so the result is deterministic.
    let mut order = Vec::with_capacity(wanted.len());
    while order.len() < wanted.len() {
        let next = Module::ALL
            .into_iter()
            .find(|m| {
                wanted.contains(m)
                    && !order.contains(m)
                    && m.needs()
                        .iter()
                        .chain(m.after())
                        .all(|d| !wanted.contains(d) || order.contains(d))
            })
            .expect("the module graph has no cycle");
        order.push(next);
    }
    order
}

/// Returns the `-modules` listing of the graph: each module, what it needs and
/// what it starts after.
pub fn graph_help() -> String {
    let names = |modules: &[Module]| {
        modules
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("\nModules (started in this order, stopped in reverse):\n");
    for module in Module::ALL {
        out.push_str(&format!(
            "{:12} needs [{}]",
            module.as_str(),
            names(module.needs())
        ));
        if !module.after().is_empty() {
            out.push_str(&format!(", after [{}]", names(module.after())));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Module::*;

    fn order(targets: &[Target]) -> Vec<Module> {
        resolve(targets)
    }

    #[test]
    fn every_target_combination_starts_its_dependencies_first() {
        // The targets the README, the Helm chart and the tests run.
        let cases: &[(&[Target], &[Module])] = &[
            (
                &[Target::All],
                &[
                    Listener,
                    Storage,
                    Ring,
                    Ingester,
                    Distributor,
                    Querier,
                    Compactor,
                    Agent,
                    Server,
                ],
            ),
            (
                &[Target::Distributor],
                &[Listener, Ring, Distributor, Server],
            ),
            (
                &[Target::Ingester],
                &[Listener, Storage, Ring, Ingester, Server],
            ),
            (
                &[Target::Querier],
                &[Listener, Storage, Ring, Querier, Server],
            ),
            (
                &[Target::Compactor],
                &[Listener, Storage, Ring, Compactor, Server],
            ),
            (&[Target::Agent], &[Listener, Ring, Agent, Server]),
            (
                &[Target::Distributor, Target::Ingester],
                &[Listener, Storage, Ring, Ingester, Distributor, Server],
            ),
            (
                &[Target::Querier, Target::Distributor],
                &[Listener, Storage, Ring, Distributor, Querier, Server],
            ),
            (
                &[Target::Agent, Target::Distributor],
                &[Listener, Ring, Distributor, Agent, Server],
            ),
        ];
        for (targets, want) in cases {
            assert_eq!(&order(targets), want, "{targets:?}");
        }
    }

    #[test]
    fn stop_order_is_the_reverse_of_start() {
        let start = order(&[Target::All]);
        let stop: Vec<Module> = start.iter().rev().copied().collect();
        // The server drains before the agent pushes its buffer, which happens
        // before the ingester flushes, which happens before the ring is left.
        let at = |m: Module| stop.iter().position(|&s| s == m).unwrap();
        assert!(at(Server) < at(Agent));
        assert!(at(Agent) < at(Distributor));
        assert!(at(Distributor) < at(Ingester));
        assert!(at(Ingester) < at(Ring));
        assert!(at(Querier) < at(Ingester));
    }

    #[test]
    fn every_module_starts_after_what_it_needs_for_every_target_set() {
        // All 2^5 sets of component targets.
        let components = Target::COMPONENTS;
        for mask in 1u32..(1 << components.len()) {
            let targets: Vec<Target> = (0..components.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| components[i])
                .collect();
            let started = order(&targets);
            for (i, m) in started.iter().enumerate() {
                for need in m.needs() {
                    assert!(
                        started[..i].contains(need),
                        "{targets:?}: {m} before {need}"
                    );
                }
                for after in m.after() {
                    assert!(
                        !started.contains(after) || started[..i].contains(after),
                        "{targets:?}: {m} before {after}"
                    );
                }
            }
        }
    }

    #[test]
    fn graph_help_lists_every_module() {
        let help = graph_help();
        for module in Module::ALL {
            assert!(help.contains(&format!("\n{module:12} needs [")), "{help}");
        }
        assert!(
            help.contains("ingester     needs [storage, ring]"),
            "{help}"
        );
    }
}
