//! The on-disk structures of a segment file, byte for byte (see
//! `docs/FORMAT.md`, which this module must match).
//!
//! A file is a 4 KiB file header followed by commits. A commit is one
//! persisted segment followed by its footer and is padded with zeros so that
//! the footer's last byte ends on a 4 KiB boundary: every commit starts and
//! ends aligned, which is what O_DIRECT needs, and the footer of the newest
//! commit always sits in the last 128 bytes of some 4 KiB block, which is
//! what lets recovery find it by stepping back from the end of the file.
//!
//! All integers are little-endian. The fixed structures are `#[repr(C)]`
//! `Pod` types cast with `bytemuck`, so the byte layout is the in-memory
//! layout; that is only correct on a little-endian machine, which the
//! compile-time assertion below enforces rather than converting every field.

use bytemuck::{Pod, Zeroable};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

// The structures below are cast to and from bytes without conversion.
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the on-disk format is little-endian"
);

/// Format version written into every file header and footer.
pub const FORMAT_VERSION: u32 = 1;
/// Commit boundary: the largest logical block size of the devices we target,
/// so every commit is a valid O_DIRECT write on all of them.
pub const BLOCK_BYTES: u64 = 4096;
/// The file header occupies one whole block.
pub const FILE_HEADER_BLOCK_BYTES: u64 = BLOCK_BYTES;
pub const FILE_HEADER_BYTES: usize = 64;
pub const SEGMENT_HEADER_BYTES: usize = 64;
pub const FOOTER_BYTES: usize = 128;
/// The engine stores two u64 per record in a segment's `meta` array.
pub const META_WORDS_PER_RECORD: u64 = 2;
/// Hard limits of one persisted segment; they bound every length read back
/// from disk before it is used for arithmetic or slicing.
pub const SEGMENT_RECORDS_MAX: u64 = 1 << 30;
pub const SEGMENT_DATA_BYTES_MAX: u64 = 1 << 36;

pub const FILE_MAGIC: u64 = u64::from_le_bytes(*b"TESSERA1");
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"TSSEGMNT");
pub const FOOTER_MAGIC: u64 = u64::from_le_bytes(*b"TSFOOTER");

/// `FileHeader::features` bit: every footer of the file carries
/// [`FOOTER_FLAG_SYNC_GROUP`], so the commits of one fdatasync may have been
/// written concurrently. A file header is checked to hold no unknown bit,
/// so a build that predates a feature refuses the file instead of misreading
/// it (an older build would take the flagged footers for a torn tail).
pub const FILE_FEATURE_SYNC_GROUPS: u64 = 1;
/// Every feature bit this build reads.
pub const FILE_FEATURES_KNOWN: u64 = FILE_FEATURE_SYNC_GROUPS;
/// `Footer::flags` bit: `sync_group_offset` holds the file offset where the
/// group of commits written together before one fdatasync began.
pub const FOOTER_FLAG_SYNC_GROUP: u32 = 1;

/// First 64 bytes of a segment file; the rest of block 0 is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct FileHeader {
    pub magic: u64,
    pub format_version: u32,
    /// The core whose directory holds this file.
    pub core: u32,
    /// Number in the file name; grows with every compaction.
    pub file_seq: u64,
    /// Sequence number the first commit of this file will carry at least.
    pub base_seq: u64,
    /// `FILE_FEATURE_*` bits; zero in files written before features existed.
    pub features: u64,
    pub reserved: [u64; 2],
    /// xxh3 of the 56 bytes above.
    pub header_xxh3: u64,
}

/// Precedes a segment's `meta` and `data` arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct SegmentHeader {
    pub magic: u64,
    pub format_version: u32,
    pub flags: u32,
    pub seq: u64,
    pub record_count: u64,
    pub meta_bytes: u64,
    pub data_bytes: u64,
    pub reserved: [u64; 2],
}

