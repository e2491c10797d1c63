//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): the pool the kernel
//! picks receive buffers from, so a multishot receive needs no buffer of its
//! own while a connection is idle.
//!
//! Memory is fixed at start-up: `RECV_BUFFER_COUNT` buffers of
//! `RECV_BUFFER_SIZE_BYTES`, however many connections there are. The loop
//! copies each completion's bytes into the connection's own input buffer and
//! hands the buffer straight back, so the ring only runs dry (ENOBUFS) when
//! more receives complete in one round than there are buffers; the receive is
//! then re-armed at the end of the round. The load generator uses the same
//! ring with its own count and size (`register_sized`).

use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Receive buffers per core. A power of two (the ring's index mask).
pub const RECV_BUFFER_COUNT: u16 = 512;
/// One receive completion carries at most this many bytes.
pub const RECV_BUFFER_SIZE_BYTES: usize = 16 * 1024;
/// The buffer group id our receives select from.
pub const RECV_BUFFER_GROUP: u16 = 0;

const _: () = assert!(RECV_BUFFER_COUNT.is_power_of_two());

/// An anonymous private mapping, page aligned as the kernel wants the ring.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> std::io::Result<Mapping> {
        assert!(len > 0);
        // SAFETY: anonymous mapping, no file; checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub struct BufRing {
    ring: Mapping,
    buffers: Mapping,
    /// A power of two (the ring's index mask).
    count: u16,
    size_bytes: usize,
    /// Our copy of the ring's tail; published to the kernel by `publish`.
    tail: u16,
}

impl BufRing {
    /// Maps the ring and its buffers and registers them with `uring`.
    pub fn register(uring: &IoUring) -> std::io::Result<BufRing> {
        BufRing::register_sized(uring, RECV_BUFFER_COUNT, RECV_BUFFER_SIZE_BYTES)
    }

    /// As [`BufRing::register`], with `count` buffers (a power of two) of
    /// `size_bytes` each: the load generator sizes its ring to its
    /// connections so that the buffers the kernel cycles through stay in
    /// the cache.
    pub fn register_sized(
        uring: &IoUring,
        count: u16,
        size_bytes: usize,
    ) -> std::io::Result<BufRing> {
        assert!(count.is_power_of_two());
        assert!(size_bytes > 0 && u32::try_from(size_bytes).is_ok());
        let ring = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Mapping::new(usize::from(count) * size_bytes)?;
        // SAFETY: both mappings live as long as this BufRing, which the
        // event loop drops only after the io_uring instance itself.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                ring.ptr as u64,
                count,
                RECV_BUFFER_GROUP,
                0,
            )?;
        }
        let mut this = BufRing {
            ring,
            buffers,
            count,
            size_bytes,
            tail: 0,
        };
        for bid in 0..count {
            this.push(bid);
        }
        this.publish();
        Ok(this)
    }

    /// The bytes the kernel put in buffer `bid`.
    pub fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count);
        assert!(len <= self.size_bytes);
        // SAFETY: in bounds of the buffers mapping; the kernel finished
        // writing this buffer when it posted the completion naming it, and
        // cannot pick it again until we `push` it back.
        unsafe {
            std::slice::from_raw_parts(
                self.buffers.ptr.add(usize::from(bid) * self.size_bytes),
                len,
            )
        }
    }

    /// Give buffer `bid` back (visible to the kernel after `publish`).
    pub fn push(&mut self, bid: u16) {
        assert!(bid < self.count);
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index` is within the ring mapping; the kernel reads only
        // entries between its head and the published tail, and this one is
        // past the published tail.
        unsafe {
            let entry = &mut *(self.ring.ptr as *mut BufRingEntry).add(index);
            entry.set_addr(self.buffers.ptr.add(usize::from(bid) * self.size_bytes) as u64);
            entry.set_len(self.size_bytes as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Make every pushed buffer available to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's reserved field; the
        // kernel reads it with acquire semantics, so a release store orders
        // the entry writes before it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.ptr as *const BufRingEntry) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}
