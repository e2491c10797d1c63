//! One core's network loop: a raw io_uring ring driven from inside the
//! core's glommio executor.
//!
//! Why not glommio's `TcpStream`: it does a `recv`/`send` syscall per call
//! and uses its ring only to wait for readiness, which measured at twice
//! Redis' CPU per request. Here one ring per core (SINGLE_ISSUER +
//! DEFER_TASKRUN) carries a multishot accept, one multishot receive per
//! connection into a provided-buffer ring, and one send per connection per
//! round, and a round costs one `io_uring_enter` plus one wake-up.
//!
//! How glommio and the ring meet: the ring signals completions on an
//! eventfd (`IORING_REGISTER_EVENTFD`; with DEFER_TASKRUN the kernel signals
//! it when completion work is queued for us). glommio 0.9 has no public way
//! to await an arbitrary fd's readiness (`Reactor::poll_read_ready` is
//! crate-private), so the loop awaits a glommio `BufferedFile::read_at` of
//! 8 bytes on a dup of the (blocking) eventfd: glommio submits an io_uring
//! read that the kernel arms on the eventfd's poll queue, and the executor
//! parks until it completes. Idle costs no CPU, glommio keeps scheduling
//! other tasks, timers and the handler's DMA writes meanwhile. The wait is
//! skipped while completions are already queued. Cost: glommio allocates its
//! per-operation `Source` for every wait; see BENCHMARKS.md.
//!
//! Known edge (Linux 6.13+): a DEFER_TASKRUN `io_uring_enter` runs at most
//! 20 deferred task-work items per pass (two passes per call) and keeps the
//! rest for the next call without signalling the eventfd again. The loop
//! keeps pumping while pumps yield completions, which nearly every task-work
//! item does (receives, sends, accepts each post one); a batch of 40 items
//! posting none while more wait would delay those until the next event.
//!
//! A round: reap every completion (accept, receive, send, timers), let the
//! handler parse and execute each touched connection's whole input (all
//! pipelined requests), `commit().await` once, then submit at most one send
//! per connection and wait. Replies are sent only after the commit, so in
//! sync mode none leaves before its write is fdatasynced. When the commit
//! fails (a disk error: the round's writes were taken back), the handler
//! rewrites each handled connection's replies of the round from where they
//! started in its output (`Conn::round_start`) before anything is sent.
//! While handling the round's connections in turn, the loop names each
//! input to `Handler::prefetch` `PREFETCH_AHEAD_CONNS` (3) connections
//! before handling it: a lookup's three dependent cache misses (hash slot,
//! record meta, key bytes) then load one stage per connection handled, in
//! the shadow of other connections' work, instead of stalling every GET in
//! turn (server CPU per request at pipeline 16 fell ~15 %; BENCHMARKS.md).
//! Before parking, the loop arms one io_uring timeout when the handler has
//! background work due (`Handler::idle_wake_after`: async-mode flushes,
//! merges), so an idle core still flushes within its interval.
//!
//! Closing a connection: `shutdown(2)` both directions (which ends the
//! multishot receive and fails a blocked send), wait until the kernel owns
//! none of its buffers, then `close(2)` and recycle the slab slot.

use std::os::fd::{FromRawFd, RawFd};
use std::sync::Arc;

use glommio::io::BufferedFile;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use super::bufring::{BufRing, RECV_BUFFER_GROUP};
use super::conn::{BufferPool, Conn, INPUT_BYTES_MAX, OUTPUT_PAUSE_BYTES};
use super::control::Control;
use super::error::ServerError;
use crate::handler::{Handler, PREFETCH_AHEAD_CONNS};

/// Submission queue entries per core ring (completions: twice that).
pub const RING_ENTRIES: u32 = 1024;
/// Connection buffers ready at start-up per core (three per connection).
pub const POOL_PREALLOCATED_BUFFERS: usize = 3 * 64;
/// Input handed to the handler per call; bounds the replies one call adds.
pub const HANDLE_WINDOW_BYTES: usize = 16 * 1024;
/// How long accepting pauses after EMFILE/ENFILE/ENOMEM before retrying.
pub const ACCEPT_RETRY_MS: u64 = 100;
/// How long a shutdown waits for clients to take their last replies.
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;

