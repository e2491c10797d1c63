//! One load thread: a pinned thread driving many connections through one
//! io_uring ring.
//!
//! The hot loop allocates nothing. Every connection owns a send buffer sized
//! for a full pipeline of the largest commands and a fixed receive buffer; a
//! batch is written into the send buffer in place from constant templates
//! (the buffer only ever reuses its capacity; see [`super::wire`]) and sent
//! with one `send`. The connections' sockets are registered with the ring,
//! so no operation looks its descriptor up.
//!
//! Receiving: every connection has one multishot `recv` armed for the whole
//! run, drawing from a provided-buffer ring shared by the thread (the
//! server's [`BufRing`], sized here to the thread's connections so that the
//! buffers the kernel cycles through stay in the cache). The kernel keeps
//! the socket's poll armed between replies, so a batch costs one `send`
//! entry and one receive completion, and no `recv` is re-armed per batch.
//! Replies are framed where the kernel put them, without decoding; only a
//! reply cut in two by the network is carried over in the connection's
//! receive buffer, and the provided buffer goes straight back. A multishot
//! receive that ends (the ring ran dry: ENOBUFS) is re-armed at the end of
//! the turn, once the buffers are back.
//!
//! Sending: a closed loop must keep every connection's next batch in flight
//! as soon as its replies are in. The ready connections' batches leave every
//! [`SEND_FLUSH_CONNS`] connections while the turn's completions are being
//! framed (one non-waiting `io_uring_enter`), and the rest in the one
//! `io_uring_enter` that ends the turn and waits for completions. Sends
//! complete silently (`IOSQE_CQE_SKIP_SUCCESS`), so a batch costs one
//! completion, its reply's.
//!
//! Latency is measured per pipeline slot from the batch's start (all slots
//! of a batch are written by the same `send`) to the completion that carried
//! the slot's reply. With `--rate`, a batch's start is its *scheduled* time,
//! not when a connection became free, so a server that falls behind shows up
//! in the latency (no coordinated omission).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::config::{Config, CONGESTION_NAME_LEN_MAX};
use super::stats::{new_histogram, Command, LiveSlot, RunStats};
use super::wire::{frame_reply, RequestEncoder};
use super::workload::{KeyChooser, KeyPool, Rng, Zipf, KEY_LEN};
use super::LoadgenError;
use crate::server::bufring::{BufRing, RECV_BUFFER_GROUP};

/// Operations a ring holds: a send and a recv per connection, rounded up.
const RING_ENTRIES_MAX: u32 = 16 * 1024;
/// Receive buffer floor; it also always fits the largest single reply.
const RECV_BUFFER_BYTES_MIN: usize = 64 * 1024;
/// RESP framing around one command's key and value (`*3\r\n$3\r\nSET\r\n`..).
const COMMAND_OVERHEAD_BYTES: usize = 64;
/// Longest wait in the kernel, so progress and stop checks run on time.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// How long outstanding replies may take once the run has stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections whose replies are all in before their next batches are sent
/// mid-turn. Sending everything only at the end of the turn synchronises
/// the connections into one convoy: the server waits while we frame 50
/// replies, then we wait while it serves 50 requests, so the two cores
/// take turns instead of working at once (measured: 0.6-0.75x
/// redis-benchmark's requests/s with less CPU on both sides). A flush every
/// few connections keeps the server fed for one extra `io_uring_enter` per
/// that many batches.
const SEND_FLUSH_CONNS: usize = 4;
/// Fewest provided receive buffers per thread; the ring gets one per
/// connection (rounded up to a power of two) above that. A turn consumes at
/// most one buffer per completion and returns them all at its end, and a
/// connection's batch of replies usually arrives in one completion, so one
/// per connection rarely runs the ring dry (and running dry only costs a
/// re-armed receive). Few buffers matter: the kernel cycles through all of
/// them, and the server's 512 x 16 KiB (8 MiB) left every receive copying
/// into lines that had long left the cache (profiled: the kernel's copy
/// took half as long with 64 x 4 KiB).
const RECV_BUFFER_COUNT_MIN: usize = 16;
const RECV_BUFFER_COUNT_MAX: usize = 4096;
/// Bounds of one provided buffer: a completion carries at most this much,
/// and a batch's replies larger than it take several completions.
const RECV_BUFFER_BYTES_FLOOR: usize = 4096;
const RECV_BUFFER_BYTES_CEILING: usize = 64 * 1024;
/// All of a thread's provided buffers together.
const RECV_BUFFERS_TOTAL_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Buffers start this much past a multiple of a page, each at a different
/// cache set, rather than all competing for the set of their first line.
const RECV_BUFFER_STAGGER_BYTES: usize = 64;

