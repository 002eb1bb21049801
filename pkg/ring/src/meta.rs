//! The node metadata each member gossips about itself.
//!
//! Memberlist carries at most 512 bytes of metadata per node and sends it in
//! every alive message, so the format is a small fixed binary layout rather
//! than JSON. Tokens are not sent: every member derives them from the name and
//! the token count (see [`crate::tokens`]).
//!
//! Wire format, version 2 (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version, `2` |
//! | 1 | roles, one bit each: ingester, distributor, querier, compactor |
//! | 1 | state: 0 JOINING, 1 ACTIVE, 2 LEAVING |
//! | 4 | number of tokens (u32) |
//! | 8 | last heartbeat, unix milliseconds (u64) |
//! | 1 | length of the address |
//! | n | address `ip:port` of the HTTP/gRPC server, UTF-8 |
//! | 1 | length of the availability zone (since version 2) |
//! | m | availability zone, UTF-8, at most [`MAX_ZONE_LEN`] bytes (since version 2) |
//!
//! Version 1 ends after the address; its members have no zone.
//!
//! Later versions may only append fields: a reader accepts any version >= 1,
//! reads the fields it knows and ignores the rest, so mixed versions can gossip
//! during a rolling upgrade.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Error, Result, Roles, State};

/// The format version this code writes.
const VERSION: u8 = 2;

/// The longest availability zone, in bytes: with the longest address it keeps
/// the metadata within memberlist's 512 bytes.
pub const MAX_ZONE_LEN: usize = 128;

/// The fixed-size part of the layout, before the address.
const HEADER_LEN: usize = 1 + 1 + 1 + 4 + 8 + 1;

/// The fields a member gossips about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) addr: String,
    pub(crate) zone: String,
    pub(crate) roles: Roles,
    pub(crate) state: State,
    pub(crate) num_tokens: u32,
    pub(crate) heartbeat: SystemTime,
}

impl Meta {
    /// Returns the encoded metadata, or an error when the address does not fit
    /// its one-byte length or the zone is longer than [`MAX_ZONE_LEN`].
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let zone = self.zone.as_bytes();
        if zone.len() > MAX_ZONE_LEN {
            return Err(Error::Config(format!(
                "availability zone {:?} is {} bytes long, at most {MAX_ZONE_LEN} fit in the gossiped metadata",
                self.zone,
                zone.len()
            )));
        }
        let addr = self.addr.as_bytes();
        let addr_len = u8::try_from(addr.len()).map_err(|_| {
            Error::Config(format!(
                "advertised address {:?} is {} bytes long, at most 255 fit in the gossiped metadata",
                self.addr,
                addr.len()
            ))
        })?;
        let heartbeat_ms = self
            .heartbeat
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut buf = Vec::with_capacity(HEADER_LEN + addr.len() + 1 + zone.len());
        buf.push(VERSION);
        buf.push(self.roles.bits());
        buf.push(self.state.to_byte());
        buf.extend_from_slice(&self.num_tokens.to_le_bytes());
        buf.extend_from_slice(
            &u64::try_from(heartbeat_ms)
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        buf.push(addr_len);
        buf.extend_from_slice(addr);
        buf.push(zone.len() as u8);
        buf.extend_from_slice(zone);
        Ok(buf)
    }

