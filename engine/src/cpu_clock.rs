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
//! mistaken for work. Reading it is a system call (~0.1-0.3 us, no vDSO),
//! which is why steps look at it only every few dozen records.

use std::ops::Add;
use std::time::Duration;

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
}
