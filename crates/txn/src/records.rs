//! The records of `__transaction_state`, byte for byte Kafka's
//! (`TransactionLogKey.json`, `TransactionLogValue.json`).
//!
//! Key, version 0 (the only one): `int16 version = 0`, then the
//! transactional id as a `string` (int16 length, UTF-8).
//!
//! Value, `int16 version` first, then:
//!
//! | field | v0 | v1 (flexible) |
//! |---|---|---|
//! | ProducerId | int64 | int64 |
//! | ProducerEpoch | int16 | int16 |
//! | TransactionTimeoutMs | int32 | int32 |
//! | TransactionStatus | int8 ([`TxnState::id`]) | int8 |
//! | TransactionPartitions | nullable array (int32 count, -1 null) of {string Topic; int32 count, int32 ids} | compact nullable array (uvarint count+1, 0 null) of {compact string; compact int32 array; tagged fields} |
//! | TransactionLastUpdateTimestampMs | int64 | int64 |
//! | TransactionStartTimestampMs | int64 | int64 |
//! | tagged fields | none | uvarint count, then {uvarint tag, uvarint size, data} |
//!
//! v1 tags, written only when not at their default: 0 PreviousProducerId
//! (int64, -1), 1 NextProducerId (int64, -1), 2 ClientTransactionVersion
//! (int16, 0), 3 NextProducerEpoch (int16, -1; Kafka 4.1's KIP-939). Unknown
//! tags are skipped when read. An Empty transaction's partitions are
//! written as null. A null value (tombstone) deletes the transactional id.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::{TOPIC_NAME_BYTES_MAX, TRANSACTIONAL_ID_BYTES_MAX};
use crate::state::TxnState;
use crate::types::{TopicPartition, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};

/// A transactional id's record value: its metadata as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnLogValue {
    /// Producer id.
    pub producer_id: i64,
    /// The producer id before the transition this record stores (v1 tag
    /// 0; -1 in v0 records).
    pub previous_producer_id: i64,
    /// KIP-890 (transaction version 2): the producer id to move to once the
    /// transaction completes, when the epoch overflowed (v1 tag 1; -1).
    pub next_producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// KIP-939: the epoch that goes with `next_producer_id` (v1 tag 3; -1).
    pub next_producer_epoch: i16,
    /// transaction.timeout.ms.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions in the transaction.
    pub partitions: BTreeSet<TopicPartition>,
    /// When the metadata last changed (ms).
    pub last_update_ms: i64,
    /// When the transaction started (ms; -1 when none is open).
    pub start_ms: i64,
    /// The transaction version the client used (v1 tag 2; 0).
    pub client_transaction_version: i16,
}

impl TxnLogValue {
    /// A value with the tagged fields at their defaults.
    pub fn new(producer_id: i64, producer_epoch: i16, timeout_ms: i32, state: TxnState) -> Self {
        TxnLogValue {
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch,
            next_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state,
            partitions: BTreeSet::new(),
            last_update_ms: -1,
            start_ms: -1,
            client_transaction_version: 0,
        }
    }
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The transactional id.
    pub transactional_id: String,
    /// Its metadata, or `None` when the id was deleted (a tombstone).
    pub value: Option<TxnLogValue>,
}

/// Why a record does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A key version this broker does not know (Kafka skips these too).
    UnknownKeyVersion(i16),
    /// A value version this broker does not know.
    UnknownValueVersion(i16),
    /// Bytes that do not follow the format.
    Malformed(&'static str),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::UnknownKeyVersion(v) => write!(f, "unknown key version {v}"),
            RecordError::UnknownValueVersion(v) => write!(f, "unknown value version {v}"),
            RecordError::Malformed(what) => write!(f, "malformed record: {what}"),
        }
    }
}

/// The key of a transactional id's records.
pub fn key(transactional_id: &str) -> Bytes {
    assert!(
        transactional_id.len() <= TRANSACTIONAL_ID_BYTES_MAX,
        "transactional ids are checked before they reach a record"
    );
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(0);
    buf.put_i16(transactional_id.len() as i16);
    buf.put_slice(transactional_id.as_bytes());
    buf.freeze()
}

