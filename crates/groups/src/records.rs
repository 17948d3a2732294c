//! The records of `__consumer_offsets`, in Kafka's formats: offset commits
//! (key version 1: group, topic, partition; value version 3: offset,
//! leader epoch, metadata, commit time) and group metadata (key version 2:
//! group; value version 3: protocol, generation, leader, members with their
//! subscriptions and assignments). A record with a null value deletes its
//! key.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::types::TxnProducer;

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The offset of the next record to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record (-1 when unknown).
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// When it was committed (ms).
    pub commit_ms: i64,
}

/// A member as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout (ms).
    pub rebalance_timeout_ms: i32,
    /// Session timeout (ms).
    pub session_timeout_ms: i32,
    /// Metadata for the chosen protocol.
    pub subscription: Bytes,
    /// Assignment from the leader.
    pub assignment: Bytes,
}

/// Group metadata as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGroup {
    /// Protocol type ("consumer", ...).
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the state last changed (ms).
    pub state_ms: i64,
    /// Members of the generation.
    pub members: Vec<StoredMember>,
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An offset commit, or its deletion (`None`).
    Offset {
        /// Group id.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset, or `None` when deleted.
        value: Option<CommittedOffset>,
    },
    /// Group metadata, or the group's deletion (`None`).
    Group {
        /// Group id.
        group: String,
        /// The metadata, or `None` when deleted.
        value: Option<StoredGroup>,
    },
}

fn put_str(buf: &mut BytesMut, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&bytes[..len]);
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn get_i16(buf: &mut Bytes) -> Option<i16> {
    (buf.remaining() >= 2).then(|| buf.get_i16())
}
fn get_i32(buf: &mut Bytes) -> Option<i32> {
    (buf.remaining() >= 4).then(|| buf.get_i32())
}
fn get_i64(buf: &mut Bytes) -> Option<i64> {
    (buf.remaining() >= 8).then(|| buf.get_i64())
}
fn get_opt_str(buf: &mut Bytes) -> Option<Option<String>> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Some(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return None;
    }
    let s = buf.split_to(len);
    Some(Some(String::from_utf8_lossy(&s).into_owned()))
}
fn get_str(buf: &mut Bytes) -> Option<String> {
    get_opt_str(buf).map(Option::unwrap_or_default)
}
fn get_bytes(buf: &mut Bytes) -> Option<Bytes> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Some(Bytes::new());
    }
    let len = len as usize;
    (buf.remaining() >= len).then(|| buf.split_to(len))
}

/// The key of an offset commit.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    put_str(&mut buf, group);
    put_str(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

/// The value of an offset commit.
pub fn offset_value(o: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(3);
    buf.put_i64(o.offset);
    buf.put_i32(o.leader_epoch);
    put_str(&mut buf, &o.metadata);
    buf.put_i64(o.commit_ms);
    buf.freeze()
}

/// The key of a group's metadata.
pub fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(2);
    put_str(&mut buf, group);
    buf.freeze()
}

/// The value of a group's metadata.
pub fn group_value(g: &StoredGroup) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(3);
    put_str(&mut buf, &g.protocol_type);
    buf.put_i32(g.generation);
    put_opt_str(&mut buf, g.protocol.as_deref());
    put_opt_str(&mut buf, g.leader.as_deref());
    buf.put_i64(g.state_ms);
    buf.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_str(&mut buf, &m.member_id);
        put_opt_str(&mut buf, m.instance_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// Decodes one record; `None` for keys this broker does not know or
/// malformed bytes (skipped on replay).
pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Option<Entry> {
    let mut k = key.clone();
    match get_i16(&mut k)? {
        0 | 1 => {
            let group = get_str(&mut k)?;
            let topic = get_str(&mut k)?;
            let partition = get_i32(&mut k)?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut v = v.clone();
                    let version = get_i16(&mut v)?;
                    let offset = get_i64(&mut v)?;
                    let leader_epoch = if version >= 3 { get_i32(&mut v)? } else { -1 };
                    let metadata = get_str(&mut v)?;
                    let commit_ms = get_i64(&mut v)?;
                    Some(CommittedOffset {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_ms,
                    })
                }
            };
            Some(Entry::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = get_str(&mut k)?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut v = v.clone();
                    let version = get_i16(&mut v)?;
                    if version != 3 {
                        return None;
                    }
                    let protocol_type = get_str(&mut v)?;
                    let generation = get_i32(&mut v)?;
                    let protocol = get_opt_str(&mut v)?;
                    let leader = get_opt_str(&mut v)?;
                    let state_ms = get_i64(&mut v)?;
                    let count = get_i32(&mut v)?;
                    let mut members = Vec::new();
                    for _ in 0..count.max(0) {
                        members.push(StoredMember {
                            member_id: get_str(&mut v)?,
                            instance_id: get_opt_str(&mut v)?,
                            client_id: get_str(&mut v)?,
                            client_host: get_str(&mut v)?,
                            rebalance_timeout_ms: get_i32(&mut v)?,
                            session_timeout_ms: get_i32(&mut v)?,
                            subscription: get_bytes(&mut v)?,
                            assignment: get_bytes(&mut v)?,
                        });
                    }
                    Some(StoredGroup {
                        protocol_type,
                        generation,
                        protocol,
                        leader,
                        state_ms,
                        members,
                    })
                }
            };
            Some(Entry::Group { group, value })
        }
        _ => None,
    }
}

