//! Loading an offsets partition: decoding the batches read from its log
//! and replaying the records into groups, in log order. The shell reads;
//! this decides what the bytes mean and what state they rebuild.
//!
//! Replay rebuilds what the records say: offsets (a tombstone removes
//! one), and each group's last metadata (members with their subscriptions
//! and assignments, generation, protocol, leader). A group with members
//! comes back Stable, and its members must heartbeat within their session
//! timeout (counted from the end of the load) or expire.
//!
//! Transactions (Kafka's loading of pending transactional offsets): the
//! offsets of a transactional batch are pending for its producer id until
//! a control batch of that producer (COMMIT or ABORT marker) follows; a
//! commit makes them committed unless a plain commit later in the log
//! replaced them, an abort drops them. Offsets still pending at the end of
//! the load stay pending: their marker comes later
//! ([`crate::Event::TxnCompleted`]).

use std::collections::{BTreeSet, HashMap};

use crate::group::{Group, Member};
use crate::records::{self, Entry, StoredGroup};
use crate::types::{GroupState, OffsetsPartition, Protocol};

/// Control record type of an ABORT marker (Kafka's `ControlRecordType`).
const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type of a COMMIT marker.
const CONTROL_TYPE_COMMIT: i16 = 1;

/// One record of an offsets partition as replay sees it: where it came
/// from matters (a transactional batch, a marker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadedRecord {
    /// A record of a plain (non-transactional) batch.
    Plain(Entry),
    /// A record of a transactional batch of `producer_id`: offsets are
    /// pending until the producer's marker.
    Transactional {
        /// The producer of the batch.
        producer_id: i64,
        /// The record.
        entry: Entry,
    },
    /// A transaction marker (control batch) of `producer_id`.
    Marker {
        /// The producer whose transaction ended.
        producer_id: i64,
        /// COMMIT (true) or ABORT (false).
        commit: bool,
    },
}

impl From<Entry> for LoadedRecord {
    fn from(entry: Entry) -> LoadedRecord {
        LoadedRecord::Plain(entry)
    }
}

/// The records of a chunk of log and where the next chunk starts.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedChunk {
    /// Decoded records, in log order (records of unknown kinds skipped,
    /// markers included).
    pub entries: Vec<LoadedRecord>,
    /// Offset after the last whole batch of the chunk.
    pub next_offset: i64,
}

/// The marker a control record key names: `Some(true)` COMMIT,
/// `Some(false)` ABORT, `None` another control type (ignored, as Kafka
/// ignores them here). A key shorter than version and type, or of a
/// negative version, is corruption (Kafka's `ControlRecordType.parse`).
fn control_marker(key: Option<&[u8]>) -> Result<Option<bool>, String> {
    let key = key.ok_or("control record without a key")?;
    let [v0, v1, t0, t1, ..] = *key else {
        return Err(format!("control record key of {} bytes", key.len()));
    };
    let version = i16::from_be_bytes([v0, v1]);
    if version < 0 {
        return Err(format!("control record key version {version}"));
    }
    Ok(match i16::from_be_bytes([t0, t1]) {
        CONTROL_TYPE_COMMIT => Some(true),
        CONTROL_TYPE_ABORT => Some(false),
        _ => None,
    })
}

/// Why a chunk cannot be replayed.
#[derive(Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes the whole batches at the start of `chunk` (bytes read from the
/// log at some offset; the last batch may be cut short by the read, and is
/// then left for the next chunk). A chunk without one whole batch, a batch
/// that fails validation, or records that do not decode are an error: the
/// partition cannot be served from a log it cannot read. So is a control
/// batch whose first record is not a readable control record.
pub fn decode_chunk(chunk: &[u8]) -> Result<DecodedChunk, LoadError> {
    use ringbroker_protocol::batch::{batches, BatchError};
    let mut entries = Vec::new();
    let mut next_offset = None;
    for item in batches(chunk) {
        match item {
            Ok((header, range)) => {
                // Only the bounded decoder: a compressed batch can claim
                // any decompressed size.
                let records =
                    ringbroker_protocol::records::decode_records(&chunk[range]).map_err(|e| {
                        LoadError(format!(
                            "batch at offset {} does not decode: {e}",
                            header.base_offset
                        ))
                    })?;
                if header.is_control() {
                    // A marker holds one record; Kafka reads the first.
                    let first = records.first().map(|r| r.key.as_deref());
                    let marker = match first {
                        Some(key) => control_marker(key).map_err(|e| {
                            LoadError(format!(
                                "control batch at offset {}: {e}",
                                header.base_offset
                            ))
                        })?,
                        None => None,
                    };
                    if let Some(commit) = marker {
                        entries.push(LoadedRecord::Marker {
                            producer_id: header.producer_id,
                            commit,
                        });
                    }
                } else {
                    for record in records {
                        let Some(key) = &record.key else { continue };
                        let Some(entry) = records::decode(key, record.value.as_ref()) else {
                            continue;
                        };
                        entries.push(if header.is_transactional() {
                            LoadedRecord::Transactional {
                                producer_id: header.producer_id,
                                entry,
                            }
                        } else {
                            LoadedRecord::Plain(entry)
                        });
                    }
                }
                next_offset = Some(header.last_offset().saturating_add(1));
            }
            Err(BatchError::Truncated { .. }) if next_offset.is_some() => break,
            Err(e) => {
                return Err(LoadError(format!(
                    "invalid batch after offset {}: {e}",
                    next_offset.map_or("(start)".to_string(), |o| o.to_string())
                )))
            }
        }
    }
    match next_offset {
        Some(next_offset) => Ok(DecodedChunk {
            entries,
            next_offset,
        }),
        None => Err(LoadError("no whole batch in the chunk read".to_string())),
    }
}

