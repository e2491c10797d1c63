//! Recovery: deciding which prefix of a segment file is intact.
//!
//! Two passes over the mapped file, both pure functions of its bytes:
//!
//! 1. Backward (moss): starting at the last 4 KiB boundary, step back one
//!    block at a time until a footer whose whole commit verifies is found.
//!    Everything after it is the torn tail of a write that never finished
//!    (it was never acknowledged, since acknowledgement waits for
//!    fdatasync) and is cut off.
//! 2. Forward: walk the commits from the file header to that footer,
//!    verifying every structure, checksum, sequence number and padding byte.
//!    A failure here is damage *before* the tail: the file is refused with
//!    the offset of the damage, or, in tolerant mode, everything from the
//!    damage on is dropped and reported.
//!
//! The one exception is the last fdatasync group. The commits of one flush
//! are written concurrently, so a crash can leave a later one on disk and an
//! earlier one missing; the last valid footer says where its group began
//! (`sync_group_offset`), and damage at or after that offset is a torn tail
//! too: the file is cut there, the commits before it are kept, and the bytes
//! cut (which hold whole commits that did land) are reported so the caller
//! can save them. The price: a bit flip inside the last group also reads as
//! a torn tail, just as one inside the last commit always did, and the
//! commits after it are cut with it (saved, never served). Nothing in that
//! group was acknowledged unless its fdatasync returned, and a flip in
//! synced data can only be told from a write that never landed by a
//! checksum, which is exactly what both fail.
//!
//! Every byte up to the cut is covered by a checksum or checked to be zero,
//! so nothing unverified is ever handed to the engine.

use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use super::error::PersistError;
use super::format::{
    align_down, commit_bytes, FileHeader, Footer, SegmentHeader, BLOCK_BYTES, FILE_FEATURES_KNOWN,
    FILE_HEADER_BLOCK_BYTES, FILE_HEADER_BYTES, FILE_MAGIC, FOOTER_BYTES, FORMAT_VERSION,
    SEGMENT_HEADER_BYTES,
};

/// Where one verified segment's arrays lie in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentExtent {
    pub seq: u64,
    pub record_count: u64,
    pub meta_offset: u64,
    pub meta_bytes: u64,
    pub data_offset: u64,
    pub data_bytes: u64,
}

/// What tolerant mode threw away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedRange {
    /// First byte dropped (start of the first damaged commit).
    pub offset: u64,
    pub bytes: u64,
    /// The check that failed first, with its own offset.
    pub cause: String,
    /// Commits in the dropped range whose footers are still intact, and the
    /// records and sequence numbers those footers claim: what was lost, as
    /// far as the damaged file can still tell.
    pub commits_identified: u64,
    pub records_identified: u64,
    pub seq_first: Option<u64>,
    pub seq_last: Option<u64>,
}

/// The outcome of scanning one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub header: FileHeader,
    pub segments: Vec<SegmentExtent>,
    /// End of the last verified commit: the file is cut back to this.
    pub valid_end: u64,
    /// Bytes after the last valid footer (a write that never finished).
    pub torn_tail_bytes: u64,
    /// Set when the cut lies inside the last fdatasync group with commits of
    /// that group still intact after it (they landed before an earlier one
    /// did): what the cut threw away, for the caller to save. Part of
    /// `torn_tail_bytes`.
    pub torn_group: Option<DroppedRange>,
    pub dropped: Option<DroppedRange>,
}

impl Scan {
    pub fn last_seq(&self) -> u64 {
        self.segments
            .last()
            .map_or(self.header.base_seq, |segment| segment.seq)
    }
}

