//! Active series per tenant, for the `max_active_series` limit.
//!
//! A series is active while it has received a profile within the last
//! `window` (the head's `max_block_duration`, 1h by default). Tracking last-seen
//! times instead of counting the series of the current head means the count
//! does not fall to zero when a head is cut: a series that keeps sending stays
//! active across the cut, and one that stopped leaves the count an hour later.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    time::{Duration, SystemTime},
};

use ember_model::Labels;

/// Returns a 64-bit fingerprint of a label set.
pub fn fingerprint(labels: &Labels) -> u64 {
    let mut h = DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

/// The series of one tenant seen within the window, by fingerprint.
#[derive(Debug, Default)]
pub struct ActiveSeries {
    last_seen: HashMap<u64, SystemTime>,
}

/// Refusal of [`ActiveSeries::admit`]: the tenant would have more active series than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimitExceeded {
    /// Active series before this push.
    pub active: usize,
    /// Series this push would add.
    pub new: usize,
}

impl ActiveSeries {
    /// Returns the number of series seen within the window as of the last purge.
    pub fn len(&self) -> usize {
        self.last_seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_seen.is_empty()
    }

    /// Forgets series not seen since `now - window`.
    pub fn purge(&mut self, now: SystemTime, window: Duration) {
        // A clock that went back counts as no time passed.
        self.last_seen
            .retain(|_, seen| now.duration_since(*seen).unwrap_or_default() < window);
    }

    /// Marks `series` as seen at `now`, or refuses all of them when the new ones
    /// would take the tenant above `limit` (0 disables the limit). Series
    /// already active are always admitted.
    pub fn admit(
        &mut self,
        series: &[u64],
        limit: usize,
        now: SystemTime,
        window: Duration,
    ) -> Result<(), SeriesLimitExceeded> {
        if limit > 0 {
            let mut new: Vec<u64> = series
                .iter()
                .copied()
                .filter(|s| !self.last_seen.contains_key(s))
                .collect();
            new.sort_unstable();
            new.dedup();
            if !new.is_empty() && self.last_seen.len() + new.len() > limit {
                // Only pay for a purge when the limit is in sight.
                self.purge(now, window);
                if self.last_seen.len() + new.len() > limit {
                    return Err(SeriesLimitExceeded {
                        active: self.last_seen.len(),
                        new: new.len(),
                    });
                }
            }
        }
        for s in series {
            self.last_seen.insert(*s, now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn refuses_new_series_above_the_limit_but_keeps_known_ones() {
        let mut active = ActiveSeries::default();
        let t0 = SystemTime::now();
        active.admit(&[1, 2], 3, t0, HOUR).unwrap();
        assert_eq!(
            active.admit(&[3, 4], 3, t0, HOUR),
            Err(SeriesLimitExceeded { active: 2, new: 2 })
        );
        assert_eq!(active.len(), 2, "a refused push adds nothing");
        active.admit(&[1, 2, 3], 3, t0, HOUR).unwrap();
        active.admit(&[1, 2, 3], 3, t0, HOUR).unwrap();
        assert!(active.admit(&[5], 3, t0, HOUR).is_err());
        active.admit(&[5], 0, t0, HOUR).unwrap();
    }

    #[test]
    fn series_expire_after_the_window_not_at_a_cut() {
        let mut active = ActiveSeries::default();
        let t0 = SystemTime::now();
        active.admit(&[1, 2], 2, t0, HOUR).unwrap();
        // Series 1 keeps sending; 2 stops.
        active.admit(&[1], 2, t0 + HOUR / 2, HOUR).unwrap();
        assert!(active.admit(&[3], 2, t0 + HOUR / 2, HOUR).is_err());
        // An hour after series 2 was last seen it no longer counts.
        active.admit(&[3], 2, t0 + HOUR, HOUR).unwrap();
        assert_eq!(active.len(), 2);
    }
}
