//! Transaction markers: the control batches that end a transaction in a
//! partition log, built and read byte for byte as Kafka writes them.
//!
//! A marker is a v2 batch with the transactional and control attribute
//! bits set (bits 4 and 5, no compression, create time), the producer's
//! id and epoch, base sequence -1 and exactly one record at offset delta
//! 0 whose
//!
//! - key is the control record type, version-prefixed: `version i16 = 0`,
//!   `type i16` (0 ABORT, 1 COMMIT; Kafka's `ControlRecordType`), and
//! - value is the end-transaction marker: `version i16 = 0`,
//!   `coordinator_epoch i32` (Kafka's `EndTransactionMarker`).
//!
//! The whole batch is 78 bytes: the 61-byte header and a 17-byte record
//! (length varint 16, attributes 0, timestamp delta 0, offset delta 0, key
//! length 4, key, value length 6, value, header count 0). The base offset
//! and the partition leader epoch are left to the log, which stamps both
//! outside the CRC range as it does for every batch.

use ringbroker_protocol::batch::{
    self, BatchError, BatchHeader, ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL, BATCH_HEADER_LEN,
};
use serde::{Deserialize, Serialize};

/// Version of the control record key Kafka writes (and the newest it reads).
pub const CONTROL_KEY_VERSION: i16 = 0;
/// Version of the end-transaction marker value Kafka writes.
pub const END_TXN_MARKER_VERSION: i16 = 0;
/// Size of a marker batch as Kafka writes it.
pub const MARKER_BATCH_LEN: usize = BATCH_HEADER_LEN + 1 + MARKER_RECORD_LEN;
/// Bytes of the marker record after its length varint.
const MARKER_RECORD_LEN: usize = 16;
/// Size of the control record key (version, type).
const CONTROL_KEY_LEN: usize = 4;
/// Size of the end-transaction marker value (version, coordinator epoch).
const END_TXN_VALUE_LEN: usize = 6;
/// Kafka's NO_PARTITION_LEADER_EPOCH: the log stamps the real one.
const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Kafka's NO_SEQUENCE: markers carry no sequence.
const NO_SEQUENCE: i32 = -1;

/// How a transaction ended (the control record types of a marker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MarkerKind {
    /// The transaction's records are to be skipped by read_committed readers.
    Abort,
    /// The transaction's records are visible.
    Commit,
}

impl MarkerKind {
    /// Kafka's control record type id: 0 ABORT, 1 COMMIT.
    pub fn type_id(self) -> i16 {
        match self {
            MarkerKind::Abort => 0,
            MarkerKind::Commit => 1,
        }
    }

    /// The kind for a control record type id; `None` for the other types
    /// (KRaft's leader change and snapshot records, unknown ones).
    pub fn from_type_id(type_id: i16) -> Option<MarkerKind> {
        match type_id {
            0 => Some(MarkerKind::Abort),
            1 => Some(MarkerKind::Commit),
            _ => None,
        }
    }
}

/// The content of a transaction marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndTxnMarker {
    /// Commit or abort.
    pub kind: MarkerKind,
    /// Epoch of the transaction coordinator that wrote it (fences zombie
    /// coordinators).
    pub coordinator_epoch: i32,
}

/// The first record of a control batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlRecord {
    /// A transaction marker.
    EndTxn(EndTxnMarker),
    /// Another control type (KRaft's, or one this broker does not know):
    /// not a transaction marker, ignored by transaction state.
    Other {
        /// The control record type id.
        type_id: i16,
    },
}

/// Why a batch does not hold a readable control record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlRecordError {
    /// The batch itself is invalid.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The control attribute bit is not set.
    #[error("not a control batch")]
    NotControl,
    /// Kafka never compresses control batches.
    #[error("compressed control batch (codec {0})")]
    Compressed(u8),
    /// The record framing is broken.
    #[error("malformed control record: {0}")]
    Malformed(&'static str),
    /// A negative key or value version (Kafka: data corruption).
    #[error("invalid {what} version {version}")]
    BadVersion {
        /// "control record key" or "end transaction marker".
        what: &'static str,
        /// The version found.
        version: i16,
    },
}

