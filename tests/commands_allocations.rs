//! The request path does not allocate: after warm-up, handling pipelines of
//! GET and SET and committing them (applying the round's batch, stepping the
//! merger) performs no heap allocation at all.

mod common;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{encode, Client};
use tessera::net::handler::Handler;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const REQUESTS_PER_ROUND: usize = 64;
/// Consecutive whole rounds that must allocate nothing: the steady state.
const STEADY_ROUNDS: usize = 400;
/// Rounds within which the steady state must be reached. The pools grow to
/// the largest number of buffers that are live at once, and that depends on
/// how far each time-budgeted merge step gets, so on a loaded machine the
/// pools can take a few hundred rounds longer to reach it; they are bounded,
/// so it is always reached.
const ROUNDS_MAX: usize = 20 * STEADY_ROUNDS;
/// Keys the rounds cycle through: each round writes the next 64 of them, so
/// the store holds them all and its merges rewrite a base segment of this
/// many keys as well as the small new ones.
const KEYS: usize = 1024;

/// Whole rounds (the requests, then the commit that applies the round's
/// batch and steps the merger) of GETs and SETs allocate nothing once warm:
/// the batch, the segment it becomes (buffers and `Rc`), and every merge's
/// buffers, vectors and index come from the engine's pools.
#[test]
fn get_and_set_rounds_do_not_allocate_including_merges() {
    let mut c = Client::new();
    let pipelines: Vec<Vec<u8>> = (0..KEYS / REQUESTS_PER_ROUND)
        .map(|round| {
            let mut pipeline = Vec::new();
            for i in 0..REQUESTS_PER_ROUND {
                let key = format!("{{t}}key:{:04}", round * REQUESTS_PER_ROUND + i);
                pipeline.extend(encode(&[b"SET", key.as_bytes(), b"some value bytes"]));
                pipeline.extend(encode(&[b"GET", key.as_bytes()]));
            }
            pipeline
        })
        .collect();
    let mut out = Vec::with_capacity(1 << 20);
    let mut round = |c: &mut Client, index: usize| {
        let pipeline = &pipelines[index % pipelines.len()];
        out.clear();
        let before = allocations();
        let handled = c.shard.handle(&mut c.conn, pipeline, &mut out);
        c.shard.commit_round();
        let used = allocations() - before;
        assert_eq!(handled.consumed, pipeline.len());
        used
    };
    let mut clean_rounds = 0;
    let mut merges_at_clean_start = c.shard.keyspace_counters().merges_completed;
    let mut warm_up_allocations = 0;
    let mut index = 0;
    while clean_rounds < STEADY_ROUNDS {
        assert!(
            index < ROUNDS_MAX,
            "no {STEADY_ROUNDS} consecutive allocation-free rounds within {ROUNDS_MAX} \
             ({warm_up_allocations} allocations so far)"
        );
        let used = round(&mut c, index);
        index += 1;
        if used == 0 {
            clean_rounds += 1;
        } else {
            warm_up_allocations += used;
            clean_rounds = 0;
            merges_at_clean_start = c.shard.keyspace_counters().merges_completed;
        }
    }
    let merges = c.shard.keyspace_counters().merges_completed - merges_at_clean_start;
    assert!(
        merges >= 10,
        "only {merges} merges in the {STEADY_ROUNDS} allocation-free rounds"
    );
}
