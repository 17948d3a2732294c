//! Offsets and the life of a group's records: OffsetCommit (answered once
//! durable, visible from then on), OffsetFetch, OffsetDelete, DeleteGroups
//! and the expiry of old offsets (offsets.retention.minutes), with
//! Kafka's rules for which offsets may expire:
//! - a group with members keeps its offsets, except those of topics it no
//!   longer subscribes to (consumer protocol only), which expire a
//!   retention period after their commit;
//! - an empty group's offsets expire a retention period after it became
//!   empty; a group that only stores offsets (no protocol type) loses each
//!   a retention period after its commit;
//! - an empty group left with nothing is deleted;
//! - offsets pending in an open transaction (TxnOffsetCommit) never
//!   expire, nor does a committed offset they are about to replace, and a
//!   group holding some is not empty.
//!
//! Transactional offsets (TxnOffsetCommit) are pending per producer until
//! the transaction's marker: a commit makes them the committed offsets
//! unless a commit later in the log replaced them, an abort drops them.

use std::collections::BTreeSet;

use bytes::Bytes;
use ringbroker_protocol::errors::ErrorCode;

use crate::effects::{Ctx, OnDurable};
use crate::group::{Group, CONSUMER_PROTOCOL_TYPE};
use crate::membership;
use crate::records::{self, CommittedOffset};
use crate::types::{
    CommitRequest, FetchOffsetsRequest, FetchOffsetsResponse, FetchedOffset, GroupState,
    OffsetCommit, OffsetDeleteRequest, OffsetDeleteResponse, Reply, RequestId, TxnCommitRequest,
};

/// Checks an OffsetCommit or TxnOffsetCommit against the group (Kafka's
/// rules): commits outside group management (generation < 0, no member)
/// only into an empty group, except transactional ones (TxnOffsetCommit
/// before v3 names no member); otherwise a known member of the current
/// generation, and not while the group waits for its assignment (again
/// except transactional ones).
fn validate_commit(
    group: &Group,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    transactional: bool,
) -> Result<(), ErrorCode> {
    if group.state == GroupState::Dead {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    if generation < 0 && group.state == GroupState::Empty {
        return Ok(());
    }
    if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
        group.validate_member(member_id, instance_id)?;
        if generation != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
    } else if !transactional && group.state != GroupState::Empty {
        return Err(ErrorCode::UnknownMemberId);
    }
    if !transactional && group.state == GroupState::CompletingRebalance {
        return Err(ErrorCode::RebalanceInProgress);
    }
    Ok(())
}

/// Offsets a commit accepted, by (topic, partition).
type Accepted = Vec<((String, i32), CommittedOffset)>;

/// The per-partition answer to the offsets of a commit (an error set by
/// the handler, or metadata too large), and the offsets accepted.
fn accept_offsets(offsets: Vec<OffsetCommit>, ctx: &Ctx) -> (Vec<ErrorCode>, Accepted) {
    let mut codes = Vec::with_capacity(offsets.len());
    let mut accepted = Vec::new();
    for o in offsets {
        let code = match o.rejected {
            Some(error) => error,
            None if o
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > ctx.config.offset_metadata_max_bytes) =>
            {
                ErrorCode::OffsetMetadataTooLarge
            }
            None => ErrorCode::None,
        };
        codes.push(code);
        if code != ErrorCode::None {
            continue;
        }
        let value = CommittedOffset {
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.unwrap_or_default(),
            commit_ms: ctx.now_ms,
        };
        accepted.push(((o.topic, o.partition), value));
    }
    (codes, accepted)
}

/// The records of accepted offsets.
fn offset_records(
    group: &str,
    accepted: &[((String, i32), CommittedOffset)],
) -> Vec<(Bytes, Option<Bytes>)> {
    accepted
        .iter()
        .map(|((topic, partition), value)| {
            (
                records::offset_key(group, topic, *partition),
                Some(records::offset_value(value)),
            )
        })
        .collect()
}

/// OffsetCommit. The group exists (the caller creates an empty one for a
/// commit outside group management).
pub(crate) fn commit(group: &mut Group, id: RequestId, req: CommitRequest, ctx: &mut Ctx) {
    let valid = validate_commit(
        group,
        req.generation,
        &req.member_id,
        req.instance_id.as_deref(),
        false,
    );
    if let Err(error) = valid {
        ctx.out
            .reply(id, Reply::Commit(vec![error; req.offsets.len()]));
        return;
    }
    if group.members.contains_key(&req.member_id)
        && matches!(
            group.state,
            GroupState::Stable | GroupState::PreparingRebalance
        )
    {
        membership::reschedule_session(group, &req.member_id, ctx);
    }
    let (codes, accepted) = accept_offsets(req.offsets, ctx);
    if !accepted.is_empty() {
        let position = ctx.next_position();
        ctx.out.append(
            group.partition,
            offset_records(&group.id, &accepted),
            OnDurable::ApplyOffsets {
                group: group.id.clone(),
                offsets: accepted,
                position,
            },
        );
    }
    ctx.out
        .reply_after_append(group.partition, id, Reply::Commit(codes));
}

