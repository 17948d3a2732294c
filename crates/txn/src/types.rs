//! The coordinator's vocabulary: identifiers shared with the shell, the
//! requests it takes and the replies it gives. Nothing here knows the wire
//! format; the server's handlers map Kafka messages to these and back.

use ringbroker_protocol::errors::ErrorCode;

/// No producer id (Kafka's `RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch (Kafka's `RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// One request inside the coordinator, numbered by the shell. Every
/// request is answered exactly once with an [`crate::Effect::Reply`]
/// carrying this id, possibly only once an append is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// One append of `__transaction_state` records the coordinator asked for;
/// its outcome comes back with [`crate::Event::AppendCompleted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppendId(pub u64);

/// One round of transaction markers the coordinator asked for; outcomes
/// come back with [`crate::Event::MarkersWritten`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MarkerId(pub u64);

/// A partition of the `__transaction_state` topic: the unit a coordinator
/// loads, serves and unloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnPartition(pub i32);

/// A partition of a user topic (or of `__consumer_offsets`) taking part in
/// a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.to_string(),
            partition,
        }
    }
}

/// A producer id with its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProducerIdAndEpoch {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
}

/// How a transaction ends: the control record its markers carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnResult {
    /// The transaction's records become visible to read_committed consumers.
    Commit,
    /// The transaction's records are skipped by read_committed consumers.
    Abort,
}

/// InitProducerId with a transactional id (requests without one are the
/// idempotent producer's, which the shell serves without the coordinator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// The transactional id (empty: INVALID_REQUEST).
    pub transactional_id: String,
    /// The producer's transaction.timeout.ms.
    pub transaction_timeout_ms: i32,
    /// KIP-360 (InitProducerId v3+): the id and epoch the producer has, to
    /// keep its id after an error; `None` when the request carries -1/-1.
    pub expected: Option<ProducerIdAndEpoch>,
}

/// AddPartitionsToTxn for one transaction (v4 requests carry several: the
/// shell sends one of these per transaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddPartitionsRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id the producer uses.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// Partitions to add.
    pub partitions: Vec<TopicPartition>,
}

/// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition, where
/// the group's TxnOffsetCommit records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddOffsetsRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// The consumer group whose offsets the transaction commits.
    pub group_id: String,
}

/// EndTxn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndTxnRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// Commit or abort.
    pub result: TxnResult,
}

/// ListTransactions filters (all empty / -1: everything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Only these producer ids (empty: any).
    pub producer_ids: Vec<i64>,
    /// Only these state names (empty: any); unknown names are reported back.
    pub states: Vec<String>,
    /// v1: only transactions running longer than this (ms); -1: any.
    pub duration_filter_ms: i64,
}

/// A request to the coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// InitProducerId with a transactional id.
    InitProducerId(InitProducerIdRequest),
    /// AddPartitionsToTxn (one transaction).
    AddPartitions(AddPartitionsRequest),
    /// AddPartitionsToTxn v4 with `verify_only` (KIP-890 part 1, sent by
    /// partition leaders): which partitions are in the transaction. Changes
    /// nothing.
    VerifyPartitions(AddPartitionsRequest),
    /// AddOffsetsToTxn.
    AddOffsets(AddOffsetsRequest),
    /// EndTxn.
    EndTxn(EndTxnRequest),
    /// DescribeTransactions for one transactional id.
    Describe {
        /// The transactional id.
        transactional_id: String,
    },
    /// ListTransactions.
    List(ListRequest),
}

impl Request {
    /// The transactional id the request is about (`None`: ListTransactions).
    pub fn transactional_id(&self) -> Option<&str> {
        match self {
            Request::InitProducerId(r) => Some(&r.transactional_id),
            Request::AddPartitions(r) | Request::VerifyPartitions(r) => Some(&r.transactional_id),
            Request::AddOffsets(r) => Some(&r.transactional_id),
            Request::EndTxn(r) => Some(&r.transactional_id),
            Request::Describe { transactional_id } => Some(transactional_id),
            Request::List(_) => None,
        }
    }

