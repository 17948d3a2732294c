//! The coordinator's vocabulary: the requests it takes, the replies it
//! gives, group states, and the identifiers the shell and the coordinator
//! share. Nothing here knows the wire format; the server's handlers map
//! Kafka messages to these and back.

use bytes::Bytes;
use ringbroker_protocol::errors::ErrorCode;

/// One request inside the coordinator, numbered by the shell. The
/// coordinator answers every request it is given exactly once, with an
/// [`crate::Effect::Reply`] carrying this id (possibly much later: a
/// JoinGroup waits for its rebalance, a commit for its append).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// One append the coordinator asked the shell to perform; the shell
/// reports its outcome with [`crate::Event::AppendCompleted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppendId(pub u64);

/// A partition of the `__consumer_offsets` topic: the unit a coordinator
/// loads, serves and unloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetsPartition(pub i32);

/// The states of a classic group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
    /// Being deleted; requests are refused until the deletion is durable
    /// (the group is then gone) or failed (the group is Empty again).
    Dead,
}

impl GroupState {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The kind of a group (ListGroups v5 `group_type`). Only classic groups
/// exist in ringbroker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupType {
    /// The classic (JoinGroup/SyncGroup) protocol.
    Classic,
}

impl GroupType {
    /// Kafka's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            GroupType::Classic => "classic",
        }
    }
}

/// One protocol a member supports, with its metadata (for consumers: the
/// subscription).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol name ("range", "cooperative-sticky", ...).
    pub name: String,
    /// Opaque metadata.
    pub metadata: Bytes,
}

/// A JoinGroup request.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// Group id.
    pub group: String,
    /// Member id ("" for a member without one).
    pub member_id: String,
    /// Static instance id (`group.instance.id`).
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (0 or less: the session timeout, as JoinGroup v0
    /// has no such field).
    pub rebalance_timeout_ms: i32,
    /// Protocol type ("consumer", ...).
    pub protocol_type: String,
    /// Protocols in preference order.
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4 and later: a member without an id is first given one
    /// and told MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9 and later: the answer may tell a leader to skip the
    /// assignment (KIP-814).
    pub supports_skip_assignment: bool,
}

/// A member as the leader sees it in the JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResponse {
    /// Error code.
    pub error: ErrorCode,
    /// Generation (-1 on error).
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// The leader need not compute an assignment (KIP-814).
    pub skip_assignment: bool,
    /// For the leader: every member with its metadata.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An error answer naming `member_id`.
    pub fn error(error: ErrorCode, member_id: &str) -> JoinResponse {
        JoinResponse {
            error,
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// A SyncGroup request.
#[derive(Clone, Debug)]
pub struct SyncRequest {
    /// Group id.
    pub group: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Protocol type (SyncGroup v5).
    pub protocol_type: Option<String>,
    /// Protocol name (SyncGroup v5).
    pub protocol: Option<String>,
    /// The leader's assignments: (member id, assignment).
    pub assignments: Vec<(String, Bytes)>,
}

/// The answer to a SyncGroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    /// Error code.
    pub error: ErrorCode,
    /// The member's assignment.
    pub assignment: Bytes,
    /// Protocol type (on success).
    pub protocol_type: Option<String>,
    /// Protocol name (on success).
    pub protocol: Option<String>,
}

impl SyncResponse {
    /// An error answer.
    pub fn error(error: ErrorCode) -> SyncResponse {
        SyncResponse {
            error,
            assignment: Bytes::new(),
            protocol_type: None,
            protocol: None,
        }
    }
}

/// A Heartbeat request.
#[derive(Clone, Debug)]
pub struct HeartbeatRequest {
    /// Group id.
    pub group: String,
    /// Generation.
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
}

/// One member named by a LeaveGroup.
#[derive(Clone, Debug)]
pub struct LeavingMember {
    /// Member id ("" with an instance id: remove that static member).
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
}

/// A LeaveGroup request (one member before v3, a batch from v3).
#[derive(Clone, Debug)]
pub struct LeaveRequest {
    /// Group id.
    pub group: String,
    /// Members leaving.
    pub members: Vec<LeavingMember>,
}

/// The answer to a LeaveGroup: a top-level error, or one error per member
/// in request order (empty when the top-level error is set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveResponse {
    /// Top-level error.
    pub error: ErrorCode,
    /// Per-member errors.
    pub members: Vec<ErrorCode>,
}

