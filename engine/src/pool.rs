//! Per-store buffer pools and the memory quota.
//!
//! Every buffer a store holds (batch buffers, segment data/meta/index, merge
//! output, spares kept for reuse) is taken from and given back to its store's
//! [`Pool`], which counts their capacity in `held_bytes`. A store never shares
//! a pool with another store, so the pool is a plain `RefCell` behind an `Rc`:
//! single-threaded by design, like the store.
//!
//! Buffers up to [`POOLED_BYTES_MAX`] are sized to powers of two and kept on
//! free lists when released (at most [`POOLED_BUFFERS_MAX`] buffers and
//! [`POOLED_SPARE_BYTES_MAX`] bytes per kind; when full, the least recently
//! given spares are freed to make room, so sizes an earlier phase used cannot
//! crowd out the ones a steady load recycles), so a steady stream of
//! same-sized batches and the small merges they cause reuse the same few
//! buffers and do no heap allocation. Larger buffers (merge outputs of big
//! segments, their indexes) are sized exactly and returned to the allocator.
//!
//! Large buffers are advised onto transparent huge pages (see
//! [`advise_huge_pages`]); the merger decides when for its own output.
//!
//! Quota: new buffers for batches are refused with [`Error::MemoryQuota`] when
//! `held_bytes` would exceed the quota. Merge output is exempt (it is counted,
//! but never refused): a merge is what gives memory back, and refusing it
//! would wedge a full store. So is the key-ordered copy of a batch's bytes
//! made at apply, whose source buffer goes back at once. Spare buffers on
//! the free lists count against the quota too; `trim` releases them.

use crate::Error;
use std::cell::RefCell;
use std::mem::size_of;

/// Largest buffer (in bytes) kept for reuse.
pub(crate) const POOLED_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most spare buffers kept per kind (data, meta, index).
pub(crate) const POOLED_BUFFERS_MAX: usize = 32;
/// Most bytes kept in spare buffers of one kind: spares count against the
/// quota, so they must stay a small share of it.
pub(crate) const POOLED_SPARE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Merge indexes up to this size are rounded to a size class (and so
/// recycle); larger ones are sized exactly.
const MERGE_INDEX_CLASS_BYTES_MAX: usize = 256 * 1024;
/// Smallest buffer capacity, in elements, so tiny batches share a class.
const CAPACITY_MIN: usize = 64;

/// Buffers from this size up are advised onto transparent huge pages.
const HUGE_PAGE_ADVICE_BYTES_MIN: usize = 2 * 1024 * 1024;

/// What a buffer is for, which decides its sizing and whether the quota
/// may refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Batch buffers: quota enforced, power-of-two sizes so they recycle.
    Batch,
    /// Merge output: exempt from the quota; sized like batch buffers up to
    /// [`POOLED_BYTES_MAX`], exactly above (large outputs are the long-lived
    /// bulk of the store, where rounding up would cost up to 2x).
    Merge,
    /// A merge output's index: exempt from the quota, sized exactly (its
    /// size is already the load-factor choice; rounding would add up to 4
    /// bytes per record).
    MergeIndex,
    /// Loading an external segment's index: quota enforced, sized exactly.
    Load,
    /// The key-ordered copy of a batch's data made at apply: exempt from the
    /// quota (the batch's own buffer goes back at once, so the net is zero),
    /// power-of-two sizes so it recycles.
    Reorder,
    /// The ops a batch split off (`Batch::split_off`): exempt from the quota
    /// (they were admitted in the batch, whose buffers go back when it is
    /// applied right after), power-of-two sizes so they recycle.
    Split,
}

impl Purpose {
    /// Merge buffers are advised by the merge itself: a huge page fault can
    /// stall for milliseconds (zeroing 2 MiB, or compacting memory to find
    /// it), which a budgeted merge step cannot afford mid-write.
    fn advises_huge_pages(self) -> bool {
        !matches!(self, Purpose::Merge | Purpose::MergeIndex)
    }

    fn enforces_quota(self) -> bool {
        matches!(self, Purpose::Batch | Purpose::Load)
    }