/// The groups that may hold pending offsets of each producer (a superset:
/// an entry may outlive the offsets), so a marker visits only those.
pub(crate) type TxnGroups = HashMap<i64, BTreeSet<String>>;

/// Ends the transaction of `producer_id` in the groups that may hold its
/// offsets (replay of a marker, or [`crate::Event::TxnCompleted`]);
/// returns the groups that held some.
pub(crate) fn complete_txn(
    groups: &mut HashMap<String, Group>,
    txn_groups: &mut TxnGroups,
    producer_id: i64,
    commit: bool,
) -> Vec<String> {
    let mut touched = Vec::new();
    for id in txn_groups.remove(&producer_id).unwrap_or_default() {
        if let Some(g) = groups.get_mut(&id) {
            if g.complete_txn(producer_id, commit) > 0 {
                touched.push(id);
            }
        }
    }
    touched
}

/// True for a group replay may drop: it holds nothing and never had
/// metadata.
fn droppable(g: &Group) -> bool {
    g.is_forgettable() && g.generation == 0 && g.protocol_type.is_none()
}

/// Replays one record into the groups of a partition being loaded; the
/// record stands at `position` (positions grow in log order).
pub(crate) fn replay(
    groups: &mut HashMap<String, Group>,
    txn_groups: &mut TxnGroups,
    partition: OffsetsPartition,
    record: LoadedRecord,
    position: u64,
    now_ms: i64,
) {
    match record {
        LoadedRecord::Plain(entry) => replay_entry(groups, partition, entry, position, now_ms),
        LoadedRecord::Transactional {
            producer_id,
            entry:
                Entry::Offset {
                    group,
                    topic,
                    partition: index,
                    value,
                },
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, partition, now_ms));
            let key = (topic, index);
            match value {
                Some(v) => {
                    g.put_pending(producer_id, key, v, position, true);
                    txn_groups.entry(producer_id).or_default().insert(group);
                }
                None => {
                    if let Some(pending) = g.pending_txn_offsets.get_mut(&producer_id) {
                        pending.remove(&key);
                        if pending.is_empty() {
                            g.pending_txn_offsets.remove(&producer_id);
                        }
                    }
                    if droppable(g) {
                        groups.remove(&group);
                    }
                }
            }
        }
        // Kafka never writes group metadata transactionally; read it as
        // written.
        LoadedRecord::Transactional { entry, .. } => {
            replay_entry(groups, partition, entry, position, now_ms)
        }
        LoadedRecord::Marker {
            producer_id,
            commit,
        } => {
            for id in complete_txn(groups, txn_groups, producer_id, commit) {
                if groups.get(&id).is_some_and(droppable) {
                    groups.remove(&id);
                }
            }
        }
    }
}

/// Replays one record of a plain batch.
fn replay_entry(
    groups: &mut HashMap<String, Group>,
    partition: OffsetsPartition,
    entry: Entry,
    position: u64,
    now_ms: i64,
) {
    match entry {
        Entry::Offset {
            group,
            topic,
            partition: index,
            value,
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, partition, now_ms));
            match value {
                Some(v) => g.put_committed((topic, index), v, position),
                None => {
                    g.remove_offset(&(topic, index));
                    if droppable(g) {
                        groups.remove(&group);
                    }
                }
            }
        }
        Entry::Group { group, value: None } => {
            // The group's metadata is gone; its offsets (if any) stay.
            if let Some(g) = groups.get_mut(&group) {
                let offsets = std::mem::take(&mut g.offsets);
                let pending = std::mem::take(&mut g.pending_txn_offsets);
                *g = Group::new(&group, partition, now_ms);
                g.offsets = offsets;
                g.pending_txn_offsets = pending;
                if g.offsets.is_empty() && g.pending_txn_offsets.is_empty() {
                    groups.remove(&group);
                }
            }
        }
        Entry::Group {
            group,
            value: Some(stored),
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, partition, now_ms));
            restore(g, stored);
        }
    }
}