/// TxnOffsetCommit (Kafka's `storeOffsets` with a producer id): the
/// offsets are written as one transactional batch of the producer and are
/// pending from now on (so a marker that overtakes the append's
/// completion still finds them); the answer comes once the batch is
/// durable, and a failed append drops them. They become visible when the
/// transaction commits ([`crate::Event::TxnCompleted`]). The group exists
/// (the caller creates an empty one, whatever the generation, as Kafka).
pub(crate) fn txn_commit(group: &mut Group, id: RequestId, req: TxnCommitRequest, ctx: &mut Ctx) {
    let valid = validate_commit(
        group,
        req.generation,
        &req.member_id,
        req.instance_id.as_deref(),
        true,
    );
    if let Err(error) = valid {
        ctx.out
            .reply(id, Reply::TxnCommit(vec![error; req.offsets.len()]));
        return;
    }
    let (codes, accepted) = accept_offsets(req.offsets, ctx);
    let producer = req.producer;
    if !accepted.is_empty() {
        let position = ctx.next_position();
        for (key, value) in &accepted {
            group.put_pending(
                producer.producer_id,
                key.clone(),
                value.clone(),
                position,
                false,
            );
        }
        log::debug!(
            "group {}: {} offset(s) pending in the transaction of {} (producer {}, epoch {})",
            group.id,
            accepted.len(),
            req.transactional_id,
            producer.producer_id,
            producer.producer_epoch
        );
        ctx.out.append_txn(
            group.partition,
            producer,
            offset_records(&group.id, &accepted),
            OnDurable::ApplyTxnOffsets {
                group: group.id.clone(),
                producer_id: producer.producer_id,
                keys: accepted.into_iter().map(|(key, _)| key).collect(),
                position,
            },
        );
    }
    ctx.out
        .reply_after_txn_append(group.partition, producer, id, Reply::TxnCommit(codes));
}

/// OffsetFetch: committed offsets, whatever the group's state (`None`
/// when the group does not exist). Offsets pending in open transactions
/// are not shown; with `require_stable` a partition that has some answers
/// UNSTABLE_OFFSET_COMMIT instead (Kafka lists every committed partition
/// when no partitions are named, and only those).
pub(crate) fn fetch(group: Option<&Group>, req: &FetchOffsetsRequest) -> FetchOffsetsResponse {
    let answer = |key: (String, i32), committed: Option<&CommittedOffset>| {
        let unstable = req.require_stable && group.is_some_and(|g| g.has_pending_offset(&key));
        let (topic, partition) = key;
        match committed {
            Some(o) if !unstable => FetchedOffset {
                topic,
                partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: Some(o.metadata.clone()),
                error: ErrorCode::None,
            },
            _ => FetchedOffset {
                topic,
                partition,
                offset: -1,
                leader_epoch: -1,
                metadata: Some(String::new()),
                error: if unstable {
                    ErrorCode::UnstableOffsetCommit
                } else {
                    ErrorCode::None
                },
            },
        }
    };
    let offsets = match &req.topics {
        None => group
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|(key, o)| answer(key.clone(), Some(o)))
                    .collect()
            })
            .unwrap_or_default(),
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.clone(), *p)))
            .map(|key| {
                let committed = group.and_then(|g| g.offsets.get(&key));
                answer(key, committed)
            })
            .collect(),
    };
    FetchOffsetsResponse {
        error: ErrorCode::None,
        offsets,
    }
}

/// OffsetDelete: offsets of topics the group does not consume (any topic
/// for an empty group). A group with members of another protocol type than
/// the consumer's cannot tell, and is refused.
pub(crate) fn offset_delete(
    group: &mut Group,
    id: RequestId,
    req: OffsetDeleteRequest,
    ctx: &mut Ctx,
) {
    let refuse = |ctx: &mut Ctx, error| {
        let reply = Reply::OffsetDelete(OffsetDeleteResponse {
            error,
            partitions: Vec::new(),
        });
        ctx.out.reply(id, reply);
    };
    match group.state {
        GroupState::Dead => return refuse(ctx, ErrorCode::GroupIdNotFound),
        GroupState::Empty => {}
        _ if group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) => {
            return refuse(ctx, ErrorCode::NonEmptyGroup)
        }
        _ => {}
    }
    let empty = group.state == GroupState::Empty;
    let mut codes = Vec::with_capacity(req.partitions.len());
    let mut keys = Vec::new();
    let mut records = Vec::new();
    for (topic, partition) in req.partitions {
        if !empty && group.is_subscribed_to(&topic) {
            codes.push(ErrorCode::GroupSubscribedToTopic);
            continue;
        }
        codes.push(ErrorCode::None);
        let key = (topic, partition);
        if group.offsets.contains_key(&key) || group.has_pending_offset(&key) {
            records.push((records::offset_key(&group.id, &key.0, key.1), None));
            keys.push(key);
        }
    }
    if !records.is_empty() {
        ctx.out.append(
            group.partition,
            records,
            OnDurable::RemoveOffsets {
                group: group.id.clone(),
                keys,
                forget_group: false,
            },
        );
    }
    let reply = Reply::OffsetDelete(OffsetDeleteResponse {
        error: ErrorCode::None,
        partitions: codes,
    });
    ctx.out.reply_after_append(group.partition, id, reply);
}

