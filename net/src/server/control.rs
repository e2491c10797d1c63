//! The control plane: the only code in the server that crosses threads.
//!
//! The main thread starts one executor per core, waits for every core to
//! report ready (or one to fail), prints the banner, then waits for signals.
//! On the first SIGINT/SIGTERM it flips the phase to draining and writes
//! every core's wake eventfd, so a core parked in its network loop notices at
//! once; each core drains, commits, and acknowledges. The main thread exits
//! 0 when every core has acknowledged. Requests never pass through here.
//!
//! The state machine lives in `control_state.rs` and is compiled twice: here
//! against std atomics, and under test against loom's, where `loom::model`
//! explores every interleaving of start-up and shutdown.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

include!("control_state.rs");

/// Per-core counters the main thread reads for the shutdown summary.
#[derive(Debug, Default)]
pub struct CoreStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub rounds: AtomicU64,
}

/// Shared by the main thread and every core (behind an `Arc`).
pub struct Control {
    pub state: ControlState,
    /// One per core; also the eventfd its io_uring signals completions on.
    wake_fds: Vec<OwnedFd>,
    pub stats: Vec<CoreStats>,
}

impl Control {
    pub fn new(cores: u16) -> std::io::Result<Control> {
        let mut wake_fds = Vec::with_capacity(usize::from(cores));
        for _ in 0..cores {
            // Blocking on purpose: the core waits on it with an io_uring read,
            // which io_uring would fail with EAGAIN on a non-blocking fd
            // instead of polling it. SAFETY: plain syscall, result checked.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` is a fresh descriptor nobody else owns.
            wake_fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(Control {
            state: ControlState::new(u32::from(cores)),
            wake_fds,
            stats: (0..cores).map(|_| CoreStats::default()).collect(),
        })
    }

    /// Core `core`'s wake eventfd. Owned here, so it outlives every core.
    pub fn wake_fd(&self, core: u16) -> RawFd {
        self.wake_fds[usize::from(core)].as_raw_fd()
    }

    /// Make every core look at the control state now.
    pub fn wake_all(&self) {
        for fd in &self.wake_fds {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
            // EAGAIN (counter saturated) means the core is awake anyway.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases() {
        let state = ControlState::new(2);
        assert!(!state.all_ready());
        state.core_ready();
        state.core_ready();
        assert!(state.all_ready());
        assert!(state.start_running());
        assert!(state.request_shutdown());
        assert!(
            !state.request_shutdown(),
            "a second request is reported as such"
        );
        assert!(state.shutdown_requested());
        assert!(!state.start_running());
        state.core_stopped();
        assert!(!state.all_stopped());
        state.core_stopped();
        assert!(state.all_stopped());
    }

    #[test]
    fn wake_is_readable() {
        let control = Control::new(1).unwrap();
        control.wake_all();
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64.
        let n = unsafe { libc::read(control.wake_fd(0), (&mut value as *mut u64).cast(), 8) };
        assert_eq!(n, 8);
        assert_eq!(value, 1);
    }
}

/// The same state machine, compiled against loom's atomics.
#[cfg(test)]
mod loom_model {
    use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
    use loom::sync::{Arc, Notify};

    include!("control_state.rs");

    fn model(body: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(1);
        builder.check(body);
    }

    /// Spin politely: loom explores the other threads meanwhile.
    fn wait_until(condition: impl Fn() -> bool) {
        while !condition() {
            loom::thread::yield_now();
        }
    }

    /// Two cores start, serve, get a shutdown, persist, acknowledge. The main
    /// thread must see each core's setup after `all_ready` and each core's
    /// final commit after `all_stopped`; the flags are written Relaxed, so
    /// only the control state's orderings can make them visible. Wake-ups are
    /// modelled with `Notify`, which is sticky like the eventfd a core parks
    /// on (the main thread really polls with a timeout, which is weaker).
    #[test]
    fn loom_startup_then_shutdown() {
        model(|| {
            let state = Arc::new(ControlState::new(2));
            let main_wake = Arc::new(Notify::new());
            let core_wake = Arc::new([Notify::new(), Notify::new()]);
            let set_up = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
            let persisted = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
            let cores: Vec<_> = (0..2)
                .map(|core| {
                    let state = state.clone();
                    let (main_wake, core_wake) = (main_wake.clone(), core_wake.clone());
                    let (set_up, persisted) = (set_up.clone(), persisted.clone());
                    loom::thread::spawn(move || {
                        set_up[core].store(true, Ordering::Relaxed);
                        state.core_ready();
                        main_wake.notify();
                        while !state.shutdown_requested() {
                            core_wake[core].wait();
                        }
                        persisted[core].store(true, Ordering::Relaxed);
                        state.core_stopped();
                        main_wake.notify();
                    })
                })
                .collect();
            while !state.all_ready() {
                main_wake.wait();
            }
            assert!(set_up[0].load(Ordering::Relaxed) && set_up[1].load(Ordering::Relaxed));
            assert!(state.start_running());
            assert!(state.request_shutdown());
            core_wake[0].notify();
            core_wake[1].notify();
            while !state.all_stopped() {
                main_wake.wait();
            }
            assert!(persisted[0].load(Ordering::Relaxed) && persisted[1].load(Ordering::Relaxed));
            for core in cores {
                core.join().unwrap();
            }
        });
    }

    /// One core fails during start-up while a signal arrives: exactly one of
    /// the two shutdown requests is the first, the phase never goes back to
    /// running, and the failed core counts as stopped.
    #[test]
    fn loom_startup_failure_races_signal() {
        model(|| {
            let state = Arc::new(ControlState::new(1));
            let failing = {
                let state = state.clone();
                loom::thread::spawn(move || state.core_failed())
            };
            let signal = {
                let state = state.clone();
                loom::thread::spawn(move || state.request_shutdown())
            };
            wait_until(|| state.any_failed() || state.all_ready());
            assert!(!state.all_ready(), "a failed core never reports ready");
            let main_first = state.request_shutdown();
            let signal_first = signal.join().unwrap();
            assert!(
                main_first != signal_first,
                "exactly one request is the first"
            );
            assert!(!state.start_running());
            assert!(state.all_stopped());
            failing.join().unwrap();
        });
    }
}