/// The value of a transactional id's record, in `version` (0 or 1).
pub fn value(v: &TxnLogValue, version: i16) -> Bytes {
    assert!(version == 0 || version == 1, "value version {version}");
    assert!(
        v.state != TxnState::Empty || v.partitions.is_empty(),
        "an Empty transaction has no partitions"
    );
    let flexible = version >= 1;
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(version);
    buf.put_i64(v.producer_id);
    buf.put_i16(v.producer_epoch);
    buf.put_i32(v.timeout_ms);
    buf.put_i8(v.state.id());
    if v.state == TxnState::Empty {
        if flexible {
            put_uvarint(&mut buf, 0);
        } else {
            buf.put_i32(-1);
        }
    } else {
        put_partitions(&mut buf, &v.partitions, flexible);
    }
    buf.put_i64(v.last_update_ms);
    buf.put_i64(v.start_ms);
    if flexible {
        put_tagged_fields(&mut buf, v);
    }
    buf.freeze()
}

/// The partitions grouped by topic (the set is sorted, so each topic's
/// partitions are adjacent).
fn by_topic(partitions: &BTreeSet<TopicPartition>) -> Vec<(&str, Vec<i32>)> {
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for tp in partitions {
        match topics.last_mut() {
            Some((topic, ids)) if *topic == tp.topic => ids.push(tp.partition),
            _ => topics.push((&tp.topic, vec![tp.partition])),
        }
    }
    topics
}

fn put_partitions(buf: &mut BytesMut, partitions: &BTreeSet<TopicPartition>, flexible: bool) {
    let topics = by_topic(partitions);
    put_len(buf, topics.len(), flexible);
    for (topic, ids) in topics {
        assert!(
            topic.len() <= TOPIC_NAME_BYTES_MAX,
            "topic names are checked"
        );
        if flexible {
            put_uvarint(buf, topic.len() as u32 + 1);
        } else {
            buf.put_i16(topic.len() as i16);
        }
        buf.put_slice(topic.as_bytes());
        put_len(buf, ids.len(), flexible);
        for id in ids {
            buf.put_i32(id);
        }
        if flexible {
            put_uvarint(buf, 0); // no tagged fields in the topic entry
        }
    }
}