/// One partition's offset in an OffsetCommit.
#[derive(Clone, Debug)]
pub struct OffsetCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the next record to consume.
    pub offset: i64,
    /// Leader epoch (-1 when unknown).
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
    /// Set by the handler when the partition is refused before it reaches
    /// the coordinator (an unknown topic or partition).
    pub rejected: Option<ErrorCode>,
}

/// An OffsetCommit request.
#[derive(Clone, Debug)]
pub struct CommitRequest {
    /// Group id.
    pub group: String,
    /// Generation (-1 for commits outside group management).
    pub generation: i32,
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Offsets, in request order.
    pub offsets: Vec<OffsetCommit>,
}

/// The transactional producer of a TxnOffsetCommit: its offsets are
/// written as one transactional batch of this producer and stay pending
/// until the transaction's marker ([`crate::Event::TxnCompleted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnProducer {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
}

/// A TxnOffsetCommit request (offsets committed inside a transaction).
#[derive(Clone, Debug)]
pub struct TxnCommitRequest {
    /// Group id.
    pub group: String,
    /// The producer's transactional id (logged; the transaction
    /// coordinator owns the transaction's state).
    pub transactional_id: String,
    /// The producer whose transaction holds the offsets.
    pub producer: TxnProducer,
    /// Generation (-1 before TxnOffsetCommit v3, or outside group
    /// management).
    pub generation: i32,
    /// Member id ("" before v3).
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Offsets, in request order.
    pub offsets: Vec<OffsetCommit>,
}

/// Partitions of one topic.
#[derive(Clone, Debug)]
pub struct TopicPartitions {
    /// Topic.
    pub topic: String,
    /// Partitions.
    pub partitions: Vec<i32>,
}

/// An OffsetFetch request for one group.
#[derive(Clone, Debug)]
pub struct FetchOffsetsRequest {
    /// Group id.
    pub group: String,
    /// The partitions wanted; `None` for every committed partition.
    pub topics: Option<Vec<TopicPartitions>>,
    /// OffsetFetch v7 and later: partitions with offsets pending in an
    /// open transaction answer UNSTABLE_OFFSET_COMMIT (KIP-447).
    pub require_stable: bool,
}

/// One committed offset, as OffsetFetch returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset (-1 when nothing is committed).
    pub offset: i64,
    /// Leader epoch (-1 when unknown).
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: Option<String>,
    /// Partition-level error (UNSTABLE_OFFSET_COMMIT, with offset -1, for
    /// a partition with pending transactional offsets when the request
    /// requires stable offsets).
    pub error: ErrorCode,
}

/// The answer to an OffsetFetch for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOffsetsResponse {
    /// Group-level error.
    pub error: ErrorCode,
    /// The offsets.
    pub offsets: Vec<FetchedOffset>,
}

/// A member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the chosen protocol (Stable groups only).
    pub metadata: Bytes,
    /// Assignment (Stable groups only).
    pub assignment: Bytes,
}

/// The answer to DescribeGroups for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Error code.
    pub error: ErrorCode,
    /// State, `None` when the coordinator could not tell (an error).
    pub state: Option<GroupState>,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol (Stable groups only).
    pub protocol: String,
    /// Members.
    pub members: Vec<DescribedMember>,
}

/// One group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedGroup {
    /// Group id.
    pub group: String,
    /// Protocol type ("" for groups that only store offsets).
    pub protocol_type: String,
    /// State name.
    pub state: &'static str,
    /// Group type name.
    pub group_type: &'static str,
}

/// The answer to ListGroups from one coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResponse {
    /// An error from a partition being loaded or failed (the groups of the
    /// other partitions are still listed).
    pub error: ErrorCode,
    /// Groups.
    pub groups: Vec<ListedGroup>,
}

/// An OffsetDelete request.
#[derive(Clone, Debug)]
pub struct OffsetDeleteRequest {
    /// Group id.
    pub group: String,
    /// (topic, partition) pairs.
    pub partitions: Vec<(String, i32)>,
}

/// The answer to an OffsetDelete: a top-level error, or one error per
/// partition in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetDeleteResponse {
    /// Top-level error.
    pub error: ErrorCode,
    /// Per-partition errors.
    pub partitions: Vec<ErrorCode>,
}

