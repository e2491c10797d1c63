//! The machine's page-fault cost, with no engine involved: maps 1 GiB of
//! anonymous memory, touches each 4 KiB page once and times every touch on
//! the thread's CPU clock (the first touch is a page fault), then touches
//! 512 MiB of already-resident memory 20 times as the peer. Why merge steps
//! that fault a fresh page can overrun their budget (BENCHMARKS.md, Engine,
//! third session). Last, a loop that touches no memory at all and only
//! reads the thread's CPU clock, counting the gaps between two readings:
//! time the clock charges to a thread that did no work (interrupts, the
//! host), the floor under any step budget (fourth session).
//!
//! ```text
//! cargo bench --bench first_touch
//! ```

const PAGE_BYTES: usize = 4096;
const FRESH_BYTES: usize = 1 << 30;
const RESIDENT_BYTES: usize = 512 << 20;
const RESIDENT_PASSES: usize = 20;
const SLOW_NS: u64 = 100_000;
/// CPU time the clock-gap loop runs for.
const GAP_LOOP_NS: u64 = 3_000_000_000;
/// Gaps between two clock readings counted, by size.
const GAP_THRESHOLDS_NS: [u64; 4] = [50_000, 100_000, 200_000, 500_000];

fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) },
        0
    );
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// A fresh private anonymous mapping of `bytes`, unmapped on drop.
struct Mapping {
    base: *mut u8,
    bytes: usize,
}

impl Mapping {
    fn new(bytes: usize) -> Mapping {
        // SAFETY: a new anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap of {bytes} bytes");
        Mapping {
            base: base.cast(),
            bytes,
        }
    }

    /// Writes one byte of every page, returning each write's CPU time.
    fn touch_pages(&self, latencies_ns: &mut Vec<u64>) {
        for page in 0..self.bytes / PAGE_BYTES {
            let started = thread_cpu_ns();
            // SAFETY: inside the mapping, which is writable.
            unsafe { std::ptr::write_volatile(self.base.add(page * PAGE_BYTES), 1) };
            latencies_ns.push(thread_cpu_ns() - started);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.base.cast(), self.bytes) };
    }
}

fn report(what: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    let slow = ns.iter().filter(|&&n| n > SLOW_NS).count();
    println!(
        "{what}: {} touches, p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.1} us, over 100 us: {slow}",
        ns.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0),
    );
}

/// This thread's minor plus major page faults and involuntary context
/// switches so far.
fn thread_faults_and_preemptions() -> (i64, i64) {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
        0
    );
    (usage.ru_minflt + usage.ru_majflt, usage.ru_nivcsw)
}

/// Reads the thread's CPU clock back to back for [`GAP_LOOP_NS`] of CPU time
/// and reports the gaps between two readings over each threshold.
fn clock_gaps() {
    let (faults, preemptions) = thread_faults_and_preemptions();
    let start = thread_cpu_ns();
    let (mut previous, mut readings, mut max_ns) = (start, 0u64, 0);
    let mut over = [0u64; GAP_THRESHOLDS_NS.len()];
    while previous - start < GAP_LOOP_NS {
        let now = thread_cpu_ns();
        let gap = now - previous;
        for (count, &threshold) in over.iter_mut().zip(&GAP_THRESHOLDS_NS) {
            *count += u64::from(gap > threshold);
        }
        max_ns = max_ns.max(gap);
        previous = now;
        readings += 1;
    }
    let (faults_after, preemptions_after) = thread_faults_and_preemptions();
    println!(
        "CPU clock read back to back for {} s of CPU ({readings} readings): gaps over 50 / 100 / \
         200 / 500 us: {} / {} / {} / {}, max {:.1} us ({} page faults, {} preemptions meanwhile)",
        GAP_LOOP_NS / 1_000_000_000,
        over[0],
        over[1],
        over[2],
        over[3],
        max_ns as f64 / 1000.0,
        faults_after - faults,
        preemptions_after - preemptions,
    );
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("first_touch measures under `cargo bench --bench first_touch`");
        return;
    }
    let mut ns = Vec::with_capacity(FRESH_BYTES / PAGE_BYTES);
    Mapping::new(FRESH_BYTES).touch_pages(&mut ns);
    report("first touch of a fresh 4 KiB page (1 GiB)", ns);

    let resident = Mapping::new(RESIDENT_BYTES);
    let mut ns = Vec::with_capacity(RESIDENT_BYTES / PAGE_BYTES);
    resident.touch_pages(&mut ns);
    ns.clear();
    ns.reserve(RESIDENT_PASSES * RESIDENT_BYTES / PAGE_BYTES);
    for _ in 0..RESIDENT_PASSES {
        resident.touch_pages(&mut ns);
    }
    report("touch of a resident page (512 MiB, 20 passes)", ns);
    drop(resident);
    clock_gaps();
}