/// Rebuilds a group from its stored metadata (keeping its offsets).
fn restore(g: &mut Group, stored: StoredGroup) {
    let offsets = std::mem::take(&mut g.offsets);
    let pending = std::mem::take(&mut g.pending_txn_offsets);
    let mut fresh = Group::new(&g.id, g.partition, stored.state_ms);
    fresh.offsets = offsets;
    fresh.pending_txn_offsets = pending;
    fresh.generation = stored.generation;
    fresh.protocol = stored.protocol.clone();
    let protocol = stored.protocol.clone().unwrap_or_default();
    for m in stored.members {
        if fresh.members.contains_key(&m.member_id)
            || m.instance_id
                .as_ref()
                .is_some_and(|i| fresh.static_members.contains_key(i))
        {
            log::warn!(
                "group {}: stored metadata lists member {} twice; keeping the first",
                g.id,
                m.member_id
            );
            continue;
        }
        let member = Member {
            id: m.member_id,
            instance_id: m.instance_id,
            client_id: m.client_id,
            client_host: m.client_host,
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocols: vec![Protocol {
                name: protocol.clone(),
                metadata: m.subscription,
            }],
            assignment: m.assignment,
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
        };
        fresh.add(member, &stored.protocol_type);
    }
    if let Some(leader) = stored.leader {
        if fresh.members.contains_key(&leader) {
            fresh.leader = Some(leader);
        }
    }
    fresh.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
    if !fresh.members.is_empty() {
        fresh.state = GroupState::Stable;
        fresh.previous_state = GroupState::Stable;
    } else {
        fresh.protocol = None;
    }
    fresh.state_ms = stored.state_ms;
    *g = fresh;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{CommittedOffset, StoredMember};
    use bytes::Bytes;

    fn offset(o: i64) -> CommittedOffset {
        CommittedOffset {
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 0,
        }
    }

    fn commit(group: &str, partition: i32, value: Option<CommittedOffset>) -> Entry {
        Entry::Offset {
            group: group.into(),
            topic: "t".into(),
            partition,
            value,
        }
    }

    fn stored() -> StoredGroup {
        StoredGroup {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_ms: 77,
            members: vec![StoredMember {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "h".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 6000,
                subscription: Bytes::from_static(b"s"),
                assignment: Bytes::from_static(b"a"),
            }],
        }
    }

    #[test]
    fn replay_restores_offsets_and_members() {
        let p = OffsetsPartition(3);
        let mut groups = HashMap::new();
        for entry in [
            commit("g", 0, Some(offset(5))),
            commit("g", 0, Some(offset(9))),
            commit("g", 1, Some(offset(1))),
            commit("g", 1, None),
            Entry::Group {
                group: "g".into(),
                value: Some(stored()),
            },
        ] {
            replay(&mut groups, &mut TxnGroups::new(), p, entry.into(), 0, 1000);
        }
        let g = &groups["g"];
        assert_eq!(g.offsets.len(), 1);
        assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 9);
        assert_eq!(
            (g.state, g.generation, g.partition),
            (GroupState::Stable, 4, p)
        );
        assert_eq!(g.static_members["i1"], "m1");
        assert_eq!(g.members["m1"].assignment, Bytes::from_static(b"a"));
        assert_eq!(
            g.members["m1"].metadata_for("range"),
            Bytes::from_static(b"s")
        );
        assert_eq!((g.leader.as_deref(), g.state_ms), (Some("m1"), 77));
        // A group tombstone drops the metadata but not the offsets.
        replay(
            &mut groups,
            &mut TxnGroups::new(),
            p,
            Entry::Group {
                group: "g".into(),
                value: None,
            }
            .into(),
            0,
            1000,
        );
        let g = &groups["g"];
        assert_eq!(
            (g.state, g.members.len(), g.offsets.len()),
            (GroupState::Empty, 0, 1)
        );
        replay(
            &mut groups,
            &mut TxnGroups::new(),
            p,
            commit("g", 0, None).into(),
            0,
            1000,
        );
        assert!(groups.is_empty(), "nothing left");
    }

    #[test]
    fn replay_of_an_empty_generation_and_a_bad_leader() {
        let mut groups = HashMap::new();
        let mut s = stored();
        s.leader = Some("gone".into());
        replay(
            &mut groups,
            &mut TxnGroups::new(),
            OffsetsPartition(0),
            Entry::Group {
                group: "g".into(),
                value: Some(s),
            }
            .into(),
            0,
            0,
        );
        assert_eq!(groups["g"].leader.as_deref(), Some("m1"), "a member leads");
        let mut empty = stored();
        empty.members.clear();
        replay(
            &mut groups,
            &mut TxnGroups::new(),
            OffsetsPartition(0),
            Entry::Group {
                group: "g".into(),
                value: Some(empty),
            }
            .into(),
            0,
            0,
        );
        let g = &groups["g"];
        assert_eq!(
            (g.state, g.generation, g.leader.clone()),
            (GroupState::Empty, 4, None)
        );
    }

    #[test]
    fn chunks_decode_whole_batches_and_refuse_garbage() {
        let a = records::batch(
            &[(
                records::offset_key("g", "t", 0),
                Some(records::offset_value(&offset(3))),
            )],
            0,
        );
        let b = records::batch(&[(records::group_key("g"), None)], 0);
        let mut chunk = a.to_vec();
        // The second batch's base offset is 1 (a holds one record).
        let mut second = b.to_vec();
        ringbroker_protocol::batch::stamp_base_offset(&mut second, 1);
        chunk.extend_from_slice(&second);
        let whole = decode_chunk(&chunk).expect("decodes");
        assert_eq!(whole.next_offset, 2);
        assert_eq!(whole.entries.len(), 2);
        // Cut inside the second batch: the first is returned.
        let cut = decode_chunk(&chunk[..a.len() + 10]).expect("decodes");
        assert_eq!((cut.entries.len(), cut.next_offset), (1, 1));
        // Nothing whole, or corrupt bytes: an error.
        assert!(decode_chunk(&chunk[..10]).is_err());
        let mut corrupt = chunk.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(decode_chunk(&corrupt).is_err());
        assert!(decode_chunk(&[]).is_err());
    }
}

