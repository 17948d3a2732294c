//! Storage errors as Kafka error codes: the one place the server maps them.
//!
//! Every failure of the disk — EIO, ENOSPC, EROFS, a failed fdatasync or
//! syncfs, bytes that do not read back as batches, a broken log invariant —
//! is KAFKA_STORAGE_ERROR, as Kafka answers when a log directory fails:
//! clients treat it as retriable and refresh metadata. The kind and errno
//! stay in the error message and the broker's log
//! (`ringbroker_storage::StorageError`).

use ringbroker_protocol::errors::ErrorCode;
use ringbroker_storage::log::{AppendError, ReadError};
use ringbroker_storage::StorageError;

/// The code for a storage failure.
pub fn storage_error_code(error: &StorageError) -> ErrorCode {
    match error {
        // Spelled out so that a new kind of failure gets a decision here.
        StorageError::Io(_)
        | StorageError::Step { .. }
        | StorageError::CorruptHeader { .. }
        | StorageError::CorruptBatch { .. }
        | StorageError::Invariant(_)
        | StorageError::Failed(_) => ErrorCode::KafkaStorageError,
    }
}

/// The code for a refused append.
pub fn append_error_code(error: &AppendError) -> ErrorCode {
    match error {
        AppendError::Corrupt(_) | AppendError::Empty => ErrorCode::CorruptMessage,
        AppendError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        AppendError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
        AppendError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
        AppendError::Storage(e) => storage_error_code(e),
        AppendError::Closed => ErrorCode::NotLeaderOrFollower,
        AppendError::OutOfOrder { .. } => ErrorCode::OffsetOutOfRange,
        AppendError::ControlBatchFromClient | AppendError::MarkerWithoutProducer(_) => {
            ErrorCode::InvalidRecord
        }
        AppendError::Transaction(e) => e.error_code(),
        AppendError::InvalidControlBatch(_) => ErrorCode::CorruptMessage,
    }
}

/// The code for a failed read.
pub fn read_error_code(error: &ReadError) -> ErrorCode {
    match error {
        ReadError::OutOfRange => ErrorCode::OffsetOutOfRange,
        ReadError::Storage(e) => storage_error_code(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbroker_storage::error::Op;
    use std::sync::Arc;

    #[test]
    fn disk_failures_are_storage_errors_whatever_their_kind() {
        for errno in [libc::EIO, libc::ENOSPC, libc::EROFS] {
            let error = StorageError::at(
                Op::Fdatasync,
                "/data/t-0/00000000000000000000.log",
                std::io::Error::from_raw_os_error(errno),
            );
            assert_eq!(storage_error_code(&error), ErrorCode::KafkaStorageError);
            let later = AppendError::Storage(StorageError::Failed(Arc::new(error)));
            assert_eq!(append_error_code(&later), ErrorCode::KafkaStorageError);
        }
        assert_eq!(
            read_error_code(&ReadError::OutOfRange),
            ErrorCode::OffsetOutOfRange
        );
        assert_eq!(
            append_error_code(&AppendError::Closed),
            ErrorCode::NotLeaderOrFollower
        );
    }

    #[test]
    fn transactional_refusals_keep_their_kafka_codes() {
        use ringbroker_storage::txn::TxnError;
        assert_eq!(
            append_error_code(&AppendError::ControlBatchFromClient),
            ErrorCode::InvalidRecord
        );
        let fenced = TxnError::CoordinatorFenced {
            producer_id: 1,
            current: 3,
            got: 2,
        };
        assert_eq!(
            append_error_code(&AppendError::Transaction(fenced)),
            ErrorCode::TransactionCoordinatorFenced
        );
        let stale = TxnError::StaleEpoch {
            producer_id: 1,
            current: 3,
            got: 2,
        };
        assert_eq!(
            append_error_code(&AppendError::Transaction(stale)),
            ErrorCode::InvalidProducerEpoch
        );
    }
}
