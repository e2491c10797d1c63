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
//! - `M_MMAP_THRESHOLD` off (`-1`, no limit): every buffer, however large,
//!   comes from the heap, where freed space is coalesced and handed out
//!   again with its pages still mapped;
//! - `M_TRIM_THRESHOLD` off (`-1`): the heap's top is never given back;
//! - `M_ARENA_MAX` = 1: glibc's per-thread arenas cannot hold a buffer
//!   larger than 64 MiB (they fall back to `mmap`), so all threads share the
//!   main heap. Its lock is uncontended in practice: the stores allocate
//!   only when a merge starts or a batch size is first seen, never per
//!   request;
//! - and the stores stop releasing the pages of the buffers they free (the
//!   allocator would hand them out again, to be faulted back in at once).
//!
//! Both limits used to be finite: 1 GiB for the mmap threshold and
//! `c_int::MAX` (~2 GiB, the largest number `mallopt` takes) for trimming.
//! A store of 1 GiB or more per core then fell off a cliff in a sustained
//! ingest: its bottom merges' outputs got mappings of their own, fresh
//! pages every time, and once more than ~2 GiB lay free at the heap's top
//! it was trimmed, so the next merge faulted it all in again. Page faults took
//! about half the CPU of a 2 GiB one-core ingest, and at the benchmark's
//! 1 GiB the in-memory ingest of 1 KiB values ran at a median 0.86 GB/s
//! against 1.83 with no limits, the async ingest on both cores at 1.10
//! against 1.77 (BENCHMARKS.md, "Seventh session").
//!
//! Retaining stops the merger from faulting in the same memory over and
//! over, but not from faulting in memory the process never had: while a
//! store grows to a size it has not held before, every merge output bigger
//! than any free hole comes from the top of the heap, fresh. On a VM whose
//! host backs guest pages lazily (this project's benchmark machine reports
//! freed pages to its host), one such first touch takes up to ~0.5 ms, and
//! no merge step budget can split a single fault: in the engine benchmark
//! all the merge steps that overran their budget with page faults were
//! writing fresh pages from the heap's top (BENCHMARKS.md, Engine, fourth
//! session). [`prefault_retained_memory`] takes that cost at start-up
//! instead: it grows the heap by the memory the stores are expected to reach
//! and faults every page of it in, then frees it; retained, those pages are
//! what the allocator hands out before it grows the heap again. It is
//! process-wide, like the heap: the per-core stores share one heap (see
//! `M_ARENA_MAX` above), so a store's own prefault would be handed to the
//! next store's prefault, and only the largest would count.
//!
//! The cost is the usual one of a retaining allocator: the process's
//! resident memory stays at its peak (after a large `FLUSHALL`, or a merge
//! of the whole store, whose output and inputs coexist until the swap).
//! Each store's own accounting (`StoreStats::memory_used_bytes`, the quota)
//! is unchanged: it counts the buffers a store holds, not the allocator's
//! free space. It is a process-wide choice, so the engine never makes it on
//! its own: a server calls it first thing in `main` (the `tessera` binary
//! does), an embedder decides for its own process.

use crate::Error;
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

/// What `mallopt` takes as "no limit" for the mmap and trim thresholds.
const MALLOPT_UNLIMITED: libc::c_int = -1;

/// Whether freed buffers keep their pages for the allocator to reuse: true
/// once [`retain_freed_memory`] took, whatever their size. Otherwise a
/// large buffer's pages must be released in chunks before it is freed
/// (`Segment::release_pages`), or the free would zap hundreds of megabytes
/// of resident pages inside one merge step.
pub(crate) fn freed_memory_kept() -> bool {
    RETAINED.load(Ordering::Relaxed)
}

/// Most bytes [`prefault_retained_memory`] takes: a bound on the start-up
/// work, since every page is faulted in before the caller goes on (~1-3 s
/// per GiB on the development VM). A store growing beyond it faults the
/// rest in as it grows, and keeps it from then on.
pub const PREFAULT_BYTES_MAX: usize = 1 << 30;

