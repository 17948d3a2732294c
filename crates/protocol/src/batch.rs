//! Kafka v2 record batches: header parsing, full validation (CRC32C and,
//! for uncompressed batches, the framing of every record), iteration over
//! the batches of a produce payload, the two in-place edits the broker
//! makes (base offset, LogAppendTime), and the record walk that finds
//! records without a key (compacted topics only; compressed batches are
//! decompressed for that check and the copy dropped). Records are never
//! re-encoded.
//!
//! Layout (big endian): baseOffset i64 @0, batchLength i32 @8,
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC32C of
//! bytes 21..end), attributes i16 @21, lastOffsetDelta i32 @23,
//! baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43,
//! producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57,
//! records @61.

use std::ops::Range;

/// Size of the v2 batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes counted by batchLength that belong to the header.
const LENGTH_COVERED_HEADER: i32 = (BATCH_HEADER_LEN - 12) as i32;
/// First byte covered by the CRC.
const CRC_START: usize = 21;
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// The fixed header of a v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (stamped by the broker).
    pub base_offset: i64,
    /// Bytes after the batchLength field.
    pub batch_length: i32,
    /// Leader epoch when appended.
    pub partition_leader_epoch: i32,
    /// Format version (2).
    pub magic: i8,
    /// CRC32C of the attributes..end range.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Length of the whole batch in bytes.
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length).unwrap_or(0) + 12
    }
    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
    /// True when an idempotent producer wrote the batch.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// Sequence of the last record (wrapping past i32::MAX to 0 as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression_code(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }
    /// True when timestamps are the broker's append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }
    /// True for a transactional batch.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    /// True for a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Why a batch is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the batch length needs.
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// A batch length smaller than a header.
    #[error("invalid batch length {0}")]
    BadLength(i32),
    /// Not a v2 batch.
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    BadMagic(i8),
    /// The CRC32C does not match.
    #[error("CRC mismatch: header says {expected:#010x}, data gives {actual:#010x}")]
    BadCrc {
        /// CRC in the header.
        expected: u32,
        /// CRC computed.
        actual: u32,
    },
    /// A record count that does not match the records.
    #[error("invalid record count {0}")]
    BadRecordCount(i32),
    /// lastOffsetDelta disagrees with recordCount.
    #[error("last offset delta {delta} does not match record count {count}")]
    BadOffsetDelta {
        /// lastOffsetDelta.
        delta: i32,
        /// recordCount.
        count: i32,
    },
    /// An unknown compression codec.
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    /// A record inside an uncompressed batch is malformed.
    #[error("malformed record {index}: {reason}")]
    BadRecord {
        /// Index of the record in the batch.
        index: i32,
        /// What is wrong.
        reason: &'static str,
    },
    /// The records of a compressed batch do not decompress.
    #[error("records do not decompress: {0}")]
    Decompression(String),
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Parses the header fields. Checks magic and batch length, not the CRC,
/// and not that the whole batch is present.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: BATCH_HEADER_LEN,
            available: buf.len(),
        });
    }
    let batch_length = be_i32(buf, 8);
    let magic = buf[16] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic(magic));
    }
    if batch_length < LENGTH_COVERED_HEADER {
        return Err(BatchError::BadLength(batch_length));
    }
    Ok(BatchHeader {
        base_offset: be_i64(buf, 0),
        batch_length,
        partition_leader_epoch: be_i32(buf, 12),
        magic,
        crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
        attributes: be_i16(buf, 21),
        last_offset_delta: be_i32(buf, 23),
        base_timestamp: be_i64(buf, 27),
        max_timestamp: be_i64(buf, 35),
        producer_id: be_i64(buf, 43),
        producer_epoch: be_i16(buf, 51),
        base_sequence: be_i32(buf, 53),
        record_count: be_i32(buf, 57),
    })
}

