//! The log of one partition: segments, offsets, appends, reads, recovery
//! and retention.
//!
//! All state changes are synchronous and happen on the owner shard; file I/O
//! is queued as [`PendingOp`]s that the shard's flusher performs in order.
//! Offsets: `log_start_offset <= durable_offset <= log_end_offset <=
//! next_offset` where `next_offset` counts batches assigned in memory,
//! the log end offset those written to the file (readable), and
//! `durable_offset` those covered by an fdatasync. The high watermark and
//! the last stable offset are not the log's: the partition above it keeps
//! them (on a single node they follow the log end; replication sets them),
//! and bounds consumer reads with them ([`PartitionLog::plan_read`]).
//!
//! Every batch carries the epoch of the leader that appended it; the log
//! keeps where each epoch starts ([`LeaderEpochCache`], Kafka's
//! `leader-epoch-checkpoint`) and can cut its tail back to any offset
//! ([`PartitionLog::truncate_to`]) when a replica must drop what a new
//! leader does not have.
//!
//! File I/O goes through the log's [`Disk`] (the storage seam); a failed
//! write or sync fails the partition for good ([`PartitionLog::fail`]).
//!
//! Transactions ([`crate::txn`]): the log owns its [`PartitionTxns`] and
//! moves it with every append (client data checked first, markers from
//! [`PartitionLog::append_marker`], replicated batches as they come),
//! roll (each segment its own `.txnindex`, sealed with the segment's other
//! files, with a `transaction.snapshot`), clean stop, truncation,
//! retention and DeleteRecords; at open it loads the files and replays the
//! log from the snapshot. Reads can be bounded at the last stable offset:
//! the first batch of every transaction that may hold it back is tracked
//! (`txn_starts`), so non-transactional logs pay nothing for it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::disk::{Disk, OsDisk, SegmentFile};
use crate::epoch::LeaderEpochCache;
use crate::error::{Op, Result, StorageError};
use crate::index::{OffsetIndex, TimeIndex};
use crate::producer::{ProducerBatch, ProducerStates, SequenceCheck};
use crate::read::{ReadPlan, TimestampLookup};
use crate::recovery::{recover_segment, scan_segment, should_index};
use crate::segment::{file_name, Segment};
use crate::txn::marker::ControlRecordError;
use crate::txn::{
    build_marker_batch, AbortedTxn, EndTxnMarker, MarkerKind, PartitionTxns, TxnBatch, TxnError,
};
use crate::writer::WriteMode;
use ringbroker_protocol::batch::{self, BatchError, BATCH_HEADER_LEN};
use ringbroker_protocol::frame::FileSlice;

/// First offset of a transaction → (segment base, position) of its first
/// batch.
type TxnStarts = BTreeMap<i64, (i64, u64)>;

/// Name of the producer-state snapshot file in a partition directory.
pub const PRODUCER_SNAPSHOT_FILE: &str = "producer.snapshot";

/// Per-partition settings derived from the topic config.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Roll the active segment past this many bytes (segment.bytes).
    pub segment_bytes: u64,
    /// Roll the active segment after this long (segment.ms).
    pub segment_ms: i64,
    /// Delete segments whose newest record is older (retention.ms; -1 = keep).
    pub retention_ms: i64,
    /// Delete oldest segments while the log is larger (retention.bytes; -1 = keep).
    pub retention_bytes: i64,
    /// Bytes between sparse index entries (index.interval.bytes).
    pub index_interval_bytes: u32,
    /// Largest batch accepted (max.message.bytes).
    pub max_message_bytes: usize,
    /// Stamp batches with the broker's clock (message.timestamp.type=LogAppendTime).
    pub log_append_time: bool,
    /// Reserve segment space ahead of appends (preallocate).
    pub preallocate: bool,
    /// Buffered or O_DIRECT appends (ringbroker.log.write.mode).
    pub write_mode: WriteMode,
}

impl LogConfig {
    /// Bytes reserved at a time ahead of the active segment's end (0 = off).
    pub fn preallocate_step(&self) -> u64 {
        if self.preallocate {
            ringbroker_protocol::limits::SEGMENT_PREALLOCATE_BYTES.min(self.segment_bytes)
        } else {
            0
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            log_append_time: false,
            preallocate: true,
            write_mode: WriteMode::Buffered,
        }
    }
}