    /// The answer carrying only `error`.
    pub fn error_reply(&self, error: ErrorCode) -> Reply {
        match self {
            Request::InitProducerId(_) => Reply::InitProducerId(ProducerIdReply::error(error)),
            Request::AddPartitions(_) => Reply::AddPartitions(error),
            Request::VerifyPartitions(r) => {
                Reply::VerifyPartitions(r.partitions.iter().map(|p| (p.clone(), error)).collect())
            }
            Request::AddOffsets(_) => Reply::AddOffsets(error),
            Request::EndTxn(_) => Reply::EndTxn(ProducerIdReply::error(error)),
            Request::Describe { transactional_id } => {
                Reply::Describe(TxnDescription::error(transactional_id, error))
            }
            Request::List(_) => Reply::List(ListResponse {
                error,
                unknown_state_filters: Vec::new(),
                transactions: Vec::new(),
            }),
        }
    }
}

/// A producer id and epoch with an error code: the answer to
/// InitProducerId, and to EndTxn (whose v5 response carries them; -1/-1 on
/// errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdReply {
    /// Error code.
    pub error: ErrorCode,
    /// Producer id (-1 on error).
    pub producer_id: i64,
    /// Producer epoch (-1 on error).
    pub producer_epoch: i16,
}

impl ProducerIdReply {
    /// An error answer.
    pub fn error(error: ErrorCode) -> ProducerIdReply {
        ProducerIdReply {
            error,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        }
    }

    /// A successful answer.
    pub fn ok(producer_id: i64, producer_epoch: i16) -> ProducerIdReply {
        ProducerIdReply {
            error: ErrorCode::None,
            producer_id,
            producer_epoch,
        }
    }
}

/// DescribeTransactions' answer for one transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnDescription {
    /// Error code (TRANSACTIONAL_ID_NOT_FOUND for an unknown id).
    pub error: ErrorCode,
    /// The transactional id.
    pub transactional_id: String,
    /// Kafka's state name ("Ongoing", ...); empty on error.
    pub state: String,
    /// transaction.timeout.ms.
    pub timeout_ms: i32,
    /// When the transaction started (ms; -1 when none has).
    pub start_ms: i64,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Partitions in the transaction, per topic, sorted.
    pub topics: Vec<(String, Vec<i32>)>,
}

impl TxnDescription {
    /// An error answer for `transactional_id`.
    pub fn error(transactional_id: &str, error: ErrorCode) -> TxnDescription {
        TxnDescription {
            error,
            transactional_id: transactional_id.to_string(),
            state: String::new(),
            timeout_ms: 0,
            start_ms: -1,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            topics: Vec::new(),
        }
    }
}

/// One transactional id in ListTransactions' answer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedTxn {
    /// The transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Kafka's state name.
    pub state: &'static str,
}

/// ListTransactions' answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResponse {
    /// COORDINATOR_LOAD_IN_PROGRESS while a partition loads.
    pub error: ErrorCode,
    /// State filters that name no state.
    pub unknown_state_filters: Vec<String>,
    /// Matching transactional ids, sorted.
    pub transactions: Vec<ListedTxn>,
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// InitProducerId.
    InitProducerId(ProducerIdReply),
    /// AddPartitionsToTxn: one code for every partition of the transaction.
    AddPartitions(ErrorCode),
    /// AddPartitionsToTxn verify-only: per partition, NONE when it is in
    /// the transaction, TRANSACTION_ABORTABLE when not.
    VerifyPartitions(Vec<(TopicPartition, ErrorCode)>),
    /// AddOffsetsToTxn.
    AddOffsets(ErrorCode),
    /// EndTxn.
    EndTxn(ProducerIdReply),
    /// DescribeTransactions (one id).
    Describe(TxnDescription),
    /// ListTransactions.
    List(ListResponse),
}

