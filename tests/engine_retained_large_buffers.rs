//! A process that keeps freed memory (`retain_freed_memory`, as the server
//! sets it) keeps it at every size: a buffer as large as a big store's
//! bottom segment comes from the heap, not from a mapping of its own, and
//! freeing it does not trim the heap. Either would make every merge of a
//! store of a gigabyte or more per core fault its whole output in afresh
//! (the sustained-ingest cliff in BENCHMARKS.md, "Seventh session").
//!
//! Without the test harness (`harness = false`): the allocator settings
//! apply to the heap of the process's main thread, which libtest would not
//! run the test on (its test threads already have heaps of their own).

/// Larger than the mmap threshold (1 GiB) and the trim threshold (~2 GiB)
/// the allocator used to be given. Only reserved, never touched, so the
/// test costs address space, not memory.
const BUFFER_BYTES: usize = 5 << 29;

fn heap_and_mapped_bytes() -> (usize, usize) {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    (info.arena, info.hblkhd)
}

fn main() {
    assert!(
        tessera_engine::retain_freed_memory(),
        "glibc on Linux takes the settings"
    );
    let (heap_before, mapped_before) = heap_and_mapped_bytes();
    // black_box: an allocation nothing uses may be optimised away.
    let buffer: Vec<u8> = std::hint::black_box(Vec::with_capacity(BUFFER_BYTES));
    let (heap_holding, mapped_holding) = heap_and_mapped_bytes();
    assert_eq!(
        mapped_holding, mapped_before,
        "a large buffer got a mapping of its own"
    );
    assert!(
        heap_holding >= heap_before + BUFFER_BYTES,
        "the heap did not grow by the buffer: {heap_before} -> {heap_holding}"
    );
    drop(buffer);
    let (heap_after, mapped_after) = heap_and_mapped_bytes();
    assert_eq!(mapped_after, mapped_before);
    assert_eq!(
        heap_after, heap_holding,
        "freeing the buffer trimmed the heap"
    );
    println!("engine_retained_large_buffers: ok");
}
