//! Kafka error codes: the one table where failures become wire codes.
//!
//! Every code Apache Kafka defines (its `Errors` enum), with its wire value,
//! name and retriability, so every layer maps its typed errors to one of
//! these at the boundary and nothing else spells a code as a number.

/// A Kafka error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    /// The server experienced an unexpected error when processing the request.
    UnknownServerError = -1,
    /// No error
    None = 0,
    /// The requested offset is not within the range of offsets maintained by the server.
    OffsetOutOfRange = 1,
    /// This message has failed its CRC checksum, exceeds the valid size, has a null key for a compacted topic, or is otherwise corrupt.
    CorruptMessage = 2,
    /// This server does not host this topic-partition.
    UnknownTopicOrPartition = 3,
    /// The requested fetch size is invalid.
    InvalidFetchSize = 4,
    /// There is no leader for this topic-partition as we are in the middle of a leadership election.
    LeaderNotAvailable = 5,
    /// For requests intended only for the leader, this error indicates that the broker is not the current leader. For requests intended for any replica, this error indicates that the broker is not a replica of the topic partition.
    NotLeaderOrFollower = 6,
    /// The request timed out.
    RequestTimedOut = 7,
    /// The broker is not available.
    BrokerNotAvailable = 8,
    /// The replica is not available for the requested topic-partition. Produce/Fetch requests and other requests intended only for the leader or follower return NOT_LEADER_OR_FOLLOWER if the broker is not a replica of the topic-partition.
    ReplicaNotAvailable = 9,
    /// The request included a message larger than the max message size the server will accept.
    MessageTooLarge = 10,
    /// The controller moved to another broker.
    StaleControllerEpoch = 11,
    /// The metadata field of the offset request was too large.
    OffsetMetadataTooLarge = 12,
    /// The server disconnected before a response was received.
    NetworkException = 13,
    /// The coordinator is loading and hence can't process requests.
    CoordinatorLoadInProgress = 14,
    /// The coordinator is not available.
    CoordinatorNotAvailable = 15,
    /// This is not the correct coordinator.
    NotCoordinator = 16,
    /// The request attempted to perform an operation on an invalid topic.
    InvalidTopicException = 17,
    /// The request included message batch larger than the configured segment size on the server.
    RecordListTooLarge = 18,
    /// Messages are rejected since there are fewer in-sync replicas than required.
    NotEnoughReplicas = 19,
    /// Messages are written to the log, but to fewer in-sync replicas than required.
    NotEnoughReplicasAfterAppend = 20,
    /// Produce request specified an invalid value for required acks.
    InvalidRequiredAcks = 21,
    /// Specified group generation id is not valid.
    IllegalGeneration = 22,
    /// The group member's supported protocols are incompatible with those of existing members or first group member tried to join with empty protocol type or empty protocol list.
    InconsistentGroupProtocol = 23,
    /// The configured groupId is invalid.
    InvalidGroupId = 24,
    /// The coordinator is not aware of this member.
    UnknownMemberId = 25,
    /// The session timeout is not within the range allowed by the broker (as configured by group.min.session.timeout.ms and group.max.session.timeout.ms).
    InvalidSessionTimeout = 26,
    /// The group is rebalancing, so a rejoin is needed.
    RebalanceInProgress = 27,
    /// The committing offset data size is not valid.
    InvalidCommitOffsetSize = 28,
    /// Topic authorization failed.
    TopicAuthorizationFailed = 29,
    /// Group authorization failed.
    GroupAuthorizationFailed = 30,
    /// Cluster authorization failed.
    ClusterAuthorizationFailed = 31,
    /// The timestamp of the message is out of acceptable range.
    InvalidTimestamp = 32,
    /// The broker does not support the requested SASL mechanism.
    UnsupportedSaslMechanism = 33,
    /// Request is not valid given the current SASL state.
    IllegalSaslState = 34,
    /// The version of API is not supported.
    UnsupportedVersion = 35,
    /// Topic with this name already exists.
    TopicAlreadyExists = 36,
    /// Number of partitions is below 1.
    InvalidPartitions = 37,
    /// Replication factor is below 1 or larger than the number of available brokers.
    InvalidReplicationFactor = 38,
    /// Replica assignment is invalid.
    InvalidReplicaAssignment = 39,
    /// Configuration is invalid.
    InvalidConfig = 40,
    /// This is not the correct controller for this cluster.
    NotController = 41,
    /// This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details.
    InvalidRequest = 42,
    /// The message format version on the broker does not support the request.
    UnsupportedForMessageFormat = 43,
    /// Request parameters do not satisfy the configured policy.
    PolicyViolation = 44,
    /// The broker received an out of order sequence number.
    OutOfOrderSequenceNumber = 45,
    /// The broker received a duplicate sequence number.
    DuplicateSequenceNumber = 46,
    /// Producer attempted to produce with an old epoch.
    InvalidProducerEpoch = 47,
    /// The producer attempted a transactional operation in an invalid state.
    InvalidTxnState = 48,
    /// The producer attempted to use a producer id which is not currently assigned to its transactional id.
    InvalidProducerIdMapping = 49,
    /// The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms).
    InvalidTransactionTimeout = 50,
    /// The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing.
    ConcurrentTransactions = 51,
    /// Indicates that the transaction coordinator sending a WriteTxnMarker is no longer the current coordinator for a given producer.
    TransactionCoordinatorFenced = 52,
    /// Transactional Id authorization failed.
    TransactionalIdAuthorizationFailed = 53,
    /// Security features are disabled.
    SecurityDisabled = 54,
    /// The broker did not attempt to execute this operation. This may happen for batched RPCs where some operations in the batch failed, causing the broker to respond without trying the rest.
    OperationNotAttempted = 55,
    /// Disk error when trying to access log file on the disk.
    KafkaStorageError = 56,
    /// The user-specified log directory is not found in the broker config.
    LogDirNotFound = 57,
    /// SASL Authentication failed.
    SaslAuthenticationFailed = 58,
    /// This exception is raised by the broker if it could not locate the producer metadata associated with the producerId in question. This could happen if, for instance, the producer's records were deleted because their retention time had elapsed. Once the last records of the producerId are removed, the producer's metadata is removed from the broker, and future appends by the producer will return this exception.
    UnknownProducerId = 59,
    /// A partition reassignment is in progress.
    ReassignmentInProgress = 60,
    /// Delegation Token feature is not enabled.
    DelegationTokenAuthDisabled = 61,
    /// Delegation Token is not found on server.
    DelegationTokenNotFound = 62,
    /// Specified Principal is not valid Owner/Renewer.
    DelegationTokenOwnerMismatch = 63,
    /// Delegation Token requests are not allowed on PLAINTEXT/1-way SSL channels and on delegation token authenticated channels.
    DelegationTokenRequestNotAllowed = 64,
    /// Delegation Token authorization failed.
    DelegationTokenAuthorizationFailed = 65,
    /// Delegation Token is expired.
    DelegationTokenExpired = 66,
    /// Supplied principalType is not supported.
    InvalidPrincipalType = 67,
    /// The group is not empty.
    NonEmptyGroup = 68,
    /// The group id does not exist.
    GroupIdNotFound = 69,
    /// The fetch session ID was not found.
    FetchSessionIdNotFound = 70,
    /// The fetch session epoch is invalid.
    InvalidFetchSessionEpoch = 71,
    /// There is no listener on the leader broker that matches the listener on which metadata request was processed.
    ListenerNotFound = 72,
    /// Topic deletion is disabled.
    TopicDeletionDisabled = 73,
    /// The leader epoch in the request is older than the epoch on the broker.
    FencedLeaderEpoch = 74,
    /// The leader epoch in the request is newer than the epoch on the broker.
    UnknownLeaderEpoch = 75,
    /// The requesting client does not support the compression type of given partition.
    UnsupportedCompressionType = 76,
    /// Broker epoch has changed.
    StaleBrokerEpoch = 77,
    /// The leader high watermark has not caught up from a recent leader election so the offsets cannot be guaranteed to be monotonically increasing.
    OffsetNotAvailable = 78,
    /// The group member needs to have a valid member id before actually entering a consumer group.
    MemberIdRequired = 79,
    /// The preferred leader was not available.
    PreferredLeaderNotAvailable = 80,
    /// The consumer group has reached its max size.
    GroupMaxSizeReached = 81,
    /// The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id.
    FencedInstanceId = 82,
    /// Eligible topic partition leaders are not available.
    EligibleLeadersNotAvailable = 83,
    /// Leader election not needed for topic partition.
    ElectionNotNeeded = 84,
    /// No partition reassignment is in progress.
    NoReassignmentInProgress = 85,
    /// Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it.
    GroupSubscribedToTopic = 86,
    /// This record has failed the validation on broker and hence will be rejected.
    InvalidRecord = 87,
    /// There are unstable offsets that need to be cleared.
    UnstableOffsetCommit = 88,
    /// The throttling quota has been exceeded.
    ThrottlingQuotaExceeded = 89,
    /// There is a newer producer with the same transactionalId which fences the current one.
    ProducerFenced = 90,
    /// A request illegally referred to a resource that does not exist.
    ResourceNotFound = 91,
    /// A request illegally referred to the same resource twice.
    DuplicateResource = 92,
    /// Requested credential would not meet criteria for acceptability.
    UnacceptableCredential = 93,
    /// Indicates that the either the sender or recipient of a voter-only request is not one of the expected voters
    InconsistentVoterSet = 94,
    /// The given update version was invalid.
    InvalidUpdateVersion = 95,
    /// Unable to update finalized features due to an unexpected server error.
    FeatureUpdateFailed = 96,
    /// Request principal deserialization failed during forwarding. This indicates an internal error on the broker cluster security setup.
    PrincipalDeserializationFailure = 97,
    /// Requested snapshot was not found
    SnapshotNotFound = 98,
    /// Requested position is not greater than or equal to zero, and less than the size of the snapshot.
    PositionOutOfRange = 99,
    /// This server does not host this topic ID.
    UnknownTopicId = 100,
    /// This broker ID is already in use.
    DuplicateBrokerRegistration = 101,
    /// The given broker ID was not registered.
    BrokerIdNotRegistered = 102,
    /// The log's topic ID did not match the topic ID in the request
    InconsistentTopicId = 103,
    /// The clusterId in the request does not match that found on the server
    InconsistentClusterId = 104,
    /// The transactionalId could not be found
    TransactionalIdNotFound = 105,
    /// The fetch session encountered inconsistent topic ID usage
    FetchSessionTopicIdError = 106,
    /// The new ISR contains at least one ineligible replica.
    IneligibleReplica = 107,
    /// The AlterPartition request successfully updated the partition state but the leader has changed.
    NewLeaderElected = 108,
    /// The requested offset is moved to tiered storage.
    OffsetMovedToTieredStorage = 109,
    /// The member epoch is fenced by the group coordinator. The member must abandon all its partitions and rejoin.
    FencedMemberEpoch = 110,
    /// The instance ID is still used by another member in the consumer group. That member must leave first.
    UnreleasedInstanceId = 111,
    /// The assignor or its version range is not supported by the consumer group.
    UnsupportedAssignor = 112,
    /// The member epoch is stale. The member must retry after receiving its updated member epoch via the ConsumerGroupHeartbeat API.
    StaleMemberEpoch = 113,
    /// The request was sent to an endpoint of the wrong type.
    MismatchedEndpointType = 114,
    /// This endpoint type is not supported yet.
    UnsupportedEndpointType = 115,
    /// This controller ID is not known.
    UnknownControllerId = 116,
    /// Client sent a push telemetry request with an invalid or outdated subscription ID.
    UnknownSubscriptionId = 117,
    /// Client sent a push telemetry request larger than the maximum size the broker will accept.
    TelemetryTooLarge = 118,
    /// The controller has considered the broker registration to be invalid.
    InvalidRegistration = 119,
    /// The server encountered an error with the transaction. The client can abort the transaction to continue using this transactional ID.
    TransactionAbortable = 120,
    /// The record state is invalid. The acknowledgement of delivery could not be completed.
    InvalidRecordState = 121,
    /// The share session was not found.
    ShareSessionNotFound = 122,
    /// The share session epoch is invalid.
    InvalidShareSessionEpoch = 123,
    /// The share coordinator rejected the request because the share-group state epoch did not match.
    FencedStateEpoch = 124,
    /// The voter key doesn't match the receiving replica's key.
    InvalidVoterKey = 125,
    /// The voter is already part of the set of voters.
    DuplicateVoter = 126,
    /// The voter is not part of the set of voters.
    VoterNotFound = 127,
    /// The regular expression is not valid.
    InvalidRegularExpression = 128,
    /// Client metadata is stale, client should rebootstrap to obtain new metadata.
    RebootstrapRequired = 129,
    /// The supplied topology is invalid.
    StreamsInvalidTopology = 130,
    /// The supplied topology epoch is invalid.
    StreamsInvalidTopologyEpoch = 131,
    /// The supplied topology epoch is outdated.
    StreamsTopologyFenced = 132,
    /// The limit of share sessions has been reached.
    ShareSessionLimitReached = 133,
}