/// The transaction APIs whose older versions predate PRODUCER_FENCED.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnApi {
    /// InitProducerId (PRODUCER_FENCED from v4).
    InitProducerId,
    /// AddPartitionsToTxn (from v2).
    AddPartitionsToTxn,
    /// AddOffsetsToTxn (from v2).
    AddOffsetsToTxn,
    /// EndTxn (from v2).
    EndTxn,
}

/// The code to send a client speaking `version` of `api`: clients older
/// than KIP-588 do not know PRODUCER_FENCED and get INVALID_PRODUCER_EPOCH,
/// which they handle the same way (Kafka's KafkaApis does this).
pub fn error_for_version(api: TxnApi, version: i16, error: ErrorCode) -> ErrorCode {
    let first_version_with_fenced = match api {
        TxnApi::InitProducerId => 4,
        TxnApi::AddPartitionsToTxn | TxnApi::AddOffsetsToTxn | TxnApi::EndTxn => 2,
    };
    if error == ErrorCode::ProducerFenced && version < first_version_with_fenced {
        ErrorCode::InvalidProducerEpoch
    } else {
        error
    }
}

/// The error a client is given when an append to `__transaction_state`
/// fails with `append_error` (the error the log gave), as Kafka's
/// TransactionStateManager maps it: an unavailable log is a coordinator
/// the client finds again.
pub fn append_error(append_error: ErrorCode) -> ErrorCode {
    match append_error {
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend
        | ErrorCode::RequestTimedOut => ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError => ErrorCode::NotCoordinator,
        ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge => ErrorCode::UnknownServerError,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_clients_get_invalid_producer_epoch_instead_of_fenced() {
        use ErrorCode::*;
        for (api, first) in [
            (TxnApi::InitProducerId, 4),
            (TxnApi::AddPartitionsToTxn, 2),
            (TxnApi::AddOffsetsToTxn, 2),
            (TxnApi::EndTxn, 2),
        ] {
            assert_eq!(
                error_for_version(api, first - 1, ProducerFenced),
                InvalidProducerEpoch
            );
            assert_eq!(
                error_for_version(api, first, ProducerFenced),
                ProducerFenced
            );
            assert_eq!(
                error_for_version(api, 0, ConcurrentTransactions),
                ConcurrentTransactions,
                "other codes pass"
            );
        }
    }

    #[test]
    fn append_errors_map_like_kafka() {
        use ErrorCode::*;
        for (log, client) in [
            (UnknownTopicOrPartition, CoordinatorNotAvailable),
            (NotEnoughReplicas, CoordinatorNotAvailable),
            (NotEnoughReplicasAfterAppend, CoordinatorNotAvailable),
            (RequestTimedOut, CoordinatorNotAvailable),
            (NotLeaderOrFollower, NotCoordinator),
            (KafkaStorageError, NotCoordinator),
            (MessageTooLarge, UnknownServerError),
            (RecordListTooLarge, UnknownServerError),
            (CorruptMessage, CorruptMessage),
        ] {
            assert_eq!(append_error(log), client, "{log:?}");
        }
    }

    #[test]
    fn error_replies_have_the_request_shape() {
        let verify = Request::VerifyPartitions(AddPartitionsRequest {
            transactional_id: "t".into(),
            producer_id: 1,
            producer_epoch: 0,
            partitions: vec![TopicPartition::new("a", 0), TopicPartition::new("a", 1)],
        });
        assert_eq!(
            verify.error_reply(ErrorCode::NotCoordinator),
            Reply::VerifyPartitions(vec![
                (TopicPartition::new("a", 0), ErrorCode::NotCoordinator),
                (TopicPartition::new("a", 1), ErrorCode::NotCoordinator),
            ])
        );
        let describe = Request::Describe {
            transactional_id: "t".into(),
        };
        assert_eq!(describe.transactional_id(), Some("t"));
        match describe.error_reply(ErrorCode::CoordinatorLoadInProgress) {
            Reply::Describe(d) => {
                assert_eq!(d.transactional_id, "t");
                assert_eq!(d.error, ErrorCode::CoordinatorLoadInProgress);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Request::List(ListRequest::default()).transactional_id(),
            None
        );
    }
}
