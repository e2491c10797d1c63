//! The clock merge-step budgets are measured on: this thread's CPU time.
//!
//! A budget caps the work one `merge_step` does between two rounds of
//! requests. Measured on the wall clock, time the thread spent descheduled
//! (other processes on a busy core) was charged to the merge: under load,
//! steps did less and less work, merges fell behind the writes, the stack
//! grew taller than in a quiet run and the pool ran out of the spare buffers
//! a quiet run had recycled, so a request allocated or not depending on the
//! machine's load. On the thread's CPU clock a step does the same work
//! whatever else runs, and preemption (which no budget can prevent) is not
//! mistaken for work.
//!
//! Reading it is a system call (no vDSO), and in a VM an expensive one: in a
//! profile of the merger, checking it every 32 records cost ~10% of the
//! merge's CPU time. A [`CpuDeadline`] therefore polls the monotonic wall
//! clock (vDSO, tens of ns) and reads the CPU clock only when the wall clock
//! says the deadline may have come: a thread cannot run for longer than the
//! wall time that passes, so while wall time since the last CPU reading is
//! short of the CPU time left, the deadline has certainly not passed. A step
//! that is not preempted reads the CPU clock about twice; a preempted one,
//! whose wall clock ran ahead, once more per preemption. The deadline itself
//! is still CPU time, exactly as before.

use std::ops::Add;
use std::time::{Duration, Instant};

/// A point on the calling thread's CPU clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CpuInstant(Duration);

impl CpuInstant {
    pub fn now() -> CpuInstant {
        let mut spec = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `spec` is a valid, writable timespec.
        let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut spec) };
        assert_eq!(result, 0, "CLOCK_THREAD_CPUTIME_ID is always available");
        assert!(spec.tv_sec >= 0 && (0..1_000_000_000).contains(&spec.tv_nsec));
        CpuInstant(Duration::new(spec.tv_sec as u64, spec.tv_nsec as u32))
    }
}

impl Add<Duration> for CpuInstant {
    type Output = CpuInstant;

    fn add(self, duration: Duration) -> CpuInstant {
        CpuInstant(self.0.saturating_add(duration))
    }
}

/// Both clocks read at one moment: wall first, so the CPU reading is the
/// later one and wall time measured from here never falls short of the CPU
/// time spent since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClockPair {
    wall: Instant,
    cpu: CpuInstant,
}

impl ClockPair {
    pub fn now() -> ClockPair {
        let wall = Instant::now();
        let cpu = CpuInstant::now();
        ClockPair { wall, cpu }
    }

    /// The moment `after` more CPU time than at this pair's reading.
    pub fn deadline(self, after: Duration) -> CpuDeadline {
        CpuDeadline::new(self.cpu + after, self)
    }
}

/// A point on this thread's CPU clock, cheap to poll (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuDeadline {
    at: CpuInstant,
    /// Until the wall clock reaches this, the CPU clock cannot reach `at`.
    wall_safe_until: Instant,
}

impl CpuDeadline {
    /// A deadline at `at` on the CPU clock, anchored at `now` (both clocks
    /// read together, before any work this deadline is to limit).
    fn new(at: CpuInstant, now: ClockPair) -> CpuDeadline {
        CpuDeadline {
            at,
            wall_safe_until: now.wall + at.0.saturating_sub(now.cpu.0),
        }
    }

    /// Whether this thread's CPU clock has reached the deadline.
    #[inline]
    pub fn passed(&mut self) -> bool {
        let wall = Instant::now();
        if wall < self.wall_safe_until {
            return false;
        }
        self.passed_on_cpu_clock(wall)
    }

    #[cold]
    fn passed_on_cpu_clock(&mut self, wall: Instant) -> bool {
        // Read after `wall`: the CPU time left counts from a later moment,
        // so the new bound stays on the safe side.
        let cpu = CpuInstant::now();
        if cpu >= self.at {
            return true;
        }
        self.wall_safe_until = wall + (self.at.0 - cpu.0);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_with_work_only() {
        let start = CpuInstant::now();
        let mut sum = 0u64;
        while CpuInstant::now() < start + Duration::from_millis(2) {
            sum = sum.wrapping_add(std::hint::black_box(1));
        }
        assert!(sum > 0);
        let before_sleep = CpuInstant::now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            CpuInstant::now() < before_sleep + Duration::from_millis(10),
            "a sleeping thread's CPU clock stands (nearly) still"
        );
    }

    #[test]
    fn a_deadline_passes_when_the_cpu_clock_reaches_it() {
        let start = ClockPair::now();
        let at = start.cpu + Duration::from_millis(2);
        let mut deadline = start.deadline(Duration::from_millis(2));
        let mut polls = 0u64;
        while !deadline.passed() {
            polls += 1;
            assert!(CpuInstant::now() < at + Duration::from_millis(1));
        }
        assert!(polls > 0);
        assert!(CpuInstant::now() >= at, "never passes early");
    }

    #[test]
    fn a_sleep_does_not_spend_a_deadline() {
        let start = ClockPair::now();
        let mut deadline = start.deadline(Duration::from_millis(5));
        // The wall clock passes the deadline's wall bound while asleep; the
        // CPU clock (checked then) does not, and the bound moves on.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!deadline.passed(), "sleeping spends no CPU time");
        let mut spins = 0u64;
        while !deadline.passed() {
            spins = spins.wrapping_add(std::hint::black_box(1));
        }
        assert!(spins > 0);
    }

    #[test]
    fn a_deadline_already_behind_passes_at_once() {
        let mut deadline = ClockPair::now().deadline(Duration::ZERO);
        assert!(deadline.passed());
    }
}