/// Why an append was refused. Each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A batch failed validation (CORRUPT_MESSAGE).
    #[error("corrupt record batch: {0}")]
    Corrupt(#[from] BatchError),
    /// A batch is larger than max.message.bytes (MESSAGE_TOO_LARGE).
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    /// A gap in an idempotent producer's sequence (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    /// A fenced producer epoch (INVALID_PRODUCER_EPOCH).
    #[error("producer epoch {got} is older than current {current}")]
    InvalidProducerEpoch { current: i16, got: i16 },
    /// The request carried no records (INVALID_RECORD... CORRUPT_MESSAGE).
    #[error("no record batch in produce data")]
    Empty,
    /// The partition's storage failed, now or earlier
    /// ([`StorageError::Failed`]) (KAFKA_STORAGE_ERROR).
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// The log is closed for a shutdown; the producer retries elsewhere or
    /// after the restart (NOT_LEADER_OR_FOLLOWER).
    #[error("the partition is closing for a shutdown")]
    Closed,
    /// Replicated batches do not continue this log (a follower).
    #[error("replicated batch at offset {got}, the log ends at {expected}")]
    OutOfOrder { expected: i64, got: i64 },
    /// A producer sent a control batch: only transaction coordinators
    /// write them, through [`PartitionLog::append_marker`]
    /// (INVALID_RECORD).
    #[error("control batches are written by transaction coordinators, not producers")]
    ControlBatchFromClient,
    /// A transactional check refused a batch or a marker: a write outside
    /// an open transaction, a fenced producer epoch, a fenced coordinator
    /// ([`TxnError::error_code`]: INVALID_TXN_STATE, INVALID_PRODUCER_EPOCH,
    /// TRANSACTION_COORDINATOR_FENCED).
    #[error(transparent)]
    Transaction(#[from] TxnError),
    /// A replicated control batch whose record does not decode
    /// (CORRUPT_MESSAGE).
    #[error("invalid control batch: {0}")]
    InvalidControlBatch(#[from] ControlRecordError),
    /// A transaction marker for a producer id below 0 (INVALID_RECORD).
    #[error("a transaction marker needs a producer id, got {0}")]
    MarkerWithoutProducer(i64),
}

/// Outcome of a successful append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record appended (or of the duplicate's original).
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Broker timestamp when LogAppendTime applies, else -1.
    pub log_append_time_ms: i64,
    /// True when the whole request was a retried duplicate.
    pub duplicate: bool,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The offset is outside `[log_start_offset, high_watermark]`.
    #[error("offset out of range")]
    OutOfRange,
    /// Reading batch headers failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A queued file operation, performed by the flusher in order.
pub enum PendingOp {
    /// Write `data` at `position` of the segment at `segment_base`.
    Write {
        /// Base offset of the segment written.
        segment_base: i64,
        /// The segment's write handle.
        file: Rc<dyn SegmentFile>,
        /// Position in the file.
        position: u64,
        /// Bytes to write (many batches coalesced).
        data: Vec<u8>,
        /// Offset after the last batch in `data`.
        end_offset: i64,
    },
    /// Replace the `leader-epoch-checkpoint` file (atomically, durably).
    EpochCheckpoint {
        /// The file.
        path: PathBuf,
        /// Its entry lines.
        lines: Vec<String>,
    },
    /// A rolled segment: fsync it and persist its indexes and a producer
    /// snapshot.
    Seal {
        /// The sealed segment's write handle.
        file: Rc<dyn SegmentFile>,
        /// Bytes of data in the sealed segment (the file is cut there).
        size: u64,
        /// (path, bytes) of files to write and fsync, in this order.
        files: Vec<(PathBuf, Vec<u8>)>,
        /// The partition directory, fsynced so the new segment's entry is durable.
        dir: PathBuf,
        /// Where the files are written.
        disk: Arc<dyn Disk>,
    },
    /// Remove files of segments the log no longer holds (the transaction
    /// indexes of segments retention or DeleteRecords removed; the caller
    /// deletes their `.log`, `.index` and `.timeindex`). A file already
    /// gone is not an error; a failure leaves a file no segment reads.
    DeleteFiles {
        /// The files.
        paths: Vec<PathBuf>,
    },
}

/// One partition's log.
pub struct PartitionLog {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: LogConfig,
    pub(crate) segments: VecDeque<Segment>,
    log_start_offset: i64,
    next_offset: i64,
    /// Offset after the last batch written to the file (readable).
    written_offset: i64,
    durable_offset: i64,
    sync_wanted: i64,
    pending: Vec<PendingOp>,
    pending_bytes: usize,
    producers: ProducerStates,
    failed: Option<Arc<StorageError>>,
    last_append_ms: i64,
    appended_since_open: bool,
    unsynced_bytes: u64,
    closed: bool,
    /// Where each leader epoch starts (`leader-epoch-checkpoint`).
    epochs: LeaderEpochCache,
    /// (end offset, segment base, end position) of every batch, while the
    /// owner needs reads bounded below the written end (a high watermark
    /// set by replication); `None` when it does not.
    batch_ends: Option<VecDeque<(i64, i64, u64)>>,
    /// The transactions: open ones, the last stable offset, the
    /// `.txnindex` of every segment.
    txns: PartitionTxns,
    /// First offset → (segment base, position) of the first batch of every
    /// transaction that may still hold the last stable offset back, so
    /// reads can be bounded at the LSO (always such an offset or the high
    /// watermark) without tracking every batch end.
    txn_starts: TxnStarts,
}

/// What a clean shutdown writes for one partition, taken once the log is
/// closed and everything appended is written and durable.
#[derive(Default)]
pub struct ShutdownFiles {
    /// (path, bytes) of the active segment's indexes and the producer
    /// snapshot, describing exactly the data in the files.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// The active segment's file when it may extend past its data
    /// (direct-mode padding, preallocated space): cut there.
    pub trim: Option<Trim>,
}

/// A segment file to cut to its data at shutdown.
pub struct Trim {
    /// The file's path.
    pub path: PathBuf,
    /// The open file.
    pub file: Arc<File>,
    /// Bytes of data: the file is cut there.
    pub size: u64,
}

/// What the flusher must do for a partition in one round.
pub struct FlushWork {
    /// Operations to perform in order.
    pub ops: Vec<PendingOp>,
    /// fdatasync the active file after the writes when set.
    pub sync: Option<Rc<dyn SegmentFile>>,
    /// The offset the sync covers (high watermark after the writes).
    pub sync_offset: i64,
}

impl PartitionLog {
    /// Opens (recovering) or creates the log in `dir` on the real
    /// filesystem. Synchronous: run at startup or partition creation,
    /// before the partition serves traffic.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<PartitionLog> {
        Self::open_on(OsDisk::shared(), dir, config, now_ms)
    }

    /// [`PartitionLog::open`] with every write, sync and cut going through
    /// `disk`.
    pub fn open_on(
        disk: Arc<dyn Disk>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<PartitionLog> {
        fs::create_dir_all(dir)?;
        let mut bases = list_segment_bases(dir)?;
        bases.sort_unstable();
        let mut segments = VecDeque::with_capacity(bases.len().max(1));
        let mut producers = ProducerStates::default();
        let mut tail_epochs = Vec::new();
        let last_index = bases.len().saturating_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(file_name(base, "log"));
            let file = disk
                .open_segment(&path)
                .map_err(|e| StorageError::at(Op::Open, &path, e))?;
            let segment = if i == last_index {
                let (segment, epochs) = recover_active(
                    &*disk,
                    path,
                    file,
                    base,
                    &config,
                    now_ms,
                    &mut producers,
                    dir,
                )?;
                tail_epochs = epochs;
                segment
            } else {
                let next_base = bases[i + 1];
                open_sealed(&*disk, path, file, base, next_base, &config, now_ms)?
            };
            segments.push_back(segment);
        }
        if segments.is_empty() {
            let segment = Segment::create(&*disk, dir, 0, now_ms)
                .map_err(|e| StorageError::at(Op::Create, dir, e))?;
            segments.push_back(segment);
            disk.sync_dir(dir)
                .map_err(|e| StorageError::at(Op::SyncDir, dir, e))?;
        }
        let log_start_offset = segments.front().map_or(0, |s| s.base_offset);
        let next_offset = segments.back().map_or(0, |s| s.next_offset);
        let epochs = recover_epochs(dir, log_start_offset, next_offset, &tail_epochs);
        let (txns, txn_starts) =
            recover_txns(&*disk, dir, &segments, log_start_offset, next_offset)?;
        Ok(PartitionLog {
            disk,
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            next_offset,
            written_offset: next_offset,
            durable_offset: next_offset,
            sync_wanted: next_offset,
            pending: Vec::new(),
            pending_bytes: 0,
            producers,
            failed: None,
            last_append_ms: now_ms,
            appended_since_open: false,
            unsynced_bytes: 0,
            closed: false,
            epochs,
            batch_ends: None,
            txns,
            txn_starts,
        })
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    /// Offset the next appended record gets (log end offset).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    /// Offset after the last batch written to the file: the log end offset
    /// readers and replicas see (appends not yet written are past it). The
    /// high watermark is the partition's business, not the log's.
    pub fn log_end_offset(&self) -> i64 {
        self.written_offset
    }
    /// Offset up to which records are on stable storage.
    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }
    /// The error that failed this partition's storage, if any.
    pub fn failure(&self) -> Option<&Arc<StorageError>> {
        self.failed.as_ref()
    }
    /// Where this log's writes, syncs and cuts go.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }
    /// Bytes appended but not yet handed to the flusher.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }
    /// Total bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Replaces the config (IncrementalAlterConfigs); applies to later appends.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Validates and appends the record batches in `records`, assigning
    /// offsets and stamping `leader_epoch` into each batch (both outside the
    /// CRC). The bytes are queued for the flusher; nothing is readable until
    /// written. A leader epoch newer than any before starts a new entry of
    /// the epoch cache, whose checkpoint file is written before the data.
    pub fn append(
        &mut self,
        records: &Bytes,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<Appended, AppendError> {
        if let Some(failure) = &self.failed {
            return Err(StorageError::Failed(failure.clone()).into());
        }
        if self.closed {
            return Err(AppendError::Closed);
        }
        // Validate every batch before changing anything: a request is
        // appended whole or not at all.
        let mut headers = Vec::new();
        for item in batch::batches(records) {
            let (header, range) = item?;
            if range.len() > self.config.max_message_bytes {
                return Err(AppendError::TooLarge {
                    size: range.len(),
                    max: self.config.max_message_bytes,
                });
            }
            if header.is_control() {
                return Err(AppendError::ControlBatchFromClient);
            }
            headers.push((header, range));
        }
        if headers.is_empty() {
            return Err(AppendError::Empty);
        }
        if let Some(duplicate) = self.check_sequences(&headers)? {
            return Ok(duplicate);
        }
        self.check_transactions(&headers)?;
        self.begin_append(now_ms)?;
        let log_append_time_ms = self.log_append_time_ms(now_ms);
        let base_offset = self.next_offset;
        self.start_leader_epoch(leader_epoch, base_offset);
        for (header, range) in headers {
            let txn = TxnBatch::data(&header);
            if let Err(broken) = self.append_batch(
                &header,
                &records[range],
                now_ms,
                log_append_time_ms,
                leader_epoch,
                txn,
            ) {
                // A broken invariant, not bad input: stop the partition
                // rather than acknowledge part of a request.
                let broken = Arc::new(broken);
                self.fail(broken.clone());
                return Err(StorageError::Failed(broken).into());
            }
        }
        Ok(Appended {
            base_offset,
            last_offset: self.next_offset - 1,
            log_append_time_ms,
            duplicate: false,
        })
    }

    /// Appends a transaction marker as the leader (WriteTxnMarkers): a
    /// COMMIT (`commit`) or ABORT control batch for `producer_id` at
    /// `producer_epoch`, written by the coordinator at `coordinator_epoch`,
    /// built as Kafka builds it, given the next offset and `leader_epoch`
    /// and queued for the flusher like any batch. Refused with
    /// [`AppendError::Transaction`] when the producer epoch is older than
    /// the producer's (INVALID_PRODUCER_EPOCH) or the coordinator epoch
    /// older than its last marker's (TRANSACTION_COORDINATOR_FENCED). A
    /// marker for a producer without an open transaction here is written
    /// anyway, as Kafka does (a retry, an empty transaction). The
    /// transaction ends: an ABORT that closed one goes into the active
    /// segment's `.txnindex`; the producer's epoch follows the marker's.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<Appended, AppendError> {
        if let Some(failure) = &self.failed {
            return Err(StorageError::Failed(failure.clone()).into());
        }
        if self.closed {
            return Err(AppendError::Closed);
        }
        if producer_id < 0 {
            return Err(AppendError::MarkerWithoutProducer(producer_id));
        }
        let marker = EndTxnMarker {
            kind: if commit {
                MarkerKind::Commit
            } else {
                MarkerKind::Abort
            },
            coordinator_epoch,
        };
        self.txns
            .tracker()
            .check_marker(producer_id, producer_epoch, &marker)?;
        let bytes = build_marker_batch(marker, producer_id, producer_epoch, now_ms);
        let header = batch::validate_batch(&bytes)?;
        self.begin_append(now_ms)?;
        let log_append_time_ms = self.log_append_time_ms(now_ms);
        let base_offset = self.next_offset;
        self.start_leader_epoch(leader_epoch, base_offset);
        let txn = TxnBatch {
            producer_id,
            producer_epoch,
            base_offset,
            last_offset: base_offset,
            marker: Some(marker),
        };
        if let Err(broken) = self.append_batch(
            &header,
            &bytes,
            now_ms,
            log_append_time_ms,
            leader_epoch,
            Some(txn),
        ) {
            let broken = Arc::new(broken);
            self.fail(broken.clone());
            return Err(StorageError::Failed(broken).into());
        }
        Ok(Appended {
            base_offset,
            last_offset: self.next_offset - 1,
            log_append_time_ms,
            duplicate: false,
        })
    }

    /// Broker timestamp for batches appended at `now_ms` when
    /// LogAppendTime applies, else -1.
    fn log_append_time_ms(&self, now_ms: i64) -> i64 {
        if self.config.log_append_time {
            now_ms
        } else {
            -1
        }
    }

    /// Starts `epoch` at `start` in the epoch cache when it is newer than
    /// every epoch the log has (its checkpoint is queued before the data).
    fn start_leader_epoch(&mut self, epoch: i32, start: i64) {
        if epoch >= 0
            && self
                .epochs
                .latest_epoch()
                .is_none_or(|latest| epoch > latest)
        {
            self.epochs.assign(epoch, start);
            self.queue_epoch_checkpoint();
        }
    }

    /// Appends batches fetched from the leader as they are (a follower):
    /// the leader's offsets, leader epochs and CRCs. The first batch must
    /// start at this log's end and each next one where the previous ended;
    /// a trailing partial batch (a fetch cut at its byte limit) is left
    /// out. Producer state and the epoch cache follow, so a follower that
    /// becomes leader deduplicates retries and answers OffsetForLeaderEpoch
    /// as the old leader would. `Ok(None)` when nothing whole was given.
    pub fn append_replica(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<Option<Appended>, AppendError> {
        if let Some(failure) = &self.failed {
            return Err(StorageError::Failed(failure.clone()).into());
        }
        if self.closed {
            return Err(AppendError::Closed);
        }
        let whole = batch::whole_batches_len(records);
        let mut headers = Vec::new();
        let mut expected = self.next_offset;
        for item in batch::batches(&records[..whole]) {
            let (header, range) = item?;
            if header.base_offset != expected {
                return Err(AppendError::OutOfOrder {
                    expected,
                    got: header.base_offset,
                });
            }
            expected = header.last_offset() + 1;
            // Markers are read (and refused when they do not decode)
            // before anything changes.
            let txn = if header.is_control() {
                TxnBatch::from_batch(&records[range.clone()])?
            } else {
                TxnBatch::data(&header)
            };
            headers.push((header, range, txn));
        }
        if headers.is_empty() {
            return Ok(None);
        }
        self.begin_append(now_ms)?;
        let base_offset = self.next_offset;
        for (header, range, txn) in headers {
            let epoch = header.partition_leader_epoch;
            self.start_leader_epoch(epoch, header.base_offset);
            if let Err(broken) = self.append_batch(&header, &records[range], now_ms, -1, epoch, txn)
            {
                let broken = Arc::new(broken);
                self.fail(broken.clone());
                return Err(StorageError::Failed(broken).into());
            }
        }
        Ok(Some(Appended {
            base_offset,
            last_offset: self.next_offset - 1,
            log_append_time_ms: -1,
            duplicate: false,
        }))
    }

    /// Starts leader epoch `epoch` at the log end if it is newer than every
    /// epoch the log has (a new leader, before it appends), so
    /// OffsetForLeaderEpoch answers for it.
    pub fn begin_epoch(&mut self, epoch: i32) {
        self.start_leader_epoch(epoch, self.next_offset);
    }

    /// Opens the active segment's write handle for an append at `now_ms`.
    /// A failure is not a partition failure: nothing was written; the next
    /// append tries again (descriptors may free up).
    fn begin_append(&mut self, now_ms: i64) -> Result<(), AppendError> {
        if let Some(active) = self.segments.back_mut() {
            let step = self.config.preallocate_step();
            if let Err(e) = active.writer(&*self.disk, self.config.write_mode, step) {
                return Err(StorageError::at(Op::OpenWriter, &active.path, e).into());
            }
        }
        self.last_append_ms = now_ms;
        self.appended_since_open = true;
        Ok(())
    }

    /// Applies Kafka's idempotence rules. Returns the original offsets when
    /// the request is a retry of batches already appended.
    fn check_sequences(
        &self,
        headers: &[(batch::BatchHeader, std::ops::Range<usize>)],
    ) -> Result<Option<Appended>, AppendError> {
        let mut duplicates = Vec::new();
        for (header, _) in headers {
            if !header.has_producer_id() || header.base_sequence < 0 {
                continue;
            }
            match self.producers.check(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.last_sequence(),
            ) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate(b) => duplicates.push(b),
                SequenceCheck::OutOfOrder { expected, got } => {
                    return Err(AppendError::OutOfOrderSequence { expected, got })
                }
                SequenceCheck::StaleEpoch { current, got } => {
                    return Err(AppendError::InvalidProducerEpoch { current, got })
                }
            }
        }
        if duplicates.is_empty() {
            return Ok(None);
        }
        if duplicates.len() != headers.len() {
            // Part retry, part new data: clients never send this.
            let got = headers[0].0.base_sequence;
            return Err(AppendError::OutOfOrderSequence { expected: got, got });
        }
        Ok(Some(Appended {
            base_offset: duplicates[0].base_offset,
            last_offset: duplicates[duplicates.len() - 1].last_offset,
            log_append_time_ms: -1,
            duplicate: true,
        }))
    }

    /// Kafka's transactional checks on a client's batches, before anything
    /// changes: a producer with an open transaction writes only
    /// transactional batches, with an epoch not older than its markers'.
    fn check_transactions(
        &self,
        headers: &[(batch::BatchHeader, std::ops::Range<usize>)],
    ) -> Result<(), AppendError> {
        let tracker = self.txns.tracker();
        if tracker.producer_count() == 0 {
            return Ok(());
        }
        for (header, _) in headers.iter().filter(|(h, _)| h.has_producer_id()) {
            tracker.check_data(
                header.producer_id,
                header.producer_epoch,
                header.is_transactional(),
            )?;
        }
        Ok(())
    }

    /// Appends one validated batch at the next offset. `txn` is what
    /// transaction state needs of it (transactional data or a marker; its
    /// offsets are replaced by the ones assigned here).
    fn append_batch(
        &mut self,
        header: &batch::BatchHeader,
        bytes: &[u8],
        now_ms: i64,
        log_append_time_ms: i64,
        leader_epoch: i32,
        txn: Option<TxnBatch>,
    ) -> Result<()> {
        if header.last_offset_delta < 0 {
            // Validation refuses such batches; never let one move offsets back.
            return Err(StorageError::Invariant(format!(
                "batch with last offset delta {}",
                header.last_offset_delta
            )));
        }
        let len = bytes.len() as u64;
        self.unsynced_bytes += len;
        if self.unsynced_bytes >= ringbroker_protocol::limits::UNSYNCED_BYTES_PER_PARTITION_MAX {
            self.unsynced_bytes = 0;
            self.request_sync();
        }
        if self.should_roll(len, now_ms) {
            self.roll(now_ms);
        }
        let base_offset = self.next_offset;
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        let max_timestamp = if log_append_time_ms >= 0 {
            log_append_time_ms
        } else {
            header.max_timestamp
        };
        let Some(segment) = self.segments.back_mut() else {
            return Err(StorageError::Invariant(
                "the log has no active segment".into(),
            ));
        };
        let position = segment.size;
        let Some(file) = segment.write_file.clone() else {
            return Err(StorageError::Invariant(
                "the active segment has no write handle".into(),
            ));
        };
        segment.bytes_since_index += len;
        if should_index(segment.bytes_since_index, self.config.index_interval_bytes)
            && position <= u64::from(u32::MAX)
        {
            segment.index.append(base_offset, position as u32);
            segment.bytes_since_index = 0;
        }
        if max_timestamp > segment.max_timestamp {
            segment.max_timestamp = max_timestamp;
            segment.time_index.append(max_timestamp, last_offset);
        }
        segment.size += len;
        segment.next_offset = last_offset + 1;
        let segment_base = segment.base_offset;
        if let Some(ends) = self.batch_ends.as_mut() {
            ends.push_back((last_offset + 1, segment_base, position + len));
        }

        // Coalesce with the previous write when contiguous.
        let data = match self.pending.last_mut() {
            Some(PendingOp::Write {
                segment_base: s,
                position: p,
                data,
                end_offset,
                ..
            }) if *s == segment_base && *p + data.len() as u64 == position => {
                *end_offset = last_offset + 1;
                data
            }
            _ => {
                self.pending.push(PendingOp::Write {
                    segment_base,
                    file,
                    position,
                    data: Vec::with_capacity(bytes.len()),
                    end_offset: last_offset + 1,
                });
                match self.pending.last_mut() {
                    Some(PendingOp::Write { data, .. }) => data,
                    _ => unreachable!("just pushed a write"),
                }
            }
        };
        let start = data.len();
        data.extend_from_slice(bytes);
        let stored = &mut data[start..];
        batch::stamp_base_offset(stored, base_offset);
        batch::stamp_leader_epoch(stored, leader_epoch);
        if log_append_time_ms >= 0 {
            batch::set_log_append_time(stored, log_append_time_ms);
        }
        self.pending_bytes += bytes.len();
        if header.has_producer_id() && header.base_sequence >= 0 {
            self.producers.record(
                header.producer_id,
                header.producer_epoch,
                ProducerBatch {
                    first_sequence: header.base_sequence,
                    last_sequence: header.last_sequence(),
                    base_offset,
                    last_offset,
                },
            );
        }
        self.next_offset = last_offset + 1;
        if let Some(txn) = txn {
            self.apply_txn(
                TxnBatch {
                    base_offset,
                    last_offset,
                    ..txn
                },
                segment_base,
                position,
            );
        }
        Ok(())
    }

    /// Moves transaction state over an appended transactional batch at
    /// (`segment_base`, `position`): a data batch that opens a transaction
    /// records where it starts (the LSO may stop there); a marker ends the
    /// producer's transaction and, as in Kafka, moves its epoch in the
    /// producer state without touching its sequences.
    fn apply_txn(&mut self, txn: TxnBatch, segment_base: i64, position: u64) {
        match txn.marker {
            None => {
                let opens = self
                    .txns
                    .tracker()
                    .producer(txn.producer_id)
                    .is_none_or(|p| p.open_since.is_none());
                if opens {
                    self.txn_starts
                        .insert(txn.base_offset, (segment_base, position));
                }
            }
            Some(_) => {
                self.producers
                    .record_marker(txn.producer_id, txn.producer_epoch, txn.base_offset);
            }
        }
        self.txns.apply(&txn);
    }

    fn should_roll(&self, incoming: u64, now_ms: i64) -> bool {
        let Some(active) = self.segments.back() else {
            return false;
        };
        !active.is_empty()
            && (active.size + incoming > self.config.segment_bytes
                || now_ms - active.created_ms >= self.config.segment_ms
                || active.size + incoming > u64::from(u32::MAX))
    }

    /// Starts a new active segment at `next_offset` and queues the sealing
    /// of the old one. File creation is a quick metadata operation done
    /// inline; data I/O stays with the flusher.
    fn roll(&mut self, now_ms: i64) {
        let base = self.next_offset;
        let (mode, step) = (self.config.write_mode, self.config.preallocate_step());
        let disk = &*self.disk;
        match Segment::create(disk, &self.dir, base, now_ms)
            .and_then(|mut s| s.writer(disk, mode, step).map(|_| s))
        {
            Ok(new_segment) => {
                let Some(old) = self.segments.back_mut() else {
                    self.txns.roll(base);
                    self.segments.push_back(new_segment);
                    return;
                };
                let (index_path, time_path) = old.index_paths();
                // The transaction index and snapshot first, then the time
                // index: each is durable before the offset index is
                // written, so a current offset index vouches for them at
                // startup (`open_sealed`, `PartitionTxns::load`).
                let mut files = self.txns.roll(base);
                files.extend([
                    (time_path, old.time_index.encode()),
                    (index_path, old.index.encode()),
                    (
                        self.dir.join(PRODUCER_SNAPSHOT_FILE),
                        self.producers.to_snapshot(base),
                    ),
                ]);
                if let Some(file) = old.write_file.take() {
                    self.pending.push(PendingOp::Seal {
                        file,
                        size: old.size,
                        files,
                        dir: self.dir.clone(),
                        disk: self.disk.clone(),
                    });
                }
                self.segments.push_back(new_segment);
            }
            Err(e) => {
                // Keep appending to the old segment; a later append retries.
                log::error!("cannot roll segment in {}: {e}", self.dir.display());
            }
        }
    }

    /// Closes the active segment's write handle when nothing was appended
    /// for `idle_ms` and everything is written and durable (it reopens on
    /// the next append). Returns whether a handle was closed.
    pub fn close_idle_writer(&mut self, now_ms: i64, idle_ms: i64) -> bool {
        if !self.pending.is_empty()
            || self.durable_offset < self.next_offset
            || self.sync_wanted > self.durable_offset
            || now_ms - self.last_append_ms < idle_ms
        {
            return false;
        }
        let Some(segment) = self.segments.back_mut() else {
            return false;
        };
        let Some(writer) = segment.write_file.take() else {
            return false;
        };
        if writer.may_extend_past_data() {
            // Release reserved space and direct-mode padding (a metadata
            // operation; the data before `size` is durable already, so a
            // failure costs only space, and recovery cuts padding).
            let cut = self
                .disk
                .set_len(&segment.path, &segment.read_file, segment.size);
            if let Err(e) = cut {
                log::warn!(
                    "{}: cannot release reserved space: {e}",
                    segment.path.display()
                );
            }
        }
        true
    }

    /// Asks the flusher to make everything appended so far durable.
    pub fn request_sync(&mut self) {
        self.sync_wanted = self.next_offset;
    }

    /// True when appended data waits for a sync.
    pub fn sync_pending(&self) -> bool {
        self.sync_wanted > self.durable_offset
    }

    /// True when the flusher has work for this partition.
    pub fn needs_flush(&self) -> bool {
        !self.pending.is_empty() || self.sync_wanted > self.durable_offset
    }

    /// Hands the queued operations (and a sync if wanted) to the flusher.
    /// A failed log hands over nothing and drops what was queued: after a
    /// failed fdatasync the kernel may have dropped the dirty pages, and a
    /// later sync would succeed without them, so no sync may ever again
    /// move the durable offset (the periodic sync and shutdown ask).
    pub fn take_flush_work(&mut self) -> FlushWork {
        let ops = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if self.failed.is_some() {
            return FlushWork {
                ops: Vec::new(),
                sync: None,
                sync_offset: self.durable_offset,
            };
        }
        let sync = if self.sync_wanted > self.durable_offset {
            self.segments.back().and_then(|s| s.write_file.clone())
        } else {
            None
        };
        FlushWork {
            ops,
            sync,
            sync_offset: self.next_offset,
        }
    }

    /// Records that a write reached the file: the bytes become readable.
    pub fn mark_written(&mut self, segment_base: i64, end_position: u64, end_offset: i64) {
        if let Some(segment) = self
            .segments
            .iter_mut()
            .find(|s| s.base_offset == segment_base)
        {
            assert!(end_position <= segment.size);
            segment.written = segment.written.max(end_position);
        }
        assert!(end_offset <= self.next_offset, "written past the log end");
        self.written_offset = self.written_offset.max(end_offset);
        self.assert_offsets();
    }

    /// Records that an fdatasync covered everything up to `offset`.
    pub fn mark_durable(&mut self, offset: i64) {
        assert!(
            offset <= self.written_offset,
            "durable past the written end"
        );
        self.durable_offset = self.durable_offset.max(offset);
        self.assert_offsets();
    }

    /// `log_start <= durable <= written <= next`.
    fn assert_offsets(&self) {
        assert!(
            self.log_start_offset <= self.durable_offset.max(self.log_start_offset)
                && self.durable_offset <= self.written_offset
                && self.written_offset <= self.next_offset,
            "offsets out of order: durable {} written {} next {}",
            self.durable_offset,
            self.written_offset,
            self.next_offset
        );
    }

    /// Fails the partition: every later append and waiting produce gets a
    /// storage error, the durable offset never moves again on its own, and
    /// data already acknowledged stays readable. The first error is kept.
    pub fn fail(&mut self, error: Arc<StorageError>) {
        log::error!("partition {} failed: {error}", self.dir.display());
        self.failed.get_or_insert(error);
    }

    /// Locates up to `max_bytes` of batches starting with the one holding
    /// `offset` and ending before `upper` (the high watermark for consumers,
    /// the log end for replicas), in memory, without reading the file:
    /// `Ok(None)` at `upper`, else a plan that [`crate::read::read_all`]
    /// performs off the shard thread (or [`ReadPlan::read_blocking`] at
    /// startup). `upper` must be a batch boundary at or below the log end;
    /// below it, the log must be tracking batch ends
    /// ([`PartitionLog::track_batch_ends`]), or `upper` be a last stable
    /// offset ([`PartitionLog::last_stable_offset`]; the first batches of
    /// transactions are always tracked).
    pub fn plan_read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<Option<ReadPlan>, ReadError> {
        // Out of range is judged against the log end, as Kafka does: an
        // offset between the bound (a high watermark) and the log end reads
        // nothing yet (a new leader's high watermark can trail what a
        // consumer read from the old one).
        if offset < self.log_start_offset || offset > self.written_offset {
            return Err(ReadError::OutOfRange);
        }
        let upper = upper.min(self.written_offset);
        if offset >= upper {
            return Ok(None);
        }
        let bound = if upper < self.written_offset {
            match self.position_of(upper) {
                Some(bound) => Some(bound),
                // A bound inside what the log held when it was opened (a
                // replicated partition's high watermark catching up after
                // a restart): nothing is read until it reaches a batch end
                // written since, or the log end.
                None => return Ok(None),
            }
        } else {
            None
        };
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        // The segment that should hold the offset, and the next one with
        // written data in case the offset falls in a gap (a power loss can
        // leave sealed segments empty): its first batch is past the offset.
        let mut views = Vec::with_capacity(2);
        for segment in self.segments.iter().skip(first) {
            if let Some((bound_base, _)) = bound {
                if segment.base_offset > bound_base {
                    break;
                }
            }
            if views.is_empty() || segment.written > 0 {
                let mut view = segment.view(offset);
                if let Some((bound_base, position)) = bound {
                    if segment.base_offset == bound_base {
                        view.written = view.written.min(position);
                    }
                }
                views.push(view);
            }
            if views.len() == 2 {
                break;
            }
        }
        Ok(Some(ReadPlan::new(offset, max_bytes, views)))
    }

    /// (segment base, position) where offset `bound` begins, for a bound
    /// below the written end: a recorded batch end, the first batch of a
    /// transaction (a last stable offset), or a segment's base.
    fn position_of(&self, bound: i64) -> Option<(i64, u64)> {
        if let Some(ends) = &self.batch_ends {
            let i = ends.partition_point(|(end, _, _)| *end < bound);
            if let Some(&(end, base, position)) = ends.get(i) {
                if end == bound {
                    return Some((base, position));
                }
            }
        }
        if let Some(&start) = self.txn_starts.get(&bound) {
            return Some(start);
        }
        self.segments
            .iter()
            .find(|s| s.base_offset == bound)
            .map(|s| (s.base_offset, 0))
    }

    /// Starts (or stops) recording where every batch ends, so reads can be
    /// bounded below the written end (a high watermark behind it).
    pub fn track_batch_ends(&mut self, track: bool) {
        match (track, self.batch_ends.is_some()) {
            (true, false) => {
                // The current end is a batch end too: reads can be bounded
                // there from now on.
                let mut ends = VecDeque::new();
                if let Some(active) = self.segments.back().filter(|s| s.size > 0) {
                    ends.push_back((self.next_offset, active.base_offset, active.size));
                }
                self.batch_ends = Some(ends);
            }
            (false, true) => self.batch_ends = None,
            _ => {}
        }
    }

    /// Forgets batch ends before `offset` (no read will be bounded there
    /// again: the high watermark passed it).
    pub fn release_batch_ends_below(&mut self, offset: i64) {
        if let Some(ends) = self.batch_ends.as_mut() {
            while ends.front().is_some_and(|(end, _, _)| *end < offset) {
                ends.pop_front();
            }
        }
    }

    /// Reads up to `max_bytes` of batches starting with the one holding
    /// `offset`, with blocking reads on the calling thread (startup,
    /// tools, tests). At least one whole batch is returned even when larger
    /// than `max_bytes` (KIP-74). `Ok(None)` at the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<FileSlice>, ReadError> {
        match self.plan_read(offset, max_bytes, self.written_offset)? {
            Some(plan) => Ok(plan.read_blocking()?),
            None => Ok(None),
        }
    }

    /// Locates, in memory, the segments a ListOffsets-by-time lookup for
    /// `timestamp_ms` must read; [`crate::read::lookup_all`] performs it
    /// off the shard thread.
    pub fn plan_timestamp_lookup(&self, timestamp_ms: i64) -> TimestampLookup {
        let segments = self
            .segments
            .iter()
            .filter(|s| s.max_timestamp >= timestamp_ms)
            .map(|s| {
                let start = s.time_index.lookup(timestamp_ms).unwrap_or(s.base_offset);
                (s.view(start), start)
            })
            .collect();
        TimestampLookup::new(timestamp_ms, segments)
    }

    /// The first offset whose record timestamp is `>= timestamp_ms`, with
    /// that record's timestamp (ListOffsets by time), read with blocking
    /// reads on the calling thread. `None` when every record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        self.plan_timestamp_lookup(timestamp_ms).run_blocking()
    }

    /// A lookup for the first record carrying the largest timestamp of the
    /// log (ListOffsets -3, KIP-734): the time index gives the maximum, and
    /// the first record at or after it is that record. `None` for an empty
    /// log. Performed like any lookup by time, off the shard thread.
    pub fn plan_max_timestamp_lookup(&self) -> Option<TimestampLookup> {
        let max = self
            .segments
            .iter()
            .filter_map(|s| s.time_index.max_timestamp())
            .map(|(ts, _)| ts)
            .max()?;
        Some(self.plan_timestamp_lookup(max))
    }

    /// The time indexes' newest entry: (largest batch max timestamp, that
    /// batch's last offset).
    pub fn max_timestamp_entry(&self) -> Option<(i64, i64)> {
        self.segments
            .iter()
            .filter_map(|s| s.time_index.max_timestamp())
            .max_by_key(|(ts, _)| *ts)
    }

    /// [`PartitionLog::plan_max_timestamp_lookup`] performed with blocking
    /// reads on the calling thread: (timestamp, offset).
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>> {
        match self.plan_max_timestamp_lookup() {
            Some(plan) => Ok(plan.run_blocking()?.map(|(offset, ts)| (ts, offset))),
            None => Ok(None),
        }
    }

    /// The idempotent producers' state (read-only, DescribeProducers).
    pub fn producers(&self) -> &ProducerStates {
        &self.producers
    }

    /// The transaction state (read-only: open transactions, the tracker's
    /// checks, the transaction indexes).
    pub fn txns(&self) -> &PartitionTxns {
        &self.txns
    }

    /// The last stable offset for `high_watermark` (at most it): where
    /// read_committed consumers stop, the first offset of the earliest
    /// transaction not yet decided below the high watermark. A valid
    /// `upper` for [`PartitionLog::plan_read`].
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.txns
            .last_stable_offset(high_watermark, self.log_start_offset)
    }

    /// The aborted transactions a read_committed fetch of
    /// `[fetch_offset, upper)` reports (Kafka's `collectAbortedTxns`: those
    /// whose range overlaps it), in marker order.
    pub fn aborted_transactions(&self, fetch_offset: i64, upper: i64) -> Vec<AbortedTxn> {
        self.txns.collect_aborted(fetch_offset, upper)
    }

    /// The high watermark moved to `high_watermark`: transactions decided
    /// below it no longer hold the last stable offset back and are
    /// forgotten. Called by the partition whenever it moves.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.txns.on_high_watermark(high_watermark);
        if let Some((&first, _)) = self.txn_starts.first_key_value() {
            let keep_from = self
                .txns
                .tracker()
                .first_unstable_offset(high_watermark)
                .unwrap_or(high_watermark);
            if first < keep_from {
                self.txn_starts = self.txn_starts.split_off(&keep_from);
            }
        }
    }

    /// The log start moved: transaction state and the transaction
    /// indexes of `removed` segments follow; the files of those indexes
    /// are queued for deletion.
    fn txns_after_start_moved(&mut self, removed: &[Segment]) {
        let mut paths = Vec::new();
        for segment in removed {
            if let Some(index) = self.txns.remove_segment(segment.base_offset) {
                paths.push(index.path().to_path_buf());
            }
        }
        self.txns.on_log_start(self.log_start_offset);
        self.txn_starts = self.txn_starts.split_off(&self.log_start_offset);
        if !paths.is_empty() {
            self.pending.push(PendingOp::DeleteFiles { paths });
        }
    }

    /// Removes segments past retention (never the active one, never one
    /// holding data at or above `high_watermark`) and returns them for
    /// deletion; advances the log start offset.
    pub fn take_expired_segments(&mut self, now_ms: i64, high_watermark: i64) -> Vec<Segment> {
        let high_watermark = high_watermark.min(self.written_offset);
        let mut removed = Vec::new();
        let mut total = self.size_bytes() as i64;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let next_base = self.segments[1].base_offset;
            if next_base > high_watermark {
                break;
            }
            let by_time = self.config.retention_ms >= 0
                && oldest.max_timestamp >= 0
                && now_ms - oldest.max_timestamp > self.config.retention_ms;
            let by_size = self.config.retention_bytes >= 0
                && total - oldest.size as i64 >= self.config.retention_bytes;
            if !(by_time || by_size) {
                break;
            }
            total -= oldest.size as i64;
            if let Some(segment) = self.segments.pop_front() {
                removed.push(segment);
            }
            // DeleteRecords may have moved the start past this segment's end.
            self.log_start_offset = self.log_start_offset.max(next_base);
        }
        if !removed.is_empty() {
            self.epochs.truncate_from_start(self.log_start_offset);
            self.queue_epoch_checkpoint();
            self.txns_after_start_moved(&removed);
        }
        removed
    }

    /// The newest leader epoch any batch was appended with.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The leader epoch cache.
    pub fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Where `epoch` ends in this log (OffsetForLeaderEpoch): `(epoch, end
    /// offset)` with Kafka's rules, the log end for the latest epoch.
    pub fn epoch_end_offset(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.written_offset)
    }

    fn queue_epoch_checkpoint(&mut self) {
        if let Some(lines) = self.epochs.entries_to_write() {
            self.pending.push(PendingOp::EpochCheckpoint {
                path: LeaderEpochCache::path(&self.dir),
                lines,
            });
            self.epochs.mark_persisted();
        }
    }

    /// Removes every batch at or after `offset` (a whole batch holding
    /// `offset` goes too, as in Kafka, so the new end may be below it):
    /// later segments are deleted, the one holding the cut is cut at a
    /// batch boundary, and its indexes, the producer states and the leader
    /// epoch cache follow; the epoch checkpoint is rewritten. Returns the
    /// new log end offset. For a replica that must drop what the leader
    /// does not have: the log must have nothing waiting for the flusher.
    /// Blocking file operations on the calling thread (truncation is rare).
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        if !self.pending.is_empty() || self.written_offset != self.next_offset {
            return Err(StorageError::Invariant(
                "truncation of a log with appends waiting for the flusher".into(),
            ));
        }
        let target = offset.max(self.log_start_offset);
        if target >= self.next_offset {
            return Ok(self.next_offset);
        }
        // Whole segments at or after the cut go, but one always stays.
        while self.segments.len() > 1
            && self
                .segments
                .back()
                .is_some_and(|s| s.base_offset >= target)
        {
            if let Some(segment) = self.segments.pop_back() {
                if let Some(txn_index) = self.txns.remove_segment(segment.base_offset) {
                    txn_index.delete()?;
                }
                let (index, time) = segment.index_paths();
                for path in [&segment.path, &index, &time] {
                    if let Err(e) = fs::remove_file(path) {
                        if e.kind() != io::ErrorKind::NotFound {
                            return Err(StorageError::at(Op::Truncate, path, e));
                        }
                    }
                }
            }
        }
        let (cut, new_end) = {
            let segment = self
                .segments
                .back()
                .ok_or_else(|| StorageError::Invariant("the log has no segment".into()))?;
            if target >= segment.next_offset {
                (segment.size, segment.next_offset)
            } else if target <= segment.base_offset {
                (0, segment.base_offset)
            } else {
                // The batch holding `target`, found by the fetch path's own
                // header scan over this one segment.
                let plan = ReadPlan::new(target, 1, vec![segment.view(target)]);
                let slice = plan.read_blocking()?;
                match slice {
                    Some(slice) => {
                        let mut header = [0u8; batch::BATCH_HEADER_LEN];
                        std::os::unix::fs::FileExt::read_exact_at(
                            &*slice.file,
                            &mut header,
                            slice.position,
                        )?;
                        let header = batch::parse_header(&header).map_err(|source| {
                            StorageError::CorruptHeader {
                                segment_base: segment.base_offset,
                                position: slice.position,
                                source,
                            }
                        })?;
                        (slice.position, header.base_offset)
                    }
                    None => (segment.size, segment.next_offset),
                }
            }
        };
        let disk = self.disk.clone();
        let Some(segment) = self.segments.back_mut() else {
            return Err(StorageError::Invariant("the log has no segment".into()));
        };
        // A writer holds the file's old end (and, direct, its last block):
        // drop it; the next append reopens one at the new end.
        segment.write_file = None;
        disk.set_len(&segment.path, &segment.read_file, cut)
            .map_err(|e| StorageError::at(Op::Truncate, &segment.path, e))?;
        disk.sync_file(&segment.path, &segment.read_file)
            .map_err(|e| StorageError::at(Op::SyncFile, &segment.path, e))?;
        segment.size = cut;
        segment.written = cut;
        segment.next_offset = new_end;
        segment.bytes_since_index = 0;
        segment.index.truncate_to_position(cut);
        segment.time_index.truncate_to_offset(new_end);
        segment.max_timestamp = segment.time_index.max_timestamp().map_or(-1, |(ts, _)| ts);
        self.next_offset = new_end;
        self.written_offset = new_end;
        self.durable_offset = self.durable_offset.min(new_end);
        self.sync_wanted = self.sync_wanted.min(new_end);
        self.producers.truncate_to(new_end);
        if let Some(ends) = self.batch_ends.as_mut() {
            ends.retain(|(end, _, _)| *end <= new_end);
        }
        self.epochs.truncate_from_end(new_end);
        self.epochs.persist(&self.dir)?;
        self.truncate_txns(new_end)?;
        self.assert_offsets();
        Ok(new_end)
    }

    /// Transaction state after a cut at `new_end` (blocking): cut back
    /// exactly when the tracker can, else rebuilt from the files and the
    /// log as at startup; transactions open again find their first batch.
    fn truncate_txns(&mut self, new_end: i64) -> Result<()> {
        self.txn_starts.split_off(&new_end);
        if self.txns.truncate_to(&*self.disk, new_end)? {
            locate_txn_starts(&self.segments, &self.txns, &mut self.txn_starts)
        } else {
            log::info!(
                "{}: rebuilding transaction state after truncation to {new_end}",
                self.dir.display()
            );
            let (txns, txn_starts) = recover_txns(
                &*self.disk,
                &self.dir,
                &self.segments,
                self.log_start_offset.min(new_end),
                new_end,
            )?;
            self.txns = txns;
            self.txn_starts = txn_starts;
            Ok(())
        }
    }

    /// Moves the log start offset up to `offset` (DeleteRecords; at most the
    /// log end): records below it are no longer served, whole segments
    /// below it are taken out and returned for the caller to delete (never
    /// the active one), and the epoch cache follows. Returns the new log
    /// start offset and the removed segments.
    pub fn advance_log_start(&mut self, offset: i64) -> (i64, Vec<Segment>) {
        let offset = offset.min(self.written_offset);
        let mut removed = Vec::new();
        if offset <= self.log_start_offset {
            return (self.log_start_offset, removed);
        }
        self.log_start_offset = offset;
        while self.segments.len() > 1 && self.segments[1].base_offset <= offset {
            if let Some(segment) = self.segments.pop_front() {
                removed.push(segment);
            }
        }
        self.epochs.truncate_from_start(offset);
        self.queue_epoch_checkpoint();
        self.txns_after_start_moved(&removed);
        self.assert_offsets();
        (self.log_start_offset, removed)
    }

    /// At open: the log start offset recorded by an earlier DeleteRecords
    /// (Kafka's `log-start-offset-checkpoint`), applied when it lies within
    /// the log.
    pub fn restore_log_start(&mut self, offset: i64) {
        if offset > self.log_start_offset && offset <= self.next_offset {
            self.log_start_offset = offset;
            self.epochs.truncate_from_start(offset);
            self.txns_after_start_moved(&[]);
        }
    }

    /// Refuses every later append (graceful shutdown). What was appended
    /// before still gets written and synced by the flusher.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// True when the log is closed and nothing appended waits for a write
    /// or a sync: its files will not change any more.
    pub fn is_settled(&self) -> bool {
        self.closed
            && self.pending.is_empty()
            && self.written_offset == self.next_offset
            && self.durable_offset == self.next_offset
    }

    /// What a clean shutdown writes: the active segment's indexes, the
    /// producer snapshot and the cut of the active file, all describing
    /// exactly what is on disk. Only for a settled log; a failed or
    /// unsettled one gets nothing (recovery rebuilds its state from the
    /// data at the next start).
    pub fn shutdown_files(&self) -> ShutdownFiles {
        if !self.is_settled() || self.failed.is_some() || !self.appended_since_open {
            // Unchanged since these files were written or rebuilt, or not
            // safe to describe.
            return ShutdownFiles::default();
        }
        let Some(active) = self.segments.back() else {
            return ShutdownFiles::default();
        };
        assert_eq!(
            active.written, active.size,
            "settled log with unwritten bytes"
        );
        let (index_path, time_path) = active.index_paths();
        // The active transaction index before the transaction snapshot
        // that counts on it (a crash before the syncfs may keep either).
        let mut files = Vec::with_capacity(5);
        files.extend(
            self.txns
                .indexes()
                .active()
                .and_then(|index| index.file_to_write()),
        );
        files.extend([
            self.txns.snapshot_file(self.next_offset),
            (time_path, active.time_index.encode()),
            (index_path, active.index.encode()),
            (
                self.dir.join(PRODUCER_SNAPSHOT_FILE),
                self.producers.to_snapshot(self.next_offset),
            ),
        ]);
        let may_extend = self.config.write_mode == WriteMode::Direct || self.config.preallocate;
        let trim = may_extend.then(|| Trim {
            path: active.path.clone(),
            file: active.read_file.clone(),
            size: active.size,
        });
        ShutdownFiles { files, trim }
    }
}

