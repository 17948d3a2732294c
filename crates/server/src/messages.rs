//! Typed messages between shards. A request goes to the shard that owns the
//! partitions it names, inside an envelope with its reply handle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::catalog::{Catalog, TopicMeta};
use ringbroker_protocol::frame::FileSlice;

/// A message in a shard's inbox.
pub type ShardMessage = ringbroker_shards::Envelope<ShardRequest, ShardResponse>;

/// One partition's part of a produce request.
#[derive(Clone, Debug)]
pub struct ProducePart {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The record batches as received.
    pub records: Bytes,
}

/// The result of producing to one partition.
#[derive(Clone, Debug, Default)]
pub struct ProduceResult {
    /// Kafka error code (0 = none).
    pub error_code: i16,
    /// Optional error message.
    pub error_message: Option<String>,
    /// Offset of the first appended record (-1 on error).
    pub base_offset: i64,
    /// LogAppendTime stamp, or -1.
    pub log_append_time_ms: i64,
    /// First offset of the log.
    pub log_start_offset: i64,
    /// Per-record errors (KIP-467): (index of the record in its batch,
    /// message), with INVALID_RECORD.
    pub record_errors: Vec<(i32, String)>,
}

/// One partition's part of a fetch request.
#[derive(Clone, Debug)]
pub struct FetchPart {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// First offset wanted.
    pub offset: i64,
    /// Bytes wanted from this partition at most (at least one batch is sent).
    pub max_bytes: usize,
    /// The follower fetching (its broker id), or -1 for a consumer: a
    /// follower reads up to the log end and its offset moves the high
    /// watermark.
    pub replica: i32,
    /// A READ_COMMITTED consumer: reads stop at the last stable offset and
    /// the aborted transactions are listed.
    pub read_committed: bool,
}

/// The result of reading one partition.
#[derive(Clone, Debug, Default)]
pub struct FetchResult {
    /// Kafka error code (0 = none).
    pub error_code: i16,
    /// High watermark.
    pub high_watermark: i64,
    /// Last stable offset.
    pub last_stable_offset: i64,
    /// First offset of the log.
    pub log_start_offset: i64,
    /// The record bytes, still in the file.
    pub records: Option<FileSlice>,
    /// READ_COMMITTED: the aborted transactions (producer id, first
    /// offset) overlapping what was read.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
}

/// One partition's part of a ListOffsets request.
#[derive(Clone, Debug)]
pub struct ListOffsetsPart {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// -1 latest, -2 earliest, -3 max timestamp, -4 earliest local, else a time.
    pub timestamp: i64,
    /// READ_COMMITTED: "latest" is the last stable offset.
    pub read_committed: bool,
}

/// The result of one ListOffsets lookup.
#[derive(Clone, Debug, Default)]
pub struct ListOffsetsResult {
    /// Kafka error code (0 = none).
    pub error_code: i16,
    /// Timestamp found (-1 when not applicable).
    pub timestamp: i64,
    /// Offset found (-1 when none).
    pub offset: i64,
}

/// One transaction marker to write (WriteTxnMarkers).
#[derive(Clone, Debug)]
pub struct MarkerWrite {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The transaction's producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// The transaction coordinator's epoch.
    pub coordinator_epoch: i32,
    /// COMMIT (true) or ABORT.
    pub commit: bool,
}

/// A partition named by topic and index.
pub type PartitionKey = (String, i32);

/// The idempotent producers of one partition (DescribeProducers).
#[derive(Clone, Debug, Default)]
pub struct ProducersResult {
    /// Kafka error code (0 = none).
    pub error_code: i16,
    /// The producers.
    pub producers: Vec<ProducerInfo>,
}