/// Scans a whole segment file; `bytes` is the file's content.
pub fn scan(bytes: &[u8], path: &Path, tolerant: bool) -> Result<Scan, PersistError> {
    let header = check_file_header(bytes, path)?;
    let sync_groups = header.sync_groups();
    let len = bytes.len() as u64;

    let mut tail_end = align_down(len, BLOCK_BYTES);
    let mut last_footer = None;
    while tail_end > FILE_HEADER_BLOCK_BYTES {
        match verify_commit_ending_at(bytes, tail_end, sync_groups, path) {
            Ok(footer) => {
                last_footer = Some(footer);
                break;
            }
            Err(_) => tail_end -= BLOCK_BYTES,
        }
    }
    let tail_end = tail_end.max(FILE_HEADER_BLOCK_BYTES);
    // Damage at or after this offset lies in the last fdatasync group.
    let group_start = last_footer.map_or(FILE_HEADER_BLOCK_BYTES, |f| f.sync_group_start());
    assert!(group_start <= tail_end);

    let mut segments = Vec::new();
    let mut pos = FILE_HEADER_BLOCK_BYTES;
    let mut prev_seq = header.base_seq;
    let mut group_start_seen = pos == group_start;
    let mut damage = None;
    while pos < tail_end {
        match verify_commit_at(bytes, pos, tail_end, sync_groups, path).and_then(|footer| {
            check_sequence(&footer, &header, segments.len() as u64, prev_seq, path).map(|()| footer)
        }) {
            Ok(footer) => {
                segments.push(extent_of(&footer));
                prev_seq = footer.seq;
                pos += footer.commit_bytes;
                group_start_seen |= pos == group_start;
            }
            Err(error) => {
                damage = Some(error);
                break;
            }
        }
    }
    assert!(pos <= tail_end);

    let mut torn_group = None;
    let dropped = match damage {
        None => None,
        Some(error) if pos >= group_start => {
            if !group_start_seen {
                // The footer's checksum vouches for the offset, so only a
                // writer bug puts it inside a commit: refuse, like damage.
                let offset = tail_end - FOOTER_BYTES as u64;
                let error = PersistError::Corrupted {
                    file: path.to_path_buf(),
                    offset,
                    reason: "sync group does not begin on a commit boundary",
                };
                if !tolerant {
                    return Err(error);
                }
                Some(describe_dropped(bytes, pos, error))
            } else {
                torn_group = Some(describe_dropped(bytes, pos, error));
                None
            }
        }
        Some(error) if !tolerant => return Err(error),
        Some(error) => Some(describe_dropped(bytes, pos, error)),
    };
    let torn_tail_bytes = if dropped.is_some() { 0 } else { len - pos };
    Ok(Scan {
        header,
        segments,
        valid_end: pos,
        torn_tail_bytes,
        torn_group,
        dropped,
    })
}

fn check_file_header(bytes: &[u8], path: &Path) -> Result<FileHeader, PersistError> {
    let corrupted = |offset, reason| PersistError::Corrupted {
        file: path.to_path_buf(),
        offset,
        reason,
    };
    if (bytes.len() as u64) < FILE_HEADER_BLOCK_BYTES {
        return Err(corrupted(0, "file shorter than its header block"));
    }
    let header: FileHeader = bytemuck::pod_read_unaligned(&bytes[..FILE_HEADER_BYTES]);
    if header.magic != FILE_MAGIC {
        return Err(corrupted(0, "not a tessera segment file (magic)"));
    }
    let got = header.compute_xxh3();
    if got != header.header_xxh3 {
        return Err(PersistError::ChecksumMismatch {
            file: path.to_path_buf(),
            offset: 0,
            what: "file header",
            expected: header.header_xxh3,
            got,
        });
    }
    if header.format_version != FORMAT_VERSION {
        return Err(PersistError::UnsupportedVersion {
            file: path.to_path_buf(),
            found: header.format_version,
            supported: FORMAT_VERSION,
        });
    }
    if header.features & !FILE_FEATURES_KNOWN != 0 || header.reserved != [0; 2] {
        return Err(corrupted(0, "file header reserved bits set"));
    }
    if let Some(at) = first_nonzero(&bytes[FILE_HEADER_BYTES..FILE_HEADER_BLOCK_BYTES as usize]) {
        return Err(corrupted(
            (FILE_HEADER_BYTES + at) as u64,
            "file header padding not zero",
        ));
    }
    Ok(header)
}

fn verify_commit_ending_at(
    bytes: &[u8],
    end: u64,
    sync_groups: bool,
    path: &Path,
) -> Result<Footer, PersistError> {
    let footer = read_footer(bytes, end - FOOTER_BYTES as u64, path)?;
    if footer.segment_offset + footer.commit_bytes != end {
        return Err(PersistError::Corrupted {
            file: path.to_path_buf(),
            offset: end - FOOTER_BYTES as u64,
            reason: "footer does not end its own commit",
        });
    }
    verify_commit_at(bytes, footer.segment_offset, end, sync_groups, path)
}

fn read_footer(bytes: &[u8], offset: u64, path: &Path) -> Result<Footer, PersistError> {
    let at = offset as usize;
    let footer: Footer = bytemuck::pod_read_unaligned(&bytes[at..at + FOOTER_BYTES]);
    footer.check().map_err(|reason| PersistError::Corrupted {
        file: path.to_path_buf(),
        offset,
        reason,
    })?;
    Ok(footer)
}