/// The heap is grown by allocations of at most this size, each faulted in
/// before the next is taken. Freed together, they coalesce into one free
/// region, so the size is no limit on the buffers it can serve.
const PREFAULT_CHUNK_BYTES: usize = 64 << 20;

/// Bytes between two writes when faulting pages in by hand.
const PAGE_BYTES: usize = 4096;

/// Grows the process's heap by `bytes` with every page faulted in, and frees
/// it again for the stores' buffers to reuse (see the module docs). Call it
/// once at start-up, after [`retain_freed_memory`] and before the stores
/// fill, with about the memory they are expected to reach; it takes ~1-3 s
/// per GiB on a VM whose host backs pages lazily. Returns `Ok(false)`, having
/// done nothing, when freed memory is not retained (the pages would go back
/// to the kernel on free), and an error for more than
/// [`PREFAULT_BYTES_MAX`]. The pages show in the process's resident memory
/// from then on, never in a store's `memory_used_bytes`.
///
/// Call it on the main thread, like [`retain_freed_memory`]: it grows the
/// heap of the calling thread, and a thread that allocated before
/// `retain_freed_memory` ran may have a glibc heap of its own that later
/// threads do not share (a test harness's test threads do).
pub fn prefault_retained_memory(bytes: usize) -> Result<bool, Error> {
    if bytes > PREFAULT_BYTES_MAX {
        return Err(Error::InvalidConfig {
            field: "prefault_bytes",
            value: bytes as u64,
            min: 0,
            max: PREFAULT_BYTES_MAX as u64,
        });
    }
    if !RETAINED.load(Ordering::Relaxed) {
        return Ok(false);
    }
    // All chunks are held until the last is faulted in, so each comes from
    // the top of the heap instead of reusing the one freed before it.
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(bytes.div_ceil(PREFAULT_CHUNK_BYTES));
    let mut left = bytes;
    while left > 0 {
        let len = left.min(PREFAULT_CHUNK_BYTES);
        let mut chunk = Vec::<u8>::with_capacity(len);
        fault_in(chunk.spare_capacity_mut());
        chunks.push(chunk);
        left -= len;
    }
    assert_eq!(chunks.len(), bytes.div_ceil(PREFAULT_CHUNK_BYTES));
    // Freed, the chunks coalesce with each other and the heap's top: one
    // free region of resident pages, never trimmed.
    drop(chunks);
    Ok(true)
}

/// Faults in every page of `buffer` for writing.
fn fault_in(buffer: &mut [std::mem::MaybeUninit<u8>]) {
    if !populate(buffer) {
        touch_each_page(buffer);
    }
}