/// One producer of a partition (DescribeProducers).
#[derive(Clone, Debug, Default)]
pub struct ProducerInfo {
    /// Producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
    /// Its last sequence.
    pub last_sequence: i32,
    /// Offset of its last record.
    pub last_offset: i64,
    /// Epoch of the coordinator that wrote its last marker (-1: none).
    pub coordinator_epoch: i32,
    /// First offset of its open transaction (-1: none).
    pub txn_start_offset: i64,
}

/// Metadata changes, executed by shard 0 one at a time.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum AdminRequest {
    /// Create topics (name, partitions, config overrides).
    CreateTopics {
        /// Topics to create, already validated for shape.
        topics: Vec<NewTopic>,
        /// Only check, change nothing.
        validate_only: bool,
    },
    /// Delete topics by name.
    DeleteTopics(Vec<String>),
    /// Grow topics to a new partition count.
    CreatePartitions {
        /// The topics to grow.
        topics: Vec<NewPartitions>,
        /// Only check, change nothing.
        validate_only: bool,
    },
    /// Replace topics' config overrides (already validated).
    SetTopicConfigs(Vec<(String, BTreeMap<String, String>)>),
    /// Replace dynamic broker configs (already validated) by resource name:
    /// "" for the cluster-wide defaults, a node id for one broker. An empty
    /// set removes the resource's entry.
    SetBrokerConfigs(Vec<(String, BTreeMap<String, String>)>),
    /// Replace groups' configs (already validated); an empty set removes
    /// the group's entry.
    SetGroupConfigs(Vec<(String, BTreeMap<String, String>)>),
    /// Leader elections (ElectLeaders): preferred, or unclean for
    /// partitions without a leader.
    ElectLeaders {
        /// Unclean rather than preferred.
        unclean: bool,
        /// The partitions.
        partitions: Vec<PartitionKey>,
    },
    /// Partition reassignments: the target replicas, `None` to cancel.
    Reassign(Vec<(PartitionKey, Option<Vec<i32>>)>),
}

impl AdminRequest {
    /// How many items the request has (each gets one result).
    pub fn items(&self) -> usize {
        match self {
            AdminRequest::CreateTopics { topics, .. } => topics.len(),
            AdminRequest::DeleteTopics(names) => names.len(),
            AdminRequest::CreatePartitions { topics, .. } => topics.len(),
            AdminRequest::SetTopicConfigs(items)
            | AdminRequest::SetBrokerConfigs(items)
            | AdminRequest::SetGroupConfigs(items) => items.len(),
            AdminRequest::ElectLeaders { partitions, .. } => partitions.len(),
            AdminRequest::Reassign(items) => items.len(),
        }
    }
}

/// A topic to create.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count (-1: num.partitions).
    pub partitions: i32,
    /// Replicas per partition (-1: default.replication.factor).
    pub replication_factor: i16,
    /// Broker ids per partition, numbered from 0, when the client placed
    /// the replicas itself (then `partitions` and `replication_factor` are
    /// -1).
    pub assignments: Vec<Vec<i32>>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
}

/// Partitions to add to a topic.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NewPartitions {
    /// Topic name.
    pub topic: String,
    /// The new total partition count.
    pub count: i32,
    /// Broker ids per new partition when the client placed them (else
    /// empty).
    pub assignments: Vec<Vec<i32>>,
}

/// Per-item outcome of an admin request: Kafka error code and message.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AdminResult {
    /// Kafka error code (0 = none).
    pub error_code: i16,
    /// Optional message.
    pub message: Option<String>,
    /// The topic after the change, when there is one.
    pub topic: Option<TopicMeta>,
}

/// The outcome of DeleteRecords on one partition.
#[derive(Clone, Debug, Default)]
pub struct DeleteRecordsResult {
    /// Kafka error code (0 = none).
    pub error_code: i16,
    /// The new log start offset (-1 on error).
    pub low_watermark: i64,
}