/// Ends a commit; its last byte is the last byte of a 4 KiB block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct Footer {
    pub magic: u64,
    pub format_version: u32,
    pub flags: u32,
    /// Commit sequence number, strictly increasing within a core.
    pub seq: u64,
    /// Offset of this commit's segment header; also the end of the previous
    /// commit (commits are contiguous), so the footer chain is implicit.
    pub segment_offset: u64,
    /// Whole commit including padding and this footer.
    pub commit_bytes: u64,
    pub record_count: u64,
    pub meta_bytes: u64,
    pub data_bytes: u64,
    pub header_xxh3: u64,
    pub meta_xxh3: u64,
    pub data_xxh3: u64,
    /// 0-based position of this commit in its file.
    pub commit_index: u64,
    pub file_seq: u64,
    /// With [`FOOTER_FLAG_SYNC_GROUP`]: where the group of commits this one
    /// was written with (concurrently, before one fdatasync) begins. Any of
    /// them may be missing after a crash while later ones landed, so
    /// recovery reads damage at or after this offset as a torn tail. Zero
    /// without the flag (files written before the feature).
    pub sync_group_offset: u64,
    pub reserved: u64,
    /// xxh3 of the 120 bytes above.
    pub footer_xxh3: u64,
}

const _: () = assert!(std::mem::size_of::<FileHeader>() == FILE_HEADER_BYTES);
const _: () = assert!(std::mem::size_of::<SegmentHeader>() == SEGMENT_HEADER_BYTES);
const _: () = assert!(std::mem::size_of::<Footer>() == FOOTER_BYTES);
const _: () = assert!(FILE_HEADER_BLOCK_BYTES % BLOCK_BYTES == 0);

pub fn align_up(value: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    (value + align - 1) & !(align - 1)
}

pub fn align_down(value: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    value & !(align - 1)
}

/// Bytes of a commit holding `meta_bytes` + `data_bytes`, padding included.
pub fn commit_bytes(meta_bytes: u64, data_bytes: u64) -> u64 {
    align_up(
        SEGMENT_HEADER_BYTES as u64 + meta_bytes + data_bytes + FOOTER_BYTES as u64,
        BLOCK_BYTES,
    )
}

impl FileHeader {
    pub fn new(core: u32, file_seq: u64, base_seq: u64) -> Self {
        let mut header = FileHeader {
            magic: FILE_MAGIC,
            format_version: FORMAT_VERSION,
            core,
            file_seq,
            base_seq,
            features: FILE_FEATURE_SYNC_GROUPS,
            reserved: [0; 2],
            header_xxh3: 0,
        };
        header.header_xxh3 = header.compute_xxh3();
        header
    }

    pub fn compute_xxh3(&self) -> u64 {
        xxh3_64(&bytemuck::bytes_of(self)[..FILE_HEADER_BYTES - 8])
    }

    /// Whether the file's footers carry sync groups (and its commits may be
    /// written concurrently).
    pub fn sync_groups(&self) -> bool {
        self.features & FILE_FEATURE_SYNC_GROUPS != 0
    }
}

impl SegmentHeader {
    pub fn new(seq: u64, meta: &[u64], data: &[u8]) -> Self {
        assert_eq!(
            meta.len() as u64 % META_WORDS_PER_RECORD,
            0,
            "meta holds whole records"
        );
        let header = SegmentHeader {
            magic: SEGMENT_MAGIC,
            format_version: FORMAT_VERSION,
            flags: 0,
            seq,
            record_count: meta.len() as u64 / META_WORDS_PER_RECORD,
            meta_bytes: meta.len() as u64 * 8,
            data_bytes: data.len() as u64,
            reserved: [0; 2],
        };
        header.assert_valid();
        header
    }

    /// The invariants a header must satisfy before it is written.
    pub fn assert_valid(&self) {
        assert!(self.check().is_ok(), "invalid segment header {self:?}");
    }

