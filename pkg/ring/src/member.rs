//! What the ring knows about one process: its roles, lifecycle state and tokens.

use std::{fmt, time::SystemTime};

use serde::{Serialize, Serializer};

/// The targets a process runs. A process may run several (`-target=all` runs all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Roles {
    /// Owns tokens and stores series; the only role [`crate::Ring::replicas`] returns.
    pub ingester: bool,
    /// Receives pushes and shards them over the ingesters.
    pub distributor: bool,
    /// Answers queries from ingesters and blocks.
    pub querier: bool,
    /// Merges blocks and enforces retention.
    pub compactor: bool,
}

impl Roles {
    /// Returns the roles as one bit each, in the order of the fields; the wire
    /// format of the gossiped metadata depends on this order.
    pub(crate) fn bits(self) -> u8 {
        u8::from(self.ingester)
            | u8::from(self.distributor) << 1
            | u8::from(self.querier) << 2
            | u8::from(self.compactor) << 3
    }

    /// Returns the roles encoded by [`Roles::bits`]; bits of roles this version
    /// does not know are ignored so newer peers can add roles.
    pub(crate) fn from_bits(bits: u8) -> Self {
        Roles {
            ingester: bits & 1 != 0,
            distributor: bits & 1 << 1 != 0,
            querier: bits & 1 << 2 != 0,
            compactor: bits & 1 << 3 != 0,
        }
    }
}

impl fmt::Display for Roles {
    /// Writes the roles as a comma-separated list, the way `-target` spells them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.ingester, "ingester"),
            (self.distributor, "distributor"),
            (self.querier, "querier"),
            (self.compactor, "compactor"),
        ];
        let mut first = true;
        for (_, name) in names.iter().filter(|(on, _)| *on) {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
        Ok(())
    }
}

/// Where a member is in its lifecycle. Only `Active` ingesters receive writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Started but not ready for writes (an ingester replaying its WAL).
    Joining,
    /// Serving.
    Active,
    /// Shutting down: flushing and about to leave the cluster.
    Leaving,
}

impl State {
    /// Returns the name operators see on `/ring`, as Pyroscope spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Joining => "JOINING",
            State::Active => "ACTIVE",
            State::Leaving => "LEAVING",
        }
    }

    /// Returns the state's byte in the gossiped metadata.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            State::Joining => 0,
            State::Active => 1,
            State::Leaving => 2,
        }
    }

    /// Returns the state encoded by [`State::to_byte`], `None` for a value this
    /// version does not know.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(State::Joining),
            1 => Some(State::Active),
            2 => Some(State::Leaving),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One process in the cluster as this process currently sees it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Member {
    /// Unique name of the process (memberlist node id).
    pub name: String,
    /// `ip:port` of the process's HTTP/gRPC server.
    pub addr: String,
    /// The availability zone the process runs in; empty when not set.
    pub zone: String,
    /// The targets the process runs.
    pub roles: Roles,
    /// Lifecycle state.
    pub state: State,
    /// The member's tokens on the ring, sorted; empty unless it is an ingester.
    pub tokens: Vec<u32>,
    /// When the member last refreshed its heartbeat, by its own clock.
    #[serde(serialize_with = "rfc3339")]
    pub last_heartbeat: SystemTime,
    /// Whether the heartbeat is recent enough; unhealthy members get no writes.
    pub healthy: bool,
}

/// Serializes a timestamp as RFC 3339 with milliseconds, what browsers and Grafana parse.
fn rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let time = chrono::DateTime::<chrono::Utc>::from(*time);
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_bits() {
        for bits in 0..16u8 {
            assert_eq!(Roles::from_bits(bits).bits(), bits);
        }
        let roles = Roles {
            ingester: true,
            querier: true,
            ..Roles::default()
        };
        assert_eq!(roles.to_string(), "ingester,querier");
    }

    #[test]
    fn state_serializes_in_capitals() {
        assert_eq!(
            serde_json::to_string(&State::Joining).unwrap(),
            "\"JOINING\""
        );
        assert_eq!(State::Leaving.to_string(), "LEAVING");
        for state in [State::Joining, State::Active, State::Leaving] {
            assert_eq!(State::from_byte(state.to_byte()), Some(state));
        }
    }
}
