//! The coordinator: every group of the offsets partitions it owns, as a
//! synchronous state machine. [`Coordinator::handle`] takes an [`Event`]
//! and the time, changes state, and returns the [`Effect`]s the shell must
//! perform. It does no I/O and reads no clock.
//!
//! Appends complete in log order: outcomes the shell reports out of order
//! are held until every earlier append to the same partition has
//! completed, so state always follows the log.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ringbroker_protocol::errors::ErrorCode;

use crate::config::{CoordinatorConfig, TIMERS_PER_EVENT_MAX};
use crate::effects::{Ctx, Effect, Event, MemberIds, OnDurable, Output};
use crate::group::Group;
use crate::loading::{self, LoadedRecord, TxnGroups};
use crate::membership;
use crate::offsets;
use crate::records::{partition_for, Entry};
use crate::timers::{TimerAction, TimerKey, Timers};
use crate::types::{
    AppendId, GroupDescription, GroupState, JoinResponse, LeaveResponse, ListResponse,
    OffsetDeleteResponse, OffsetsPartition, Reply, Request, RequestId, SyncResponse,
};

/// Where an offsets partition stands on this coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionStatus {
    /// Records are being replayed.
    Loading,
    /// Its groups are served.
    Loaded,
    /// Its log could not be read.
    Failed(String),
}

#[derive(Debug)]
struct Slot {
    status: PartitionStatus,
    /// Distinguishes successive loads of the partition, so an append
    /// decided before an unload does not touch the groups of a later load.
    epoch: u64,
    groups: HashMap<String, Group>,
    /// Groups that may hold pending offsets of each producer.
    txn_groups: TxnGroups,
}

#[derive(Debug)]
struct PendingAppend {
    partition: OffsetsPartition,
    epoch: u64,
    on_durable: Vec<OnDurable>,
    replies: Vec<(RequestId, Reply)>,
    result: Option<Result<(), ErrorCode>>,
}

/// The group coordinator state machine.
#[derive(Debug)]
pub struct Coordinator {
    config: CoordinatorConfig,
    partitions: BTreeMap<OffsetsPartition, Slot>,
    timers: Timers,
    ids: MemberIds,
    pending: HashMap<AppendId, PendingAppend>,
    /// Appends in flight per partition, in the order they were asked for.
    queues: HashMap<OffsetsPartition, VecDeque<AppendId>>,
    next_append: u64,
    next_epoch: u64,
    /// Positions of records in the log, in log order within a partition
    /// (see [`Ctx::next_position`]).
    next_position: u64,
    /// The deadline the shell was last asked to deliver a Timer at.
    armed_at: Option<i64>,
}

