//! Injected time. Components never read the system clock themselves: they are given
//! a [`Clock`], so that tests move time with a [`ManualClock`] instead of sleeping, as
//! InfluxDB's `iox_time` does.
//!
//! It is the wall clock: head cuts, block ranges, heartbeats and retention are all
//! measured in the unix time that profiles carry. Rates and timeouts read from it
//! treat a clock that goes back as one that stood still.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Returns the current time.
    fn now(&self) -> SystemTime;

    /// Returns the current time in unix nanoseconds.
    fn now_nanos(&self) -> i64 {
        unix_nanos(self.now())
    }

    /// Returns the current time in unix milliseconds.
    fn now_millis(&self) -> i64 {
        self.now_nanos().div_euclid(1_000_000)
    }
}

/// A clock handle shared by the parts of a process.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// Returns the system clock as a shared handle.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// Returns a clock showing `now`.
    pub fn new(now: SystemTime) -> Self {
        Self(Mutex::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: SystemTime) {
        *self.0.lock().expect("poisoned") = now;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.0.lock().expect("poisoned") += by;
    }
}

impl Default for ManualClock {
    /// Returns a clock showing 2024-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(UNIX_EPOCH + Duration::from_secs(1_704_067_200))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().expect("poisoned")
    }
}

/// Returns `t` in unix nanoseconds, saturating outside `i64`.
pub fn unix_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => nanos(d),
        Err(e) => -nanos(e.duration()),
    }
}

/// Returns `d` in nanoseconds, saturating at `i64::MAX`.
pub fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::default();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now_nanos(), unix_nanos(start) + 90_000_000_000);
        clock.set(UNIX_EPOCH);
        assert_eq!(clock.now_nanos(), 0);
        assert_eq!(
            unix_nanos(UNIX_EPOCH - Duration::from_secs(1)),
            -1_000_000_000
        );
    }
}