/// Encodes (key, value) records as one uncompressed v2 batch.
pub fn batch(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Bytes {
    batch_of(records, now_ms, None)
}

/// Encodes (key, value) records as one uncompressed v2 batch; with a
/// producer, a transactional batch of that producer id and epoch (as
/// Kafka's coordinator writes TxnOffsetCommit records). The base sequence
/// is -1 (NO_SEQUENCE) either way: the log checks no sequence of the
/// coordinator's own batches.
pub fn batch_of(
    records: &[(Bytes, Option<Bytes>)],
    now_ms: i64,
    producer: Option<TxnProducer>,
) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let (producer_id, producer_epoch) =
        producer.map_or((-1, -1), |p| (p.producer_id, p.producer_epoch));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset minus
            // sequence is constant; the batch's base sequence is the
            // first record's: -1.
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

/// Decodes the records of stored batches, in order.
pub fn entries(batches_bytes: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    for item in ringbroker_protocol::batch::batches(batches_bytes) {
        let Ok((_, range)) = item else { break };
        // Bounded: a compressed batch that decompresses to more than
        // DECOMPRESSED_BATCH_BYTES_MAX or holds malformed records is skipped.
        let Ok(records) = ringbroker_protocol::records::decode_records(&batches_bytes[range])
        else {
            continue;
        };
        for record in records.into_iter().filter(|r| !r.control) {
            if let Some(key) = &record.key {
                if let Some(entry) = decode(key, record.value.as_ref()) {
                    out.push(entry);
                }
            }
        }
    }
    out
}

/// Java's `String.hashCode`, so a group maps to the same `__consumer_offsets`
/// partition as in Kafka.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group (Kafka's rule).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    (java_hash(group) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_batches_carry_the_producer() {
        let records = vec![
            (offset_key("g", "t", 0), Some(Bytes::from_static(b"v"))),
            (offset_key("g", "t", 1), None),
            (offset_key("g", "t", 2), None),
        ];
        let producer = TxnProducer {
            producer_id: 42,
            producer_epoch: 3,
        };
        let stored = batch_of(&records, 5, Some(producer));
        let all: Vec<_> = ringbroker_protocol::batch::batches(&stored).collect();
        assert_eq!(all.len(), 1, "one batch");
        let (header, _) = all[0].clone().expect("valid");
        assert!(header.is_transactional() && !header.is_control());
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                header.record_count
            ),
            (42, 3, -1, 3)
        );
        let plain = ringbroker_protocol::batch::parse_header(&batch(&records, 5)).expect("header");
        assert!(!plain.is_transactional());
        assert_eq!((plain.producer_id, plain.base_sequence), (-1, -1));
    }

    #[test]
    fn java_hash_matches_java() {
        // Values of "".hashCode(), "a".hashCode(), "my-group".hashCode() in Java.
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
    }

    #[test]
    fn records_round_trip() {
        let offset = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_ms: 1000,
        };
        let group = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            state_ms: 5,
            members: vec![StoredMember {
                member_id: "a".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let records = vec![
            (offset_key("g", "t", 1), Some(offset_value(&offset))),
            (group_key("g"), Some(group_value(&group))),
            (offset_key("g", "t", 1), None),
        ];
        let stored = batch(&records, 9);
        let decoded = entries(&stored);
        assert_eq!(
            decoded,
            vec![
                Entry::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 1,
                    value: Some(offset)
                },
                Entry::Group {
                    group: "g".into(),
                    value: Some(group)
                },
                Entry::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 1,
                    value: None
                },
            ]
        );
        let whole: Vec<_> = ringbroker_protocol::batch::batches(&stored).collect();
        assert_eq!(whole.len(), 1, "one batch");
        assert!(decode(&Bytes::from_static(b"\x00"), None).is_none());
        assert!(decode(&Bytes::from_static(b"\x00\x09abc"), None).is_none());
    }
}