/// How often a thread hands its interval latencies to the main thread.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

const OP_SEND: u64 = 1;
const OP_RECV: u64 = 2;
const OP_BITS: u32 = 2;

/// The ports one thread drives and how its keys are drawn for each.
pub struct Target {
    pub addr: SocketAddr,
    pub pool: KeyPool,
    /// Built for `pool.len()` when the pattern is Zipf.
    pub zipf: Option<Arc<Zipf>>,
}

/// Everything one thread needs, decided by the main thread.
pub struct ThreadPlan {
    pub index: usize,
    pub cpu: Option<usize>,
    pub targets: Vec<Target>,
    /// Requests this thread sends after warmup (`--requests`); `None`: until time is up.
    pub requests_budget: Option<u64>,
    /// This thread's share of `--rate`.
    pub rate_ops_per_sec: Option<f64>,
}

struct Conn {
    stream: TcpStream,
    keys: KeyChooser,
    rng: Rng,
    send_buf: Vec<u8>,
    recv_buf: Box<[u8]>,
    recv_len: usize,
    /// The batch in flight, one command per pipeline slot.
    batch: Vec<Command>,
    replied: usize,
    batch_start: Instant,
    recording: bool,
    alive: bool,
    /// Whether the connection's multishot recv is armed in the kernel.
    armed: bool,
}

impl Conn {
    /// A batch is out whose replies have not all arrived.
    fn awaiting(&self) -> bool {
        self.alive && self.replied < self.batch.len()
    }
}

/// Shared per-run inputs of every thread.
pub struct RunShared<'a> {
    pub config: &'a Config,
    pub live: &'a LiveSlot,
    pub barrier: &'a Barrier,
    /// Set by a thread that fails to start, so the others stop at once
    /// instead of running the whole duration for a report that will fail.
    pub abort: &'a AtomicBool,
}

