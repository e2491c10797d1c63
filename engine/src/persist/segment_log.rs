//! One core's append-only segment log: the live file, its writer, and the
//! open/recover/compact life cycle of the files in the core's directory.
//!
//! Files are named `seg-<file_seq as 16 hex digits>.tsr`; the highest number
//! is the live file. Compaction writes `seg-<n+1>.tsr.tmp`, fdatasyncs it,
//! renames it to `seg-<n+1>.tsr`, fsyncs the directory and only then removes
//! `seg-<n>.tsr` (the ALICE ordering). A crash between any two steps leaves
//! either the old file as the highest complete one (the `.tmp` is deleted on
//! open) or both (the older one is deleted on open): never a state without
//! every acknowledged commit.
//!
//! Writes stream a commit through DMA buffers of at most
//! [`WRITE_CHUNK_BYTES`] from the ring's registered `io_memory` arena, so a
//! commit of any size needs no heap buffer of its size. After a failed write
//! or sync the bytes past the last good commit are unknown, so the next
//! append first truncates back to it; a commit that failed is reported
//! failed and never becomes acknowledged.
//!
//! The commits of one [`SegmentLog::append_all`] (one fdatasync group) are
//! written concurrently, up to [`FLUSH_WRITES_IN_FLIGHT_MAX`] DMA writes at
//! once, so the device sees a queue instead of one write at a time and the
//! next buffer is filled while the last ones are on their way. A crash can
//! then leave a later commit of the group on disk and an earlier one not;
//! every footer names where its group began (`sync_group_offset`) so
//! recovery reads a gap inside the last group as a torn tail rather than as
//! damage. A file written before sync groups existed has no such field, so
//! its commits are still written one write at a time, in order, until a
//! compaction replaces it with a file that has.
//!
//! Async mode may instead hand a group to a task of its own
//! ([`SegmentLog::start_flight`], see `flight`) and go on; every other
//! operation on the log waits until that flight has landed
//! ([`SegmentLog::land_flight`]).

use std::fs;
use std::future::{poll_fn, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapOptions};

use super::compaction::CompactionWriter;
use super::error::PersistError;
use super::file_io::{FileLayer, LogFile};
use super::flight::{wait_for_abandoned, Flight};
use super::format::{
    EncodedCommit, FileHeader, BLOCK_BYTES, FILE_HEADER_BLOCK_BYTES, META_WORDS_PER_RECORD,
    SEGMENT_DATA_BYTES_MAX, SEGMENT_RECORDS_MAX,
};
use super::recovery::{scan, DroppedRange, SegmentExtent};
use crate::Snapshot;

/// Largest single DMA write; bigger commits are written in several. With
/// `io_memory` of at least twice this, chunk buffers come from the ring's
/// registered arena; with less (1 MiB per executor is what RLIMIT_MEMLOCK
/// = 8 MiB affords two cores) glommio falls back to heap buffers, which
/// still measured faster than 256 KiB chunks from the arena (BENCHMARKS.md).
pub const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// DMA writes of one fdatasync group in flight at once, so at most this
/// many `WRITE_CHUNK_BYTES` buffers (8 MiB) are held per core while a
/// flush runs. They do not come out of locked memory: a 1 MiB `io_memory`
/// arena (what RLIMIT_MEMLOCK = 8 MiB affords two cores) cannot hold a
/// 1 MiB chunk, so glommio hands out heap buffers; this constant is what
/// bounds them. Eight put a typical async flush (7-10 commits of ~1 MiB)
/// in flight at once. On the development VM's ext4 the gain was lost in
/// the noise: appending O_DIRECT writes serialize on the inode lock there
/// (BENCHMARKS.md, "Fourth session").
pub const FLUSH_WRITES_IN_FLIGHT_MAX: usize = 8;
/// How long a flush pauses after queuing each write. glommio submits queued
/// IO to the kernel only when its executor polls the reactor, which it does
/// once no task is runnable; a timer this short makes the flushing task
/// wait for exactly one such pass, so each write starts while the next
/// buffer is being filled (BENCHMARKS.md, "Fourth session").
const WRITE_SUBMIT_PAUSE: Duration = Duration::from_micros(1);
const FILE_PREFIX: &str = "seg-";
const FILE_SUFFIX: &str = ".tsr";
const TMP_SUFFIX: &str = ".tmp";

/// What opening a core's log found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub file: PathBuf,
    pub segments: u64,
    pub records: u64,
    pub last_seq: u64,
    /// Bytes of an unfinished write cut off the end of the live file.
    pub torn_tail_bytes: u64,
    /// When the cut lay inside the last fdatasync group with later commits
    /// of the group intact (they landed before an earlier one did): what was
    /// cut, and where its bytes were saved first. Part of `torn_tail_bytes`.
    pub torn_group: Option<DroppedRange>,
    pub torn_group_saved_to: Option<PathBuf>,
    /// Tolerant mode only: the damaged range dropped, and where its bytes
    /// were saved before the file was cut.
    pub dropped: Option<DroppedRange>,
    pub dropped_saved_to: Option<PathBuf>,
    /// Leftovers of an interrupted compaction that were removed.
    pub removed_files: Vec<PathBuf>,
    pub elapsed: Duration,
}