    fn capacity<T>(self, len: usize) -> usize {
        match self {
            Purpose::Batch | Purpose::Reorder | Purpose::Split => capacity_class::<T>(len),
            // Small merge outputs recycle like batch buffers (the many small
            // merges of new segments then reuse memory instead of faulting
            // in fresh pages); large ones, the bulk of a big store, are exact.
            Purpose::Merge => capacity_class::<T>(len),
            // Small merge indexes too: sized exactly they were never
            // pooled, and every small merge of a steady load allocated one.
            // Rounding costs nothing that matters below the threshold; the
            // big indexes, where it would cost up to 4 bytes per record,
            // stay exact.
            Purpose::MergeIndex if len * size_of::<T>() <= MERGE_INDEX_CLASS_BYTES_MAX => {
                capacity_class::<T>(len)
            }
            Purpose::MergeIndex | Purpose::Load => len.max(1),
        }
    }
}

pub(crate) struct FreeList<T> {
    spares: Vec<Vec<T>>,
    spare_bytes: usize,
}

impl<T> FreeList<T> {
    fn new() -> FreeList<T> {
        FreeList {
            spares: Vec::with_capacity(POOLED_BUFFERS_MAX),
            spare_bytes: 0,
        }
    }
}

pub(crate) struct Inner {
    data: FreeList<u8>,
    meta: FreeList<u64>,
    index: FreeList<u32>,
    held_bytes: usize,
    quota_bytes: usize,
}

/// One store's buffers and quota.
pub(crate) struct Pool {
    inner: RefCell<Inner>,
}

/// Capacity class for `len` elements of `T`.
pub(crate) fn capacity_class<T>(len: usize) -> usize {
    let len = len.max(CAPACITY_MIN);
    if len.saturating_mul(size_of::<T>()) <= POOLED_BYTES_MAX {
        len.next_power_of_two()
    } else {
        len
    }
}

/// The element types a pool keeps buffers of.
pub(crate) trait Kind: Sized {
    fn list(inner: &mut Inner) -> &mut FreeList<Self>;
}
impl Kind for u8 {
    fn list(inner: &mut Inner) -> &mut FreeList<u8> {
        &mut inner.data
    }
}
impl Kind for u64 {
    fn list(inner: &mut Inner) -> &mut FreeList<u64> {
        &mut inner.meta
    }
}
impl Kind for u32 {
    fn list(inner: &mut Inner) -> &mut FreeList<u32> {
        &mut inner.index
    }
}

impl Pool {
    pub fn new(quota_bytes: usize) -> Pool {
        Pool {
            inner: RefCell::new(Inner {
                data: FreeList::new(),
                meta: FreeList::new(),
                index: FreeList::new(),
                held_bytes: 0,
                quota_bytes,
            }),
        }
    }

    pub fn held_bytes(&self) -> usize {
        self.inner.borrow().held_bytes
    }

    pub fn quota_bytes(&self) -> usize {
        self.inner.borrow().quota_bytes
    }

    /// An empty buffer with room for at least `len` elements.
    pub fn take_data(&self, len: usize, purpose: Purpose) -> Result<Vec<u8>, Error> {
        self.take::<u8>(len, purpose)
    }

    /// An empty buffer with room for at least `len` elements.
    pub fn take_meta(&self, len: usize, purpose: Purpose) -> Result<Vec<u64>, Error> {
        self.take::<u64>(len, purpose)
    }

    /// A zeroed buffer of at least `len` elements (its whole capacity is its length).
    pub fn take_index(&self, len: usize, purpose: Purpose) -> Result<Vec<u32>, Error> {
        let capacity = purpose.capacity::<u32>(len);
        if let Some(mut spare) = self.take_spare::<u32>(capacity) {
            spare.clear();
            spare.resize(capacity, 0);
            return Ok(spare);
        }
        self.charge(capacity * size_of::<u32>(), purpose)?;
        // `vec!` of zeroes maps fresh zero pages for large sizes: no upfront
        // write of the whole table.
        let index = vec![0u32; capacity];
        debug_assert_eq!(index.capacity(), capacity);
        if purpose.advises_huge_pages() {
            advise_huge_pages(&index);
        }
        Ok(index)
    }

