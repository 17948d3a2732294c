//! Every bound the broker enforces, in one place.
//!
//! Configurable limits (message.max.bytes, socket.request.max.bytes, ...)
//! have their defaults here; the rest are fixed. Relationships between
//! bounds are checked at compile time at the bottom of this file.

/// Largest request frame accepted (Kafka's `socket.request.max.bytes` default).
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;
/// Requests read ahead of their responses on one connection (pipelining).
pub const INFLIGHT_REQUESTS_PER_CONNECTION_MAX_DEFAULT: usize = 64;
/// Capacity of each shard's inbox in the cross-core mesh.
pub const MESH_INBOX_CAPACITY: usize = 1024;
/// Partitions one shard may own.
pub const PARTITIONS_PER_SHARD_MAX: usize = 100_000;
/// Topics in one cluster.
pub const TOPICS_MAX: usize = 100_000;
/// Partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Bytes appended to a shard but not yet written to files; produce waits
/// when this is reached (write-behind back-pressure).
pub const SHARD_PENDING_WRITE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Largest fetch response (`fetch.max.bytes` upper bound a client may ask).
pub const FETCH_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Longest a Fetch may long-poll, whatever the client asks.
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;
/// Longest a produce with acks=all waits for its fsync before timing out.
pub const PRODUCE_TIMEOUT_MS_MAX: u64 = 300_000;
/// Idempotent-producer batches remembered per producer per partition
/// (Kafka's max.in.flight.requests.per.connection bound for idempotence).
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;
/// Idempotent producers tracked per partition; the oldest are evicted.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// Timeout for a graceful shutdown (SIGTERM) before in-flight work is abandoned.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;
/// A write of a blocked socket (sendfile) gives up after this long.
pub const SOCKET_SEND_TIMEOUT_MS: u64 = 30_000;
/// Memory each shard's io_uring registers for DMA buffers.
pub const IO_MEMORY_BYTES_PER_SHARD: usize = 2 * 1024 * 1024;
/// Threads in each shard's blocking pool (sendfile hand-off).
pub const BLOCKING_THREADS_PER_SHARD: usize = 4;
/// Bytes a partition may have written but not synced before the flusher
/// syncs them in the background (acks 0/1): bounds dirty page cache so the
/// kernel's writeback never stalls appends for long.
pub const UNSYNCED_BYTES_PER_PARTITION_MAX: u64 = 16 * 1024 * 1024;
/// Bytes preallocated at a time ahead of the active segment's end.
pub const SEGMENT_PREALLOCATE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest frame on the CONTROLLER listener (a metadata snapshot sent to a
/// lagging voter is the largest).
pub const CONTROLLER_FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Frames queued on one controller link before raft messages are dropped
/// (raft resends what is lost).
pub const CONTROLLER_LINK_QUEUE_FRAMES: usize = 1024;
/// Longest a request to the controller (registration, heartbeat, forwarded
/// metadata change) waits for its answer.
pub const CONTROLLER_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Most bytes the records of one compressed batch may decompress to where
/// the broker decodes records (`__consumer_offsets` replay, ListOffsets by
/// timestamp); the produce and fetch paths never decompress.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Size of the v2 record-batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes a fetch reads at a time while scanning batch headers forward from
/// a sparse index entry (two index intervals at the default
/// `index.interval.bytes`, so one read usually finds the batch).
pub const HEADER_SCAN_WINDOW_BYTES: usize = 8 * 1024;

const _: () = assert!(INFLIGHT_REQUESTS_PER_CONNECTION_MAX_DEFAULT >= 1);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX <= REQUEST_BYTES_MAX_DEFAULT);
const _: () = assert!(SHARD_PENDING_WRITE_BYTES_MAX > REQUEST_BYTES_MAX_DEFAULT);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX < i32::MAX as usize);
const _: () = assert!(PRODUCER_BATCHES_REMEMBERED >= 5);
const _: () = assert!(HEADER_SCAN_WINDOW_BYTES >= BATCH_HEADER_BYTES);
const _: () = assert!(DECOMPRESSED_BATCH_BYTES_MAX >= FETCH_RESPONSE_BYTES_MAX);
