//! Membership and rebalancing of a classic group: JoinGroup, SyncGroup,
//! Heartbeat and LeaveGroup, the rebalance that runs
//! Empty/Stable → PreparingRebalance → CompletingRebalance → Stable, and
//! the deadlines that keep it moving (sessions, the join phase, the sync
//! phase, the initial delay).
//!
//! The rules are Kafka's classic group coordinator's:
//! - every member has a session deadline, re-armed by heartbeats and by
//!   the completion of its JoinGroup or SyncGroup; when it passes, in any
//!   state, the member is removed unless it is waiting in a JoinGroup (and
//!   not new) or in a SyncGroup, and the rebalance goes on without it;
//! - the join phase ends when every member has rejoined, or at the largest
//!   rebalance timeout, dropping dynamic members that did not rejoin
//!   (static members stay and expire with their session);
//! - the sync phase ends when the leader's assignment is durable; members
//!   that have not sent SyncGroup within the rebalance timeout are removed.

use std::collections::HashMap;

use bytes::Bytes;
use ringbroker_protocol::errors::ErrorCode;

use crate::effects::{Ctx, OnDurable, StaticRejoin};
use crate::group::{Group, Member};
use crate::records;
use crate::timers::{TimerAction, TimerKey};
use crate::types::{
    GroupState, HeartbeatRequest, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, Reply,
    RequestId, SyncRequest, SyncResponse,
};

fn session_key(group: &Group, member: &str) -> TimerKey {
    TimerKey::Session {
        group: group.id.clone(),
        member: member.to_string(),
    }
}

fn join_key(group: &Group) -> TimerKey {
    TimerKey::Join {
        group: group.id.clone(),
    }
}

fn sync_key(group: &Group) -> TimerKey {
    TimerKey::Sync {
        group: group.id.clone(),
    }
}

/// (Re)arms a member's session deadline `timeout_ms` from now.
fn schedule_session(group: &Group, member: &str, timeout_ms: i64, ctx: &mut Ctx) {
    ctx.timers.schedule(
        session_key(group, member),
        ctx.now_ms.saturating_add(timeout_ms),
        TimerAction::ExpireSession,
    );
}

/// Re-arms a member's session with its own session timeout.
pub(crate) fn reschedule_session(group: &Group, member: &str, ctx: &mut Ctx) {
    let timeout = group
        .members
        .get(member)
        .map_or(0, |m| i64::from(m.session_timeout_ms.max(0)));
    schedule_session(group, member, timeout, ctx);
}

/// The answer for a member of the current generation.
fn generation_reply(group: &Group, member_id: &str, with_members: bool) -> JoinResponse {
    JoinResponse {
        error: ErrorCode::None,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        skip_assignment: false,
        members: if with_members {
            group.joined_members()
        } else {
            Vec::new()
        },
    }
}

fn rebalance_timeout_of(req: &JoinRequest) -> i32 {
    if req.rebalance_timeout_ms > 0 {
        req.rebalance_timeout_ms
    } else {
        req.session_timeout_ms
    }
}

/// True when the group may take one more joining member.
fn accepts_joining_member(group: &Group, member_id: &str, ctx: &Ctx) -> bool {
    let max = ctx.config.group_members_max;
    match group.state {
        GroupState::Empty | GroupState::Dead => true,
        // Members waiting in JoinGroup count, so a group above the bound
        // (the bound was lowered) sheds the last to rejoin.
        GroupState::PreparingRebalance => {
            group
                .members
                .get(member_id)
                .is_some_and(|m| m.awaiting_join.is_some())
                || group
                    .members
                    .values()
                    .filter(|m| m.awaiting_join.is_some())
                    .count()
                    < max
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            group.members.contains_key(member_id) || group.members.len() < max
        }
    }
}

/// JoinGroup. The request was checked for shape (group id, session
/// timeout, protocol list) by the caller.
pub(crate) fn join(group: &mut Group, id: RequestId, req: JoinRequest, ctx: &mut Ctx) {
    if group.state == GroupState::Dead {
        let reply = JoinResponse::error(ErrorCode::CoordinatorNotAvailable, &req.member_id);
        ctx.out.reply(id, Reply::Join(reply));
        return;
    }
    if !accepts_joining_member(group, &req.member_id, ctx) {
        if group.members.contains_key(&req.member_id) {
            remove_member_and_update_group(group, &req.member_id.clone(), ctx);
        }
        let reply = JoinResponse::error(ErrorCode::GroupMaxSizeReached, "");
        ctx.out.reply(id, Reply::Join(reply));
        return;
    }
    if req.member_id.is_empty() {
        join_new_member(group, id, req, ctx);
    } else {
        join_existing_member(group, id, req, ctx);
    }
}

fn join_new_member(group: &mut Group, id: RequestId, req: JoinRequest, ctx: &mut Ctx) {
    if !group.supports_protocols(&req.protocol_type, &req.protocols) {
        let reply = JoinResponse::error(ErrorCode::InconsistentGroupProtocol, "");
        ctx.out.reply(id, Reply::Join(reply));
        return;
    }
    let prefix = req.instance_id.as_deref().unwrap_or(&req.client_id);
    let new_id = ctx.ids.next(prefix);
    if let Some(instance) = req.instance_id.clone() {
        match group.static_members.get(&instance).cloned() {
            Some(old_id) => rejoin_static_member(group, id, req, &instance, &old_id, &new_id, ctx),
            None => add_member_then_rebalance(group, id, req, new_id, ctx),
        }
    } else if req.require_known_member_id {
        if group.pending_members.len() >= ctx.config.pending_members_max {
            let reply = JoinResponse::error(ErrorCode::GroupMaxSizeReached, "");
            ctx.out.reply(id, Reply::Join(reply));
            return;
        }
        // KIP-394: the member gets an id and must join again with it
        // within its session timeout.
        group.pending_members.insert(new_id.clone());
        schedule_session(group, &new_id, i64::from(req.session_timeout_ms), ctx);
        let reply = JoinResponse::error(ErrorCode::MemberIdRequired, &new_id);
        ctx.out.reply(id, Reply::Join(reply));
    } else {
        add_member_then_rebalance(group, id, req, new_id, ctx);
    }
}

fn join_existing_member(group: &mut Group, id: RequestId, req: JoinRequest, ctx: &mut Ctx) {
    let member_id = req.member_id.clone();
    if !group.supports_protocols(&req.protocol_type, &req.protocols) {
        let reply = JoinResponse::error(ErrorCode::InconsistentGroupProtocol, &member_id);
        ctx.out.reply(id, Reply::Join(reply));
        return;
    }
    if group.pending_members.contains(&member_id) {
        if req.instance_id.is_some() {
            // Pending ids are only handed to dynamic members.
            let reply = JoinResponse::error(ErrorCode::UnknownMemberId, &member_id);
            ctx.out.reply(id, Reply::Join(reply));
            return;
        }
        add_member_then_rebalance(group, id, req, member_id, ctx);
        return;
    }
    if let Err(error) = group.validate_member(&member_id, req.instance_id.as_deref()) {
        ctx.out
            .reply(id, Reply::Join(JoinResponse::error(error, &member_id)));
        return;
    }
    let matches = group.members[&member_id].matches(&req.protocols);
    match group.state {
        GroupState::PreparingRebalance => update_member_then_rebalance(group, id, req, ctx),
        GroupState::CompletingRebalance if matches => {
            // The member lost the JoinGroup answer: give it again.
            let leader = group.is_leader(&member_id);
            let reply = generation_reply(group, &member_id, leader);
            ctx.out.reply(id, Reply::Join(reply));
        }
        GroupState::CompletingRebalance => update_member_then_rebalance(group, id, req, ctx),
        GroupState::Stable if group.is_leader(&member_id) || !matches => {
            // A leader's JoinGroup asks for a rebalance (its assignment
            // may depend on things the metadata does not show).
            update_member_then_rebalance(group, id, req, ctx)
        }
        GroupState::Stable => {
            let reply = generation_reply(group, &member_id, false);
            ctx.out.reply(id, Reply::Join(reply));
        }
        GroupState::Empty | GroupState::Dead => {
            let reply = JoinResponse::error(ErrorCode::UnknownMemberId, &member_id);
            ctx.out.reply(id, Reply::Join(reply));
        }
    }
}

