//! The log of one partition: segments, offsets, appends, reads, recovery
//! and retention.
//!
//! All state changes are synchronous and happen on the owner shard; file I/O
//! is queued as [`PendingOp`]s that the shard's flusher performs in order.
//! Offsets: `log_start_offset <= durable_offset <= high_watermark <=
//! next_offset` where `next_offset` counts batches assigned in memory,
//! `high_watermark` those written to the file (readable), and
//! `durable_offset` those covered by an fdatasync.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::index::{OffsetIndex, TimeIndex};
use crate::producer::{ProducerBatch, ProducerStates, SequenceCheck};
use crate::recovery::{recover_segment, should_index};
use crate::segment::{file_name, Segment};
use crate::writer::{SegmentWriter, WriteMode};
use ringbroker_protocol::batch::{self, BatchError};
use ringbroker_protocol::frame::FileSlice;
use ringbroker_protocol::records::RecordsError;

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
    /// The partition's storage failed earlier (KAFKA_STORAGE_ERROR).
    #[error("storage failed: {0}")]
    StorageFailed(String),
    /// The log is closed for a shutdown; the producer retries elsewhere or
    /// after the restart (NOT_LEADER_OR_FOLLOWER).
    #[error("the partition is closing for a shutdown")]
    Closed,
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

/// Outcome of a read.
#[derive(Clone, Debug)]
pub enum ReadError {
    /// The offset is outside `[log_start_offset, high_watermark]`.
    OutOfRange,
    /// An I/O error reading batch headers.
    Io(String),
}

/// A queued file operation, performed by the flusher in order.
pub enum PendingOp {
    /// Write `data` at `position` of the segment at `segment_base`.
    Write {
        /// Base offset of the segment written.
        segment_base: i64,
        /// The segment's write handle.
        file: Rc<SegmentWriter>,
        /// Position in the file.
        position: u64,
        /// Bytes to write (many batches coalesced).
        data: Vec<u8>,
        /// Offset after the last batch in `data`.
        end_offset: i64,
    },
    /// A rolled segment: fsync it and persist its indexes and a producer
    /// snapshot.
    Seal {
        /// The sealed segment's write handle.
        file: Rc<SegmentWriter>,
        /// Bytes of data in the sealed segment (the file is cut there).
        size: u64,
        /// (path, bytes) of files to write and fsync.
        files: Vec<(PathBuf, Vec<u8>)>,
        /// The partition directory, fsynced so the new segment's entry is durable.
        dir: PathBuf,
    },
}

/// One partition's log.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: VecDeque<Segment>,
    log_start_offset: i64,
    next_offset: i64,
    high_watermark: i64,
    durable_offset: i64,
    sync_wanted: i64,
    pending: Vec<PendingOp>,
    pending_bytes: usize,
    producers: ProducerStates,
    failed: Option<String>,
    last_append_ms: i64,
    appended_since_open: bool,
    unsynced_bytes: u64,
    closed: bool,
}

/// What a clean shutdown writes for one partition, taken once the log is
/// closed and everything appended is written and durable.
#[derive(Default)]
pub struct ShutdownFiles {
    /// (path, bytes) of the active segment's indexes and the producer
    /// snapshot, describing exactly the data in the files.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// The active segment's file and data size when the file may extend past
    /// its data (direct-mode padding, preallocated space): cut there.
    pub trim: Option<(std::sync::Arc<File>, u64)>,
}

/// What the flusher must do for a partition in one round.
pub struct FlushWork {
    /// Operations to perform in order.
    pub ops: Vec<PendingOp>,
    /// fdatasync the active file after the writes when set.
    pub sync: Option<Rc<SegmentWriter>>,
    /// The offset the sync covers (high watermark after the writes).
    pub sync_offset: i64,
}