/// Writes every file, then makes them all durable with one `syncfs` of the
/// filesystem holding `dir` (shutdown: thousands of partitions' index files
/// without thousands of fsyncs). On the real filesystem; blocking.
pub fn write_files_then_syncfs(
    files: &[(PathBuf, Vec<u8>)],
    trims: &[Trim],
    dir: &Path,
) -> io::Result<()> {
    write_shutdown_files(&OsDisk, files, trims, dir)
}

/// [`write_files_then_syncfs`] through `disk`.
pub fn write_shutdown_files(
    disk: &dyn Disk,
    files: &[(PathBuf, Vec<u8>)],
    trims: &[Trim],
    dir: &Path,
) -> io::Result<()> {
    for trim in trims {
        // Also when the length is already right: cutting to the same size
        // releases blocks reserved past the end. A failure only leaves
        // space reserved (or padding recovery cuts); the rest goes on.
        if let Err(e) = disk.set_len(&trim.path, &trim.file, trim.size) {
            log::warn!(
                "cannot cut {} to its data at shutdown: {e}",
                trim.path.display()
            );
        }
    }
    disk.write_files(files, false)?;
    let fs = File::open(dir)?;
    disk.syncfs(&fs)
}

fn list_segment_bases(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".log") {
            if stem.len() == 20 {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            }
        }
    }
    Ok(bases)
}