impl Coordinator {
    /// A coordinator owning no partition yet. `id_seed` seeds member ids
    /// (give a random one; tests give a fixed one).
    pub fn new(config: CoordinatorConfig, id_seed: u64) -> Result<Coordinator, String> {
        config.validate()?;
        Ok(Coordinator {
            config,
            partitions: BTreeMap::new(),
            timers: Timers::default(),
            ids: MemberIds::new(id_seed),
            pending: HashMap::new(),
            queues: HashMap::new(),
            next_append: 0,
            next_epoch: 0,
            next_position: 0,
            armed_at: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The offsets partition of a group.
    pub fn partition_of(&self, group: &str) -> OffsetsPartition {
        OffsetsPartition(partition_for(group, self.config.offsets_partitions))
    }

    /// The partitions this coordinator knows, with their status.
    pub fn partitions(&self) -> Vec<(OffsetsPartition, PartitionStatus)> {
        self.partitions
            .iter()
            .map(|(p, slot)| (*p, slot.status.clone()))
            .collect()
    }

    /// A group, if loaded (for inspection and tests).
    pub fn group(&self, group: &str) -> Option<&Group> {
        self.partitions
            .get(&self.partition_of(group))
            .and_then(|slot| slot.groups.get(group))
    }

    /// Appends asked for and not completed yet.
    pub fn appends_in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Takes one event at `now_ms` and returns what the shell must do.
    pub fn handle(&mut self, now_ms: i64, event: Event) -> Vec<Effect> {
        let mut out = Output::default();
        match event {
            Event::Request { id, request } => self.request(now_ms, id, request, &mut out),
            Event::Timer => {
                self.armed_at = None;
                self.fire_timers(now_ms, &mut out);
            }
            Event::LoadStarted { partition } => self.load_started(partition, &mut out, now_ms),
            Event::Replay { partition, entries } => self.replay(partition, entries, now_ms),
            Event::LoadCompleted { partition } => self.load_completed(partition, now_ms, &mut out),
            Event::LoadFailed { partition, reason } => {
                self.load_failed(partition, reason, now_ms, &mut out)
            }
            Event::Unload { partition } => self.unload(partition, now_ms, &mut out),
            Event::AppendCompleted { id, result } => {
                self.append_completed(id, result, now_ms, &mut out)
            }
            Event::TxnCompleted {
                partition,
                producer_id,
                commit,
            } => self.txn_completed(partition, producer_id, commit),
        }
        self.finish(out)
    }

    fn finish(&mut self, out: Output) -> Vec<Effect> {
        let mut effects = Vec::with_capacity(out.replies.len() + out.drafts.len() + 1);
        for (id, reply) in out.replies {
            effects.push(Effect::Reply { id, reply });
        }
        for draft in out.drafts {
            let epoch = self
                .partitions
                .get(&draft.partition)
                .map_or(0, |slot| slot.epoch);
            self.next_append += 1;
            let id = AppendId(self.next_append);
            self.pending.insert(
                id,
                PendingAppend {
                    partition: draft.partition,
                    epoch,
                    on_durable: draft.on_durable,
                    replies: draft.replies,
                    result: None,
                },
            );
            self.queues
                .entry(draft.partition)
                .or_default()
                .push_back(id);
            effects.push(Effect::Append {
                id,
                partition: draft.partition,
                records: draft.records,
                producer: draft.producer,
            });
        }
        if let Some(earliest) = self.timers.earliest() {
            if self.armed_at.is_none_or(|armed| earliest < armed) {
                self.armed_at = Some(earliest);
                effects.push(Effect::ArmTimer { at_ms: earliest });
            }
        }
        effects
    }

    /// Runs `f` on a group of a loaded partition with a transition context.
    fn with_group<R>(
        &mut self,
        now_ms: i64,
        out: &mut Output,
        group: &str,
        f: impl FnOnce(&mut Group, &mut Ctx) -> R,
    ) -> Option<R> {
        let partition = self.partition_of(group);
        let slot = self.partitions.get_mut(&partition)?;
        if slot.status != PartitionStatus::Loaded {
            return None;
        }
        let g = slot.groups.get_mut(group)?;
        let mut ctx = Ctx {
            now_ms,
            config: &self.config,
            timers: &mut self.timers,
            ids: &mut self.ids,
            positions: &mut self.next_position,
            out,
        };
        Some(f(g, &mut ctx))
    }

    /// Refusals Kafka gives before looking for the group's coordinator.
    fn precheck(&self, request: &Request) -> Option<ErrorCode> {
        if request.group().is_some_and(str::is_empty) {
            return Some(ErrorCode::InvalidGroupId);
        }
        if let Request::Join(r) = request {
            let c = &self.config;
            if !(c.session_timeout_min_ms..=c.session_timeout_max_ms)
                .contains(&r.session_timeout_ms)
            {
                return Some(ErrorCode::InvalidSessionTimeout);
            }
            if r.protocol_type.is_empty()
                || r.protocols.is_empty()
                || r.protocols.len() > crate::config::PROTOCOLS_PER_MEMBER_MAX
                || r.protocols
                    .iter()
                    .any(|p| p.metadata.len() > c.protocol_metadata_max_bytes)
            {
                return Some(ErrorCode::InconsistentGroupProtocol);
            }
        }
        None
    }

    fn request(&mut self, now_ms: i64, id: RequestId, request: Request, out: &mut Output) {
        if let Some(error) = self.precheck(&request) {
            out.reply(id, request.error_reply(error));
            return;
        }
        let Some(group_id) = request.group().map(str::to_string) else {
            out.reply(id, Reply::List(self.list()));
            return;
        };
        let partition = self.partition_of(&group_id);
        let refusal = match self.partitions.get(&partition).map(|s| &s.status) {
            None => Some(ErrorCode::NotCoordinator),
            Some(PartitionStatus::Loading) => Some(ErrorCode::CoordinatorLoadInProgress),
            Some(PartitionStatus::Failed(_)) => Some(ErrorCode::CoordinatorNotAvailable),
            Some(PartitionStatus::Loaded) => None,
        };
        if let Some(error) = refusal {
            out.reply(id, request.error_reply(error));
            return;
        }
        // Requests that may create their group.
        let exists = self
            .partitions
            .get(&partition)
            .is_some_and(|slot| slot.groups.contains_key(&group_id));
        let creates = match &request {
            Request::Join(r) => r.member_id.is_empty(),
            Request::Commit(r) => r.generation < 0,
            // Kafka creates the group of a TxnOffsetCommit whatever it
            // names (before v3 it names no generation).
            Request::TxnCommit(_) => true,
            _ => false,
        };
        if !exists && !creates {
            out.reply(id, absent_group_reply(&request));
            return;
        }
        let slot = self.partitions.get_mut(&partition).expect("checked above");
        if !exists {
            slot.groups
                .insert(group_id.clone(), Group::new(&group_id, partition, now_ms));
        }
        if let Request::TxnCommit(r) = &request {
            slot.txn_groups
                .entry(r.producer.producer_id)
                .or_default()
                .insert(group_id.clone());
        }
        let handled = self.with_group(now_ms, out, &group_id, |group, ctx| match request {
            Request::Join(r) => membership::join(group, id, r, ctx),
            Request::Sync(r) => membership::sync(group, id, r, ctx),
            Request::Heartbeat(r) => {
                let code = membership::heartbeat(group, &r, ctx);
                ctx.out.reply(id, Reply::Heartbeat(code));
            }
            Request::Leave(r) => membership::leave(group, id, r, ctx),
            Request::Commit(r) => offsets::commit(group, id, r, ctx),
            Request::TxnCommit(r) => offsets::txn_commit(group, id, r, ctx),
            Request::FetchOffsets(r) => ctx
                .out
                .reply(id, Reply::FetchOffsets(offsets::fetch(Some(group), &r))),
            Request::Describe(_) => ctx.out.reply(id, Reply::Describe(group.describe())),
            Request::Delete(_) => offsets::delete_group(group, id, ctx),
            Request::OffsetDelete(r) => offsets::offset_delete(group, id, r, ctx),
            Request::List => unreachable!("ListGroups names no group"),
        });
        assert!(handled.is_some(), "the group of a request is loaded");
    }

    fn list(&self) -> ListResponse {
        let mut error = ErrorCode::None;
        let mut groups = Vec::new();
        for slot in self.partitions.values() {
            match &slot.status {
                PartitionStatus::Loaded => groups.extend(
                    slot.groups
                        .values()
                        .filter(|g| g.state != GroupState::Dead)
                        .map(Group::listed),
                ),
                PartitionStatus::Loading => error = ErrorCode::CoordinatorLoadInProgress,
                PartitionStatus::Failed(_) if error == ErrorCode::None => {
                    error = ErrorCode::CoordinatorNotAvailable
                }
                PartitionStatus::Failed(_) => {}
            }
        }
        groups.sort();
        ListResponse { error, groups }
    }

    fn fire_timers(&mut self, now_ms: i64, out: &mut Output) {
        for _ in 0..TIMERS_PER_EVENT_MAX {
            let Some((key, action)) = self.timers.pop_due(now_ms) else {
                return;
            };
            match (key, action) {
                (TimerKey::Session { group, member }, _) => {
                    self.with_group(now_ms, out, &group, |g, ctx| {
                        membership::session_expired(g, &member, ctx)
                    });
                }
                (
                    TimerKey::Join { group },
                    TimerAction::InitialDelay {
                        delay_ms,
                        remaining_ms,
                    },
                ) => {
                    self.with_group(now_ms, out, &group, |g, ctx| {
                        membership::initial_delay_passed(g, delay_ms, remaining_ms, ctx)
                    });
                }
                (TimerKey::Join { group }, _) => {
                    self.with_group(now_ms, out, &group, membership::join_deadline_passed);
                }
                (TimerKey::Sync { group }, TimerAction::ExpireSync { generation }) => {
                    self.with_group(now_ms, out, &group, |g, ctx| {
                        membership::sync_deadline_passed(g, generation, ctx)
                    });
                }
                (TimerKey::Sync { .. }, action) => {
                    unreachable!("sync timers expire syncs, not {action:?}")
                }
                (TimerKey::Retention, _) => self.expire_offsets(now_ms, out),
            }
        }
    }

    fn expire_offsets(&mut self, now_ms: i64, out: &mut Output) {
        let mut forgotten = 0usize;
        for slot in self.partitions.values_mut() {
            if slot.status != PartitionStatus::Loaded {
                continue;
            }
            // Groups that never wrote metadata and hold nothing go without
            // a record.
            let before = slot.groups.len();
            slot.groups
                .retain(|_, g| !(g.is_forgettable() && g.generation == 0));
            forgotten += before - slot.groups.len();
            let mut ids: Vec<String> = slot.groups.keys().cloned().collect();
            ids.sort();
            for id in ids {
                let group = slot.groups.get_mut(&id).expect("listed above");
                let mut ctx = Ctx {
                    now_ms,
                    config: &self.config,
                    timers: &mut self.timers,
                    ids: &mut self.ids,
                    positions: &mut self.next_position,
                    out,
                };
                offsets::expire(group, &mut ctx);
            }
        }
        if forgotten > 0 {
            log::debug!("forgot {forgotten} group(s) that held nothing");
        }
        self.arm_retention(now_ms);
    }

    fn arm_retention(&mut self, now_ms: i64) {
        let at = now_ms.saturating_add(self.config.offsets_retention_check_interval_ms);
        self.timers
            .schedule(TimerKey::Retention, at, TimerAction::ExpireOffsets);
    }

    fn load_started(&mut self, partition: OffsetsPartition, out: &mut Output, now_ms: i64) {
        if self.partitions.contains_key(&partition) {
            self.unload(partition, now_ms, out);
        }
        self.next_epoch += 1;
        self.partitions.insert(
            partition,
            Slot {
                status: PartitionStatus::Loading,
                epoch: self.next_epoch,
                groups: HashMap::new(),
                txn_groups: TxnGroups::new(),
            },
        );
    }

    fn replay(&mut self, partition: OffsetsPartition, entries: Vec<LoadedRecord>, now_ms: i64) {
        let count = self.config.offsets_partitions;
        let Some(slot) = self.partitions.get_mut(&partition) else {
            log::warn!(
                "replay into offsets partition {} which is not loading",
                partition.0
            );
            return;
        };
        if slot.status != PartitionStatus::Loading {
            log::warn!(
                "replay into offsets partition {} which is not loading",
                partition.0
            );
            return;
        }
        let mut misplaced = 0usize;
        for record in entries {
            let group = match &record {
                LoadedRecord::Plain(entry) | LoadedRecord::Transactional { entry, .. } => {
                    match entry {
                        Entry::Offset { group, .. } | Entry::Group { group, .. } => Some(group),
                    }
                }
                LoadedRecord::Marker { .. } => None,
            };
            if group.is_some_and(|g| partition_for(g, count) != partition.0) {
                misplaced += 1;
                continue;
            }
            self.next_position += 1;
            loading::replay(
                &mut slot.groups,
                &mut slot.txn_groups,
                partition,
                record,
                self.next_position,
                now_ms,
            );
        }
        if misplaced > 0 {
            log::warn!(
                "offsets partition {}: skipped {misplaced} record(s) of groups placed in other partitions (offsets.topic.num.partitions changed?)",
                partition.0
            );
        }
    }

    fn load_completed(&mut self, partition: OffsetsPartition, now_ms: i64, out: &mut Output) {
        let Some(slot) = self.partitions.get_mut(&partition) else {
            log::warn!(
                "offsets partition {} completed a load it never started",
                partition.0
            );
            return;
        };
        if slot.status != PartitionStatus::Loading {
            log::warn!("offsets partition {} completed a load twice", partition.0);
            return;
        }
        slot.status = PartitionStatus::Loaded;
        let mut ids: Vec<String> = slot.groups.keys().cloned().collect();
        ids.sort();
        let members: usize = slot.groups.values().map(|g| g.members.len()).sum();
        if !ids.is_empty() {
            log::info!(
                "offsets partition {}: loaded {} group(s) with {members} member(s)",
                partition.0,
                ids.len()
            );
        }
        for id in ids {
            self.with_group(now_ms, out, &id, membership::loaded);
        }
        if self.timers.deadline(&TimerKey::Retention).is_none() {
            self.arm_retention(now_ms);
        }
    }

    fn load_failed(
        &mut self,
        partition: OffsetsPartition,
        reason: String,
        now_ms: i64,
        out: &mut Output,
    ) {
        log::error!(
            "offsets partition {} cannot be loaded: {reason}; its groups are unavailable",
            partition.0
        );
        if self.partitions.contains_key(&partition) {
            self.unload(partition, now_ms, out);
        }
        self.next_epoch += 1;
        self.partitions.insert(
            partition,
            Slot {
                status: PartitionStatus::Failed(reason),
                epoch: self.next_epoch,
                groups: HashMap::new(),
                txn_groups: TxnGroups::new(),
            },
        );
    }

    fn unload(&mut self, partition: OffsetsPartition, now_ms: i64, out: &mut Output) {
        let Some(mut slot) = self.partitions.remove(&partition) else {
            return;
        };
        let mut ids: Vec<String> = slot.groups.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let group = slot.groups.get_mut(&id).expect("listed above");
            let mut ctx = Ctx {
                now_ms,
                config: &self.config,
                timers: &mut self.timers,
                ids: &mut self.ids,
                positions: &mut self.next_position,
                out,
            };
            membership::unload(group, &mut ctx);
        }
        if !slot.groups.is_empty() {
            log::info!(
                "offsets partition {}: unloaded {} group(s)",
                partition.0,
                slot.groups.len()
            );
        }
    }

    fn append_completed(
        &mut self,
        id: AppendId,
        result: Result<(), ErrorCode>,
        now_ms: i64,
        out: &mut Output,
    ) {
        let Some(pending) = self.pending.get_mut(&id) else {
            log::warn!("completion of unknown append {}", id.0);
            return;
        };
        if pending.result.is_some() {
            log::warn!("append {} completed twice", id.0);
            return;
        }
        pending.result = Some(result);
        let partition = pending.partition;
        loop {
            let Some(queue) = self.queues.get_mut(&partition) else {
                return;
            };
            let Some(&head) = queue.front() else {
                self.queues.remove(&partition);
                return;
            };
            if self.pending.get(&head).is_none_or(|p| p.result.is_none()) {
                return;
            }
            queue.pop_front();
            let done = self
                .pending
                .remove(&head)
                .expect("queued appends are pending");
            self.apply_completed(done, now_ms, out);
        }
    }

    fn apply_completed(&mut self, done: PendingAppend, now_ms: i64, out: &mut Output) {
        let result = done.result.expect("completed");
        if let Err(error) = result {
            log::warn!(
                "append to offsets partition {} failed: {error:?}",
                done.partition.0
            );
        }
        let live = self
            .partitions
            .get(&done.partition)
            .is_some_and(|s| s.status == PartitionStatus::Loaded && s.epoch == done.epoch);
        if live {
            for purpose in done.on_durable {
                self.apply_purpose(purpose, result, done.partition, now_ms, out);
            }
        }
        for (id, reply) in done.replies {
            let reply = match result {
                Ok(()) => reply,
                Err(error) => reply.after_failed_append(error),
            };
            out.reply(id, reply);
        }
    }

    fn apply_purpose(
        &mut self,
        purpose: OnDurable,
        result: Result<(), ErrorCode>,
        partition: OffsetsPartition,
        now_ms: i64,
        out: &mut Output,
    ) {
        match purpose {
            OnDurable::Logged { group } => {
                if let Err(error) = result {
                    log::warn!("group {group}: writing its empty metadata failed ({error:?})");
                }
            }
            OnDurable::ApplyOffsets {
                group,
                offsets,
                position,
            } => {
                if result.is_err() {
                    return;
                }
                // The log has them: memory must too, even if the group
                // went meanwhile.
                if let Some(slot) = self.partitions.get_mut(&partition) {
                    let g = slot
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, now_ms));
                    offsets::apply_offsets(g, &offsets, position);
                }
            }
            OnDurable::ApplyTxnOffsets {
                group,
                producer_id,
                keys,
                position,
            } => {
                let slot = self.partitions.get_mut(&partition);
                if let Some(g) = slot.and_then(|s| s.groups.get_mut(&group)) {
                    offsets::apply_txn_offsets(g, producer_id, &keys, position, result.is_ok());
                }
            }
            OnDurable::RemoveOffsets {
                group,
                keys,
                forget_group,
            } => {
                if result.is_err() {
                    return;
                }
                let forget = self
                    .with_group(now_ms, out, &group, |g, _| {
                        offsets::remove_offsets(g, &keys, forget_group)
                    })
                    .unwrap_or(false);
                if forget {
                    self.forget(&group);
                }
            }
            OnDurable::RemoveGroup { group, state_ms } => {
                let dead = self
                    .group(&group)
                    .is_some_and(|g| g.state == GroupState::Dead);
                if !dead {
                    return;
                }
                match result {
                    Ok(()) => {
                        log::info!("group {group}: deleted");
                        self.forget(&group);
                    }
                    Err(_) => {
                        self.with_group(now_ms, out, &group, |g, _| {
                            g.transition(GroupState::Empty, state_ms);
                        });
                    }
                }
            }
            OnDurable::SyncAssignment {
                group,
                generation,
                assignments,
            } => {
                self.with_group(now_ms, out, &group, |g, ctx| {
                    membership::assignment_stored(g, generation, &assignments, result, ctx)
                });
            }
            OnDurable::StaticRejoin(rejoin) => {
                let group = rejoin.group.clone();
                self.with_group(now_ms, out, &group, |g, ctx| {
                    membership::static_rejoin_done(g, &rejoin, result, ctx)
                });
            }
        }
    }