const REPLY_MAX_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";
const REPLY_SHUTTING_DOWN: &[u8] = b"-ERR server is shutting down\r\n";
const REPLY_INPUT_TOO_LARGE: &[u8] = b"-ERR Protocol error: request too large\r\n";

const ENTER_GETEVENTS: u32 = 1; // IORING_ENTER_GETEVENTS

/// What a completion belongs to: `op` in the top byte, the slab slot's
/// generation (24 bits) and index (32 bits) below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    AcceptRetry = 4,
    DrainDeadline = 5,
    Cancel = 6,
    /// The handler's idle wake-up (`Handler::idle_wake_after`).
    IdleWake = 7,
}

const GENERATION_MASK: u32 = (1 << 24) - 1;

fn token(op: Op, index: usize, generation: u32) -> u64 {
    assert!(index <= u32::MAX as usize);
    assert!(generation <= GENERATION_MASK);
    (op as u64) << 56 | u64::from(generation) << 32 | index as u64
}

fn untoken(user_data: u64) -> (Option<Op>, usize, u32) {
    let op = match user_data >> 56 {
        1 => Some(Op::Accept),
        2 => Some(Op::Recv),
        3 => Some(Op::Send),
        4 => Some(Op::AcceptRetry),
        5 => Some(Op::DrainDeadline),
        6 => Some(Op::Cancel),
        7 => Some(Op::IdleWake),
        _ => None,
    };
    let generation = ((user_data >> 32) as u32) & GENERATION_MASK;
    (op, (user_data & u64::from(u32::MAX)) as usize, generation)
}