    /// The invariants a header read back must satisfy; `Err` names the first
    /// one broken.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.magic != SEGMENT_MAGIC {
            return Err("segment header magic");
        }
        if self.format_version != FORMAT_VERSION {
            return Err("segment header version");
        }
        if self.flags != 0 || self.reserved != [0; 2] {
            return Err("segment header reserved bits set");
        }
        if self.record_count > SEGMENT_RECORDS_MAX {
            return Err("segment record count over limit");
        }
        if self.meta_bytes != self.record_count * META_WORDS_PER_RECORD * 8 {
            return Err("segment meta length disagrees with record count");
        }
        if self.data_bytes > SEGMENT_DATA_BYTES_MAX {
            return Err("segment data length over limit");
        }
        Ok(())
    }
}

impl Footer {
    pub fn has_sync_group(&self) -> bool {
        self.flags & FOOTER_FLAG_SYNC_GROUP != 0
    }

    /// Where the group of commits that may have been in flight with this
    /// one begins: its own commit when the footer predates sync groups
    /// (commits were then written strictly one after the other).
    pub fn sync_group_start(&self) -> u64 {
        if self.has_sync_group() {
            self.sync_group_offset
        } else {
            self.segment_offset
        }
    }

    pub fn compute_xxh3(&self) -> u64 {
        xxh3_64(&bytemuck::bytes_of(self)[..FOOTER_BYTES - 8])
    }

    /// Structural invariants that need no other bytes of the file; the
    /// caller also checks it sits where it claims (`segment_offset +
    /// commit_bytes` = its own end).
    pub fn check(&self) -> Result<(), &'static str> {
        if self.magic != FOOTER_MAGIC {
            return Err("footer magic");
        }
        if self.footer_xxh3 != self.compute_xxh3() {
            return Err("footer checksum");
        }
        if self.format_version != FORMAT_VERSION {
            return Err("footer version");
        }
        if self.flags & !FOOTER_FLAG_SYNC_GROUP != 0 || self.reserved != 0 {
            return Err("footer reserved bits set");
        }
        if self.segment_offset % BLOCK_BYTES != 0 || self.segment_offset < FILE_HEADER_BLOCK_BYTES {
            return Err("footer segment offset misaligned");
        }
        if self.has_sync_group() {
            if self.sync_group_offset % BLOCK_BYTES != 0
                || self.sync_group_offset < FILE_HEADER_BLOCK_BYTES
                || self.sync_group_offset > self.segment_offset
            {
                return Err("footer sync group offset out of range");
            }
        } else if self.sync_group_offset != 0 {
            return Err("footer sync group offset set without its flag");
        }
        if self.record_count > SEGMENT_RECORDS_MAX
            || self.meta_bytes != self.record_count * META_WORDS_PER_RECORD * 8
            || self.data_bytes > SEGMENT_DATA_BYTES_MAX
        {
            return Err("footer lengths out of range");
        }
        if self.commit_bytes != commit_bytes(self.meta_bytes, self.data_bytes) {
            return Err("footer commit length disagrees with segment lengths");
        }
        Ok(())
    }
}

/// One commit ready to be written: its fixed structures computed, its
/// arrays borrowed. Bytes are produced chunk by chunk with [`fill`] so a
/// commit of any size streams through one reusable aligned buffer.
///
/// [`fill`]: EncodedCommit::fill
pub struct EncodedCommit<'a> {
    pub header: SegmentHeader,
    pub footer: Footer,
    meta: &'a [u8],
    data: &'a [u8],
}

impl<'a> EncodedCommit<'a> {
    /// `sync_group` is where this commit's fdatasync group begins, for a
    /// file with [`FILE_FEATURE_SYNC_GROUPS`]; `None` in an older file.
    pub fn new(
        seq: u64,
        segment_offset: u64,
        commit_index: u64,
        file_seq: u64,
        sync_group: Option<u64>,
        meta: &'a [u64],
        data: &'a [u8],
    ) -> Self {
        assert_eq!(segment_offset % BLOCK_BYTES, 0, "commits start on a block");
        assert!(segment_offset >= FILE_HEADER_BLOCK_BYTES);
        let header = SegmentHeader::new(seq, meta, data);
        let meta: &[u8] = bytemuck::cast_slice(meta);
        let footer = make_footer(
            &header,
            segment_offset,
            commit_index,
            file_seq,
            sync_group,
            xxh3_64(meta),
            xxh3_64(data),
        );
        EncodedCommit {
            header,
            footer,
            meta,
            data,
        }
    }