    /// An empty index buffer with room for at least `len` slots, not zeroed:
    /// the caller zeroes it in bounded chunks.
    pub fn take_index_unzeroed(&self, len: usize, purpose: Purpose) -> Result<Vec<u32>, Error> {
        self.take::<u32>(len, purpose)
    }

    fn take<T: Kind>(&self, len: usize, purpose: Purpose) -> Result<Vec<T>, Error> {
        let capacity = purpose.capacity::<T>(len);
        if let Some(spare) = self.take_spare::<T>(capacity) {
            return Ok(spare);
        }
        self.charge(capacity * size_of::<T>(), purpose)?;
        let buffer = Vec::with_capacity(capacity);
        debug_assert_eq!(buffer.capacity(), capacity);
        if purpose.advises_huge_pages() {
            advise_huge_pages(&buffer);
        }
        Ok(buffer)
    }

    fn take_spare<T: Kind>(&self, capacity: usize) -> Option<Vec<T>> {
        let mut inner = self.inner.borrow_mut();
        let list = T::list(&mut inner);
        // Newest first, and order kept: the list is least recently given
        // first, which is what `give` evicts.
        let at = list
            .spares
            .iter()
            .rposition(|spare| spare.capacity() == capacity)?;
        let mut spare = list.spares.remove(at);
        list.spare_bytes -= spare.capacity() * size_of::<T>();
        spare.clear();
        Some(spare)
    }

    fn charge(&self, bytes: usize, purpose: Purpose) -> Result<(), Error> {
        let mut inner = self.inner.borrow_mut();
        let available = inner.quota_bytes.saturating_sub(inner.held_bytes);
        if purpose.enforces_quota() && bytes > available {
            return Err(Error::MemoryQuota {
                needed: bytes,
                available,
            });
        }
        inner.held_bytes += bytes;
        Ok(())
    }

    /// Takes back a buffer this pool handed out.
    pub fn give<T: Kind>(&self, buffer: Vec<T>) {
        let capacity = buffer.capacity();
        if capacity == 0 {
            return;
        }
        let bytes = capacity * size_of::<T>();
        let mut inner = self.inner.borrow_mut();
        let list = T::list(&mut inner);
        if bytes <= POOLED_BYTES_MAX && capacity.is_power_of_two() {
            // Full: the least recently given spares make room. Refusing the
            // new buffer instead let spares of sizes no longer asked for
            // (an earlier phase's merge outputs) block the sizes a steady
            // load recycles, which then allocated on every reuse.
            let mut evicted_bytes = 0;
            while list.spares.len() >= POOLED_BUFFERS_MAX
                || list.spare_bytes + bytes > POOLED_SPARE_BYTES_MAX
            {
                let oldest = list.spares.remove(0);
                let oldest_bytes = oldest.capacity() * size_of::<T>();
                list.spare_bytes -= oldest_bytes;
                evicted_bytes += oldest_bytes;
            }
            list.spare_bytes += bytes;
            list.spares.push(buffer);
            assert!(
                inner.held_bytes >= evicted_bytes,
                "pool gave back more than it handed out"
            );
            inner.held_bytes -= evicted_bytes;
            return;
        }
        assert!(
            inner.held_bytes >= bytes,
            "pool gave back more than it handed out"
        );
        inner.held_bytes -= bytes;
        drop(inner);
        drop(buffer);
    }

    /// Releases every spare buffer to the allocator.
    pub fn trim(&self) {
        let mut inner = self.inner.borrow_mut();
        let mut released = 0;
        released += drain(&mut inner.data);
        released += drain(&mut inner.meta);
        released += drain(&mut inner.index);
        assert!(inner.held_bytes >= released);
        inner.held_bytes -= released;
    }
}