#[cfg(test)]
mod marker_tests {
    use super::*;
    use crate::harness::marker_batch;
    use crate::types::TxnProducer;
    use bytes::Bytes;

    fn stamped(mut batch: Vec<u8>, offset: i64) -> Vec<u8> {
        ringbroker_protocol::batch::stamp_base_offset(&mut batch, offset);
        batch
    }

    #[test]
    fn chunks_mark_transactional_records_and_markers() {
        let offset = records::CommittedOffset {
            offset: 4,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 0,
        };
        let producer = TxnProducer {
            producer_id: 9,
            producer_epoch: 1,
        };
        let txn = records::batch_of(
            &[(
                records::offset_key("g", "t", 0),
                Some(records::offset_value(&offset)),
            )],
            0,
            Some(producer),
        );
        let mut chunk = txn.to_vec();
        chunk.extend(stamped(marker_batch(9, true).to_vec(), 1));
        chunk.extend(stamped(marker_batch(9, false).to_vec(), 2));
        let decoded = decode_chunk(&chunk).expect("decodes");
        assert_eq!(decoded.next_offset, 3);
        assert_eq!(
            decoded.entries,
            vec![
                LoadedRecord::Transactional {
                    producer_id: 9,
                    entry: Entry::Offset {
                        group: "g".into(),
                        topic: "t".into(),
                        partition: 0,
                        value: Some(offset),
                    },
                },
                LoadedRecord::Marker {
                    producer_id: 9,
                    commit: true
                },
                LoadedRecord::Marker {
                    producer_id: 9,
                    commit: false
                },
            ]
        );
    }

    #[test]
    fn control_keys_follow_kafkas_rules() {
        assert_eq!(control_marker(Some(&[0, 0, 0, 1])), Ok(Some(true)));
        assert_eq!(control_marker(Some(&[0, 0, 0, 0])), Ok(Some(false)));
        // Newer key versions are read as version 0; other types ignored.
        assert_eq!(control_marker(Some(&[0, 3, 0, 1, 9])), Ok(Some(true)));
        assert_eq!(control_marker(Some(&[0, 0, 0, 3])), Ok(None));
        assert!(control_marker(Some(&[0xff, 0xff, 0, 1])).is_err());
        assert!(control_marker(Some(&[0, 0, 0])).is_err());
        assert!(control_marker(None).is_err());
        // A control batch with a short key fails the load.
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let record = Record {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 1,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(Bytes::from_static(&[0, 0])),
            value: None,
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encodes");
        assert!(decode_chunk(&buf).is_err());
    }
}