/// DeleteGroups for one group: only an empty group; it is Dead while its
/// tombstones are written, and gone once they are durable. Offsets pending
/// in open transactions are deleted too (Kafka writes their tombstones;
/// a later COMMIT finds nothing to apply).
pub(crate) fn delete_group(group: &mut Group, id: RequestId, ctx: &mut Ctx) {
    let refusal = match group.state {
        GroupState::Dead => Some(ErrorCode::GroupIdNotFound),
        GroupState::Empty => None,
        _ => Some(ErrorCode::NonEmptyGroup),
    };
    if let Some(error) = refusal {
        ctx.out.reply(id, Reply::Delete(error));
        return;
    }
    let mut keys: BTreeSet<&(String, i32)> = group.offsets.keys().collect();
    keys.extend(group.pending_txn_offsets.values().flat_map(|p| p.keys()));
    let mut records: Vec<_> = keys
        .into_iter()
        .map(|(topic, partition)| (records::offset_key(&group.id, topic, *partition), None))
        .collect();
    records.push((records::group_key(&group.id), None));
    let state_ms = group.state_ms;
    group.transition(GroupState::Dead, ctx.now_ms);
    ctx.timers.cancel_group(&group.id);
    ctx.out.append(
        group.partition,
        records,
        OnDurable::RemoveGroup {
            group: group.id.clone(),
            state_ms,
        },
    );
    ctx.out
        .reply_after_append(group.partition, id, Reply::Delete(ErrorCode::None));
}

/// The offsets of `group` past retention at `now_ms`, and whether the
/// group is then left with nothing and may go.
fn expired_offsets(group: &Group, retention_ms: i64, now_ms: i64) -> (Vec<(String, i32)>, bool) {
    let simple = group.protocol_type.is_none();
    let empty = group.state == GroupState::Empty;
    // What an offset's age counts from; None: it does not expire.
    let base = |o: &CommittedOffset| -> Option<i64> {
        if simple {
            Some(o.commit_ms)
        } else if empty {
            Some(group.state_ms)
        } else if group.state == GroupState::Stable
            && group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
        {
            Some(o.commit_ms)
        } else {
            None
        }
    };
    let subscribed = group.subscribed_topics();
    let mut expired = Vec::new();
    let mut all = true;
    for (key, o) in &group.offsets {
        let consumed = subscribed.as_ref().is_none_or(|s| s.contains(&key.0)) && !empty;
        let old = base(o).is_some_and(|b| b.saturating_add(retention_ms) <= now_ms);
        // An offset an open transaction is about to replace stays (Kafka).
        if !consumed && old && !group.has_pending_offset(key) {
            expired.push(key.clone());
        } else {
            all = false;
        }
    }
    let pending = !group.pending_txn_offsets.is_empty() || !group.pending_members.is_empty();
    (expired, all && empty && !pending)
}

/// Expires old offsets of one group (and the group, when nothing is left).
pub(crate) fn expire(group: &mut Group, ctx: &mut Ctx) {
    if group.state == GroupState::Dead {
        return;
    }
    let (keys, forget) = expired_offsets(group, ctx.config.offsets_retention_ms, ctx.now_ms);
    if keys.is_empty() && !forget {
        return;
    }
    let mut records: Vec<_> = keys
        .iter()
        .map(|(topic, partition)| (records::offset_key(&group.id, topic, *partition), None))
        .collect();
    if forget {
        records.push((records::group_key(&group.id), None));
    }
    if !keys.is_empty() {
        log::info!(
            "group {}: {} offset(s) past offsets.retention.minutes",
            group.id,
            keys.len()
        );
    }
    ctx.out.append(
        group.partition,
        records,
        OnDurable::RemoveOffsets {
            group: group.id.clone(),
            keys,
            forget_group: forget,
        },
    );
}

/// Applies durable offset commits whose records stand at `position`.
pub(crate) fn apply_offsets(
    group: &mut Group,
    offsets: &[((String, i32), CommittedOffset)],
    position: u64,
) {
    for (key, value) in offsets {
        group.put_committed(key.clone(), value.clone(), position);
    }
}

/// The outcome of a transactional offsets append: durable, the pending
/// offsets it wrote are marked so; failed, they go (unless the
/// transaction ended meanwhile, or a later commit of the same transaction
/// replaced them).
pub(crate) fn apply_txn_offsets(
    group: &mut Group,
    producer_id: i64,
    keys: &[(String, i32)],
    position: u64,
    durable: bool,
) {
    let Some(pending) = group.pending_txn_offsets.get_mut(&producer_id) else {
        return;
    };
    for key in keys {
        if pending.get(key).is_some_and(|p| p.position == position) {
            if durable {
                if let Some(p) = pending.get_mut(key) {
                    p.durable = true;
                }
            } else {
                pending.remove(key);
            }
        }
    }
    if pending.is_empty() {
        group.pending_txn_offsets.remove(&producer_id);
    }
}

