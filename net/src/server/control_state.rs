// The control plane's state machine. This file is `include!`d twice by
// `control.rs`: once against std's atomics (the real thing) and once, under
// test, against loom's atomics so `loom::model` checks the very same code.
// It therefore imports nothing itself: the including module provides
// `AtomicU8`, `AtomicU32` and `Ordering`.

/// Executors are starting; the node is not serving yet.
const PHASE_STARTING: u8 = 0;
/// Every core is serving.
const PHASE_RUNNING: u8 = 1;
/// Shutdown requested: cores stop accepting, finish in-flight requests,
/// commit and acknowledge.
const PHASE_DRAINING: u8 = 2;

/// Start-up and shutdown coordination between the main thread and the cores.
///
/// Orderings: a core's work before `core_ready` / `core_stopped` (setup,
/// the final commit) happens-before the main thread's `all_ready` /
/// `all_stopped` returning true (Release increments, Acquire loads), and the
/// main thread's work before `request_shutdown` happens-before a core's
/// `shutdown_requested` returning true.
pub struct ControlState {
    phase: AtomicU8,
    ready: AtomicU32,
    stopped: AtomicU32,
    failed: AtomicU32,
    cores: u32,
}

impl ControlState {
    pub fn new(cores: u32) -> ControlState {
        assert!(cores > 0);
        ControlState {
            phase: AtomicU8::new(PHASE_STARTING),
            ready: AtomicU32::new(0),
            stopped: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            cores,
        }
    }

    /// A core finished its setup and serves from now on.
    pub fn core_ready(&self) {
        let before = self.ready.fetch_add(1, Ordering::Release);
        assert!(before < self.cores, "more ready acknowledgements than cores");
    }

    /// A core could not start (or died); it counts as stopped.
    pub fn core_failed(&self) {
        // Stopped first: whoever sees the failure (Acquire) then also sees
        // the stop, so waiting for `all_stopped` after a failure is exact.
        self.core_stopped();
        let before = self.failed.fetch_add(1, Ordering::Release);
        assert!(before < self.cores);
    }

    /// A core drained, committed, and will touch nothing shared again.
    pub fn core_stopped(&self) {
        let before = self.stopped.fetch_add(1, Ordering::Release);
        assert!(before < self.cores, "more stop acknowledgements than cores");
    }

    pub fn all_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) == self.cores
    }

    pub fn any_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire) > 0
    }

    pub fn all_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire) == self.cores
    }

    /// Starting -> Running. False if a shutdown came first.
    pub fn start_running(&self) -> bool {
        self.phase
            .compare_exchange(
                PHASE_STARTING,
                PHASE_RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Any phase -> Draining. True only for the first request, so a second
    /// signal can be told apart.
    pub fn request_shutdown(&self) -> bool {
        self.phase.swap(PHASE_DRAINING, Ordering::AcqRel) != PHASE_DRAINING
    }

    pub fn shutdown_requested(&self) -> bool {
        self.phase.load(Ordering::Acquire) == PHASE_DRAINING
    }
}
