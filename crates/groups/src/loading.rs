//! Loading an offsets partition: decoding the batches read from its log
//! and replaying the records into groups, in log order. The shell reads;
//! this decides what the bytes mean and what state they rebuild.
//!
//! Replay rebuilds what the records say: offsets (a tombstone removes
//! one), and each group's last metadata (members with their subscriptions
//! and assignments, generation, protocol, leader). A group with members
//! comes back Stable, and its members must heartbeat within their session
//! timeout (counted from the end of the load) or expire.

use std::collections::HashMap;

use crate::group::{Group, Member};
use crate::records::{self, Entry, StoredGroup};
use crate::types::{GroupState, OffsetsPartition, Protocol};

/// The records of a chunk of log and where the next chunk starts.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedChunk {
    /// Decoded records, in log order (records of unknown kinds skipped).
    pub entries: Vec<Entry>,
    /// Offset after the last whole batch of the chunk.
    pub next_offset: i64,
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
/// partition cannot be served from a log it cannot read.
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
                for record in records {
                    if record.control {
                        continue;
                    }
                    if let Some(key) = &record.key {
                        if let Some(entry) = records::decode(key, record.value.as_ref()) {
                            entries.push(entry);
                        }
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

/// Replays one record into the groups of a partition being loaded.
pub(crate) fn replay(
    groups: &mut HashMap<String, Group>,
    partition: OffsetsPartition,
    entry: Entry,
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
                Some(v) => {
                    g.offsets.insert((topic, index), v);
                }
                None => {
                    g.offsets.remove(&(topic, index));
                    if g.is_forgettable() && g.generation == 0 && g.protocol_type.is_none() {
                        groups.remove(&group);
                    }
                }
            }
        }
        Entry::Group { group, value: None } => {
            // The group's metadata is gone; its offsets (if any) stay.
            if let Some(g) = groups.get_mut(&group) {
                let offsets = std::mem::take(&mut g.offsets);
                *g = Group::new(&group, partition, now_ms);
                g.offsets = offsets;
                if g.offsets.is_empty() {
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
    let mut fresh = Group::new(&g.id, g.partition, stored.state_ms);
    fresh.offsets = offsets;
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
            replay(&mut groups, p, entry, 1000);
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
            p,
            Entry::Group {
                group: "g".into(),
                value: None,
            },
            1000,
        );
        let g = &groups["g"];
        assert_eq!(
            (g.state, g.members.len(), g.offsets.len()),
            (GroupState::Empty, 0, 1)
        );
        replay(&mut groups, p, commit("g", 0, None), 1000);
        assert!(groups.is_empty(), "nothing left");
    }

    #[test]
    fn replay_of_an_empty_generation_and_a_bad_leader() {
        let mut groups = HashMap::new();
        let mut s = stored();
        s.leader = Some("gone".into());
        replay(
            &mut groups,
            OffsetsPartition(0),
            Entry::Group {
                group: "g".into(),
                value: Some(s),
            },
            0,
        );
        assert_eq!(groups["g"].leader.as_deref(), Some("m1"), "a member leads");
        let mut empty = stored();
        empty.members.clear();
        replay(
            &mut groups,
            OffsetsPartition(0),
            Entry::Group {
                group: "g".into(),
                value: Some(empty),
            },
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