    pub fn len(&self) -> u64 {
        self.footer.commit_bytes
    }

    /// Writes the commit's bytes `[from, from + out.len())` into `out`.
    pub fn fill(&self, from: u64, out: &mut [u8]) {
        assert!(from + out.len() as u64 <= self.len());
        let padding = self.len()
            - (SEGMENT_HEADER_BYTES + FOOTER_BYTES + self.meta.len() + self.data.len()) as u64;
        // Every byte of `out` lies in exactly one part, so each is written
        // once: copied, or zeroed for the padding (a DMA buffer is not
        // zeroed when allocated).
        let mut part_start = 0u64;
        let parts: [(&[u8], u64); 5] = [
            (
                bytemuck::bytes_of(&self.header),
                SEGMENT_HEADER_BYTES as u64,
            ),
            (self.meta, self.meta.len() as u64),
            (self.data, self.data.len() as u64),
            (&[], padding),
            (bytemuck::bytes_of(&self.footer), FOOTER_BYTES as u64),
        ];
        let to = from + out.len() as u64;
        for (bytes, part_len) in parts {
            let part_end = part_start + part_len;
            let lo = part_start.max(from);
            let hi = part_end.min(to);
            if lo < hi {
                let target = &mut out[(lo - from) as usize..(hi - from) as usize];
                if bytes.is_empty() {
                    target.fill(0);
                } else {
                    target.copy_from_slice(
                        &bytes[(lo - part_start) as usize..(hi - part_start) as usize],
                    );
                }
            }
            part_start = part_end;
        }
        assert_eq!(part_start, self.len(), "the parts cover the commit");
    }
}

/// A commit produced front to back in chunks across many calls, hashing
/// `meta` and `data` as they stream past, so neither the copy nor the
/// checksums of a large segment happen in one go (bounded compaction steps).
/// The arrays must be the same on every call.
pub struct CommitStream {
    header: SegmentHeader,
    segment_offset: u64,
    commit_index: u64,
    file_seq: u64,
    sync_group: Option<u64>,
    total: u64,
    written: u64,
    meta_hasher: Xxh3,
    data_hasher: Xxh3,
    footer: Option<Footer>,
}

