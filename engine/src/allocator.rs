//! Keeping freed memory mapped, so the merger does not pay page faults for
//! every byte it writes.
//!
//! A merge writes its output into a new buffer and frees its inputs when it
//! swaps. Large buffers come from the allocator, and glibc's defaults give
//! big ones their own `mmap` (unmapped again on free), so every merge output
//! was written into fresh pages: one page fault, page allocation, zeroing
//! and cgroup charge per 4 KiB, and the inputs' pages handed back with
//! `MADV_DONTNEED` before the free (see `Segment::release_pages`: so that a
//! free never unmaps hundreds of resident megabytes inside a merge step). A
//! profile of a bulk ingest of 1 KiB values put half of the CPU in that
//! kernel work.
//!
//! [`retain_freed_memory`] makes a process keep freed memory instead:
//!
//! - `M_MMAP_THRESHOLD` at 1 GiB: every buffer below it comes from the
//!   heap, where freed space is coalesced and handed out again with its
//!   pages still mapped (a bigger one keeps its own mapping, and its pages
//!   are still released in chunks before it is freed);
//! - `M_TRIM_THRESHOLD` at its maximum: the heap's top is never given back;
//! - `M_ARENA_MAX` = 1: glibc's per-thread arenas cannot hold a buffer
//!   larger than 64 MiB (they fall back to `mmap`), so all threads share the
//!   main heap. Its lock is uncontended in practice: the stores allocate
//!   only when a merge starts or a batch size is first seen, never per
//!   request;
//! - and the stores stop releasing the pages of freed buffers below that
//!   size (the allocator would hand them out again, to be faulted back in
//!   at once).
//!
//! The cost is the usual one of a retaining allocator: the process's
//! resident memory stays at its peak (after a large `FLUSHALL`, or a merge
//! of the whole store, whose output and inputs coexist until the swap).
//! Each store's own accounting (`StoreStats::memory_used_bytes`, the quota)
//! is unchanged: it counts the buffers a store holds, not the allocator's
//! free space. It is a process-wide choice, so the engine never makes it on
//! its own: a server calls it first thing in `main` (the `tessera` binary
//! does), an embedder decides for its own process.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once [`retain_freed_memory`] succeeded; read when a segment retires.
static RETAINED: AtomicBool = AtomicBool::new(false);

/// Tunes the process's allocator to keep freed memory mapped for reuse (see
/// the module docs), and tells every store of the process to stop releasing
/// pages of buffers it frees. Call it once, at start-up, before threads and
/// stores are created. Returns false where the allocator is not glibc's or
/// refuses a setting (any it took stay): the stores then keep releasing.
pub fn retain_freed_memory() -> bool {
    if !tune_glibc() {
        return false;
    }
    RETAINED.store(true, Ordering::Relaxed);
    true
}

/// glibc's mmap threshold once [`retain_freed_memory`] set it: buffers up
/// to it come from the heap and stay mapped when freed.
const MMAP_THRESHOLD_BYTES: usize = 1 << 30;

/// Whether a freed buffer of `bytes` keeps its pages for the allocator to
/// reuse. A bigger one still gets its own `mmap`, unmapped on free: its
/// pages must be released in chunks first (`Segment::release_pages`), or the
/// free would zap a gigabyte of resident pages inside one merge step.
pub(crate) fn kept_on_free(bytes: usize) -> bool {
    RETAINED.load(Ordering::Relaxed) && bytes < MMAP_THRESHOLD_BYTES
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_glibc() -> bool {
    const _: () = assert!(MMAP_THRESHOLD_BYTES <= libc::c_int::MAX as usize);
    // SAFETY: mallopt only changes glibc's tuning parameters; it is called
    // before the threads that allocate concurrently exist (documented).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_glibc() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_buffers_below_the_mmap_threshold_keep_their_pages() {
        assert!(retain_freed_memory(), "glibc on Linux takes the settings");
        assert!(kept_on_free(1 << 20));
        assert!(kept_on_free(MMAP_THRESHOLD_BYTES - 1));
        // glibc still maps these on their own and unmaps them on free.
        assert!(!kept_on_free(MMAP_THRESHOLD_BYTES));
        assert!(!kept_on_free(4 << 30));
    }
}