/// Applies durable offset deletions; true when the group should go.
pub(crate) fn remove_offsets(
    group: &mut Group,
    keys: &[(String, i32)],
    forget_group: bool,
) -> bool {
    for key in keys {
        group.remove_offset(key);
    }
    forget_group && group.is_forgettable()
}

#[cfg(test)]
mod tests {
    use crate::config::CoordinatorConfig;
    use crate::harness::*;
    use crate::types::*;
    use ringbroker_protocol::errors::ErrorCode;

    fn offsets(pairs: &[(&str, i32, i64)]) -> Vec<(String, i32, i64)> {
        pairs
            .iter()
            .map(|(t, p, o)| (t.to_string(), *p, *o))
            .collect()
    }

    #[test]
    fn commits_are_answered_and_visible_once_durable() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 1);
        h.auto_ack = false;
        let c = h.commit("g", generation, &ids[0], &[("t", 0, 5), ("t", 1, 7)]);
        assert!(!h.answered(c));
        assert!(h.fetch("g").is_empty(), "not durable, not visible");
        h.complete_all(Ok(()));
        assert_eq!(h.commit_reply(c), vec![ErrorCode::None, ErrorCode::None]);
        assert_eq!(h.fetch("g"), offsets(&[("t", 0, 5), ("t", 1, 7)]));
        let id = h.send(Request::FetchOffsets(FetchOffsetsRequest {
            group: "g".into(),
            topics: Some(vec![TopicPartitions {
                topic: "t".into(),
                partitions: vec![1, 9],
            }]),
            require_stable: false,
        }));
        match h.take(id) {
            Some(Reply::FetchOffsets(r)) => {
                let got: Vec<(i32, i64)> =
                    r.offsets.iter().map(|o| (o.partition, o.offset)).collect();
                assert_eq!(got, vec![(1, 7), (9, -1)]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failed_commits_map_errors_and_change_nothing() {
        for (append_error, expected) in [
            (ErrorCode::KafkaStorageError, ErrorCode::NotCoordinator),
            (
                ErrorCode::RequestTimedOut,
                ErrorCode::CoordinatorNotAvailable,
            ),
            (
                ErrorCode::MessageTooLarge,
                ErrorCode::InvalidCommitOffsetSize,
            ),
        ] {
            let mut h = Harness::new(config());
            h.auto_ack = false;
            let c = h.send(Request::Commit(CommitRequest {
                group: "g".into(),
                generation: -1,
                member_id: String::new(),
                instance_id: None,
                offsets: vec![
                    OffsetCommit {
                        topic: "t".into(),
                        partition: 0,
                        offset: 1,
                        leader_epoch: 3,
                        metadata: None,
                        rejected: None,
                    },
                    OffsetCommit {
                        topic: "gone".into(),
                        partition: 0,
                        offset: 1,
                        leader_epoch: -1,
                        metadata: None,
                        rejected: Some(ErrorCode::UnknownTopicOrPartition),
                    },
                    OffsetCommit {
                        topic: "t".into(),
                        partition: 1,
                        offset: 1,
                        leader_epoch: -1,
                        metadata: Some("m".repeat(crate::config::OFFSET_METADATA_MAX_BYTES + 1)),
                        rejected: None,
                    },
                ],
            }));
            h.complete_all(Err(append_error));
            assert_eq!(
                h.commit_reply(c),
                vec![
                    expected,
                    ErrorCode::UnknownTopicOrPartition,
                    ErrorCode::OffsetMetadataTooLarge
                ]
            );
            assert!(h.fetch("g").is_empty());
        }
    }

    #[test]
    fn commit_rules_by_group_state() {
        let mut h = Harness::new(config());
        // Outside group management: into a new or empty group only.
        let c = h.commit("simple", -1, "", &[("t", 0, 3)]);
        assert_eq!(h.commit_reply(c), vec![ErrorCode::None]);
        let c = h.commit("missing", 4, "m", &[("t", 0, 3)]);
        assert_eq!(h.commit_reply(c), vec![ErrorCode::IllegalGeneration]);
        let (generation, ids) = h.stable_group("g", 1);
        let c = h.commit("g", -1, "", &[("t", 0, 3)]);
        assert_eq!(h.commit_reply(c), vec![ErrorCode::UnknownMemberId]);
        let c = h.commit("g", generation + 1, &ids[0], &[("t", 0, 3)]);
        assert_eq!(h.commit_reply(c), vec![ErrorCode::IllegalGeneration]);
        let c = h.commit("g", generation, "stranger", &[("t", 0, 3)]);
        assert_eq!(h.commit_reply(c), vec![ErrorCode::UnknownMemberId]);
        // During PreparingRebalance commits are still taken...
        let (jb, _) = h.join_new("g");
        let c = h.commit("g", generation, &ids[0], &[("t", 0, 4)]);
        assert_eq!(h.commit_reply(c), vec![ErrorCode::None]);
        // ...but not while the members wait for the new assignment.
        let ja = h.join("g", &ids[0], None);
        let next = h.join_reply(ja).generation;
        h.join_reply(jb);
        let c = h.commit("g", next, &ids[0], &[("t", 0, 5)]);
        assert_eq!(h.commit_reply(c), vec![ErrorCode::RebalanceInProgress]);
        assert_eq!(h.fetch("g"), offsets(&[("t", 0, 4)]));
    }

    #[test]
    fn appends_complete_in_log_order() {
        let mut h = Harness::new(config());
        h.auto_ack = false;
        let first = h.commit("g", -1, "", &[("t", 0, 1)]);
        let second = h.commit("g", -1, "", &[("t", 0, 2)]);
        let later = h.appends[1].0;
        h.complete(later, Ok(()));
        assert!(
            !h.answered(second),
            "held until the earlier append completes"
        );
        let earlier = h.appends[0].0;
        h.complete(earlier, Ok(()));
        assert!(h.answered(first) && h.answered(second));
        assert_eq!(
            h.fetch("g"),
            offsets(&[("t", 0, 2)]),
            "the later commit wins"
        );
    }

    #[test]
    fn failed_deletion_makes_the_group_empty_again() {
        let mut h = Harness::new(config());
        let c = h.commit("g", -1, "", &[("t", 0, 1)]);
        h.commit_reply(c);
        h.auto_ack = false;
        let d = h.delete("g");
        assert_eq!(h.state("g"), Some(GroupState::Dead));
        h.complete_all(Err(ErrorCode::KafkaStorageError));
        assert_eq!(h.take(d), Some(Reply::Delete(ErrorCode::NotCoordinator)));
        assert_eq!(h.state("g"), Some(GroupState::Empty));
        assert_eq!(h.fetch("g"), offsets(&[("t", 0, 1)]));
        let d = h.delete("missing");
        assert_eq!(h.take(d), Some(Reply::Delete(ErrorCode::GroupIdNotFound)));
    }

    #[test]
    fn offset_delete_spares_subscribed_topics() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 1);
        let c = h.commit("g", generation, &ids[0], &[("t", 0, 1), ("u", 0, 2)]);
        h.commit_reply(c);
        let id = h.send(Request::OffsetDelete(OffsetDeleteRequest {
            group: "g".into(),
            partitions: vec![("t".into(), 0), ("u".into(), 0), ("v".into(), 0)],
        }));
        assert_eq!(
            h.take(id),
            Some(Reply::OffsetDelete(OffsetDeleteResponse {
                error: ErrorCode::None,
                partitions: vec![
                    ErrorCode::GroupSubscribedToTopic,
                    ErrorCode::None,
                    ErrorCode::None
                ],
            }))
        );
        assert_eq!(h.fetch("g"), offsets(&[("t", 0, 1)]));
        let id = h.send(Request::OffsetDelete(OffsetDeleteRequest {
            group: "missing".into(),
            partitions: vec![("t".into(), 0)],
        }));
        assert_eq!(
            h.take(id),
            Some(Reply::OffsetDelete(OffsetDeleteResponse {
                error: ErrorCode::GroupIdNotFound,
                partitions: vec![],
            }))
        );
        // A group of another protocol type cannot tell what it consumes.
        let mut r = h.join_request("c", "", None);
        r.protocol_type = "connect".into();
        r.require_known_member_id = false;
        let j = h.send(Request::Join(r));
        h.advance(0);
        h.join_reply(j);
        let id = h.send(Request::OffsetDelete(OffsetDeleteRequest {
            group: "c".into(),
            partitions: vec![("t".into(), 0)],
        }));
        assert_eq!(
            h.take(id),
            Some(Reply::OffsetDelete(OffsetDeleteResponse {
                error: ErrorCode::NonEmptyGroup,
                partitions: vec![],
            }))
        );
    }

    #[test]
    fn old_offsets_expire_by_kafkas_rules() {
        let retention = 60_000;
        let mut h = Harness::new(CoordinatorConfig {
            offsets_retention_ms: retention,
            offsets_retention_check_interval_ms: 10_000,
            ..config()
        });
        // A group that only stores offsets: by commit time.
        let c = h.commit("simple", -1, "", &[("t", 0, 1)]);
        h.commit_reply(c);
        // A consumer group with members: only topics it no longer reads.
        let (generation, ids) = h.stable_group("live", 1);
        let c = h.commit("live", generation, &ids[0], &[("t", 0, 1), ("u", 0, 1)]);
        h.commit_reply(c);
        // A group that went empty: from when it did.
        let (generation, ids) = h.stable_group("left", 1);
        let c = h.commit("left", generation, &ids[0], &[("t", 0, 1)]);
        h.commit_reply(c);
        let left = (generation, ids[0].clone());
        let live =
            h.c.group("live")
                .expect("live")
                .members
                .keys()
                .next()
                .cloned()
                .expect("member");
        let live_generation = h.c.group("live").expect("live").generation;
        let mut elapsed = 0;
        while elapsed < retention + 10_000 {
            h.advance(5_000);
            elapsed += 5_000;
            assert_eq!(h.heartbeat("live", live_generation, &live), ErrorCode::None);
            if elapsed < 30_000 {
                assert_eq!(h.heartbeat("left", left.0, &left.1), ErrorCode::None);
            } else if elapsed == 30_000 {
                let l = h.leave("left", &[(&left.1, None)]);
                h.take(l);
            }
        }
        assert_eq!(h.state("simple"), None, "simple group expired and gone");
        assert_eq!(h.fetch("live"), offsets(&[("t", 0, 1)]));
        assert_eq!(
            h.fetch("left"),
            offsets(&[("t", 0, 1)]),
            "empty for less than the retention"
        );
        h.advance(30_000);
        assert_eq!(h.state("left"), None);
    }
}