impl CommitStream {
    /// `sync_group` as for [`EncodedCommit::new`].
    pub fn new(
        seq: u64,
        segment_offset: u64,
        commit_index: u64,
        file_seq: u64,
        sync_group: Option<u64>,
        meta: &[u64],
        data: &[u8],
    ) -> Self {
        assert_eq!(segment_offset % BLOCK_BYTES, 0, "commits start on a block");
        assert!(segment_offset >= FILE_HEADER_BLOCK_BYTES);
        let header = SegmentHeader::new(seq, meta, data);
        CommitStream {
            total: commit_bytes(header.meta_bytes, header.data_bytes),
            header,
            segment_offset,
            commit_index,
            file_seq,
            sync_group,
            written: 0,
            meta_hasher: Xxh3::new(),
            data_hasher: Xxh3::new(),
            footer: None,
        }
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn is_done(&self) -> bool {
        self.written == self.total
    }

    /// The footer, once the whole commit has been produced.
    pub fn footer(&self) -> Option<&Footer> {
        self.footer.as_ref()
    }

    /// Produces the next `out.len()` bytes of the commit.
    pub fn fill_next(&mut self, meta: &[u64], data: &[u8], out: &mut [u8]) {
        let meta: &[u8] = bytemuck::cast_slice(meta);
        assert_eq!(
            meta.len() as u64,
            self.header.meta_bytes,
            "same arrays on every call"
        );
        assert_eq!(
            data.len() as u64,
            self.header.data_bytes,
            "same arrays on every call"
        );
        let from = self.written;
        let to = from + out.len() as u64;
        assert!(to <= self.total);
        let header_end = SEGMENT_HEADER_BYTES as u64;
        let meta_end = header_end + meta.len() as u64;
        let data_end = meta_end + data.len() as u64;
        let footer_start = self.total - FOOTER_BYTES as u64;
        // Only the padding is zeroed: every other byte is copied below, so
        // each byte of `out` is written once (a DMA buffer is not zeroed
        // when allocated), as in `EncodedCommit::fill`.
        let (pad_lo, pad_hi) = (data_end.max(from), footer_start.min(to));
        if pad_lo < pad_hi {
            out[(pad_lo - from) as usize..(pad_hi - from) as usize].fill(0);
        }
        let mut copy = |part: &[u8], part_start: u64, hasher: Option<&mut Xxh3>| {
            let lo = part_start.max(from);
            let hi = (part_start + part.len() as u64).min(to);
            if lo < hi {
                let bytes = &part[(lo - part_start) as usize..(hi - part_start) as usize];
                out[(lo - from) as usize..(hi - from) as usize].copy_from_slice(bytes);
                if let Some(hasher) = hasher {
                    hasher.update(bytes);
                }
            }
        };
        copy(bytemuck::bytes_of(&self.header), 0, None);
        copy(meta, header_end, Some(&mut self.meta_hasher));
        copy(data, meta_end, Some(&mut self.data_hasher));
        if to > footer_start {
            // Every meta and data byte precedes the footer, so the hashes
            // are final by the time its first byte is due.
            assert!(data_end <= footer_start);
            let footer = *self.footer.get_or_insert_with(|| {
                make_footer(
                    &self.header,
                    self.segment_offset,
                    self.commit_index,
                    self.file_seq,
                    self.sync_group,
                    self.meta_hasher.digest(),
                    self.data_hasher.digest(),
                )
            });
            copy(bytemuck::bytes_of(&footer), footer_start, None);
        }
        self.written = to;
    }
}

fn make_footer(
    header: &SegmentHeader,
    segment_offset: u64,
    commit_index: u64,
    file_seq: u64,
    sync_group: Option<u64>,
    meta_xxh3: u64,
    data_xxh3: u64,
) -> Footer {
    let mut footer = Footer {
        magic: FOOTER_MAGIC,
        format_version: FORMAT_VERSION,
        flags: if sync_group.is_some() {
            FOOTER_FLAG_SYNC_GROUP
        } else {
            0
        },
        seq: header.seq,
        segment_offset,
        commit_bytes: commit_bytes(header.meta_bytes, header.data_bytes),
        record_count: header.record_count,
        meta_bytes: header.meta_bytes,
        data_bytes: header.data_bytes,
        header_xxh3: xxh3_64(bytemuck::bytes_of(header)),
        meta_xxh3,
        data_xxh3,
        commit_index,
        file_seq,
        sync_group_offset: sync_group.unwrap_or(0),
        reserved: 0,
        footer_xxh3: 0,
    };
    footer.footer_xxh3 = footer.compute_xxh3();
    assert_eq!(footer.check(), Ok(()), "footer invariants before write");
    footer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_block_aligned_and_footer_ends_it() {
        let meta = [1u64, 2, 3, 4];
        let data = b"hello world";
        let commit = EncodedCommit::new(7, BLOCK_BYTES, 0, 1, Some(BLOCK_BYTES), &meta, data);
        assert_eq!(commit.len(), BLOCK_BYTES);
        let mut whole = vec![0u8; commit.len() as usize];
        commit.fill(0, &mut whole);
        let footer: Footer = bytemuck::pod_read_unaligned(&whole[whole.len() - FOOTER_BYTES..]);
        assert_eq!(footer, commit.footer);
        assert_eq!(footer.check(), Ok(()));
        assert_eq!(&whole[64..64 + 32], bytemuck::cast_slice::<u64, u8>(&meta));
        assert_eq!(&whole[96..96 + data.len()], data);
    }

    #[test]
    fn chunked_fill_equals_whole_fill() {
        let meta: Vec<u64> = (0..1000).collect();
        let data: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
        let commit = EncodedCommit::new(1, BLOCK_BYTES, 0, 1, None, &meta, &data);
        let mut whole = vec![0u8; commit.len() as usize];
        commit.fill(0, &mut whole);
        // Whatever a buffer held before, the padding comes out zero.
        let mut chunked = vec![0xa5u8; commit.len() as usize];
        for (i, chunk) in chunked.chunks_mut(4096).enumerate() {
            commit.fill(i as u64 * 4096, chunk);
        }
        assert_eq!(whole, chunked);
    }

    #[test]
    fn streamed_commit_equals_encoded_commit() {
        let meta: Vec<u64> = (0..3000).collect();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 13) as u8).collect();
        let commit = EncodedCommit::new(9, 2 * BLOCK_BYTES, 3, 4, Some(BLOCK_BYTES), &meta, &data);
        let mut whole = vec![0u8; commit.len() as usize];
        commit.fill(0, &mut whole);
        let mut stream =
            CommitStream::new(9, 2 * BLOCK_BYTES, 3, 4, Some(BLOCK_BYTES), &meta, &data);
        assert_eq!(stream.len(), commit.len());
        // Garbage first, as a DMA buffer holds: every byte must be written.
        let mut streamed = vec![0xa5u8; stream.len() as usize];
        for chunk in streamed.chunks_mut(4096 * 3) {
            stream.fill_next(&meta, &data, chunk);
        }
        assert!(stream.is_done());
        assert_eq!(stream.footer(), Some(&commit.footer));
        assert_eq!(streamed, whole);
    }

    #[test]
    fn footer_check_rejects_flipped_bits() {
        for sync_group in [None, Some(BLOCK_BYTES)] {
            let commit = EncodedCommit::new(1, BLOCK_BYTES, 0, 1, sync_group, &[], &[]);
            let bytes = bytemuck::bytes_of(&commit.footer);
            for bit in 0..FOOTER_BYTES * 8 {
                let mut copy = bytes.to_vec();
                copy[bit / 8] ^= 1 << (bit % 8);
                let footer: Footer = bytemuck::pod_read_unaligned(&copy);
                assert!(footer.check().is_err(), "bit {bit} undetected");
            }
        }
    }

    #[test]
    fn sync_group_field_sits_at_byte_104_and_defaults_to_the_own_commit() {
        let grouped = EncodedCommit::new(3, 3 * BLOCK_BYTES, 2, 1, Some(BLOCK_BYTES), &[], &[]);
        let bytes = bytemuck::bytes_of(&grouped.footer);
        assert_eq!(bytes[12..16], FOOTER_FLAG_SYNC_GROUP.to_le_bytes());
        assert_eq!(bytes[104..112], BLOCK_BYTES.to_le_bytes());
        assert_eq!(bytes[112..120], [0; 8]);
        assert_eq!(grouped.footer.sync_group_start(), BLOCK_BYTES);
        let single = EncodedCommit::new(3, 3 * BLOCK_BYTES, 2, 1, None, &[], &[]);
        assert_eq!(single.footer.flags, 0);
        assert_eq!(bytemuck::bytes_of(&single.footer)[104..120], [0; 16]);
        assert_eq!(single.footer.sync_group_start(), 3 * BLOCK_BYTES);
        // A group cannot begin after its own commit.
        let mut late = grouped.footer;
        late.sync_group_offset = 4 * BLOCK_BYTES;
        late.footer_xxh3 = late.compute_xxh3();
        assert!(late.check().is_err());
        let header = FileHeader::new(0, 1, 0);
        assert!(header.sync_groups());
        assert_eq!(
            bytemuck::bytes_of(&header)[32..40],
            FILE_FEATURE_SYNC_GROUPS.to_le_bytes()
        );
    }
}
