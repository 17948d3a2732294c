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
//! - an empty group left with nothing is deleted.

use ringbroker_protocol::errors::ErrorCode;

use crate::effects::{Ctx, OnDurable};
use crate::group::{Group, CONSUMER_PROTOCOL_TYPE};
use crate::membership;
use crate::records::{self, CommittedOffset};
use crate::types::{
    CommitRequest, FetchOffsetsRequest, FetchOffsetsResponse, FetchedOffset, GroupState,
    OffsetDeleteRequest, OffsetDeleteResponse, Reply, RequestId,
};

/// Checks an OffsetCommit against the group (Kafka's rules): commits
/// outside group management (generation < 0, no member) only into an
/// empty group; otherwise a known member of the current generation, and
/// not while the group waits for its assignment.
fn validate_commit(group: &Group, req: &CommitRequest) -> Result<(), ErrorCode> {
    if group.state == GroupState::Dead {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    if req.generation < 0 && group.state == GroupState::Empty {
        return Ok(());
    }
    if req.generation >= 0 || !req.member_id.is_empty() || req.instance_id.is_some() {
        group.validate_member(&req.member_id, req.instance_id.as_deref())?;
        if req.generation != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
    } else if group.state != GroupState::Empty {
        return Err(ErrorCode::UnknownMemberId);
    }
    if group.state == GroupState::CompletingRebalance {
        return Err(ErrorCode::RebalanceInProgress);
    }
    Ok(())
}

/// OffsetCommit. The group exists (the caller creates an empty one for a
/// commit outside group management).
pub(crate) fn commit(group: &mut Group, id: RequestId, req: CommitRequest, ctx: &mut Ctx) {
    if let Err(error) = validate_commit(group, &req) {
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
    let mut codes = Vec::with_capacity(req.offsets.len());
    let mut records = Vec::new();
    let mut accepted = Vec::new();
    for o in req.offsets {
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
        records.push((
            records::offset_key(&group.id, &o.topic, o.partition),
            Some(records::offset_value(&value)),
        ));
        accepted.push(((o.topic, o.partition), value));
    }
    if !records.is_empty() {
        ctx.out.append(
            group.partition,
            records,
            OnDurable::ApplyOffsets {
                group: group.id.clone(),
                offsets: accepted,
            },
        );
    }
    ctx.out
        .reply_after_append(group.partition, id, Reply::Commit(codes));
}

/// OffsetFetch: committed offsets, whatever the group's state (`None`
/// when the group does not exist).
pub(crate) fn fetch(group: Option<&Group>, req: &FetchOffsetsRequest) -> FetchOffsetsResponse {
    let offsets = match &req.topics {
        None => group
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|((topic, partition), o)| FetchedOffset {
                        topic: topic.clone(),
                        partition: *partition,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: Some(o.metadata.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Some(topics) => topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (&t.topic, *p)))
            .map(|(topic, partition)| {
                let found = group.and_then(|g| g.offsets.get(&(topic.clone(), partition)));
                match found {
                    Some(o) => FetchedOffset {
                        topic: topic.clone(),
                        partition,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: Some(o.metadata.clone()),
                    },
                    None => FetchedOffset {
                        topic: topic.clone(),
                        partition,
                        offset: -1,
                        leader_epoch: -1,
                        metadata: Some(String::new()),
                    },
                }
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
        if group.offsets.contains_key(&(topic.clone(), partition)) {
            records.push((records::offset_key(&group.id, &topic, partition), None));
            keys.push((topic, partition));
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
/// tombstones are written, and gone once they are durable.
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
    let mut records: Vec<_> = group
        .offsets
        .keys()
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
    for ((topic, partition), o) in &group.offsets {
        let consumed = subscribed.as_ref().is_none_or(|s| s.contains(topic)) && !empty;
        let old = base(o).is_some_and(|b| b.saturating_add(retention_ms) <= now_ms);
        if !consumed && old {
            expired.push((topic.clone(), *partition));
        } else {
            all = false;
        }
    }
    (expired, all && empty && group.pending_members.is_empty())
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

/// Applies durable offset commits.
pub(crate) fn apply_offsets(group: &mut Group, offsets: &[((String, i32), CommittedOffset)]) {
    for (key, value) in offsets {
        group.offsets.insert(key.clone(), value.clone());
    }
}

/// Applies durable offset deletions; true when the group should go.
pub(crate) fn remove_offsets(
    group: &mut Group,
    keys: &[(String, i32)],
    forget_group: bool,
) -> bool {
    for key in keys {
        group.offsets.remove(key);
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
