//! One core's connections: a slab of per-connection state and the pool their
//! byte buffers come from.
//!
//! Every buffer is a `Vec<u8>` taken from the core's [`BufferPool`] when a
//! connection opens and given back when it closes, so a connection that
//! stays within `BUFFER_INITIAL_BYTES` never allocates after accept. A
//! connection whose requests or replies are bigger grows its buffer (up to a
//! hard cap for input); the pool then drops such buffers instead of keeping
//! them, so one large value does not pin memory forever.

/// Capacity of a fresh connection buffer.
pub const BUFFER_INITIAL_BYTES: usize = 4 * 1024;
/// Buffers larger than this are freed on close instead of pooled.
pub const BUFFER_RETAIN_MAX_BYTES: usize = 64 * 1024;
/// Idle buffers kept per core.
pub const POOL_FREE_MAX: usize = 4096;
/// Largest unparsed input one connection may hold: one maximal bulk value
/// (512 MiB, Redis' `proto-max-bulk-len`) plus room for its command and key.
pub const INPUT_BYTES_MAX: usize = 512 * 1024 * 1024 + 64 * 1024;
/// Replies pending for one connection beyond which its further input waits
/// (a client that pipelines but does not read cannot grow our memory).
pub const OUTPUT_PAUSE_BYTES: usize = 4 * 1024 * 1024;

/// Free connection buffers, bounded.
pub struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// A pool holding `preallocated` ready buffers.
    pub fn new(preallocated: usize) -> BufferPool {
        assert!(preallocated <= POOL_FREE_MAX);
        let mut free = Vec::with_capacity(POOL_FREE_MAX);
        for _ in 0..preallocated {
            free.push(Vec::with_capacity(BUFFER_INITIAL_BYTES));
        }
        BufferPool { free }
    }

    pub fn take(&mut self) -> Vec<u8> {
        let buffer = self
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_INITIAL_BYTES));
        assert!(buffer.is_empty());
        buffer
    }

    pub fn give(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() > BUFFER_RETAIN_MAX_BYTES || self.free.len() == POOL_FREE_MAX {
            return; // Dropped: bounded pool, bounded retained memory.
        }
        buffer.clear();
        self.free.push(buffer);
    }

    #[cfg(test)]
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

/// One client connection on this core.
pub struct Conn<S> {
    pub fd: i32,
    /// Distinguishes this connection from earlier ones in the same slab slot,
    /// so a late completion for a closed connection is recognised.
    pub generation: u32,
    /// The command layer's per-connection state.
    pub state: S,
    /// Received bytes not yet consumed by the handler.
    pub input: Vec<u8>,
    /// Replies produced since the last send was submitted.
    pub output: Vec<u8>,
    /// Replies owned by the kernel while a send is in flight.
    pub sending: Vec<u8>,
    /// Bytes of `sending` the kernel has accepted so far.
    pub sent: usize,
    pub recv_armed: bool,
    pub send_in_flight: bool,
    /// Queued in this round's work list.
    pub queued: bool,
    /// Input waits until enough output is sent (`OUTPUT_PAUSE_BYTES`).
    pub paused: bool,
    /// Close once `output` and `sending` are drained (QUIT, protocol error,
    /// peer EOF, shutdown).
    pub close_after_send: bool,
    /// `shutdown(2)` done; waiting for in-flight operations to finish.
    pub closing: bool,
    /// Where this round's replies start in `output`, when the handler ran
    /// on this connection this round (a failed commit rewrites them).
    pub round_start: Option<usize>,
}

impl<S> Conn<S> {
    pub fn new(fd: i32, generation: u32, state: S, pool: &mut BufferPool) -> Conn<S> {
        Conn {
            fd,
            generation,
            state,
            input: pool.take(),
            output: pool.take(),
            sending: pool.take(),
            sent: 0,
            recv_armed: false,
            send_in_flight: false,
            queued: false,
            paused: false,
            close_after_send: false,
            closing: false,
            round_start: None,
        }
    }

    /// Returns the buffers to `pool`; the caller closes the fd.
    pub fn release(self, pool: &mut BufferPool) -> S {
        assert!(
            !self.recv_armed && !self.send_in_flight,
            "buffers still owned by the kernel"
        );
        pool.give(self.input);
        pool.give(self.output);
        pool.give(self.sending);
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_bounded_and_drops_big_buffers() {
        let mut pool = BufferPool::new(2);
        assert_eq!(pool.free_count(), 2);
        let a = pool.take();
        let mut b = pool.take();
        let c = pool.take(); // beyond the preallocation: allocated
        assert_eq!(pool.free_count(), 0);
        b.resize(BUFFER_RETAIN_MAX_BYTES + 1, 0);
        pool.give(a);
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.free_count(), 2, "the oversized buffer was dropped");
        assert!(pool.take().is_empty());
    }
}
