//! The engine's one error type.

use std::fmt;

/// Everything that can go wrong when configuring a store, filling a batch or
/// applying it. Every variant carries the numbers that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A key is longer than [`crate::KEY_LEN_MAX`].
    KeyTooLong { len: usize, max: usize },
    /// A value is longer than [`crate::VALUE_LEN_MAX`].
    ValueTooLong { len: usize, max: usize },
    /// The batch already holds as many ops as it was created for.
    BatchFull { ops_max: usize },
    /// The op does not fit in the bytes the batch was created with.
    BatchBytesFull { needed: usize, left: usize },
    /// `new_batch` asked for more ops or bytes than the store's configuration allows.
    BatchTooLarge {
        ops: usize,
        bytes: usize,
        ops_max: usize,
        bytes_max: usize,
    },
    /// Holding the buffers this needs would exceed the store's memory quota.
    MemoryQuota { needed: usize, available: usize },
    /// A configuration field is out of its allowed range.
    InvalidConfig {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// The batch was created by a different store (its buffers belong to that
    /// store's pool and quota).
    ForeignBatch,
    /// Externally supplied segment bytes (e.g. read back from a file) are not
    /// a valid segment.
    CorruptSegment { reason: &'static str, record: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::KeyTooLong { len, max } => {
                write!(f, "key is {len} bytes, longer than the maximum of {max}")
            }
            Error::ValueTooLong { len, max } => {
                write!(f, "value is {len} bytes, longer than the maximum of {max}")
            }
            Error::BatchFull { ops_max } => write!(f, "batch is full: it holds {ops_max} ops"),
            Error::BatchBytesFull { needed, left } => {
                write!(f, "batch is out of bytes: op needs {needed}, {left} left")
            }
            Error::BatchTooLarge {
                ops,
                bytes,
                ops_max,
                bytes_max,
            } => write!(
                f,
                "batch of {ops} ops and {bytes} bytes exceeds the configured maximum of \
                 {ops_max} ops and {bytes_max} bytes"
            ),
            Error::MemoryQuota { needed, available } => write!(
                f,
                "memory quota exceeded: {needed} bytes needed, {available} available"
            ),
            Error::InvalidConfig {
                field,
                value,
                min,
                max,
            } => {
                write!(f, "config field {field} = {value} is outside {min}..={max}")
            }
            Error::ForeignBatch => write!(f, "batch was created by a different store"),
            Error::CorruptSegment { reason, record } => {
                write!(f, "corrupt segment at record {record}: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {}
