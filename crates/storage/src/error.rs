//! The storage crate's one error type.
//!
//! Every I/O failure keeps its `std::io::Error` (so ENOSPC, EIO, EROFS stay
//! distinguishable by [`StorageError::kind`] and
//! [`StorageError::raw_os_error`]) and, on the write path, the step that
//! failed ([`Op`]) and the file it failed on. A partition that fails keeps
//! its error behind an `Arc`, and every later refusal carries that same
//! error as [`StorageError::Failed`]. The server maps these to Kafka error
//! codes in one place (`ringbroker_server::storage_error`).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use ringbroker_protocol::batch::BatchError;

/// A step of the write path, named in errors and counted by the fault
/// layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Creating a segment file.
    Create,
    /// Opening a segment file at startup.
    Open,
    /// Opening the io_uring write handle of a segment.
    OpenWriter,
    /// Writing record batches to a segment.
    Write,
    /// fdatasync of a segment (durability for acks=all).
    Fdatasync,
    /// syncfs of the data directory's filesystem (`sync.scope=filesystem`).
    Syncfs,
    /// Sealing a rolled segment: cut to its data, then fdatasync.
    Seal,
    /// Cutting a file to a length (recovery, idle handles, shutdown).
    Truncate,
    /// fsync of a whole file (after a recovery cut).
    SyncFile,
    /// Writing small files: indexes and producer snapshots.
    WriteFiles,
    /// fsync of a partition directory.
    SyncDir,
}

impl Op {
    /// The step's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "creating a segment",
            Op::Open => "opening a segment",
            Op::OpenWriter => "opening the write handle",
            Op::Write => "write",
            Op::Fdatasync => "fdatasync",
            Op::Syncfs => "syncfs",
            Op::Seal => "sealing a segment",
            Op::Truncate => "truncate",
            Op::SyncFile => "fsync",
            Op::WriteFiles => "writing index files",
            Op::SyncDir => "fsync of the directory",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed outside the named steps (reading files at
    /// startup, listing a directory).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A named step failed on `path`.
    #[error("{op} of {} failed: {source}", path.display())]
    Step {
        /// The step.
        op: Op,
        /// The file (or directory, for syncfs and directory syncs).
        path: PathBuf,
        /// The operating system's error, kind and errno intact.
        #[source]
        source: io::Error,
    },
    /// Bytes below a segment's written end do not parse as a batch header
    /// (the disk returned something other than what was written).
    #[error("corrupt batch header in segment {segment_base} at byte {position}: {source}")]
    CorruptHeader {
        /// Base offset of the segment.
        segment_base: i64,
        /// Position of the header in the file.
        position: u64,
        /// What is wrong with it.
        #[source]
        source: BatchError,
    },
    /// A batch read back whole does not decode (ListOffsets by time).
    #[error("undecodable record batch in segment {segment_base} at byte {position}: {reason}")]
    CorruptBatch {
        /// Base offset of the segment.
        segment_base: i64,
        /// Position of the batch in the file.
        position: u64,
        /// The decoder's complaint.
        reason: String,
    },
    /// An invariant of the log broke; the partition stops rather than
    /// acknowledge part of a request.
    #[error("broken invariant: {0}")]
    Invariant(String),
    /// The partition's storage failed earlier with this error; nothing
    /// more is appended to it.
    #[error("partition storage failed earlier: {0}")]
    Failed(Arc<StorageError>),
}

/// Results of the storage crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// A failed step on `path`.
    pub fn at(op: Op, path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Step {
            op,
            path: path.into(),
            source,
        }
    }

    /// The operating system's error underneath, following
    /// [`StorageError::Failed`] to the original.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            StorageError::Io(e) | StorageError::Step { source: e, .. } => Some(e),
            StorageError::Failed(first) => first.io_error(),
            _ => None,
        }
    }

    /// The kind of the I/O error underneath (`StorageFull` for ENOSPC);
    /// `InvalidData` for corrupt bytes, `Other` for broken invariants.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            StorageError::CorruptHeader { .. } | StorageError::CorruptBatch { .. } => {
                io::ErrorKind::InvalidData
            }
            StorageError::Invariant(_) => io::ErrorKind::Other,
            StorageError::Failed(first) => first.kind(),
            StorageError::Io(e) | StorageError::Step { source: e, .. } => e.kind(),
        }
    }

    /// The errno underneath, when the operating system gave one (EIO has
    /// no stable `ErrorKind`; this tells it apart).
    pub fn raw_os_error(&self) -> Option<i32> {
        self.io_error().and_then(io::Error::raw_os_error)
    }

    /// The step that failed, following [`StorageError::Failed`].
    pub fn op(&self) -> Option<Op> {
        match self {
            StorageError::Step { op, .. } => Some(*op),
            StorageError::Failed(first) => first.op(),
            _ => None,
        }
    }

    /// True when the failure happened earlier and this only reports it.
    pub fn is_earlier_failure(&self) -> bool {
        matches!(self, StorageError::Failed(_))
    }
}

impl From<StorageError> for io::Error {
    /// For callers that speak `io::Result` (startup): the kind is kept, the
    /// message says what failed.
    fn from(error: StorageError) -> io::Error {
        match error {
            StorageError::Io(e) => e,
            other => io::Error::new(other.kind(), other),
        }
    }
}

/// The `io::Error` inside a glommio error, errno intact (glommio's own
/// conversion rebuilds the error from its kind and drops the errno).
pub(crate) fn from_glommio<T>(error: glommio::GlommioError<T>) -> io::Error {
    match error {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::from(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_errnos_survive_wrapping() {
        let enospc = StorageError::at(
            Op::Write,
            "/d/0.log",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(enospc.kind(), io::ErrorKind::StorageFull);
        let failed = StorageError::Failed(Arc::new(enospc));
        assert_eq!(failed.kind(), io::ErrorKind::StorageFull);
        assert_eq!(failed.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(failed.op(), Some(Op::Write));
        assert!(failed.to_string().contains("write of /d/0.log failed"));
        let eio = StorageError::at(
            Op::Fdatasync,
            "/d/0.log",
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert_eq!(eio.raw_os_error(), Some(libc::EIO));
        let as_io = io::Error::from(eio);
        assert!(as_io.to_string().contains("fdatasync"));
    }

    #[test]
    fn glommio_errors_keep_the_errno() {
        let enhanced: glommio::GlommioError<()> = glommio::GlommioError::EnhancedIoError {
            source: io::Error::from_raw_os_error(libc::EIO),
            op: "write",
            path: None,
            fd: Some(3),
        };
        assert_eq!(from_glommio(enhanced).raw_os_error(), Some(libc::EIO));
    }
}
