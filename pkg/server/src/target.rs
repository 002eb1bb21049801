//! The parts of Ember a process can run, picked with `-target` (DESIGN.md §1).
//!
//! One binary plays every role: `-target=all` runs a complete single-node system, while
//! split deployments give each process one or a few targets
//! (`-target=distributor,ingester`). Like Quickwit's `QuickwitService`, a target is a
//! plain enum with stable names; the server starts a component only when
//! [`expand`] of the configured targets contains it.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A part of Ember that a process can run.
///
/// The order of the variants is the order in which components start: whoever serves
/// data starts before whoever asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Every component in one process, talking in-process.
    All,
    /// Scrapes `/debug/pprof/*` endpoints and pushes to distributors.
    Agent,
    /// Receives, validates and limits pushes and replicates them to ingesters.
    Distributor,
    /// Writes the WAL, keeps the head block and flushes blocks to object storage.
    Ingester,
    /// Answers queries from ingesters and object-storage blocks.
    Querier,
    /// Merges and de-duplicates blocks and enforces retention.
    Compactor,
}

impl Target {
    /// The targets a user may pick, in the order `-modules` lists them.
    pub const ALL_SELECTABLE: [Target; 6] = [
        Target::All,
        Target::Agent,
        Target::Distributor,
        Target::Ingester,
        Target::Querier,
        Target::Compactor,
    ];

    /// The components `all` stands for: every target but `all` itself.
    pub const COMPONENTS: [Target; 5] = [
        Target::Agent,
        Target::Distributor,
        Target::Ingester,
        Target::Querier,
        Target::Compactor,
    ];

    /// Returns the name used in `-target`, YAML and `-modules`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::All => "all",
            Target::Agent => "agent",
            Target::Distributor => "distributor",
            Target::Ingester => "ingester",
            Target::Querier => "querier",
            Target::Compactor => "compactor",
        }
    }

    /// Returns a one-line description of what the target does, for `-modules`.
    pub fn description(self) -> &'static str {
        match self {
            Target::All => "every target below in one process, talking in-process",
            Target::Agent => {
                "discovers scrape targets, scrapes /debug/pprof/* and pushes to distributors"
            }
            Target::Distributor => {
                "receives pushes, validates and limits them, replicates them to ingesters"
            }
            Target::Ingester => {
                "writes the WAL, keeps the head block, flushes blocks to object storage"
            }
            Target::Querier => "answers queries from ingesters and object-storage blocks",
            Target::Compactor => "merges and de-duplicates blocks, enforces retention",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a target name that [`Target::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target {name:?}, valid targets are {}", valid_names())]
pub struct ParseTargetError {
    /// The name that was given.
    pub name: String,
}

fn valid_names() -> String {
    Target::ALL_SELECTABLE.map(Target::as_str).join(", ")
}

impl FromStr for Target {
    type Err = ParseTargetError;

    /// Parses a target name, ignoring surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Target::ALL_SELECTABLE
            .into_iter()
            .find(|target| target.as_str() == name)
            .ok_or_else(|| ParseTargetError {
                name: name.to_string(),
            })
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Accepts `target` as a comma string (`distributor,ingester`) or a list, whose items
/// may themselves be comma strings.
pub(crate) fn deserialize_targets<'de, D>(deserializer: D) -> Result<Vec<Target>, D::Error>
where
    D: Deserializer<'de>,
{
    struct TargetsVisitor;

    impl<'de> serde::de::Visitor<'de> for TargetsVisitor {
        type Value = Vec<Target>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a target name, a comma-separated list of them, or a list")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            ember_config::split_list(value)
                .map(|name| name.parse().map_err(E::custom))
                .collect()
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut targets = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                targets.extend(TargetsVisitor.visit_str::<A::Error>(&item)?);
            }
            Ok(targets)
        }
    }

    deserializer.deserialize_any(TargetsVisitor)
}

/// Returns the components to run for `targets`: `all` becomes every component (the
/// agent included), duplicates collapse, and the set iterates in start order.
pub fn expand(targets: &[Target]) -> BTreeSet<Target> {
    targets
        .iter()
        .flat_map(|&target| match target {
            Target::All => Target::COMPONENTS.to_vec(),
            component => vec![component],
        })
        .collect()
}

/// Returns the `-modules` listing: one line per selectable target with its description.
pub fn modules_help() -> String {
    let width = Target::ALL_SELECTABLE
        .iter()
        .map(|target| target.as_str().len())
        .max()
        .unwrap_or_default();
    Target::ALL_SELECTABLE
        .iter()
        .map(|target| format!("{:width$}  {}\n", target.as_str(), target.description(),))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for target in Target::ALL_SELECTABLE {
            assert_eq!(target.as_str().parse::<Target>().unwrap(), target);
            assert_eq!(target.to_string(), target.as_str());
            assert!(!target.description().is_empty());
        }
        assert_eq!(" ingester ".parse::<Target>().unwrap(), Target::Ingester);
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let err = "ingestor".parse::<Target>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown target \"ingestor\", valid targets are all, agent, distributor, \
             ingester, querier, compactor"
        );
    }

    #[test]
    fn expand_all_includes_every_component() {
        let expanded = expand(&[Target::All]);
        assert_eq!(
            expanded.into_iter().collect::<Vec<_>>(),
            Target::COMPONENTS.to_vec()
        );
        assert!(expand(&[Target::All]).contains(&Target::Agent));
        assert!(!expand(&[Target::All]).contains(&Target::All));
    }

    #[test]
    fn expand_dedups_and_orders() {
        let expanded = expand(&[Target::Querier, Target::Distributor, Target::Querier]);
        assert_eq!(
            expanded.into_iter().collect::<Vec<_>>(),
            vec![Target::Distributor, Target::Querier]
        );
        assert!(expand(&[]).is_empty());
        assert_eq!(
            expand(&[Target::Ingester, Target::All]).len(),
            Target::COMPONENTS.len()
        );
    }

    #[test]
    fn serde_uses_names() {
        let yaml = serde_yaml::to_string(&vec![Target::All, Target::Querier]).unwrap();
        assert_eq!(yaml, "- all\n- querier\n");
        let parsed: Vec<Target> = serde_yaml::from_str("[distributor, ingester]").unwrap();
        assert_eq!(parsed, vec![Target::Distributor, Target::Ingester]);
        let err = serde_yaml::from_str::<Target>("nope")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown target \"nope\""), "{err}");
    }

    #[test]
    fn modules_help_lists_every_target() {
        let help = modules_help();
        assert_eq!(help.lines().count(), Target::ALL_SELECTABLE.len());
        assert!(help.starts_with("all          every target"), "{help}");
        assert!(help.contains("\ncompactor    merges"), "{help}");
    }
}