/// The bytes of a small file read at startup; `None` when it is missing
/// or unreadable (its content is then rebuilt from the segment).
fn read_small_file(path: &Path) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("{}: {e}; rebuilding it", path.display());
            None
        }
    }
}

fn open_sealed(
    disk: &dyn Disk,
    path: PathBuf,
    file: File,
    base: i64,
    next_base: i64,
    config: &LogConfig,
    now_ms: i64,
) -> Result<Segment> {
    let size = file.metadata()?.len();
    let mut segment = Segment::from_file(path, file, base, size, next_base, now_ms);
    let (index_path, time_path) = segment.index_paths();
    let index = read_small_file(&index_path)
        .and_then(|b| OffsetIndex::decode(base, &b).ok())
        .filter(|i| {
            i.last_entry()
                .is_none_or(|(_, pos)| u64::from(pos) < size.max(1))
        });
    let time_index = read_small_file(&time_path).and_then(|b| TimeIndex::decode(base, &b).ok());
    if let (Some(index), Some(time_index)) = (index, time_index) {
        if indexes_describe(&segment, next_base, &index, &time_index, config)? {
            segment.max_timestamp = time_index.max_timestamp().map_or(-1, |(ts, _)| ts);
            segment.index = index;
            segment.time_index = time_index;
            return Ok(segment);
        }
        log::info!(
            "{}: index files are stale or torn; rebuilding them",
            segment.path.display()
        );
    }
    let recovered = recover_segment(&segment.read_file, base, config.index_interval_bytes)?;
    if recovered.valid_len < size {
        log::warn!(
            "sealed segment {} is corrupt after byte {}: {}; truncating",
            segment.path.display(),
            recovered.valid_len,
            recovered.stop_reason.as_deref().unwrap_or("unknown")
        );
        disk.set_len(&segment.path, &segment.read_file, recovered.valid_len)
            .map_err(|e| StorageError::at(Op::Truncate, &segment.path, e))?;
        disk.sync_file(&segment.path, &segment.read_file)
            .map_err(|e| StorageError::at(Op::SyncFile, &segment.path, e))?;
    }
    segment.size = recovered.valid_len;
    segment.written = recovered.valid_len;
    segment.max_timestamp = recovered.max_timestamp.map_or(-1, |(ts, _)| ts);
    segment.index = recovered.index;
    segment.time_index = recovered.time_index;
    disk.write_files(
        &[
            (time_path, segment.time_index.encode()),
            (index_path, segment.index.encode()),
        ],
        true,
    )
    .map_err(|e| StorageError::at(Op::WriteFiles, &segment.path, e))?;
    Ok(segment)
}

