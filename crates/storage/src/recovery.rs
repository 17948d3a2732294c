//! Startup scan of a segment: validate every batch, find where the valid
//! prefix ends (torn write, zeroed preallocation, corruption), and rebuild
//! the indexes and idempotent-producer state with the same rules the
//! append path uses. The file itself is not changed here.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::index::{OffsetIndex, TimeIndex};
use ringbroker_protocol::batch::{parse_header, validate_batch, BATCH_HEADER_LEN};
use ringbroker_protocol::limits::PRODUCER_BATCHES_REMEMBERED;

/// Bytes read at a time while scanning.
const SCAN_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// An idempotent producer's batch found in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatchInfo {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// First sequence.
    pub base_sequence: i32,
    /// Last sequence.
    pub last_sequence: i32,
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// Max timestamp of the batch.
    pub max_timestamp: i64,
}

/// What a scan found.
#[derive(Debug)]
pub struct RecoveredSegment {
    /// Length of the valid prefix.
    pub valid_len: u64,
    /// Offset after the last valid batch (the base offset when none).
    pub next_offset: i64,
    /// Base offset of the first valid batch.
    pub first_offset: Option<i64>,
    /// Valid batches.
    pub batch_count: u64,
    /// (timestamp, offset) of the newest-timestamp batch.
    pub max_timestamp: Option<(i64, i64)>,
    /// Rebuilt offset index.
    pub index: OffsetIndex,
    /// Rebuilt time index.
    pub time_index: TimeIndex,
    /// Bytes after the valid prefix.
    pub truncated_bytes: u64,
    /// Why the scan stopped before the end of the file.
    pub stop_reason: Option<String>,
    /// The last batches of each idempotent producer, by base offset.
    pub producers: Vec<ProducerBatchInfo>,
    /// (leader epoch, first offset) where the batches' leader epoch rises,
    /// in order (epochs below 0, which clients send, are skipped).
    pub epoch_starts: Vec<(i32, i64)>,
}

/// The indexing rule shared by appends and recovery: index a batch once
/// `interval` bytes (counting it) have accumulated since the last entry.
pub fn should_index(bytes_since_index: u64, interval: u32) -> bool {
    bytes_since_index >= u64::from(interval)
}

/// Scans `file` (a segment starting at `base_offset`).
pub fn recover_segment(
    file: &File,
    base_offset: i64,
    index_interval_bytes: u32,
) -> io::Result<RecoveredSegment> {
    scan_segment(file, base_offset, index_interval_bytes, 0)
}