#[cfg(test)]
mod txn_tests {
    //! Transactional offsets: TxnOffsetCommit, markers, and their replay.

    use crate::config::CoordinatorConfig;
    use crate::effects::Event;
    use crate::harness::*;
    use crate::types::*;
    use ringbroker_protocol::errors::ErrorCode;

    const PID: i64 = 7;

    fn committed(h: &mut Harness, group: &str) -> Vec<(i32, i64)> {
        h.fetch(group)
            .into_iter()
            .map(|(_, partition, offset)| (partition, offset))
            .collect()
    }

    #[test]
    fn pending_offsets_are_invisible_until_the_transaction_commits() {
        let mut h = Harness::new(config());
        let c = h.commit("g", -1, "", &[("t", 0, 5)]);
        assert_eq!(h.commit_reply(c), vec![ErrorCode::None]);
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 10), ("t", 1, 11)]);
        assert_eq!(
            h.txn_commit_reply(t),
            vec![ErrorCode::None, ErrorCode::None]
        );
        // One transactional batch of the producer.
        let p = h.c.partition_of("g");
        match h.log[&p].last() {
            Some(Logged::Batch {
                producer: Some(producer),
                records,
            }) => {
                assert_eq!(producer.producer_id, PID);
                assert_eq!(records.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(committed(&mut h, "g"), vec![(0, 5)]);
        assert_eq!(
            h.fetch_stable("g", &[0, 1], false),
            vec![(0, 5, ErrorCode::None), (1, -1, ErrorCode::None)]
        );
        assert_eq!(
            h.fetch_stable("g", &[0, 1, 2], true),
            vec![
                (0, -1, ErrorCode::UnstableOffsetCommit),
                (1, -1, ErrorCode::UnstableOffsetCommit),
                (2, -1, ErrorCode::None)
            ]
        );
        // Every committed partition, when none are named.
        let id = h.send(Request::FetchOffsets(FetchOffsetsRequest {
            group: "g".into(),
            topics: None,
            require_stable: true,
        }));
        match h.take(id) {
            Some(Reply::FetchOffsets(r)) => {
                let got: Vec<_> = r
                    .offsets
                    .iter()
                    .map(|o| (o.partition, o.offset, o.error))
                    .collect();
                assert_eq!(got, vec![(0, -1, ErrorCode::UnstableOffsetCommit)]);
            }
            other => panic!("{other:?}"),
        }
        // Another producer's marker changes nothing.
        h.marker("g", PID + 1, true);
        assert_eq!(committed(&mut h, "g"), vec![(0, 5)]);
        h.marker("g", PID, true);
        assert_eq!(committed(&mut h, "g"), vec![(0, 10), (1, 11)]);
        assert_eq!(
            h.fetch_stable("g", &[0, 1], true),
            vec![(0, 10, ErrorCode::None), (1, 11, ErrorCode::None)]
        );
        assert!(h.c.group("g").expect("g").pending_txn_offsets.is_empty());
    }

    #[test]
    fn abort_drops_pending_offsets() {
        let mut h = Harness::new(config());
        let c = h.commit("g", -1, "", &[("t", 0, 5)]);
        h.commit_reply(c);
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 10)]);
        h.txn_commit_reply(t);
        // A group only a transaction wrote to.
        let t = h.txn_commit("only-txn", PID, -1, "", &[("t", 0, 3)]);
        h.txn_commit_reply(t);
        h.marker("g", PID, false);
        h.marker("only-txn", PID, false);
        assert_eq!(committed(&mut h, "g"), vec![(0, 5)]);
        assert_eq!(
            h.fetch_stable("g", &[0], true),
            vec![(0, 5, ErrorCode::None)]
        );
        assert!(committed(&mut h, "only-txn").is_empty());
        assert!(h.c.group("only-txn").expect("kept").is_forgettable());
        // A commit marker after the abort finds nothing.
        h.marker("g", PID, true);
        assert_eq!(committed(&mut h, "g"), vec![(0, 5)]);
    }

    #[test]
    fn the_commit_last_in_the_log_wins() {
        // Transactional first, plain later: the plain one stays.
        let mut h = Harness::new(config());
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 10)]);
        h.txn_commit_reply(t);
        let c = h.commit("g", -1, "", &[("t", 0, 20)]);
        h.commit_reply(c);
        assert_eq!(
            h.fetch_stable("g", &[0], true),
            vec![(0, -1, ErrorCode::UnstableOffsetCommit)],
            "still pending until the marker"
        );
        h.marker("g", PID, true);
        assert_eq!(committed(&mut h, "g"), vec![(0, 20)]);
        assert_eq!(committed(&mut h.reloaded(), "g"), vec![(0, 20)]);
        // Plain first, transactional later: the transaction's.
        let mut h = Harness::new(config());
        let c = h.commit("g", -1, "", &[("t", 0, 20)]);
        h.commit_reply(c);
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 10)]);
        h.txn_commit_reply(t);
        h.marker("g", PID, true);
        assert_eq!(committed(&mut h, "g"), vec![(0, 10)]);
        assert_eq!(committed(&mut h.reloaded(), "g"), vec![(0, 10)]);
        // Two transactions: the later-written one wins whatever the order
        // of the markers.
        let mut h = Harness::new(config());
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 1)]);
        h.txn_commit_reply(t);
        let t = h.txn_commit("g", PID + 1, -1, "", &[("t", 0, 2)]);
        h.txn_commit_reply(t);
        h.marker("g", PID + 1, true);
        h.marker("g", PID, true);
        assert_eq!(committed(&mut h, "g"), vec![(0, 2)]);
        assert_eq!(committed(&mut h.reloaded(), "g"), vec![(0, 2)]);
    }

    #[test]
    fn replay_of_transactional_batches_and_markers() {
        let mut h = Harness::new(config());
        // Committed, aborted, and interleaved with a plain commit.
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 10)]);
        h.txn_commit_reply(t);
        let c = h.commit("g", -1, "", &[("t", 1, 50)]);
        h.commit_reply(c);
        let t = h.txn_commit("g", PID + 1, -1, "", &[("t", 1, 60), ("t", 2, 61)]);
        h.txn_commit_reply(t);
        h.marker("g", PID, true);
        h.marker("g", PID + 1, false);
        let mut fresh = h.reloaded();
        assert_eq!(committed(&mut fresh, "g"), vec![(0, 10), (1, 50)]);
        assert!(fresh
            .c
            .group("g")
            .expect("g")
            .pending_txn_offsets
            .is_empty());
        assert_eq!(
            fresh.fetch_stable("g", &[0, 1, 2], true),
            vec![
                (0, 10, ErrorCode::None),
                (1, 50, ErrorCode::None),
                (2, -1, ErrorCode::None)
            ]
        );
        // A group whose only offsets were aborted is not loaded.
        let mut h = Harness::new(config());
        let t = h.txn_commit("gone", PID, -1, "", &[("t", 0, 1)]);
        h.txn_commit_reply(t);
        h.marker("gone", PID, false);
        assert_eq!(h.reloaded().state("gone"), None);
    }

    #[test]
    fn pending_offsets_survive_a_load_without_their_marker() {
        let mut h = Harness::new(config());
        let c = h.commit("g", -1, "", &[("t", 0, 5)]);
        h.commit_reply(c);
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 10)]);
        h.txn_commit_reply(t);
        let t = h.txn_commit("pending-only", PID, -1, "", &[("t", 3, 30)]);
        h.txn_commit_reply(t);
        let mut fresh = h.reloaded();
        assert_eq!(committed(&mut fresh, "g"), vec![(0, 5)]);
        assert_eq!(
            fresh.fetch_stable("g", &[0], true),
            vec![(0, -1, ErrorCode::UnstableOffsetCommit)]
        );
        assert_eq!(fresh.state("pending-only"), Some(GroupState::Empty));
        // The markers come after the load (one per offsets partition).
        fresh.marker("g", PID, true);
        assert_eq!(committed(&mut fresh, "g"), vec![(0, 10)]);
        if fresh.c.partition_of("pending-only") != fresh.c.partition_of("g") {
            assert!(committed(&mut fresh, "pending-only").is_empty());
            fresh.marker("pending-only", PID, true);
        }
        assert_eq!(committed(&mut fresh, "pending-only"), vec![(3, 30)]);
        // And a third coordinator reads the same from the log.
        assert_eq!(committed(&mut fresh.reloaded(), "g"), vec![(0, 10)]);
    }

    #[test]
    fn generation_member_and_instance_are_checked() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 1);
        let t = h.txn_commit("g", PID, generation + 1, &ids[0], &[("t", 0, 1)]);
        assert_eq!(h.txn_commit_reply(t), vec![ErrorCode::IllegalGeneration]);
        let t = h.txn_commit("g", PID, generation, "stranger", &[("t", 0, 1)]);
        assert_eq!(h.txn_commit_reply(t), vec![ErrorCode::UnknownMemberId]);
        let t = h.txn_commit("g", PID, generation, &ids[0], &[("t", 0, 1)]);
        assert_eq!(h.txn_commit_reply(t), vec![ErrorCode::None]);
        // Before v3 there is no member: accepted even with members.
        let t = h.txn_commit("g", PID, -1, "", &[("t", 1, 1)]);
        assert_eq!(h.txn_commit_reply(t), vec![ErrorCode::None]);
        let (sgen, sids) = h.stable_static_group("s", &["i1"]);
        let t = h.send(Request::TxnCommit(TxnCommitRequest {
            group: "s".into(),
            transactional_id: "tx".into(),
            producer: TxnProducer {
                producer_id: PID,
                producer_epoch: 0,
            },
            generation: sgen,
            member_id: format!("{}-old", sids[0]),
            instance_id: Some("i1".into()),
            offsets: vec![OffsetCommit {
                topic: "t".into(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: Some("m".repeat(crate::config::OFFSET_METADATA_MAX_BYTES + 1)),
                rejected: None,
            }],
        }));
        assert_eq!(h.txn_commit_reply(t), vec![ErrorCode::FencedInstanceId]);
        // Per-partition refusals.
        let t = h.send(Request::TxnCommit(TxnCommitRequest {
            group: "s".into(),
            transactional_id: "tx".into(),
            producer: TxnProducer {
                producer_id: PID,
                producer_epoch: 0,
            },
            generation: sgen,
            member_id: sids[0].clone(),
            instance_id: Some("i1".into()),
            offsets: vec![
                OffsetCommit {
                    topic: "t".into(),
                    partition: 0,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: Some("m".repeat(crate::config::OFFSET_METADATA_MAX_BYTES + 1)),
                    rejected: None,
                },
                OffsetCommit {
                    topic: "gone".into(),
                    partition: 0,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: None,
                    rejected: Some(ErrorCode::UnknownTopicOrPartition),
                },
            ],
        }));
        assert_eq!(
            h.txn_commit_reply(t),
            vec![
                ErrorCode::OffsetMetadataTooLarge,
                ErrorCode::UnknownTopicOrPartition
            ]
        );
        assert!(h.c.group("s").expect("s").pending_txn_offsets.is_empty());
    }

    #[test]
    fn failed_appends_drop_pending_offsets_and_markers_may_overtake_completions() {
        let mut h = Harness::new(config());
        h.auto_ack = false;
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 10)]);
        assert!(!h.answered(t));
        assert_eq!(
            h.fetch_stable("g", &[0], true),
            vec![(0, -1, ErrorCode::UnstableOffsetCommit)],
            "pending from the request on"
        );
        h.complete_all(Err(ErrorCode::NotLeaderOrFollower));
        assert_eq!(h.txn_commit_reply(t), vec![ErrorCode::NotCoordinator]);
        assert_eq!(
            h.fetch_stable("g", &[0], true),
            vec![(0, -1, ErrorCode::None)]
        );
        // The marker is reported before the append's completion.
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 11)]);
        h.marker("g", PID, true);
        h.complete_all(Ok(()));
        assert_eq!(h.txn_commit_reply(t), vec![ErrorCode::None]);
        assert_eq!(committed(&mut h, "g"), vec![(0, 11)]);
        // Markers of partitions not loaded here are ignored.
        let other = OffsetsPartition(99);
        h.step(Event::TxnCompleted {
            partition: other,
            producer_id: PID,
            commit: true,
        });
        assert_eq!(h.unanswered(), 0);
    }

    #[test]
    fn deletion_and_expiry_respect_pending_offsets() {
        let retention = 60_000;
        let mut h = Harness::new(CoordinatorConfig {
            offsets_retention_ms: retention,
            offsets_retention_check_interval_ms: 10_000,
            ..config()
        });
        let c = h.commit("g", -1, "", &[("t", 0, 1), ("t", 1, 1)]);
        h.commit_reply(c);
        let t = h.txn_commit("g", PID, -1, "", &[("t", 0, 2)]);
        h.txn_commit_reply(t);
        let t = h.txn_commit("pending-only", PID, -1, "", &[("t", 0, 2)]);
        h.txn_commit_reply(t);
        h.advance(retention + 20_000);
        // Partition 1 expired; partition 0 is about to be replaced; the
        // group holding only pending offsets is still there.
        assert_eq!(committed(&mut h, "g"), vec![(0, 1)]);
        assert_eq!(h.state("pending-only"), Some(GroupState::Empty));
        // DeleteGroups deletes pending offsets too.
        let d = h.delete("pending-only");
        assert_eq!(h.take(d), Some(Reply::Delete(ErrorCode::None)));
        assert_eq!(h.state("pending-only"), None);
        let tombstones = h
            .entries(h.c.partition_of("pending-only"))
            .into_iter()
            .filter(|e| {
                matches!(e, crate::records::Entry::Offset { group, value: None, .. } if group == "pending-only")
            })
            .count();
        assert_eq!(tombstones, 1);
        h.marker("pending-only", PID, true);
        assert_eq!(h.state("pending-only"), None);
        assert_eq!(h.reloaded().state("pending-only"), None);
        // OffsetDelete removes the pending offset of its partition.
        let id = h.send(Request::OffsetDelete(OffsetDeleteRequest {
            group: "g".into(),
            partitions: vec![("t".into(), 0)],
        }));
        h.take(id);
        h.marker("g", PID, true);
        assert!(committed(&mut h, "g").is_empty());
        assert!(committed(&mut h.reloaded(), "g").is_empty());
    }
}