/// True when index files found at startup describe the sealed `segment`:
/// the batches after the last offset-index entry are whole and valid, end
/// exactly at the file's end and below the next segment's base, none is
/// newer than the time index's newest entry, and that entry names a batch
/// of the segment (its last offset) carrying exactly its timestamp. Files
/// written at an earlier shutdown, when the segment was shorter (a crash
/// then stopped the seal that rewrites them), or torn ones fail this.
///
/// The seal writes the time index durably before the offset index, but a
/// current offset index does not prove the time index current: the seal
/// rewrites in place files an earlier clean stop already wrote (the
/// segment was active then), and a crash during the time index's rewrite
/// can leave it torn — new bytes up to the tear, zeros after it, at the old
/// length — next to the shutdown's offset index, which still describes the
/// data when nothing was appended since. Such a file can decode as a newest
/// entry with the right timestamp and a cut (zeroed) relative offset, so
/// the entry itself is checked against the data. Reads at most an index
/// interval and a batch or two in the normal case.
fn indexes_describe(
    segment: &Segment,
    next_base: i64,
    index: &OffsetIndex,
    time_index: &TimeIndex,
    config: &LogConfig,
) -> io::Result<bool> {
    if segment.size == 0 {
        return Ok(true);
    }
    let Some((newest_timestamp, newest_offset)) = time_index.max_timestamp() else {
        return Ok(false);
    };
    let (tail_offset, tail_start) = index.last_entry().unwrap_or((segment.base_offset, 0));
    let tail = scan_segment(
        &segment.read_file,
        tail_offset,
        config.index_interval_bytes,
        u64::from(tail_start),
    )?;
    if !(tail.valid_len == segment.size
        && tail.first_offset == Some(tail_offset)
        && tail.next_offset <= next_base
        && tail
            .max_timestamp
            .is_none_or(|(ts, _)| ts <= newest_timestamp))
    {
        return Ok(false);
    }
    if newest_offset >= tail_offset {
        // The newest entry is in the tail just scanned: the first batch
        // there to reach the newest timestamp is the one it names.
        return Ok(tail.max_timestamp == Some((newest_timestamp, newest_offset)));
    }
    let (_, from) = index.lookup(newest_offset);
    batch_ends_with(
        segment,
        u64::from(from),
        u64::from(tail_start),
        newest_offset,
        newest_timestamp,
    )
}

/// True when, walking the batch headers of the sealed `segment` from byte
/// `from` (a batch start) to byte `until`, a batch ends exactly at
/// `last_offset` with the max timestamp `max_timestamp` (a time index
/// entry checked against the data).
fn batch_ends_with(
    segment: &Segment,
    from: u64,
    until: u64,
    last_offset: i64,
    max_timestamp: i64,
) -> io::Result<bool> {
    let mut position = from;
    let mut header = [0u8; BATCH_HEADER_LEN];
    while position < until && until - position >= BATCH_HEADER_LEN as u64 {
        segment.read_file.read_exact_at(&mut header, position)?;
        let Ok(parsed) = batch::parse_header(&header) else {
            return Ok(false);
        };
        let total = parsed.total_len() as u64;
        if parsed.base_offset > last_offset || total < BATCH_HEADER_LEN as u64 {
            return Ok(false);
        }
        if parsed.last_offset() >= last_offset {
            return Ok(parsed.last_offset() == last_offset && parsed.max_timestamp == max_timestamp);
        }
        position += total;
    }
    Ok(false)
}

#[allow(clippy::too_many_arguments)]
fn recover_active(
    disk: &dyn Disk,
    path: PathBuf,
    file: File,
    base: i64,
    config: &LogConfig,
    now_ms: i64,
    producers: &mut ProducerStates,
    dir: &Path,
) -> Result<(Segment, Vec<(i32, i64)>)> {
    let file_len = file.metadata()?.len();
    let recovered = recover_segment(&file, base, config.index_interval_bytes)?;
    if recovered.valid_len < file_len {
        log::warn!(
            "{}: truncating {} bytes after byte {} ({})",
            path.display(),
            file_len - recovered.valid_len,
            recovered.valid_len,
            recovered.stop_reason.as_deref().unwrap_or("torn tail")
        );
        disk.set_len(&path, &file, recovered.valid_len)
            .map_err(|e| StorageError::at(Op::Truncate, &path, e))?;
        disk.sync_file(&path, &file)
            .map_err(|e| StorageError::at(Op::SyncFile, &path, e))?;
    }
    let snapshot = read_small_file(&dir.join(PRODUCER_SNAPSHOT_FILE))
        .and_then(|b| ProducerStates::from_snapshot(&b))
        .filter(|(_, covered)| *covered <= recovered.next_offset);
    let replay_from = match snapshot {
        Some((states, covered)) => {
            *producers = states;
            producers.truncate_to(recovered.next_offset);
            covered
        }
        None => i64::MIN,
    };
    for info in recovered
        .producers
        .iter()
        .filter(|p| p.base_offset >= replay_from)
    {
        producers.record(
            info.producer_id,
            info.producer_epoch,
            ProducerBatch {
                first_sequence: info.base_sequence,
                last_sequence: info.last_sequence,
                base_offset: info.base_offset,
                last_offset: info.last_offset,
            },
        );
    }
    let mut segment = Segment::from_file(
        path,
        file,
        base,
        recovered.valid_len,
        recovered.next_offset,
        now_ms,
    );
    segment.max_timestamp = recovered.max_timestamp.map_or(-1, |(ts, _)| ts);
    segment.index = recovered.index;
    segment.time_index = recovered.time_index;
    Ok((segment, recovered.epoch_starts))
}

/// The leader epoch cache at startup: the checkpoint file, cut to the
/// recovered log, completed with the epochs found in the active segment's
/// batches (a crash may have lost a checkpoint update, never the batches'
/// own epochs). A malformed checkpoint is rebuilt from those batches alone.
fn recover_epochs(
    dir: &Path,
    log_start_offset: i64,
    log_end_offset: i64,
    tail: &[(i32, i64)],
) -> LeaderEpochCache {
    let mut epochs = LeaderEpochCache::load(dir).unwrap_or_else(|e| {
        log::warn!(
            "{}: {e}; rebuilding the leader epochs from the active segment",
            dir.display()
        );
        LeaderEpochCache::default()
    });
    epochs.truncate_from_end(log_end_offset);
    for &(epoch, start) in tail {
        if epochs.latest_epoch().is_none_or(|latest| epoch > latest) {
            epochs.assign(epoch, start);
        }
    }
    epochs.truncate_from_start(log_start_offset);
    if let Err(e) = epochs.persist(dir) {
        log::warn!(
            "{}: writing the leader epoch checkpoint: {e}",
            dir.display()
        );
    }
    epochs
}

/// Bytes read at a time while replaying transactional batches.
const TXN_REPLAY_CHUNK_BYTES: u64 = 1 << 20;

/// The transaction state at startup (or after a truncation it cannot
/// follow exactly), after the log's own recovery: the `.txnindex` files
/// and the snapshot ([`PartitionTxns::load`]), every batch from the replay
/// point on applied in order across `segments`, the first batches of open
/// transactions located. Blocking. After a replay the active index and
/// a snapshot at the log end are written (durably, in that order): the
/// next start does not replay it all again, and a snapshot that did not
/// match the log (past its end after a power loss) is never left behind
/// for a log that later grows past it with other batches.
fn recover_txns(
    disk: &dyn Disk,
    dir: &Path,
    segments: &VecDeque<Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
) -> Result<(PartitionTxns, TxnStarts)> {
    let bases: Vec<i64> = segments.iter().map(|s| s.base_offset).collect();
    let loaded = PartitionTxns::load(disk, dir, &bases, log_start_offset, log_end_offset)?;
    let mut txns = loaded.txns;
    let mut starts = BTreeMap::new();
    for segment in segments
        .iter()
        .filter(|s| s.next_offset > loaded.replay_from)
    {
        replay_segment(segment, loaded.replay_from, &mut txns, &mut starts)?;
    }
    txns.finish_recovery(disk)?;
    if loaded.replay_from < log_end_offset {
        let files = txns.shutdown_files(log_end_offset);
        disk.write_files(&files, true)
            .map_err(|e| StorageError::at(Op::WriteFiles, dir, e))?;
    }
    locate_txn_starts(segments, &txns, &mut starts)?;
    Ok((txns, starts))
}