fn add_member_then_rebalance(
    group: &mut Group,
    id: RequestId,
    req: JoinRequest,
    member_id: String,
    ctx: &mut Ctx,
) {
    let member = Member {
        id: member_id.clone(),
        instance_id: req.instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: rebalance_timeout_of(&req),
        protocols: req.protocols,
        assignment: Bytes::new(),
        awaiting_join: Some(id),
        awaiting_sync: None,
        is_new: true,
    };
    if group.state == GroupState::PreparingRebalance && group.previous_state == GroupState::Empty {
        group.new_member_added = true;
    }
    group.add(member, &req.protocol_type);
    // A new member cannot heartbeat before its first JoinGroup answer, and
    // a client that disconnects while waiting would stay forever: its
    // JoinGroup ends after the new-member timeout instead.
    schedule_session(
        group,
        &member_id,
        ctx.config.new_member_join_timeout_ms,
        ctx,
    );
    maybe_prepare_rebalance_or_complete_join(group, ctx);
}

fn update_member_then_rebalance(group: &mut Group, id: RequestId, req: JoinRequest, ctx: &mut Ctx) {
    let rebalance_timeout = rebalance_timeout_of(&req);
    let replaced = group.update_member(
        &req.member_id,
        req.protocols,
        rebalance_timeout,
        req.session_timeout_ms,
        Some(id),
    );
    if let Some(old) = replaced {
        // The member sent another JoinGroup; the earlier one is over.
        let reply = JoinResponse::error(ErrorCode::RebalanceInProgress, &req.member_id);
        ctx.out.reply(old, Reply::Join(reply));
    }
    maybe_prepare_rebalance_or_complete_join(group, ctx);
}

/// A static member joined with an empty member id while its instance id
/// is known: it gets a new member id in place of the old one (which is
/// fenced). In a Stable group whose protocol would not change this needs no
/// rebalance, only a durable record of the new id.
fn rejoin_static_member(
    group: &mut Group,
    id: RequestId,
    req: JoinRequest,
    instance: &str,
    old_id: &str,
    new_id: &str,
    ctx: &mut Ctx,
) {
    let leader_before = group.leader.clone().unwrap_or_default();
    let (fenced_join, fenced_sync) = group.replace_static_member(instance, old_id, new_id);
    if let Some(request) = fenced_join {
        let reply = JoinResponse::error(ErrorCode::FencedInstanceId, old_id);
        ctx.out.reply(request, Reply::Join(reply));
    }
    if let Some(request) = fenced_sync {
        ctx.out.reply(
            request,
            Reply::Sync(SyncResponse::error(ErrorCode::FencedInstanceId)),
        );
    }
    ctx.timers.cancel(&session_key(group, old_id));
    reschedule_session(group, new_id, ctx);
    let old = &group.members[new_id];
    let (old_protocols, old_rebalance, old_session) = (
        old.protocols.clone(),
        old.rebalance_timeout_ms,
        old.session_timeout_ms,
    );
    let replaced = group.update_member(
        new_id,
        req.protocols.clone(),
        rebalance_timeout_of(&req),
        req.session_timeout_ms,
        Some(id),
    );
    assert!(replaced.is_none(), "a replaced member waits in nothing");
    match group.state {
        GroupState::Stable if group.select_protocol() == group.protocol => {
            let record = (
                records::group_key(&group.id),
                Some(records::group_value(&group.stored(None))),
            );
            let rejoin = StaticRejoin {
                group: group.id.clone(),
                request: id,
                generation: group.generation,
                instance_id: instance.to_string(),
                old_member_id: old_id.to_string(),
                new_member_id: new_id.to_string(),
                old_protocols,
                old_rebalance_timeout_ms: old_rebalance,
                old_session_timeout_ms: old_session,
                leader_before,
                supports_skip_assignment: req.supports_skip_assignment,
            };
            ctx.out.append(
                group.partition,
                vec![record],
                OnDurable::StaticRejoin(Box::new(rejoin)),
            );
        }
        GroupState::Stable => maybe_prepare_rebalance_or_complete_join(group, ctx),
        // The leader may already hold the old id in its assignment: a new
        // rebalance gives the new id its share.
        GroupState::CompletingRebalance => prepare_rebalance(group, ctx),
        GroupState::PreparingRebalance => maybe_complete_join_phase(group, ctx),
        GroupState::Empty | GroupState::Dead => {
            unreachable!("a group with a static member is not {:?}", group.state)
        }
    }
}

/// The outcome of a static member's rejoin record (see
/// [`rejoin_static_member`]).
pub(crate) fn static_rejoin_done(
    group: &mut Group,
    rejoin: &StaticRejoin,
    result: Result<(), ErrorCode>,
    ctx: &mut Ctx,
) {
    let waiting = group
        .members
        .get(&rejoin.new_member_id)
        .is_some_and(|m| m.awaiting_join == Some(rejoin.request));
    if !waiting {
        // The JoinGroup was answered meanwhile (a rebalance, a removal).
        return;
    }
    if let Some(m) = group.members.get_mut(&rejoin.new_member_id) {
        m.awaiting_join = None;
    }
    match result {
        Ok(()) => {
            let is_leader = group.is_leader(&rejoin.new_member_id);
            let reply = if rejoin.supports_skip_assignment {
                JoinResponse {
                    skip_assignment: is_leader,
                    ..generation_reply(group, &rejoin.new_member_id, is_leader)
                }
            } else {
                // Naming the old leader keeps a rejoined leader from
                // computing an assignment nobody would receive.
                JoinResponse {
                    leader: rejoin.leader_before.clone(),
                    ..generation_reply(group, &rejoin.new_member_id, false)
                }
            };
            ctx.out.reply(rejoin.request, Reply::Join(reply));
        }
        Err(append_error) => {
            let error = crate::types::group_metadata_append_error(append_error);
            log::warn!(
                "group {}: persisting the rejoin of static member {} failed ({append_error:?}); restoring member id {}",
                group.id,
                rejoin.instance_id,
                rejoin.old_member_id
            );
            if group.state == GroupState::Stable && group.generation == rejoin.generation {
                let replaced = group.update_member(
                    &rejoin.new_member_id,
                    rejoin.old_protocols.clone(),
                    rejoin.old_rebalance_timeout_ms,
                    rejoin.old_session_timeout_ms,
                    None,
                );
                assert!(replaced.is_none());
                let (join, sync) = group.replace_static_member(
                    &rejoin.instance_id,
                    &rejoin.new_member_id,
                    &rejoin.old_member_id,
                );
                assert!(
                    join.is_none() && sync.is_none(),
                    "nothing waits in a rejoin"
                );
                ctx.timers
                    .cancel(&session_key(group, &rejoin.new_member_id));
                reschedule_session(group, &rejoin.old_member_id, ctx);
            }
            let reply = JoinResponse {
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol: group.protocol.clone(),
                leader: rejoin.leader_before.clone(),
                ..JoinResponse::error(error, "")
            };
            ctx.out.reply(rejoin.request, Reply::Join(reply));
        }
    }
}

/// Starts a rebalance if the state allows one, else tries to end the
/// running join phase.
pub(crate) fn maybe_prepare_rebalance_or_complete_join(group: &mut Group, ctx: &mut Ctx) {
    if group.can_rebalance() {
        prepare_rebalance(group, ctx);
    } else {
        maybe_complete_join_phase(group, ctx);
    }
}

