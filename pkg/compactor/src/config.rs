//! The `compactor` section of the configuration.

use std::time::Duration;

use ember_config::{Documented, duration};
use serde::{Deserialize, Serialize};

/// How the compactor merges and deletes blocks (`compactor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Documented)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// Comma-separated ranges of compacted blocks, e.g. 1h,4h,24h.
    ///
    /// Shortest first; each must be a multiple of the one before. Level-1
    /// blocks go into ranges of the first; the blocks of each range go into
    /// the next. Default 1h, 4h, 24h.
    #[serde(with = "duration::list")]
    pub block_ranges: Vec<Duration>,
    /// How often the compactor looks for blocks to merge.
    ///
    /// Default 15m.
    #[serde(with = "duration")]
    pub compaction_interval: Duration,
    /// Time after a range ends before its blocks are merged.
    ///
    /// Ingesters must have flushed every block that has profiles in it (a head
    /// is cut after at most `ingester.max_block_duration`). Default 1h.
    #[serde(with = "duration")]
    pub settle_delay: Duration,
    /// Time marked blocks stay before they are deleted.
    ///
    /// Queries that listed a block before it was merged or expired finish
    /// reading it meanwhile. Default 15m.
    #[serde(with = "duration")]
    pub deletion_delay: Duration,
    /// Comma-separated resolutions of the pre-aggregated copies of merged blocks, e.g. 15m,1h.
    ///
    /// A merged block whose range is at least 4 times a resolution also gets a
    /// copy summing its samples per series and interval of that length; long
    /// queries read the copies of the blocks they cover whole, with the same
    /// totals. Empty disables. Default 15m, 1h.
    #[serde(with = "duration::list")]
    pub downsample_resolutions: Vec<Duration>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            block_ranges: vec![HOUR, 4 * HOUR, 24 * HOUR],
            compaction_interval: Duration::from_secs(15 * 60),
            settle_delay: HOUR,
            deletion_delay: Duration::from_secs(15 * 60),
            downsample_resolutions: vec![Duration::from_secs(15 * 60), HOUR],
        }
    }
}

impl CompactorConfig {
    /// Checks that the ranges nest and the interval is not zero; the error
    /// names the key.
    pub fn validate(&self) -> ember_config::Result<()> {
        let invalid = |m: String| Err(ember_config::Error::invalid(m));
        if self.block_ranges.is_empty() {
            return invalid("compactor.block_ranges must hold at least one range".into());
        }
        let mut previous: Option<Duration> = None;
        for &r in &self.block_ranges {
            let range = duration::format(r);
            if r.is_zero() || r.as_nanos() > i64::MAX as u128 / 2 {
                return invalid(format!(
                    "compactor.block_ranges: range {range} must be between 1ns and 100 years"
                ));
            }
            if let Some(p) = previous
                && (r <= p || r.as_nanos() % p.as_nanos() != 0)
            {
                return invalid(format!(
                    "compactor.block_ranges: range {range} must be a longer multiple of the range before it ({})",
                    duration::format(p)
                ));
            }
            previous = Some(r);
        }
        if let Some(r) = self
            .downsample_resolutions
            .iter()
            .find(|r| r.is_zero() || r.as_nanos() > i64::MAX as u128 / 8)
        {
            return invalid(format!(
                "compactor.downsample_resolutions: resolution {} must be between 1ns and 30 years",
                duration::format(*r)
            ));
        }
        if self.compaction_interval.is_zero() {
            return invalid("compactor.compaction_interval must be greater than 0s".into());
        }
        Ok(())
    }
}