/// Fully validates one batch; `buf` must be exactly the batch.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(buf)?;
    let total = header.total_len();
    if buf.len() < total {
        return Err(BatchError::Truncated {
            needed: total,
            available: buf.len(),
        });
    }
    if buf.len() > total {
        return Err(BatchError::BadLength(header.batch_length));
    }
    let actual = crc32c::crc32c(&buf[CRC_START..]);
    if actual != header.crc {
        return Err(BatchError::BadCrc {
            expected: header.crc,
            actual,
        });
    }
    if header.record_count < 1 {
        return Err(BatchError::BadRecordCount(header.record_count));
    }
    if header.last_offset_delta < 0
        || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::BadOffsetDelta {
            delta: header.last_offset_delta,
            count: header.record_count,
        });
    }
    match header.compression_code() {
        0 => check_records(&buf[BATCH_HEADER_LEN..], &header)?,
        1..=4 => {}
        other => return Err(BatchError::UnknownCompression(other)),
    }
    Ok(header)
}

/// Reads zigzag varints without allocating.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn varint(&mut self) -> Option<i64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        None
    }
    fn varint32(&mut self) -> Option<i32> {
        self.varint().and_then(|v| i32::try_from(v).ok())
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.buf.len() {
            return None;
        }
        self.pos = end;
        Some(())
    }
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
}

/// Checks the framing of the uncompressed `records` of the batch with
/// `header`: every record's length, fields and headers fit, offset deltas
/// run 0, 1, ..., timestamps (base plus delta) fit an i64, and there are
/// exactly `record_count` records.
pub(crate) fn check_records(records: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    walk_records(records, header, |_, _| {})
}

/// Walks the records of the batch with `header` in `records` (uncompressed
/// record bytes), checking the framing of each as [`check_records`] does,
/// and calls `visit(index, key_length)` for each (key length -1 for a null
/// key). Allocates nothing.
fn walk_records(
    records: &[u8],
    header: &BatchHeader,
    mut visit: impl FnMut(i32, i32),
) -> Result<(), BatchError> {
    let count = header.record_count;
    let mut cursor = Cursor {
        buf: records,
        pos: 0,
    };
    let mut index = 0i32;
    let bad = |index: i32, reason: &'static str| BatchError::BadRecord { index, reason };
    while cursor.pos < records.len() {
        if index >= count {
            return Err(BatchError::BadRecordCount(count));
        }
        let len = cursor.varint32().ok_or(bad(index, "bad length varint"))?;
        let len = usize::try_from(len).map_err(|_| bad(index, "negative length"))?;
        let start = cursor.pos;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= records.len())
            .ok_or(bad(index, "length past the batch end"))?;
        let mut r = Cursor {
            buf: &records[..end],
            pos: start,
        };
        r.byte().ok_or(bad(index, "missing attributes"))?;
        let timestamp_delta = r.varint().ok_or(bad(index, "bad timestamp delta"))?;
        header
            .base_timestamp
            .checked_add(timestamp_delta)
            .ok_or(bad(index, "timestamp out of range"))?;
        let offset_delta = r.varint32().ok_or(bad(index, "bad offset delta"))?;
        if offset_delta != index {
            return Err(bad(index, "offset delta out of sequence"));
        }
        let key_len = r.varint32().ok_or(bad(index, "bad key length"))?;
        visit(index, key_len);
        if key_len >= 0 {
            r.skip(key_len as usize)
                .ok_or(bad(index, "key past the record end"))?;
        } else if key_len != -1 {
            return Err(bad(index, "bad key length"));
        }
        let value_len = r.varint32().ok_or(bad(index, "bad value length"))?;
        if value_len >= 0 {
            r.skip(value_len as usize)
                .ok_or(bad(index, "value past the record end"))?;
        } else if value_len != -1 {
            return Err(bad(index, "bad value length"));
        }
        let headers = r.varint32().ok_or(bad(index, "bad header count"))?;
        if headers < 0 {
            return Err(bad(index, "negative header count"));
        }
        for _ in 0..headers {
            let key_len = r.varint32().ok_or(bad(index, "bad header key length"))?;
            let key_len = usize::try_from(key_len).map_err(|_| bad(index, "null header key"))?;
            r.skip(key_len)
                .ok_or(bad(index, "header key past the record end"))?;
            let value_len = r.varint32().ok_or(bad(index, "bad header value length"))?;
            if value_len >= 0 {
                r.skip(value_len as usize)
                    .ok_or(bad(index, "header value past the record end"))?;
            } else if value_len != -1 {
                return Err(bad(index, "bad header value length"));
            }
        }
        if r.pos != end {
            return Err(bad(index, "record length does not match its fields"));
        }
        cursor.pos = end;
        index += 1;
    }
    if index != count {
        return Err(BatchError::BadRecordCount(count));
    }
    Ok(())
}