/// (code, Kafka's name, retriable) for every variant, in code order.
const TABLE: &[(ErrorCode, &str, bool)] = &[
    (ErrorCode::UnknownServerError, "UNKNOWN_SERVER_ERROR", false),
    (ErrorCode::None, "NONE", false),
    (ErrorCode::OffsetOutOfRange, "OFFSET_OUT_OF_RANGE", false),
    (ErrorCode::CorruptMessage, "CORRUPT_MESSAGE", true),
    (
        ErrorCode::UnknownTopicOrPartition,
        "UNKNOWN_TOPIC_OR_PARTITION",
        true,
    ),
    (ErrorCode::InvalidFetchSize, "INVALID_FETCH_SIZE", false),
    (ErrorCode::LeaderNotAvailable, "LEADER_NOT_AVAILABLE", true),
    (
        ErrorCode::NotLeaderOrFollower,
        "NOT_LEADER_OR_FOLLOWER",
        true,
    ),
    (ErrorCode::RequestTimedOut, "REQUEST_TIMED_OUT", true),
    (ErrorCode::BrokerNotAvailable, "BROKER_NOT_AVAILABLE", false),
    (
        ErrorCode::ReplicaNotAvailable,
        "REPLICA_NOT_AVAILABLE",
        true,
    ),
    (ErrorCode::MessageTooLarge, "MESSAGE_TOO_LARGE", false),
    (
        ErrorCode::StaleControllerEpoch,
        "STALE_CONTROLLER_EPOCH",
        false,
    ),
    (
        ErrorCode::OffsetMetadataTooLarge,
        "OFFSET_METADATA_TOO_LARGE",
        false,
    ),
    (ErrorCode::NetworkException, "NETWORK_EXCEPTION", true),
    (
        ErrorCode::CoordinatorLoadInProgress,
        "COORDINATOR_LOAD_IN_PROGRESS",
        true,
    ),
    (
        ErrorCode::CoordinatorNotAvailable,
        "COORDINATOR_NOT_AVAILABLE",
        true,
    ),
    (ErrorCode::NotCoordinator, "NOT_COORDINATOR", true),
    (
        ErrorCode::InvalidTopicException,
        "INVALID_TOPIC_EXCEPTION",
        false,
    ),
    (
        ErrorCode::RecordListTooLarge,
        "RECORD_LIST_TOO_LARGE",
        false,
    ),
    (ErrorCode::NotEnoughReplicas, "NOT_ENOUGH_REPLICAS", true),
    (
        ErrorCode::NotEnoughReplicasAfterAppend,
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        true,
    ),
    (
        ErrorCode::InvalidRequiredAcks,
        "INVALID_REQUIRED_ACKS",
        false,
    ),
    (ErrorCode::IllegalGeneration, "ILLEGAL_GENERATION", false),
    (
        ErrorCode::InconsistentGroupProtocol,
        "INCONSISTENT_GROUP_PROTOCOL",
        false,
    ),
    (ErrorCode::InvalidGroupId, "INVALID_GROUP_ID", false),
    (ErrorCode::UnknownMemberId, "UNKNOWN_MEMBER_ID", false),
    (
        ErrorCode::InvalidSessionTimeout,
        "INVALID_SESSION_TIMEOUT",
        false,
    ),
    (
        ErrorCode::RebalanceInProgress,
        "REBALANCE_IN_PROGRESS",
        false,
    ),
    (
        ErrorCode::InvalidCommitOffsetSize,
        "INVALID_COMMIT_OFFSET_SIZE",
        false,
    ),
    (
        ErrorCode::TopicAuthorizationFailed,
        "TOPIC_AUTHORIZATION_FAILED",
        false,
    ),
    (
        ErrorCode::GroupAuthorizationFailed,
        "GROUP_AUTHORIZATION_FAILED",
        false,
    ),
    (
        ErrorCode::ClusterAuthorizationFailed,
        "CLUSTER_AUTHORIZATION_FAILED",
        false,
    ),
    (ErrorCode::InvalidTimestamp, "INVALID_TIMESTAMP", false),
    (
        ErrorCode::UnsupportedSaslMechanism,
        "UNSUPPORTED_SASL_MECHANISM",
        false,
    ),
    (ErrorCode::IllegalSaslState, "ILLEGAL_SASL_STATE", false),
    (ErrorCode::UnsupportedVersion, "UNSUPPORTED_VERSION", false),
    (ErrorCode::TopicAlreadyExists, "TOPIC_ALREADY_EXISTS", false),
    (ErrorCode::InvalidPartitions, "INVALID_PARTITIONS", false),
    (
        ErrorCode::InvalidReplicationFactor,
        "INVALID_REPLICATION_FACTOR",
        false,
    ),
    (
        ErrorCode::InvalidReplicaAssignment,
        "INVALID_REPLICA_ASSIGNMENT",
        false,
    ),
    (ErrorCode::InvalidConfig, "INVALID_CONFIG", false),
    (ErrorCode::NotController, "NOT_CONTROLLER", true),
    (ErrorCode::InvalidRequest, "INVALID_REQUEST", false),
    (
        ErrorCode::UnsupportedForMessageFormat,
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        false,
    ),
    (ErrorCode::PolicyViolation, "POLICY_VIOLATION", false),
    (
        ErrorCode::OutOfOrderSequenceNumber,
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        false,
    ),
    (
        ErrorCode::DuplicateSequenceNumber,
        "DUPLICATE_SEQUENCE_NUMBER",
        false,
    ),
    (
        ErrorCode::InvalidProducerEpoch,
        "INVALID_PRODUCER_EPOCH",
        false,
    ),
    (ErrorCode::InvalidTxnState, "INVALID_TXN_STATE", false),
    (
        ErrorCode::InvalidProducerIdMapping,
        "INVALID_PRODUCER_ID_MAPPING",
        false,
    ),
    (
        ErrorCode::InvalidTransactionTimeout,
        "INVALID_TRANSACTION_TIMEOUT",
        false,
    ),
    (
        ErrorCode::ConcurrentTransactions,
        "CONCURRENT_TRANSACTIONS",
        false,
    ),
    (
        ErrorCode::TransactionCoordinatorFenced,
        "TRANSACTION_COORDINATOR_FENCED",
        false,
    ),
    (
        ErrorCode::TransactionalIdAuthorizationFailed,
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        false,
    ),
    (ErrorCode::SecurityDisabled, "SECURITY_DISABLED", false),
    (
        ErrorCode::OperationNotAttempted,
        "OPERATION_NOT_ATTEMPTED",
        false,
    ),
    (ErrorCode::KafkaStorageError, "KAFKA_STORAGE_ERROR", true),
    (ErrorCode::LogDirNotFound, "LOG_DIR_NOT_FOUND", false),
    (
        ErrorCode::SaslAuthenticationFailed,
        "SASL_AUTHENTICATION_FAILED",
        false,
    ),
    (ErrorCode::UnknownProducerId, "UNKNOWN_PRODUCER_ID", false),
    (
        ErrorCode::ReassignmentInProgress,
        "REASSIGNMENT_IN_PROGRESS",
        false,
    ),
    (
        ErrorCode::DelegationTokenAuthDisabled,
        "DELEGATION_TOKEN_AUTH_DISABLED",
        false,
    ),
    (
        ErrorCode::DelegationTokenNotFound,
        "DELEGATION_TOKEN_NOT_FOUND",
        false,
    ),
    (
        ErrorCode::DelegationTokenOwnerMismatch,
        "DELEGATION_TOKEN_OWNER_MISMATCH",
        false,
    ),
    (
        ErrorCode::DelegationTokenRequestNotAllowed,
        "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
        false,
    ),
    (
        ErrorCode::DelegationTokenAuthorizationFailed,
        "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
        false,
    ),
    (
        ErrorCode::DelegationTokenExpired,
        "DELEGATION_TOKEN_EXPIRED",
        false,
    ),
    (
        ErrorCode::InvalidPrincipalType,
        "INVALID_PRINCIPAL_TYPE",
        false,
    ),
    (ErrorCode::NonEmptyGroup, "NON_EMPTY_GROUP", false),
    (ErrorCode::GroupIdNotFound, "GROUP_ID_NOT_FOUND", false),
    (
        ErrorCode::FetchSessionIdNotFound,
        "FETCH_SESSION_ID_NOT_FOUND",
        true,
    ),
    (
        ErrorCode::InvalidFetchSessionEpoch,
        "INVALID_FETCH_SESSION_EPOCH",
        true,
    ),
    (ErrorCode::ListenerNotFound, "LISTENER_NOT_FOUND", true),
    (
        ErrorCode::TopicDeletionDisabled,
        "TOPIC_DELETION_DISABLED",
        false,
    ),
    (ErrorCode::FencedLeaderEpoch, "FENCED_LEADER_EPOCH", true),
    (ErrorCode::UnknownLeaderEpoch, "UNKNOWN_LEADER_EPOCH", true),
    (
        ErrorCode::UnsupportedCompressionType,
        "UNSUPPORTED_COMPRESSION_TYPE",
        false,
    ),
    (ErrorCode::StaleBrokerEpoch, "STALE_BROKER_EPOCH", false),
    (ErrorCode::OffsetNotAvailable, "OFFSET_NOT_AVAILABLE", true),
    (ErrorCode::MemberIdRequired, "MEMBER_ID_REQUIRED", false),
    (
        ErrorCode::PreferredLeaderNotAvailable,
        "PREFERRED_LEADER_NOT_AVAILABLE",
        true,
    ),
    (
        ErrorCode::GroupMaxSizeReached,
        "GROUP_MAX_SIZE_REACHED",
        false,
    ),
    (ErrorCode::FencedInstanceId, "FENCED_INSTANCE_ID", false),
    (
        ErrorCode::EligibleLeadersNotAvailable,
        "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        true,
    ),
    (ErrorCode::ElectionNotNeeded, "ELECTION_NOT_NEEDED", true),
    (
        ErrorCode::NoReassignmentInProgress,
        "NO_REASSIGNMENT_IN_PROGRESS",
        false,
    ),
    (
        ErrorCode::GroupSubscribedToTopic,
        "GROUP_SUBSCRIBED_TO_TOPIC",
        false,
    ),
    (ErrorCode::InvalidRecord, "INVALID_RECORD", false),
    (
        ErrorCode::UnstableOffsetCommit,
        "UNSTABLE_OFFSET_COMMIT",
        true,
    ),
    (
        ErrorCode::ThrottlingQuotaExceeded,
        "THROTTLING_QUOTA_EXCEEDED",
        true,
    ),
    (ErrorCode::ProducerFenced, "PRODUCER_FENCED", false),
    (ErrorCode::ResourceNotFound, "RESOURCE_NOT_FOUND", false),
    (ErrorCode::DuplicateResource, "DUPLICATE_RESOURCE", false),
    (
        ErrorCode::UnacceptableCredential,
        "UNACCEPTABLE_CREDENTIAL",
        false,
    ),
    (
        ErrorCode::InconsistentVoterSet,
        "INCONSISTENT_VOTER_SET",
        false,
    ),
    (
        ErrorCode::InvalidUpdateVersion,
        "INVALID_UPDATE_VERSION",
        false,
    ),
    (
        ErrorCode::FeatureUpdateFailed,
        "FEATURE_UPDATE_FAILED",
        false,
    ),
    (
        ErrorCode::PrincipalDeserializationFailure,
        "PRINCIPAL_DESERIALIZATION_FAILURE",
        false,
    ),
    (ErrorCode::SnapshotNotFound, "SNAPSHOT_NOT_FOUND", false),
    (
        ErrorCode::PositionOutOfRange,
        "POSITION_OUT_OF_RANGE",
        false,
    ),
    (ErrorCode::UnknownTopicId, "UNKNOWN_TOPIC_ID", true),
    (
        ErrorCode::DuplicateBrokerRegistration,
        "DUPLICATE_BROKER_REGISTRATION",
        false,
    ),
    (
        ErrorCode::BrokerIdNotRegistered,
        "BROKER_ID_NOT_REGISTERED",
        false,
    ),
    (
        ErrorCode::InconsistentTopicId,
        "INCONSISTENT_TOPIC_ID",
        true,
    ),
    (
        ErrorCode::InconsistentClusterId,
        "INCONSISTENT_CLUSTER_ID",
        false,
    ),
    (
        ErrorCode::TransactionalIdNotFound,
        "TRANSACTIONAL_ID_NOT_FOUND",
        false,
    ),
    (
        ErrorCode::FetchSessionTopicIdError,
        "FETCH_SESSION_TOPIC_ID_ERROR",
        true,
    ),
    (ErrorCode::IneligibleReplica, "INELIGIBLE_REPLICA", false),
    (ErrorCode::NewLeaderElected, "NEW_LEADER_ELECTED", false),
    (
        ErrorCode::OffsetMovedToTieredStorage,
        "OFFSET_MOVED_TO_TIERED_STORAGE",
        false,
    ),
    (ErrorCode::FencedMemberEpoch, "FENCED_MEMBER_EPOCH", false),
    (
        ErrorCode::UnreleasedInstanceId,
        "UNRELEASED_INSTANCE_ID",
        false,
    ),
    (
        ErrorCode::UnsupportedAssignor,
        "UNSUPPORTED_ASSIGNOR",
        false,
    ),
    (ErrorCode::StaleMemberEpoch, "STALE_MEMBER_EPOCH", false),
    (
        ErrorCode::MismatchedEndpointType,
        "MISMATCHED_ENDPOINT_TYPE",
        false,
    ),
    (
        ErrorCode::UnsupportedEndpointType,
        "UNSUPPORTED_ENDPOINT_TYPE",
        false,
    ),
    (
        ErrorCode::UnknownControllerId,
        "UNKNOWN_CONTROLLER_ID",
        false,
    ),
    (
        ErrorCode::UnknownSubscriptionId,
        "UNKNOWN_SUBSCRIPTION_ID",
        false,
    ),
    (ErrorCode::TelemetryTooLarge, "TELEMETRY_TOO_LARGE", false),
    (
        ErrorCode::InvalidRegistration,
        "INVALID_REGISTRATION",
        false,
    ),
    (
        ErrorCode::TransactionAbortable,
        "TRANSACTION_ABORTABLE",
        false,
    ),
    (ErrorCode::InvalidRecordState, "INVALID_RECORD_STATE", false),
    (
        ErrorCode::ShareSessionNotFound,
        "SHARE_SESSION_NOT_FOUND",
        true,
    ),
    (
        ErrorCode::InvalidShareSessionEpoch,
        "INVALID_SHARE_SESSION_EPOCH",
        true,
    ),
    (ErrorCode::FencedStateEpoch, "FENCED_STATE_EPOCH", false),
    (ErrorCode::InvalidVoterKey, "INVALID_VOTER_KEY", false),
    (ErrorCode::DuplicateVoter, "DUPLICATE_VOTER", false),
    (ErrorCode::VoterNotFound, "VOTER_NOT_FOUND", false),
    (
        ErrorCode::InvalidRegularExpression,
        "INVALID_REGULAR_EXPRESSION",
        false,
    ),
    (
        ErrorCode::RebootstrapRequired,
        "REBOOTSTRAP_REQUIRED",
        false,
    ),
    (
        ErrorCode::StreamsInvalidTopology,
        "STREAMS_INVALID_TOPOLOGY",
        false,
    ),
    (
        ErrorCode::StreamsInvalidTopologyEpoch,
        "STREAMS_INVALID_TOPOLOGY_EPOCH",
        false,
    ),
    (
        ErrorCode::StreamsTopologyFenced,
        "STREAMS_TOPOLOGY_FENCED",
        false,
    ),
    (
        ErrorCode::ShareSessionLimitReached,
        "SHARE_SESSION_LIMIT_REACHED",
        true,
    ),
];