/// Moves the group to PreparingRebalance: members waiting for an
/// assignment are told to rejoin, and the join phase gets its deadline
/// (for a group that was empty, the initial delay).
pub(crate) fn prepare_rebalance(group: &mut Group, ctx: &mut Ctx) {
    assert!(group.can_rebalance(), "group {} cannot rebalance", group.id);
    if group.state == GroupState::CompletingRebalance {
        reset_and_propagate_assignment_error(group, ErrorCode::RebalanceInProgress, ctx);
    }
    group.pending_sync.clear();
    ctx.timers.cancel(&sync_key(group));
    let initial = group.state == GroupState::Empty;
    if initial {
        let delay = ctx.config.initial_rebalance_delay_ms;
        let remaining = (group.rebalance_timeout_ms() - delay).max(0);
        ctx.timers.schedule(
            join_key(group),
            ctx.now_ms.saturating_add(delay),
            TimerAction::InitialDelay {
                delay_ms: delay,
                remaining_ms: remaining,
            },
        );
    }
    log::info!(
        "group {}: preparing to rebalance from {} (generation {})",
        group.id,
        group.state.name(),
        group.generation
    );
    group.transition(GroupState::PreparingRebalance, ctx.now_ms);
    if !initial {
        if group.all_members_joined() {
            complete_join(group, ctx);
        } else {
            let at = ctx.now_ms.saturating_add(group.rebalance_timeout_ms());
            ctx.timers
                .schedule(join_key(group), at, TimerAction::CompleteJoin);
        }
    }
}

/// Ends the join phase if everyone has rejoined (never during the initial
/// delay, which its timer ends).
pub(crate) fn maybe_complete_join_phase(group: &mut Group, ctx: &mut Ctx) {
    if group.state == GroupState::PreparingRebalance
        && group.previous_state != GroupState::Empty
        && group.all_members_joined()
    {
        complete_join(group, ctx);
    }
}

/// A step of the initial delay has passed: wait once more if members
/// keep arriving (and time is left), else end the join phase.
pub(crate) fn initial_delay_passed(
    group: &mut Group,
    delay_ms: i64,
    remaining_ms: i64,
    ctx: &mut Ctx,
) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    if group.new_member_added && remaining_ms != 0 {
        group.new_member_added = false;
        let next_delay = ctx.config.initial_rebalance_delay_ms.min(remaining_ms);
        let next_remaining = (remaining_ms - delay_ms).max(0);
        ctx.timers.schedule(
            join_key(group),
            ctx.now_ms.saturating_add(next_delay),
            TimerAction::InitialDelay {
                delay_ms: next_delay,
                remaining_ms: next_remaining,
            },
        );
    } else {
        complete_join(group, ctx);
    }
}

/// The join phase's deadline has passed.
pub(crate) fn join_deadline_passed(group: &mut Group, ctx: &mut Ctx) {
    if group.state == GroupState::PreparingRebalance {
        complete_join(group, ctx);
    }
}

/// Ends the join phase: dynamic members that did not rejoin are dropped,
/// the generation advances, and every waiting JoinGroup is answered (the
/// leader's with all members). A group left without members is Empty, and
/// that is recorded.
pub(crate) fn complete_join(group: &mut Group, ctx: &mut Ctx) {
    assert_eq!(group.state, GroupState::PreparingRebalance);
    ctx.timers.cancel(&join_key(group));
    let absent: Vec<String> = group
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
        .map(|m| m.id.clone())
        .collect();
    for member_id in &absent {
        log::info!(
            "group {}: member {member_id} did not rejoin in time; removing it",
            group.id
        );
        remove_member(group, member_id, ctx);
    }
    if !group.maybe_elect_new_joined_leader() && !group.members.is_empty() {
        // Only static members that have not rejoined: wait again, until
        // their sessions end.
        log::warn!(
            "group {}: no member rejoined; extending the rebalance",
            group.id
        );
        let at = ctx.now_ms.saturating_add(group.rebalance_timeout_ms());
        ctx.timers
            .schedule(join_key(group), at, TimerAction::CompleteJoin);
        return;
    }
    group.generation = group.generation.wrapping_add(1);
    group.pending_sync.clear();
    group.new_member_added = false;
    if group.members.is_empty() {
        group.protocol = None;
        group.transition(GroupState::Empty, ctx.now_ms);
        log::info!(
            "group {}: empty at generation {}",
            group.id,
            group.generation
        );
        let record = (
            records::group_key(&group.id),
            Some(records::group_value(&group.stored(None))),
        );
        ctx.out.append(
            group.partition,
            vec![record],
            OnDurable::Logged {
                group: group.id.clone(),
            },
        );
        return;
    }
    group.protocol = group.select_protocol();
    assert!(group.protocol.is_some(), "members share a protocol");
    group.transition(GroupState::CompletingRebalance, ctx.now_ms);
    log::info!(
        "group {}: generation {} with {} member(s), protocol {}",
        group.id,
        group.generation,
        group.members.len(),
        group.protocol.as_deref().unwrap_or("")
    );
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for member_id in ids {
        let leader = group.is_leader(&member_id);
        let reply = generation_reply(group, &member_id, leader);
        let member = group
            .members
            .get_mut(&member_id)
            .expect("iterating members");
        member.is_new = false;
        if let Some(request) = member.awaiting_join.take() {
            ctx.out.reply(request, Reply::Join(reply));
        }
        reschedule_session(group, &member_id, ctx);
        group.pending_sync.insert(member_id);
    }
    let at = ctx.now_ms.saturating_add(group.rebalance_timeout_ms());
    ctx.timers.schedule(
        sync_key(group),
        at,
        TimerAction::ExpireSync {
            generation: group.generation,
        },
    );
}

/// Clears every assignment and answers every waiting SyncGroup with
/// `error`.
fn reset_and_propagate_assignment_error(group: &mut Group, error: ErrorCode, ctx: &mut Ctx) {
    assert_eq!(group.state, GroupState::CompletingRebalance);
    for member in group.members.values_mut() {
        member.assignment = Bytes::new();
    }
    propagate_assignment(group, error, ctx);
}

/// Answers every waiting SyncGroup with the member's assignment (or
/// `error`), restarting the session of each member answered.
fn propagate_assignment(group: &mut Group, error: ErrorCode, ctx: &mut Ctx) {
    let ok = error == ErrorCode::None;
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for member_id in ids {
        let member = group
            .members
            .get_mut(&member_id)
            .expect("iterating members");
        let Some(request) = member.awaiting_sync.take() else {
            continue;
        };
        let reply = SyncResponse {
            error,
            assignment: member.assignment.clone(),
            protocol_type: if ok {
                group.protocol_type.clone()
            } else {
                None
            },
            protocol: if ok { group.protocol.clone() } else { None },
        };
        ctx.out.reply(request, Reply::Sync(reply));
        reschedule_session(group, &member_id, ctx);
    }
}

/// SyncGroup.
pub(crate) fn sync(group: &mut Group, id: RequestId, req: SyncRequest, ctx: &mut Ctx) {
    let refuse = |ctx: &mut Ctx, error| ctx.out.reply(id, Reply::Sync(SyncResponse::error(error)));
    if group.state == GroupState::Dead {
        return refuse(ctx, ErrorCode::CoordinatorNotAvailable);
    }
    if group.state == GroupState::Empty {
        return refuse(ctx, ErrorCode::UnknownMemberId);
    }
    if let Err(error) = group.validate_member(&req.member_id, req.instance_id.as_deref()) {
        return refuse(ctx, error);
    }
    if req.generation != group.generation {
        return refuse(ctx, ErrorCode::IllegalGeneration);
    }
    let inconsistent = |asked: &Option<String>, have: &Option<String>| matches!((asked, have), (Some(a), Some(h)) if a != h);
    if inconsistent(&req.protocol_type, &group.protocol_type)
        || inconsistent(&req.protocol, &group.protocol)
    {
        return refuse(ctx, ErrorCode::InconsistentGroupProtocol);
    }
    match group.state {
        GroupState::PreparingRebalance => refuse(ctx, ErrorCode::RebalanceInProgress),
        GroupState::CompletingRebalance => {
            let member = group
                .members
                .get_mut(&req.member_id)
                .expect("validated member");
            if let Some(old) = member.awaiting_sync.replace(id) {
                // Another SyncGroup from the same member ends the first.
                let reply = SyncResponse::error(ErrorCode::RebalanceInProgress);
                ctx.out.reply(old, Reply::Sync(reply));
            }
            group.pending_sync.remove(&req.member_id);
            if group.is_leader(&req.member_id) {
                store_assignment(group, req.assignments, ctx);
            }
        }
        GroupState::Stable => {
            group.pending_sync.remove(&req.member_id);
            let member = &group.members[&req.member_id];
            let reply = SyncResponse {
                error: ErrorCode::None,
                assignment: member.assignment.clone(),
                protocol_type: group.protocol_type.clone(),
                protocol: group.protocol.clone(),
            };
            ctx.out.reply(id, Reply::Sync(reply));
        }
        GroupState::Empty | GroupState::Dead => unreachable!("checked above"),
    }
}