thread_local! {
    static IN_EXECUTOR_WAIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Parks of every core's loop in this process (see [`executor_waits`]).
static EXECUTOR_WAITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many times the cores' loops in this process have parked in glommio.
/// glommio's bookkeeping allocates per park, and how
/// many parks a request costs depends on scheduling (whether its reply's
/// completion lands before or after the loop parks, whether the client
/// was descheduled between requests), so an allocation audit bounds
/// glommio's allocations per park, not per request.
pub fn executor_waits() -> u64 {
    EXECUTOR_WAITS.load(std::sync::atomic::Ordering::Relaxed)
}

/// True on a core's thread while its loop is parked in glommio waiting for
/// the eventfd. Lets an allocation audit tell the loop's own allocations
/// (there must be none per request) from glommio's per-wait bookkeeping.
pub fn in_executor_wait() -> bool {
    IN_EXECUTOR_WAIT.with(std::cell::Cell::get)
}

/// What one core needs to serve.
pub struct CoreParams {
    pub core: u16,
    /// A listening socket bound without SO_REUSEPORT.
    pub listener_fd: RawFd,
    pub max_clients: u32,
    pub control: Arc<Control>,
}

/// Build the ring (called on the core's own thread: SINGLE_ISSUER ties the
/// ring to its creator).
pub fn build_ring(wake_fd: RawFd) -> Result<(IoUring, BufRing), ServerError> {
    let uring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(RING_ENTRIES * 2)
        .build(RING_ENTRIES)
        .map_err(|source| ServerError::Ring {
            what: "io_uring_setup",
            source,
        })?;
    uring
        .submitter()
        .register_eventfd(wake_fd)
        .map_err(|source| ServerError::Ring {
            what: "register eventfd",
            source,
        })?;
    let bufs = BufRing::register(&uring).map_err(|source| ServerError::Ring {
        what: "register provided buffer ring",
        source,
    })?;
    Ok((uring, bufs))
}

struct Core<H: Handler> {
    core: u16,
    uring: IoUring,
    bufs: BufRing,
    conns: Slab<Conn<H::Conn>>,
    /// Slab indices touched this round, each once (`Conn::queued`).
    work: Vec<usize>,
    pool: BufferPool,
    listener_fd: RawFd,
    max_clients: usize,
    accept_armed: bool,
    accept_paused: bool,
    draining: bool,
    generation_next: u32,
    conn_id_next: u64,
    control: Arc<Control>,
    accept_retry: types::Timespec,
    drain_deadline: types::Timespec,
    accept_errors_logged: u32,
    /// The handler's idle wake-up: its timeout (read by the kernel when the
    /// entry is submitted, so it lives here), whether one is armed, and
    /// whether one fired since the last commit.
    idle_wake: types::Timespec,
    idle_wake_armed: bool,
    idle_wake_fired: bool,
}

/// Serve one core until shutdown completes. Runs inside the core's glommio
/// executor; returns after the handler's final commit.
pub async fn serve<H: Handler>(
    handler: &mut H,
    params: CoreParams,
    uring: IoUring,
    bufs: BufRing,
) -> Result<(), ServerError> {
    let control = params.control.clone();
    let params_core = params.core;
    let wake_fd = control.wake_fd(params.core);
    // SAFETY: dup returns a new descriptor the BufferedFile then owns.
    let dup_fd = unsafe { libc::dup(wake_fd) };
    if dup_fd < 0 {
        return Err(ServerError::Ring {
            what: "dup eventfd",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `dup_fd` is ours alone.
    let waker = unsafe { BufferedFile::from_raw_fd(dup_fd) };
    let max_clients = params.max_clients as usize;
    let mut core: Core<H> = Core {
        core: params.core,
        uring,
        bufs,
        conns: Slab::with_capacity(max_clients.min(4096)),
        work: Vec::with_capacity(max_clients + 1),
        pool: BufferPool::new(POOL_PREALLOCATED_BUFFERS),
        listener_fd: params.listener_fd,
        max_clients,
        accept_armed: false,
        accept_paused: false,
        draining: false,
        generation_next: 0,
        conn_id_next: 0,
        control,
        accept_retry: types::Timespec::new().nsec((ACCEPT_RETRY_MS * 1_000_000) as u32),
        drain_deadline: types::Timespec::new().sec(DRAIN_TIMEOUT_MS / 1000),
        accept_errors_logged: 0,
        idle_wake: types::Timespec::new(),
        idle_wake_armed: false,
        idle_wake_fired: false,
    };
    core.arm_accept();
    core.pump()?;
    loop {
        core.reap(handler);
        if !core.draining && core.control.state.shutdown_requested() {
            core.begin_drain();
        }
        let handled = core.handle_inputs(handler);
        let commit = handled || core.idle_wake_fired;
        if commit {
            core.idle_wake_fired = false;
            if let Err(error) = handler.commit().await {
                // Replies are still unsent: every connection of the round
                // hears that its writes were not applied.
                tracing::warn!(core = core.core, %error, "commit failed; round answered with errors");
                core.round_failed(handler, &error);
            }
        }
        core.flush(handler);
        core.pump()?;
        if commit {
            // The replies are submitted: background disk work no longer
            // holds them up.
            handler.maintain().await;
        }
        if core.draining && core.conns.is_empty() {
            break;
        }
        core.control.stats[usize::from(core.core)]
            .rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if core.uring.completion().is_empty() {
            EXECUTOR_WAITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if core.arm_idle_wake(handler) {
                core.pump()?;
            }
            IN_EXECUTOR_WAIT.with(|flag| flag.set(true));
            let woken = waker.read_at(0, 8).await;
            IN_EXECUTOR_WAIT.with(|flag| flag.set(false));
            if let Err(error) = woken {
                return Err(ServerError::Ring {
                    what: "wait for eventfd",
                    source: std::io::Error::other(error.to_string()),
                });
            }
            core.pump()?;
        } else {
            glommio::yield_if_needed().await;
        }
    }
    // Persist whatever the last rounds buffered before acknowledging.
    let persisted = match handler.commit().await {
        Ok(()) => handler.shutdown().await,
        Err(error) => Err(error),
    };
    waker.close().await.ok();
    persisted.map_err(|error| ServerError::Executor {
        core: params_core,
        reason: format!("persisting at shutdown failed: {error}"),
    })
}

impl<H: Handler> Core<H> {
    /// Submit queued entries and run deferred completion work, without
    /// waiting.
    fn pump(&mut self) -> Result<(), ServerError> {
        loop {
            let pending = self.uring.submission().len() as u32;
            // SAFETY: no argument struct is passed.
            let result = unsafe {
                self.uring
                    .submitter()
                    .enter::<libc::sigset_t>(pending, 0, ENTER_GETEVENTS, None)
            };
            match result {
                Ok(_) => return Ok(()),
                Err(error) if error.raw_os_error() == Some(libc::EINTR) => continue,
                // The completion queue is full: the caller reaps, then we
                // submit the rest on the next pump.
                Err(error) if error.raw_os_error() == Some(libc::EBUSY) => return Ok(()),
                Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => return Ok(()),
                Err(source) => {
                    return Err(ServerError::Ring {
                        what: "io_uring_enter",
                        source,
                    })
                }
            }
        }
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points at (connection buffers,
            // timespecs in `self`) stays alive and unmoved until its
            // completion is reaped.
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Full: hand the batch to the kernel now and retry.
            let pending = self.uring.submission().len() as u32;
            // SAFETY: no argument struct is passed.
            let result = unsafe {
                self.uring
                    .submitter()
                    .enter::<libc::sigset_t>(pending, 0, 0, None)
            };
            if let Err(error) = result {
                tracing::warn!(core = self.core, %error, "io_uring_enter while submission queue full");
            }
        }
    }

    fn arm_accept(&mut self) {
        assert!(!self.accept_armed);
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener_fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token(Op::Accept, 0, 0));
        self.push(entry);
        self.accept_armed = true;
    }

    fn arm_recv(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        assert!(!conn.recv_armed && !conn.closing);
        let entry = opcode::RecvMulti::new(types::Fd(conn.fd), RECV_BUFFER_GROUP)
            .build()
            .user_data(token(Op::Recv, index, conn.generation));
        conn.recv_armed = true;
        self.push(entry);
    }

    fn submit_send(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        assert!(!conn.send_in_flight);
        assert!(conn.sent < conn.sending.len());
        let remaining = &conn.sending[conn.sent..];
        let entry = opcode::Send::new(
            types::Fd(conn.fd),
            remaining.as_ptr(),
            remaining.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(token(Op::Send, index, conn.generation));
        conn.send_in_flight = true;
        self.push(entry);
    }

    fn enqueue(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        if !conn.queued {
            conn.queued = true;
            assert!(
                self.work.len() < self.work.capacity(),
                "work list sized for max clients"
            );
            self.work.push(index);
        }
    }

    /// Take every completion the kernel has posted.
    fn reap(&mut self, handler: &mut H) {
        loop {
            // Copy out in small batches: the completion queue borrows the
            // ring, and handling a completion pushes submissions.
            let mut batch = [(0u64, 0i32, 0u32); 64];
            let mut count = 0;
            {
                let mut completions = self.uring.completion();
                completions.sync();
                for (slot, cqe) in batch.iter_mut().zip(&mut completions) {
                    *slot = (cqe.user_data(), cqe.result(), cqe.flags());
                    count += 1;
                }
            }
            if count == 0 {
                break;
            }
            for &(user_data, result, flags) in &batch[..count] {
                self.complete(handler, user_data, result, flags);
            }
            self.bufs.publish();
        }
    }

    fn complete(&mut self, handler: &mut H, user_data: u64, result: i32, flags: u32) {
        let (op, index, generation) = untoken(user_data);
        match op {
            Some(Op::Accept) => self.accepted(handler, result, flags),
            Some(Op::Recv) => self.received(index, generation, result, flags),
            Some(Op::Send) => self.sent(index, generation, result),
            Some(Op::AcceptRetry) => {
                self.accept_paused = false;
            }
            Some(Op::DrainDeadline) => {
                tracing::warn!(
                    core = self.core,
                    connections = self.conns.len(),
                    "drain deadline passed; closing remaining connections"
                );
                let indices: Vec<usize> = self.conns.iter().map(|(index, _)| index).collect();
                for index in indices {
                    self.begin_close(index);
                    self.enqueue(index);
                }
            }
            Some(Op::Cancel) => {}
            Some(Op::IdleWake) => {
                self.idle_wake_armed = false;
                self.idle_wake_fired = true;
            }
            None => panic!("completion with unknown user_data {user_data:#x}"),
        }
    }

    fn accepted(&mut self, handler: &mut H, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if result < 0 {
            let errno = -result;
            if errno == libc::ECANCELED {
                return;
            }
            if matches!(
                errno,
                libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS
            ) {
                // Retrying at once would fail at once; pause and let
                // connections close.
                self.accept_paused = true;
                let entry = opcode::Timeout::new(&self.accept_retry)
                    .build()
                    .user_data(token(Op::AcceptRetry, 0, 0));
                self.push(entry);
            }
            if self.accept_errors_logged < 100 {
                self.accept_errors_logged += 1;
                tracing::warn!(
                    core = self.core,
                    error = %std::io::Error::from_raw_os_error(errno),
                    "accept failed"
                );
            }
            return;
        }
        let fd = result;
        let stats = &self.control.stats[usize::from(self.core)];
        if self.draining || self.conns.len() >= self.max_clients {
            let reply = if self.draining {
                REPLY_SHUTTING_DOWN
            } else {
                REPLY_MAX_CLIENTS
            };
            // Best effort, non-blocking: the reply fits any socket buffer.
            // SAFETY: valid fd and buffer; the fd is closed right after.
            unsafe {
                libc::send(
                    fd,
                    reply.as_ptr().cast(),
                    reply.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                );
                libc::close(fd);
            }
            stats
                .rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        stats
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let one: libc::c_int = 1;
        // SAFETY: valid fd, option value is a live c_int. Failure only costs
        // latency (Nagle), so it is not fatal.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let conn_id = u64::from(self.core) << 48 | self.conn_id_next;
        self.conn_id_next += 1;
        let generation = self.generation_next;
        self.generation_next = (self.generation_next + 1) & GENERATION_MASK;
        let state = handler.open(conn_id);
        let conn = Conn::new(fd, generation, state, &mut self.pool);
        let index = self.conns.insert(conn);
        self.arm_recv(index);
    }

    fn lookup(&self, index: usize, generation: u32) -> bool {
        self.conns
            .get(index)
            .is_some_and(|conn| conn.generation == generation)
    }

    fn received(&mut self, index: usize, generation: u32, result: i32, flags: u32) {
        let buffer = cqueue::buffer_select(flags);
        // Every live connection's receive completes before its slot is
        // freed, so a stale completion is a bug.
        assert!(
            self.lookup(index, generation),
            "receive completion for a freed connection"
        );
        let more = cqueue::more(flags);
        let conn = &mut self.conns[index];
        if !more {
            conn.recv_armed = false;
        }
        if result > 0 {
            let bid = buffer.expect("a successful multishot receive names its buffer");
            let bytes = self.bufs.bytes(bid, result as usize);
            if conn.close_after_send || conn.closing {
                // Input after QUIT or an error is dropped.
            } else if conn.input.len() + bytes.len() > INPUT_BYTES_MAX {
                conn.input.clear();
                conn.output.extend_from_slice(REPLY_INPUT_TOO_LARGE);
                conn.close_after_send = true;
            } else {
                append_capped(&mut conn.input, bytes);
            }
            self.bufs.push(bid);
        } else {
            if let Some(bid) = buffer {
                self.bufs.push(bid);
            }
            match -result {
                0 => conn.close_after_send = true, // peer EOF: answer what came, then close
                libc::ENOBUFS => {}                // ring ran dry: re-armed in flush
                libc::ECANCELED => {}
                _ => {
                    // ECONNRESET and friends: nobody is left to answer.
                    self.begin_close(index);
                }
            }
        }
        self.enqueue(index);
    }

    fn sent(&mut self, index: usize, generation: u32, result: i32) {
        assert!(
            self.lookup(index, generation),
            "send completion for a freed connection"
        );
        let conn = &mut self.conns[index];
        assert!(conn.send_in_flight);
        conn.send_in_flight = false;
        if result > 0 && !conn.closing {
            conn.sent += result as usize;
            assert!(conn.sent <= conn.sending.len());
            if conn.sent == conn.sending.len() {
                conn.sending.clear();
                conn.sent = 0;
            }
        } else if result <= 0 {
            self.begin_close(index);
        }
        self.enqueue(index);
    }

    /// Run the handler over each touched connection's input. True if any
    /// request was handled (the round then commits).
    fn handle_inputs(&mut self, handler: &mut H) -> bool {
        let mut handled_any = false;
        // The handler sees each input PREFETCH_AHEAD_CONNS connections before
        // it handles it (see `Handler::prefetch`).
        let mut ahead = 0;
        for _ in 0..PREFETCH_AHEAD_CONNS {
            self.prefetch_next(handler, &mut ahead);
        }
        for position in 0..self.work.len() {
            let conn = &mut self.conns[self.work[position]];
            conn.paused = false;
            if !has_input(conn) {
                continue;
            }
            self.prefetch_next(handler, &mut ahead);
            let conn = &mut self.conns[self.work[position]];
            conn.round_start = Some(conn.output.len());
            handled_any |= handle_input(handler, conn);
        }
        handled_any
    }

    /// Names the next connection of the work list with input to handle,
    /// from position `ahead` on, to `Handler::prefetch`; `None` past the end.
    fn prefetch_next(&self, handler: &mut H, ahead: &mut usize) {
        while let Some(&index) = self.work.get(*ahead) {
            *ahead += 1;
            let conn = &self.conns[index];
            if has_input(conn) {
                let window = conn.input.len().min(HANDLE_WINDOW_BYTES);
                handler.prefetch(Some((&conn.state, &conn.input[..window])));
                return;
            }
        }
        handler.prefetch(None);
    }

    /// The round's commit failed: each connection handled this round gets
    /// its round's replies rewritten by the handler.
    fn round_failed(&mut self, handler: &mut H, error: &H::CommitError) {
        for &index in &self.work {
            let conn = &mut self.conns[index];
            if let Some(round_start) = conn.round_start {
                handler.round_failed(&mut conn.state, &mut conn.output, round_start, error);
            }
        }
    }

    /// Before parking: if the handler has background work waiting (an
    /// async flush, a merge), arm one timeout so an idle core still does it.
    /// True if a timeout was queued (the caller submits it).
    fn arm_idle_wake(&mut self, handler: &H) -> bool {
        if self.idle_wake_armed || self.idle_wake_fired {
            return false;
        }
        let Some(after) = handler.idle_wake_after() else {
            return false;
        };
        self.idle_wake = types::Timespec::from(after);
        let entry = opcode::Timeout::new(&self.idle_wake)
            .build()
            .user_data(token(Op::IdleWake, 0, 0));
        self.push(entry);
        self.idle_wake_armed = true;
        true
    }

    /// Send, re-arm and close what the round left to do.
    fn flush(&mut self, handler: &mut H) {
        let mut position = 0;
        while position < self.work.len() {
            let index = self.work[position];
            position += 1;
            self.conns[index].queued = false;
            self.conns[index].round_start = None;
            self.flush_one(handler, index);
        }
        self.work.clear();
        if !self.accept_armed && !self.accept_paused && !self.draining {
            self.arm_accept();
        }
    }

    fn flush_one(&mut self, handler: &mut H, index: usize) {
        let conn = &mut self.conns[index];
        if !conn.closing {
            if !conn.send_in_flight {
                if !conn.sending.is_empty() {
                    // Short send: the kernel took part; send the rest first.
                    self.submit_send(index);
                } else if !conn.output.is_empty() {
                    std::mem::swap(&mut conn.output, &mut conn.sending);
                    self.submit_send(index);
                }
            }
            let conn = &mut self.conns[index];
            let drained = !conn.send_in_flight && conn.output.is_empty() && conn.sending.is_empty();
            // A paused connection still has received requests to answer
            // (a shutdown finishes them first).
            if conn.close_after_send && drained && !conn.paused {
                self.begin_close(index);
            } else if !conn.recv_armed && !conn.close_after_send {
                self.arm_recv(index);
            }
        }
        let conn = &self.conns[index];
        if conn.closing && !conn.recv_armed && !conn.send_in_flight {
            let conn = self.conns.remove(index);
            let fd = conn.fd;
            let state = conn.release(&mut self.pool);
            handler.close(state);
            // SAFETY: the kernel holds no operation on this fd any more.
            unsafe { libc::close(fd) };
        }
    }

    /// Start closing: no more input, no more output.
    fn begin_close(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        if conn.closing {
            return;
        }
        conn.closing = true;
        // SAFETY: valid fd. Ends the multishot receive (it completes with 0)
        // and fails a blocked send, so both operations finish promptly.
        unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
        if conn.recv_armed {
            let target = token(Op::Recv, index, conn.generation);
            let entry = opcode::AsyncCancel::new(target)
                .build()
                .user_data(token(Op::Cancel, 0, 0));
            self.push(entry);
        }
    }

    /// Stop accepting; answer what has arrived, then close every connection.
    fn begin_drain(&mut self) {
        self.draining = true;
        if self.accept_armed {
            let entry = opcode::AsyncCancel::new(token(Op::Accept, 0, 0))
                .build()
                .user_data(token(Op::Cancel, 0, 0));
            self.push(entry);
        }
        let entry = opcode::Timeout::new(&self.drain_deadline)
            .build()
            .user_data(token(Op::DrainDeadline, 0, 0));
        self.push(entry);
        let indices: Vec<usize> = self.conns.iter().map(|(index, _)| index).collect();
        for index in indices {
            self.conns[index].close_after_send = true;
            self.enqueue(index);
        }
        tracing::info!(core = self.core, connections = self.conns.len(), "draining");
    }
}

/// Feeds one connection's input to the handler a window at a time, so the
/// replies a round produces for one connection stay near
/// `OUTPUT_PAUSE_BYTES` however deep the client pipelines (a window of GETs
/// of large values is the most one call can add past it). True if anything
/// was consumed or the connection is to be closed.
/// Whether `handle_inputs` hands this connection's input to the handler.
fn has_input<S>(conn: &Conn<S>) -> bool {
    !conn.closing && !conn.input.is_empty()
}

fn handle_input<H: Handler>(handler: &mut H, conn: &mut Conn<H::Conn>) -> bool {
    let mut start = 0;
    let mut progressed = false;
    while start < conn.input.len() {
        if conn.output.len() >= OUTPUT_PAUSE_BYTES {
            // Resumed when its send completes (that enqueues it again).
            conn.paused = true;
            break;
        }
        let rest = &conn.input[start..];
        let window = rest.len().min(HANDLE_WINDOW_BYTES);
        let mut handled = handler.handle(&mut conn.state, &rest[..window], &mut conn.output);
        if handled.consumed == 0 && !handled.close && window < rest.len() {
            // One request longer than the window: give it everything.
            handled = handler.handle(&mut conn.state, rest, &mut conn.output);
        }
        assert!(
            handled.consumed <= rest.len(),
            "handler consumed more than it was given"
        );
        if handled.close {
            conn.input.clear();
            conn.close_after_send = true;
            return true;
        }
        if handled.consumed == 0 {
            break; // The rest is an incomplete request.
        }
        start += handled.consumed;
        progressed = true;
    }
    // One move of the unconsumed tail per round, not one per window.
    conn.input.drain(..start);
    progressed
}

/// Appends to a connection's input, growing by doubling but never past
/// `INPUT_BYTES_MAX`, so a maximal request costs at most the cap, not the
/// next power of two above it.
fn append_capped(input: &mut Vec<u8>, bytes: &[u8]) {
    let needed = input.len() + bytes.len();
    assert!(needed <= INPUT_BYTES_MAX);
    if needed > input.capacity() {
        let target = (input.capacity() * 2).max(needed).min(INPUT_BYTES_MAX);
        input.reserve_exact(target - input.len());
    }
    input.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceiling::Ceiling;

    #[test]
    fn tokens_round_trip() {
        for (op, index, generation) in [
            (Op::Accept, 0, 0),
            (Op::Recv, 7, 3),
            (Op::Send, u32::MAX as usize, GENERATION_MASK),
            (Op::Cancel, 1, 1),
        ] {
            assert_eq!(
                untoken(token(op, index, generation)),
                (Some(op), index, generation)
            );
        }
        assert_eq!(untoken(0).0, None);
    }

    fn conn_with(input: &[u8], pool: &mut BufferPool) -> Conn<()> {
        let mut conn = Conn::new(-1, 0, (), pool);
        conn.input.extend_from_slice(input);
        conn
    }

    #[test]
    fn input_is_handled_a_window_at_a_time() {
        let mut pool = BufferPool::new(0);
        let request = b"*1\r\n$4\r\nPING\r\n";
        let count = 3 * HANDLE_WINDOW_BYTES / request.len();
        let mut input = request.repeat(count);
        input.extend_from_slice(b"*1\r\n$4\r\nPI"); // incomplete tail stays
        let mut conn = conn_with(&input, &mut pool);
        assert!(handle_input(&mut Ceiling, &mut conn));
        assert_eq!(conn.output.len(), count * b"+OK\r\n".len());
        assert_eq!(conn.input, b"*1\r\n$4\r\nPI");
        assert!(!conn.paused && !conn.close_after_send);
    }

    #[test]
    fn a_request_longer_than_the_window_is_handled_whole() {
        let mut pool = BufferPool::new(0);
        let value = vec![b'v'; 3 * HANDLE_WINDOW_BYTES];
        let mut input = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", value.len()).into_bytes();
        input.extend_from_slice(&value);
        input.extend_from_slice(b"\r\n");
        let mut conn = conn_with(&input, &mut pool);
        assert!(handle_input(&mut Ceiling, &mut conn));
        assert_eq!(conn.output, b"+OK\r\n");
        assert!(conn.input.is_empty());
    }

    #[test]
    fn output_over_the_pause_threshold_stops_handling() {
        let mut pool = BufferPool::new(0);
        let mut conn = conn_with(b"PING\r\n", &mut pool);
        conn.output.resize(OUTPUT_PAUSE_BYTES, b'x');
        assert!(!handle_input(&mut Ceiling, &mut conn));
        assert!(conn.paused);
        assert_eq!(conn.input, b"PING\r\n", "kept for when the output drains");
    }

    #[test]
    fn a_protocol_error_closes_after_the_reply() {
        let mut pool = BufferPool::new(0);
        let mut conn = conn_with(b"PING\r\n*x\r\nPING\r\n", &mut pool);
        assert!(handle_input(&mut Ceiling, &mut conn));
        assert!(conn.close_after_send && conn.input.is_empty());
        assert!(conn.output.starts_with(b"+OK\r\n-ERR Protocol error"));
    }

    #[test]
    fn input_growth_stops_at_the_cap() {
        let mut input = Vec::with_capacity(8);
        append_capped(&mut input, b"0123456789");
        assert_eq!(input, b"0123456789");
        assert!(input.capacity() >= 10);
        let mut near_cap = vec![0u8; INPUT_BYTES_MAX / 2 + 1];
        append_capped(&mut near_cap, &[1; 4096]);
        assert_eq!(
            near_cap.capacity(),
            INPUT_BYTES_MAX,
            "doubling clamped to the cap"
        );
    }
}