impl ErrorCode {
    /// The wire value.
    pub const fn code(self) -> i16 {
        self as i16
    }

    /// The code for a wire value, if Kafka defines it.
    pub fn from_code(code: i16) -> Option<ErrorCode> {
        TABLE
            .iter()
            .find(|(e, _, _)| e.code() == code)
            .map(|(e, _, _)| *e)
    }

    /// Kafka's name of the code (`NOT_LEADER_OR_FOLLOWER`), for logs and
    /// tools.
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(e, _, _)| *e == self)
            .map_or("UNKNOWN", |(_, name, _)| name)
    }

    /// Whether a client may retry the same request (Kafka's
    /// `RetriableException`).
    pub fn is_retriable(self) -> bool {
        TABLE
            .iter()
            .any(|(e, _, retriable)| *e == self && *retriable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_ordered() {
        assert!(TABLE.windows(2).all(|w| w[0].0.code() < w[1].0.code()));
        for (code, _, _) in TABLE {
            assert_eq!(ErrorCode::from_code(code.code()), Some(*code));
        }
        assert_eq!(ErrorCode::NotLeaderOrFollower.code(), 6);
        assert_eq!(
            ErrorCode::NotLeaderOrFollower.name(),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert!(ErrorCode::NotLeaderOrFollower.is_retriable());
        assert!(!ErrorCode::InvalidRequest.is_retriable());
        assert_eq!(ErrorCode::from_code(-2), None);
    }

    #[test]
    fn codes_match_kafka_protocol_crate() {
        for (code, _, retriable) in TABLE {
            if code.code() == 0 {
                continue;
            }
            let theirs =
                kafka_protocol::ResponseError::try_from_code(code.code()).expect("known code");
            assert_eq!(theirs.code(), code.code());
            assert_eq!(theirs.is_retriable(), *retriable, "{code:?}");
        }
    }
}
