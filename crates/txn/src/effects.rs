//! What goes into the coordinator ([`Event`]), what comes out
//! ([`Effect`]), and the producer id source it draws from.
//!
//! The shell performs effects in the order given: appends (each to its
//! `__transaction_state` partition with acks=all), replies, markers, and
//! one timer at the latest deadline asked for.

use bytes::Bytes;
use ringbroker_protocol::errors::ErrorCode;

use crate::records::Entry;
use crate::types::{
    AppendId, MarkerId, Reply, Request, RequestId, TopicPartition, TxnPartition, TxnResult,
};

/// Where new producer ids come from (Kafka's ProducerIdManager): the
/// coordinator asks only when it needs one (a new transactional id, or an
/// exhausted epoch). An error (say, no block of ids available yet) is
/// given to the client as it is.
pub trait ProducerIdSource {
    /// A producer id never handed out before.
    fn next_producer_id(&mut self) -> Result<i64, ErrorCode>;
}

impl<F: FnMut() -> Result<i64, ErrorCode>> ProducerIdSource for F {
    fn next_producer_id(&mut self) -> Result<i64, ErrorCode> {
        self()
    }
}

/// How writing one partition's marker went, as the shell reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// The partition's leader wrote the marker.
    Written,
    /// The partition has no leader because its topic is gone: Kafka skips
    /// such partitions.
    PartitionDeleted,
    /// The WriteTxnMarkers answer's error for the partition, or
    /// NETWORK_EXCEPTION when the leader could not be reached.
    Failed(ErrorCode),
}

/// What the coordinator does about a marker that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerFailure {
    /// Send it again (to the partition's leader then).
    Retry,
    /// Count the partition as done (it cannot hold the transaction's data).
    Skip,
    /// The producer or this coordinator was fenced: stop sending this
    /// transaction's markers (its next coordinator completes it).
    Abandon,
}

/// Kafka's handling of a WriteTxnMarkers error
/// (TransactionMarkerRequestCompletionHandler), plus the errors of an
/// unreachable leader, which Kafka handles by re-enqueueing.
pub fn marker_failure(error: ErrorCode) -> MarkerFailure {
    match error {
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotLeaderOrFollower
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend
        | ErrorCode::RequestTimedOut
        | ErrorCode::KafkaStorageError
        | ErrorCode::NetworkException
        | ErrorCode::LeaderNotAvailable
        | ErrorCode::BrokerNotAvailable => MarkerFailure::Retry,
        ErrorCode::UnsupportedForMessageFormat | ErrorCode::UnsupportedVersion => {
            MarkerFailure::Skip
        }
        // INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, and the
        // errors Kafka treats as fatal (CORRUPT_MESSAGE, MESSAGE_TOO_LARGE,
        // ...): nothing this coordinator can do helps.
        _ => MarkerFailure::Abandon,
    }
}

/// Something that happened, for the coordinator to act on.
#[derive(Clone, Debug)]
pub enum Event {
    /// A transaction API request. Answered exactly once, with the same id.
    Request {
        /// The shell's number for the request.
        id: RequestId,
        /// The request.
        request: Request,
    },
    /// The deadline of the last [`Effect::ArmTimer`] has passed (it may be
    /// delivered late or spuriously; nothing fires before its time).
    Timer,
    /// This coordinator now leads a `__transaction_state` partition at
    /// `coordinator_epoch` (the partition's leader epoch, which markers
    /// carry); its records follow with [`Event::Replay`]. Requests for its
    /// ids are answered COORDINATOR_LOAD_IN_PROGRESS until
    /// [`Event::LoadCompleted`].
    LoadStarted {
        /// The partition.
        partition: TxnPartition,
        /// The partition's leader epoch.
        coordinator_epoch: i32,
    },
    /// Records of a partition being loaded, in log order.
    Replay {
        /// The partition.
        partition: TxnPartition,
        /// Decoded records.
        entries: Vec<Entry>,
    },
    /// Every record is replayed: the ids are served, and transactions
    /// found prepared get their markers sent.
    LoadCompleted {
        /// The partition.
        partition: TxnPartition,
    },
    /// The partition could not be read: its ids are answered
    /// COORDINATOR_NOT_AVAILABLE.
    LoadFailed {
        /// The partition.
        partition: TxnPartition,
        /// Why, for the log.
        reason: String,
    },
    /// This coordinator no longer leads the partition: requests waiting for
    /// its appends are answered NOT_COORDINATOR, and its ids, appends and
    /// markers are forgotten (late outcomes of them are ignored).
    Unload {
        /// The partition.
        partition: TxnPartition,
    },
    /// An [`Effect::Append`] is durable (acks=all), or failed with the
    /// error the log gave.
    AppendCompleted {
        /// The append.
        id: AppendId,
        /// Its outcome.
        result: Result<(), ErrorCode>,
    },
    /// Outcomes of partitions of an [`Effect::SendMarkers`]; may come in
    /// several parts (one per leader broker), each partition once.
    MarkersWritten {
        /// The markers.
        id: MarkerId,
        /// Per partition.
        results: Vec<(TopicPartition, MarkerOutcome)>,
    },
}

