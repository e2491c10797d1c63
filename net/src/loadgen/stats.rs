//! Counting and latency recording, per thread and merged.
//!
//! Each ring thread records into its own histograms (no sharing on the hot
//! path). Once a second it folds its interval histogram into a mutex-guarded
//! slot that the main thread drains for the progress line and the plot's
//! time series; the lock is taken twice a second per thread, never per
//! request. Latencies are recorded in nanoseconds and reported in
//! microseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Highest latency recorded exactly; slower replies saturate here.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// HDR precision: 3 significant digits (0.1% relative error).
const SIGNIFICANT_DIGITS: u8 = 3;

/// The commands the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Set,
    Get,
}

impl Command {
    pub const ALL: [Command; 2] = [Command::Set, Command::Get];

    pub fn name(self) -> &'static str {
        match self {
            Command::Set => "SET",
            Command::Get => "GET",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS)
        .expect("static bounds are valid")
}

/// One command's totals.
#[derive(Debug, Clone)]
pub struct CommandStats {
    pub requests: u64,
    pub errors: u64,
    pub latency_ns: Histogram<u64>,
}

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats {
            requests: 0,
            errors: 0,
            latency_ns: new_histogram(),
        }
    }
}

impl CommandStats {
    pub fn merge(&mut self, other: &CommandStats) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency_ns.add(&other.latency_ns).expect("same bounds");
    }
}

/// Totals of one thread, or of the run once merged.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub commands: [CommandStats; 2],
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Requests lost with a connection that failed (never answered).
    pub lost: u64,
    pub connection_errors: u64,
}

impl RunStats {
    pub fn merge(&mut self, other: &RunStats) {
        for (mine, theirs) in self.commands.iter_mut().zip(&other.commands) {
            mine.merge(theirs);
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.lost += other.lost;
        self.connection_errors += other.connection_errors;
    }

    pub fn requests(&self) -> u64 {
        self.commands.iter().map(|c| c.requests).sum()
    }

    pub fn errors(&self) -> u64 {
        self.commands.iter().map(|c| c.errors).sum::<u64>() + self.lost
    }

    pub fn all_latency_ns(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for command in &self.commands {
            all.add(&command.latency_ns).expect("same bounds");
        }
        all
    }
}

/// What a thread shares with the main thread while running.
pub struct LiveSlot {
    /// Replies recorded so far (after warmup).
    pub requests: AtomicU64,
    interval: Mutex<Histogram<u64>>,
}

impl Default for LiveSlot {
    fn default() -> Self {
        LiveSlot {
            requests: AtomicU64::new(0),
            interval: Mutex::new(new_histogram()),
        }
    }
}

impl LiveSlot {
    /// Thread side: hand over the latencies recorded since the last call.
    pub fn publish(&self, requests_total: u64, interval: &mut Histogram<u64>) {
        self.requests.store(requests_total, Ordering::Relaxed);
        let mut shared = self.interval.lock().expect("no thread panics holding it");
        shared.add(&*interval).expect("same bounds");
        interval.reset();
    }

    /// Main side: move the published latencies into `into`.
    pub fn drain_into(&self, into: &mut Histogram<u64>) {
        let mut shared = self.interval.lock().expect("no thread panics holding it");
        into.add(&*shared).expect("same bounds");
        shared.reset();
    }
}

/// One second of the run, for the progress line and the plot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub elapsed_s: f64,
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Percentiles of a histogram in microseconds: p50, p90, p99, p99.9, max.
pub fn percentiles_us(histogram: &Histogram<u64>) -> [f64; 5] {
    if histogram.is_empty() {
        return [0.0; 5];
    }
    let at = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    [
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        histogram.max() as f64 / 1000.0,
    ]
}