/// The leader's assignment: written first, given to the members once
/// durable (see [`assignment_stored`]).
fn store_assignment(group: &mut Group, assignments: Vec<(String, Bytes)>, ctx: &mut Ctx) {
    let mut by_member: HashMap<String, Bytes> = HashMap::new();
    for (member_id, assignment) in assignments {
        if group.members.contains_key(&member_id) {
            by_member.insert(member_id, assignment);
        }
    }
    for member_id in group.members.keys() {
        by_member.entry(member_id.clone()).or_default();
    }
    let record = (
        records::group_key(&group.id),
        Some(records::group_value(&group.stored(Some(&by_member)))),
    );
    ctx.out.append(
        group.partition,
        vec![record],
        OnDurable::SyncAssignment {
            group: group.id.clone(),
            generation: group.generation,
            assignments: by_member,
        },
    );
}

/// The outcome of writing the leader's assignment.
pub(crate) fn assignment_stored(
    group: &mut Group,
    generation: i32,
    assignments: &HashMap<String, Bytes>,
    result: Result<(), ErrorCode>,
    ctx: &mut Ctx,
) {
    if group.state != GroupState::CompletingRebalance || group.generation != generation {
        // The group moved on meanwhile; whoever waited was answered then.
        return;
    }
    match result {
        Ok(()) => {
            for member in group.members.values_mut() {
                member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
            }
            propagate_assignment(group, ErrorCode::None, ctx);
            group.transition(GroupState::Stable, ctx.now_ms);
            log::info!(
                "group {}: stable at generation {}",
                group.id,
                group.generation
            );
        }
        Err(append_error) => {
            let error = crate::types::group_metadata_append_error(append_error);
            log::warn!(
                "group {}: persisting the assignment of generation {generation} failed ({append_error:?}); rebalancing",
                group.id
            );
            reset_and_propagate_assignment_error(group, error, ctx);
            maybe_prepare_rebalance_or_complete_join(group, ctx);
        }
    }
}

/// Heartbeat: keeps the member's session alive and tells it whether a
/// rebalance is under way.
pub(crate) fn heartbeat(group: &mut Group, req: &HeartbeatRequest, ctx: &mut Ctx) -> ErrorCode {
    if group.state == GroupState::Dead {
        return ErrorCode::CoordinatorNotAvailable;
    }
    if let Err(error) = group.validate_member(&req.member_id, req.instance_id.as_deref()) {
        return error;
    }
    if req.generation != group.generation {
        return ErrorCode::IllegalGeneration;
    }
    match group.state {
        GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
        GroupState::PreparingRebalance => {
            reschedule_session(group, &req.member_id, ctx);
            ErrorCode::RebalanceInProgress
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            reschedule_session(group, &req.member_id, ctx);
            ErrorCode::None
        }
    }
}

/// LeaveGroup. The answer waits for any record the departure causes (an
/// empty group's metadata).
pub(crate) fn leave(group: &mut Group, id: RequestId, req: LeaveRequest, ctx: &mut Ctx) {
    if group.state == GroupState::Dead {
        let reply = Reply::Leave(LeaveResponse {
            error: ErrorCode::CoordinatorNotAvailable,
            members: Vec::new(),
        });
        ctx.out.reply(id, reply);
        return;
    }
    let mut codes = Vec::with_capacity(req.members.len());
    for leaving in &req.members {
        let code = if leaving.member_id.is_empty() {
            // An administrator removing a static member by instance id.
            match leaving
                .instance_id
                .as_ref()
                .and_then(|i| group.static_members.get(i).cloned())
            {
                Some(member_id) => {
                    remove_current_member(group, &member_id, ctx);
                    ErrorCode::None
                }
                None => ErrorCode::UnknownMemberId,
            }
        } else if group.pending_members.remove(&leaving.member_id) {
            ctx.timers.cancel(&session_key(group, &leaving.member_id));
            ErrorCode::None
        } else {
            match group.validate_member(&leaving.member_id, leaving.instance_id.as_deref()) {
                Ok(()) => {
                    remove_current_member(group, &leaving.member_id, ctx);
                    ErrorCode::None
                }
                Err(error) => error,
            }
        };
        codes.push(code);
    }
    if codes.contains(&ErrorCode::None) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                maybe_prepare_rebalance_or_complete_join(group, ctx)
            }
            GroupState::PreparingRebalance => maybe_complete_join_phase(group, ctx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
    let reply = Reply::Leave(LeaveResponse {
        error: ErrorCode::None,
        members: codes,
    });
    ctx.out.reply_after_append(group.partition, id, reply);
}

/// Removes a member and answers whatever it waits in with
/// UNKNOWN_MEMBER_ID (a client still alive joins again).
pub(crate) fn remove_member(group: &mut Group, member_id: &str, ctx: &mut Ctx) {
    ctx.timers.cancel(&session_key(group, member_id));
    let Some(member) = group.remove(member_id) else {
        return;
    };
    if let Some(request) = member.awaiting_join {
        let reply = JoinResponse::error(ErrorCode::UnknownMemberId, "");
        ctx.out.reply(request, Reply::Join(reply));
    }
    if let Some(request) = member.awaiting_sync {
        let reply = SyncResponse::error(ErrorCode::UnknownMemberId);
        ctx.out.reply(request, Reply::Sync(reply));
    }
}

fn remove_current_member(group: &mut Group, member_id: &str, ctx: &mut Ctx) {
    log::info!("group {}: member {member_id} left", group.id);
    remove_member(group, member_id, ctx);
}

/// Removes a member and lets the group react: a rebalance from Stable or
/// CompletingRebalance, the end of a join phase that only waited for it.
fn remove_member_and_update_group(group: &mut Group, member_id: &str, ctx: &mut Ctx) {
    remove_member(group, member_id, ctx);
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            maybe_prepare_rebalance_or_complete_join(group, ctx)
        }
        GroupState::PreparingRebalance if group.all_members_joined() => complete_join(group, ctx),
        _ => {}
    }
}

/// A session deadline has passed: the member (or pending member id) is
/// removed unless it waits in a request that keeps it alive.
pub(crate) fn session_expired(group: &mut Group, member_id: &str, ctx: &mut Ctx) {
    if group.state == GroupState::Dead {
        return;
    }
    if group.pending_members.remove(member_id) {
        log::info!(
            "group {}: pending member {member_id} did not join within its session timeout",
            group.id
        );
        if group.state == GroupState::PreparingRebalance && group.all_members_joined() {
            complete_join(group, ctx);
        }
        return;
    }
    let Some(member) = group.members.get(member_id) else {
        return;
    };
    if member.has_satisfied_heartbeat() {
        return;
    }
    log::info!(
        "group {}: member {member_id} session expired in {}; removing it",
        group.id,
        group.state.name()
    );
    remove_member_and_update_group(group, member_id, ctx);
}

/// The sync phase's deadline has passed: members of the generation that
/// never sent SyncGroup are removed and the group rebalances.
pub(crate) fn sync_deadline_passed(group: &mut Group, generation: i32, ctx: &mut Ctx) {
    if generation != group.generation
        || !matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        )
        || group.pending_sync.is_empty()
    {
        return;
    }
    let late: Vec<String> = group.pending_sync.iter().cloned().collect();
    for member_id in &late {
        log::info!(
            "group {}: member {member_id} did not sync in time; removing it",
            group.id
        );
        remove_member(group, member_id, ctx);
    }
    if group.can_rebalance() {
        prepare_rebalance(group, ctx);
    }
}

/// The group's partition is being unloaded: whatever waits is answered
/// NOT_COORDINATOR and its timers are disarmed.
pub(crate) fn unload(group: &mut Group, ctx: &mut Ctx) {
    for member in group.members.values_mut() {
        if let Some(request) = member.awaiting_join.take() {
            let reply = JoinResponse::error(ErrorCode::NotCoordinator, &member.id);
            ctx.out.reply(request, Reply::Join(reply));
        }
        if let Some(request) = member.awaiting_sync.take() {
            let reply = SyncResponse::error(ErrorCode::NotCoordinator);
            ctx.out.reply(request, Reply::Sync(reply));
        }
    }
    ctx.timers.cancel_group(&group.id);
}