/// Encodes a marker batch exactly as Kafka's
/// `MemoryRecords.withEndTransactionMarker` does: base offset 0 and
/// partition leader epoch -1 (the log stamps both on append), create-time
/// timestamps `timestamp_ms`, base sequence -1, one record, CRC32C set.
pub fn build_marker_batch(
    marker: EndTxnMarker,
    producer_id: i64,
    producer_epoch: i16,
    timestamp_ms: i64,
) -> Vec<u8> {
    assert!(producer_id >= 0, "a marker needs a producer id");
    let mut out = Vec::with_capacity(MARKER_BATCH_LEN);
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    out.extend_from_slice(&((MARKER_BATCH_LEN - 12) as i32).to_be_bytes());
    out.extend_from_slice(&NO_PARTITION_LEADER_EPOCH.to_be_bytes());
    out.push(2); // magic
    out.extend_from_slice(&[0; 4]); // CRC, written last
    out.extend_from_slice(&(ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&timestamp_ms.to_be_bytes()); // base timestamp
    out.extend_from_slice(&timestamp_ms.to_be_bytes()); // max timestamp
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&NO_SEQUENCE.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes()); // record count
    assert_eq!(out.len(), BATCH_HEADER_LEN);
    // The record; every varint here is a single zigzag byte.
    out.push(zigzag_byte(MARKER_RECORD_LEN));
    out.push(0); // attributes
    out.push(0); // timestamp delta
    out.push(0); // offset delta
    out.push(zigzag_byte(CONTROL_KEY_LEN));
    out.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    out.extend_from_slice(&marker.kind.type_id().to_be_bytes());
    out.push(zigzag_byte(END_TXN_VALUE_LEN));
    out.extend_from_slice(&END_TXN_MARKER_VERSION.to_be_bytes());
    out.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    out.push(0); // header count
    assert_eq!(out.len(), MARKER_BATCH_LEN);
    batch::write_crc(&mut out);
    out
}

/// The zigzag varint of a small non-negative length (one byte).
fn zigzag_byte(len: usize) -> u8 {
    assert!(len < 64, "not a one-byte varint");
    (len as u8) << 1
}

/// Reads the first record of the control batch at the start of `bytes`
/// (the batch is fully validated first, CRC included; bytes after it are
/// ignored). Kafka's rules: key versions above 0 are read as version 0,
/// negative ones are corruption; types other than ABORT and COMMIT are
/// [`ControlRecord::Other`].
pub fn read_control_record(bytes: &[u8]) -> Result<ControlRecord, ControlRecordError> {
    let header = batch::parse_header(bytes)?;
    let whole = bytes
        .get(..header.total_len())
        .ok_or(BatchError::Truncated {
            needed: header.total_len(),
            available: bytes.len(),
        })?;
    let header = batch::validate_batch(whole)?;
    control_record_of(&header, &whole[BATCH_HEADER_LEN..])
}