impl PartitionLog {
    /// Opens (recovering) or creates the log in `dir`. Synchronous: run at
    /// startup or partition creation, before the partition serves traffic.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> io::Result<PartitionLog> {
        fs::create_dir_all(dir)?;
        let mut bases = list_segment_bases(dir)?;
        bases.sort_unstable();
        let mut segments = VecDeque::with_capacity(bases.len().max(1));
        let mut producers = ProducerStates::default();
        let last_index = bases.len().saturating_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            let path = dir.join(file_name(base, "log"));
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let segment = if i == last_index {
                recover_active(path, file, base, &config, now_ms, &mut producers, dir)?
            } else {
                let next_base = bases[i + 1];
                open_sealed(path, file, base, next_base, &config, now_ms)?
            };
            segments.push_back(segment);
        }
        if segments.is_empty() {
            segments.push_back(Segment::create(dir, 0, now_ms)?);
            sync_dir(dir)?;
        }
        let log_start_offset = segments.front().map_or(0, |s| s.base_offset);
        let next_offset = segments.back().map_or(0, |s| s.next_offset);
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            next_offset,
            high_watermark: next_offset,
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
    /// Offset up to which records are written and readable.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }
    /// Offset up to which records are on stable storage.
    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }
    /// The error that failed this partition's storage, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
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
    /// offsets. The bytes are queued for the flusher; nothing is readable
    /// until written.
    pub fn append(&mut self, records: &Bytes, now_ms: i64) -> Result<Appended, AppendError> {
        if let Some(failure) = &self.failed {
            return Err(AppendError::StorageFailed(failure.clone()));
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
            headers.push((header, range));
        }
        if headers.is_empty() {
            return Err(AppendError::Empty);
        }
        if let Some(duplicate) = self.check_sequences(&headers)? {
            return Ok(duplicate);
        }
        if let Some(active) = self.segments.back_mut() {
            if let Err(e) = active.writer(self.config.write_mode, self.config.preallocate_step()) {
                return Err(AppendError::StorageFailed(format!(
                    "cannot open the active segment for writing: {e}"
                )));
            }
        }
        self.last_append_ms = now_ms;
        self.appended_since_open = true;
        let log_append_time_ms = if self.config.log_append_time {
            now_ms
        } else {
            -1
        };
        let base_offset = self.next_offset;
        for (header, range) in headers {
            if let Err(reason) =
                self.append_batch(&header, &records[range], now_ms, log_append_time_ms)
            {
                // A broken invariant, not bad input: stop the partition
                // rather than acknowledge part of a request.
                self.fail(reason.clone());
                return Err(AppendError::StorageFailed(reason));
            }
        }
        Ok(Appended {
            base_offset,
            last_offset: self.next_offset - 1,
            log_append_time_ms,
            duplicate: false,
        })
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

    fn append_batch(
        &mut self,
        header: &batch::BatchHeader,
        bytes: &[u8],
        now_ms: i64,
        log_append_time_ms: i64,
    ) -> Result<(), String> {
        if header.last_offset_delta < 0 {
            // Validation refuses such batches; never let one move offsets back.
            return Err(format!(
                "batch with last offset delta {}",
                header.last_offset_delta
            ));
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
            return Err("the log has no active segment".into());
        };
        let position = segment.size;
        let Some(file) = segment.write_file.clone() else {
            return Err("the active segment has no write handle".into());
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
        Ok(())
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
        match Segment::create(&self.dir, base, now_ms)
            .and_then(|mut s| s.writer(mode, step).map(|_| s))
        {
            Ok(new_segment) => {
                let Some(old) = self.segments.back_mut() else {
                    self.segments.push_back(new_segment);
                    return;
                };
                let (index_path, time_path) = old.index_paths();
                let mut files = vec![
                    (index_path, old.index.encode()),
                    (time_path, old.time_index.encode()),
                ];
                files.push((
                    self.dir.join(PRODUCER_SNAPSHOT_FILE),
                    self.producers.to_snapshot(base),
                ));
                if let Some(file) = old.write_file.take() {
                    self.pending.push(PendingOp::Seal {
                        file,
                        size: old.size,
                        files,
                        dir: self.dir.clone(),
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
            // operation; the data before `size` is durable already).
            if let Err(e) = segment.read_file.set_len(segment.size) {
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
    pub fn take_flush_work(&mut self) -> FlushWork {
        let ops = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
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
        self.high_watermark = self.high_watermark.max(end_offset);
    }

    /// Records that an fdatasync covered everything up to `offset`.
    pub fn mark_durable(&mut self, offset: i64) {
        assert!(
            offset <= self.high_watermark,
            "durable past the high watermark"
        );
        self.durable_offset = self.durable_offset.max(offset);
    }

    /// Fails the partition: every later append and waiting produce gets a
    /// storage error. Data already acknowledged stays readable.
    pub fn fail(&mut self, reason: String) {
        log::error!("partition {} failed: {reason}", self.dir.display());
        self.failed.get_or_insert(reason);
    }

    /// Locates up to `max_bytes` of batches starting with the one holding
    /// `offset`. At least one whole batch is returned even when larger than
    /// `max_bytes` (KIP-74). `Ok(None)` at the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<FileSlice>, ReadError> {
        if offset < self.log_start_offset || offset > self.high_watermark {
            return Err(ReadError::OutOfRange);
        }
        if offset == self.high_watermark {
            return Ok(None);
        }
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for segment in self.segments.iter().skip(first) {
            let found = segment
                .find_position(offset)
                .map_err(|e| ReadError::Io(e.to_string()))?;
            if let Some((position, header)) = found {
                let available = (segment.written - position) as usize;
                let len = available.min(max_bytes.max(header.total_len()));
                return Ok(Some(FileSlice {
                    file: segment.read_file.clone(),
                    position,
                    len,
                }));
            }
        }
        Ok(None)
    }

    /// The first offset whose record timestamp is `>= timestamp_ms`, with
    /// that record's timestamp (ListOffsets by time). `None` when every
    /// record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> io::Result<Option<(i64, i64)>> {
        for segment in &self.segments {
            if segment.max_timestamp < timestamp_ms {
                continue;
            }
            let start = segment
                .time_index
                .lookup(timestamp_ms)
                .unwrap_or(segment.base_offset);
            let Some((mut position, _)) = segment.find_position(start)? else {
                continue;
            };
            while let Some(header) = segment.header_at(position)? {
                if header.max_timestamp >= timestamp_ms {
                    return self.exact_record_for_timestamp(
                        segment,
                        position,
                        &header,
                        timestamp_ms,
                    );
                }
                position += header.total_len() as u64;
            }
        }
        Ok(None)
    }

    fn exact_record_for_timestamp(
        &self,
        segment: &Segment,
        position: u64,
        header: &batch::BatchHeader,
        timestamp_ms: i64,
    ) -> io::Result<Option<(i64, i64)>> {
        if header.is_log_append_time() {
            return Ok(Some((header.base_offset, header.max_timestamp)));
        }
        let mut buf = vec![0u8; header.total_len()];
        segment.read_file.read_exact_at(&mut buf, position)?;
        let records = match ringbroker_protocol::records::decode_records(&buf) {
            Ok(records) => records,
            // Too large to decompress here: the batch's first offset, which
            // a consumer seeking by time reads from (a few older records).
            Err(RecordsError::TooLarge { .. }) => {
                return Ok(Some((header.base_offset, header.max_timestamp)))
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        let found = records
            .iter()
            .find(|r| r.timestamp >= timestamp_ms)
            .map(|r| (r.offset, r.timestamp));
        Ok(found.or(Some((header.base_offset, header.max_timestamp))))
    }

    /// The offset and timestamp of the newest-timestamped batch (ListOffsets -3).
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        self.segments
            .iter()
            .filter_map(|s| s.time_index.max_timestamp())
            .max_by_key(|(ts, _)| *ts)
    }

    /// Removes segments past retention (never the active one) and returns
    /// them for deletion; advances the log start offset.
    pub fn take_expired_segments(&mut self, now_ms: i64) -> Vec<Segment> {
        let mut removed = Vec::new();
        let mut total = self.size_bytes() as i64;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let next_base = self.segments[1].base_offset;
            if next_base > self.high_watermark {
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
            self.log_start_offset = next_base;
        }
        removed
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
            && self.high_watermark == self.next_offset
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
        let files = vec![
            (index_path, active.index.encode()),
            (time_path, active.time_index.encode()),
            (
                self.dir.join(PRODUCER_SNAPSHOT_FILE),
                self.producers.to_snapshot(self.next_offset),
            ),
        ];
        let may_extend = self.config.write_mode == WriteMode::Direct || self.config.preallocate;
        let trim = may_extend.then(|| (active.read_file.clone(), active.size));
        ShutdownFiles { files, trim }
    }
}

/// Writes each file atomically-enough (write, fsync) — index files are
/// rebuilt on recovery if torn, so rename is not needed.
pub fn write_files_synced(files: &[(PathBuf, Vec<u8>)]) -> io::Result<()> {
    for (path, bytes) in files {
        let file = File::create(path)?;
        file.write_all_at(bytes, 0)?;
        file.sync_data()?;
    }
    Ok(())
}

/// Writes every file, then makes them all durable with one `syncfs` of the
/// filesystem holding `dir` (shutdown: thousands of partitions' index files
/// without thousands of fsyncs).
pub fn write_files_then_syncfs(
    files: &[(PathBuf, Vec<u8>)],
    trims: &[(std::sync::Arc<File>, u64)],
    dir: &Path,
) -> io::Result<()> {
    for (file, size) in trims {
        // Also when the length is already right: cutting to the same size
        // releases blocks reserved past the end. A failure only leaves
        // space reserved (or padding recovery cuts); the rest goes on.
        if let Err(e) = file.set_len(*size) {
            log::warn!("cannot cut a segment to its data at shutdown: {e}");
        }
    }
    for (path, bytes) in files {
        File::create(path)?.write_all_at(bytes, 0)?;
    }
    let fs = File::open(dir)?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&fs)).map_err(io::Error::from)
}

/// fsyncs a directory so created or removed entries are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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

fn open_sealed(
    path: PathBuf,
    file: File,
    base: i64,
    next_base: i64,
    config: &LogConfig,
    now_ms: i64,
) -> io::Result<Segment> {
    let size = file.metadata()?.len();
    let mut segment = Segment::from_file(path, file, base, size, next_base, now_ms)?;
    let (index_path, time_path) = segment.index_paths();
    let index = fs::read(&index_path)
        .ok()
        .and_then(|b| OffsetIndex::decode(base, &b).ok())
        .filter(|i| {
            i.last_entry()
                .is_none_or(|(_, pos)| u64::from(pos) < size.max(1))
        });
    let time_index = fs::read(&time_path)
        .ok()
        .and_then(|b| TimeIndex::decode(base, &b).ok());
    match (index, time_index) {
        (Some(index), Some(time_index)) if size == 0 || time_index.max_timestamp().is_some() => {
            segment.max_timestamp = time_index.max_timestamp().map_or(-1, |(ts, _)| ts);
            segment.index = index;
            segment.time_index = time_index;
        }
        _ => {
            let recovered = recover_segment(&segment.read_file, base, config.index_interval_bytes)?;
            if recovered.valid_len < size {
                log::warn!(
                    "sealed segment {} is corrupt after byte {}: {}; truncating",
                    segment.path.display(),
                    recovered.valid_len,
                    recovered.stop_reason.as_deref().unwrap_or("unknown")
                );
                segment.read_file.set_len(recovered.valid_len)?;
                segment.read_file.sync_all()?;
            }
            segment.size = recovered.valid_len;
            segment.written = recovered.valid_len;
            segment.max_timestamp = recovered.max_timestamp.map_or(-1, |(ts, _)| ts);
            segment.index = recovered.index;
            segment.time_index = recovered.time_index;
            write_files_synced(&[
                (index_path, segment.index.encode()),
                (time_path, segment.time_index.encode()),
            ])?;
        }
    }
    Ok(segment)
}

fn recover_active(
    path: PathBuf,
    file: File,
    base: i64,
    config: &LogConfig,
    now_ms: i64,
    producers: &mut ProducerStates,
    dir: &Path,
) -> io::Result<Segment> {
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
        file.set_len(recovered.valid_len)?;
        file.sync_all()?;
    }
    let snapshot = fs::read(dir.join(PRODUCER_SNAPSHOT_FILE))
        .ok()
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
    )?;
    segment.max_timestamp = recovered.max_timestamp.map_or(-1, |(ts, _)| ts);
    segment.index = recovered.index;
    segment.time_index = recovered.time_index;
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flusher::Flusher;
    use crate::partition::Partition;
    use ringbroker_protocol::batch::{build_batch, ProducerFields};

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
                    )
                    .expect("append");
                assert_eq!(appended.base_offset, 2 * i);
            }
            // Nothing is readable before the flusher writes it.
            assert_eq!(partition.log.borrow().high_watermark(), 0);
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            let log = partition.log.borrow();
            assert_eq!((log.high_watermark(), log.durable_offset()), (20, 20));
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
            assert_eq!(log.max_timestamp_offset(), Some((1091, 19)));
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
                    .append(&batch(&[b"late"], 2000), 5),
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
                .append(&batch(&[b"one"], 1), 100)
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
                .append(&batch(&[b"two"], 2), 1_000_001)
                .expect("append reopens");
            partition.log.borrow_mut().request_sync();
            flush(&flusher, &partition).await;
            let log = partition.log.borrow();
            assert_eq!((log.high_watermark(), log.durable_offset()), (2, 2));
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
                log.append(&Bytes::from(corrupt), 0),
                Err(AppendError::Corrupt(_))
            ));
            assert!(matches!(
                log.append(&batch(&[&[7u8; 300]], 1), 0),
                Err(AppendError::TooLarge { .. })
            ));
            assert!(matches!(
                log.append(&Bytes::new(), 0),
                Err(AppendError::Empty)
            ));
            // A good batch followed by garbage: nothing is appended.
            let mut mixed = batch(&[b"ok"], 1).to_vec();
            mixed.extend_from_slice(b"trailing");
            assert!(log.append(&Bytes::from(mixed), 0).is_err());
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
            assert_eq!(log.append(&b0, 0).expect("first").base_offset, 0);
            let retry = log.append(&b0, 0).expect("retry");
            assert!(retry.duplicate && retry.base_offset == 0 && retry.last_offset == 1);
            assert_eq!(log.append(&b2, 0).expect("next").base_offset, 2);
            let gap = Bytes::from(build_batch(1, Some(producer(9)), &[(None, b"d")]));
            assert!(matches!(
                log.append(&gap, 0),
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
            assert!(log.append(&stale, 0).is_err());
            assert_eq!(log.next_offset(), 3);
        });
    }
}
