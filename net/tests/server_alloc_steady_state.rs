//! Steady state allocates nothing per request on a core's thread outside
//! glommio's own wake-up bookkeeping: the network loop reuses pooled
//! buffers, and so does the command layer on reads.
//!
//! The server runs in this process (the same `server::run` the binary runs,
//! one core) under a counting global allocator. Only the core thread counts:
//! the handler factory runs on it and marks it through a const-initialised
//! thread-local, so the client and main threads never count. Allocations
//! made while the loop is parked in glommio (`server::in_executor_wait`:
//! glommio allocates a `Source` per I/O operation and per preemption timer,
//! by design) are counted apart and reported, and bounded per park: how
//! many parks a request costs depends on scheduling (a reply's completion
//! landing before or after the loop parks; a descheduled client), so a bound
//! per request failed on a loaded machine while glommio's cost per park
//! stayed the same.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_net::ceiling::Ceiling;
use tessera_net::commands::Shard;
use tessera_net::config::Config;
use tessera_net::handler::Handler;
use tessera_net::server::{self, HandlerResult};

struct Counting;

thread_local! {
    static CORE_THREAD: Cell<bool> = const { Cell::new(false) };
}
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS_LOOP: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS_WAIT: AtomicU64 = AtomicU64::new(0);

fn count() {
    if COUNTING.load(Ordering::Relaxed) && CORE_THREAD.with(Cell::get) {
        if server::in_executor_wait() {
            ALLOCATIONS_WAIT.fetch_add(1, Ordering::Relaxed);
        } else {
            ALLOCATIONS_LOOP.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: forwards to the system allocator; counting does not touch the
// allocations themselves.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const WARM_UP_REQUESTS: usize = 5_000;
const MEASURED_REQUESTS: usize = 20_000;
/// glommio's allocations per park (its `Source`s for the eventfd read, the
/// read's buffer, the throughput preemption timer, the ring link when it
/// really sleeps, wakers): measured 5.6-6.4 on average per park, quiet or
/// with both CPUs saturated, while parks per request ranged from 0.03 to
/// 0.5 with the load; with slack.
const WAIT_ALLOCATIONS_PER_PARK_MAX: u64 = 8;

const SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$6\r\nkey:01\r\n$8\r\nvalue:01\r\n";
const GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$6\r\nkey:01\r\n";

struct Counts {
    in_loop: u64,
    in_wait: u64,
    /// Parks of the loop in glommio while counting.
    waits: u64,
}

impl Counts {
    fn assert_wait_allocations_bounded(&self) {
        assert!(
            self.in_wait <= WAIT_ALLOCATIONS_PER_PARK_MAX * self.waits,
            "{} allocations in {} parks",
            self.in_wait,
            self.waits
        );
    }
}

/// Starts one core on `port` with `make_handler`, sends `warm_up` then
/// `measured` requests one at a time (each `(request, expected reply)`
/// cycled), stops the server with SIGTERM, returns the counts.
fn measure<H, F>(port: u16, make_handler: F, requests: &[(&[u8], &[u8])]) -> Counts
where
    H: Handler + 'static,
    F: Fn(tessera_net::handler::ShardConfig) -> HandlerResult<H> + Send + Sync + 'static,
{
    let mut config = Config::defaults(1);
    config.port = port;
    config.memory_limit_bytes = 64 << 20;
    config.data_dir =
        std::env::temp_dir().join(format!("tessera-alloc-{port}-{}", std::process::id()));
    let server_config = config.clone();
    let (thread_sender, thread_receiver) = std::sync::mpsc::channel();
    let main = std::thread::spawn(move || {
        // SAFETY: returns the calling thread's id.
        thread_sender.send(unsafe { libc::pthread_self() }).unwrap();
        server::run(&server_config, move |shard_config| {
            CORE_THREAD.with(|core| core.set(true));
            let handler = make_handler(shard_config);
            async move { handler }
        })
    });
    let server_thread = thread_receiver.recv().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("server did not start: {error}"),
        }
    };
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = [0u8; 64];
    let mut exchange = |index: usize| {
        let (request, expected) = requests[index % requests.len()];
        stream.write_all(request).unwrap();
        stream.read_exact(&mut reply[..expected.len()]).unwrap();
        assert_eq!(&reply[..expected.len()], expected);
    };
    for index in 0..WARM_UP_REQUESTS {
        exchange(index);
    }
    ALLOCATIONS_LOOP.store(0, Ordering::SeqCst);
    ALLOCATIONS_WAIT.store(0, Ordering::SeqCst);
    let waits_before = server::executor_waits();
    COUNTING.store(true, Ordering::SeqCst);
    for index in 0..MEASURED_REQUESTS {
        exchange(index);
    }
    COUNTING.store(false, Ordering::SeqCst);
    let counts = Counts {
        in_loop: ALLOCATIONS_LOOP.load(Ordering::SeqCst),
        in_wait: ALLOCATIONS_WAIT.load(Ordering::SeqCst),
        waits: server::executor_waits() - waits_before,
    };

    // SAFETY: signals the thread blocked in sigtimedwait inside run().
    unsafe { libc::pthread_kill(server_thread, libc::SIGTERM) };
    main.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&config.data_dir);
    println!(
        "port {port}: {} allocations in the loop, {} in {} glommio waits, over {MEASURED_REQUESTS} requests",
        counts.in_loop, counts.in_wait, counts.waits
    );
    counts
}

#[test]
fn no_allocation_per_request_in_steady_state() {
    // The network loop alone (the ceiling responder does no work).
    let ceiling = measure(
        17250,
        |_| Ok(Ceiling),
        &[(SET, b"+OK\r\n"), (GET, b"+OK\r\n")],
    );
    assert_eq!(
        ceiling.in_loop, 0,
        "the network loop allocated in steady state"
    );
    ceiling.assert_wait_allocations_bounded();

    // The real command layer on reads.
    let shard = measure(
        17251,
        |config| Shard::new(config).map_err(|error| error.to_string()),
        &[(GET, b"$-1\r\n")],
    );
    assert_eq!(
        shard.in_loop, 0,
        "network loop + Shard allocated on GETs in steady state"
    );
    shard.assert_wait_allocations_bounded();

    // And on writes: every round's batch becomes a segment and the merger
    // runs between rounds, all from the engine's pools.
    let writes = measure(
        19252,
        |config| Shard::new(config).map_err(|error| error.to_string()),
        &[(SET, b"+OK\r\n"), (GET, b"$8\r\nvalue:01\r\n")],
    );
    assert_eq!(
        writes.in_loop, 0,
        "network loop + Shard allocated on SETs and GETs in steady state"
    );
    writes.assert_wait_allocations_bounded();
}