/// Scans `file` from byte `start`, where a batch at `base_offset` or later
/// should begin (checking the tail of a sealed segment after its last index
/// entry). The indexes rebuilt are only meaningful from byte 0.
pub fn scan_segment(
    file: &File,
    base_offset: i64,
    index_interval_bytes: u32,
    start: u64,
) -> io::Result<RecoveredSegment> {
    let file_len = file.metadata()?.len();
    let mut index = OffsetIndex::new(base_offset);
    let mut time_index = TimeIndex::new(base_offset);
    let mut position = start;
    let mut next_offset = base_offset;
    let mut first_offset = None;
    let mut batch_count = 0u64;
    let mut bytes_since_index = 0u64;
    let mut max_ts = i64::MIN;
    let mut max_timestamp = None;
    let mut stop_reason = None;
    let mut producers: HashMap<i64, VecDeque<ProducerBatchInfo>> = HashMap::new();
    let mut epoch_starts: Vec<(i32, i64)> = Vec::new();

    // A window of the file; batches are validated inside it.
    let mut window: Vec<u8> = Vec::new();
    let mut window_start = 0u64;

    while position < file_len {
        let remaining = file_len - position;
        if remaining < BATCH_HEADER_LEN as u64 {
            stop_reason = Some(format!("torn batch header at byte {position}"));
            break;
        }
        // Make sure the header is in the window.
        if !(position >= window_start
            && position + BATCH_HEADER_LEN as u64 <= window_start + window.len() as u64)
        {
            let len = remaining.min(SCAN_CHUNK_BYTES as u64) as usize;
            window.resize(len, 0);
            file.read_exact_at(&mut window, position)?;
            window_start = position;
        }
        let at = (position - window_start) as usize;
        if window[at..at + BATCH_HEADER_LEN].iter().all(|b| *b == 0) {
            stop_reason = Some(format!("zeroed bytes at byte {position}"));
            break;
        }
        let header = match parse_header(&window[at..]) {
            Ok(h) => h,
            Err(e) => {
                stop_reason = Some(format!("invalid batch header at byte {position}: {e}"));
                break;
            }
        };
        let total = header.total_len() as u64;
        if total > remaining {
            stop_reason = Some(format!(
                "torn batch at byte {position}: {total} bytes declared, {remaining} present"
            ));
            break;
        }
        if position + total > window_start + window.len() as u64 {
            let len = remaining.min((SCAN_CHUNK_BYTES as u64).max(total)) as usize;
            window.resize(len, 0);
            file.read_exact_at(&mut window, position)?;
            window_start = position;
        }
        let at = (position - window_start) as usize;
        let header = match validate_batch(&window[at..at + total as usize]) {
            Ok(h) => h,
            Err(e) => {
                stop_reason = Some(format!("corrupt batch at byte {position}: {e}"));
                break;
            }
        };
        if header.base_offset < next_offset {
            stop_reason = Some(format!(
                "batch at byte {position} has base offset {} below the expected {next_offset}",
                header.base_offset
            ));
            break;
        }
        // The base offset lies outside the CRC: a damaged one can claim
        // offsets with no successor.
        let Some(after_last) = header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta))
            .and_then(|last| last.checked_add(1))
        else {
            stop_reason = Some(format!(
                "batch at byte {position} has base offset {} past the largest offset",
                header.base_offset
            ));
            break;
        };
        let last_offset = after_last - 1;
        first_offset.get_or_insert(header.base_offset);
        bytes_since_index += total;
        if should_index(bytes_since_index, index_interval_bytes) && position <= u64::from(u32::MAX)
        {
            index.append(header.base_offset, position as u32);
            bytes_since_index = 0;
        }
        if header.max_timestamp > max_ts {
            max_ts = header.max_timestamp;
            time_index.append(header.max_timestamp, last_offset);
            max_timestamp = Some((header.max_timestamp, last_offset));
        }
        if header.has_producer_id() && header.base_sequence >= 0 {
            let entry = producers.entry(header.producer_id).or_default();
            if entry.len() == PRODUCER_BATCHES_REMEMBERED {
                entry.pop_front();
            }
            entry.push_back(ProducerBatchInfo {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_sequence: header.base_sequence,
                last_sequence: header.last_sequence(),
                base_offset: header.base_offset,
                last_offset,
                max_timestamp: header.max_timestamp,
            });
        }
        let epoch = header.partition_leader_epoch;
        if epoch >= 0 && epoch_starts.last().is_none_or(|(e, _)| epoch > *e) {
            epoch_starts.push((epoch, header.base_offset));
        }
        next_offset = after_last;
        batch_count += 1;
        position += total;
    }
    let mut producers: Vec<ProducerBatchInfo> = producers.into_values().flatten().collect();
    producers.sort_by_key(|p| p.base_offset);
    Ok(RecoveredSegment {
        valid_len: position,
        next_offset,
        first_offset,
        batch_count,
        max_timestamp,
        index,
        time_index,
        truncated_bytes: file_len.saturating_sub(position),
        stop_reason,
        producers,
        epoch_starts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ringbroker_protocol::batch::{build_batch, stamp_base_offset, ProducerFields};
    use std::io::Write;

    /// Builds `n` batches of 2 records starting at offset `base`, as the
    /// append path stores them, with the indexes it would build.
    fn segment(base: i64, n: usize, interval: u32) -> (Vec<u8>, OffsetIndex, TimeIndex, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut index = OffsetIndex::new(base);
        let mut time_index = TimeIndex::new(base);
        let mut since = 0u64;
        let mut max_ts = i64::MIN;
        let mut ends = Vec::new();
        for i in 0..n {
            let producer = ProducerFields {
                producer_id: 42,
                producer_epoch: 0,
                base_sequence: 2 * i as i32,
            };
            let value = vec![b'v'; 50 + i];
            let mut batch = build_batch(
                1_000 + i as i64 * 10,
                Some(producer),
                &[(None, &value), (Some(b"k"), b"w")],
            );
            let offset = base + 2 * i as i64;
            stamp_base_offset(&mut batch, offset);
            let position = bytes.len() as u64;
            since += batch.len() as u64;
            if should_index(since, interval) {
                index.append(offset, position as u32);
                since = 0;
            }
            let ts = 1_000 + i as i64 * 10 + 1;
            if ts > max_ts {
                max_ts = ts;
                time_index.append(ts, offset + 1);
            }
            bytes.extend_from_slice(&batch);
            ends.push(bytes.len() as u64);
        }
        (bytes, index, time_index, ends)
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(bytes).expect("write");
        file
    }

    #[test]
    fn empty_file() {
        let r = recover_segment(&file_with(&[]), 7, 4096).expect("scan");
        assert_eq!((r.valid_len, r.next_offset, r.batch_count), (0, 7, 0));
        assert!(r.stop_reason.is_none());
    }

    #[test]
    fn good_segment_rebuilds_the_append_indexes() {
        let (bytes, index, time_index, _) = segment(100, 40, 300);
        let r = recover_segment(&file_with(&bytes), 100, 300).expect("scan");
        assert_eq!(r.valid_len, bytes.len() as u64);
        assert_eq!(
            (r.next_offset, r.batch_count, r.truncated_bytes),
            (180, 40, 0)
        );
        assert_eq!(r.index, index);
        assert!(r.index.len() > 3);
        assert_eq!(r.time_index, time_index);
        assert_eq!(r.max_timestamp, Some((1_391, 179)));
        assert_eq!(r.producers.len(), PRODUCER_BATCHES_REMEMBERED);
        assert_eq!(
            r.producers.last().map(|p| (p.base_offset, p.last_sequence)),
            Some((178, 79))
        );
    }

    #[test]
    fn torn_tail_at_every_cut_truncates_to_the_previous_batch() {
        let (bytes, _, _, ends) = segment(0, 3, 4096);
        let previous = ends[1];
        for cut in previous + 1..ends[2] {
            let r = recover_segment(&file_with(&bytes[..cut as usize]), 0, 4096).expect("scan");
            assert_eq!(r.valid_len, previous, "cut at {cut}");
            assert_eq!(r.next_offset, 4);
            assert!(r.stop_reason.is_some());
        }
    }

    #[test]
    fn zeroed_tail_stops_cleanly() {
        let (mut bytes, _, _, ends) = segment(0, 3, 4096);
        bytes.extend_from_slice(&[0u8; 4096]);
        let r = recover_segment(&file_with(&bytes), 0, 4096).expect("scan");
        assert_eq!(r.valid_len, ends[2]);
        assert_eq!(r.truncated_bytes, 4096);
        assert!(r
            .stop_reason
            .as_deref()
            .is_some_and(|s| s.contains("zeroed")));
    }

    #[test]
    fn bit_flip_stops_at_the_damaged_batch() {
        let (mut bytes, _, _, ends) = segment(0, 5, 4096);
        let middle = (ends[1] + 30) as usize;
        bytes[middle] ^= 0x10;
        let r = recover_segment(&file_with(&bytes), 0, 4096).expect("scan");
        assert_eq!(r.valid_len, ends[1]);
        assert_eq!(r.next_offset, 4);
        assert!(r
            .stop_reason
            .as_deref()
            .is_some_and(|s| s.contains("corrupt")));
    }

    #[test]
    fn offsets_going_back_stop_the_scan() {
        let (mut bytes, _, _, ends) = segment(0, 2, 4096);
        let copy = bytes[..ends[0] as usize].to_vec();
        bytes.extend_from_slice(&copy);
        let r = recover_segment(&file_with(&bytes), 0, 4096).expect("scan");
        assert_eq!(r.valid_len, ends[1]);
    }

    /// Regression: a batch whose base offset leaves no room for its
    /// records (a damaged base offset; it lies outside the CRC) made the
    /// next offset overflow to i64::MIN.
    #[test]
    fn offsets_past_i64_stop_the_scan() {
        let (mut bytes, _, _, ends) = segment(0, 3, 4096);
        let second = ends[0] as usize;
        stamp_base_offset(&mut bytes[second..], i64::MAX - 1);
        let r = recover_segment(&file_with(&bytes), 0, 4096).expect("scan");
        assert_eq!((r.valid_len, r.next_offset, r.batch_count), (ends[0], 2, 1));
        assert!(r
            .stop_reason
            .as_deref()
            .is_some_and(|s| s.contains("past the largest offset")));
        // A batch ending just below the largest offset is kept.
        let (mut bytes, _, _, ends) = segment(0, 1, 4096);
        stamp_base_offset(&mut bytes, i64::MAX - 2);
        let r = recover_segment(&file_with(&bytes), 0, 4096).expect("scan");
        assert_eq!((r.valid_len, r.next_offset), (ends[0], i64::MAX));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn garbage_after_valid_batches_never_extends_the_valid_prefix(
            garbage in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let (mut bytes, _, _, ends) = segment(0, 3, 4096);
            bytes.extend_from_slice(&garbage);
            let r = recover_segment(&file_with(&bytes), 0, 4096).expect("scan");
            prop_assert_eq!(r.valid_len, ends[2]);
            prop_assert_eq!(r.next_offset, 6);
        }
    }
}