/// Connect, wait for every other thread, drive load, drain, and return
/// this thread's totals.
pub fn run_thread(plan: ThreadPlan, shared: RunShared<'_>) -> Result<RunStats, LoadgenError> {
    let prepared = prepare(&plan, shared.config);
    // Every thread must reach the barrier even on failure, or the others hang.
    shared.barrier.wait();
    let started = prepared.and_then(|prepared| {
        if let Some(cpu) = plan.cpu {
            pin_to_cpu(cpu)?;
        }
        if plan.rate_ops_per_sec.is_some() {
            // A fixed rate sleeps until each batch is due; the default 50 us
            // timer slack would add up to that much to every latency.
            // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        }
        Ok(prepared)
    });
    let (mut ring, mut conns) =
        started.inspect_err(|_| shared.abort.store(true, Ordering::Relaxed))?;
    let (buffer_count, buffer_size_bytes) = recv_buffer_shape(conns.len(), shared.config);
    let mut buffers = match BufRing::register_sized(&ring, buffer_count, buffer_size_bytes) {
        Ok(buffers) => buffers,
        Err(source) => {
            shared.abort.store(true, Ordering::Relaxed);
            return Err(LoadgenError::Ring { source });
        }
    };
    let stats = drive(&mut ring, &mut buffers, &mut conns, &plan, &shared);
    // The ring first: closing it cancels the multishot receives, which may
    // still own provided buffers.
    drop(ring);
    drop(buffers);
    if stats.is_err() || conns.iter().any(|conn| !conn.alive) {
        // A failed connection may still have its silent send in the kernel
        // (as may anything when `drive` failed), and closing a ring doesn't
        // wait for it: leak the buffers rather than free them under the
        // kernel (the run is over).
        std::mem::forget(conns);
    }
    stats
}

fn prepare(plan: &ThreadPlan, config: &Config) -> Result<(IoUring, Vec<Conn>), LoadgenError> {
    let conn_count = plan.targets.len() * config.connections;
    // A send per connection, plus a multishot recv re-armed per connection.
    let entries = (2 * conn_count as u32 + 8)
        .next_power_of_two()
        .min(RING_ENTRIES_MAX);
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_defer_taskrun()
        .build(entries)
        .or_else(|_| IoUring::new(entries))
        .map_err(|source| LoadgenError::Ring { source })?;
    let send_capacity = config.pipeline * (KEY_LEN + config.data_size_max + COMMAND_OVERHEAD_BYTES);
    let recv_capacity =
        RECV_BUFFER_BYTES_MIN.max(2 * (config.data_size_max + COMMAND_OVERHEAD_BYTES));
    let mut conns = Vec::with_capacity(conn_count);
    for (target_index, target) in plan.targets.iter().enumerate() {
        for slot in 0..config.connections {
            let stream =
                TcpStream::connect(target.addr).map_err(|source| LoadgenError::Connect {
                    addr: target.addr,
                    source,
                })?;
            stream
                .set_nodelay(true)
                .map_err(|source| LoadgenError::Connect {
                    addr: target.addr,
                    source,
                })?;
            // Off by default (the system's algorithm): against bbr, reno
            // measured within the noise on both the client's CPU and the
            // server's (BENCHMARKS.md, "Fifth session").
            if let Some(name) = &config.congestion {
                set_congestion(&stream, name).map_err(|source| LoadgenError::Congestion {
                    name: name.clone(),
                    source,
                })?;
            }
            let seed = ((plan.index as u64) << 40) ^ ((target_index as u64) << 20) ^ slot as u64;
            let start = seed.wrapping_mul(0x9e37_79b9) % target.pool.len();
            conns.push(Conn {
                stream,
                keys: KeyChooser::new(
                    target.pool.clone(),
                    config.key_pattern,
                    target.zipf.clone(),
                    start,
                ),
                rng: Rng::new(seed ^ 0x5eed),
                send_buf: Vec::with_capacity(send_capacity),
                recv_buf: vec![0u8; recv_capacity].into_boxed_slice(),
                recv_len: 0,
                batch: Vec::with_capacity(config.pipeline),
                replied: 0,
                batch_start: Instant::now(),
                recording: false,
                alive: true,
                armed: false,
            });
        }
    }
    assert!(conns.len() < (1 << (64 - OP_BITS)));
    // Registered sockets: every send and receive then names its socket by
    // index into the ring's own table instead of making the kernel look the
    // descriptor up and take and drop a reference to it per operation.
    let fds: Vec<RawFd> = conns.iter().map(|conn| conn.stream.as_raw_fd()).collect();
    ring.submitter()
        .register_files(&fds)
        .map_err(|source| LoadgenError::Ring { source })?;
    Ok((ring, conns))
}

/// Per-thread loop state that is not per connection.
struct Driver<'a> {
    config: &'a Config,
    stats: RunStats,
    interval: Histogram<u64>,
    encoder: RequestEncoder,
    measure_from: Instant,
    stop_at: Option<Instant>,
    budget_left: Option<u64>,
    batch_interval: Option<Duration>,
    next_due: Instant,
    stopping: bool,
    /// Connections with a batch out (`Conn::awaiting`), counted rather
    /// than found by walking every connection on every turn.
    in_flight: usize,
    /// Connections not failed.
    alive: usize,
}