/// The group's partition has just been loaded: every member's session
/// starts now, and a group above the size bound rebalances.
pub(crate) fn loaded(group: &mut Group, ctx: &mut Ctx) {
    let ids: Vec<String> = group.members.keys().cloned().collect();
    for member_id in &ids {
        reschedule_session(group, member_id, ctx);
    }
    if group.members.len() > ctx.config.group_members_max && group.can_rebalance() {
        prepare_rebalance(group, ctx);
    }
}

#[cfg(test)]
mod tests {
    use crate::harness::*;
    use crate::records::Entry;
    use crate::types::*;
    use bytes::Bytes;
    use ringbroker_protocol::errors::ErrorCode;

    #[test]
    fn one_member_joins_syncs_and_heartbeats() {
        let mut h = Harness::new(config());
        let first = h.join("g", "", None);
        let r = h.join_reply(first);
        assert_eq!(r.error, ErrorCode::MemberIdRequired, "KIP-394: an id first");
        assert!(r.member_id.starts_with("client-"));
        let id = r.member_id;
        let j = h.join("g", &id, None);
        assert!(!h.answered(j), "the initial delay ends the join phase");
        assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
        h.advance(0);
        let r = h.join_reply(j);
        assert_eq!((r.error, r.generation), (ErrorCode::None, 1));
        assert_eq!(
            (r.leader.as_str(), r.member_id.as_str()),
            (id.as_str(), id.as_str())
        );
        assert_eq!((r.members.len(), r.protocol.as_deref()), (1, Some("range")));
        h.auto_ack = false;
        let s = h.sync("g", 1, &id, &[(&id, "x")]);
        assert!(!h.answered(s), "the assignment is given once durable");
        assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
        assert_eq!(h.complete_all(Ok(())), 1);
        let r = h.sync_reply(s);
        assert_eq!(
            (r.error, r.assignment.clone()),
            (ErrorCode::None, Bytes::from("x"))
        );
        assert_eq!(r.protocol.as_deref(), Some("range"));
        assert_eq!(h.state("g"), Some(GroupState::Stable));
        assert_eq!(h.heartbeat("g", 1, &id), ErrorCode::None);
        let stored = h.entries(h.c.partition_of("g"));
        match stored.last() {
            Some(Entry::Group { value: Some(g), .. }) => {
                assert_eq!((g.generation, g.members.len()), (1, 1));
                assert_eq!(g.members[0].assignment, Bytes::from("x"));
            }
            other => panic!("group metadata expected, got {other:?}"),
        }
    }

    #[test]
    fn failed_assignment_append_answers_every_sync_with_the_mapped_error() {
        for (append_error, expected) in [
            (ErrorCode::KafkaStorageError, ErrorCode::NotCoordinator),
            (
                ErrorCode::RequestTimedOut,
                ErrorCode::CoordinatorNotAvailable,
            ),
            (ErrorCode::NotLeaderOrFollower, ErrorCode::NotCoordinator),
        ] {
            let mut h = Harness::new(config());
            let (ja, a) = h.join_new("g");
            let (jb, b) = h.join_new("g");
            h.advance(0);
            let (ra, rb) = (h.join_reply(ja), h.join_reply(jb));
            assert_eq!(ra.leader, a);
            assert_eq!(rb.generation, ra.generation);
            h.auto_ack = false;
            let follower = h.sync("g", ra.generation, &b, &[]);
            let leader = h.sync("g", ra.generation, &a, &[(&a, "1"), (&b, "2")]);
            assert!(!h.answered(follower) && !h.answered(leader));
            h.complete_all(Err(append_error));
            assert_eq!(h.sync_reply(leader).error, expected);
            assert_eq!(h.sync_reply(follower).error, expected);
            assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
            assert_eq!(
                h.heartbeat("g", ra.generation, &a),
                ErrorCode::RebalanceInProgress
            );
        }
    }

