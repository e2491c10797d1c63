//! `SCAN` cursors: integers clients can hold, backed by a bounded per-core
//! table of continuation keys.
//!
//! The store is ordered, so the natural cursor is "the last key returned",
//! but clients require an integer cursor. Each `SCAN` that stops early stores
//! its last key under a fresh cursor number `n` in slot `n % SCAN_CURSORS_MAX`
//! of a ring; a later `SCAN n` resumes strictly after that key. Numbers
//! increase monotonically, so a cursor whose slot was reused by
//! [`SCAN_CURSORS_MAX`] newer scans is detected (the slot holds another
//! number) and answered with `-ERR invalid cursor`, rather than silently
//! resuming somewhere else: the client restarts its scan from 0. Keys that
//! exist for the whole scan are returned at least once (the key order is
//! stable), keys added or removed meanwhile may or may not be, as in Redis.
//! Each slot's key buffer keeps its capacity, so steady-state scanning does
//! not allocate.

/// Scans in progress one core remembers; the oldest are forgotten first.
pub const SCAN_CURSORS_MAX: usize = 1024;

#[derive(Debug, Default)]
struct Slot {
    cursor: u64,
    last_key: Vec<u8>,
}

#[derive(Debug)]
pub struct ScanCursors {
    slots: Vec<Slot>,
    /// The next cursor number to hand out (0 means "start" / "done").
    next: u64,
}

impl Default for ScanCursors {
    fn default() -> Self {
        Self::new()
    }
}

impl ScanCursors {
    pub fn new() -> ScanCursors {
        ScanCursors {
            slots: (0..SCAN_CURSORS_MAX).map(|_| Slot::default()).collect(),
            next: 1,
        }
    }

    /// The key to resume after, or `None` when the cursor is unknown or
    /// forgotten. `cursor` must not be 0 (that starts a scan).
    pub fn resume(&self, cursor: u64) -> Option<&[u8]> {
        debug_assert_ne!(cursor, 0);
        let slot = &self.slots[(cursor % SCAN_CURSORS_MAX as u64) as usize];
        (slot.cursor == cursor).then_some(slot.last_key.as_slice())
    }

    /// Remembers `last_key` under a new cursor number and returns it.
    pub fn save(&mut self, last_key: &[u8]) -> u64 {
        let cursor = self.next;
        self.next += 1;
        assert!(cursor != 0);
        let slot = &mut self.slots[(cursor % SCAN_CURSORS_MAX as u64) as usize];
        slot.cursor = cursor;
        slot.last_key.clear();
        slot.last_key.extend_from_slice(last_key);
        cursor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_resume_until_forgotten() {
        let mut cursors = ScanCursors::new();
        let first = cursors.save(b"k1");
        assert_eq!(cursors.resume(first), Some(&b"k1"[..]));
        assert_eq!(cursors.resume(first + 1), None);
        for i in 0..SCAN_CURSORS_MAX {
            cursors.save(format!("x{i}").as_bytes());
        }
        assert_eq!(cursors.resume(first), None);
    }
}