/// The verified segments of the live file as it was at open, served
/// straight from a read-only mapping.
pub struct MappedSegments {
    map: Option<Rc<Mmap>>,
    extents: Vec<SegmentExtent>,
}

impl MappedSegments {
    pub fn len(&self) -> usize {
        self.extents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    pub fn extent(&self, index: usize) -> &SegmentExtent {
        &self.extents[index]
    }

    /// The mapping every segment borrows from; segments built on it keep it
    /// alive (a compacted-away file stays mapped until nothing reads it).
    pub fn map(&self) -> Option<&Rc<Mmap>> {
        self.map.as_ref()
    }

    /// The `meta` and `data` arrays of segment `index`, oldest first.
    pub fn segment(&self, index: usize) -> (&[u64], &[u8]) {
        let extent = &self.extents[index];
        let map = self.map.as_ref().expect("segments imply a mapping");
        let meta =
            &map[extent.meta_offset as usize..(extent.meta_offset + extent.meta_bytes) as usize];
        let data =
            &map[extent.data_offset as usize..(extent.data_offset + extent.data_bytes) as usize];
        // The mapping is page aligned and meta starts 64 bytes into a block.
        (bytemuck::cast_slice(meta), data)
    }
}

pub struct SegmentLog<L: FileLayer> {
    layer: L,
    dir: PathBuf,
    core: u32,
    /// Shared with the flight on its way, if any.
    file: Option<Rc<L::File>>,
    path: PathBuf,
    file_seq: u64,
    /// End of the last acknowledged commit; the next one starts here.
    end: u64,
    commit_index: u64,
    last_seq: u64,
    /// A failed write or sync may have left bytes past `end`.
    dirty_tail: bool,
    /// The live file's footers carry sync groups, so a group's commits may
    /// be written concurrently (see the module docs).
    sync_groups: bool,
    /// A group being written by a task of its own; the position fields
    /// above move past it only when it lands.
    flight: Option<Flight<LogPosition>>,
}

impl<L: FileLayer> Drop for SegmentLog<L> {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            flight.abandon(&self.dir);
        }
    }
}

/// Where the next commit goes: the log's position after its last commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LogPosition {
    end: u64,
    commit_index: u64,
    last_seq: u64,
}