/// Requests one shard sends another.
pub enum ShardRequest {
    /// Append to partitions this shard owns and wait for `acks`.
    Produce {
        /// 0, 1 or -1.
        acks: i16,
        /// How long to wait for acks.
        timeout_ms: u64,
        /// The partitions' parts.
        parts: Vec<ProducePart>,
    },
    /// Read (without waiting) from partitions this shard owns.
    Fetch(Vec<FetchPart>),
    /// Answer when any of these partitions has data past the offset, or at the deadline.
    WaitForData {
        /// A follower waits for the log end, a consumer for the high
        /// watermark.
        replica: bool,
        /// A READ_COMMITTED consumer waits for the last stable offset.
        read_committed: bool,
        /// (topic, partition, offset).
        parts: Vec<(String, i32, i64)>,
        /// When to give up.
        deadline: Instant,
    },
    /// Look up offsets in partitions this shard owns.
    ListOffsets(Vec<ListOffsetsPart>),
    /// Move log start offsets of partitions this shard owns:
    /// (topic, partition, offset or -1 for the high watermark).
    DeleteRecords(Vec<(String, i32, i64)>),
    /// Record moved log start offsets in the checkpoint (shard 0 only).
    RecordLogStarts(Vec<((String, i32), i64)>),
    /// Bytes on disk of partitions this shard owns (DescribeLogDirs).
    PartitionSizes(Vec<PartitionKey>),
    /// Idempotent-producer state of partitions this shard owns.
    Producers(Vec<PartitionKey>),
    /// A metadata change (shard 0 only).
    Admin(AdminRequest),
    /// Adopt a new catalog: open or remove partitions this shard owns.
    ApplyCatalog(Arc<Catalog>),
    /// Start taking client connections (a cluster broker caught up).
    ServeClients,
    /// A group API call for a group this shard coordinates.
    Group(ringbroker_groups::Request),
    /// A transaction API call for a transactional id this shard
    /// coordinates.
    Txn(ringbroker_txn::Request),
    /// Write transaction markers to partitions this shard owns.
    WriteMarkers(Vec<MarkerWrite>),
    /// A cluster-unique producer id (shard 0 of a cluster node).
    ProducerId,
    /// Where leader epochs end in partitions this shard owns:
    /// (topic, partition, epoch).
    EpochEnds(Vec<(String, i32, i32)>),
    /// Have the controller create `__consumer_offsets` (shard 0 of a
    /// cluster node).
    CreateOffsetsTopic,
    /// Have the controller change a partition's ISR (shard 0 of a cluster
    /// node); answered `Done`.
    AlterIsr(crate::cluster::api::ControllerRequest),
}

/// Answers to [`ShardRequest`]s, variant for variant.
pub enum ShardResponse {
    /// Per-part produce results, in request order.
    Produce(Vec<ProduceResult>),
    /// Per-part fetch results, in request order.
    Fetch(Vec<FetchResult>),
    /// Per-part offsets, in request order.
    ListOffsets(Vec<ListOffsetsResult>),
    /// Per-partition DeleteRecords outcomes, in request order.
    DeleteRecords(Vec<DeleteRecordsResult>),
    /// Per-partition sizes in bytes (None: not on this shard), in order.
    PartitionSizes(Vec<Option<u64>>),
    /// Per-partition producers, in request order.
    Producers(Vec<ProducersResult>),
    /// Per-item admin results, in request order.
    Admin(Vec<AdminResult>),
    /// Done (WaitForData).
    Done,
    /// ApplyCatalog done; why partitions could not be opened, if so.
    Applied(Option<String>),
    /// The coordinator's answer.
    Group(ringbroker_groups::Reply),
    /// The transaction coordinator's answer.
    Txn(ringbroker_txn::Reply),
    /// Per-marker error codes, in request order.
    Markers(Vec<i16>),
    /// A producer id, or a Kafka error code.
    ProducerId(Result<i64, i16>),
    /// Per part: (error code, epoch, end offset), in request order.
    EpochEnds(Vec<(i16, i32, i64)>),
}