/// Asks the kernel to back a large, not yet touched buffer with transparent
/// huge pages: random probes into segment data, meta and indexes of hundreds
/// of MiB otherwise pay a TLB miss and page walk on top of the cache miss.
/// Advice only; failure (e.g. THP disabled) changes nothing.
pub(crate) fn advise_huge_pages<T>(buffer: &Vec<T>) {
    let bytes = buffer.capacity() * size_of::<T>();
    if bytes < HUGE_PAGE_ADVICE_BYTES_MIN {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        const PAGE_BYTES: usize = 4096;
        let start = (buffer.as_ptr() as usize).next_multiple_of(PAGE_BYTES);
        let end = (buffer.as_ptr() as usize + bytes) / PAGE_BYTES * PAGE_BYTES;
        if end > start {
            // SAFETY: the page-aligned range lies inside the buffer's own live
            // allocation; MADV_HUGEPAGE changes how its pages are backed,
            // never their contents or validity.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
}

/// Gives the physical pages under `[address, address + bytes)` back to the
/// kernel ahead of freeing a large buffer, so the free itself is cheap: the
/// merger spreads that work over its steps instead of paying it at once.
pub(crate) fn release_pages(address: usize, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const PAGE_BYTES: usize = 4096;
        let start = address.next_multiple_of(PAGE_BYTES);
        let end = (address + bytes) / PAGE_BYTES * PAGE_BYTES;
        if end > start {
            // SAFETY: callers pass a range inside a buffer they own and are
            // about to free; nobody reads it again (after MADV_DONTNEED the
            // pages would read as zeroes, still valid for the plain integer
            // element types pools hold).
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (address, bytes);
}

fn drain<T>(list: &mut FreeList<T>) -> usize {
    list.spare_bytes = 0;
    list.spares
        .drain(..)
        .map(|spare| spare.capacity() * size_of::<T>())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_does_not_charge_twice() {
        let pool = Pool::new(1 << 20);
        let data = pool.take_data(1000, Purpose::Batch).unwrap();
        assert_eq!(data.capacity(), 1024);
        assert_eq!(pool.held_bytes(), 1024);
        pool.give(data);
        assert_eq!(pool.held_bytes(), 1024);
        let again = pool.take_data(1000, Purpose::Batch).unwrap();
        assert_eq!(pool.held_bytes(), 1024);
        pool.give(again);
        pool.trim();
        assert_eq!(pool.held_bytes(), 0);
    }

    #[test]
    fn quota_refuses_and_exempt_does_not() {
        let pool = Pool::new(4096);
        let first = pool.take_data(4096, Purpose::Batch).unwrap();
        assert_eq!(
            pool.take_data(1, Purpose::Batch),
            Err(Error::MemoryQuota {
                needed: 64,
                available: 0
            })
        );
        let merge = pool.take_meta(10, Purpose::Merge).unwrap();
        let index = pool.take_index(10, Purpose::MergeIndex).unwrap();
        let big_len = MERGE_INDEX_CLASS_BYTES_MAX / 4 + 1;
        let big_index = pool.take_index(big_len, Purpose::MergeIndex).unwrap();
        assert_eq!(
            pool.held_bytes(),
            4096 + 64 * 8 + 64 * 4 + big_len * 4,
            "small merge outputs and indexes are pooled, big merge indexes are exact"
        );
        pool.give(first);
        pool.give(merge);
        pool.give(index);
        pool.give(big_index);
    }

    #[test]
    fn index_buffers_come_back_zeroed() {
        let pool = Pool::new(1 << 20);
        let mut index = pool.take_index(100, Purpose::Batch).unwrap();
        assert_eq!(index.len(), 128);
        index.iter_mut().for_each(|slot| *slot = 7);
        pool.give(index);
        let index = pool.take_index(100, Purpose::Batch).unwrap();
        assert!(index.iter().all(|&slot| slot == 0));
        pool.give(index);
    }

    #[test]
    fn spares_are_bounded_in_bytes() {
        let pool = Pool::new(usize::MAX);
        let buffers: Vec<Vec<u8>> = (0..8)
            .map(|_| pool.take_data(POOLED_BYTES_MAX, Purpose::Batch).unwrap())
            .collect();
        for buffer in buffers {
            pool.give(buffer);
        }
        assert_eq!(pool.held_bytes(), POOLED_SPARE_BYTES_MAX);
        pool.trim();
        assert_eq!(pool.held_bytes(), 0);
    }

    #[test]
    fn large_buffers_are_not_kept() {
        let pool = Pool::new(usize::MAX);
        let big = pool
            .take_data(POOLED_BYTES_MAX + 1, Purpose::Batch)
            .unwrap();
        assert_eq!(big.capacity(), POOLED_BYTES_MAX + 1);
        pool.give(big);
        assert_eq!(pool.held_bytes(), 0);
    }
}