impl<L: FileLayer> SegmentLog<L> {
    /// Opens (or creates) the log in `dir`, recovering the live file.
    pub async fn open(
        layer: L,
        dir: &Path,
        core: u32,
        tolerant: bool,
    ) -> Result<(Self, MappedSegments, RecoveryReport), PersistError> {
        let started = Instant::now();
        // A log of this directory dropped with a flight on its way (a crash
        // staged in this process): its writes must land before the scan.
        wait_for_abandoned(dir).await;
        let listing = list_dir(dir)?;
        let Some(&live_seq) = listing.complete.last() else {
            let mut log = SegmentLog {
                layer,
                dir: dir.to_path_buf(),
                core,
                file: None,
                path: PathBuf::new(),
                file_seq: 0,
                end: 0,
                commit_index: 0,
                last_seq: 0,
                dirty_tail: false,
                sync_groups: true,
                flight: None,
            };
            let mut removed_files = log.remove_leftovers(&listing, None).await?;
            log.start_new_file(1, 0).await?;
            removed_files.sort();
            let report = RecoveryReport {
                file: log.path.clone(),
                segments: 0,
                records: 0,
                last_seq: 0,
                torn_tail_bytes: 0,
                torn_group: None,
                torn_group_saved_to: None,
                dropped: None,
                dropped_saved_to: None,
                removed_files,
                elapsed: started.elapsed(),
            };
            log_report(&report);
            let mapped = MappedSegments {
                map: None,
                extents: Vec::new(),
            };
            return Ok((log, mapped, report));
        };

        let path = file_path(dir, live_seq, false);
        let read_only = fs::File::open(&path).map_err(|e| PersistError::io("open", &path, e))?;
        // SAFETY: segment files are only ever appended to by this core and
        // the region recovered is never rewritten while mapped.
        let whole =
            unsafe { Mmap::map(&read_only) }.map_err(|e| PersistError::io("mmap", &path, e))?;
        let scanned = scan(&whole, &path, tolerant)?;
        drop(whole);
        if scanned.header.core != core || scanned.header.file_seq != live_seq {
            return Err(PersistError::Corrupted {
                file: path,
                offset: 0,
                reason: "file header names another core or file number",
            });
        }

        let file = layer
            .open(&path, false)
            .await
            .map_err(|e| PersistError::io("open", &path, e))?;
        assert_eq!(
            BLOCK_BYTES % file.alignment(),
            0,
            "device blocks larger than 4 KiB"
        );
        let file_len = read_only
            .metadata()
            .map_err(|e| PersistError::io("stat", &path, e))?
            .len();
        let mut dropped_saved_to = None;
        if let Some(dropped) = &scanned.dropped {
            dropped_saved_to = Some(save_dropped(&path, &read_only, dropped)?);
        }
        // Commits cut with a torn group may be whole, or a bit flip may have
        // made them look torn (recovery's module docs): keep their bytes.
        let mut torn_group_saved_to = None;
        if let Some(torn) = &scanned.torn_group {
            torn_group_saved_to = Some(save_dropped(&path, &read_only, torn)?);
        }
        if scanned.valid_end < file_len {
            file.truncate(scanned.valid_end)
                .await
                .map_err(|e| PersistError::io("truncate", &path, e))?;
            file.fdatasync()
                .await
                .map_err(|e| PersistError::io("fdatasync", &path, e))?;
        }

        let map = if scanned.segments.is_empty() {
            None
        } else {
            // Prefault the whole mapping now, at open, so that reads on the
            // executor never take a major fault (see the module docs of
            // `persist`).
            let map = unsafe {
                MmapOptions::new()
                    .len(scanned.valid_end as usize)
                    .populate()
                    .map(&read_only)
            }
            .map_err(|e| PersistError::io("mmap", &path, e))?;
            map.advise(memmap2::Advice::WillNeed)
                .map_err(|e| PersistError::io("madvise", &path, e))?;
            Some(Rc::new(map))
        };

        let log = SegmentLog {
            layer,
            dir: dir.to_path_buf(),
            core,
            file: Some(Rc::new(file)),
            path: path.clone(),
            file_seq: live_seq,
            end: scanned.valid_end,
            commit_index: scanned.segments.len() as u64,
            last_seq: scanned.last_seq(),
            dirty_tail: false,
            sync_groups: scanned.header.sync_groups(),
            flight: None,
        };
        let mut removed_files = log.remove_leftovers(&listing, Some(live_seq)).await?;
        removed_files.sort();
        let report = RecoveryReport {
            file: path,
            segments: scanned.segments.len() as u64,
            records: scanned.segments.iter().map(|s| s.record_count).sum(),
            last_seq: log.last_seq,
            torn_tail_bytes: scanned.torn_tail_bytes,
            torn_group: scanned.torn_group,
            torn_group_saved_to,
            dropped: scanned.dropped,
            dropped_saved_to,
            removed_files,
            elapsed: started.elapsed(),
        };
        log_report(&report);
        let mapped = MappedSegments {
            map,
            extents: scanned.segments,
        };
        Ok((log, mapped, report))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the live file holding acknowledged commits.
    pub fn file_bytes(&self) -> u64 {
        self.end
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Closes the live file (everything in it is already durable).
    pub async fn close(mut self) -> Result<(), PersistError> {
        self.assert_grounded("close");
        match self.file.take() {
            Some(file) => unshared(file)
                .close()
                .await
                .map_err(|e| PersistError::io("close", &self.path, e)),
            None => Ok(()),
        }
    }

    /// Whether a group is being written by a task of its own.
    pub fn in_flight(&self) -> bool {
        self.flight.is_some()
    }

    /// Hands the `count` newest segments of `snapshot` to a task of their
    /// own, which writes them as one fdatasync group (concurrently, as
    /// [`SegmentLog::append_all`] does) and syncs them; returns at once.
    /// The log takes no other operation until the flight has landed
    /// ([`SegmentLog::poll_flight`], [`SegmentLog::land_flight`]), and its
    /// position moves past the group only then, so a failed flight leaves
    /// the log as if it never started. Must run on a glommio executor.
    pub fn start_flight(&mut self, snapshot: Snapshot, count: usize) {
        self.assert_grounded("start a flight");
        let height = snapshot.height();
        assert!(
            (1..=height).contains(&count),
            "a flight of {count} of {height} segments"
        );
        let file = Rc::clone(self.file.as_ref().expect("log is open"));
        let path = self.path.clone();
        let truncate_to = self.dirty_tail.then_some(self.end);
        // Until the flight lands the tail is unknown.
        self.dirty_tail = true;
        let start = self.position();
        let file_seq = self.file_seq;
        let sync_group = self.sync_groups.then_some(self.end);
        let in_flight_max = self.writes_in_flight_max();
        let task = glommio::spawn_local(async move {
            let group = GroupWriter {
                file: &*file,
                path: &path,
                file_seq,
                sync_group,
                in_flight_max,
                // Nothing waits for this task: its writes go out together
                // at the next reactor turn.
                pause_after_write: false,
            };
            let segments = snapshot
                .segments()
                .skip(height - count)
                .map(|(data, meta)| (meta, data));
            group.write_synced(truncate_to, start, segments).await
        });
        self.flight = Some(Flight::new(task.detach()));
    }

    /// Lands the flight if it is done: `Ready(Some(Ok(last_seq)))` when its
    /// group is durable, `Ready(Some(Err))` when it failed (nothing of it
    /// is acknowledged, and the next write first cuts the tail back),
    /// `Ready(None)` without a flight, `Pending` while it is on its way.
    pub fn poll_flight(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<u64, PersistError>>> {
        let Some(flight) = self.flight.as_mut() else {
            return Poll::Ready(None);
        };
        let outcome = std::task::ready!(flight.poll_done(cx));
        self.flight = None;
        Poll::Ready(Some(outcome.map(|after| self.advance(after))))
    }

    /// Waits for the flight, if any, and lands it (see
    /// [`SegmentLog::poll_flight`]).
    pub async fn land_flight(&mut self) -> Option<Result<u64, PersistError>> {
        poll_fn(|cx| self.poll_flight(cx)).await
    }

    fn position(&self) -> LogPosition {
        LogPosition {
            end: self.end,
            commit_index: self.commit_index,
            last_seq: self.last_seq,
        }
    }

    /// A group is durable up to `after`.
    fn advance(&mut self, after: LogPosition) -> u64 {
        assert!(after.end >= self.end && after.last_seq >= self.last_seq);
        self.dirty_tail = false;
        (self.end, self.commit_index, self.last_seq) =
            (after.end, after.commit_index, after.last_seq);
        after.last_seq
    }

    fn writes_in_flight_max(&self) -> usize {
        if self.sync_groups {
            FLUSH_WRITES_IN_FLIGHT_MAX
        } else {
            1
        }
    }

    /// Every operation but a flight's own needs the flight landed: it would
    /// write at the same offsets, or take sequence numbers the flight took.
    fn assert_grounded(&self, what: &str) {
        assert!(
            self.flight.is_none(),
            "{what} with a flight on its way: land it first"
        );
    }

    /// Number of commits (segments) in the live file.
    pub fn commits(&self) -> u64 {
        self.commit_index
    }

    /// Appends one segment as a commit and makes it durable (write +
    /// fdatasync). Returns the commit's sequence number.
    pub async fn append(&mut self, meta: &[u64], data: &[u8]) -> Result<u64, PersistError> {
        self.append_all([(meta, data)]).await
    }

    /// Appends each segment as its own commit, back to back, then makes them
    /// all durable with one fdatasync (group commit). Returns the last
    /// sequence number. On error nothing is acknowledged and the next append
    /// starts from the same offset.
    pub async fn append_all<'a>(
        &mut self,
        segments: impl IntoIterator<Item = (&'a [u64], &'a [u8])>,
    ) -> Result<u64, PersistError> {
        self.assert_grounded("append");
        let file = self.file.as_ref().expect("log is open");
        let truncate_to = self.dirty_tail.then_some(self.end);
        // Until the group's sync succeeds the tail is unknown.
        self.dirty_tail = true;
        let group = GroupWriter {
            file: &**file,
            path: &self.path,
            file_seq: self.file_seq,
            sync_group: self.sync_groups.then_some(self.end),
            in_flight_max: self.writes_in_flight_max(),
            pause_after_write: true,
        };
        let after = group
            .write_synced(truncate_to, self.position(), segments)
            .await?;
        Ok(self.advance(after))
    }

    /// Reserves the next sequence number (for a compaction's commits).
    pub fn reserve_seq(&mut self) -> u64 {
        self.assert_grounded("reserve a sequence number");
        self.last_seq += 1;
        self.last_seq
    }

    /// Starts a compaction: creates `seg-<n+1>.tsr.tmp` holding its header.
    pub async fn compaction_start(&mut self) -> Result<CompactionWriter<L::File>, PersistError> {
        self.assert_grounded("start a compaction");
        let file_seq = self.file_seq + 1;
        let tmp = file_path(&self.dir, file_seq, true);
        let file = self.create_file(&tmp, file_seq, self.last_seq).await?;
        Ok(CompactionWriter::new(file, tmp, file_seq, self.last_seq))
    }

    /// Makes a finished compaction's file the live one: fdatasync, rename,
    /// fsync the directory, then remove the old file and fsync again. On an
    /// error before the rename the old file stays live (the `.tmp` is
    /// removed); after it, the new file is live and only cleanup failed.
    pub async fn compaction_install(
        &mut self,
        writer: CompactionWriter<L::File>,
    ) -> Result<(), PersistError> {
        self.assert_grounded("install a compaction");
        assert!(!writer.in_segment(), "install whole commits only");
        assert!(writer.last_seq <= self.last_seq);
        let final_path = file_path(&self.dir, writer.file_seq, false);
        let renamed = match writer.sync().await {
            Ok(()) => self
                .layer
                .rename(&writer.tmp, &final_path)
                .await
                .map_err(|e| PersistError::io("rename", &writer.tmp, e)),
            Err(error) => Err(error),
        };
        if let Err(error) = renamed {
            self.compaction_discard(writer).await;
            return Err(error);
        }
        let old_path = std::mem::replace(&mut self.path, final_path);
        let old_file = self.file.replace(Rc::new(writer.file));
        self.file_seq = writer.file_seq;
        self.end = writer.end;
        self.commit_index = writer.commit_index;
        self.dirty_tail = false;
        // Compaction output always has a header of this build.
        self.sync_groups = true;
        self.sync_dir().await?;
        if let Some(old) = old_file {
            // Everything in it is in the new file, durably.
            let _ = unshared(old).close().await;
        }
        self.layer
            .remove(&old_path)
            .await
            .map_err(|e| PersistError::io("remove", &old_path, e))?;
        self.sync_dir().await
    }

    /// Abandons a compaction: closes and removes its `.tmp` file. Best
    /// effort: a leftover `.tmp` is removed at the next open anyway.
    pub async fn compaction_discard(&mut self, writer: CompactionWriter<L::File>) {
        let _ = writer.file.close().await;
        let _ = self.layer.remove(&writer.tmp).await;
    }

    /// Compaction in one go: writes `segments` (the store's live data,
    /// oldest first) into a new file and makes it the live one.
    pub async fn rewrite<'a>(
        &mut self,
        segments: impl IntoIterator<Item = (&'a [u64], &'a [u8])>,
    ) -> Result<(), PersistError> {
        let mut writer = self.compaction_start().await?;
        for (meta, data) in segments {
            let written = match check_limits(meta, data) {
                Ok(()) => {
                    let seq = self.reserve_seq();
                    writer.write_segment(seq, meta, data).await
                }
                Err(error) => Err(error),
            };
            if let Err(error) = written {
                self.compaction_discard(writer).await;
                return Err(error);
            }
        }
        self.compaction_install(writer).await
    }

    /// Creates a fresh empty live file (first open of a core directory).
    async fn start_new_file(&mut self, file_seq: u64, base_seq: u64) -> Result<(), PersistError> {
        self.last_seq = base_seq;
        let tmp = file_path(&self.dir, file_seq, true);
        let file = self.create_file(&tmp, file_seq, base_seq).await?;
        let final_path = file_path(&self.dir, file_seq, false);
        self.layer
            .rename(&tmp, &final_path)
            .await
            .map_err(|e| PersistError::io("rename", &tmp, e))?;
        self.file = Some(Rc::new(file));
        self.path = final_path;
        self.file_seq = file_seq;
        self.end = FILE_HEADER_BLOCK_BYTES;
        self.commit_index = 0;
        self.dirty_tail = false;
        self.sync_groups = true;
        self.sync_dir().await
    }

    /// Creates `path` holding only a file header, synced.
    async fn create_file(
        &self,
        path: &Path,
        file_seq: u64,
        base_seq: u64,
    ) -> Result<L::File, PersistError> {
        let file = self
            .layer
            .open(path, true)
            .await
            .map_err(|e| PersistError::io("create", path, e))?;
        file.truncate(0)
            .await
            .map_err(|e| PersistError::io("truncate", path, e))?;
        let header = FileHeader::new(self.core, file_seq, base_seq);
        let mut block = file.alloc_buffer(FILE_HEADER_BLOCK_BYTES as usize);
        block.as_bytes_mut().fill(0);
        block.as_bytes_mut()[..std::mem::size_of::<FileHeader>()]
            .copy_from_slice(bytemuck::bytes_of(&header));
        file.write_at(Rc::new(block), 0)
            .await
            .map_err(|e| PersistError::io("write", path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| PersistError::io("fdatasync", path, e))?;
        Ok(file)
    }

    async fn sync_dir(&self) -> Result<(), PersistError> {
        self.layer
            .sync_dir(&self.dir)
            .await
            .map_err(|e| PersistError::io("fsync dir", &self.dir, e))
    }

    /// Removes `.tmp` files and files older than the live one: the unfinished
    /// or unfinished-cleanup steps of a compaction a crash interrupted.
    async fn remove_leftovers(
        &self,
        listing: &Listing,
        live_seq: Option<u64>,
    ) -> Result<Vec<PathBuf>, PersistError> {
        let mut removed = Vec::new();
        for &seq in &listing.tmp {
            removed.push(file_path(&self.dir, seq, true));
        }
        for &seq in &listing.complete {
            if Some(seq) != live_seq {
                removed.push(file_path(&self.dir, seq, false));
            }
        }
        for path in &removed {
            self.layer
                .remove(path)
                .await
                .map_err(|e| PersistError::io("remove", path, e))?;
        }
        if !removed.is_empty() {
            self.sync_dir().await?;
        }
        Ok(removed)
    }
}

/// Operators learn from the log what recovery cut or dropped.
fn log_report(report: &RecoveryReport) {
    if report.torn_tail_bytes > 0 {
        tracing::warn!(
            file = %report.file.display(),
            torn_tail_bytes = report.torn_tail_bytes,
            "cut an unfinished write off the end of the segment file"
        );
    }
    if let Some(torn) = &report.torn_group {
        tracing::warn!(
            file = %report.file.display(),
            offset = torn.offset,
            bytes = torn.bytes,
            cause = %torn.cause,
            commits = torn.commits_identified,
            seq_first = ?torn.seq_first,
            seq_last = ?torn.seq_last,
            saved_to = ?report.torn_group_saved_to,
            "the last fdatasync group is missing a commit: cut there, later commits of the group saved"
        );
    }
    if let Some(dropped) = &report.dropped {
        tracing::error!(
            file = %report.file.display(),
            offset = dropped.offset,
            bytes = dropped.bytes,
            cause = %dropped.cause,
            commits = dropped.commits_identified,
            records = dropped.records_identified,
            seq_first = ?dropped.seq_first,
            seq_last = ?dropped.seq_last,
            saved_to = ?report.dropped_saved_to,
            "tolerant open dropped damaged data"
        );
    }
    for path in &report.removed_files {
        tracing::info!(file = %path.display(), "removed leftover of an interrupted compaction");
    }
}

/// A segment the format cannot describe is refused before any byte is written.
fn check_limits(meta: &[u64], data: &[u8]) -> Result<(), PersistError> {
    let records = meta.len() as u64 / META_WORDS_PER_RECORD;
    if records > SEGMENT_RECORDS_MAX {
        return Err(PersistError::SegmentTooLarge {
            what: "records",
            len: records,
            max: SEGMENT_RECORDS_MAX,
        });
    }
    if data.len() as u64 > SEGMENT_DATA_BYTES_MAX {
        return Err(PersistError::SegmentTooLarge {
            what: "data bytes",
            len: data.len() as u64,
            max: SEGMENT_DATA_BYTES_MAX,
        });
    }
    Ok(())
}

/// Writes the commits of one fdatasync group, its DMA writes in flight
/// together (at most `in_flight_max`), each buffer filled while the ones
/// before it are on their way.
struct GroupWriter<'f, F: LogFile> {
    file: &'f F,
    path: &'f Path,
    file_seq: u64,
    /// Written into every footer of the group: where the group begins.
    sync_group: Option<u64>,
    in_flight_max: usize,
    /// Give the reactor a turn after queuing each write (see
    /// [`WRITE_SUBMIT_PAUSE`]), so each write starts while the next buffer
    /// is filled: for a caller waiting on the whole group. A flight's
    /// writes go out together at the next turn instead (a pause would cost
    /// the core a turn each).
    pause_after_write: bool,
}

impl<F: LogFile> GroupWriter<'_, F> {
    /// One fdatasync group from start to durable: cuts the file back to
    /// `truncate_to` first (bytes a failed group may have left), writes the
    /// segments from `start` on, then fdatasyncs. Returns the position
    /// after the last commit.
    async fn write_synced<'a>(
        &self,
        truncate_to: Option<u64>,
        start: LogPosition,
        segments: impl IntoIterator<Item = (&'a [u64], &'a [u8])>,
    ) -> Result<LogPosition, PersistError> {
        if let Some(end) = truncate_to {
            assert_eq!(end, start.end, "a group starts where the file is cut");
            self.file
                .truncate(end)
                .await
                .map_err(|e| PersistError::io("truncate", self.path, e))?;
        }
        let after = self.write(start, segments).await?;
        self.file
            .fdatasync()
            .await
            .map_err(|e| PersistError::io("fdatasync", self.path, e))?;
        Ok(after)
    }

    /// Writes each segment as a commit from `start` on and returns the
    /// position after the last. Every write issued has completed when this
    /// returns, whatever the outcome, so the caller may truncate the file
    /// at once; on an error no further write is issued and the first error
    /// is returned.
    async fn write<'a>(
        &self,
        start: LogPosition,
        segments: impl IntoIterator<Item = (&'a [u64], &'a [u8])>,
    ) -> Result<LogPosition, PersistError> {
        assert!((1..=FLUSH_WRITES_IN_FLIGHT_MAX).contains(&self.in_flight_max));
        let file = self.file;
        let mut slots = pin!(std::array::from_fn::<_, FLUSH_WRITES_IN_FLIGHT_MAX, _>(
            |_| None
        ));
        let mut io_error: Option<io::Error> = None;
        let mut limit_error = None;
        let mut at = start;
        'segments: for (meta, data) in segments {
            if let Err(error) = check_limits(meta, data) {
                limit_error = Some(error);
                break;
            }
            let commit = EncodedCommit::new(
                at.last_seq + 1,
                at.end,
                at.commit_index,
                self.file_seq,
                self.sync_group,
                meta,
                data,
            );
            let mut written = 0u64;
            while written < commit.len() {
                let slot = poll_fn(|cx| {
                    reap(slots.as_mut(), cx, &mut io_error);
                    match free_slot(slots.as_mut(), self.in_flight_max) {
                        Some(slot) => Poll::Ready(slot),
                        None => Poll::Pending,
                    }
                })
                .await;
                if io_error.is_some() {
                    break 'segments;
                }
                let chunk = (commit.len() - written).min(WRITE_CHUNK_BYTES as u64);
                let mut buf = file.alloc_buffer(chunk as usize);
                commit.fill(written, buf.as_bytes_mut());
                slot_at(slots.as_mut(), slot)
                    .set(Some(file.write_at(Rc::new(buf), at.end + written)));
                written += chunk;
                if self.in_flight_max > 1 && self.pause_after_write {
                    // Queue the write in the ring now (its first poll), then
                    // let the executor reach its reactor, which alone hands
                    // queued IO to the kernel: otherwise the device would sit
                    // idle until every slot is filled and this task waits.
                    poll_fn(|cx| {
                        reap(slots.as_mut(), cx, &mut io_error);
                        Poll::Ready(())
                    })
                    .await;
                    glommio::timer::sleep(WRITE_SUBMIT_PAUSE).await;
                }
            }
            at = LogPosition {
                end: at.end + commit.len(),
                commit_index: at.commit_index + 1,
                last_seq: at.last_seq + 1,
            };
        }
        // Wait for every write issued, failed or not: bytes still on their
        // way must not land after the next append truncated the tail.
        poll_fn(|cx| {
            reap(slots.as_mut(), cx, &mut io_error);
            if free_slot_count(slots.as_ref()) == FLUSH_WRITES_IN_FLIGHT_MAX {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        if let Some(error) = io_error {
            return Err(PersistError::io("write", self.path, error));
        }
        if let Some(error) = limit_error {
            return Err(error);
        }
        Ok(at)
    }
}

/// The live file once no flight holds it (every one has landed).
fn unshared<F>(file: Rc<F>) -> F {
    Rc::into_inner(file).expect("no flight holds the file")
}

/// Slot `index` of a pinned array of in-flight writes, pinned itself.
fn slot_at<T, const N: usize>(
    slots: Pin<&mut [Option<T>; N]>,
    index: usize,
) -> Pin<&mut Option<T>> {
    // SAFETY: structural pinning of the array's elements: an element is
    // never moved out of the pinned array, only replaced in place through
    // `Pin::set` (which drops the old value where it lies).
    unsafe { slots.map_unchecked_mut(|slots| &mut slots[index]) }
}

/// Polls every write in flight once (a new one is thereby handed to the
/// ring); frees the slots of those done and keeps the first error.
fn reap<T, const N: usize>(
    mut slots: Pin<&mut [Option<T>; N]>,
    cx: &mut Context<'_>,
    first_error: &mut Option<io::Error>,
) where
    T: Future<Output = io::Result<()>>,
{
    for index in 0..N {
        let mut slot = slot_at(slots.as_mut(), index);
        let Some(write) = slot.as_mut().as_pin_mut() else {
            continue;
        };
        if let Poll::Ready(result) = write.poll(cx) {
            slot.set(None);
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
    }
}

fn free_slot<T, const N: usize>(slots: Pin<&mut [Option<T>; N]>, limit: usize) -> Option<usize> {
    let in_flight = N - free_slot_count(slots.as_ref());
    if in_flight >= limit {
        return None;
    }
    slots.iter().position(Option::is_none)
}

fn free_slot_count<T, const N: usize>(slots: Pin<&[Option<T>; N]>) -> usize {
    slots.iter().filter(|slot| slot.is_none()).count()
}

/// Tolerant mode never destroys evidence: the dropped bytes go to a side
/// file next to the segment file before the segment file is cut.
fn save_dropped(
    path: &Path,
    file: &fs::File,
    dropped: &DroppedRange,
) -> Result<PathBuf, PersistError> {
    use std::io::{Read, Seek, SeekFrom};
    let side = path.with_extension(format!("dropped-{}", dropped.offset));
    let mut source = file
        .try_clone()
        .map_err(|e| PersistError::io("dup", path, e))?;
    source
        .seek(SeekFrom::Start(dropped.offset))
        .map_err(|e| PersistError::io("seek", path, e))?;
    let mut out = fs::File::create(&side).map_err(|e| PersistError::io("create", &side, e))?;
    std::io::copy(&mut source.take(dropped.bytes), &mut out)
        .map_err(|e| PersistError::io("copy", &side, e))?;
    out.sync_all()
        .map_err(|e| PersistError::io("fsync", &side, e))?;
    Ok(side)
}

fn file_path(dir: &Path, file_seq: u64, tmp: bool) -> PathBuf {
    let tmp = if tmp { TMP_SUFFIX } else { "" };
    dir.join(format!("{FILE_PREFIX}{file_seq:016x}{FILE_SUFFIX}{tmp}"))
}

struct Listing {
    complete: Vec<u64>,
    tmp: Vec<u64>,
}

fn list_dir(dir: &Path) -> Result<Listing, PersistError> {
    let mut listing = Listing {
        complete: Vec::new(),
        tmp: Vec::new(),
    };
    let entries = fs::read_dir(dir).map_err(|e| PersistError::io("read dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| PersistError::io("read dir", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(FILE_PREFIX) else {
            continue;
        };
        let (digits, tmp) = match rest.strip_suffix(TMP_SUFFIX) {
            Some(rest) => (rest.strip_suffix(FILE_SUFFIX), true),
            None => (rest.strip_suffix(FILE_SUFFIX), false),
        };
        let Some(seq) = digits.and_then(|d| u64::from_str_radix(d, 16).ok()) else {
            continue;
        };
        if tmp {
            listing.tmp.push(seq);
        } else {
            listing.complete.push(seq);
        }
    }
    listing.complete.sort_unstable();
    listing.tmp.sort_unstable();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::file_io::DmaLayer;
    use crate::persist::format::{
        commit_bytes, Footer, SegmentHeader, FILE_HEADER_BYTES, FOOTER_BYTES,
    };

    fn run<T: 'static>(future: impl std::future::Future<Output = T> + 'static) -> T {
        glommio::LocalExecutorBuilder::default()
            .io_memory(512 << 10)
            .make()
            .expect("executor")
            .run(future)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tessera-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The footers of a file image, oldest first.
    fn footers(image: &[u8]) -> Vec<Footer> {
        let mut found = Vec::new();
        let mut pos = FILE_HEADER_BLOCK_BYTES as usize;
        while pos < image.len() {
            let header: SegmentHeader = bytemuck::pod_read_unaligned(&image[pos..pos + 64]);
            let len = commit_bytes(header.meta_bytes, header.data_bytes);
            let end = pos + len as usize;
            found.push(bytemuck::pod_read_unaligned(
                &image[end - FOOTER_BYTES..end],
            ));
            pos = end;
        }
        found
    }

    /// A file written before sync groups (no feature bit, flagless
    /// footers) opens, takes appends in its own format, one write at a time,
    /// and a compaction turns it into a file with sync groups.
    #[test]
    fn a_file_from_before_sync_groups_stays_in_its_format_until_compacted() {
        let dir = temp_dir("old-format");
        let path = file_path(&dir, 1, false);
        let mut header = FileHeader::new(0, 1, 0);
        header.features = 0;
        header.header_xxh3 = header.compute_xxh3();
        let mut image = vec![0u8; FILE_HEADER_BLOCK_BYTES as usize];
        image[..FILE_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
        let meta = [3u64, 0];
        let data = b"old";
        let commit = EncodedCommit::new(1, FILE_HEADER_BLOCK_BYTES, 0, 1, None, &meta, data);
        let start = image.len();
        image.resize(start + commit.len() as usize, 0);
        commit.fill(0, &mut image[start..]);
        fs::write(&path, &image).unwrap();

        let test_dir = dir.clone();
        run(async move {
            let (mut log, mapped, report) = SegmentLog::open(DmaLayer, &test_dir, 0, false)
                .await
                .unwrap();
            assert_eq!(report.segments, 1);
            assert_eq!(mapped.segment(0), (&meta[..], &data[..]));
            drop(mapped);
            let big = vec![7u8; WRITE_CHUNK_BYTES + 5000];
            let segments = [(&meta[..], &data[..]), (&meta[..], &big[..])];
            assert_eq!(log.append_all(segments).await.unwrap(), 3);
            let image = fs::read(log.path()).unwrap();
            let found = footers(&image);
            assert_eq!(found.len(), 3);
            assert!(found
                .iter()
                .all(|f| !f.has_sync_group() && f.check().is_ok()));
            log.close().await.unwrap();

            let (mut log, _, report) = SegmentLog::open(DmaLayer, &test_dir, 0, false)
                .await
                .unwrap();
            assert_eq!((report.segments, report.torn_tail_bytes), (3, 0));
            log.rewrite([(&meta[..], &data[..])]).await.unwrap();
            log.append_all([(&meta[..], &data[..]), (&meta[..], &data[..])])
                .await
                .unwrap();
            let image = fs::read(log.path()).unwrap();
            let header: FileHeader = bytemuck::pod_read_unaligned(&image[..FILE_HEADER_BYTES]);
            assert!(header.sync_groups());
            let found = footers(&image);
            assert_eq!(found.len(), 3);
            // The two appended together name the first of them.
            assert_eq!(found[1].sync_group_start(), found[1].segment_offset);
            assert_eq!(found[2].sync_group_start(), found[1].segment_offset);
            log.close().await.unwrap();
        });
        fs::remove_dir_all(&dir).unwrap();
    }
}
