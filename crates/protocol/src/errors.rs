//! Kafka error codes: the one place where failures become wire codes.

/// The Kafka error codes ringbroker answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum ErrorCode {
    /// The server experienced an unexpected error.
    UnknownServerError = -1,
    /// No error.
    None = 0,
    /// The requested offset is not within the range of offsets.
    OffsetOutOfRange = 1,
    /// A record batch failed its CRC or is otherwise corrupt.
    CorruptMessage = 2,
    /// The topic or partition does not exist.
    UnknownTopicOrPartition = 3,
    /// The partition has no leader right now.
    LeaderNotAvailable = 5,
    /// This broker is not the leader (or the owner shard is gone).
    NotLeaderOrFollower = 6,
    /// The request timed out.
    RequestTimedOut = 7,
    /// A batch is larger than max.message.bytes.
    MessageTooLarge = 10,
    /// The topic name is illegal.
    InvalidTopicException = 17,
    /// The record batch list is larger than allowed.
    RecordListTooLarge = 18,
    /// Not enough in-sync replicas.
    NotEnoughReplicas = 19,
    /// The coordinator is not available.
    CoordinatorNotAvailable = 15,
    /// The version of the API is not supported.
    UnsupportedVersion = 35,
    /// The topic already exists.
    TopicAlreadyExists = 36,
    /// The partition count is invalid.
    InvalidPartitions = 37,
    /// The replication factor is invalid.
    InvalidReplicationFactor = 38,
    /// The replica assignment is invalid.
    InvalidReplicaAssignment = 39,
    /// A configuration is invalid.
    InvalidConfig = 40,
    /// The request is malformed.
    InvalidRequest = 42,
    /// A sequence number gap from an idempotent producer.
    OutOfOrderSequenceNumber = 45,
    /// The producer epoch is fenced.
    InvalidProducerEpoch = 47,
    /// Transactions are not supported by this broker yet.
    TransactionalIdAuthorizationFailed = 53,
    /// The partition's storage failed.
    KafkaStorageError = 56,
    /// The fetch session is unknown.
    FetchSessionIdNotFound = 70,
    /// The topic id is unknown.
    UnknownTopicId = 100,
}

impl ErrorCode {
    /// The wire value.
    pub fn code(self) -> i16 {
        self as i16
    }
}