    /// A transaction's marker is durable in `partition`: its pending
    /// offsets are committed or dropped in every group that holds some.
    fn txn_completed(&mut self, partition: OffsetsPartition, producer_id: i64, commit: bool) {
        let Some(slot) = self.partitions.get_mut(&partition) else {
            log::debug!(
                "transaction of producer {producer_id} ended in offsets partition {} which is not loaded here",
                partition.0
            );
            return;
        };
        if matches!(slot.status, PartitionStatus::Failed(_)) {
            return;
        }
        let touched =
            loading::complete_txn(&mut slot.groups, &mut slot.txn_groups, producer_id, commit);
        if !touched.is_empty() {
            log::debug!(
                "offsets partition {}: transaction of producer {producer_id} {} in {} group(s)",
                partition.0,
                if commit { "committed" } else { "aborted" },
                touched.len()
            );
        }
    }

    fn forget(&mut self, group: &str) {
        let partition = self.partition_of(group);
        if let Some(slot) = self.partitions.get_mut(&partition) {
            slot.groups.remove(group);
        }
        self.timers.cancel_group(group);
    }
}

/// The answer to a request whose group does not exist (the requests that
/// may create their group never get it).
fn absent_group_reply(request: &Request) -> Reply {
    match request {
        Request::Join(r) => Reply::Join(JoinResponse::error(
            ErrorCode::UnknownMemberId,
            &r.member_id,
        )),
        Request::Sync(_) => Reply::Sync(SyncResponse::error(ErrorCode::UnknownMemberId)),
        Request::Heartbeat(_) => Reply::Heartbeat(ErrorCode::UnknownMemberId),
        Request::Leave(_) => Reply::Leave(LeaveResponse {
            error: ErrorCode::UnknownMemberId,
            members: Vec::new(),
        }),
        // A commit naming a generation into a group that does not exist
        // comes from an older generation.
        Request::Commit(r) => Reply::Commit(vec![ErrorCode::IllegalGeneration; r.offsets.len()]),
        // Never: a TxnOffsetCommit creates its group.
        Request::TxnCommit(r) => {
            Reply::TxnCommit(vec![ErrorCode::IllegalGeneration; r.offsets.len()])
        }
        Request::FetchOffsets(r) => Reply::FetchOffsets(offsets::fetch(None, r)),
        Request::Describe(_) => Reply::Describe(GroupDescription {
            error: ErrorCode::GroupIdNotFound,
            state: Some(GroupState::Dead),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }),
        Request::Delete(_) => Reply::Delete(ErrorCode::GroupIdNotFound),
        Request::OffsetDelete(_) => Reply::OffsetDelete(OffsetDeleteResponse {
            error: ErrorCode::GroupIdNotFound,
            partitions: Vec::new(),
        }),
        Request::List => unreachable!("ListGroups names no group"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::*;
    use crate::types::*;

    fn bare() -> Harness {
        let mut h = Harness::new(config());
        for p in 0..config().offsets_partitions {
            h.step(Event::Unload {
                partition: OffsetsPartition(p),
            });
        }
        h
    }

    #[test]
    fn partitions_not_loaded_loading_or_failed_refuse_requests() {
        let mut h = bare();
        let p = h.c.partition_of("g");
        let j = h.join("g", "", None);
        assert_eq!(h.join_reply(j).error, ErrorCode::NotCoordinator);
        h.step(Event::LoadStarted { partition: p });
        assert_eq!(
            h.heartbeat("g", 1, "m"),
            ErrorCode::CoordinatorLoadInProgress
        );
        let c = h.commit("g", -1, "", &[("t", 0, 1)]);
        assert_eq!(
            h.commit_reply(c),
            vec![ErrorCode::CoordinatorLoadInProgress]
        );
        let l = h.send(Request::List);
        match h.take(l) {
            Some(Reply::List(r)) => assert_eq!(r.error, ErrorCode::CoordinatorLoadInProgress),
            other => panic!("{other:?}"),
        }
        h.step(Event::LoadFailed {
            partition: p,
            reason: "read error".into(),
        });
        assert_eq!(h.heartbeat("g", 1, "m"), ErrorCode::CoordinatorNotAvailable);
        assert_eq!(
            h.c.partitions(),
            vec![(p, PartitionStatus::Failed("read error".into()))]
        );
        h.step(Event::LoadStarted { partition: p });
        h.step(Event::LoadCompleted { partition: p });
        assert_eq!(
            h.heartbeat("g", 1, "m"),
            ErrorCode::UnknownMemberId,
            "served again"
        );
        let bad = h.heartbeat("", 1, "m");
        assert_eq!(bad, ErrorCode::InvalidGroupId);
    }

    #[test]
    fn unload_answers_waiting_requests_and_drops_groups() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 2);
        let p = h.c.partition_of("g");
        // The leader forces a rebalance and waits; the follower's commit is
        // in flight when the partition goes.
        let j = h.join("g", &ids[0], None);
        h.auto_ack = false;
        let c = h.commit("g", generation, &ids[1], &[("t", 0, 9)]);
        h.step(Event::Unload { partition: p });
        assert_eq!(h.join_reply(j).error, ErrorCode::NotCoordinator);
        assert_eq!(h.state("g"), None);
        assert_eq!(
            h.heartbeat("g", generation, &ids[1]),
            ErrorCode::NotCoordinator
        );
        // The commit's records are durable: its answer says so.
        h.complete_all(Ok(()));
        assert_eq!(h.commit_reply(c), vec![ErrorCode::None]);
        assert_eq!(h.unanswered(), 0);
    }

    #[test]
    fn replay_rebuilds_groups_offsets_and_sessions() {
        let mut h = Harness::new(config());
        let (generation, ids) = h.stable_group("g", 1);
        let c = h.commit("g", generation, &ids[0], &[("t", 0, 42)]);
        h.commit_reply(c);
        let (sgen, sids) = h.stable_static_group("s", &["i1"]);
        let c = h.commit("simple", -1, "", &[("t", 3, 7)]);
        h.commit_reply(c);
        let c = h.commit("deleted", -1, "", &[("t", 0, 1)]);
        h.commit_reply(c);
        let d = h.delete("deleted");
        h.take(d);
        // A second coordinator loads what the first wrote.
        let mut fresh = bare();
        fresh.now = h.now + 5_000;
        for p in 0..config().offsets_partitions {
            let partition = OffsetsPartition(p);
            fresh.step(Event::LoadStarted { partition });
            fresh.step(Event::Replay {
                partition,
                entries: h.loaded_records(partition),
            });
            fresh.step(Event::LoadCompleted { partition });
        }
        assert_eq!(fresh.state("g"), Some(GroupState::Stable));
        assert_eq!(fresh.state("deleted"), None);
        assert_eq!(fresh.fetch("g"), vec![("t".to_string(), 0, 42)]);
        assert_eq!(fresh.fetch("simple"), vec![("t".to_string(), 3, 7)]);
        let d = fresh.describe("g");
        assert_eq!((d.members.len(), d.protocol.as_str()), (1, "range"));
        assert_eq!(
            d.members[0].assignment,
            bytes::Bytes::from(format!("a-{}", ids[0]))
        );
        // Members resume with their generation, or expire a session after
        // the load.
        assert_eq!(fresh.heartbeat("g", generation, &ids[0]), ErrorCode::None);
        fresh.advance(i64::from(SESSION_MS) - 1);
        assert_eq!(fresh.heartbeat("g", generation, &ids[0]), ErrorCode::None);
        assert_eq!(fresh.state("s"), Some(GroupState::Stable));
        fresh.advance(1);
        assert_eq!(
            fresh.state("s"),
            Some(GroupState::Empty),
            "i1 never came back"
        );
        assert_eq!(
            fresh.heartbeat_as("s", sgen, &sids[0], Some("i1")),
            ErrorCode::UnknownMemberId
        );
        assert_eq!(fresh.state("g"), Some(GroupState::Stable));
    }

    #[test]
    fn list_and_describe() {
        let mut h = Harness::new(config());
        h.stable_group("b", 1);
        let c = h.commit("a", -1, "", &[("t", 0, 1)]);
        h.commit_reply(c);
        let l = h.send(Request::List);
        let listed = match h.take(l) {
            Some(Reply::List(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(listed.error, ErrorCode::None);
        assert_eq!(
            listed.groups,
            vec![
                ListedGroup {
                    group: "a".into(),
                    protocol_type: String::new(),
                    state: "Empty",
                    group_type: "classic",
                },
                ListedGroup {
                    group: "b".into(),
                    protocol_type: "consumer".into(),
                    state: "Stable",
                    group_type: "classic",
                },
            ]
        );
        let d = h.describe("b");
        assert_eq!(
            (d.error, d.state),
            (ErrorCode::None, Some(GroupState::Stable))
        );
        let d = h.describe("zz");
        assert_eq!(
            (d.error, d.state),
            (ErrorCode::GroupIdNotFound, Some(GroupState::Dead))
        );
    }

    #[test]
    fn completions_of_unknown_appends_are_ignored() {
        let mut h = Harness::new(config());
        h.step(Event::AppendCompleted {
            id: AppendId(999),
            result: Ok(()),
        });
        assert_eq!(h.c.appends_in_flight(), 0);
    }
}