fn drive(
    ring: &mut IoUring,
    buffers: &mut BufRing,
    conns: &mut [Conn],
    plan: &ThreadPlan,
    shared: &RunShared<'_>,
) -> Result<RunStats, LoadgenError> {
    let config = shared.config;
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let mut driver = Driver {
        config,
        stats: RunStats::default(),
        interval: new_histogram(),
        encoder: RequestEncoder::new(config.data_size_min, config.data_size_max),
        measure_from,
        stop_at: match config.stop {
            super::config::Stop::After(duration) => Some(measure_from + duration),
            super::config::Stop::Requests(_) => None,
        },
        budget_left: plan.requests_budget,
        batch_interval: plan
            .rate_ops_per_sec
            .map(|rate| Duration::from_secs_f64(config.pipeline as f64 / rate)),
        next_due: start,
        stopping: false,
        in_flight: 0,
        alive: conns.len(),
    };
    let mut ready: VecDeque<usize> = (0..conns.len()).collect();
    let mut last_publish = start;
    let mut completions: Vec<(u64, i32, u32)> =
        Vec::with_capacity(ring.params().cq_entries() as usize);
    let mut drain_deadline: Option<Instant> = None;
    // Connections whose multishot recv ended (ENOBUFS, or a spurious end)
    // and must be re-armed once the turn's buffers are back.
    let mut rearm: Vec<usize> = Vec::with_capacity(conns.len());
    for (index, conn) in conns.iter_mut().enumerate() {
        queue_recv(ring, conn, index)?;
    }
    loop {
        let now = Instant::now();
        if driver.stop_at.is_some_and(|stop_at| now >= stop_at)
            || shared.abort.load(Ordering::Relaxed)
        {
            driver.stopping = true;
        }
        let wait = driver.dispatch(ring, conns, &mut ready, now)?;
        if now.duration_since(last_publish) >= PUBLISH_INTERVAL {
            shared
                .live
                .publish(driver.stats.requests(), &mut driver.interval);
            last_publish = now;
        }
        debug_assert_eq!(
            driver.in_flight,
            conns.iter().filter(|conn| conn.awaiting()).count()
        );
        debug_assert_eq!(driver.alive, conns.iter().filter(|conn| conn.alive).count());
        if driver.in_flight == 0 && (driver.stopping || driver.alive == 0) {
            break;
        }
        if driver.stopping {
            let deadline = *drain_deadline.get_or_insert(now + DRAIN_TIMEOUT);
            if now >= deadline {
                // Shutting the sockets down completes every pending op.
                for conn in conns.iter_mut().filter(|c| c.awaiting()) {
                    // SAFETY: shutdown on a socket we own; no memory involved.
                    unsafe { libc::shutdown(conn.stream.as_raw_fd(), libc::SHUT_RDWR) };
                }
            }
        }
        // Wake on the first completion: measured, waiting for a share of
        // the busy connections instead saved nothing at pipeline 1 and cost
        // a third more CPU per request at pipeline 16 (connections sat idle
        // with their replies in).
        let wait = wait.min(WAIT_SLICE);
        let timespec = types::Timespec::from(wait);
        let args = types::SubmitArgs::new().timespec(&timespec);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(error) if matches!(error.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR)) => {
            }
            Err(source) => return Err(LoadgenError::Ring { source }),
        }
        let now = Instant::now();
        // Copy completions out first: handling one may queue new entries,
        // and the two queues can't be borrowed at once.
        completions.clear();
        completions.extend(
            ring.completion()
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
        );
        for &(user_data, result, flags) in &completions {
            let index = (user_data >> OP_BITS) as usize;
            let op = user_data & ((1 << OP_BITS) - 1);
            let conn = &mut conns[index];
            let idle = match op {
                OP_SEND => {
                    driver.on_send_failed(conn);
                    false
                }
                OP_RECV => {
                    assert!(conn.armed, "completion for a disarmed receive");
                    if !cqueue::more(flags) {
                        conn.armed = false;
                        if conn.alive {
                            rearm.push(index);
                        }
                    }
                    match cqueue::buffer_select(flags) {
                        Some(bid) => {
                            let len = usize::try_from(result).expect("data means result > 0");
                            let idle = driver.on_received(conn, buffers.bytes(bid, len), now);
                            buffers.push(bid);
                            idle
                        }
                        // The ring ran dry: re-armed below, nothing lost.
                        None if result == -libc::ENOBUFS => false,
                        None => {
                            // Closed (0) or failed (< 0).
                            driver.fail(conn);
                            false
                        }
                    }
                }
                _ => unreachable!("unknown op {op}"),
            };
            if idle {
                ready.push_back(index);
                if ready.len() >= SEND_FLUSH_CONNS {
                    // Don't let the server idle while we frame the rest of
                    // this turn's replies: its next requests leave now.
                    driver.dispatch(ring, conns, &mut ready, now)?;
                    ring.submit()
                        .map_err(|source| LoadgenError::Ring { source })?;
                }
            }
        }
        buffers.publish();
        for index in rearm.drain(..) {
            let conn = &mut conns[index];
            if conn.alive && !conn.armed {
                queue_recv(ring, conn, index)?;
            }
        }
    }
    shared
        .live
        .publish(driver.stats.requests(), &mut driver.interval);
    Ok(driver.stats)
}