/// A WriteTxnMarkers entry: what to write to each partition's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    /// The transaction's producer id.
    pub producer_id: i64,
    /// Its epoch (the markers fence older epochs on the partitions).
    pub producer_epoch: i16,
    /// The `__transaction_state` partition's leader epoch, so partitions
    /// refuse markers of a deposed coordinator.
    pub coordinator_epoch: i32,
    /// COMMIT or ABORT.
    pub result: TxnResult,
    /// The partitions to write the marker to.
    pub partitions: Vec<TopicPartition>,
}

/// Something the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Append these records to the `__transaction_state` partition with
    /// acks=all, as one batch, and report with [`Event::AppendCompleted`].
    Append {
        /// The append.
        id: AppendId,
        /// Where.
        partition: TxnPartition,
        /// (key, value) records; a `None` value is a tombstone.
        records: Vec<(Bytes, Option<Bytes>)>,
    },
    /// Answer a request.
    Reply {
        /// The request.
        id: RequestId,
        /// The answer.
        reply: Reply,
    },
    /// Send WriteTxnMarkers (grouped by each partition's leader) no earlier
    /// than `not_before_ms`, and report each partition with
    /// [`Event::MarkersWritten`].
    SendMarkers {
        /// The markers.
        id: MarkerId,
        /// The transactional id (for logs).
        transactional_id: String,
        /// What to write.
        marker: TxnMarker,
        /// Retries wait out the backoff.
        not_before_ms: i64,
    },
    /// Deliver [`Event::Timer`] at (or after) this time; replaces any
    /// earlier request of this kind.
    ArmTimer {
        /// When (ms, the clock events are given with).
        at_ms: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_errors_are_handled_like_kafka() {
        use ErrorCode::*;
        for retry in [
            UnknownTopicOrPartition,
            NotLeaderOrFollower,
            NotEnoughReplicas,
            NotEnoughReplicasAfterAppend,
            RequestTimedOut,
            KafkaStorageError,
            NetworkException,
        ] {
            assert_eq!(marker_failure(retry), MarkerFailure::Retry, "{retry:?}");
        }
        for skip in [UnsupportedForMessageFormat, UnsupportedVersion] {
            assert_eq!(marker_failure(skip), MarkerFailure::Skip, "{skip:?}");
        }
        for abandon in [
            InvalidProducerEpoch,
            TransactionCoordinatorFenced,
            CorruptMessage,
            MessageTooLarge,
        ] {
            assert_eq!(
                marker_failure(abandon),
                MarkerFailure::Abandon,
                "{abandon:?}"
            );
        }
    }

    #[test]
    fn closures_are_producer_id_sources() {
        let mut next = 10;
        let mut source = || {
            next += 1;
            Ok(next)
        };
        assert_eq!(source.next_producer_id(), Ok(11));
        assert_eq!(source.next_producer_id(), Ok(12));
    }
}
