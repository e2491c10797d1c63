//! The writer of a compaction's output file, driven in bounded steps.
//!
//! A compaction copies the store's stack (a snapshot, oldest segment first)
//! into `seg-<n+1>.tsr.tmp`, one commit per segment, at most one
//! [`WRITE_CHUNK_BYTES`] write per call, hashing as it goes, so a step never
//! copies or checksums more than one chunk. Commits keep going to the live
//! file meanwhile. `segment_log` then installs the finished file (sync,
//! rename, directory fsync, delete the old file) or discards it.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::PersistError;
use super::file_io::LogFile;
use super::format::{CommitStream, FILE_HEADER_BLOCK_BYTES};
use super::segment_log::WRITE_CHUNK_BYTES;

pub struct CompactionWriter<F: LogFile> {
    pub(super) file: F,
    pub(super) tmp: PathBuf,
    pub(super) file_seq: u64,
    /// End of the last complete commit.
    pub(super) end: u64,
    pub(super) commit_index: u64,
    /// Highest sequence number written into the file.
    pub(super) last_seq: u64,
    stream: Option<CommitStream>,
}

impl<F: LogFile> CompactionWriter<F> {
    pub(super) fn new(file: F, tmp: PathBuf, file_seq: u64, base_seq: u64) -> Self {
        CompactionWriter {
            file,
            tmp,
            file_seq,
            end: FILE_HEADER_BLOCK_BYTES,
            commit_index: 0,
            last_seq: base_seq,
            stream: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.end + self.stream.as_ref().map_or(0, CommitStream::written)
    }

    /// Whether a segment's commit is partly written.
    pub fn in_segment(&self) -> bool {
        self.stream.is_some()
    }

    /// Writes the next chunk of the commit of (`meta`, `data`), starting it
    /// with sequence number `seq` if none is in progress. Returns true once
    /// the segment's commit is complete. Pass the same arrays until then.
    pub async fn write_step(
        &mut self,
        seq: u64,
        meta: &[u64],
        data: &[u8],
    ) -> Result<bool, PersistError> {
        let stream = self.stream.get_or_insert_with(|| {
            assert!(seq > self.last_seq, "sequence numbers increase");
            CommitStream::new(
                seq,
                self.end,
                self.commit_index,
                self.file_seq,
                // Written one at a time into a file that is synced whole
                // before it is renamed live: each commit is a group alone.
                Some(self.end),
                meta,
                data,
            )
        });
        let chunk = (stream.len() - stream.written()).min(WRITE_CHUNK_BYTES as u64) as usize;
        let position = self.end + stream.written();
        let mut buf = self.file.alloc_buffer(chunk);
        stream.fill_next(meta, data, buf.as_bytes_mut());
        self.file
            .write_at(Rc::new(buf), position)
            .await
            .map_err(|e| PersistError::io("write", &self.tmp, e))?;
        if !stream.is_done() {
            return Ok(false);
        }
        let footer = *stream.footer().expect("a finished commit has its footer");
        self.stream = None;
        self.end += footer.commit_bytes;
        self.commit_index += 1;
        self.last_seq = footer.seq;
        Ok(true)
    }

    /// Writes a whole segment (the few segments committed while the
    /// compaction ran, at its end).
    pub async fn write_segment(
        &mut self,
        seq: u64,
        meta: &[u64],
        data: &[u8],
    ) -> Result<(), PersistError> {
        assert!(self.stream.is_none());
        while !self.write_step(seq, meta, data).await? {}
        Ok(())
    }

    pub(super) async fn sync(&self) -> Result<(), PersistError> {
        assert!(self.stream.is_none(), "only whole commits are synced");
        self.file
            .fdatasync()
            .await
            .map_err(|e| PersistError::io("fdatasync", &self.tmp, e))
    }
}