/// The indexes (in the batch) of the records without a key, which a
/// compacted topic refuses (Kafka's INVALID_RECORD with one record error
/// each). `batch` must be one whole batch that [`validate_batch`] accepts.
///
/// Only called for compacted topics: an uncompressed batch is walked in
/// place; a compressed one is decompressed into a temporary buffer for the
/// walk and the buffer dropped, the stored bytes stay as sent. An empty
/// result means every record has a key.
pub fn keyless_records(batch: &[u8]) -> Result<Vec<i32>, BatchError> {
    let header = parse_header(batch)?;
    let mut keyless = Vec::new();
    let mut visit = |index: i32, key_len: i32| {
        if key_len < 0 {
            keyless.push(index);
        }
    };
    let compressed =
        batch
            .get(BATCH_HEADER_LEN..header.total_len())
            .ok_or(BatchError::Truncated {
                needed: header.total_len(),
                available: batch.len(),
            })?;
    let plain = match header.compression_code() {
        0 => return walk_records(compressed, &header, visit).map(|()| keyless),
        code @ 1..=4 => crate::records::decompress_bounded(code, compressed)
            .map_err(|e| BatchError::Decompression(e.to_string()))?,
        other => return Err(BatchError::UnknownCompression(other)),
    };
    walk_records(&plain, &header, &mut visit)?;
    Ok(keyless)
}

/// Iterator over the batches of a produce payload; see [`batches`].
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<(BatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = parse_header(rest).and_then(|h| {
            let total = h.total_len();
            if rest.len() < total {
                return Err(BatchError::Truncated {
                    needed: total,
                    available: rest.len(),
                });
            }
            validate_batch(&rest[..total]).map(|h| (h, self.pos..self.pos + total))
        });
        match &result {
            Ok((_, range)) => self.pos = range.end,
            Err(_) => self.done = true,
        }
        Some(result)
    }
}

/// Iterates the consecutive batches in `buf`, validating each fully. The
/// first error is yielded and ends the iteration; trailing bytes that are
/// not a whole batch are an error.
pub fn batches(buf: &[u8]) -> Batches<'_> {
    Batches {
        buf,
        pos: 0,
        done: false,
    }
}

/// Writes the base offset (outside the CRC range, so the CRC stays valid).
pub fn stamp_base_offset(batch: &mut [u8], base_offset: i64) {
    if let Some(field) = batch.get_mut(0..8) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// The length of the whole batches at the start of `buf` (a fetch may end
/// in part of a batch): each batch is 12 bytes of offset and length plus
/// its length.
pub fn whole_batches_len(buf: &[u8]) -> usize {
    let mut pos = 0usize;
    while let Some(header) = buf.get(pos..pos + 12) {
        let len = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| pos.checked_add(12)?.checked_add(len))
        else {
            break;
        };
        if len <= 0 || end > buf.len() {
            break;
        }
        pos = end;
    }
    pos
}

/// Writes the partition leader epoch (outside the CRC range, so the CRC
/// stays valid): the epoch of the leader that appended the batch.
pub fn stamp_leader_epoch(batch: &mut [u8], leader_epoch: i32) {
    if let Some(field) = batch.get_mut(12..16) {
        field.copy_from_slice(&leader_epoch.to_be_bytes());
    }
}

/// Marks the batch as LogAppendTime with `timestamp_ms` as its max
/// timestamp and recomputes the CRC. No-op on a buffer shorter than a header.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    if batch.len() < BATCH_HEADER_LEN {
        return;
    }
    let attributes = be_i16(batch, 21) | ATTR_LOG_APPEND_TIME;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Attribute bit 4 of a v2 batch: written inside a transaction.
pub const ATTRIBUTE_TRANSACTIONAL: i16 = ATTR_TRANSACTIONAL;
/// Attribute bit 5 of a v2 batch: a control batch (transaction markers).
pub const ATTRIBUTE_CONTROL: i16 = ATTR_CONTROL;