    #[test]
    fn a_new_member_rebalances_a_stable_group() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 1);
        let a = ids[0].clone();
        let (jb, b) = h.join_new("g");
        assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
        assert!(!h.answered(jb));
        assert_eq!(
            h.heartbeat("g", generation, &a),
            ErrorCode::RebalanceInProgress
        );
        let ja = h.join("g", &a, None);
        let (ra, rb) = (h.join_reply(ja), h.join_reply(jb));
        assert_eq!(
            (ra.generation, rb.generation),
            (generation + 1, generation + 1)
        );
        assert_eq!(ra.leader, a, "the leader rejoined and stays leader");
        assert_eq!((ra.members.len(), rb.members.len()), (2, 0));
        assert_eq!(rb.member_id, b);
        assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
        // Heartbeats are fine while waiting for the assignment.
        assert_eq!(h.heartbeat("g", generation + 1, &b), ErrorCode::None);
    }

    #[test]
    fn followers_rejoin_without_a_rebalance_but_leaders_force_one() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 2);
        let (leader, follower) = (ids[0].clone(), ids[1].clone());
        let j = h.join("g", &follower, None);
        let r = h.join_reply(j);
        assert_eq!(
            (r.error, r.generation, r.members.len()),
            (ErrorCode::None, generation, 0)
        );
        assert_eq!(h.state("g"), Some(GroupState::Stable));
        let j = h.join("g", &leader, None);
        assert!(!h.answered(j));
        assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    }

    #[test]
    fn completing_rebalance_rejoin_with_the_same_metadata_gets_the_generation_again() {
        let mut h = Harness::new(config());
        let (ja, a) = h.join_new("g");
        let (jb, b) = h.join_new("g");
        h.advance(0);
        let generation = h.join_reply(ja).generation;
        h.join_reply(jb);
        let again = h.join("g", &a, None);
        let r = h.join_reply(again);
        assert_eq!(
            (r.generation, r.members.len()),
            (generation, 2),
            "the leader sees everyone"
        );
        let again = h.join("g", &b, None);
        assert_eq!(h.join_reply(again).members.len(), 0);
        assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
    }

    #[test]
    fn session_expires_in_stable() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 1);
        h.advance(i64::from(SESSION_MS) - 1);
        assert_eq!(h.state("g"), Some(GroupState::Stable));
        h.advance(1);
        assert_eq!(h.state("g"), Some(GroupState::Empty));
        assert_eq!(
            h.heartbeat("g", generation, &ids[0]),
            ErrorCode::UnknownMemberId
        );
        let stored = h.entries(h.c.partition_of("g"));
        match stored.last() {
            Some(Entry::Group { value: Some(g), .. }) => {
                assert_eq!((g.generation, g.members.len()), (generation + 1, 0))
            }
            other => panic!("empty group metadata expected, got {other:?}"),
        }
    }

    /// The reported defect: a member that stops heartbeating while a
    /// rebalance waits for it expires after its session timeout, and the
    /// rebalance completes without it (not at the rebalance timeout).
    #[test]
    fn session_expires_in_preparing_rebalance() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 1);
        let a = ids[0].clone();
        let last_heartbeat = h.now;
        let (jb2, b) = h.join_new("g");
        h.advance(1_000);
        assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
        let until_expiry = last_heartbeat + i64::from(SESSION_MS) - h.now;
        h.advance(until_expiry - 1);
        assert!(!h.answered(jb2), "a still counts until its session ends");
        h.advance(1);
        let r = h.join_reply(jb2);
        assert_eq!(
            (r.error, r.generation, r.leader.as_str()),
            (ErrorCode::None, generation + 1, b.as_str())
        );
        assert_eq!(r.members.len(), 1);
        assert!(h.now - last_heartbeat < i64::from(REBALANCE_MS));
        assert_eq!(h.heartbeat("g", generation, &a), ErrorCode::UnknownMemberId);
    }

    #[test]
    fn session_expires_in_completing_rebalance() {
        let mut h = Harness::new(config());
        let (ja, a) = h.join_new("g");
        let (jb, b) = h.join_new("g");
        h.advance(0);
        let generation = h.join_reply(ja).generation;
        h.join_reply(jb);
        // a heartbeats (but is slow to sync); b is silent.
        h.advance(5_000);
        assert_eq!(h.heartbeat("g", generation, &a), ErrorCode::None);
        h.advance(i64::from(SESSION_MS) - 5_000);
        assert_eq!(
            h.state("g"),
            Some(GroupState::PreparingRebalance),
            "b expired"
        );
        assert!(h.c.group("g").is_some_and(|g| !g.members.contains_key(&b)));
        assert_eq!(
            h.heartbeat("g", generation, &a),
            ErrorCode::RebalanceInProgress
        );
        let again = h.join("g", &a, None);
        let r = h.join_reply(again);
        assert_eq!((r.generation, r.members.len()), (generation + 1, 1));
    }

    #[test]
    fn members_waiting_in_sync_do_not_expire_but_late_syncs_are_removed() {
        let mut h = Harness::new(config());
        let (ja, a) = h.join_new("g");
        let (jb, b) = h.join_new("g");
        h.advance(0);
        let generation = h.join_reply(ja).generation;
        h.join_reply(jb);
        let follower = h.sync("g", generation, &b, &[]);
        // The leader heartbeats but never sends SyncGroup.
        let mut waited = 0;
        while waited < i64::from(REBALANCE_MS) - 5_000 {
            h.advance(5_000);
            waited += 5_000;
            assert_eq!(h.heartbeat("g", generation, &a), ErrorCode::None);
        }
        assert!(
            !h.answered(follower),
            "b waits in SyncGroup past its session"
        );
        assert!(h.c.group("g").is_some_and(|g| g.members.contains_key(&b)));
        h.advance(5_000);
        let r = h.sync_reply(follower);
        assert_eq!(r.error, ErrorCode::RebalanceInProgress);
        let g = h.c.group("g").expect("group");
        assert!(!g.members.contains_key(&a), "the leader never synced");
        assert_eq!(g.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn rebalance_timeout_drops_dynamic_members_that_do_not_rejoin() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 2);
        let (a, b) = (ids[0].clone(), ids[1].clone());
        let ja = h.join("g", &a, None);
        let mut waited = 0;
        while waited < i64::from(REBALANCE_MS) - 3_000 {
            h.advance(3_000);
            waited += 3_000;
            assert_eq!(
                h.heartbeat("g", generation, &b),
                ErrorCode::RebalanceInProgress
            );
        }
        assert!(!h.answered(ja));
        h.advance(3_000);
        let r = h.join_reply(ja);
        assert_eq!((r.generation, r.members.len()), (generation + 1, 1));
        assert_eq!(h.heartbeat("g", generation, &b), ErrorCode::UnknownMemberId);
    }

    #[test]
    fn static_members_stay_through_the_join_phase() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_static_group("g", &["i1", "i2"]);
        let (s1, s2) = (ids[0].clone(), ids[1].clone());
        let mut request = h.join_request("g", &s1, Some("i1"));
        request.protocols = protocols(&["range", "roundrobin"]);
        let j = h.send(Request::Join(request));
        let mut waited = 0;
        while waited < i64::from(REBALANCE_MS) {
            h.advance(3_000);
            waited += 3_000;
            assert_eq!(
                h.heartbeat_as("g", generation, &s2, Some("i2")),
                if h.answered(j) {
                    ErrorCode::IllegalGeneration
                } else {
                    ErrorCode::RebalanceInProgress
                }
            );
        }
        let r = h.join_reply(j);
        assert_eq!(r.generation, generation + 1);
        assert_eq!(
            r.members.len(),
            2,
            "the static member that did not rejoin is kept"
        );
    }

    /// The reported defect: static members that close (no LeaveGroup)
    /// expire after their session timeout; the group then becomes empty
    /// and can be deleted.
    #[test]
    fn closed_static_members_expire_and_the_group_can_be_deleted() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_static_group("g", &["i1", "i2"]);
        let start = h.now;
        h.advance(2_000);
        assert_eq!(
            h.heartbeat_as("g", generation, &ids[0], Some("i1")),
            ErrorCode::None
        );
        // Both close now.
        h.advance(i64::from(SESSION_MS) - 2_000);
        assert_eq!(
            h.state("g"),
            Some(GroupState::PreparingRebalance),
            "i2 expired"
        );
        let d = h.delete("g");
        assert_eq!(h.take(d), Some(Reply::Delete(ErrorCode::NonEmptyGroup)));
        h.advance(2_000);
        assert_eq!(h.state("g"), Some(GroupState::Empty), "i1 expired too");
        assert_eq!(h.now - start, i64::from(SESSION_MS) + 2_000);
        h.auto_ack = false;
        let d = h.delete("g");
        assert!(!h.answered(d), "deleted once the tombstones are durable");
        assert_eq!(h.state("g"), Some(GroupState::Dead));
        let j = h.join("g", "", Some("i1"));
        assert_eq!(h.join_reply(j).error, ErrorCode::CoordinatorNotAvailable);
        h.complete_all(Ok(()));
        assert_eq!(h.take(d), Some(Reply::Delete(ErrorCode::None)));
        assert_eq!(h.state("g"), None);
        assert_eq!(h.describe("g").error, ErrorCode::GroupIdNotFound);
    }

    #[test]
    fn static_member_restart_keeps_its_place_without_a_rebalance() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_static_group("g", &["i1", "i2"]);
        let (s1, s2) = (ids[0].clone(), ids[1].clone());
        h.auto_ack = false;
        let j = h.join("g", "", Some("i2"));
        assert!(!h.answered(j), "answered once the new member id is durable");
        assert_eq!(h.complete_all(Ok(())), 1);
        let r = h.join_reply(j);
        assert_eq!((r.error, r.generation), (ErrorCode::None, generation));
        assert_ne!(r.member_id, s2);
        assert_eq!((r.leader.as_str(), r.members.len()), (s1.as_str(), 0));
        let s2_new = r.member_id;
        assert_eq!(h.state("g"), Some(GroupState::Stable));
        assert_eq!(
            h.heartbeat_as("g", generation, &s2, Some("i2")),
            ErrorCode::FencedInstanceId
        );
        assert_eq!(
            h.heartbeat("g", generation, &s2),
            ErrorCode::UnknownMemberId
        );
        h.auto_ack = true;
        let s = h.sync("g", generation, &s2_new, &[]);
        assert_eq!(h.sync_reply(s).assignment, Bytes::from(format!("a-{s2}")));
        assert_eq!(h.heartbeat("g", generation, &s1), ErrorCode::None);
        // The leader restarting: before v9 the answer names the old leader
        // (so it does not assign); from v9 it is told to skip assigning.
        let j = h.join("g", "", Some("i1"));
        let r = h.join_reply(j);
        assert_eq!((r.leader.as_str(), r.skip_assignment), (s1.as_str(), false));
        let mut v9 = h.join_request("g", "", Some("i1"));
        v9.supports_skip_assignment = true;
        let j = h.send(Request::Join(v9));
        let r = h.join_reply(j);
        assert_eq!(r.leader, r.member_id);
        assert!(r.skip_assignment);
        assert_eq!(r.members.len(), 2);
        assert_eq!(h.state("g"), Some(GroupState::Stable));
    }

    #[test]
    fn failed_static_rejoin_restores_the_old_member_id() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_static_group("g", &["i1", "i2"]);
        h.auto_ack = false;
        let j = h.join("g", "", Some("i2"));
        h.complete_all(Err(ErrorCode::NotLeaderOrFollower));
        let r = h.join_reply(j);
        assert_eq!(
            (r.error, r.member_id.as_str()),
            (ErrorCode::NotCoordinator, "")
        );
        assert_eq!(
            h.heartbeat_as("g", generation, &ids[1], Some("i2")),
            ErrorCode::None
        );
        assert_eq!(h.c.group("g").map(|g| g.members.len()), Some(2));
    }

    #[test]
    fn static_rejoin_with_new_protocols_rebalances_and_fences_the_old_id() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_static_group("g", &["i1", "i2"]);
        // i1's old incarnation is waiting in a JoinGroup (it forced a rebalance).
        let old = h.join("g", &ids[0], Some("i1"));
        assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
        let mut changed = h.join_request("g", "", Some("i1"));
        changed.protocols = protocols(&["range", "sticky"]);
        let new = h.send(Request::Join(changed));
        assert_eq!(h.join_reply(old).error, ErrorCode::FencedInstanceId);
        assert!(!h.answered(new));
        let s2 = h.join("g", &ids[1], Some("i2"));
        let r = h.join_reply(new);
        assert_eq!((r.error, r.generation), (ErrorCode::None, generation + 1));
        assert_eq!(h.join_reply(s2).generation, generation + 1);
    }

    #[test]
    fn pending_member_ids_expire_after_their_session() {
        let mut h = Harness::new(config());
        let (_, ids) = h.stable_group("g", 1);
        let first = h.join("g", "", None);
        assert_eq!(h.join_reply(first).error, ErrorCode::MemberIdRequired);
        let handed_out = h.now;
        assert_eq!(
            h.state("g"),
            Some(GroupState::Stable),
            "a pending id does not rebalance"
        );
        h.advance(1_000);
        let ja = h.join("g", &ids[0], None);
        h.advance(handed_out + i64::from(SESSION_MS) - h.now - 1);
        assert!(!h.answered(ja), "waits for the pending member");
        h.advance(1);
        assert_eq!(h.join_reply(ja).members.len(), 1);
    }

    #[test]
    fn new_members_waiting_too_long_are_dropped() {
        let mut h = Harness::new(config());
        let mut request = h.join_request("g", "", Some("s"));
        request.rebalance_timeout_ms = 10 * 60 * 1000;
        let j = h.send(Request::Join(request));
        h.advance(0);
        let r = h.join_reply(j);
        let s = r.member_id.clone();
        let sync = h.sync("g", r.generation, &s, &[]);
        assert_eq!(h.sync_reply(sync).error, ErrorCode::None);
        let (jn, _) = h.join_new("g");
        let joined_at = h.now;
        while h.now - joined_at < crate::config::NEW_MEMBER_JOIN_TIMEOUT_MS - 5_000 {
            h.advance(5_000);
            assert_eq!(
                h.heartbeat_as("g", r.generation, &s, Some("s")),
                ErrorCode::RebalanceInProgress
            );
        }
        assert!(!h.answered(jn));
        h.advance(5_000);
        let reply = h.join_reply(jn);
        assert_eq!(
            (reply.error, reply.member_id.as_str()),
            (ErrorCode::UnknownMemberId, "")
        );
    }

    #[test]
    fn generation_member_and_instance_checks() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 1);
        let a = ids[0].clone();
        assert_eq!(
            h.heartbeat("g", generation + 7, &a),
            ErrorCode::IllegalGeneration
        );
        assert_eq!(
            h.heartbeat("g", generation, "stranger"),
            ErrorCode::UnknownMemberId
        );
        assert_eq!(h.heartbeat("nope", 1, "m"), ErrorCode::UnknownMemberId);
        assert_eq!(
            h.heartbeat_as("g", generation, &a, Some("i")),
            ErrorCode::UnknownMemberId
        );
        let s = h.sync("g", generation + 1, &a, &[]);
        assert_eq!(h.sync_reply(s).error, ErrorCode::IllegalGeneration);
        let s = h.sync("nope", 1, &a, &[]);
        assert_eq!(h.sync_reply(s).error, ErrorCode::UnknownMemberId);
        let mut wrong = SyncRequest {
            group: "g".into(),
            generation,
            member_id: a.clone(),
            instance_id: None,
            protocol_type: None,
            protocol: Some("roundrobin".into()),
            assignments: vec![],
        };
        let s = h.send(Request::Sync(wrong.clone()));
        assert_eq!(h.sync_reply(s).error, ErrorCode::InconsistentGroupProtocol);
        wrong.protocol = None;
        wrong.protocol_type = Some("connect".into());
        let s = h.send(Request::Sync(wrong));
        assert_eq!(h.sync_reply(s).error, ErrorCode::InconsistentGroupProtocol);
        let j = h.join("g", "stranger", None);
        assert_eq!(h.join_reply(j).error, ErrorCode::UnknownMemberId);
        let j = h.join("nope", "someone", None);
        assert_eq!(h.join_reply(j).error, ErrorCode::UnknownMemberId);
        assert_eq!(h.state("nope"), None, "a join with an id creates no group");
        let (sgen, sids) = h.stable_static_group("s", &["i1", "i2"]);
        assert_eq!(
            h.heartbeat_as("s", sgen, &sids[1], Some("i1")),
            ErrorCode::FencedInstanceId
        );
        let j = h.join("s", &sids[1], Some("i1"));
        assert_eq!(h.join_reply(j).error, ErrorCode::FencedInstanceId);
    }

    #[test]
    fn request_shape_is_checked_first() {
        let mut h = Harness::new(config());
        let mut r = h.join_request("g", "", None);
        r.session_timeout_ms = 10;
        let j = h.send(Request::Join(r.clone()));
        assert_eq!(h.join_reply(j).error, ErrorCode::InvalidSessionTimeout);
        r.session_timeout_ms = SESSION_MS;
        r.group = String::new();
        let j = h.send(Request::Join(r.clone()));
        assert_eq!(h.join_reply(j).error, ErrorCode::InvalidGroupId);
        r.group = "g".into();
        r.protocols = vec![];
        let j = h.send(Request::Join(r.clone()));
        assert_eq!(h.join_reply(j).error, ErrorCode::InconsistentGroupProtocol);
        r.protocols = vec![Protocol {
            name: "range".into(),
            metadata: Bytes::from(vec![0u8; crate::config::PROTOCOL_METADATA_MAX_BYTES + 1]),
        }];
        let j = h.send(Request::Join(r.clone()));
        assert_eq!(h.join_reply(j).error, ErrorCode::InconsistentGroupProtocol);
        r.protocols = (0..=crate::config::PROTOCOLS_PER_MEMBER_MAX)
            .map(|n| Protocol {
                name: format!("p{n}"),
                metadata: Bytes::new(),
            })
            .collect();
        let j = h.send(Request::Join(r.clone()));
        assert_eq!(h.join_reply(j).error, ErrorCode::InconsistentGroupProtocol);
        r.protocols = protocols(&["range"]);
        r.protocol_type = String::new();
        let j = h.send(Request::Join(r));
        assert_eq!(h.join_reply(j).error, ErrorCode::InconsistentGroupProtocol);
        assert_eq!(h.state("g"), None, "refused requests create no group");
    }

    #[test]
    fn protocol_selection_and_inconsistent_protocols() {
        let mut h = Harness::new(config());
        let mut a = h.join_request("g", "", None);
        a.require_known_member_id = false;
        a.protocols = protocols(&["range", "roundrobin"]);
        let mut b = a.clone();
        b.protocols = protocols(&["roundrobin"]);
        let ja = h.send(Request::Join(a.clone()));
        let jb = h.send(Request::Join(b));
        h.advance(0);
        assert_eq!(h.join_reply(ja).protocol.as_deref(), Some("roundrobin"));
        assert_eq!(h.join_reply(jb).protocol.as_deref(), Some("roundrobin"));
        let mut c = a.clone();
        c.protocols = protocols(&["sticky"]);
        let jc = h.send(Request::Join(c));
        assert_eq!(h.join_reply(jc).error, ErrorCode::InconsistentGroupProtocol);
        let mut d = a;
        d.protocol_type = "connect".into();
        let jd = h.send(Request::Join(d));
        assert_eq!(h.join_reply(jd).error, ErrorCode::InconsistentGroupProtocol);
    }

    #[test]
    fn joins_before_v4_get_a_member_id_at_once() {
        let mut h = Harness::new(config());
        let mut r = h.join_request("g", "", None);
        r.require_known_member_id = false;
        r.rebalance_timeout_ms = 0;
        let j = h.send(Request::Join(r));
        h.advance(0);
        let reply = h.join_reply(j);
        assert_eq!((reply.error, reply.generation), (ErrorCode::None, 1));
        let member = &h.c.group("g").expect("group").members[&reply.member_id];
        assert_eq!(
            member.rebalance_timeout_ms, SESSION_MS,
            "v0: the session timeout"
        );
    }

    #[test]
    fn leaving_rebalances_and_the_last_leave_waits_for_the_empty_record() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 2);
        let (a, b) = (ids[0].clone(), ids[1].clone());
        let l = h.leave("g", &[(&b, None), ("stranger", None)]);
        match h.take(l) {
            Some(Reply::Leave(r)) => {
                assert_eq!(r.members, vec![ErrorCode::None, ErrorCode::UnknownMemberId])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            h.heartbeat("g", generation, &a),
            ErrorCode::RebalanceInProgress
        );
        let j = h.join("g", &a, None);
        let r = h.join_reply(j);
        assert_eq!(r.generation, generation + 1);
        h.auto_ack = false;
        let l = h.leave("g", &[(&a, None)]);
        assert!(!h.answered(l), "the empty group's record comes first");
        assert_eq!(h.state("g"), Some(GroupState::Empty));
        h.complete_all(Ok(()));
        assert_eq!(
            h.take(l),
            Some(Reply::Leave(LeaveResponse {
                error: ErrorCode::None,
                members: vec![ErrorCode::None]
            }))
        );
        // The same, failing.
        h.auto_ack = true;
        let (_, ids) = h.stable_group("f", 1);
        h.auto_ack = false;
        let l = h.leave("f", &[(&ids[0], None)]);
        h.complete_all(Err(ErrorCode::KafkaStorageError));
        assert_eq!(
            h.take(l),
            Some(Reply::Leave(LeaveResponse {
                error: ErrorCode::NotCoordinator,
                members: vec![]
            }))
        );
        let l = h.leave("none", &[("x", None)]);
        assert_eq!(
            h.take(l),
            Some(Reply::Leave(LeaveResponse {
                error: ErrorCode::UnknownMemberId,
                members: vec![]
            }))
        );
    }

    #[test]
    fn static_members_can_be_removed_by_instance_id_and_pending_ids_can_leave() {
        let mut h = Harness::new(config());
        let (_, ids) = h.stable_static_group("g", &["i1", "i2"]);
        let first = h.join("g", "", None);
        let pending = h.join_reply(first).member_id;
        let l = h.leave(
            "g",
            &[
                ("", Some("i2")),
                (&pending, None),
                ("", Some("i9")),
                (&ids[0], Some("i2")),
            ],
        );
        match h.take(l) {
            Some(Reply::Leave(r)) => assert_eq!(
                r.members,
                vec![
                    ErrorCode::None,
                    ErrorCode::None,
                    ErrorCode::UnknownMemberId,
                    ErrorCode::UnknownMemberId
                ]
            ),
            other => panic!("{other:?}"),
        }
        let g = h.c.group("g").expect("group");
        assert_eq!(g.members.len(), 1);
        assert!(g.pending_members.is_empty());
        assert!(!g.static_members.contains_key("i2"));
    }

    #[test]
    fn the_initial_delay_waits_while_members_keep_arriving() {
        let mut h = Harness::new(crate::config::CoordinatorConfig {
            initial_rebalance_delay_ms: 3_000,
            ..config()
        });
        let (ja, _) = h.join_new("g");
        h.advance(2_000);
        let (jb, _) = h.join_new("g");
        h.advance(1_000);
        assert!(
            !h.answered(ja),
            "b arrived during the delay: wait once more"
        );
        h.advance(2_999);
        assert!(!h.answered(ja));
        h.advance(1);
        assert_eq!(h.join_reply(ja).members.len(), 2);
        assert_eq!(h.join_reply(jb).generation, 1);
    }

    #[test]
    fn groups_have_a_size_bound() {
        let mut h = Harness::new(crate::config::CoordinatorConfig {
            group_members_max: 2,
            ..config()
        });
        h.stable_group("g", 2);
        let j = h.join("g", "", None);
        let r = h.join_reply(j);
        assert_eq!(
            (r.error, r.member_id.as_str()),
            (ErrorCode::GroupMaxSizeReached, "")
        );
        assert_eq!(h.state("g"), Some(GroupState::Stable));
    }

    /// A deterministic simulation: clients join, sync, heartbeat, commit,
    /// leave and vanish at random while time passes and appends complete
    /// out of order or fail. Every request is answered exactly once (the
    /// harness checks), the coordinator's invariants hold (its assertions),
    /// and after unloading nothing is left unanswered.
    #[test]
    fn every_request_is_answered_exactly_once() {
        for seed in 1..=20u64 {
            simulate(seed);
        }
    }

    struct Client {
        group: String,
        instance: Option<String>,
        member_id: String,
        generation: i32,
        leader: bool,
        waiting: Option<RequestId>,
    }

    fn simulate(seed: u64) {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut h = Harness::new(crate::config::CoordinatorConfig {
            initial_rebalance_delay_ms: 500,
            ..config()
        });
        h.auto_ack = false;
        let mut clients: Vec<Client> = (0..8)
            .map(|n| Client {
                group: format!("g{}", n % 3),
                instance: (n % 4 == 0).then(|| format!("i{n}")),
                member_id: String::new(),
                generation: -1,
                leader: false,
                waiting: None,
            })
            .collect();
        for _ in 0..600 {
            let c = next(clients.len() as u64) as usize;
            match next(10) {
                0 | 1 => {
                    let client = &clients[c];
                    let mut r = h.join_request(
                        &client.group,
                        &client.member_id,
                        client.instance.as_deref(),
                    );
                    if next(5) == 0 {
                        r.protocols = protocols(&["roundrobin", "range"]);
                    }
                    let id = h.send(Request::Join(r));
                    clients[c].waiting = Some(id);
                }
                2 => {
                    let client = &clients[c];
                    let id = h.send(Request::Sync(SyncRequest {
                        group: client.group.clone(),
                        generation: client.generation,
                        member_id: client.member_id.clone(),
                        instance_id: client.instance.clone(),
                        protocol_type: None,
                        protocol: None,
                        assignments: if client.leader {
                            vec![(client.member_id.clone(), Bytes::from_static(b"x"))]
                        } else {
                            vec![]
                        },
                    }));
                    clients[c].waiting = Some(id);
                }
                3 | 4 => {
                    let client = &clients[c];
                    let (g, generation, m, i) = (
                        client.group.clone(),
                        client.generation,
                        client.member_id.clone(),
                        client.instance.clone(),
                    );
                    h.heartbeat_as(&g, generation, &m, i.as_deref());
                }
                5 => {
                    let client = &clients[c];
                    let (g, m) = (client.group.clone(), client.member_id.clone());
                    h.commit(&g, client.generation, &m, &[("t", 0, next(100) as i64)]);
                }
                6 => {
                    let client = &clients[c];
                    let (g, m, i) = (
                        client.group.clone(),
                        client.member_id.clone(),
                        client.instance.clone(),
                    );
                    h.leave(&g, &[(&m, i.as_deref())]);
                    clients[c].member_id.clear();
                }
                7 => h.advance(next(4_000) as i64),
                _ => {
                    if !h.appends.is_empty() {
                        let index = next(h.appends.len() as u64) as usize;
                        let id = h.appends[index].0;
                        let result = if next(6) == 0 {
                            Err(ErrorCode::RequestTimedOut)
                        } else {
                            Ok(())
                        };
                        h.complete(id, result);
                    }
                }
            }
            // Clients learn from their answers.
            for client in clients.iter_mut() {
                let Some(waiting) = client.waiting else {
                    continue;
                };
                match h.take(waiting) {
                    Some(Reply::Join(r)) => {
                        client.waiting = None;
                        if r.error == ErrorCode::None || r.error == ErrorCode::MemberIdRequired {
                            client.member_id = r.member_id.clone();
                            client.generation = r.generation;
                            client.leader = r.leader == r.member_id;
                        } else if r.error == ErrorCode::UnknownMemberId
                            || r.error == ErrorCode::FencedInstanceId
                        {
                            client.member_id.clear();
                        }
                    }
                    Some(_) => client.waiting = None,
                    None => {}
                }
            }
        }
        for p in 0..config().offsets_partitions {
            h.step(crate::effects::Event::Unload {
                partition: OffsetsPartition(p),
            });
        }
        h.complete_all(Ok(()));
        assert_eq!(h.unanswered(), 0, "seed {seed}: every request answered");
        assert_eq!(h.c.appends_in_flight(), 0);
    }
}