impl Driver<'_> {
    /// Start batches on ready connections as the stop rule and the rate
    /// allow. Returns how long the loop may wait for completions.
    fn dispatch(
        &mut self,
        ring: &mut IoUring,
        conns: &mut [Conn],
        ready: &mut VecDeque<usize>,
        now: Instant,
    ) -> Result<Duration, LoadgenError> {
        while let Some(&index) = ready.front() {
            if self.stopping {
                return Ok(WAIT_SLICE);
            }
            if !conns[index].alive {
                // Failed (closed by the server) while waiting its turn.
                ready.pop_front();
                continue;
            }
            // The schedule first: a batch that isn't due yet consumes nothing.
            let batch_start = match self.batch_interval {
                None => now,
                Some(_) if now < self.next_due => return Ok(self.next_due - now),
                Some(interval) => {
                    let due = self.next_due;
                    self.next_due += interval;
                    due
                }
            };
            let recording = batch_start >= self.measure_from;
            let mut count = self.config.pipeline;
            if recording {
                if let Some(left) = self.budget_left {
                    if left == 0 {
                        self.stopping = true;
                        return Ok(WAIT_SLICE);
                    }
                    count = count.min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.budget_left = Some(left - count as u64);
                }
            }
            ready.pop_front();
            let conn = &mut conns[index];
            self.fill_batch(conn, count, batch_start, recording);
            if recording {
                self.stats.bytes_sent += conn.send_buf.len() as u64;
            }
            queue_send(ring, conn, index)?;
            self.in_flight += 1;
        }
        Ok(WAIT_SLICE)
    }

    /// Encode `count` commands into the connection's send buffer.
    fn fill_batch(&mut self, conn: &mut Conn, count: usize, batch_start: Instant, recording: bool) {
        assert!(count > 0 && count <= self.config.pipeline);
        assert!(conn.replied == conn.batch.len() && conn.recv_len == 0);
        let capacity = conn.send_buf.capacity();
        conn.send_buf.clear();
        conn.batch.clear();
        conn.replied = 0;
        conn.batch_start = batch_start;
        conn.recording = recording;
        let set_weight = u64::from(self.config.set_weight);
        let weights = set_weight + u64::from(self.config.get_weight);
        let value_len_min = self.config.data_size_min;
        let spread = (self.config.data_size_max - value_len_min) as u64;
        for _ in 0..count {
            let key_index = conn.keys.next_index(&mut conn.rng);
            if conn.rng.below(weights) < set_weight {
                let len = if self.encoder.value_len_varies() {
                    value_len_min + conn.rng.below(spread + 1) as usize
                } else {
                    value_len_min
                };
                self.encoder.set(&mut conn.send_buf, key_index, len);
                conn.batch.push(Command::Set);
            } else {
                self.encoder.get(&mut conn.send_buf, key_index);
                conn.batch.push(Command::Get);
            }
        }
        assert_eq!(
            conn.send_buf.capacity(),
            capacity,
            "the send buffer never grows"
        );
    }

    /// Sends complete silently (`IOSQE_CQE_SKIP_SUCCESS`): a send
    /// completion means it failed or came up short even with `MSG_WAITALL`,
    /// and the connection can't be trusted to be in sync any more.
    fn on_send_failed(&mut self, conn: &mut Conn) {
        self.fail(conn);
    }

    /// Frame the replies in `bytes` (one receive completion's data).
    /// Returns whether the connection's batch is complete and it is ready
    /// for the next.
    fn on_received(&mut self, conn: &mut Conn, bytes: &[u8], now: Instant) -> bool {
        assert!(!bytes.is_empty());
        if !conn.alive {
            return false;
        }
        if conn.replied == conn.batch.len() {
            // Replies to nothing we sent: the stream is out of sync.
            self.fail(conn);
            return false;
        }
        if conn.recording {
            self.stats.bytes_received += bytes.len() as u64;
        }
        let mut tally = ReplyTally::default();
        let framed = if conn.recv_len == 0 {
            // The usual case, a batch's replies arriving whole: frame them
            // where the kernel put them and keep only a cut reply's start.
            frame_replies(&conn.batch, &mut conn.replied, bytes, &mut tally).and_then(|consumed| {
                let rest = &bytes[consumed..];
                if rest.len() > conn.recv_buf.len() {
                    return Err(());
                }
                conn.recv_buf[..rest.len()].copy_from_slice(rest);
                conn.recv_len = rest.len();
                Ok(())
            })
        } else {
            let free = conn.recv_buf.len() - conn.recv_len;
            if bytes.len() > free {
                // More than the largest batch of replies.
                Err(())
            } else {
                conn.recv_buf[conn.recv_len..conn.recv_len + bytes.len()].copy_from_slice(bytes);
                conn.recv_len += bytes.len();
                frame_replies(
                    &conn.batch,
                    &mut conn.replied,
                    &conn.recv_buf[..conn.recv_len],
                    &mut tally,
                )
                .map(|consumed| {
                    conn.recv_buf.copy_within(consumed..conn.recv_len, 0);
                    conn.recv_len -= consumed;
                })
            }
        };
        if framed.is_err() {
            self.fail(conn);
            return false;
        }
        if conn.recording {
            // Every reply framed by this completion arrived at `now` for a
            // batch that started at `batch_start`: one latency, recorded
            // once per command with a count rather than once per reply.
            let latency_ns = now.saturating_duration_since(conn.batch_start).as_nanos() as u64;
            for (command, stats) in self.stats.commands.iter_mut().enumerate() {
                if tally.replies[command] > 0 {
                    stats.requests += tally.replies[command];
                    stats.errors += tally.errors[command];
                    stats
                        .latency_ns
                        .saturating_record_n(latency_ns, tally.replies[command]);
                }
            }
            self.interval
                .saturating_record_n(latency_ns, tally.replies.iter().sum());
        }
        if conn.replied < conn.batch.len() {
            if conn.recv_len == conn.recv_buf.len() {
                // One reply larger than the buffer: not something we sent for.
                self.fail(conn);
            }
            return false;
        }
        if conn.recv_len != 0 {
            // Replies to commands we never sent: the stream is out of sync.
            self.fail(conn);
            return false;
        }
        // Every reply is in, so the server had every byte of the batch: the
        // silent send is over and its buffer free for the next batch.
        self.in_flight -= 1;
        true
    }

    /// The connection broke (closed, reset, or out of sync): count what it
    /// loses, and shut it so its other queued operation completes too.
    fn fail(&mut self, conn: &mut Conn) {
        if conn.alive {
            if conn.awaiting() {
                self.in_flight -= 1;
            }
            conn.alive = false;
            self.alive -= 1;
            self.stats.connection_errors += 1;
            if conn.recording {
                self.stats.lost += (conn.batch.len() - conn.replied) as u64;
            }
            // SAFETY: shutdown on a socket we own; no memory involved.
            unsafe { libc::shutdown(conn.stream.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
}

/// Replies framed by one receive completion, per command.
#[derive(Default)]
struct ReplyTally {
    replies: [u64; Command::ALL.len()],
    errors: [u64; Command::ALL.len()],
}

/// Frame the replies at the start of `buf` to the batch's commands from
/// `*replied` on, advancing it; returns the bytes they took. `Err`: the
/// stream broke the protocol.
fn frame_replies(
    batch: &[Command],
    replied: &mut usize,
    buf: &[u8],
    tally: &mut ReplyTally,
) -> Result<usize, ()> {
    let mut consumed = 0;
    while *replied < batch.len() {
        match frame_reply(&buf[consumed..]) {
            Ok(Some(scanned)) => {
                let command = batch[*replied].index();
                tally.replies[command] += 1;
                tally.errors[command] += u64::from(scanned.is_error);
                consumed += scanned.len;
                *replied += 1;
            }
            Ok(None) => break,
            Err(_) => return Err(()),
        }
    }
    Ok(consumed)
}

/// Queue the connection's whole batch as one send. It completes silently
/// on success (no completion to reap, no wakeup); `MSG_WAITALL` makes the
/// kernel retry a short send itself. It is over once every reply has
/// arrived.
fn queue_send(ring: &mut IoUring, conn: &mut Conn, index: usize) -> Result<(), LoadgenError> {
    let entry = opcode::Send::new(
        fixed_file(index),
        conn.send_buf.as_ptr(),
        conn.send_buf.len() as u32,
    )
    .flags(libc::MSG_WAITALL)
    .build()
    .flags(squeue::Flags::SKIP_SUCCESS)
    .user_data(((index as u64) << OP_BITS) | OP_SEND);
    push(ring, &entry)
}

/// Arm the connection's multishot receive: it completes once per arrival
/// of bytes, into a provided buffer, until it ends (`!more`).
fn queue_recv(ring: &mut IoUring, conn: &mut Conn, index: usize) -> Result<(), LoadgenError> {
    assert!(!conn.armed && conn.alive);
    let entry = opcode::RecvMulti::new(fixed_file(index), RECV_BUFFER_GROUP)
        .build()
        .user_data(((index as u64) << OP_BITS) | OP_RECV);
    conn.armed = true;
    push(ring, &entry)
}

/// How many provided receive buffers a thread with `conn_count`
/// connections gets, and their size: one batch of replies per buffer where
/// it fits.
fn recv_buffer_shape(conn_count: usize, config: &Config) -> (u16, usize) {
    let batch_reply_bytes = config.pipeline * (config.data_size_max + COMMAND_OVERHEAD_BYTES);
    let size_bytes = batch_reply_bytes
        .clamp(RECV_BUFFER_BYTES_FLOOR, RECV_BUFFER_BYTES_CEILING)
        .next_multiple_of(RECV_BUFFER_BYTES_FLOOR)
        + RECV_BUFFER_STAGGER_BYTES;
    let fitting = RECV_BUFFERS_TOTAL_BYTES_MAX / size_bytes;
    let count_fitting = (1usize << fitting.ilog2()).max(RECV_BUFFER_COUNT_MIN);
    let count = conn_count
        .next_power_of_two()
        .clamp(RECV_BUFFER_COUNT_MIN, RECV_BUFFER_COUNT_MAX)
        .min(count_fitting);
    let count = u16::try_from(count).expect("bounded by RECV_BUFFER_COUNT_MAX");
    assert!(count.is_power_of_two());
    (count, size_bytes)
}

/// Connection `index`'s socket in the ring's registered file table (the
/// table holds the connections' sockets in order: see `prepare`).
fn fixed_file(index: usize) -> types::Fixed {
    types::Fixed(u32::try_from(index).expect("connections fit the file table"))
}

/// Queue `entry`, flushing the submission queue to the kernel when full.
fn push(ring: &mut IoUring, entry: &squeue::Entry) -> Result<(), LoadgenError> {
    loop {
        // SAFETY: a send points into its connection's `send_buf`, which
        // neither moves nor is touched until every reply to it has arrived
        // (or, for a failed connection, ever again: see `run_thread`); a
        // multishot recv points at no memory of ours but the provided-buffer
        // ring, which outlives the io_uring instance.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()
            .map_err(|source| LoadgenError::Ring { source })?;
    }
}

/// Set the socket's TCP congestion control (`TCP_CONGESTION`) to `name`.
fn set_congestion(stream: &TcpStream, name: &str) -> io::Result<()> {
    assert!(!name.is_empty() && name.len() <= CONGESTION_NAME_LEN_MAX);
    // SAFETY: the kernel reads `name.len()` bytes from `name` (it needs no
    // NUL: the length bounds the copy); the socket is ours.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pin the calling thread to `cpu`.
fn pin_to_cpu(cpu: usize) -> Result<(), LoadgenError> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET bounds-checks
    // against the set size; sched_setaffinity(0) targets the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(LoadgenError::Pin {
                cpu,
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// CPUs this process may run on (respects `taskset`), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as in `pin_to_cpu`; sched_getaffinity(0) reads our own mask.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::parse(args.iter().map(|s| s.to_string())).expect("valid flags")
    }

    #[test]
    fn receive_buffers_follow_connections_and_replies() {
        let small = config(&["--pipeline", "16", "--data-size", "32"]);
        // The client-cpu runs: 50 connections, 16 replies of 32 bytes.
        assert_eq!(recv_buffer_shape(50, &small), (64, 4096 + 64));
        assert_eq!(recv_buffer_shape(1, &small), (16, 4096 + 64));
        // Thousands of connections: capped by the total, ENOBUFS re-arms.
        let (count, size) = recv_buffer_shape(4096, &small);
        assert!(usize::from(count) * size <= RECV_BUFFERS_TOTAL_BYTES_MAX);
        assert_eq!(count, 1024);
        // Large values: the largest buffer, fewer of them.
        let large = config(&["--pipeline", "64", "--data-size", "100000"]);
        let (count, size) = recv_buffer_shape(50, &large);
        assert_eq!(size, RECV_BUFFER_BYTES_CEILING + RECV_BUFFER_STAGGER_BYTES);
        assert!(usize::from(count) * size <= RECV_BUFFERS_TOTAL_BYTES_MAX);
        assert!(usize::from(count) >= RECV_BUFFER_COUNT_MIN);
    }

    /// The socket's congestion control as the kernel reports it.
    fn congestion_of(stream: &TcpStream) -> String {
        let mut name = [0u8; CONGESTION_NAME_LEN_MAX + 1];
        let mut len = name.len() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `name`.
        let result = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                name.as_mut_ptr().cast(),
                &mut len,
            )
        };
        assert_eq!(result, 0, "{}", io::Error::last_os_error());
        let name = &name[..len as usize];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        String::from_utf8(name[..end].to_vec()).expect("an ASCII name")
    }

    #[test]
    fn congestion_control_is_set_or_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        // reno is built into every kernel and always allowed.
        set_congestion(&stream, "reno").expect("reno");
        assert_eq!(congestion_of(&stream), "reno");
        let error = set_congestion(&stream, "no_such_cc").expect_err("unknown");
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(congestion_of(&stream), "reno", "a refusal changes nothing");
    }
}