/// Verifies the commit starting at `pos`, which must end at or before
/// `limit`, in a file whose header says whether footers carry sync groups.
fn verify_commit_at(
    bytes: &[u8],
    pos: u64,
    limit: u64,
    sync_groups: bool,
    path: &Path,
) -> Result<Footer, PersistError> {
    let corrupted = |offset, reason| PersistError::Corrupted {
        file: path.to_path_buf(),
        offset,
        reason,
    };
    if pos + SEGMENT_HEADER_BYTES as u64 > limit {
        return Err(corrupted(pos, "segment header past the last valid footer"));
    }
    let at = pos as usize;
    let header: SegmentHeader = bytemuck::pod_read_unaligned(&bytes[at..at + SEGMENT_HEADER_BYTES]);
    header.check().map_err(|reason| corrupted(pos, reason))?;
    let total = commit_bytes(header.meta_bytes, header.data_bytes);
    let end = pos
        .checked_add(total)
        .filter(|&end| end <= limit)
        .ok_or_else(|| corrupted(pos, "segment runs past the last valid footer"))?;
    let footer_offset = end - FOOTER_BYTES as u64;
    let footer = read_footer(bytes, footer_offset, path)?;
    if footer.segment_offset != pos
        || footer.seq != header.seq
        || footer.record_count != header.record_count
        || footer.meta_bytes != header.meta_bytes
        || footer.data_bytes != header.data_bytes
    {
        return Err(corrupted(
            footer_offset,
            "footer disagrees with its segment header",
        ));
    }
    if footer.has_sync_group() != sync_groups {
        return Err(corrupted(
            footer_offset,
            "footer sync group disagrees with the file header",
        ));
    }
    let checksum = |offset: u64, len: u64, what, expected| {
        let region = &bytes[offset as usize..(offset + len) as usize];
        let got = xxh3_64(region);
        if got == expected {
            Ok(())
        } else {
            Err(PersistError::ChecksumMismatch {
                file: path.to_path_buf(),
                offset,
                what,
                expected,
                got,
            })
        }
    };
    checksum(
        pos,
        SEGMENT_HEADER_BYTES as u64,
        "segment header",
        footer.header_xxh3,
    )?;
    let meta_offset = pos + SEGMENT_HEADER_BYTES as u64;
    checksum(
        meta_offset,
        header.meta_bytes,
        "segment meta",
        footer.meta_xxh3,
    )?;
    let data_offset = meta_offset + header.meta_bytes;
    checksum(
        data_offset,
        header.data_bytes,
        "segment data",
        footer.data_xxh3,
    )?;
    let pad_offset = data_offset + header.data_bytes;
    if let Some(at) = first_nonzero(&bytes[pad_offset as usize..footer_offset as usize]) {
        return Err(corrupted(pad_offset + at as u64, "commit padding not zero"));
    }
    Ok(footer)
}

fn check_sequence(
    footer: &Footer,
    header: &FileHeader,
    index: u64,
    prev_seq: u64,
    path: &Path,
) -> Result<(), PersistError> {
    let offset = footer.segment_offset + footer.commit_bytes - FOOTER_BYTES as u64;
    let reason = if footer.commit_index != index {
        "commit index out of order"
    } else if footer.seq <= prev_seq {
        "sequence number does not increase"
    } else if footer.file_seq != header.file_seq {
        "footer belongs to another file"
    } else {
        return Ok(());
    };
    Err(PersistError::Corrupted {
        file: path.to_path_buf(),
        offset,
        reason,
    })
}

fn extent_of(footer: &Footer) -> SegmentExtent {
    let meta_offset = footer.segment_offset + SEGMENT_HEADER_BYTES as u64;
    SegmentExtent {
        seq: footer.seq,
        record_count: footer.record_count,
        meta_offset,
        meta_bytes: footer.meta_bytes,
        data_offset: meta_offset + footer.meta_bytes,
        data_bytes: footer.data_bytes,
    }
}