/// A group API request, as given to the coordinator of its group.
#[derive(Clone, Debug)]
pub enum Request {
    /// JoinGroup.
    Join(JoinRequest),
    /// SyncGroup.
    Sync(SyncRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    Leave(LeaveRequest),
    /// OffsetCommit.
    Commit(CommitRequest),
    /// TxnOffsetCommit.
    TxnCommit(TxnCommitRequest),
    /// OffsetFetch for one group.
    FetchOffsets(FetchOffsetsRequest),
    /// DescribeGroups for one group.
    Describe(String),
    /// ListGroups: every group of this coordinator.
    List,
    /// DeleteGroups for one group.
    Delete(String),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteRequest),
}

impl Request {
    /// The group the request names (`None` for ListGroups).
    pub fn group(&self) -> Option<&str> {
        match self {
            Request::Join(r) => Some(&r.group),
            Request::Sync(r) => Some(&r.group),
            Request::Heartbeat(r) => Some(&r.group),
            Request::Leave(r) => Some(&r.group),
            Request::Commit(r) => Some(&r.group),
            Request::TxnCommit(r) => Some(&r.group),
            Request::FetchOffsets(r) => Some(&r.group),
            Request::Describe(group) | Request::Delete(group) => Some(group),
            Request::OffsetDelete(r) => Some(&r.group),
            Request::List => None,
        }
    }

    /// The answer that refuses the whole request with `error` (an
    /// unavailable or loading coordinator, a bad group id).
    pub fn error_reply(&self, error: ErrorCode) -> Reply {
        match self {
            Request::Join(r) => Reply::Join(JoinResponse::error(error, &r.member_id)),
            Request::Sync(_) => Reply::Sync(SyncResponse::error(error)),
            Request::Heartbeat(_) => Reply::Heartbeat(error),
            Request::Leave(_) => Reply::Leave(LeaveResponse {
                error,
                members: Vec::new(),
            }),
            Request::Commit(r) => Reply::Commit(vec![error; r.offsets.len()]),
            Request::TxnCommit(r) => Reply::TxnCommit(vec![error; r.offsets.len()]),
            Request::FetchOffsets(_) => Reply::FetchOffsets(FetchOffsetsResponse {
                error,
                offsets: Vec::new(),
            }),
            Request::Describe(_) => Reply::Describe(GroupDescription {
                error,
                state: None,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            }),
            Request::List => Reply::List(ListResponse {
                error,
                groups: Vec::new(),
            }),
            Request::Delete(_) => Reply::Delete(error),
            Request::OffsetDelete(_) => Reply::OffsetDelete(OffsetDeleteResponse {
                error,
                partitions: Vec::new(),
            }),
        }
    }
}

/// The coordinator's answer to a [`Request`], variant for variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// JoinGroup.
    Join(JoinResponse),
    /// SyncGroup.
    Sync(SyncResponse),
    /// Heartbeat.
    Heartbeat(ErrorCode),
    /// LeaveGroup.
    Leave(LeaveResponse),
    /// OffsetCommit: per-partition errors in request order.
    Commit(Vec<ErrorCode>),
    /// TxnOffsetCommit: per-partition errors in request order.
    TxnCommit(Vec<ErrorCode>),
    /// OffsetFetch.
    FetchOffsets(FetchOffsetsResponse),
    /// DescribeGroups.
    Describe(GroupDescription),
    /// ListGroups.
    List(ListResponse),
    /// DeleteGroups.
    Delete(ErrorCode),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteResponse),
}

impl Reply {
    /// The answer to give instead of this one when the append it waited
    /// for failed with `append_error` (the error the log gave).
    pub fn after_failed_append(self, append_error: ErrorCode) -> Reply {
        let group_error = group_metadata_append_error(append_error);
        match self {
            Reply::Join(r) => Reply::Join(JoinResponse {
                member_id: String::new(),
                ..JoinResponse::error(group_error, &r.member_id)
            }),
            Reply::Sync(_) => Reply::Sync(SyncResponse::error(group_error)),
            Reply::Heartbeat(_) => Reply::Heartbeat(group_error),
            Reply::Leave(_) => Reply::Leave(LeaveResponse {
                error: group_error,
                members: Vec::new(),
            }),
            Reply::Commit(codes) => Reply::Commit(failed_commit_codes(codes, append_error)),
            Reply::TxnCommit(codes) => Reply::TxnCommit(failed_commit_codes(codes, append_error)),
            Reply::FetchOffsets(_) => Reply::FetchOffsets(FetchOffsetsResponse {
                error: group_error,
                offsets: Vec::new(),
            }),
            Reply::Describe(d) => Reply::Describe(GroupDescription {
                error: group_error,
                ..d
            }),
            Reply::List(l) => Reply::List(ListResponse {
                error: group_error,
                ..l
            }),
            Reply::Delete(_) => Reply::Delete(group_error),
            Reply::OffsetDelete(_) => Reply::OffsetDelete(OffsetDeleteResponse {
                error: group_error,
                partitions: Vec::new(),
            }),
        }
    }
}

