//! The daemon's wall clock: timestamps of stored rounds, samples and evidence. Round trips and
//! schedules use the monotonic clock only, so a wall-clock step cannot distort them.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Source of Unix time in ns; tests inject one that jumps.
pub trait WallClock: Send + Sync {
    fn unix_now_ns(&self) -> i64;
}

/// The system's real-time clock.
pub struct SystemClock;

impl WallClock for SystemClock {
    fn unix_now_ns(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Smallest disagreement between wall and monotonic time counted as a step.
const STEP: Duration = Duration::from_secs(1);

/// Notices wall-clock steps by comparing the wall clock's progress with the monotonic clock's.
pub(crate) struct StepDetector {
    last: Mutex<(i64, Instant)>,
}

impl StepDetector {
    pub(crate) fn new(clock: &dyn WallClock) -> Self {
        Self {
            last: Mutex::new((clock.unix_now_ns(), Instant::now())),
        }
    }

    /// The step since the last call in ns (wall minus monotonic progress), if one exceeds
    /// [`STEP`]; slewing by NTP stays far below it.
    pub(crate) fn check(&self, clock: &dyn WallClock) -> Option<i64> {
        let (wall, mono) = (clock.unix_now_ns(), Instant::now());
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let wall_delta = wall.saturating_sub(last.0);
        let mono_delta = i64::try_from(mono.duration_since(last.1).as_nanos()).unwrap_or(i64::MAX);
        *last = (wall, mono);
        let step = wall_delta.saturating_sub(mono_delta);
        (step.unsigned_abs() > STEP.as_nanos() as u64).then_some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    struct Offset(AtomicI64);

    impl WallClock for Offset {
        fn unix_now_ns(&self) -> i64 {
            SystemClock.unix_now_ns() + self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn steps_are_noticed_once_either_way() {
        let clock = Offset(AtomicI64::new(0));
        let d = StepDetector::new(&clock);
        assert_eq!(d.check(&clock), None);
        clock.0.store(-3_600_000_000_000, Ordering::Relaxed);
        let back = d.check(&clock).expect("a backward step");
        assert!((back + 3_600_000_000_000).abs() < 100_000_000, "{back}");
        assert_eq!(d.check(&clock), None);
        clock.0.store(0, Ordering::Relaxed);
        assert!(d.check(&clock).is_some_and(|s| s > 0));
    }
}