fn put_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    let len = u32::try_from(len).expect("bounded by transaction_partitions_max");
    if flexible {
        put_uvarint(buf, len + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn put_tagged_fields(buf: &mut BytesMut, v: &TxnLogValue) {
    let mut fields: Vec<(u32, Vec<u8>)> = Vec::new();
    if v.previous_producer_id != NO_PRODUCER_ID {
        fields.push((0, v.previous_producer_id.to_be_bytes().to_vec()));
    }
    if v.next_producer_id != NO_PRODUCER_ID {
        fields.push((1, v.next_producer_id.to_be_bytes().to_vec()));
    }
    if v.client_transaction_version != 0 {
        fields.push((2, v.client_transaction_version.to_be_bytes().to_vec()));
    }
    if v.next_producer_epoch != NO_PRODUCER_EPOCH {
        fields.push((3, v.next_producer_epoch.to_be_bytes().to_vec()));
    }
    put_uvarint(buf, fields.len() as u32);
    for (tag, data) in fields {
        put_uvarint(buf, tag);
        put_uvarint(buf, data.len() as u32);
        buf.put_slice(&data);
    }
}

/// Kafka's unsigned varint (7 bits a byte, low bits first).
fn put_uvarint(buf: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

/// A cursor over record bytes; running out is a [`RecordError::Malformed`].
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(RecordError::Malformed(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }
    fn i8(&mut self, what: &'static str) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array(what)?))
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    fn uvarint(&mut self, what: &'static str) -> Result<u32, RecordError> {
        let mut n: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.i8(what)? as u8;
            n |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(RecordError::Malformed(what))
    }
    /// A length: int32 (-1 null) or compact uvarint (0 null).
    fn len(&mut self, flexible: bool, what: &'static str) -> Result<Option<usize>, RecordError> {
        if flexible {
            let n = self.uvarint(what)?;
            Ok(n.checked_sub(1).map(|n| n as usize))
        } else {
            let n = self.i32(what)?;
            Ok((n >= 0).then_some(n as usize))
        }
    }
    fn string(&mut self, flexible: bool, what: &'static str) -> Result<String, RecordError> {
        let len = if flexible {
            self.len(true, what)?
        } else {
            let n = self.i16(what)?;
            (n >= 0).then_some(n as usize)
        };
        let len = len.ok_or(RecordError::Malformed(what))?;
        let s = String::from_utf8_lossy(self.take(len, what)?).into_owned();
        // Kafka's readers refuse longer strings too; the check is on the
        // text kept, so it can always be written back.
        if s.len() > i16::MAX as usize {
            return Err(RecordError::Malformed(what));
        }
        Ok(s)
    }
    fn skip_tagged_fields(&mut self) -> Result<(), RecordError> {
        let count = self.uvarint("tagged field count")?;
        for _ in 0..count {
            self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")? as usize;
            self.take(size, "tagged field")?;
        }
        Ok(())
    }
}

/// Decodes a record key: the transactional id.
pub fn decode_key(key: &[u8]) -> Result<String, RecordError> {
    let mut r = Reader { buf: key };
    let version = r.i16("key version")?;
    if version != 0 {
        return Err(RecordError::UnknownKeyVersion(version));
    }
    r.string(false, "transactional id")
}

/// Decodes a record value (versions 0 and 1).
pub fn decode_value(value: &[u8]) -> Result<TxnLogValue, RecordError> {
    let mut r = Reader { buf: value };
    let version = r.i16("value version")?;
    if !(0..=1).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let flexible = version >= 1;
    let producer_id = r.i64("producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let timeout_ms = r.i32("timeout")?;
    let state = TxnState::from_id(r.i8("status")?).ok_or(RecordError::Malformed("status"))?;
    let mut partitions = BTreeSet::new();
    if let Some(topics) = r.len(flexible, "partitions")? {
        for _ in 0..topics {
            let topic = r.string(flexible, "topic")?;
            let ids = r
                .len(flexible, "partition ids")?
                .ok_or(RecordError::Malformed("partition ids"))?;
            for _ in 0..ids {
                let partition = r.i32("partition id")?;
                // An Empty transaction's partitions are ignored, as Kafka does.
                if state != TxnState::Empty {
                    partitions.insert(TopicPartition {
                        topic: topic.clone(),
                        partition,
                    });
                }
            }
            if flexible {
                r.skip_tagged_fields()?;
            }
        }
    }
    let mut v = TxnLogValue::new(producer_id, producer_epoch, timeout_ms, state);
    v.partitions = partitions;
    v.last_update_ms = r.i64("last update timestamp")?;
    v.start_ms = r.i64("start timestamp")?;
    if flexible {
        read_tagged_fields(&mut r, &mut v)?;
    }
    Ok(v)
}

fn read_tagged_fields(r: &mut Reader<'_>, v: &mut TxnLogValue) -> Result<(), RecordError> {
    let count = r.uvarint("tagged field count")?;
    for _ in 0..count {
        let tag = r.uvarint("tag")?;
        let size = r.uvarint("tagged field size")? as usize;
        let data = r.take(size, "tagged field")?;
        let mut f = Reader { buf: data };
        match (tag, size) {
            (0, 8) => v.previous_producer_id = f.i64("previous producer id")?,
            (1, 8) => v.next_producer_id = f.i64("next producer id")?,
            (2, 2) => v.client_transaction_version = f.i16("client transaction version")?,
            (3, 2) => v.next_producer_epoch = f.i16("next producer epoch")?,
            (0..=3, _) => return Err(RecordError::Malformed("tagged field size")),
            _ => {} // a tag from a later Kafka: skipped
        }
    }
    Ok(())
}

/// Decodes a record: its key, and its value unless it is a tombstone.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Entry, RecordError> {
    let transactional_id = decode_key(key)?;
    let value = value.map(decode_value).transpose()?;
    Ok(Entry {
        transactional_id,
        value,
    })
}

/// Encodes (key, value) records as one uncompressed v2 batch (Kafka writes
/// `__transaction_state` uncompressed), base sequence -1.
pub fn batch(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence
            // changes; this keeps one batch with base sequence -1 (no
            // idempotent producer).
            sequence: (i as i32).wrapping_sub(1),
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    // Encoding uncompressed records into memory cannot fail.
    let _ = RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    );
    buf.freeze()
}

/// Java's `String.hashCode` (over UTF-16 code units).
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Kafka's `Utils.abs`: the absolute value, with `i32::MIN` mapped to 0.
pub fn kafka_abs(n: i32) -> i32 {
    if n == i32::MIN {
        0
    } else {
        n.abs()
    }
}

/// The `__transaction_state` partition of a transactional id:
/// `Utils.abs(id.hashCode) % partitions`, Kafka's rule (also the default
/// rule for a group's `__consumer_offsets` partition).
pub fn partition_for(id: &str, partitions: i32) -> i32 {
    kafka_abs(java_hash(id)) % partitions.max(1)
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