/// Per-partition commit errors after the append failed: the partitions
/// that were accepted get the append's error, as commits map it.
fn failed_commit_codes(codes: Vec<ErrorCode>, append_error: ErrorCode) -> Vec<ErrorCode> {
    let commit_error = offset_commit_append_error(append_error);
    codes
        .into_iter()
        .map(|c| {
            if c == ErrorCode::None {
                commit_error
            } else {
                c
            }
        })
        .collect()
}

/// The error a client is given when an append of group metadata (or a
/// deletion) fails, as Kafka's group coordinator maps it: errors of an
/// unavailable log become coordinator errors the client retries after
/// finding the coordinator again.
pub fn group_metadata_append_error(append_error: ErrorCode) -> ErrorCode {
    match append_error {
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend
        | ErrorCode::RequestTimedOut => ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError => ErrorCode::NotCoordinator,
        ErrorCode::MessageTooLarge
        | ErrorCode::RecordListTooLarge
        | ErrorCode::InvalidFetchSize => ErrorCode::UnknownServerError,
        other => other,
    }
}

/// The error a client is given when an append of offset commits fails
/// (as [`group_metadata_append_error`], but a commit too large for the log
/// is INVALID_COMMIT_OFFSET_SIZE, which consumers understand).
pub fn offset_commit_append_error(append_error: ErrorCode) -> ErrorCode {
    match append_error {
        ErrorCode::MessageTooLarge
        | ErrorCode::RecordListTooLarge
        | ErrorCode::InvalidFetchSize => ErrorCode::InvalidCommitOffsetSize,
        other => group_metadata_append_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_errors_map_to_coordinator_errors() {
        use ErrorCode::*;
        for (append, group, commit) in [
            (
                RequestTimedOut,
                CoordinatorNotAvailable,
                CoordinatorNotAvailable,
            ),
            (
                NotEnoughReplicas,
                CoordinatorNotAvailable,
                CoordinatorNotAvailable,
            ),
            (
                UnknownTopicOrPartition,
                CoordinatorNotAvailable,
                CoordinatorNotAvailable,
            ),
            (KafkaStorageError, NotCoordinator, NotCoordinator),
            (NotLeaderOrFollower, NotCoordinator, NotCoordinator),
            (MessageTooLarge, UnknownServerError, InvalidCommitOffsetSize),
            (CorruptMessage, CorruptMessage, CorruptMessage),
        ] {
            assert_eq!(group_metadata_append_error(append), group, "{append:?}");
            assert_eq!(offset_commit_append_error(append), commit, "{append:?}");
        }
    }

    #[test]
    fn failed_append_replies_keep_their_shape() {
        let commit = Reply::Commit(vec![ErrorCode::None, ErrorCode::OffsetMetadataTooLarge]);
        assert_eq!(
            commit.after_failed_append(ErrorCode::KafkaStorageError),
            Reply::Commit(vec![
                ErrorCode::NotCoordinator,
                ErrorCode::OffsetMetadataTooLarge
            ])
        );
        let leave = Reply::Leave(LeaveResponse {
            error: ErrorCode::None,
            members: vec![ErrorCode::None],
        });
        assert_eq!(
            leave.after_failed_append(ErrorCode::RequestTimedOut),
            Reply::Leave(LeaveResponse {
                error: ErrorCode::CoordinatorNotAvailable,
                members: Vec::new()
            })
        );
        let refused = Request::Commit(CommitRequest {
            group: "g".into(),
            generation: 1,
            member_id: "m".into(),
            instance_id: None,
            offsets: vec![],
        })
        .error_reply(ErrorCode::NotCoordinator);
        assert_eq!(refused, Reply::Commit(vec![]));
    }
}
