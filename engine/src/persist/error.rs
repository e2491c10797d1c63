//! The persistence layer's one error type.
//!
//! Every variant names what an operator needs to act on it: the file and
//! byte offset of damage, both core counts of a mismatch, the system call
//! and path of an I/O failure. `DiskFull` is split out of `Io` because it is
//! the one failure a caller is expected to retry once space returns.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
#[non_exhaustive]
pub enum PersistError {
    /// A system call failed; `op` names it (`"write"`, `"fdatasync"`, ...).
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// ENOSPC (or EDQUOT): the write was not persisted and not acknowledged.
    DiskFull { op: &'static str, path: PathBuf },
    /// A structure failed a structural check (magic, length, alignment, order).
    Corrupted {
        file: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    /// A checksum over a header, meta array, data array or footer disagrees.
    ChecksumMismatch {
        file: PathBuf,
        offset: u64,
        what: &'static str,
        expected: u64,
        got: u64,
    },
    /// The data directory was created for a different number of cores.
    CoreCountMismatch { manifest: u32, requested: u32 },
    /// A core count of zero or above the supported maximum.
    CoreCountInvalid { requested: u32, max: u32 },
    /// A file of a format version this build cannot read.
    UnsupportedVersion {
        file: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The manifest exists but cannot be understood.
    ManifestInvalid { path: PathBuf, reason: String },
    /// A segment exceeds a hard limit of the format.
    SegmentTooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// The in-memory store refused the batch (quota, foreign batch, ...);
    /// nothing was written.
    Engine(crate::Error),
    /// The engine refused a recovered segment that passed every checksum
    /// (a bug or a file written by something else).
    Rejected {
        file: PathBuf,
        offset: u64,
        error: crate::Error,
    },
    /// A configuration value out of range.
    InvalidConfig {
        field: &'static str,
        value: u64,
        max: u64,
    },
    /// A previous disk error left the store unable to accept writes until a
    /// retry succeeds; carried to callers of `flush` in async mode.
    WriteFailed { reason: String },
    /// Too many batches applied ahead of their commit; commit first.
    PendingFull { max: usize },
    /// The log holds `commits` commits of a batch not applied yet; apply it
    /// before rebuilding the file from the store.
    StagedUnapplied { commits: usize },
}

impl PersistError {
    /// Maps an I/O error, singling out a full disk so callers can retry.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => PersistError::DiskFull { op, path },
            _ => PersistError::Io { op, path, source },
        }
    }

    /// True when the error is transient from the store's point of view: the
    /// batch failed, nothing acknowledged is at risk, a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PersistError::DiskFull { .. }
                | PersistError::Io { .. }
                | PersistError::WriteFailed { .. }
        )
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistError::Io { op, path, source } => {
                write!(f, "{op} failed on {}: {source}", path.display())
            }
            PersistError::DiskFull { op, path } => {
                write!(f, "disk full during {op} on {}", path.display())
            }
            PersistError::Corrupted {
                file,
                offset,
                reason,
            } => write!(
                f,
                "corrupted {} at offset {offset}: {reason}",
                file.display()
            ),
            PersistError::ChecksumMismatch {
                file,
                offset,
                what,
                expected,
                got,
            } => write!(
                f,
                "checksum mismatch in {} at offset {offset} ({what}): expected {expected:#018x}, got {got:#018x}",
                file.display()
            ),
            PersistError::CoreCountMismatch {
                manifest,
                requested,
            } => write!(
                f,
                "data directory was created for {manifest} cores but {requested} were requested; resharding is not supported, nothing was changed"
            ),
            PersistError::CoreCountInvalid { requested, max } => {
                write!(f, "core count {requested} is outside 1..={max}")
            }
            PersistError::UnsupportedVersion {
                file,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}, this build reads version {supported}",
                file.display()
            ),
            PersistError::ManifestInvalid { path, reason } => {
                write!(f, "invalid manifest {}: {reason}", path.display())
            }
            PersistError::SegmentTooLarge { what, len, max } => {
                write!(f, "segment {what} of {len} exceeds the limit of {max}")
            }
            PersistError::Engine(error) => write!(f, "store refused the batch: {error}"),
            PersistError::Rejected {
                file,
                offset,
                error,
            } => write!(
                f,
                "segment at offset {offset} of {} rejected by the store: {error}",
                file.display()
            ),
            PersistError::InvalidConfig { field, value, max } => {
                write!(f, "{field} = {value} is out of range (1..={max})")
            }
            PersistError::WriteFailed { reason } => {
                write!(f, "write not persisted: {reason}")
            }
            PersistError::PendingFull { max } => write!(
                f,
                "{max} batches are applied ahead of their commit; commit first"
            ),
            PersistError::StagedUnapplied { commits } => write!(
                f,
                "the log holds {commits} commits of a batch not applied yet; apply it first"
            ),
        }
    }
}

impl std::error::Error for PersistError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PersistError::Io { source, .. } => Some(source),
            PersistError::Engine(error) => Some(error),
            _ => None,
        }
    }
}