    /// Returns the metadata in `buf`, written by this or a later version.
    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let err = |what: &str| Error::Metadata(what.to_owned());
        if buf.len() < HEADER_LEN {
            return Err(err(&format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header (is the peer an Ember ring member?)",
                buf.len()
            )));
        }
        let version = buf[0];
        if version == 0 {
            return Err(err("format version 0 does not exist"));
        }
        let roles = Roles::from_bits(buf[1]);
        let state = State::from_byte(buf[2])
            .ok_or_else(|| err(&format!("unknown member state {}", buf[2])))?;
        let num_tokens = u32::from_le_bytes(buf[3..7].try_into().expect("4 bytes"));
        let heartbeat_ms = u64::from_le_bytes(buf[7..15].try_into().expect("8 bytes"));
        let addr_len = usize::from(buf[15]);
        let addr_end = HEADER_LEN + addr_len;
        let addr = buf
            .get(HEADER_LEN..addr_end)
            .ok_or_else(|| err("address runs past the end of the metadata"))?;
        let addr = std::str::from_utf8(addr)
            .map_err(|_| err("address is not UTF-8"))?
            .to_owned();
        let zone = if version >= 2 {
            let zone_len = usize::from(
                *buf.get(addr_end)
                    .ok_or_else(|| err("version 2 metadata without a zone length"))?,
            );
            let zone = buf
                .get(addr_end + 1..addr_end + 1 + zone_len)
                .ok_or_else(|| err("zone runs past the end of the metadata"))?;
            std::str::from_utf8(zone)
                .map_err(|_| err("zone is not UTF-8"))?
                .to_owned()
        } else {
            String::new()
        };
        Ok(Meta {
            addr,
            zone,
            roles,
            state,
            num_tokens,
            heartbeat: UNIX_EPOCH + Duration::from_millis(heartbeat_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memberlist's limit on node metadata.
    const MAX_LEN: usize = memberlist::META_MAX_SIZE;

    fn sample(addr: &str) -> Meta {
        Meta {
            addr: addr.to_owned(),
            zone: "zone-a".to_owned(),
            roles: Roles {
                ingester: true,
                compactor: true,
                ..Roles::default()
            },
            state: State::Active,
            num_tokens: 128,
            // Whole milliseconds: the format keeps no more.
            heartbeat: UNIX_EPOCH + Duration::from_millis(1_760_000_000_123),
        }
    }

    #[test]
    fn round_trips() {
        let meta = sample("10.0.0.1:4040");
        let buf = meta.encode().unwrap();
        assert_eq!(buf[0], VERSION);
        assert_eq!(Meta::decode(&buf).unwrap(), meta);
    }

    #[test]
    fn stays_under_memberlist_limit_with_the_longest_address() {
        // The node name travels as the memberlist id, not here, so only the
        // address can grow; the longest IPv6 socket address is 47 bytes and a
        // hostname is cut off at 255.
        let ipv6 = sample("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535");
        assert!(ipv6.encode().unwrap().len() < 100);
        let mut longest = sample(&"h".repeat(255));
        longest.zone = "z".repeat(MAX_ZONE_LEN);
        let buf = longest.encode().unwrap();
        assert!(buf.len() <= MAX_LEN, "{} bytes", buf.len());
        assert_eq!(Meta::decode(&buf).unwrap(), longest);
        assert!(sample(&"h".repeat(256)).encode().is_err());
        longest.zone.push('z');
        assert!(longest.encode().is_err());
    }

    #[test]
    fn decodes_version_1_without_a_zone() {
        // Version 1 as a release before zones wrote it.
        let mut v1 = vec![1, 0b0001, 1];
        v1.extend_from_slice(&128u32.to_le_bytes());
        v1.extend_from_slice(&1_760_000_000_123u64.to_le_bytes());
        v1.push(13);
        v1.extend_from_slice(b"10.0.0.1:4040");
        let meta = Meta::decode(&v1).unwrap();
        assert_eq!(meta.zone, "");
        assert_eq!(meta.addr, "10.0.0.1:4040");
        assert!(meta.roles.ingester);
        assert_eq!(meta.state, State::Active);
        assert_eq!(meta.num_tokens, 128);
        // And what this version writes, less its zone, is version 1.
        let mut written = sample("10.0.0.1:4040");
        written.roles = Roles::from_bits(0b0001);
        let mut buf = written.encode().unwrap();
        buf.truncate(buf.len() - 1 - written.zone.len());
        buf[0] = 1;
        assert_eq!(buf, v1);
    }

    #[test]
    fn later_versions_may_append_fields() {
        let meta = sample("127.0.0.1:4040");
        let mut buf = meta.encode().unwrap();
        buf[0] = VERSION + 1;
        buf.extend_from_slice(b"future field");
        assert_eq!(Meta::decode(&buf).unwrap(), meta);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Meta::decode(b"").is_err());
        assert!(Meta::decode(b"hello, memberlist").is_err());
        let mut buf = sample("127.0.0.1:4040").encode().unwrap();
        buf.truncate(buf.len() - 1);
        assert!(Meta::decode(&buf).is_err());
        let mut buf = sample("127.0.0.1:4040").encode().unwrap();
        buf[2] = 9;
        assert!(Meta::decode(&buf).is_err());
        let mut buf = sample("127.0.0.1:4040").encode().unwrap();
        buf.truncate(buf.len() - 2);
        assert!(Meta::decode(&buf).is_err(), "a zone cut short");
    }
}