/// Faults in `buffer`'s pages in one call instead of a trap per page; false
/// where the kernel refuses (before Linux 5.14), having done nothing.
fn populate(buffer: &mut [std::mem::MaybeUninit<u8>]) -> bool {
    #[cfg(target_os = "linux")]
    {
        let start = (buffer.as_ptr() as usize).next_multiple_of(PAGE_BYTES);
        let end = (buffer.as_ptr() as usize + buffer.len()) / PAGE_BYTES * PAGE_BYTES;
        if end > start {
            // SAFETY: the page-aligned range lies inside `buffer`, which we
            // borrow mutably; populating faults its pages in and keeps
            // their contents.
            let result = unsafe {
                libc::madvise(
                    start as *mut libc::c_void,
                    end - start,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if result != 0 {
                return false;
            }
        }
        // The partial pages at both ends, outside the aligned range.
        if let Some(first) = buffer.first_mut() {
            first.write(0);
        }
        if let Some(last) = buffer.last_mut() {
            last.write(0);
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = buffer;
        false
    }
}

fn touch_each_page(buffer: &mut [std::mem::MaybeUninit<u8>]) {
    let start = buffer.as_ptr() as usize;
    // The first byte of every page the buffer reaches into.
    let mut at = 0;
    while at < buffer.len() {
        // Volatile: the write exists only for its fault; nothing reads it.
        // SAFETY: `at` is inside `buffer`, which we borrow mutably.
        unsafe { std::ptr::write_volatile(buffer[at].as_mut_ptr(), 0) };
        at = (start + at + 1).next_multiple_of(PAGE_BYTES) - start;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_glibc() -> bool {
    // SAFETY: mallopt only changes glibc's tuning parameters; it is called
    // before the threads that allocate concurrently exist (documented).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MALLOPT_UNLIMITED) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOPT_UNLIMITED) == 1
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
    fn prefault_takes_at_most_its_limit() {
        assert!(retain_freed_memory());
        assert_eq!(
            prefault_retained_memory(PREFAULT_BYTES_MAX + 1),
            Err(Error::InvalidConfig {
                field: "prefault_bytes",
                value: PREFAULT_BYTES_MAX as u64 + 1,
                min: 0,
                max: PREFAULT_BYTES_MAX as u64,
            })
        );
        // A size that is not a whole number of chunks or pages.
        assert_eq!(
            prefault_retained_memory(PREFAULT_CHUNK_BYTES + PAGE_BYTES + 1),
            Ok(true)
        );
        assert_eq!(prefault_retained_memory(0), Ok(true));
    }

    #[test]
    fn both_ways_of_faulting_in_fault_exactly_the_buffers_pages() {
        let populate = |buffer: &mut [std::mem::MaybeUninit<u8>]| assert!(populate(buffer));
        faults_exactly_the_buffers_pages(populate);
        faults_exactly_the_buffers_pages(touch_each_page);
    }

    fn faults_exactly_the_buffers_pages(fault_in: impl Fn(&mut [std::mem::MaybeUninit<u8>])) {
        const MAPPED_PAGES: usize = 16;
        for (offset, len) in [
            (0, 1),
            (17, PAGE_BYTES - 17),
            (100, PAGE_BYTES + 1),
            (5, 9 * PAGE_BYTES + 17),
        ] {
            // SAFETY: a new private anonymous mapping, unmapped below.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    MAPPED_PAGES * PAGE_BYTES,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED);
            let base = base as usize;
            assert_eq!(resident_pages(base, MAPPED_PAGES * PAGE_BYTES), 0);
            // SAFETY: inside the mapping, which nothing else uses.
            let buffer = unsafe {
                std::slice::from_raw_parts_mut(
                    (base + PAGE_BYTES + offset) as *mut std::mem::MaybeUninit<u8>,
                    len,
                )
            };
            fault_in(buffer);
            let start = base + PAGE_BYTES + offset;
            let pages = (start + len).div_ceil(PAGE_BYTES) - start / PAGE_BYTES;
            assert_eq!(
                resident_pages(start, len),
                pages,
                "offset {offset}, len {len}"
            );
            assert_eq!(
                resident_pages(base, MAPPED_PAGES * PAGE_BYTES),
                pages,
                "no page outside the buffer"
            );
            // SAFETY: unmaps exactly what was mapped above.
            assert_eq!(
                unsafe { libc::munmap(base as *mut libc::c_void, MAPPED_PAGES * PAGE_BYTES) },
                0
            );
        }
    }

    /// Pages of `[start, start + len)` resident, by `mincore`.
    fn resident_pages(start: usize, len: usize) -> usize {
        let first = start / PAGE_BYTES * PAGE_BYTES;
        let pages = (start + len).div_ceil(PAGE_BYTES) - first / PAGE_BYTES;
        let mut resident = vec![0u8; pages];
        // SAFETY: a page-aligned range of mapped memory (it covers a live
        // allocation) and one status byte per page.
        let result = unsafe {
            libc::mincore(
                first as *mut libc::c_void,
                pages * PAGE_BYTES,
                resident.as_mut_ptr(),
            )
        };
        assert_eq!(result, 0);
        resident.iter().filter(|&&status| status & 1 == 1).count()
    }
}