fn describe_dropped(bytes: &[u8], offset: u64, cause: PersistError) -> DroppedRange {
    let len = bytes.len() as u64;
    let mut dropped = DroppedRange {
        offset,
        bytes: len - offset,
        cause: cause.to_string(),
        commits_identified: 0,
        records_identified: 0,
        seq_first: None,
        seq_last: None,
    };
    let mut end = offset + BLOCK_BYTES;
    let no_path = PathBuf::new();
    while end <= len {
        if let Ok(footer) = read_footer(bytes, end - FOOTER_BYTES as u64, &no_path) {
            dropped.commits_identified += 1;
            dropped.records_identified += footer.record_count;
            dropped.seq_first.get_or_insert(footer.seq);
            dropped.seq_last = Some(footer.seq);
        }
        end += BLOCK_BYTES;
    }
    dropped
}

fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::format::EncodedCommit;

    /// A file image of `commits` commits, each its own fdatasync group, and
    /// the end offset of each.
    fn image(commits: u64) -> (Vec<u8>, Vec<u64>) {
        image_grouped(commits, commits.min(1), true)
    }

    /// A file image whose last `last_group` commits were written as one
    /// fdatasync group (the others one group each); without `sync_groups`,
    /// a file as written before sync groups existed.
    fn image_grouped(commits: u64, last_group: u64, sync_groups: bool) -> (Vec<u8>, Vec<u64>) {
        assert!(last_group <= commits);
        let mut header = FileHeader::new(0, 1, 0);
        if !sync_groups {
            header.features = 0;
            header.header_xxh3 = header.compute_xxh3();
        }
        let mut bytes = vec![0u8; FILE_HEADER_BLOCK_BYTES as usize];
        bytes[..FILE_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
        let mut ends = Vec::new();
        let mut group_start = FILE_HEADER_BLOCK_BYTES;
        for i in 0..commits {
            if i <= commits - last_group {
                group_start = bytes.len() as u64;
            }
            let meta: Vec<u64> = (0..(i + 1) * 2).collect();
            let data: Vec<u8> = (0..(i * 1500 + 3)).map(|b| (b * 7 + i) as u8).collect();
            let group = sync_groups.then_some(group_start);
            let commit = EncodedCommit::new(i + 1, bytes.len() as u64, i, 1, group, &meta, &data);
            let start = bytes.len();
            bytes.resize(start + commit.len() as usize, 0);
            commit.fill(0, &mut bytes[start..]);
            ends.push(bytes.len() as u64);
        }
        (bytes, ends)
    }

    fn path() -> PathBuf {
        PathBuf::from("test.tsr")
    }

    #[test]
    fn intact_file_yields_every_segment() {
        let (bytes, ends) = image(4);
        let scan = scan(&bytes, &path(), false).unwrap();
        assert_eq!(scan.segments.len(), 4);
        assert_eq!(scan.valid_end, *ends.last().unwrap());
        assert_eq!(scan.torn_tail_bytes, 0);
        assert_eq!(scan.last_seq(), 4);
        assert_eq!(scan.segments[3].record_count, 4);
    }

    #[test]
    fn torn_tail_at_every_byte_of_the_last_commit_is_cut_back() {
        let (bytes, ends) = image(3);
        let previous_end = ends[1];
        for cut in previous_end..ends[2] {
            // A write that stopped at `cut`: either the file ends there...
            let scan_short = scan(&bytes[..cut as usize], &path(), false).unwrap();
            assert_eq!(scan_short.valid_end, previous_end, "cut {cut}");
            assert_eq!(scan_short.segments.len(), 2);
            assert_eq!(scan_short.torn_tail_bytes, cut - previous_end);
            // ...or it has its full length with unwritten (zero) blocks.
            let mut zeroed = bytes.clone();
            zeroed[cut as usize..].fill(0);
            let scan_zeroed = scan(&zeroed, &path(), false).unwrap();
            assert_eq!(scan_zeroed.segments.len(), 2, "zeroed from {cut}");
        }
    }

    #[test]
    fn a_bit_flip_anywhere_is_detected_and_never_served() {
        let (bytes, ends) = image(3);
        let intact = scan(&bytes, &path(), false).unwrap();
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << (at % 8);
            match scan(&flipped, &path(), false) {
                Err(_) => assert!(
                    (at as u64) < ends[1],
                    "flip at {at} in the last commit refused"
                ),
                Ok(found) => {
                    // Only a flip in the last commit can pass: it reads as a
                    // torn tail and that commit is cut, never served.
                    assert!(at as u64 >= ends[1], "flip at {at} accepted");
                    assert_eq!(found.segments[..], intact.segments[..2]);
                    assert_eq!(found.valid_end, ends[1]);
                }
            }
        }
    }

    #[test]
    fn damage_before_the_tail_names_the_offset() {
        let (mut bytes, ends) = image(3);
        let data_at = ends[0] as usize + SEGMENT_HEADER_BYTES + 4 * 8 + 5;
        bytes[data_at] ^= 0x10;
        match scan(&bytes, &path(), false) {
            Err(PersistError::ChecksumMismatch { offset, what, .. }) => {
                assert_eq!(what, "segment data");
                assert_eq!(offset, ends[0] + SEGMENT_HEADER_BYTES as u64 + 32);
            }
            other => panic!("expected a checksum mismatch, got {other:?}"),
        }
    }

    #[test]
    fn tolerant_mode_keeps_the_prefix_and_reports_the_rest() {
        let (mut bytes, ends) = image(4);
        bytes[ends[1] as usize + 3] ^= 0xff;
        let scan = scan(&bytes, &path(), true).unwrap();
        assert_eq!(scan.segments.len(), 2);
        assert_eq!(scan.valid_end, ends[1]);
        let dropped = scan.dropped.unwrap();
        assert_eq!(dropped.offset, ends[1]);
        assert_eq!(dropped.bytes, ends[3] - ends[1]);
        // The damaged commit's footer is intact, and so is the next one's.
        assert_eq!(dropped.commits_identified, 2);
        assert_eq!((dropped.seq_first, dropped.seq_last), (Some(3), Some(4)));
        assert_eq!(dropped.records_identified, 3 + 4);
    }

    #[test]
    fn a_file_of_only_a_header_is_empty_and_a_short_one_is_refused() {
        let (bytes, _) = image(0);
        assert!(scan(&bytes, &path(), false).unwrap().segments.is_empty());
        assert!(scan(&bytes[..100], &path(), false).is_err());
    }

    /// Every way a group of `n` concurrent commits can half land (each
    /// commit either whole on disk or never written, as zeros): reopening
    /// keeps exactly the commits before the first missing one, cuts the
    /// rest as a torn tail, and reports the landed commits it cut.
    #[test]
    fn a_group_keeps_exactly_the_prefix_before_its_first_missing_commit() {
        for n in 1..=5u64 {
            let before = 2;
            let (bytes, ends) = image_grouped(before + n, n, true);
            let starts: Vec<u64> = std::iter::once(FILE_HEADER_BLOCK_BYTES)
                .chain(ends.iter().copied())
                .collect();
            for landed in 0..(1u32 << n) {
                let mut torn = bytes.clone();
                for k in 0..n {
                    if landed & (1 << k) == 0 {
                        let i = (before + k) as usize;
                        torn[starts[i] as usize..ends[i] as usize].fill(0);
                    }
                }
                let prefix = (0..n).take_while(|k| landed & (1 << k) != 0).count() as u64;
                let kept = (before + prefix) as usize;
                let cut = starts[kept];
                for file_len in [torn.len(), cut as usize] {
                    let found = scan(&torn[..file_len], &path(), false)
                        .unwrap_or_else(|e| panic!("n {n} landed {landed:b}: {e}"));
                    assert_eq!(found.segments.len(), kept, "n {n} landed {landed:b}");
                    assert_eq!(found.valid_end, cut);
                    assert_eq!(found.torn_tail_bytes, file_len as u64 - cut);
                    assert!(found.dropped.is_none());
                    let later_landed = (prefix + 1..n).filter(|k| landed & (1 << k) != 0).count();
                    match &found.torn_group {
                        Some(group) => {
                            assert!(later_landed > 0, "n {n} landed {landed:b}");
                            assert_eq!(group.offset, cut);
                            assert_eq!(group.commits_identified, later_landed as u64);
                        }
                        None => assert!(
                            later_landed == 0 || file_len as u64 == cut,
                            "n {n} landed {landed:b}"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn damage_before_the_last_group_still_refuses() {
        let (bytes, ends) = image_grouped(5, 3, true);
        // Commit 1 precedes the group (which starts at ends[1]).
        for at in [ends[0] + 10, ends[1] - 1] {
            let mut flipped = bytes.clone();
            flipped[at as usize] ^= 0x40;
            assert!(scan(&flipped, &path(), false).is_err(), "flip at {at}");
            let tolerant = scan(&flipped, &path(), true).unwrap();
            assert_eq!(tolerant.segments.len(), 1);
            assert!(tolerant.dropped.is_some() && tolerant.torn_group.is_none());
        }
        // Inside the group, even its first commit, it is a torn tail.
        let mut flipped = bytes.clone();
        flipped[ends[1] as usize + 10] ^= 0x40;
        let found = scan(&flipped, &path(), false).unwrap();
        assert_eq!(found.segments.len(), 2);
        assert_eq!(found.valid_end, ends[1]);
        assert_eq!(found.torn_group.unwrap().commits_identified, 3);
    }

    #[test]
    fn files_without_sync_groups_keep_the_one_commit_rule() {
        let (bytes, ends) = image_grouped(3, 3, false);
        let found = scan(&bytes, &path(), false).unwrap();
        assert_eq!(found.segments.len(), 3);
        assert_eq!(found.valid_end, ends[2]);
        // A missing middle commit with the last one landed is damage there.
        let mut torn = bytes.clone();
        torn[ends[0] as usize..ends[1] as usize].fill(0);
        assert!(scan(&torn, &path(), false).is_err());
        // A footer claiming a sync group is foreign to such a file.
        let (grouped, _) = image_grouped(3, 3, true);
        let mut mixed = bytes.clone();
        mixed[ends[1] as usize..].copy_from_slice(&grouped[ends[1] as usize..]);
        let found = scan(&mixed, &path(), false).unwrap();
        assert_eq!(found.valid_end, ends[1]);
    }

    #[test]
    fn an_unknown_file_feature_refuses_the_file() {
        let (mut bytes, _) = image(2);
        let mut header: FileHeader = bytemuck::pod_read_unaligned(&bytes[..FILE_HEADER_BYTES]);
        header.features |= 1 << 7;
        header.header_xxh3 = header.compute_xxh3();
        bytes[..FILE_HEADER_BYTES].copy_from_slice(bytemuck::bytes_of(&header));
        assert!(matches!(
            scan(&bytes, &path(), true),
            Err(PersistError::Corrupted { offset: 0, .. })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Any mix of missing commits in the last group, plus at most one
        /// bit flip anywhere after the file header: recovery never serves
        /// a commit that is not byte for byte what was written, keeps
        /// every commit before the first missing or damaged one, and
        /// refuses (strict mode) exactly when the damage lies before the
        /// last group.
        #[test]
        fn recovery_serves_exactly_an_intact_prefix(
            before in 0u64..4,
            group in 1u64..6,
            landed in 0u32..64,
            flip in proptest::option::of((0.0f64..1.0, 0u8..8)),
        ) {
            let (bytes, ends) = image_grouped(before + group, group, true);
            let starts: Vec<u64> = std::iter::once(FILE_HEADER_BLOCK_BYTES)
                .chain(ends.iter().copied())
                .collect();
            let commits = (before + group) as usize;
            let mut torn = bytes.clone();
            let mut intact = vec![true; commits];
            for k in 0..group as usize {
                if landed & (1 << k) == 0 {
                    let i = before as usize + k;
                    torn[starts[i] as usize..ends[i] as usize].fill(0);
                    intact[i] = false;
                }
            }
            if let Some((at, bit)) = flip {
                let span = bytes.len() as u64 - FILE_HEADER_BLOCK_BYTES;
                let at = FILE_HEADER_BLOCK_BYTES + (at * span as f64) as u64 % span;
                torn[at as usize] ^= 1 << bit;
                intact[starts.iter().rposition(|&start| start <= at).unwrap()] = false;
            }
            let first_bad = intact.iter().position(|&ok| !ok).unwrap_or(commits);
            // Recovery knows the last group from the last intact commit's
            // footer: the group's start, or the commit itself before it.
            let group_start = match intact.iter().rposition(|&ok| ok) {
                None => FILE_HEADER_BLOCK_BYTES,
                Some(last) if last >= before as usize => starts[before as usize],
                Some(last) => starts[last],
            };
            match scan(&torn, &path(), false) {
                Err(_) => proptest::prop_assert!(starts[first_bad] < group_start),
                Ok(found) => {
                    proptest::prop_assert!(starts[first_bad] >= group_start);
                    // A bit flip in a zeroed (never landed) commit changes
                    // nothing that could be served: the prefix is exact.
                    proptest::prop_assert_eq!(found.segments.len(), first_bad);
                    proptest::prop_assert_eq!(found.valid_end, starts[first_bad]);
                    let served = found.valid_end as usize;
                    proptest::prop_assert_eq!(&torn[..served], &bytes[..served]);
                }
            }
        }
    }
}
