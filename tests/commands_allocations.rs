//! The request path does not allocate: after warm-up, handling pipelines of
//! GET and SET performs no heap allocation at all (the round's engine batch
//! takes its buffers from the engine's pool).

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
const ROUNDS: usize = 200;

#[test]
fn get_and_set_do_not_allocate() {
    let mut c = Client::new();
    let mut pipeline = Vec::new();
    for i in 0..REQUESTS_PER_ROUND {
        let key = format!("{{t}}key:{}", i % 16);
        pipeline.extend(encode(&[b"SET", key.as_bytes(), b"some value bytes"]));
        pipeline.extend(encode(&[b"GET", key.as_bytes()]));
    }
    let mut out = Vec::with_capacity(1 << 20);
    let mut measure = |c: &mut Client| {
        out.clear();
        let before = allocations();
        let handled = c.shard.handle(&mut c.conn, &pipeline, &mut out);
        let used = allocations() - before;
        assert_eq!(handled.consumed, pipeline.len());
        c.shard.commit_round();
        used
    };
    for _ in 0..ROUNDS {
        measure(&mut c);
    }
    let mut total = 0;
    for _ in 0..ROUNDS {
        total += measure(&mut c);
    }
    assert_eq!(
        total,
        0,
        "allocations in {ROUNDS} rounds of {} requests",
        2 * REQUESTS_PER_ROUND
    );
}