/// [`read_control_record`] for a batch already validated: `header` and the
/// bytes after the header.
pub fn control_record_of(
    header: &BatchHeader,
    records: &[u8],
) -> Result<ControlRecord, ControlRecordError> {
    if !header.is_control() {
        return Err(ControlRecordError::NotControl);
    }
    if header.compression_code() != 0 {
        return Err(ControlRecordError::Compressed(header.compression_code()));
    }
    let record = FirstRecord::parse(records)?;
    let key = record.key.ok_or(ControlRecordError::Malformed("no key"))?;
    if key.len() < CONTROL_KEY_LEN {
        return Err(ControlRecordError::Malformed("key shorter than 4 bytes"));
    }
    let key_version = be_i16(key, 0);
    if key_version < 0 {
        return Err(ControlRecordError::BadVersion {
            what: "control record key",
            version: key_version,
        });
    }
    let type_id = be_i16(key, 2);
    let Some(kind) = MarkerKind::from_type_id(type_id) else {
        return Ok(ControlRecord::Other { type_id });
    };
    let value = record
        .value
        .ok_or(ControlRecordError::Malformed("marker without a value"))?;
    if value.len() < END_TXN_VALUE_LEN {
        return Err(ControlRecordError::Malformed(
            "marker value shorter than 6 bytes",
        ));
    }
    let value_version = be_i16(value, 0);
    if value_version < 0 {
        return Err(ControlRecordError::BadVersion {
            what: "end transaction marker",
            version: value_version,
        });
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(ControlRecord::EndTxn(EndTxnMarker {
        kind,
        coordinator_epoch,
    }))
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Key and value of the first record of an uncompressed batch.
struct FirstRecord<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

impl<'a> FirstRecord<'a> {
    fn parse(records: &'a [u8]) -> Result<FirstRecord<'a>, ControlRecordError> {
        let mut outer = Reader { buf: records };
        let len = outer.length("record length")?;
        let body = outer.take(len, "record past the batch end")?;
        let mut r = Reader { buf: body };
        r.take(1, "no attributes")?;
        r.varint("timestamp delta")?;
        r.varint("offset delta")?;
        let key = r.bytes("key")?;
        let value = r.bytes("value")?;
        let headers = r.varint("header count")?;
        if headers < 0 {
            return Err(ControlRecordError::Malformed("negative header count"));
        }
        Ok(FirstRecord { key, value })
    }
}

/// Zigzag varints over a slice; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self, what: &'static str) -> Result<i64, ControlRecordError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self
                .buf
                .split_first()
                .ok_or(ControlRecordError::Malformed(what))?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(ControlRecordError::Malformed(what))
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], ControlRecordError> {
        if len > self.buf.len() {
            return Err(ControlRecordError::Malformed(what));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    /// A non-negative length that fits the remaining bytes' type.
    fn length(&mut self, what: &'static str) -> Result<usize, ControlRecordError> {
        let len = self.varint(what)?;
        usize::try_from(len).map_err(|_| ControlRecordError::Malformed(what))
    }

    /// A length-prefixed byte string; length -1 is null.
    fn bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, ControlRecordError> {
        let len = self.varint(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| ControlRecordError::Malformed(what))?;
        self.take(len, what).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC32C (Castagnoli, reflected 0x82F63B78), bit by bit: a check of
    /// the CRC that does not use the crate the builder uses.
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// The marker for producer 0x0102030405060708 epoch 9, coordinator
    /// epoch 0x0A0B0C0D, ABORT, at timestamp 0x1122334455667788, written
    /// out field by field from Kafka's batch and record layouts.
    fn hand_written_abort() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // base offset 0
        v.extend_from_slice(&[0, 0, 0, 66]); // batch length 78 - 12
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // leader epoch -1
        v.push(2); // magic
        v.extend_from_slice(&[0xd0, 0x61, 0xbc, 0xba]); // CRC32C of bytes 21..
        v.extend_from_slice(&[0x00, 0x30]); // attributes: transactional | control
        v.extend_from_slice(&[0, 0, 0, 0]); // last offset delta
        v.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]); // base ts
        v.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]); // max ts
        v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // producer id
        v.extend_from_slice(&[0, 9]); // producer epoch
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // base sequence -1
        v.extend_from_slice(&[0, 0, 0, 1]); // record count
        v.push(0x20); // record length 16 (zigzag)
        v.push(0); // record attributes
        v.push(0); // timestamp delta 0
        v.push(0); // offset delta 0
        v.push(0x08); // key length 4
        v.extend_from_slice(&[0, 0, 0, 0]); // key: version 0, type 0 (ABORT)
        v.push(0x0c); // value length 6
        v.extend_from_slice(&[0, 0, 0x0a, 0x0b, 0x0c, 0x0d]); // version 0, coordinator epoch
        v.push(0); // no headers
        v
    }

    const ABORT: EndTxnMarker = EndTxnMarker {
        kind: MarkerKind::Abort,
        coordinator_epoch: 0x0A0B_0C0D,
    };

    #[test]
    fn txn_marker_batch_is_byte_exact() {
        let expected = hand_written_abort();
        assert_eq!(expected.len(), MARKER_BATCH_LEN);
        assert_eq!(
            u32::from_be_bytes([expected[17], expected[18], expected[19], expected[20]]),
            crc32c_bitwise(&expected[21..]),
            "the hand-written CRC is the CRC32C of the batch"
        );
        let built = build_marker_batch(ABORT, 0x0102_0304_0506_0708, 9, 0x1122_3344_5566_7788);
        assert_eq!(built, expected);
        let header = batch::validate_batch(&built).expect("valid batch");
        assert!(header.is_control() && header.is_transactional());
        assert_eq!((header.record_count, header.base_sequence), (1, -1));
    }

    /// Kafka's own record layout, as the reference encoder of the
    /// `kafka-protocol` crate (a port of Kafka's) writes a control record.
    #[test]
    fn txn_marker_batch_matches_the_reference_encoder() {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
            TimestampType,
        };
        for (kind, type_id) in [(MarkerKind::Abort, 0u8), (MarkerKind::Commit, 1)] {
            let marker = EndTxnMarker {
                kind,
                coordinator_epoch: 7,
            };
            let record = Record {
                transactional: true,
                control: true,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 4242,
                producer_epoch: 3,
                timestamp_type: TimestampType::Creation,
                offset: 0,
                sequence: -1,
                timestamp: 1_700_000_000_000,
                key: Some(bytes::Bytes::copy_from_slice(&[0, 0, 0, type_id])),
                value: Some(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 7])),
                headers: Default::default(),
            };
            let mut reference = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut reference,
                &[record],
                &RecordEncodeOptions {
                    version: 2,
                    compression: Compression::None,
                },
            )
            .expect("encode");
            let built = build_marker_batch(marker, 4242, 3, 1_700_000_000_000);
            assert_eq!(&built[..], &reference[..], "{kind:?}");
            let mut bytes = bytes::Bytes::from(built);
            let decoded = RecordBatchDecoder::decode(&mut bytes).expect("decodes");
            assert!(decoded.records[0].control && decoded.records[0].transactional);
        }
    }

    #[test]
    fn txn_marker_reads_back() {
        for kind in [MarkerKind::Abort, MarkerKind::Commit] {
            for coordinator_epoch in [0, 1, -1, i32::MAX] {
                let marker = EndTxnMarker {
                    kind,
                    coordinator_epoch,
                };
                let mut bytes = build_marker_batch(marker, 5, 0, 10);
                batch::stamp_base_offset(&mut bytes, 1_000);
                batch::stamp_leader_epoch(&mut bytes, 4);
                bytes.extend_from_slice(b"next batch");
                assert_eq!(
                    read_control_record(&bytes),
                    Ok(ControlRecord::EndTxn(marker))
                );
            }
        }
    }

    fn with_record(key: &[u8], value: &[u8]) -> Vec<u8> {
        // Rewrite the marker's key and value (same lengths) and fix the CRC.
        let mut bytes = build_marker_batch(ABORT, 1, 0, 0);
        bytes[66..70].copy_from_slice(key);
        bytes[71..77].copy_from_slice(value);
        batch::write_crc(&mut bytes);
        bytes
    }

    #[test]
    fn txn_marker_versions_and_types_follow_kafka() {
        // A newer key version is read as version 0.
        let newer = with_record(&[0, 3, 0, 1], &[0, 0, 0, 0, 0, 2]);
        assert_eq!(
            read_control_record(&newer),
            Ok(ControlRecord::EndTxn(EndTxnMarker {
                kind: MarkerKind::Commit,
                coordinator_epoch: 2
            }))
        );
        let negative = with_record(&[0xff, 0xff, 0, 1], &[0; 6]);
        assert!(matches!(
            read_control_record(&negative),
            Err(ControlRecordError::BadVersion { .. })
        ));
        let bad_value = with_record(&[0, 0, 0, 0], &[0x80, 0, 0, 0, 0, 0]);
        assert!(matches!(
            read_control_record(&bad_value),
            Err(ControlRecordError::BadVersion { .. })
        ));
        // KRaft's leader change (type 2) is a control record, not a marker.
        let leader_change = with_record(&[0, 0, 0, 2], &[0; 6]);
        assert_eq!(
            read_control_record(&leader_change),
            Ok(ControlRecord::Other { type_id: 2 })
        );
    }

    #[test]
    fn txn_marker_refuses_what_is_not_one() {
        let data = batch::build_batch(0, None, &[(Some(b"k"), b"v")]);
        assert_eq!(
            read_control_record(&data),
            Err(ControlRecordError::NotControl)
        );
        let mut corrupt = build_marker_batch(ABORT, 1, 0, 0);
        corrupt[75] ^= 1;
        assert!(matches!(
            read_control_record(&corrupt),
            Err(ControlRecordError::Batch(BatchError::BadCrc { .. }))
        ));
        let mut compressed = build_marker_batch(ABORT, 1, 0, 0);
        compressed[22] |= 1;
        batch::write_crc(&mut compressed);
        assert_eq!(
            read_control_record(&compressed),
            Err(ControlRecordError::Compressed(1))
        );
        let whole = build_marker_batch(ABORT, 1, 0, 0);
        for len in 0..whole.len() {
            assert!(read_control_record(&whole[..len]).is_err(), "{len}");
        }
        // A record claiming more bytes than the batch holds.
        let header = batch::validate_batch(&whole).expect("valid");
        let mut records = whole[BATCH_HEADER_LEN..].to_vec();
        records[0] = 0x7e;
        assert_eq!(
            control_record_of(&header, &records),
            Err(ControlRecordError::Malformed("record past the batch end"))
        );
        // A null key.
        records[0] = 0x20;
        records[4] = 0x01;
        assert!(control_record_of(&header, &records).is_err());
    }
}