/// Applies every transactional batch of `segment` at or after `from` to
/// `txns`, recording where the transactions it opens start. The segment
/// was recovered (its batches are whole and valid up to its size); a
/// marker whose record does not decode is skipped with a warning (the
/// append paths never write one).
fn replay_segment(
    segment: &Segment,
    from: i64,
    txns: &mut PartitionTxns,
    starts: &mut TxnStarts,
) -> Result<()> {
    let (_, start) = segment.index.lookup(from);
    let end = segment.size;
    let mut position = u64::from(start);
    let mut window: Vec<u8> = Vec::new();
    let mut window_start = 0u64;
    let corrupt = |position: u64, reason: String| StorageError::CorruptBatch {
        segment_base: segment.base_offset,
        position,
        reason,
    };
    while position < end {
        if end - position < BATCH_HEADER_LEN as u64 {
            return Err(corrupt(position, "torn batch header".into()));
        }
        let in_window = |from: u64, len: u64, start: u64, window: &Vec<u8>| {
            from >= start && from + len <= start + window.len() as u64
        };
        if !in_window(position, BATCH_HEADER_LEN as u64, window_start, &window) {
            let len = (end - position).min(TXN_REPLAY_CHUNK_BYTES);
            window.resize(len as usize, 0);
            segment.read_file.read_exact_at(&mut window, position)?;
            window_start = position;
        }
        let at = (position - window_start) as usize;
        let header =
            batch::parse_header(&window[at..]).map_err(|source| StorageError::CorruptHeader {
                segment_base: segment.base_offset,
                position,
                source,
            })?;
        let total = header.total_len() as u64;
        if total < BATCH_HEADER_LEN as u64 || total > end - position {
            return Err(corrupt(position, format!("batch of {total} bytes")));
        }
        let transactional = header.has_producer_id() && header.is_transactional();
        if header.base_offset >= from && transactional {
            let txn = if header.is_control() {
                if !in_window(position, total, window_start, &window) {
                    let len = (end - position).min(TXN_REPLAY_CHUNK_BYTES.max(total));
                    window.resize(len as usize, 0);
                    segment.read_file.read_exact_at(&mut window, position)?;
                    window_start = position;
                }
                let at = (position - window_start) as usize;
                let whole = &window[at..at + total as usize];
                TxnBatch::from_validated(&header, whole).unwrap_or_else(|e| {
                    log::warn!(
                        "{}: skipping the undecodable control batch at offset {}: {e}",
                        segment.path.display(),
                        header.base_offset
                    );
                    None
                })
            } else {
                TxnBatch::data(&header)
            };
            if let Some(txn) = txn {
                let opens = txn.marker.is_none()
                    && txns
                        .tracker()
                        .producer(txn.producer_id)
                        .is_none_or(|p| p.open_since.is_none());
                if opens {
                    starts.insert(txn.base_offset, (segment.base_offset, position));
                }
                txns.apply(&txn);
            }
        }
        position += total;
    }
    Ok(())
}