/// Computes the CRC32C of a whole batch built outside this module (over
/// the attributes..end range) and writes it into the header. No-op on a
/// buffer shorter than a header.
pub fn write_crc(batch: &mut [u8]) {
    if batch.len() < BATCH_HEADER_LEN {
        return;
    }
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Idempotent-producer fields of a batch built by [`build_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerFields {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record.
    pub base_sequence: i32,
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encodes an uncompressed v2 batch (base offset 0, record i has timestamp
/// `base_timestamp + i` and offset delta i, no headers) with a valid CRC.
/// Used by tests, benchmarks and tools. With no records the batch has a
/// record count of 0, which [`validate_batch`] rejects.
pub fn build_batch(
    base_timestamp: i64,
    producer: Option<ProducerFields>,
    records: &[(Option<&[u8]>, &[u8])],
) -> Vec<u8> {
    let mut body = Vec::new();
    let mut record = Vec::new();
    for (i, (key, value)) in records.iter().enumerate() {
        record.clear();
        record.push(0);
        put_varint(&mut record, i as i64);
        put_varint(&mut record, i as i64);
        match key {
            Some(k) => {
                put_varint(&mut record, k.len() as i64);
                record.extend_from_slice(k);
            }
            None => put_varint(&mut record, -1),
        }
        put_varint(&mut record, value.len() as i64);
        record.extend_from_slice(value);
        put_varint(&mut record, 0);
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let count = records.len() as i32;
    let p = producer.unwrap_or(ProducerFields {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    });
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((LENGTH_COVERED_HEADER as usize + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(count - 1).max(0).to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&(base_timestamp + i64::from(count - 1).max(0)).to_be_bytes());
    out.extend_from_slice(&p.producer_id.to_be_bytes());
    out.extend_from_slice(&p.producer_epoch.to_be_bytes());
    out.extend_from_slice(&p.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn stamps_leave_the_crc_valid() {
        let mut bytes = build_batch(5, None, &[(None, b"a"), (None, b"b")]);
        stamp_base_offset(&mut bytes, 40);
        stamp_leader_epoch(&mut bytes, 7);
        let (header, _) = batches(&bytes)
            .next()
            .expect("a batch")
            .expect("valid after stamping");
        assert_eq!((header.base_offset, header.partition_leader_epoch), (40, 7));
        stamp_leader_epoch(&mut bytes[..10], 1); // too short: nothing happens
    }
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        build_batch(
            1_000,
            None,
            &[(Some(b"k1"), b"v1"), (None, b"value-two"), (Some(b""), b"")],
        )
    }

    #[test]
    fn built_batch_validates_and_decodes() {
        let batch = sample();
        let h = validate_batch(&batch).expect("valid");
        assert_eq!(
            (h.record_count, h.last_offset_delta, h.max_timestamp),
            (3, 2, 1_002)
        );
        assert_eq!(h.total_len(), batch.len());
        let mut bytes = bytes::Bytes::from(batch);
        let decoded =
            kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decodes");
        assert_eq!(decoded.records.len(), 3);
        assert_eq!(decoded.records[1].value.as_deref(), Some(&b"value-two"[..]));
        assert!(decoded.records[1].key.is_none());
    }

    #[test]
    fn batches_from_the_reference_encoder_validate() {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            let records: Vec<Record> = (0..5)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: 7,
                    producer_epoch: 1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: i as i32,
                    timestamp: 50 + i,
                    key: (i % 2 == 0).then(|| bytes::Bytes::from(format!("key{i}"))),
                    value: Some(bytes::Bytes::from(vec![b'x'; 100 * i as usize])),
                    headers: [(
                        kafka_protocol::protocol::StrBytes::from_static_str("h"),
                        Some(bytes::Bytes::from_static(b"hv")),
                    )]
                    .into_iter()
                    .collect(),
                })
                .collect();
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .expect("encode");
            let items: Vec<_> = batches(&buf).collect();
            assert_eq!(items.len(), 1, "{compression:?}");
            let (h, range) = items[0].clone().expect("valid");
            assert_eq!(range, 0..buf.len());
            assert_eq!(
                (h.producer_id, h.base_sequence, h.last_sequence()),
                (7, 0, 4)
            );
        }
    }

    #[test]
    fn every_bit_flip_in_the_crc_range_is_rejected() {
        let batch = sample();
        for i in CRC_START..batch.len() {
            for bit in 0..8 {
                let mut bad = batch.clone();
                bad[i] ^= 1 << bit;
                assert!(validate_batch(&bad).is_err(), "flip at byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let batch = sample();
        for len in 0..batch.len() {
            assert!(validate_batch(&batch[..len]).is_err());
            let all: Vec<_> = batches(&batch[..len]).collect();
            assert!(
                len == 0 || all.last().is_some_and(|r| r.is_err()),
                "len {len}"
            );
        }
    }

    #[test]
    fn keyless_records_in_plain_and_compressed_batches() {
        assert_eq!(keyless_records(&sample()).expect("walks"), vec![1]);
        let keyed = build_batch(0, None, &[(Some(b"k"), b"v"), (Some(b""), b"")]);
        assert!(keyless_records(&keyed).expect("walks").is_empty());
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records: Vec<Record> = (0..4)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: i as i32,
                    timestamp: 10 + i,
                    key: (i != 1 && i != 3).then(|| bytes::Bytes::from(format!("k{i}"))),
                    value: Some(bytes::Bytes::from(vec![b'v'; 50])),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .expect("encode");
            validate_batch(&buf).expect("valid");
            assert_eq!(
                keyless_records(&buf).expect("walks"),
                vec![1, 3],
                "{compression:?}"
            );
            // Garbage in place of the compressed records is an error, not a panic.
            let mut broken = buf.to_vec();
            for b in &mut broken[BATCH_HEADER_LEN..] {
                *b ^= 0x5a;
            }
            assert!(keyless_records(&broken).is_err(), "{compression:?}");
        }
    }

    #[test]
    fn edits_keep_the_crc_valid() {
        let mut batch = sample();
        stamp_base_offset(&mut batch, 12_345);
        let h = validate_batch(&batch).expect("valid after stamping");
        assert_eq!((h.base_offset, h.last_offset()), (12_345, 12_347));
        set_log_append_time(&mut batch, 99_999);
        let h = validate_batch(&batch).expect("valid after LogAppendTime");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
    }

    #[test]
    fn iteration_over_several_batches_and_garbage() {
        let mut two = sample();
        two.extend_from_slice(&sample());
        let items: Vec<_> = batches(&two).collect();
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(|r| r.is_ok()));
        two.extend_from_slice(b"garbage");
        let items: Vec<_> = batches(&two).collect();
        assert_eq!(items.len(), 3);
        assert!(items[2].is_err());
        assert!(batches(&[]).next().is_none());
    }

    #[test]
    fn header_rules() {
        let mut batch = sample();
        batch[16] = 1;
        assert_eq!(parse_header(&batch), Err(BatchError::BadMagic(1)));
        let mut batch = sample();
        batch[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(parse_header(&batch), Err(BatchError::BadLength(10)));
        assert!(validate_batch(&build_batch(0, None, &[])).is_err());
        let p = ProducerFields {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX,
        };
        let h =
            validate_batch(&build_batch(0, Some(p), &[(None, b"a"), (None, b"b")])).expect("valid");
        assert_eq!(h.last_sequence(), 0);
    }

    /// Regression (found by fuzz target consumer_offsets): a timestamp
    /// delta that overflows the base timestamp made the reference record
    /// decoder overflow; such a record is malformed.
    #[test]
    fn timestamps_past_i64_are_refused() {
        let mut batch = build_batch(0, None, &[(None, b"a"), (None, b"b")]);
        batch[27..35].copy_from_slice(&i64::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_batch(&batch),
            Err(BatchError::BadRecord {
                index: 1,
                reason: "timestamp out of range"
            })
        );
        assert!(validate_batch(&build_batch(i64::MAX, None, &[(None, b"a")])).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_header(&bytes);
            let _ = validate_batch(&bytes);
            let _ = keyless_records(&bytes);
            for item in batches(&bytes) { let _ = item; }
        }

        #[test]
        fn mutated_batches_never_panic_and_crc_catches_body_changes(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)
        ) {
            let original = sample();
            let mut batch = original.clone();
            for (at, value) in edits {
                let i = at % batch.len();
                batch[i] = value;
            }
            let result = validate_batch(&batch);
            if batch[CRC_START..] != original[CRC_START..] && batch[17..21] == original[17..21] {
                prop_assert!(result.is_err());
            }
            for item in batches(&batch) { let _ = item; }
        }
    }
}