/// Records where the first batch of every open transaction without a
/// recorded start lies (opened before a replay point or reopened by a
/// truncation), with blocking header reads. One whose batch is not found
/// stays unrecorded: reads bounded at it wait until it is decided.
fn locate_txn_starts(
    segments: &VecDeque<Segment>,
    txns: &PartitionTxns,
    starts: &mut TxnStarts,
) -> Result<()> {
    let missing: Vec<i64> = txns
        .tracker()
        .open_transactions()
        .map(|(first, _)| first)
        .filter(|first| !starts.contains_key(first))
        .collect();
    for first in missing {
        let i = segments
            .partition_point(|s| s.base_offset <= first)
            .saturating_sub(1);
        let Some(segment) = segments.get(i) else {
            continue;
        };
        let plan = ReadPlan::new(first, 1, vec![segment.view(first)]);
        let Some(slice) = plan.read_blocking()? else {
            continue;
        };
        let mut header = [0u8; BATCH_HEADER_LEN];
        slice.file.read_exact_at(&mut header, slice.position)?;
        let header =
            batch::parse_header(&header).map_err(|source| StorageError::CorruptHeader {
                segment_base: segment.base_offset,
                position: slice.position,
                source,
            })?;
        if header.base_offset == first {
            starts.insert(first, (segment.base_offset, slice.position));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flusher::Flusher;
    use crate::partition::Partition;
    use ringbroker_protocol::batch::{build_batch, ProducerFields};
    use std::time::Instant;

    fn batch(values: &[&[u8]], ts: i64) -> Bytes {
        let records: Vec<(Option<&[u8]>, &[u8])> = values.iter().map(|v| (None, *v)).collect();
        Bytes::from(build_batch(ts, None, &records))
    }

    /// Runs `body` on a glommio executor (the log's writes go through io_uring).
    fn on_executor<F, Fut>(body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(body)
            .expect("executor")
            .join()
            .expect("test body");
    }

    async fn flush(flusher: &Rc<Flusher>, partition: &Rc<Partition>) {
        flusher.schedule(partition, 0);
        flusher.round().await;
        // Syncs complete on their own task.
        for _ in 0..1000 {
            if !partition.syncing.get() && !partition.log.borrow().sync_pending() {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            if !partition.syncing.get() && partition.log.borrow().sync_pending() {
                flusher.round().await;
            }
        }
    }

    /// (base offset, leader epoch) of every batch readable from `from`
    /// below `upper`, read as a consumer would (one segment per read).
    fn batch_offsets(log: &PartitionLog, from: i64, upper: i64) -> Vec<(i64, i32)> {
        let mut out = Vec::new();
        let mut offset = from;
        while offset < upper {
            let Some(plan) = log.plan_read(offset, 1 << 30, upper).expect("plan") else {
                break;
            };
            let Some(slice) = plan.read_blocking().expect("read") else {
                break;
            };
            let bytes = slice.read_to_vec().expect("bytes");
            for b in ringbroker_protocol::batch::batches(&bytes) {
                let (header, _) = b.expect("valid batch");
                out.push((header.base_offset, header.partition_leader_epoch));
                offset = header.last_offset() + 1;
            }
        }
        out
    }

    /// A transactional batch of `values` records from `producer_id`.
    fn txn_batch(
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        values: usize,
    ) -> Bytes {
        let records: Vec<(Option<&[u8]>, &[u8])> = (0..values)
            .map(|_| (None, &b"transactional-value-0123456789"[..]))
            .collect();
        let producer = ProducerFields {
            producer_id,
            producer_epoch,
            base_sequence,
        };
        let mut bytes = build_batch(1_000, Some(producer), &records);
        bytes[22] |= 0x10; // the transactional attribute bit
        batch::write_crc(&mut bytes);
        Bytes::from(bytes)
    }

    /// (producer, first offset, marker offset) of every aborted
    /// transaction the log reports.
    fn aborted(log: &PartitionLog) -> Vec<(i64, i64, i64)> {
        log.aborted_transactions(0, i64::MAX)
            .iter()
            .map(|t| (t.producer_id, t.first_offset, t.last_offset))
            .collect()
    }

    /// Every batch's bytes as stored, from the log start to its end.
    fn all_bytes(log: &PartitionLog) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let Some(slice) = log.read(offset, 1 << 30).expect("read") else {
                break;
            };
            let bytes = slice.read_to_vec().expect("bytes");
            for b in batch::batches(&bytes) {
                let (header, range) = b.expect("valid batch");
                out.extend_from_slice(&bytes[range]);
                offset = header.last_offset() + 1;
            }
        }
        out
    }

    /// Producers 1..=4, two segments or more (offsets in comments):
    /// P1 aborted, P2 committed, P3 aborted, P4 left open.
    fn transactional_history(partition: &Partition) {
        let append = |records: Bytes| partition.append(&records, 1).expect("append");
        let marker = |producer: i64, commit: bool| {
            partition
                .append_marker(producer, 0, 0, commit, 1)
                .expect("marker")
        };
        assert_eq!(append(txn_batch(1, 0, 0, 2)).base_offset, 0); // 0..1
        assert_eq!(append(txn_batch(2, 0, 0, 2)).base_offset, 2); // 2..3
        assert_eq!(marker(1, false).base_offset, 4);
        append(batch(&[b"plain"], 5)); // 5
        assert_eq!(append(txn_batch(3, 0, 0, 1)).base_offset, 6);
        assert_eq!(marker(2, true).base_offset, 7);
        assert_eq!(marker(3, false).base_offset, 8);
        assert_eq!(append(txn_batch(4, 0, 0, 2)).base_offset, 9); // 9..10
    }

    #[test]
    fn transactions_across_rolls_bound_reads_and_survive_crashes_and_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        let config = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        on_executor(move || async move {
            let flusher = Rc::new(Flusher::new());
            let expected = vec![(1, 0, 4), (3, 6, 8)];
            let marker_segment = |log: &PartitionLog, marker: i64| {
                log.txns()
                    .indexes()
                    .iter()
                    .find(|i| i.entries().iter().any(|t| t.last_offset == marker))
                    .map(|i| (i.base_offset(), i.path().to_path_buf()))
                    .expect("an index holds the marker")
            };
            {
                let log = PartitionLog::open(&path, config.clone(), 0).expect("open");
                let partition = Rc::new(Partition::new("t".into(), 0, log));
                transactional_history(&partition);
                partition.log.borrow_mut().request_sync();
                flush(&flusher, &partition).await;
                assert_eq!(partition.high_watermark(), 11);
                assert_eq!(partition.last_stable_offset(), 9, "P4 open at 9");
                let log = partition.log.borrow();
                assert!(log.segment_count() >= 3, "rolled");
                assert_eq!(log.txns().indexes().len(), log.segment_count());
                assert_eq!(aborted(&log), expected);
                // The aborts sit in different segments; the sealed ones'
                // files are on disk.
                let (first, first_path) = marker_segment(&log, 4);
                let (second, _) = marker_segment(&log, 8);
                assert!(first < second);
                assert!(first_path.exists());
                assert_eq!(
                    partition.aborted_transactions(5, 7),
                    log.aborted_transactions(6, 7)
                );
                assert_eq!(partition.aborted_transactions(0, 4).len(), 1);
                assert_eq!(partition.aborted_transactions(5, 6), vec![]);
                // A read_committed read stops at the LSO, on a batch
                // boundary, without batch-end tracking.
                let read: Vec<i64> = batch_offsets(&log, 0, 9).iter().map(|(o, _)| *o).collect();
                assert_eq!(read, vec![0, 2, 4, 5, 6, 7, 8]);
                assert!(log.plan_read(9, 1 << 20, 9).expect("plan").is_none());
                // A crash: no shutdown files.
            }
            let log = PartitionLog::open(&path, config.clone(), 0).expect("reopen after a crash");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            assert_eq!(aborted(&partition.log.borrow()), expected);
            assert_eq!(partition.last_stable_offset(), 9);
            assert_eq!(
                partition
                    .log
                    .borrow()
                    .txns()
                    .tracker()
                    .open_transactions()
                    .collect::<Vec<_>>(),
                vec![(9, 4)]
            );
            {
                let log = partition.log.borrow();
                let read: Vec<i64> = batch_offsets(&log, 0, 9).iter().map(|(o, _)| *o).collect();
                assert_eq!(
                    read.last(),
                    Some(&8),
                    "the open transaction's start is found again"
                );
            }
            // A clean stop, and its files describe the same state.
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            assert!(
                flusher
                    .close_and_drain(std::slice::from_ref(&partition), deadline)
                    .await
            );
            let shutdown = partition.log.borrow().shutdown_files();
            let trims: Vec<Trim> = shutdown.trim.into_iter().collect();
            write_shutdown_files(&OsDisk, &shutdown.files, &trims, &path).expect("shutdown");
            drop(partition);
            let log = PartitionLog::open(&path, config.clone(), 0).expect("reopen after a stop");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            assert_eq!(aborted(&partition.log.borrow()), expected);
            assert_eq!(partition.last_stable_offset(), 9);
            assert!(path.join(crate::txn::TXN_SNAPSHOT_FILE).exists());
            // P4 commits: everything is stable.
            partition.append_marker(4, 0, 0, true, 2).expect("commit");
            flush(&flusher, &partition).await;
            assert_eq!(partition.last_stable_offset(), 12);
            assert_eq!(partition.high_watermark(), 12);
            // Retention deletes the oldest segments and their .txnindex.
            let (first, first_path) = marker_segment(&partition.log.borrow(), 4);
            partition.log.borrow_mut().set_config(LogConfig {
                retention_bytes: 0,
                ..config.clone()
            });
            let high_watermark = partition.high_watermark();
            let removed = partition
                .log
                .borrow_mut()
                .take_expired_segments(3, high_watermark);
            assert!(removed.iter().any(|s| s.base_offset == first));
            flusher.schedule(&partition, 0);
            flusher.round().await;
            assert!(!first_path.exists(), "the txnindex went with its segment");
            let log = partition.log.borrow();
            assert!(aborted(&log)
                .iter()
                .all(|(_, _, last)| *last >= log.log_start_offset()));
            assert_eq!(partition.last_stable_offset(), 12);
        });
    }

    #[test]
    fn truncation_across_markers_reopens_transactions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        on_executor(move || async move {
            let config = LogConfig {
                segment_bytes: 300,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(&path, config, 0).expect("open");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            let flusher = Rc::new(Flusher::new());
            // A replica whose high watermark stays at 0: cuts are exact.
            partition.set_high_watermark(0);
            transactional_history(&partition);
            flush(&flusher, &partition).await;
            let end = partition.log.borrow_mut().truncate_to(8).expect("truncate");
            assert_eq!(end, 8);
            {
                let log = partition.log.borrow();
                assert_eq!(aborted(&log), vec![(1, 0, 4)]);
                assert_eq!(
                    log.txns().tracker().open_transactions().collect::<Vec<_>>(),
                    vec![(6, 3)],
                    "P3's abort is gone: open again"
                );
                assert_eq!(log.last_stable_offset(8), 6);
                let read: Vec<i64> = batch_offsets(&log, 0, 6).iter().map(|(o, _)| *o).collect();
                assert_eq!(read, vec![0, 2, 4, 5]);
            }
            // The new leader's history: P3 commits.
            partition.append_marker(3, 0, 0, true, 2).expect("commit");
            flush(&flusher, &partition).await;
            assert_eq!(aborted(&partition.log.borrow()), vec![(1, 0, 4)]);
            assert_eq!(partition.log.borrow().last_stable_offset(9), 9);
            // A cut below a high watermark the state was given: rebuilt
            // from the files and the log, with the same result.
            partition.set_high_watermark(9);
            let end = partition.log.borrow_mut().truncate_to(3).expect("truncate");
            assert_eq!(end, 2, "the whole batch holding offset 3 goes");
            let log = partition.log.borrow();
            assert_eq!(aborted(&log), vec![]);
            assert_eq!(
                log.txns().tracker().open_transactions().collect::<Vec<_>>(),
                vec![(0, 1)]
            );
            assert_eq!(log.last_stable_offset(2), 0);
        });
    }

    #[test]
    fn transactional_checks_refuse_control_batches_and_fenced_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        on_executor(move || async move {
            let log = PartitionLog::open(&path, LogConfig::default(), 0).expect("open");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            // Producers do not write control batches.
            let marker = crate::txn::build_marker_batch(
                EndTxnMarker {
                    kind: MarkerKind::Commit,
                    coordinator_epoch: 0,
                },
                1,
                0,
                0,
            );
            assert!(matches!(
                partition.append(&Bytes::from(marker), 1),
                Err(AppendError::ControlBatchFromClient)
            ));
            // A marker for a producer with nothing open is written anyway.
            let appended = partition.append_marker(1, 0, 5, true, 1).expect("marker");
            assert_eq!(appended.base_offset, 0);
            partition.append(&txn_batch(1, 0, 0, 1), 1).expect("data"); // 1
                                                                        // An idempotent but not transactional batch inside the
                                                                        // transaction: INVALID_TXN_STATE.
            let plain = Bytes::from(build_batch(
                0,
                Some(ProducerFields {
                    producer_id: 1,
                    producer_epoch: 0,
                    base_sequence: 1,
                }),
                &[(None, b"v")],
            ));
            let refused = partition.append(&plain, 1).expect_err("outside the txn");
            assert!(matches!(
                refused,
                AppendError::Transaction(TxnError::InvalidTxnState { .. })
            ));
            // A marker from an older coordinator: fenced.
            let fenced = partition
                .append_marker(1, 0, 4, false, 1)
                .expect_err("fenced");
            assert!(matches!(
                fenced,
                AppendError::Transaction(TxnError::CoordinatorFenced {
                    current: 5,
                    got: 4,
                    ..
                })
            ));
            assert_eq!(partition.log.borrow().next_offset(), 2, "nothing appended");
            // The coordinator aborts with a bumped epoch: the old epoch is
            // fenced for markers and data alike.
            partition.append_marker(1, 1, 5, false, 1).expect("abort"); // 2
            assert_eq!(aborted(&partition.log.borrow()), vec![(1, 1, 2)]);
            let stale = partition
                .append_marker(1, 0, 6, true, 1)
                .expect_err("stale");
            assert!(matches!(
                stale,
                AppendError::Transaction(TxnError::StaleEpoch {
                    current: 1,
                    got: 0,
                    ..
                })
            ));
            let stale = partition
                .append(&txn_batch(1, 0, 1, 1), 1)
                .expect_err("stale");
            assert!(
                matches!(
                    stale,
                    AppendError::InvalidProducerEpoch { current: 1, got: 0 }
                        | AppendError::Transaction(TxnError::StaleEpoch { .. })
                ),
                "{stale:?}"
            );
            // The new epoch starts at sequence 0.
            let appended = partition
                .append(&txn_batch(1, 1, 0, 1), 1)
                .expect("new epoch");
            assert_eq!(appended.base_offset, 3);
            assert!(matches!(
                partition.append_marker(-1, 0, 0, true, 1),
                Err(AppendError::MarkerWithoutProducer(-1))
            ));
        });
    }

    #[test]
    fn replicas_apply_markers_and_match_the_leader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let leader_path = dir.path().join("leader").join("t-0");
        let follower_path = dir.path().join("follower").join("t-0");
        on_executor(move || async move {
            let config = LogConfig {
                segment_bytes: 300,
                ..LogConfig::default()
            };
            let flusher = Rc::new(Flusher::new());
            let log = PartitionLog::open(&leader_path, config.clone(), 0).expect("open");
            let leader = Rc::new(Partition::new("t".into(), 0, log));
            transactional_history(&leader);
            flush(&flusher, &leader).await;
            let bytes = all_bytes(&leader.log.borrow());
            let log = PartitionLog::open(&follower_path, config.clone(), 0).expect("open");
            let follower = Rc::new(Partition::new("t".into(), 0, log));
            follower.follow();
            follower.set_high_watermark(0);
            let appended = follower
                .log
                .borrow_mut()
                .append_replica(&bytes, 1)
                .expect("replicate")
                .expect("whole batches");
            assert_eq!((appended.base_offset, appended.last_offset), (0, 10));
            flush(&flusher, &follower).await;
            follower.set_high_watermark(11);
            let (leader_log, follower_log) = (leader.log.borrow(), follower.log.borrow());
            assert_eq!(aborted(&follower_log), aborted(&leader_log));
            assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
            assert_eq!(follower.last_stable_offset(), 9);
            assert_eq!(
                follower_log
                    .txns()
                    .tracker()
                    .producer(3)
                    .map(|p| p.open_since),
                Some(None)
            );
            // A replicated control batch whose record is broken is refused
            // before anything changes.
            let mut broken = crate::txn::build_marker_batch(
                EndTxnMarker {
                    kind: MarkerKind::Abort,
                    coordinator_epoch: 0,
                },
                4,
                0,
                0,
            );
            let key_version = BATCH_HEADER_LEN + 5;
            broken[key_version..key_version + 2].copy_from_slice(&(-1i16).to_be_bytes());
            batch::write_crc(&mut broken);
            batch::stamp_base_offset(&mut broken, 11);
            drop(follower_log);
            let refused = follower
                .log
                .borrow_mut()
                .append_replica(&broken, 1)
                .expect_err("undecodable marker");
            assert!(
                matches!(refused, AppendError::InvalidControlBatch(_)),
                "{refused:?}"
            );
            assert_eq!(follower.log.borrow().next_offset(), 11);
        });
    }

    #[test]
    fn the_high_watermark_moves_only_with_what_in_sync_followers_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        on_executor(move || async move {
            let log = PartitionLog::open(&path, LogConfig::default(), 0).expect("open");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            let flusher = Rc::new(Flusher::new());
            partition.lead_replicated(1, vec![1, 2, 3], 0);
            for i in 0..4 {
                partition.append(&batch(&[b"x"], i), 1).expect("append");
            }
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            assert_eq!(partition.high_watermark(), 0, "no follower has fetched");
            partition.record_follower_fetch(2, 3, 1);
            assert_eq!(partition.high_watermark(), 0, "follower 3 has not fetched");
            partition.record_follower_fetch(3, 2, 1);
            assert_eq!(partition.high_watermark(), 2);
            // A fetch past this log's end (a follower acting on another
            // leadership's longer log) is not progress.
            partition.record_follower_fetch(3, 40, 2);
            partition.record_follower_fetch(2, 40, 2);
            assert_eq!(partition.high_watermark(), 2);
            partition.record_follower_fetch(3, 4, 3);
            partition.record_follower_fetch(2, 4, 3);
            assert_eq!(partition.high_watermark(), 4);
        });
    }

    #[test]
    fn a_reopened_replicated_partition_trusts_nothing_until_replication_confirms_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        on_executor(move || async move {
            let flusher = Rc::new(Flusher::new());
            {
                let log = PartitionLog::open(&path, LogConfig::default(), 0).expect("open");
                let partition = Rc::new(Partition::new("t".into(), 0, log));
                for i in 0..4 {
                    partition.append(&batch(&[b"x"], i), 1).expect("append");
                }
                partition.log.borrow_mut().request_sync();
                flush(&flusher, &partition).await;
            }
            let log = PartitionLog::open(&path, LogConfig::default(), 0).expect("reopen");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            partition.open_replicated();
            partition.lead_replicated(1, vec![1, 2], 0);
            assert_eq!(partition.high_watermark(), 0, "nothing confirmed yet");
            for i in 4..6 {
                partition.append(&batch(&[b"y"], i), 1).expect("append");
            }
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            // The follower holds what the log held at open: the high
            // watermark stops there, and reads are bounded there.
            partition.record_follower_fetch(2, 4, 1);
            assert_eq!(partition.high_watermark(), 4);
            let log = partition.log.borrow();
            assert_eq!(batch_offsets(&log, 0, 4).len(), 4);
        });
    }

    #[test]
    fn leader_epochs_are_stamped_checkpointed_and_truncated_across_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        let reopen_path = path.clone();
        let config = LogConfig {
            segment_bytes: 250,
            index_interval_bytes: 50,
            ..LogConfig::default()
        };
        let reopen_config = config.clone();
        on_executor(move || async move {
            let log = PartitionLog::open(&path, config, 0).expect("open");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            let flusher = Rc::new(Flusher::new());
            // Epoch 0 for offsets 0..6, epoch 3 from 6, epoch 5 from 12
            // (two records per batch; several segments).
            for (i, epoch) in [0, 0, 0, 3, 3, 3, 5, 5, 5].into_iter().enumerate() {
                partition.set_leader_epoch(epoch);
                let appended = partition
                    .append(
                        &batch(
                            &[b"aaaaaaaaaaaaaaaaaaaa", b"bbbbbbbbbbbbbbbbbbbbb"],
                            10 + i as i64,
                        ),
                        1,
                    )
                    .expect("append");
                assert_eq!(appended.base_offset, 2 * i as i64);
            }
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            {
                let log = partition.log.borrow();
                assert!(log.segment_count() >= 3, "rolled");
                let entries: Vec<(i32, i64)> = log
                    .epochs()
                    .entries()
                    .iter()
                    .map(|e| (e.epoch, e.start_offset))
                    .collect();
                assert_eq!(entries, vec![(0, 0), (3, 6), (5, 12)]);
                assert_eq!(log.epoch_end_offset(3), (3, 12));
                assert_eq!(log.epoch_end_offset(4), (3, 12));
                assert_eq!(log.epoch_end_offset(5), (5, 18));
                let read = batch_offsets(&log, 0, log.log_end_offset());
                assert_eq!(read.len(), 9);
                assert!(
                    read.iter().all(|(o, e)| *e == [0, 3, 5][(*o / 6) as usize]),
                    "{read:?}"
                );
                assert_eq!(
                    std::fs::read_to_string(LeaderEpochCache::path(log.dir())).expect("checkpoint"),
                    "0\n3\n0 0\n3 6\n5 12\n"
                );
            }
            // Cut inside a batch (offset 9 is the second record of the
            // batch at 8): the whole batch goes, across segment bounds.
            let end = partition.log.borrow_mut().truncate_to(9).expect("truncate");
            assert_eq!(end, 8);
            {
                let log = partition.log.borrow();
                assert_eq!((log.log_end_offset(), log.next_offset()), (8, 8));
                assert!(log.durable_offset() <= 8);
                let read = batch_offsets(&log, 0, 8);
                assert_eq!(
                    read.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
                    vec![0, 2, 4, 6]
                );
                assert_eq!(log.epoch_end_offset(3), (3, 8));
                assert_eq!(log.latest_epoch(), Some(3));
                assert!(matches!(
                    log.plan_read(9, 100, 8),
                    Err(ReadError::OutOfRange)
                ));
                // Past a lower bound (a high watermark) but within the log:
                // nothing to read yet, not out of range.
                assert!(matches!(log.plan_read(6, 100, 4), Ok(None)));
            }
            // Appends continue at the new end with a newer epoch.
            partition.set_leader_epoch(7);
            let appended = partition
                .append(&batch(&[b"again"], 99), 2)
                .expect("append");
            assert_eq!(appended.base_offset, 8);
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            // Truncating to a segment's base removes the whole segment.
            let base = partition
                .log
                .borrow()
                .segments
                .back()
                .expect("active")
                .base_offset;
            let end = partition
                .log
                .borrow_mut()
                .truncate_to(base)
                .expect("truncate");
            assert_eq!(end, base);
            assert!(partition
                .log
                .borrow()
                .segments
                .iter()
                .all(|s| s.base_offset < base || base == 0));
        });
        on_executor(move || async move {
            let log = PartitionLog::open(&reopen_path, reopen_config, 0).expect("reopen");
            let end = log.log_end_offset();
            let read = batch_offsets(&log, 0, end);
            assert_eq!(read.last().map(|(o, _)| *o + 2).unwrap_or(0).max(end), end);
            let entries: Vec<i32> = log.epochs().entries().iter().map(|e| e.epoch).collect();
            assert!(entries.iter().all(|e| *e <= 7) && entries.starts_with(&[0, 3]));
        });
    }

    #[test]
    fn reads_stop_at_a_high_watermark_set_by_replication() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        on_executor(move || async move {
            let config = LogConfig {
                segment_bytes: 200,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(&path, config, 0).expect("open");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            let flusher = Rc::new(Flusher::new());
            partition.set_high_watermark(0);
            for i in 0..6 {
                partition
                    .append(&batch(&[b"0123456789012345678901234567890"], i), 1)
                    .expect("append");
            }
            flush(&flusher, &partition).await;
            assert_eq!(partition.log.borrow().log_end_offset(), 6);
            assert_eq!(partition.high_watermark(), 0, "nothing replicated yet");
            {
                let log = partition.log.borrow();
                assert!(log.plan_read(0, 1 << 20, 0).expect("plan").is_none());
            }
            // A follower acknowledged up to offset 3 (inside a later segment
            // than the first).
            partition.set_high_watermark(3);
            assert_eq!(partition.high_watermark(), 3);
            {
                let log = partition.log.borrow();
                let got: Vec<i64> = batch_offsets(&log, 0, 3)
                    .into_iter()
                    .map(|(o, _)| o)
                    .collect();
                assert_eq!(got, vec![0, 1, 2]);
                let got: Vec<i64> = batch_offsets(&log, 2, 3)
                    .into_iter()
                    .map(|(o, _)| o)
                    .collect();
                assert_eq!(got, vec![2]);
                // Replicas read up to the log end.
                assert_eq!(batch_offsets(&log, 0, 6).len(), 6);
            }
            // The high watermark never moves back; following the log end
            // again reads everything.
            partition.set_high_watermark(1);
            assert_eq!(partition.high_watermark(), 3);
            partition.follow_log_end();
            assert_eq!(partition.high_watermark(), 6);
        });
    }

    /// Regression: a seal rewriting a time index a clean stop had written,
    /// torn by a crash (new bytes up to the tear, zeros after it, at the
    /// old length), decoded as a newest entry with the right timestamp and
    /// a zeroed relative offset; the offset index vouched for it and it
    /// was trusted. It is checked against the data and rebuilt.
    #[test]
    fn a_torn_time_index_entry_of_a_sealed_segment_is_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        // A batch per segment: one time index entry each.
        let config = LogConfig {
            segment_bytes: 50,
            index_interval_bytes: 1 << 20,
            ..LogConfig::default()
        };
        on_executor(move || async move {
            let expected = {
                let log = PartitionLog::open(&path, config.clone(), 0).expect("open");
                let partition = Rc::new(Partition::new("t".into(), 0, log));
                let flusher = Rc::new(Flusher::new());
                for i in 0..3i64 {
                    let values: [&[u8]; 3] = [b"aaaaaaaaaaaaaaaaaaaa"; 3];
                    partition
                        .log
                        .borrow_mut()
                        .append(&batch(&values, 1000 + i * 10), 5, 0)
                        .expect("append");
                }
                partition.log.borrow_mut().request_sync();
                flush(&flusher, &partition).await;
                let log = partition.log.borrow();
                assert!(log.segment_count() >= 2, "rolled");
                let first = &log.segments[0];
                (first.time_index.max_timestamp(), first.index_paths().1)
            };
            let (Some((ts, last)), time_path) = expected else {
                panic!("the sealed segment has a time index entry");
            };
            assert!(last > 0);
            let mut bytes = fs::read(&time_path).expect("time index");
            let n = bytes.len();
            bytes[n - 4..].fill(0);
            fs::write(&time_path, &bytes).expect("tear");
            let log = PartitionLog::open(&path, config, 0).expect("reopen");
            assert_eq!(log.segments[0].time_index.max_timestamp(), Some((ts, last)));
        });
    }

    #[test]
    fn append_flush_read_roll_and_reopen() {
        append_flush_read_roll_and_reopen_in(WriteMode::Buffered);
    }

    #[test]
    fn append_flush_read_roll_and_reopen_direct() {
        append_flush_read_roll_and_reopen_in(WriteMode::Direct);
    }

    fn append_flush_read_roll_and_reopen_in(write_mode: WriteMode) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        let reopen_path = path.clone();
        let config = LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 100,
            write_mode,
            ..LogConfig::default()
        };
        let reopen_config = config.clone();
        on_executor(move || async move {
            let log = PartitionLog::open(&path, config, 0).expect("open");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            let flusher = Rc::new(Flusher::new());
            for i in 0..10i64 {
                let appended = partition
                    .log
                    .borrow_mut()
                    .append(
                        &batch(
                            &[b"aaaaaaaaaaaaaaaaaaaa", b"bbbbbbbbbbbbbbbbbbbbbbbbbb"],
                            1000 + i * 10,
                        ),
                        5,
                        0,
                    )
                    .expect("append");
                assert_eq!(appended.base_offset, 2 * i);
            }
            // Nothing is readable before the flusher writes it.
            assert_eq!(partition.log.borrow().log_end_offset(), 0);
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            let log = partition.log.borrow();
            assert_eq!((log.log_end_offset(), log.durable_offset()), (20, 20));
            assert!(log.segment_count() > 2, "rolled by segment.bytes");
            let slice = log.read(7, 1 << 20).expect("read").expect("data");
            let bytes = slice.read_to_vec().expect("file");
            let first = ringbroker_protocol::batch::parse_header(&bytes).expect("header");
            assert!(first.base_offset <= 7 && first.last_offset() >= 7);
            assert!(matches!(log.read(21, 100), Err(ReadError::OutOfRange)));
            assert!(log.read(20, 100).expect("at end").is_none());
            // Timestamps: batch i holds 1000+10i and 1001+10i.
            assert_eq!(
                log.offset_for_timestamp(1041).expect("lookup"),
                Some((9, 1041))
            );
            assert_eq!(log.offset_for_timestamp(5000).expect("lookup"), None);
            assert_eq!(log.max_timestamp_offset().expect("read"), Some((1091, 19)));
            // Sealed segments hold exactly their data (no padding or
            // preallocated space), whatever the write mode.
            for segment in log.segments.iter().take(log.segment_count() - 1) {
                assert_eq!(
                    segment.read_file.metadata().expect("meta").len(),
                    segment.size
                );
            }
            assert!(
                log.shutdown_files().files.is_empty(),
                "nothing to describe before the log is closed"
            );
            drop(log);
            partition.log.borrow_mut().close();
            assert!(matches!(
                partition
                    .log
                    .borrow_mut()
                    .append(&batch(&[b"late"], 2000), 5, 0),
                Err(AppendError::Closed)
            ));
            let log = partition.log.borrow();
            assert!(log.is_settled());
            let shutdown = log.shutdown_files();
            assert!(
                shutdown.trim.is_some(),
                "preallocated or padded: cut at shutdown"
            );
            write_files_then_syncfs(
                &shutdown.files,
                &shutdown.trim.into_iter().collect::<Vec<_>>(),
                log.dir(),
            )
            .expect("shutdown files");
            let active = log.segments.back().expect("active");
            assert_eq!(
                active.read_file.metadata().expect("meta").len(),
                active.size
            );
        });
        on_executor(move || async move {
            let log = PartitionLog::open(&reopen_path, reopen_config, 0).expect("reopen");
            assert_eq!((log.log_start_offset(), log.next_offset()), (0, 20));
            let slice = log.read(19, 10).expect("read").expect("data");
            assert!(slice.len > 0);
            assert_eq!(
                log.offset_for_timestamp(1041).expect("lookup"),
                Some((9, 1041))
            );
        });
    }

    #[test]
    fn idle_write_handles_close_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        on_executor(move || async move {
            let log = PartitionLog::open(&path, LogConfig::default(), 0).expect("open");
            let partition = Rc::new(Partition::new("t".into(), 0, log));
            let flusher = Rc::new(Flusher::new());
            partition
                .log
                .borrow_mut()
                .append(&batch(&[b"one"], 1), 100, 0)
                .expect("append");
            // Not durable yet: the handle stays.
            assert!(!partition
                .log
                .borrow_mut()
                .close_idle_writer(1_000_000, 1000));
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            assert!(
                !partition.log.borrow_mut().close_idle_writer(200, 1000),
                "not idle long enough"
            );
            {
                use std::os::unix::fs::MetadataExt;
                let log = partition.log.borrow();
                let active = log.segments.back().expect("active");
                let meta = active.read_file.metadata().expect("meta");
                assert!(
                    meta.blocks() * 512 >= 1 << 20,
                    "space reserved ahead of the data"
                );
            }
            assert!(partition
                .log
                .borrow_mut()
                .close_idle_writer(1_000_000, 1000));
            {
                use std::os::unix::fs::MetadataExt;
                let log = partition.log.borrow();
                let active = log.segments.back().expect("active");
                assert!(active.write_file.is_none());
                let meta = active.read_file.metadata().expect("meta");
                assert_eq!(meta.len(), active.size);
                assert!(
                    meta.blocks() * 512 < 1 << 20,
                    "reserved space released when the handle closed"
                );
            }
            partition
                .log
                .borrow_mut()
                .append(&batch(&[b"two"], 2), 1_000_001, 0)
                .expect("append reopens");
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            let log = partition.log.borrow();
            assert_eq!((log.log_end_offset(), log.durable_offset()), (2, 2));
            let bytes = log
                .read(0, 1 << 20)
                .expect("read")
                .expect("data")
                .read_to_vec()
                .expect("file");
            assert_eq!(ringbroker_protocol::batch::batches(&bytes).count(), 2);
        });
    }

    #[test]
    fn validation_size_limit_and_idempotence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t-0");
        on_executor(move || async move {
            let config = LogConfig {
                max_message_bytes: 200,
                ..LogConfig::default()
            };
            let mut log = PartitionLog::open(&path, config, 0).expect("open");
            let mut corrupt = batch(&[b"x"], 1).to_vec();
            let last = corrupt.len() - 1;
            corrupt[last] ^= 1;
            assert!(matches!(
                log.append(&Bytes::from(corrupt), 0, 0),
                Err(AppendError::Corrupt(_))
            ));
            assert!(matches!(
                log.append(&batch(&[&[7u8; 300]], 1), 0, 0),
                Err(AppendError::TooLarge { .. })
            ));
            assert!(matches!(
                log.append(&Bytes::new(), 0, 0),
                Err(AppendError::Empty)
            ));
            // A good batch followed by garbage: nothing is appended.
            let mut mixed = batch(&[b"ok"], 1).to_vec();
            mixed.extend_from_slice(b"trailing");
            assert!(log.append(&Bytes::from(mixed), 0, 0).is_err());
            assert_eq!(log.next_offset(), 0);

            let producer = |seq| ProducerFields {
                producer_id: 9,
                producer_epoch: 0,
                base_sequence: seq,
            };
            let b0 = Bytes::from(build_batch(
                1,
                Some(producer(0)),
                &[(None, b"a"), (None, b"b")],
            ));
            let b2 = Bytes::from(build_batch(1, Some(producer(2)), &[(None, b"c")]));
            assert_eq!(log.append(&b0, 0, 0).expect("first").base_offset, 0);
            let retry = log.append(&b0, 0, 0).expect("retry");
            assert!(retry.duplicate && retry.base_offset == 0 && retry.last_offset == 1);
            assert_eq!(log.append(&b2, 0, 0).expect("next").base_offset, 2);
            let gap = Bytes::from(build_batch(1, Some(producer(9)), &[(None, b"d")]));
            assert!(matches!(
                log.append(&gap, 0, 0),
                Err(AppendError::OutOfOrderSequence { .. })
            ));
            let stale = Bytes::from(build_batch(
                1,
                Some(ProducerFields {
                    producer_id: 9,
                    producer_epoch: -1,
                    base_sequence: 3,
                }),
                &[(None, b"e")],
            ));
            assert!(log.append(&stale, 0, 0).is_err());
            assert_eq!(log.next_offset(), 3);
        });
    }
}
